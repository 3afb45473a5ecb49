//! The vault: a seed, the keys derived from it, and sealing with them.
//!
//! Derived nodes are cached by path (every intermediate node too), so that
//! deriving `m/74'/2'/0'/1'` after `m/74'/2'/0'/0'` costs one HMAC rather
//! than five. The cache is only a cache: it holds nothing the seed cannot
//! rebuild, [`Vault::clear_cache`] empties it, and it is bounded (it is
//! emptied when it reaches [`Vault::CACHE_CAPACITY`] nodes). Cached nodes are
//! zeroed when they leave the cache and when the vault drops.

use std::collections::HashMap;
use std::fmt;
use std::sync::{Mutex, PoisonError};

use crate::error::{DecryptError, DeriveError, EncryptError, KeyVersionError, RotateError};
use crate::keys::{AesKey, DerivedKey, Ed25519Key, ExtendedKey, KeyType, Secret};
use crate::mnemonic::{Mnemonic, Seed};
use crate::path::{self, DerivationPath};
use crate::sealed::{CURRENT_KEY_VERSION, EncryptedData};
use crate::slip10;

/// The keys of one seed. Move-only; `Debug` prints only the cache size.
pub struct Vault {
    seed: Seed,
    cache: Mutex<HashMap<DerivationPath, ExtendedKey>>,
}

impl Vault {
    /// How many derived nodes the cache keeps before it starts over.
    pub const CACHE_CAPACITY: usize = 1024;

    /// The vault of a seed.
    pub fn from_seed(seed: Seed) -> Self {
        Self {
            seed,
            cache: Mutex::new(HashMap::new()),
        }
    }

    /// The vault of a mnemonic and BIP39 passphrase (`""` for none).
    pub fn from_mnemonic(mnemonic: &Mnemonic, passphrase: &str) -> Self {
        Self::from_seed(mnemonic.to_seed(passphrase))
    }

    /// The SLIP-0010 Ed25519 node at `path` (hardened components only).
    pub fn derive_extended(&self, path: &DerivationPath) -> Result<ExtendedKey, DeriveError> {
        slip10::check_hardened(path)?;
        let mut cache = self.cache.lock().unwrap_or_else(PoisonError::into_inner);
        if let Some(node) = cache.get(path) {
            return Ok(node.duplicate());
        }
        // Start from the deepest cached ancestor (or the master node).
        let mut depth = path.depth();
        let mut node = loop {
            if depth == 0 {
                break slip10::master(self.seed.as_bytes());
            }
            depth -= 1;
            if let Some(node) = cache.get(&path.prefix(depth)) {
                break node.duplicate();
            }
        };
        if cache.len() + path.depth() + 1 > Self::CACHE_CAPACITY {
            cache.clear();
        }
        if depth == 0 {
            cache.insert(DerivationPath::master(), node.duplicate());
        }
        for (i, &index) in path.indices().iter().enumerate().skip(depth) {
            node = slip10::child(&node, index);
            cache.insert(path.prefix(i + 1), node.duplicate());
        }
        Ok(node)
    }

    /// The Ed25519 key at `path` (hardened components only).
    pub fn derive_ed25519(&self, path: &DerivationPath) -> Result<Ed25519Key, DeriveError> {
        self.derive_extended(path).map(ExtendedKey::into_ed25519)
    }

    /// The key at `path` for `key_type`. secp256k1 needs the `secp256k1`
    /// feature; without it this is [`DeriveError::UnsupportedKeyType`].
    pub fn derive(
        &self,
        key_type: KeyType,
        path: &DerivationPath,
    ) -> Result<DerivedKey, DeriveError> {
        match key_type {
            KeyType::Ed25519 => self.derive_ed25519(path).map(DerivedKey::Ed25519),
            #[cfg(feature = "secp256k1")]
            KeyType::Secp256k1 => {
                crate::secp256k1::derive(self.seed.as_bytes(), path).map(DerivedKey::Secp256k1)
            }
            #[cfg(not(feature = "secp256k1"))]
            KeyType::Secp256k1 => Err(DeriveError::UnsupportedKeyType {
                key_type,
                feature: "secp256k1",
            }),
        }
    }

    /// The node identity, `m/74'/0'/0'/0'`: the node's TLS key and node id.
    pub fn node_identity(&self) -> Ed25519Key {
        self.derive_well_known(&path::node_identity())
    }

    /// The SSH host key, `m/74'/0'/1'/0'`.
    pub fn ssh_host_key(&self) -> Ed25519Key {
        self.derive_well_known(&path::ssh_host_key())
    }

    /// Device or worker identity `n`, `m/74'/0'/0'/{n}'` (`n` below 2^31).
    pub fn device_key(&self, n: u32) -> Result<Ed25519Key, DeriveError> {
        self.derive_ed25519(&path::device(n)?)
    }

    fn derive_well_known(&self, path: &DerivationPath) -> Ed25519Key {
        match self.derive_ed25519(path) {
            Ok(key) => key,
            // Well-known paths are fully hardened constants.
            Err(_) => unreachable!("well-known paths are hardened"),
        }
    }

    /// The AES-256-GCM key of `version`, `m/74'/2'/0'/{version-2}'`.
    pub fn aes_key(&self, version: u32) -> Result<AesKey, KeyVersionError> {
        let path = path::aes_key(version)?;
        let node = self
            .derive_extended(&path)
            .map_err(|_| KeyVersionError(version))?;
        Ok(AesKey::new(node.secret_bytes(), version))
    }

    /// Seals `plaintext` under the current key version.
    pub fn encrypt(&self, plaintext: &str) -> Result<EncryptedData, EncryptError> {
        self.encrypt_with_version(plaintext, CURRENT_KEY_VERSION)
    }

    /// Seals `plaintext` under key `version` (2 or more).
    pub fn encrypt_with_version(
        &self,
        plaintext: &str,
        version: u32,
    ) -> Result<EncryptedData, EncryptError> {
        let key = self.aes_key(version)?;
        EncryptedData::seal(&key, plaintext.as_bytes())
    }

    /// Opens a sealed blob with the key of its own `key_version`. Every
    /// failure is the same opaque [`DecryptError`].
    pub fn decrypt(&self, data: &EncryptedData) -> Result<Secret, DecryptError> {
        let key = self.aes_key(data.key_version).map_err(|_| DecryptError)?;
        data.open(&key)
    }

    /// Parses and opens the JSON form of a sealed blob.
    pub fn decrypt_json(&self, json: &[u8]) -> Result<Secret, DecryptError> {
        self.decrypt(&EncryptedData::from_json(json)?)
    }

    /// Re-seals a blob under key version `to_version` (a fresh IV and salt
    /// even when the version does not change).
    pub fn rotate(
        &self,
        data: &EncryptedData,
        to_version: u32,
    ) -> Result<EncryptedData, RotateError> {
        let plaintext = self.decrypt(data)?;
        Ok(self.encrypt_with_version(plaintext.expose(), to_version)?)
    }

    /// Empties the derivation cache (it refills from the seed on demand).
    pub fn clear_cache(&self) {
        self.cache
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .clear();
    }

    /// How many derived nodes are cached.
    pub fn cached_nodes(&self) -> usize {
        self.cache
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .len()
    }
}

impl fmt::Debug for Vault {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Vault")
            .field("cached_nodes", &self.cached_nodes())
            .finish_non_exhaustive()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const ABOUT: &str = "abandon abandon abandon abandon abandon abandon abandon abandon abandon abandon abandon about";

    fn vault() -> Vault {
        Vault::from_mnemonic(&Mnemonic::parse(ABOUT).unwrap(), "")
    }

    #[test]
    fn the_cache_gives_the_same_keys_as_a_fresh_derivation() {
        let v = vault();
        let paths = [
            "m/74'/2'/0'/1'",
            "m/74'/2'/0'/0'",
            "m/74'/0'/0'/0'",
            "m/74'/0'/1'/0'",
            "m",
            "m/74'",
            "m/0'/1'/2'/3'/4'/5'",
        ];
        for p in paths {
            let path: DerivationPath = p.parse().unwrap();
            let uncached = slip10::derive(vault().seed.as_bytes(), &path).unwrap();
            let cached = v.derive_extended(&path).unwrap();
            let again = v.derive_extended(&path).unwrap();
            assert_eq!(cached.secret_bytes(), uncached.secret_bytes(), "{p}");
            assert_eq!(cached.chain_code(), uncached.chain_code(), "{p}");
            assert_eq!(again.secret_bytes(), uncached.secret_bytes(), "{p}");
        }
        // m, m/74', m/74'/2', m/74'/2'/0', two leaves there, m/74'/0', …
        assert!(v.cached_nodes() >= 10, "{}", v.cached_nodes());
        v.clear_cache();
        assert_eq!(v.cached_nodes(), 0);
        assert_eq!(
            v.node_identity().public_key(),
            vault().node_identity().public_key()
        );
    }

    #[test]
    fn the_cache_is_bounded() {
        let v = vault();
        for n in 0..(Vault::CACHE_CAPACITY as u32 + 100) {
            v.device_key(n).unwrap();
            assert!(v.cached_nodes() <= Vault::CACHE_CAPACITY);
        }
    }

    #[test]
    fn unhardened_ed25519_paths_are_refused_with_the_component() {
        let err = vault()
            .derive_ed25519(&"m/74'/0'/0/0'".parse().unwrap())
            .unwrap_err();
        assert_eq!(
            err,
            DeriveError::Unhardened {
                path: "m/74'/0'/0/0'".into(),
                position: 3,
                index: 0
            }
        );
        assert!(err.to_string().contains("write 0'"), "{err}");
    }

    #[cfg(not(feature = "secp256k1"))]
    #[test]
    fn secp256k1_without_the_feature_is_a_clear_error() {
        let err = vault()
            .derive(KeyType::Secp256k1, &path::ethereum())
            .unwrap_err();
        assert_eq!(
            err,
            DeriveError::UnsupportedKeyType {
                key_type: KeyType::Secp256k1,
                feature: "secp256k1"
            }
        );
        assert!(
            err.to_string().contains("`secp256k1` cargo feature"),
            "{err}"
        );
    }

    #[test]
    fn key_versions_below_two_have_no_key() {
        let v = vault();
        assert_eq!(v.aes_key(1).unwrap_err(), KeyVersionError(1));
        assert!(v.aes_key(1).unwrap_err().to_string().contains("PBKDF2"));
        assert_eq!(
            v.encrypt_with_version("x", 0).unwrap_err(),
            EncryptError::KeyVersion(KeyVersionError(0))
        );
        let mut blob = v.encrypt("x").unwrap();
        blob.key_version = 1;
        assert_eq!(v.decrypt(&blob).unwrap_err(), DecryptError);
    }
}
