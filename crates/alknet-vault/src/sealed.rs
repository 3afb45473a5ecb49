//! `EncryptedData`: the frozen JSON format of a sealed credential.
//!
//! ```json
//! { "key_version": 2,
//!   "salt": "<base64 of 32 random bytes>",
//!   "iv":   "<base64 of 12 bytes>",
//!   "data": "<base64 of ciphertext ‖ 16-byte GCM tag>" }
//! ```
//!
//! - The cipher is AES-256-GCM with no associated data, under the vault key
//!   of `key_version` (derived at `m/74'/2'/0'/{key_version-2}'`).
//! - `iv` is 12 bytes from the operating system's CSPRNG, fresh for every
//!   encryption. With random 96-bit IVs, NIST SP 800-38D §8.3 allows 2^32
//!   encryptions under one key; a key version is expected to see far fewer,
//!   and [`crate::Vault::rotate`] moves data to a new version.
//! - `salt` is 32 random bytes that v2 does not use; it is kept (and required
//!   to be 32 bytes) so that the format stays what older implementations
//!   wrote.
//! - Base64 is the standard alphabet with padding (RFC 4648 §4), decoded
//!   strictly.
//! - The plaintext is UTF-8 text.
//!
//! Decryption derives the key for the blob's own `key_version`. Every failure
//! — a wrong key, any flipped bit in `iv`, ciphertext or tag, bad base64, a
//! wrong length, plaintext that is not UTF-8 — is the same [`DecryptError`]:
//! the error carries nothing an attacker could learn from.

use aes_gcm::aead::{Aead, KeyInit};
use aes_gcm::{Aes256Gcm, Key, Nonce};
use base64::Engine;
use base64::engine::general_purpose::STANDARD as BASE64;
use rand_core::{OsRng, RngCore};
use serde::{Deserialize, Serialize};
use zeroize::{Zeroize, Zeroizing};

use crate::error::{DecryptError, EncryptError};
use crate::keys::{AesKey, Secret};

/// The key version new data is sealed with.
pub const CURRENT_KEY_VERSION: u32 = 2;

/// The lowest key version the vault has a key for (v1 is the legacy PBKDF2
/// format, deliberately unsupported).
pub const MIN_KEY_VERSION: u32 = 2;

/// Length of the unused (format-compatibility) salt.
pub const SALT_LEN: usize = 32;
/// Length of the AES-GCM IV (nonce).
pub const IV_LEN: usize = 12;
/// Length of the AES-GCM authentication tag at the end of `data`.
pub const TAG_LEN: usize = 16;

/// A sealed secret, exactly as stored and exchanged (see the module docs).
/// The fields hold the base64 text as found, so that parsing never fails on
/// their content: a malformed field is found (and reported as the one
/// [`DecryptError`]) at decryption.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct EncryptedData {
    /// Which vault key sealed the data.
    pub key_version: u32,
    /// Base64 of 32 random bytes, unused by v2.
    pub salt: String,
    /// Base64 of the 12-byte IV.
    pub iv: String,
    /// Base64 of the ciphertext followed by the 16-byte GCM tag.
    pub data: String,
}

impl EncryptedData {
    /// Parses the JSON form. Any parse failure is the opaque [`DecryptError`]
    /// (the caller is about to decrypt; what was wrong is nobody's business).
    pub fn from_json(json: &[u8]) -> Result<Self, DecryptError> {
        serde_json::from_slice(json).map_err(|_| DecryptError)
    }

    /// The compact JSON form.
    pub fn to_json(&self) -> String {
        // Serialising four plain fields cannot fail.
        serde_json::to_string(self).unwrap_or_else(|_| unreachable!("plain struct serialises"))
    }

    /// Seals `plaintext` under `key`, with a fresh IV and salt from the OS.
    pub(crate) fn seal(key: &AesKey, plaintext: &[u8]) -> Result<Self, EncryptError> {
        let mut iv = [0u8; IV_LEN];
        let mut salt = [0u8; SALT_LEN];
        OsRng
            .try_fill_bytes(&mut iv)
            .and_then(|()| OsRng.try_fill_bytes(&mut salt))
            .map_err(|_| EncryptError::Rng)?;
        let cipher = Aes256Gcm::new(Key::<Aes256Gcm>::from_slice(key.secret_bytes()));
        let data = cipher
            .encrypt(Nonce::from_slice(&iv), plaintext)
            .map_err(|_| EncryptError::TooLong)?;
        Ok(Self {
            key_version: key.version(),
            salt: BASE64.encode(salt),
            iv: BASE64.encode(iv),
            data: BASE64.encode(data),
        })
    }

    /// Opens the blob with `key`, which must be the key of `self.key_version`
    /// (the caller derives it).
    pub(crate) fn open(&self, key: &AesKey) -> Result<Secret, DecryptError> {
        if key.version() != self.key_version {
            return Err(DecryptError);
        }
        let salt = decode(&self.salt)?;
        let iv = decode(&self.iv)?;
        let data = decode(&self.data)?;
        if salt.len() != SALT_LEN || iv.len() != IV_LEN || data.len() < TAG_LEN {
            return Err(DecryptError);
        }
        let cipher = Aes256Gcm::new(Key::<Aes256Gcm>::from_slice(key.secret_bytes()));
        let plaintext = cipher
            .decrypt(Nonce::from_slice(&iv), data.as_slice())
            .map_err(|_| DecryptError)?;
        match String::from_utf8(plaintext) {
            Ok(text) => Ok(Secret::new(text)),
            Err(error) => {
                error.into_bytes().zeroize();
                Err(DecryptError)
            }
        }
    }
}

fn decode(field: &str) -> Result<Zeroizing<Vec<u8>>, DecryptError> {
    BASE64
        .decode(field)
        .map(Zeroizing::new)
        .map_err(|_| DecryptError)
}
