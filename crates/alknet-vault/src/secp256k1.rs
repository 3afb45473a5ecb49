//! BIP-32 secp256k1 derivation (`"Bitcoin seed"`), for the keys other
//! ecosystems expect from the same mnemonic (e.g. Ethereum at
//! `m/44'/60'/0'/0/0`). Compiled only with the `secp256k1` cargo feature.
//!
//! The arithmetic is the `bip32` crate's (RustCrypto `k256`); unlike
//! SLIP-0010 Ed25519, unhardened indices are allowed. These keys are not
//! cached: deriving one is rare.

use std::fmt;

use bip32::{ChildNumber, XPrv};
use zeroize::{Zeroize, ZeroizeOnDrop};

use crate::error::DeriveError;
use crate::path::DerivationPath;

/// A BIP-32 secp256k1 private key with its chain code.
#[derive(Zeroize, ZeroizeOnDrop)]
pub struct Secp256k1Key {
    secret: [u8; 32],
    chain_code: [u8; 32],
    #[zeroize(skip)]
    public: [u8; 33],
}

impl Secp256k1Key {
    /// The 32-byte private scalar. Treat it as the secret it is.
    pub fn secret_bytes(&self) -> &[u8; 32] {
        &self.secret
    }

    /// The chain code.
    pub fn chain_code(&self) -> &[u8; 32] {
        &self.chain_code
    }

    /// The SEC1 compressed public key (33 bytes).
    pub fn public_key(&self) -> [u8; 33] {
        self.public
    }
}

impl fmt::Debug for Secp256k1Key {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Secp256k1Key")
            .field("public_key", &hex::encode(self.public))
            .finish_non_exhaustive()
    }
}

/// Derives `path` from `seed` (16, 32 or 64 bytes) by BIP-32.
pub fn derive(seed: &[u8], path: &DerivationPath) -> Result<Secp256k1Key, DeriveError> {
    let mut key = XPrv::new(seed).map_err(|e| DeriveError::Secp256k1(e.to_string()))?;
    for index in path.indices() {
        let child = ChildNumber::new(index.index(), index.is_hardened())
            .map_err(|e| DeriveError::Secp256k1(e.to_string()))?;
        key = key
            .derive_child(child)
            .map_err(|e| DeriveError::Secp256k1(e.to_string()))?;
    }
    let mut secret: [u8; 32] = key.to_bytes();
    let result = Secp256k1Key {
        secret,
        chain_code: key.attrs().chain_code,
        public: key.public_key().to_bytes(),
    };
    secret.zeroize();
    Ok(result)
}
