//! Error types, one per operation family, so that callers match on what can
//! actually go wrong. None of them carries key material or plaintext.

use std::fmt;

/// A mnemonic could not be parsed or generated.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum MnemonicError {
    /// The phrase does not have 12, 15, 18, 21 or 24 words.
    #[error("a mnemonic has 12, 15, 18, 21 or 24 words, not {0}")]
    WordCount(usize),
    /// A word is not in the BIP39 English word list.
    #[error("word {position} of the mnemonic is not in the BIP39 English word list")]
    UnknownWord {
        /// The word's position, counting from 1.
        position: usize,
    },
    /// Every word is valid but the checksum (the last word's low bits) is not.
    #[error("the mnemonic's checksum does not match: a word is wrong, missing or out of order")]
    Checksum,
    /// Entropy of a length BIP39 does not define.
    #[error("BIP39 entropy is 16, 20, 24, 28 or 32 bytes, not {0}")]
    EntropyLength(usize),
    /// The operating system's random number generator failed.
    #[error("the operating system's random number generator failed")]
    Rng,
}

/// A derivation path could not be parsed or built.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PathError {
    /// The path does not start with `m`.
    #[error("a derivation path starts with `m` (e.g. m/74'/0'/0'/0')")]
    MissingMaster,
    /// A component between two slashes is empty.
    #[error("component {position} of the derivation path is empty")]
    EmptyComponent {
        /// The component's position, counting from 1 after `m`.
        position: usize,
    },
    /// A component is not a decimal index below 2^31, optionally followed by
    /// `'` or `h`.
    #[error(
        "component {position} of the derivation path (`{component}`) is not an index: \
         write a decimal number below 2147483648 without leading zeros, followed by ' or h \
         when hardened"
    )]
    BadComponent {
        /// The component's position, counting from 1 after `m`.
        position: usize,
        /// The component as written (never secret: paths are public).
        component: String,
    },
    /// An index is 2^31 or more (the hardened flag is written with `'`).
    #[error("index {0} is out of range: indices are below 2147483648 (2^31)")]
    IndexOutOfRange(u64),
    /// More than 255 levels (BIP-32 serialises the depth in one byte).
    #[error("a derivation path has at most 255 levels")]
    TooDeep,
}

/// A key could not be derived.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DeriveError {
    /// The path itself is malformed.
    #[error(transparent)]
    Path(#[from] PathError),
    /// SLIP-0010 Ed25519 has no unhardened (public) derivation.
    #[error(
        "SLIP-0010 Ed25519 derives hardened children only: component {position} of {path} \
         ({index}) is not hardened; write {index}'"
    )]
    Unhardened {
        /// The whole path, as written canonically.
        path: String,
        /// The offending component's position, counting from 1 after `m`.
        position: usize,
        /// The unhardened index.
        index: u32,
    },
    /// The key type needs a cargo feature this build does not have.
    #[error(
        "key type {key_type} is not supported by this build: it needs the `{feature}` cargo feature"
    )]
    UnsupportedKeyType {
        /// The requested key type.
        key_type: crate::KeyType,
        /// The cargo feature that adds it.
        feature: &'static str,
    },
    /// BIP-32 derivation failed (an invalid child key; probability below 2^-127).
    #[error("secp256k1 derivation failed: {0}")]
    Secp256k1(String),
}

/// A key version the vault does not have a key for.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub struct KeyVersionError(pub u32);

impl fmt::Display for KeyVersionError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.0 < crate::MIN_KEY_VERSION {
            write!(
                f,
                "key version {} is not supported: versions start at 2 \
                 (version 1 is the legacy PBKDF2 format, which this vault deliberately cannot use)",
                self.0
            )
        } else {
            write!(
                f,
                "key version {} is out of range: the largest is {}",
                self.0,
                crate::path::MAX_KEY_VERSION
            )
        }
    }
}

/// Encryption failed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum EncryptError {
    /// No key exists for the requested version.
    #[error(transparent)]
    KeyVersion(#[from] KeyVersionError),
    /// The operating system's random number generator failed (no IV).
    #[error("the operating system's random number generator failed")]
    Rng,
    /// The plaintext is longer than AES-GCM can encrypt under one IV (64 GiB).
    #[error("the plaintext is too long for AES-256-GCM")]
    TooLong,
}

/// Decryption failed. Deliberately opaque: a wrong key, a tampered IV,
/// ciphertext or tag, bad base64, an unknown key version and a plaintext that
/// is not UTF-8 are indistinguishable, so the error tells an attacker nothing.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("decryption failed")]
pub struct DecryptError;

/// Re-encryption under another key version failed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RotateError {
    /// The blob could not be decrypted.
    #[error(transparent)]
    Decrypt(#[from] DecryptError),
    /// The plaintext could not be encrypted under the target version.
    #[error(transparent)]
    Encrypt(#[from] EncryptError),
}
