//! The node's Ed25519 key: its identity and the key behind its certificate.
//!
//! The key lives in the data directory as PKCS#8 PEM with mode 0600. The vault
//! derives it from a mnemonic instead ([`NodeKey::from_seed`]); either way the
//! node id is `ed25519:<hex of the public key>` and peers pin that, not the
//! certificate, so certificates can be re-issued freely.

use std::fmt;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::str::FromStr;

use ed25519_dalek::SigningKey;
use ed25519_dalek::pkcs8::{DecodePrivateKey, EncodePrivateKey};
use rustls_pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer};

use crate::fingerprint::{Fingerprint, FingerprintParseError};

/// A node's id: its Ed25519 public key, written `ed25519:<lowercase hex>`.
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct NodeId(pub [u8; 32]);

impl NodeId {
    /// The fingerprint a certificate over this key has.
    pub fn fingerprint(&self) -> Fingerprint {
        Fingerprint::Ed25519(self.0)
    }
}

impl fmt::Display for NodeId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(&self.fingerprint(), f)
    }
}

impl fmt::Debug for NodeId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(self, f)
    }
}

impl FromStr for NodeId {
    type Err = FingerprintParseError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s.parse()? {
            Fingerprint::Ed25519(key) => Ok(Self(key)),
            Fingerprint::Sha256(_) | Fingerprint::SshKey(_) => {
                Err(FingerprintParseError::UnknownPrefix)
            }
        }
    }
}

/// The algorithm of a private key that is not Ed25519, in words (the
/// decoder's error names it by OID only).
fn other_algorithm(pem: &str) -> Option<&'static str> {
    // OpenSSL's traditional formats say it in the label.
    if pem.contains("-----BEGIN EC PRIVATE KEY-----") {
        return Some("an ECDSA");
    }
    if pem.contains("-----BEGIN RSA PRIVATE KEY-----") {
        return Some("an RSA");
    }
    let der = pem::parse(pem).ok()?;
    let info = ed25519_dalek::pkcs8::PrivateKeyInfo::try_from(der.contents()).ok()?;
    match info.algorithm.oid.to_string().as_str() {
        "1.2.840.10045.2.1" => Some("an ECDSA"),
        "1.2.840.113549.1.1.1" | "1.2.840.113549.1.1.10" => Some("an RSA"),
        "1.3.101.113" => Some("an Ed448"),
        "1.3.101.110" => Some("an X25519"),
        "1.3.101.111" => Some("an X448"),
        _ => None,
    }
}

/// Errors loading, storing or using key material.
#[derive(Debug, thiserror::Error)]
pub enum KeyError {
    /// Reading or writing a key or certificate file failed.
    #[error("{path}: {source}")]
    Io {
        /// The file concerned.
        path: PathBuf,
        /// The underlying error.
        source: std::io::Error,
    },
    /// A key file did not hold what it should.
    #[error("{path}: {reason}")]
    Malformed {
        /// The file concerned.
        path: PathBuf,
        /// What is wrong with it.
        reason: String,
    },
    /// Building a certificate failed.
    #[error("cannot build certificate: {0}")]
    Certificate(#[from] rcgen::Error),
}

/// The node's Ed25519 signing key. `Debug` never prints key material.
#[derive(Clone)]
pub struct NodeKey {
    signing: SigningKey,
}

impl fmt::Debug for NodeKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("NodeKey")
            .field("node_id", &self.node_id())
            .finish_non_exhaustive()
    }
}

/// A certificate chain with the PKCS#8 DER of its private key.
pub struct CertificateAndKey {
    /// The certificate chain, leaf first.
    pub chain: Vec<CertificateDer<'static>>,
    /// The private key (PKCS#8 DER).
    pub key: PrivateKeyDer<'static>,
}

impl fmt::Debug for CertificateAndKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("CertificateAndKey")
            .field("chain_len", &self.chain.len())
            .finish_non_exhaustive()
    }
}

impl Clone for CertificateAndKey {
    fn clone(&self) -> Self {
        Self {
            chain: self.chain.clone(),
            key: self.key.clone_key(),
        }
    }
}

impl NodeKey {
    /// A fresh key from the operating system's CSPRNG.
    pub fn generate() -> Self {
        Self {
            signing: SigningKey::generate(&mut rand_core::OsRng),
        }
    }

    /// A key from a 32-byte Ed25519 seed (e.g. derived by the vault).
    pub fn from_seed(seed: &[u8; 32]) -> Self {
        Self {
            signing: SigningKey::from_bytes(seed),
        }
    }

    /// Loads a PKCS#8 PEM key file.
    pub fn load(path: &Path) -> Result<Self, KeyError> {
        let pem = std::fs::read_to_string(path).map_err(|source| KeyError::Io {
            path: path.to_owned(),
            source,
        })?;
        let signing = SigningKey::from_pkcs8_pem(&pem).map_err(|e| KeyError::Malformed {
            path: path.to_owned(),
            reason: match other_algorithm(&pem) {
                Some(algorithm) => format!(
                    "this is {algorithm} key; alknet keys are Ed25519 (PKCS#8 PEM, as \
                     `alknet init` writes node.key)"
                ),
                None => format!("not a PKCS#8 PEM Ed25519 private key ({e})"),
            },
        })?;
        Ok(Self { signing })
    }

    /// Writes the key as PKCS#8 PEM, readable by the owner only (mode 0600).
    /// The file is written beside its final name and renamed into place, so a
    /// crash never leaves a truncated key behind. An existing file is replaced.
    pub fn save(&self, path: &Path) -> Result<(), KeyError> {
        let pem =
            self.signing
                .to_pkcs8_pem(Default::default())
                .map_err(|e| KeyError::Malformed {
                    path: path.to_owned(),
                    reason: format!("cannot encode key: {e}"),
                })?;
        write_private_file(path, pem.as_bytes())
    }

    /// The 32-byte seed, for handing the same key to another component.
    /// Treat it as the secret it is.
    pub fn seed(&self) -> [u8; 32] {
        self.signing.to_bytes()
    }

    /// The node id (public key).
    pub fn node_id(&self) -> NodeId {
        NodeId(self.signing.verifying_key().to_bytes())
    }

    /// The key as PKCS#8 DER, for TLS.
    pub fn pkcs8_der(&self) -> PrivatePkcs8KeyDer<'static> {
        let doc = self
            .signing
            .to_pkcs8_der()
            .expect("encoding an in-memory Ed25519 key as PKCS#8 cannot fail");
        PrivatePkcs8KeyDer::from(doc.as_bytes().to_vec())
    }

    /// A self-signed X.509 certificate over this key, valid for `localhost`,
    /// `127.0.0.1` and `::1`, with the node id as common name.
    pub fn self_signed_certificate(&self) -> Result<CertificateAndKey, KeyError> {
        let der = self.pkcs8_der();
        let key_pair = rcgen::KeyPair::from_pkcs8_der_and_sign_algo(&der, &rcgen::PKCS_ED25519)?;
        let cert = self_signed(&key_pair, &self.node_id().to_string())?;
        Ok(CertificateAndKey {
            chain: vec![cert],
            key: PrivateKeyDer::Pkcs8(der),
        })
    }
}

/// A fresh ECDSA P-256 self-signed certificate for clients that cannot verify
/// Ed25519 signatures (browsers), returned with its key as PEM strings.
pub fn generate_web_certificate(common_name: &str) -> Result<(String, String), KeyError> {
    let key_pair = rcgen::KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256)?;
    let cert = self_signed(&key_pair, common_name)?;
    let cert_pem = pem_encode("CERTIFICATE", cert.as_ref());
    Ok((cert_pem, key_pair.serialize_pem()))
}

fn self_signed(
    key_pair: &rcgen::KeyPair,
    common_name: &str,
) -> Result<CertificateDer<'static>, KeyError> {
    let mut params = rcgen::CertificateParams::new(vec![
        "localhost".to_owned(),
        "127.0.0.1".to_owned(),
        "::1".to_owned(),
    ])?;
    params
        .distinguished_name
        .push(rcgen::DnType::CommonName, common_name);
    Ok(params.self_signed(key_pair)?.der().clone())
}

/// PEM-encodes one DER item (RFC 7468).
pub fn pem_encode(label: &str, der: &[u8]) -> String {
    let config = pem::EncodeConfig::new().set_line_ending(pem::LineEnding::LF);
    pem::encode_config(&pem::Pem::new(label, der), config)
}

/// Writes `bytes` to `path` with mode 0600, via a temporary file and a rename.
pub fn write_private_file(path: &Path, bytes: &[u8]) -> Result<(), KeyError> {
    let io_err = |source| KeyError::Io {
        path: path.to_owned(),
        source,
    };
    let tmp = path.with_extension("tmp");
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create(true).truncate(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        options.mode(0o600);
    }
    let mut file = options.open(&tmp).map_err(io_err)?;
    file.write_all(bytes).map_err(io_err)?;
    file.sync_all().map_err(io_err)?;
    drop(file);
    std::fs::rename(&tmp, path).map_err(io_err)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn node_id_is_the_public_key_in_hex() {
        let key = NodeKey::from_seed(&[7u8; 32]);
        let id = key.node_id().to_string();
        assert!(id.starts_with("ed25519:"));
        assert_eq!(id.len(), "ed25519:".len() + 64);
        assert_eq!(id.parse::<NodeId>().unwrap(), key.node_id());
    }

    #[test]
    fn certificate_fingerprint_is_the_node_id() {
        let key = NodeKey::generate();
        let cert = key.self_signed_certificate().unwrap();
        assert_eq!(
            Fingerprint::of_certificate(&cert.chain[0]),
            key.node_id().fingerprint()
        );
    }

    #[test]
    fn saved_key_loads_back_with_private_mode() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("node.key");
        let key = NodeKey::generate();
        key.save(&path).unwrap();
        assert_eq!(NodeKey::load(&path).unwrap().node_id(), key.node_id());
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            let mode = std::fs::metadata(&path).unwrap().permissions().mode();
            assert_eq!(mode & 0o777, 0o600);
        }
    }

    #[test]
    fn malformed_key_file_names_the_file() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("node.key");
        std::fs::write(&path, "hello").unwrap();
        let err = NodeKey::load(&path).unwrap_err().to_string();
        assert!(err.contains("node.key") && err.contains("PKCS#8"), "{err}");
    }

    #[test]
    fn a_key_of_another_algorithm_is_named_in_words() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("client.key");
        let ecdsa = rcgen::KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256).unwrap();
        std::fs::write(&path, ecdsa.serialize_pem()).unwrap();
        let err = NodeKey::load(&path).unwrap_err().to_string();
        assert!(
            err.contains("an ECDSA key") && err.contains("Ed25519"),
            "{err}"
        );
        assert!(!err.contains("1.2.840"), "no OID: {err}");
    }

    #[test]
    fn debug_does_not_print_key_material() {
        let key = NodeKey::from_seed(&[9u8; 32]);
        let debug = format!("{key:?}");
        assert!(!debug.contains(&hex::encode([9u8; 32])));
        assert!(debug.contains("ed25519:"));
    }
}
