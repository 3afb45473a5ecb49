//! Certificate fingerprints: how a peer's certificate names its principal.
//!
//! An Ed25519 certificate is named by its key (`ed25519:<hex>`), so a node keeps
//! its id when its certificate is re-issued; any other certificate is named by a
//! hash of its DER (`SHA256:<hex>`). The format is shared with the original
//! alknet design and appears in configuration, peer entries and logs.
//!
//! SSH public keys share the space: an Ed25519 SSH key is the same
//! `ed25519:<hex>` as a certificate with that key, so one peer entry is one
//! identity on every protocol; any other SSH key is named as `ssh-keygen -l`
//! names it, `SHA256:<base64>` over its key blob (43 characters, where a
//! certificate hash has 64 hexadecimal digits).

use std::fmt;
use std::str::FromStr;

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD_NO_PAD;
use x509_parser::prelude::{FromDer, X509Certificate};

/// OID of Ed25519 public keys (RFC 8410).
const ED25519_OID: &str = "1.3.101.112";

/// The fingerprint of a certificate presented in a TLS handshake.
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Fingerprint {
    /// The certificate's key is Ed25519: the 32-byte public key.
    Ed25519([u8; 32]),
    /// Any other certificate: SHA-256 over its DER encoding.
    Sha256([u8; 32]),
    /// Any other SSH public key: SHA-256 over its wire-format key blob.
    SshKey([u8; 32]),
}

/// Why a fingerprint string could not be parsed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum FingerprintParseError {
    /// The prefix was neither `ed25519:` nor `SHA256:`.
    #[error("fingerprint must start with `ed25519:` or `SHA256:`")]
    UnknownPrefix,
    /// The part after the prefix was neither 64 hexadecimal digits nor, after
    /// `SHA256:`, 43 characters of unpadded base64.
    #[error(
        "fingerprint must have 64 hexadecimal digits after the prefix (or, for an SSH key, `SHA256:` and 43 base64 characters as `ssh-keygen -l` prints)"
    )]
    BadHex,
}

impl Fingerprint {
    /// Computes the fingerprint of a DER certificate. A certificate whose DER does
    /// not parse, or whose key is not Ed25519, is named by its SHA-256 hash, so
    /// every presented certificate has a stable name.
    pub fn of_certificate(der: &[u8]) -> Self {
        if let Ok((_, cert)) = X509Certificate::from_der(der) {
            let spki = cert.public_key();
            if spki.algorithm.algorithm.to_id_string() == ED25519_OID
                && let Ok(key) = <[u8; 32]>::try_from(spki.subject_public_key.data.as_ref())
            {
                return Self::Ed25519(key);
            }
        }
        let digest = ring::digest::digest(&ring::digest::SHA256, der);
        let mut hash = [0u8; 32];
        hash.copy_from_slice(digest.as_ref());
        Self::Sha256(hash)
    }
}

impl fmt::Display for Fingerprint {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Ed25519(key) => write!(f, "ed25519:{}", hex::encode(key)),
            Self::Sha256(hash) => write!(f, "SHA256:{}", hex::encode(hash)),
            Self::SshKey(hash) => write!(f, "SHA256:{}", STANDARD_NO_PAD.encode(hash)),
        }
    }
}

impl fmt::Debug for Fingerprint {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(self, f)
    }
}

impl FromStr for Fingerprint {
    type Err = FingerprintParseError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let (make, hex_part): (fn([u8; 32]) -> Self, &str) =
            if let Some(rest) = s.strip_prefix("ed25519:") {
                (Self::Ed25519, rest)
            } else if let Some(rest) = s.strip_prefix("SHA256:") {
                if rest.len() != 64 {
                    return ssh_key_hash(rest).map(Self::SshKey);
                }
                (Self::Sha256, rest)
            } else {
                return Err(FingerprintParseError::UnknownPrefix);
            };
        let mut bytes = [0u8; 32];
        hex::decode_to_slice(hex_part, &mut bytes).map_err(|_| FingerprintParseError::BadHex)?;
        Ok(make(bytes))
    }
}

/// The hash of an `ssh-keygen -l` style `SHA256:` fingerprint.
fn ssh_key_hash(base64: &str) -> Result<[u8; 32], FingerprintParseError> {
    let bytes = STANDARD_NO_PAD
        .decode(base64.trim_end_matches('='))
        .map_err(|_| FingerprintParseError::BadHex)?;
    <[u8; 32]>::try_from(bytes.as_slice()).map_err(|_| FingerprintParseError::BadHex)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn display_and_parse_round_trip() {
        for fp in [
            Fingerprint::Ed25519([0xab; 32]),
            Fingerprint::Sha256([0x01; 32]),
            Fingerprint::SshKey([0x02; 32]),
        ] {
            assert_eq!(fp.to_string().parse::<Fingerprint>().unwrap(), fp);
        }
        assert_eq!(
            Fingerprint::Ed25519([0xab; 32]).to_string(),
            format!("ed25519:{}", "ab".repeat(32))
        );
    }

    #[test]
    fn ssh_keys_are_named_as_ssh_keygen_names_them() {
        let fp = Fingerprint::SshKey([0xff; 32]);
        assert_eq!(
            fp.to_string(),
            "SHA256://////////////////////////////////////////8"
        );
        assert_eq!(fp.to_string().parse::<Fingerprint>().unwrap(), fp);
        // Padding, which `ssh-keygen` leaves out, is accepted too.
        assert_eq!(
            "SHA256://////////////////////////////////////////8="
                .parse::<Fingerprint>()
                .unwrap(),
            fp
        );
        assert_eq!(
            "SHA256://///////////////////////////////////////".parse::<Fingerprint>(),
            Err(FingerprintParseError::BadHex)
        );
    }

    #[test]
    fn malformed_strings_are_rejected() {
        assert_eq!(
            "md5:00".parse::<Fingerprint>(),
            Err(FingerprintParseError::UnknownPrefix)
        );
        assert_eq!(
            "ed25519:zz".parse::<Fingerprint>(),
            Err(FingerprintParseError::BadHex)
        );
        assert_eq!(
            "SHA256:abcd!".parse::<Fingerprint>(),
            Err(FingerprintParseError::BadHex)
        );
    }

    #[test]
    fn non_certificate_bytes_hash_instead_of_failing() {
        let fp = Fingerprint::of_certificate(b"not a certificate");
        assert!(matches!(fp, Fingerprint::Sha256(_)));
        assert!(fp.to_string().starts_with("SHA256:"));
    }

    #[test]
    fn ecdsa_certificate_is_named_by_its_der_hash() {
        let key = rcgen::KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256).unwrap();
        let cert = rcgen::CertificateParams::new(vec!["x".into()])
            .unwrap()
            .self_signed(&key)
            .unwrap();
        let expected = ring::digest::digest(&ring::digest::SHA256, cert.der());
        assert_eq!(
            Fingerprint::of_certificate(cert.der()).to_string(),
            format!("SHA256:{}", hex::encode(expected))
        );
    }
}
