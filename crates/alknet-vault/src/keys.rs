//! Key and secret types: move-only, zeroed on drop, and never printed.
//!
//! None of these types implements `Clone` or `Display`; their `Debug` shows
//! only what is public (a public key, a key version). Getting at the bytes
//! takes an explicit, greppable call (`secret_bytes`, `expose`).

use std::fmt;
use std::str::FromStr;

use ed25519_dalek::SigningKey;
use zeroize::{Zeroize, ZeroizeOnDrop, Zeroizing};

/// A SLIP-0010 node: a private key and its chain code.
#[derive(Zeroize, ZeroizeOnDrop)]
pub struct ExtendedKey {
    key: [u8; 32],
    chain_code: [u8; 32],
}

impl ExtendedKey {
    pub(crate) fn from_hmac_output(output: &[u8; 64]) -> Self {
        let mut key = [0u8; 32];
        let mut chain_code = [0u8; 32];
        key.copy_from_slice(&output[..32]);
        chain_code.copy_from_slice(&output[32..]);
        Self { key, chain_code }
    }

    /// An independent copy, for the cache to hand out (crate-internal: the
    /// public API stays move-only).
    pub(crate) fn duplicate(&self) -> Self {
        Self {
            key: self.key,
            chain_code: self.chain_code,
        }
    }

    /// The 32-byte private key (`I_L`). Treat it as the secret it is.
    pub fn secret_bytes(&self) -> &[u8; 32] {
        &self.key
    }

    /// The 32-byte chain code (`I_R`). Secret too: with it and a parent key,
    /// children can be derived.
    pub fn chain_code(&self) -> &[u8; 32] {
        &self.chain_code
    }

    /// The Ed25519 public key of this node's private key.
    pub fn ed25519_public_key(&self) -> [u8; 32] {
        SigningKey::from_bytes(&self.key).verifying_key().to_bytes()
    }

    /// The private key as an [`Ed25519Key`], dropping the chain code.
    pub fn into_ed25519(self) -> Ed25519Key {
        Ed25519Key::from_bytes(&self.key)
    }
}

impl fmt::Debug for ExtendedKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ExtendedKey")
            .field(
                "ed25519_public_key",
                &hex::encode(self.ed25519_public_key()),
            )
            .finish_non_exhaustive()
    }
}

/// An Ed25519 private key (the 32-byte seed RFC 8032 calls the private key).
#[derive(Zeroize, ZeroizeOnDrop)]
pub struct Ed25519Key {
    secret: [u8; 32],
}

impl Ed25519Key {
    /// A key from its 32 private bytes.
    pub fn from_bytes(secret: &[u8; 32]) -> Self {
        Self { secret: *secret }
    }

    /// The 32 private bytes, e.g. for `alknet_core::NodeKey::from_seed`.
    /// Treat them as the secret they are.
    pub fn secret_bytes(&self) -> &[u8; 32] {
        &self.secret
    }

    /// The 32-byte public key.
    pub fn public_key(&self) -> [u8; 32] {
        self.signing_key().verifying_key().to_bytes()
    }

    /// The key as an `ed25519-dalek` signing key (which zeroes itself on drop).
    pub fn signing_key(&self) -> SigningKey {
        SigningKey::from_bytes(&self.secret)
    }
}

impl fmt::Debug for Ed25519Key {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Ed25519Key")
            .field("public_key", &hex::encode(self.public_key()))
            .finish_non_exhaustive()
    }
}

/// An AES-256-GCM key of one key version.
#[derive(Zeroize, ZeroizeOnDrop)]
pub struct AesKey {
    secret: [u8; 32],
    #[zeroize(skip)]
    version: u32,
}

impl AesKey {
    pub(crate) fn new(secret: &[u8; 32], version: u32) -> Self {
        Self {
            secret: *secret,
            version,
        }
    }

    /// The key version this key belongs to.
    pub fn version(&self) -> u32 {
        self.version
    }

    /// The 32 key bytes. Treat them as the secret they are.
    pub fn secret_bytes(&self) -> &[u8; 32] {
        &self.secret
    }
}

impl fmt::Debug for AesKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("AesKey")
            .field("version", &self.version)
            .finish_non_exhaustive()
    }
}

/// A decrypted secret (a credential, a mnemonic phrase): text that is zeroed
/// on drop and printed by `Debug` as `Secret(<redacted>)`. It has no
/// `Display`, so it cannot end up in a format string by accident.
#[derive(Default, PartialEq, Eq)]
pub struct Secret(Zeroizing<String>);

impl Secret {
    /// Wraps a string (which is zeroed when the secret drops).
    pub fn new(value: String) -> Self {
        Self(Zeroizing::new(value))
    }

    /// The plaintext. Every use is a place a secret leaves the vault.
    pub fn expose(&self) -> &str {
        &self.0
    }

    /// The plaintext as a [`Zeroizing`] string.
    pub fn into_zeroizing(self) -> Zeroizing<String> {
        self.0
    }
}

impl From<String> for Secret {
    fn from(value: String) -> Self {
        Self::new(value)
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Secret(<redacted>)")
    }
}

/// The curve a key is derived for.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum KeyType {
    /// SLIP-0010 Ed25519 (`"ed25519 seed"`), hardened indices only.
    Ed25519,
    /// BIP-32 secp256k1 (`"Bitcoin seed"`); needs the `secp256k1` feature.
    Secp256k1,
}

impl fmt::Display for KeyType {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            KeyType::Ed25519 => "ed25519",
            KeyType::Secp256k1 => "secp256k1",
        })
    }
}

/// The error of parsing a [`KeyType`] name.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("unknown key type `{0}`: expected ed25519 or secp256k1")]
pub struct UnknownKeyType(String);

impl FromStr for KeyType {
    type Err = UnknownKeyType;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "ed25519" => Ok(KeyType::Ed25519),
            "secp256k1" => Ok(KeyType::Secp256k1),
            other => Err(UnknownKeyType(other.chars().take(32).collect())),
        }
    }
}

/// A key derived by [`crate::Vault::derive`], of either curve.
#[derive(Debug)]
pub enum DerivedKey {
    /// An Ed25519 key (SLIP-0010).
    Ed25519(Ed25519Key),
    /// A secp256k1 key (BIP-32).
    #[cfg(feature = "secp256k1")]
    Secp256k1(crate::secp256k1::Secp256k1Key),
}

impl DerivedKey {
    /// The private key bytes (32 for both curves). Treat them as secret.
    pub fn secret_bytes(&self) -> &[u8; 32] {
        match self {
            DerivedKey::Ed25519(key) => key.secret_bytes(),
            #[cfg(feature = "secp256k1")]
            DerivedKey::Secp256k1(key) => key.secret_bytes(),
        }
    }

    /// The public key: 32 bytes for Ed25519, 33 (SEC1 compressed) for
    /// secp256k1.
    pub fn public_key(&self) -> Vec<u8> {
        match self {
            DerivedKey::Ed25519(key) => key.public_key().to_vec(),
            #[cfg(feature = "secp256k1")]
            DerivedKey::Secp256k1(key) => key.public_key().to_vec(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn debug_output_never_contains_key_bytes_or_plaintext() {
        let secret = [0xabu8; 32];
        let key = Ed25519Key::from_bytes(&secret);
        let aes = AesKey::new(&secret, 2);
        let extended = ExtendedKey::from_hmac_output(&[0xab; 64]);
        let plaintext = Secret::new("hunter2-canary".to_owned());
        let hex_secret = hex::encode(secret);
        for printed in [
            format!("{key:?}"),
            format!("{aes:?}"),
            format!("{extended:?}"),
            format!("{plaintext:?}"),
            format!("{:?}", DerivedKey::Ed25519(Ed25519Key::from_bytes(&secret))),
        ] {
            assert!(!printed.contains(&hex_secret), "{printed}");
            assert!(!printed.contains("171, 171"), "{printed}");
            assert!(!printed.contains("hunter2"), "{printed}");
        }
        assert_eq!(format!("{plaintext:?}"), "Secret(<redacted>)");
        assert!(format!("{aes:?}").contains("version: 2"));
    }

    #[test]
    fn key_types_parse_by_name() {
        assert_eq!("ed25519".parse::<KeyType>().unwrap(), KeyType::Ed25519);
        assert_eq!("secp256k1".parse::<KeyType>().unwrap(), KeyType::Secp256k1);
        assert!("rsa".parse::<KeyType>().is_err());
    }
}
