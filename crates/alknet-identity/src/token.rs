//! Token strings: generation, prefix, hash and the constant-time comparison.
//!
//! Kept apart from the database so that the secret-handling rules live in one
//! small place: a token exists in memory only between its generation and its
//! hashing, and hashes are compared without early exit.

use rand_core::{OsRng, RngCore};
use subtle::ConstantTimeEq;

/// Every token starts with this marker, so that a leaked token is recognisable
/// (secret scanners, logs) and a token is never confused with another string.
pub const TOKEN_PREFIX: &str = "alk_";

/// The length, in characters, of a token's lookup prefix: `alk_` and four base58
/// characters, e.g. `alk_3xYz`.
pub const TOKEN_PREFIX_LEN: usize = 8;

/// Random bytes in a token.
pub(crate) const TOKEN_ENTROPY_BYTES: usize = 32;

/// A SHA-256 digest.
pub(crate) type Hash = [u8; 32];

/// Fills a token's entropy from the operating system's random number generator.
pub(crate) fn os_random() -> Result<[u8; TOKEN_ENTROPY_BYTES], rand_core::Error> {
    let mut bytes = [0u8; TOKEN_ENTROPY_BYTES];
    OsRng.try_fill_bytes(&mut bytes)?;
    Ok(bytes)
}

/// The token for `entropy`: `alk_` followed by its base58 encoding.
pub(crate) fn encode(entropy: &[u8; TOKEN_ENTROPY_BYTES]) -> String {
    format!("{TOKEN_PREFIX}{}", bs58::encode(entropy).into_string())
}

/// The lookup prefix of `token` (its first [`TOKEN_PREFIX_LEN`] characters), or
/// `None` when `token` is not an alknet token at all. The prefix finds a stored
/// entry; it never authenticates by itself.
pub fn token_prefix(token: &str) -> Option<&str> {
    if !token.starts_with(TOKEN_PREFIX) {
        return None;
    }
    // `get` rather than indexing: a presented token is arbitrary input and the
    // eighth byte may fall inside a multi-byte character.
    token.get(..TOKEN_PREFIX_LEN)
}

/// SHA-256 of the whole token string.
pub(crate) fn hash(token: &str) -> Hash {
    let digest = ring::digest::digest(&ring::digest::SHA256, token.as_bytes());
    let mut out = [0u8; 32];
    out.copy_from_slice(digest.as_ref());
    out
}

/// Whether two hashes are equal, in time independent of where they differ.
pub(crate) fn hashes_match(presented: &Hash, stored: &Hash) -> bool {
    presented.ct_eq(stored).into()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_token_is_alk_and_base58_of_32_random_bytes() {
        let entropy = os_random().unwrap();
        let token = encode(&entropy);
        let body = token.strip_prefix("alk_").expect("marker");
        let decoded = bs58::decode(body).into_vec().unwrap();
        assert_eq!(decoded, entropy);
        assert_eq!(decoded.len(), 32);
        // 32 bytes are 43 or 44 base58 digits (fewer only with leading zero bytes).
        assert!((40..=44).contains(&body.len()), "{token}");
        assert!(
            body.chars()
                .all(|c| c.is_ascii_alphanumeric() && !"0OIl".contains(c))
        );
        // Two draws differ.
        assert_ne!(os_random().unwrap(), entropy);
    }

    #[test]
    fn the_prefix_is_the_first_eight_characters_of_an_alknet_token() {
        assert_eq!(token_prefix("alk_3xYzabcdef"), Some("alk_3xYz"));
        assert_eq!(token_prefix("alk_3xYz"), Some("alk_3xYz"));
        assert_eq!(token_prefix("alk_3xY"), None);
        assert_eq!(token_prefix("bearer_3xYzabcd"), None);
        assert_eq!(token_prefix(""), None);
        // A multi-byte character across the boundary is not a panic.
        assert_eq!(token_prefix("alk_abcé"), None);
    }

    #[test]
    fn hashes_compare_equal_only_when_equal() {
        let a = hash("alk_one");
        assert!(hashes_match(&a, &hash("alk_one")));
        assert!(!hashes_match(&a, &hash("alk_two")));
        let mut flipped = a;
        flipped[31] ^= 1;
        assert!(!hashes_match(&flipped, &a));
    }
}
