//! The entries of the store: what callers pass in, what they get back, what is
//! written to the file, and the rules every entry obeys.
//!
//! Validation happens here, before anything is written, so that the file only
//! ever holds entries the node can resolve and the CLI can print on one line.

use alknet_core::{Fingerprint, Identity};
use serde::{Deserialize, Serialize, Serializer};

use crate::token::Hash;

/// Longest identity id, in bytes.
pub const MAX_ID_LEN: usize = 128;
/// Longest scope, in bytes.
pub const MAX_SCOPE_LEN: usize = 128;
/// Longest token description, in bytes.
pub const MAX_DESCRIPTION_LEN: usize = 1024;

/// What to create a token for.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct TokenSpec {
    /// The identity id the token stands for; `None` gives `token:<prefix>`.
    pub id: Option<String>,
    /// Scopes granted to the identity.
    pub scopes: Vec<String>,
    /// When the token stops resolving, in seconds since the Unix epoch.
    pub expires_at: Option<u64>,
    /// Free text for operators (`""` when none).
    pub description: String,
}

/// A stored token as operators see it: everything but its hash.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct TokenInfo {
    /// The lookup prefix, e.g. `alk_3xYz`.
    pub prefix: String,
    /// The identity id the token stands for.
    pub id: String,
    /// The identity's scopes.
    pub scopes: Vec<String>,
    /// Expiry in seconds since the Unix epoch, if any.
    pub expires_at: Option<u64>,
    /// Free text for operators.
    pub description: String,
    /// Creation time in seconds since the Unix epoch.
    pub created_at: u64,
}

impl TokenInfo {
    /// Whether the token has expired at `now` (seconds since the Unix epoch).
    pub fn is_expired_at(&self, now: u64) -> bool {
        is_expired(self.expires_at, now)
    }
}

/// A configured peer: a client-certificate fingerprint and the identity it maps to.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct PeerInfo {
    /// The certificate fingerprint (`ed25519:<hex>` or `SHA256:<hex>`).
    #[serde(serialize_with = "serialize_display")]
    pub fingerprint: Fingerprint,
    /// The identity id.
    pub id: String,
    /// The identity's scopes.
    pub scopes: Vec<String>,
}

fn serialize_display<S: Serializer>(value: &Fingerprint, s: S) -> Result<S::Ok, S::Error> {
    s.collect_str(value)
}

/// Why an entry was refused before anything was written.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum InvalidEntry {
    /// The identity id is empty.
    #[error("identity id must not be empty")]
    EmptyId,
    /// The identity id is longer than [`MAX_ID_LEN`].
    #[error("identity id must be at most {MAX_ID_LEN} bytes")]
    IdTooLong,
    /// The identity id contains whitespace or a control character.
    #[error("identity id {0:?} must not contain whitespace or control characters")]
    IdCharacters(String),
    /// A scope is empty.
    #[error("scopes must not be empty strings")]
    EmptyScope,
    /// A scope is longer than [`MAX_SCOPE_LEN`].
    #[error("scope must be at most {MAX_SCOPE_LEN} bytes")]
    ScopeTooLong,
    /// A scope contains whitespace, a comma or a control character.
    #[error("scope {0:?} must not contain whitespace, commas or control characters")]
    ScopeCharacters(String),
    /// The description is longer than [`MAX_DESCRIPTION_LEN`].
    #[error("description must be at most {MAX_DESCRIPTION_LEN} bytes")]
    DescriptionTooLong,
    /// The description contains a control character (it is printed on one line).
    #[error("description must not contain control characters")]
    DescriptionCharacters,
    /// The expiry is not after the current time.
    #[error("expiry {expires_at} is not in the future (now is {now})")]
    ExpiryNotInFuture {
        /// The requested expiry, seconds since the Unix epoch.
        expires_at: u64,
        /// The current time, seconds since the Unix epoch.
        now: u64,
    },
}

pub(crate) fn validate_id(id: &str) -> Result<(), InvalidEntry> {
    if id.is_empty() {
        return Err(InvalidEntry::EmptyId);
    }
    if id.len() > MAX_ID_LEN {
        return Err(InvalidEntry::IdTooLong);
    }
    if id.chars().any(|c| c.is_whitespace() || c.is_control()) {
        return Err(InvalidEntry::IdCharacters(id.to_owned()));
    }
    Ok(())
}

pub(crate) fn validate_scopes(scopes: &[String]) -> Result<(), InvalidEntry> {
    for scope in scopes {
        if scope.is_empty() {
            return Err(InvalidEntry::EmptyScope);
        }
        if scope.len() > MAX_SCOPE_LEN {
            return Err(InvalidEntry::ScopeTooLong);
        }
        if scope
            .chars()
            .any(|c| c.is_whitespace() || c.is_control() || c == ',')
        {
            return Err(InvalidEntry::ScopeCharacters(scope.clone()));
        }
    }
    Ok(())
}

pub(crate) fn validate_description(description: &str) -> Result<(), InvalidEntry> {
    if description.len() > MAX_DESCRIPTION_LEN {
        return Err(InvalidEntry::DescriptionTooLong);
    }
    if description.chars().any(char::is_control) {
        return Err(InvalidEntry::DescriptionCharacters);
    }
    Ok(())
}

/// Scopes in the order given, without duplicates.
pub(crate) fn normalise_scopes(scopes: &[String]) -> Vec<String> {
    let mut out: Vec<String> = Vec::with_capacity(scopes.len());
    for scope in scopes {
        if !out.contains(scope) {
            out.push(scope.clone());
        }
    }
    out
}

pub(crate) fn is_expired(expires_at: Option<u64>, now: u64) -> bool {
    expires_at.is_some_and(|at| now >= at)
}

/// A token entry as written to the file (JSON), keyed by its prefix.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub(crate) struct TokenRecord {
    /// Hex SHA-256 of the whole token string.
    pub hash: String,
    pub id: String,
    pub scopes: Vec<String>,
    pub expires_at: Option<u64>,
    pub description: String,
    pub created_at: u64,
}

impl TokenRecord {
    pub fn info(&self, prefix: &str) -> TokenInfo {
        TokenInfo {
            prefix: prefix.to_owned(),
            id: self.id.clone(),
            scopes: self.scopes.clone(),
            expires_at: self.expires_at,
            description: self.description.clone(),
            created_at: self.created_at,
        }
    }

    /// The stored hash, or `None` if the record is damaged.
    pub fn hash(&self) -> Option<Hash> {
        let mut out = [0u8; 32];
        hex::decode_to_slice(&self.hash, &mut out).ok()?;
        Some(out)
    }

    pub fn identity(&self) -> Identity {
        Identity::new(self.id.clone(), self.scopes.iter().cloned())
    }
}

/// A peer entry as written to the file (JSON), keyed by the fingerprint's text form.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub(crate) struct PeerRecord {
    pub id: String,
    pub scopes: Vec<String>,
}

impl PeerRecord {
    pub fn identity(&self) -> Identity {
        Identity::new(self.id.clone(), self.scopes.iter().cloned())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_scopes_and_descriptions_are_checked() {
        assert_eq!(validate_id(""), Err(InvalidEntry::EmptyId));
        assert!(validate_id("token:alk_3xYz").is_ok());
        assert!(matches!(
            validate_id("two words"),
            Err(InvalidEntry::IdCharacters(_))
        ));
        assert_eq!(
            validate_id(&"x".repeat(MAX_ID_LEN + 1)),
            Err(InvalidEntry::IdTooLong)
        );
        assert!(validate_scopes(&["admin".into(), "fs:read".into()]).is_ok());
        assert_eq!(validate_scopes(&["".into()]), Err(InvalidEntry::EmptyScope));
        assert!(matches!(
            validate_scopes(&["a,b".into()]),
            Err(InvalidEntry::ScopeCharacters(_))
        ));
        assert!(validate_description("created by alknet init").is_ok());
        assert_eq!(
            validate_description("two\nlines"),
            Err(InvalidEntry::DescriptionCharacters)
        );
    }

    #[test]
    fn expiry_is_inclusive_of_the_expiry_second() {
        assert!(!is_expired(None, u64::MAX));
        assert!(!is_expired(Some(100), 99));
        assert!(is_expired(Some(100), 100));
        assert!(is_expired(Some(100), 101));
    }

    #[test]
    fn scopes_keep_their_order_without_duplicates() {
        let scopes = ["b", "a", "b"].map(String::from);
        assert_eq!(normalise_scopes(&scopes), ["b", "a"]);
    }
}
