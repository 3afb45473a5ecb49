//! A secret (the node's mnemonic) sealed at rest under an operator's
//! passphrase: Argon2id stretches the passphrase into an AES-256-GCM key.
//!
//! This is not [`crate::EncryptedData`]: that format is sealed with keys
//! *derived from* the mnemonic, so it cannot protect the mnemonic itself.
//! The format is alknet's own, and every parameter needed to open it is
//! stored with it, so the parameters can be raised later without breaking
//! existing files:
//!
//! ```json
//! {
//!   "format": "alknet-sealed-mnemonic",
//!   "version": 1,
//!   "kdf": {
//!     "algorithm": "argon2id",
//!     "argon2_version": 19,
//!     "memory_kib": 65536,
//!     "iterations": 3,
//!     "parallelism": 4,
//!     "salt": "<base64 of 16 random bytes>"
//!   },
//!   "cipher": "aes-256-gcm",
//!   "iv": "<base64 of 12 random bytes>",
//!   "data": "<base64 of ciphertext ‖ 16-byte tag>"
//! }
//! ```
//!
//! The defaults ([`Argon2Params::RECOMMENDED`]) are RFC 9106 §4's second
//! recommended option — Argon2id, 64 MiB, 3 passes, 4 lanes, 128-bit salt,
//! 256-bit output — sized for machines that cannot spend 2 GiB on the first.
//! Changing a parameter in the file changes the derived key, so a tampered
//! header fails authentication like a wrong passphrase does. Parameters far
//! beyond any sane cost are refused before any work, so a crafted file cannot
//! make the node allocate unbounded memory.

use aes_gcm::aead::{Aead, KeyInit};
use aes_gcm::{Aes256Gcm, Key, Nonce};
use argon2::{Algorithm, Argon2, Params, Version};
use base64::Engine;
use base64::engine::general_purpose::STANDARD as BASE64;
use rand_core::{OsRng, RngCore};
use serde::{Deserialize, Serialize};
use zeroize::{Zeroize, Zeroizing};

use crate::keys::Secret;

/// The `format` field's value.
pub const FORMAT: &str = "alknet-sealed-mnemonic";
/// The `version` field's value.
pub const FORMAT_VERSION: u32 = 1;
/// The `kdf.algorithm` field's value.
pub const KDF_ALGORITHM: &str = "argon2id";
/// The `cipher` field's value.
pub const CIPHER: &str = "aes-256-gcm";
/// Argon2 version 1.3 (0x13), the only one written or read.
pub const ARGON2_VERSION: u32 = 0x13;
/// Length of the Argon2 salt written.
pub const SALT_LEN: usize = 16;

/// Why a passphrase-sealed secret could not be sealed or opened.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum AtRestError {
    /// The passphrase is wrong, or the file was altered. (AES-GCM cannot tell
    /// the two apart, and neither should an attacker.)
    #[error("wrong passphrase (or the sealed file is damaged)")]
    WrongPassphrase,
    /// An empty passphrase was given to seal with.
    #[error("the passphrase is empty")]
    EmptyPassphrase,
    /// The document is not this format (or not this version of it).
    #[error("not a sealed mnemonic: {0}")]
    Format(String),
    /// The stored Argon2id parameters are outside what this vault accepts.
    #[error("unsupported key-derivation parameters: {0}")]
    Parameters(String),
    /// The operating system's random number generator failed.
    #[error("the operating system's random number generator failed")]
    Rng,
}

/// Argon2id cost parameters.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Argon2Params {
    /// Memory in KiB.
    pub memory_kib: u32,
    /// Passes over the memory.
    pub iterations: u32,
    /// Lanes.
    pub parallelism: u32,
}

impl Argon2Params {
    /// RFC 9106 §4, second recommended option: 64 MiB, 3 passes, 4 lanes.
    pub const RECOMMENDED: Self = Self {
        memory_kib: 64 * 1024,
        iterations: 3,
        parallelism: 4,
    };

    /// The most memory a stored parameter set may ask for (4 GiB).
    pub const MAX_MEMORY_KIB: u32 = 4 * 1024 * 1024;
    /// The most passes a stored parameter set may ask for.
    pub const MAX_ITERATIONS: u32 = 64;
    /// The most lanes a stored parameter set may ask for.
    pub const MAX_PARALLELISM: u32 = 64;

    /// A one-line description for progress messages, e.g.
    /// `Argon2id, 64 MiB, 3 passes, 4 lanes`.
    pub fn describe(&self) -> String {
        let memory = if self.memory_kib.is_multiple_of(1024) {
            format!("{} MiB", self.memory_kib / 1024)
        } else {
            format!("{} KiB", self.memory_kib)
        };
        format!(
            "Argon2id, {memory}, {} passes, {} lanes",
            self.iterations, self.parallelism
        )
    }

    fn argon2(&self) -> Result<Argon2<'static>, AtRestError> {
        if self.memory_kib > Self::MAX_MEMORY_KIB
            || self.iterations > Self::MAX_ITERATIONS
            || self.parallelism > Self::MAX_PARALLELISM
        {
            return Err(AtRestError::Parameters(format!(
                "{} exceeds the limits ({} MiB, {} passes, {} lanes)",
                self.describe(),
                Self::MAX_MEMORY_KIB / 1024,
                Self::MAX_ITERATIONS,
                Self::MAX_PARALLELISM
            )));
        }
        let params = Params::new(self.memory_kib, self.iterations, self.parallelism, Some(32))
            .map_err(|e| AtRestError::Parameters(format!("{}: {e}", self.describe())))?;
        Ok(Argon2::new(Algorithm::Argon2id, Version::V0x13, params))
    }
}

impl Default for Argon2Params {
    fn default() -> Self {
        Self::RECOMMENDED
    }
}

/// The stored key-derivation parameters.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct KdfRecord {
    /// Always `argon2id`.
    pub algorithm: String,
    /// Always 19 (Argon2 v1.3).
    pub argon2_version: u32,
    /// Memory in KiB.
    pub memory_kib: u32,
    /// Passes.
    pub iterations: u32,
    /// Lanes.
    pub parallelism: u32,
    /// Base64 of the salt.
    pub salt: String,
}

/// A passphrase-sealed secret, as stored (see the module docs).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PassphraseSealed {
    /// Always [`FORMAT`].
    pub format: String,
    /// Always [`FORMAT_VERSION`].
    pub version: u32,
    /// How the key is derived from the passphrase.
    pub kdf: KdfRecord,
    /// Always [`CIPHER`].
    pub cipher: String,
    /// Base64 of the 12-byte IV.
    pub iv: String,
    /// Base64 of ciphertext ‖ tag.
    pub data: String,
}

impl PassphraseSealed {
    /// Seals `plaintext` under `passphrase` with fresh salt and IV.
    pub fn seal(
        plaintext: &str,
        passphrase: &str,
        params: Argon2Params,
    ) -> Result<Self, AtRestError> {
        if passphrase.is_empty() {
            return Err(AtRestError::EmptyPassphrase);
        }
        let mut salt = [0u8; SALT_LEN];
        let mut iv = [0u8; 12];
        OsRng
            .try_fill_bytes(&mut salt)
            .and_then(|()| OsRng.try_fill_bytes(&mut iv))
            .map_err(|_| AtRestError::Rng)?;
        let key = stretch(passphrase, &salt, &params)?;
        let cipher = Aes256Gcm::new(Key::<Aes256Gcm>::from_slice(key.as_ref()));
        let data = cipher
            .encrypt(Nonce::from_slice(&iv), plaintext.as_bytes())
            .map_err(|_| AtRestError::Parameters("plaintext too long".into()))?;
        Ok(Self {
            format: FORMAT.to_owned(),
            version: FORMAT_VERSION,
            kdf: KdfRecord {
                algorithm: KDF_ALGORITHM.to_owned(),
                argon2_version: ARGON2_VERSION,
                memory_kib: params.memory_kib,
                iterations: params.iterations,
                parallelism: params.parallelism,
                salt: BASE64.encode(salt),
            },
            cipher: CIPHER.to_owned(),
            iv: BASE64.encode(iv),
            data: BASE64.encode(data),
        })
    }

    /// Parses the JSON form and checks the header (not the passphrase).
    pub fn from_json(json: &[u8]) -> Result<Self, AtRestError> {
        let sealed: Self = serde_json::from_slice(json).map_err(|e| {
            AtRestError::Format(format!(
                "invalid JSON document at line {}, column {}",
                e.line(),
                e.column()
            ))
        })?;
        sealed.check_header()?;
        Ok(sealed)
    }

    /// The pretty JSON form, as written to disk.
    pub fn to_json_pretty(&self) -> String {
        serde_json::to_string_pretty(self)
            .unwrap_or_else(|_| unreachable!("plain struct serialises"))
    }

    /// The stored Argon2id parameters.
    pub fn params(&self) -> Argon2Params {
        Argon2Params {
            memory_kib: self.kdf.memory_kib,
            iterations: self.kdf.iterations,
            parallelism: self.kdf.parallelism,
        }
    }

    fn check_header(&self) -> Result<(), AtRestError> {
        if self.format != FORMAT || self.version != FORMAT_VERSION {
            return Err(AtRestError::Format(format!(
                "expected format `{FORMAT}` version {FORMAT_VERSION}"
            )));
        }
        if self.kdf.algorithm != KDF_ALGORITHM || self.kdf.argon2_version != ARGON2_VERSION {
            return Err(AtRestError::Parameters(
                "only Argon2id version 19 (v1.3) is supported".into(),
            ));
        }
        if self.cipher != CIPHER {
            return Err(AtRestError::Format(format!("expected cipher `{CIPHER}`")));
        }
        Ok(())
    }

    /// Opens the secret. A wrong passphrase and a tampered file are the same
    /// [`AtRestError::WrongPassphrase`]. Costs one Argon2id run at the stored
    /// parameters ([`Self::params`]), which is slow by design.
    pub fn open(&self, passphrase: &str) -> Result<Secret, AtRestError> {
        self.check_header()?;
        let params = self.params();
        // Validate the parameters before anything else is decoded.
        params.argon2()?;
        let salt = BASE64
            .decode(&self.kdf.salt)
            .map_err(|_| AtRestError::WrongPassphrase)?;
        let iv = BASE64
            .decode(&self.iv)
            .map_err(|_| AtRestError::WrongPassphrase)?;
        let data = BASE64
            .decode(&self.data)
            .map_err(|_| AtRestError::WrongPassphrase)?;
        if iv.len() != 12 || salt.len() < argon2::MIN_SALT_LEN || data.len() < 16 {
            return Err(AtRestError::WrongPassphrase);
        }
        let key = stretch(passphrase, &salt, &params)?;
        let cipher = Aes256Gcm::new(Key::<Aes256Gcm>::from_slice(key.as_ref()));
        let plaintext = cipher
            .decrypt(Nonce::from_slice(&iv), data.as_slice())
            .map_err(|_| AtRestError::WrongPassphrase)?;
        match String::from_utf8(plaintext) {
            Ok(text) => Ok(Secret::new(text)),
            Err(error) => {
                error.into_bytes().zeroize();
                Err(AtRestError::WrongPassphrase)
            }
        }
    }
}

fn stretch(
    passphrase: &str,
    salt: &[u8],
    params: &Argon2Params,
) -> Result<Zeroizing<[u8; 32]>, AtRestError> {
    let mut key = Zeroizing::new([0u8; 32]);
    params
        .argon2()?
        .hash_password_into(passphrase.as_bytes(), salt, key.as_mut())
        .map_err(|e| AtRestError::Parameters(e.to_string()))?;
    Ok(key)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Cheap parameters: these tests check the format, not the cost.
    const FAST: Argon2Params = Argon2Params {
        memory_kib: 64,
        iterations: 1,
        parallelism: 1,
    };

    #[test]
    fn seal_and_open_round_trip_and_store_their_parameters() {
        let sealed = PassphraseSealed::seal("the words", "correct horse", FAST).unwrap();
        assert_eq!(sealed.params(), FAST);
        let json = sealed.to_json_pretty();
        assert!(json.contains("\"memory_kib\": 64"), "{json}");
        assert!(!json.contains("the words"));
        let parsed = PassphraseSealed::from_json(json.as_bytes()).unwrap();
        assert_eq!(parsed.open("correct horse").unwrap().expose(), "the words");
        assert_eq!(
            parsed.open("correct horse ").unwrap_err(),
            AtRestError::WrongPassphrase
        );
    }

    #[test]
    fn a_tampered_header_or_body_is_a_wrong_passphrase() {
        let sealed = PassphraseSealed::seal("the words", "pw", FAST).unwrap();
        let mut more_memory = sealed.clone();
        more_memory.kdf.memory_kib = 128;
        let mut other_salt = sealed.clone();
        other_salt.kdf.salt = BASE64.encode([7u8; SALT_LEN]);
        let mut flipped = sealed.clone();
        let mut data = BASE64.decode(&flipped.data).unwrap();
        data[0] ^= 1;
        flipped.data = BASE64.encode(data);
        let mut bad_base64 = sealed.clone();
        bad_base64.iv = "!!!!".into();
        for tampered in [more_memory, other_salt, flipped, bad_base64] {
            assert_eq!(
                tampered.open("pw").unwrap_err(),
                AtRestError::WrongPassphrase
            );
        }
    }

    #[test]
    fn absurd_parameters_are_refused_before_any_work() {
        let mut sealed = PassphraseSealed::seal("x", "pw", FAST).unwrap();
        sealed.kdf.memory_kib = u32::MAX;
        assert!(matches!(
            sealed.open("pw").unwrap_err(),
            AtRestError::Parameters(_)
        ));
        sealed.kdf.memory_kib = 64;
        sealed.kdf.iterations = 1_000_000;
        assert!(matches!(
            sealed.open("pw").unwrap_err(),
            AtRestError::Parameters(_)
        ));
        assert_eq!(
            PassphraseSealed::seal("x", "", FAST).unwrap_err(),
            AtRestError::EmptyPassphrase
        );
    }

    #[test]
    fn other_documents_are_not_sealed_mnemonics() {
        for doc in [
            &b"{}"[..],
            b"not json",
            br#"{"key_version":2,"salt":"","iv":"","data":""}"#,
        ] {
            assert!(matches!(
                PassphraseSealed::from_json(doc).unwrap_err(),
                AtRestError::Format(_)
            ));
        }
        let mut sealed = PassphraseSealed::seal("x", "pw", FAST).unwrap();
        sealed.version = 2;
        let json = sealed.to_json_pretty();
        assert!(matches!(
            PassphraseSealed::from_json(json.as_bytes()).unwrap_err(),
            AtRestError::Format(_)
        ));
    }

    #[test]
    fn recommended_parameters_are_rfc_9106s_second_option() {
        assert_eq!(
            Argon2Params::RECOMMENDED.describe(),
            "Argon2id, 64 MiB, 3 passes, 4 lanes"
        );
    }
}
