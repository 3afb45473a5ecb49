//! alknet's vault: every key a node has, derived from one BIP39 mnemonic, and
//! credentials sealed with AES-256-GCM under one of those keys.
//!
//! # Why a mnemonic
//!
//! A node's identity is its Ed25519 key; peers pin it. If that key is a random
//! file, losing the file loses the identity, and backing it up means copying a
//! secret file around. With a mnemonic, the identity (and every other key the
//! node needs — device keys, the SSH host key, the keys that seal credentials)
//! is a pure function of 12–24 words an operator can write on paper:
//! `alknet init --restore` on a fresh machine reproduces the same node id, and
//! every credential sealed before still opens.
//!
//! # The contract
//!
//! Other implementations read and write the same bytes, so the formats are
//! fixed (see `docs/vault.md` in the repository for the full text):
//!
//! - [`Mnemonic`]: BIP39, English word list only, 12/15/18/21/24 words,
//!   checksum validated; with an optional passphrase ("25th word") it gives a
//!   64-byte [`Seed`].
//! - Derivation ([`Vault`]): SLIP-0010 for Ed25519 (HMAC-SHA512 keyed
//!   `"ed25519 seed"`), hardened indices only. alknet's coin type is 74'; the
//!   well-known paths are in [`path`]. BIP-32 secp256k1 is behind the
//!   `secp256k1` cargo feature.
//! - Sealed data ([`EncryptedData`]): AES-256-GCM under the key derived at
//!   `m/74'/2'/0'/{version-2}'`, as JSON
//!   `{"key_version", "salt", "iv", "data"}`; every way decryption can fail is
//!   the same opaque [`DecryptError`].
//!
//! # Handling secrets
//!
//! Every type that holds key material or plaintext ([`Mnemonic`], [`Seed`],
//! [`Ed25519Key`], [`AesKey`], [`Secret`], [`Vault`]) is move-only, zeroes its
//! memory on drop and has a `Debug` that prints no secret. Nothing here logs.
//!
//! The crate depends on no other alknet crate: it is the stable piece the
//! rest of the node (and other implementations) build on.

#![forbid(unsafe_code)]
#![warn(missing_docs)]

pub mod at_rest;
mod error;
mod keys;
mod mnemonic;
pub mod path;
mod sealed;
#[cfg(feature = "secp256k1")]
pub mod secp256k1;
pub mod slip10;
mod vault;

pub use error::{
    DecryptError, DeriveError, EncryptError, KeyVersionError, MnemonicError, PathError, RotateError,
};
pub use keys::{AesKey, DerivedKey, Ed25519Key, ExtendedKey, KeyType, Secret, UnknownKeyType};
pub use mnemonic::{Mnemonic, Seed, WordCount};
pub use path::{ChildIndex, DerivationPath};
pub use sealed::{CURRENT_KEY_VERSION, EncryptedData, MIN_KEY_VERSION};
pub use slip10::ED25519_CURVE_KEY;
pub use vault::Vault;
