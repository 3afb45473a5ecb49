//! TLS for the node's listeners and for clients that dial a node.
//!
//! One port number serves peers (which pin the node's Ed25519 key), browsers
//! (which cannot verify Ed25519 and want a certificate they trust) and everything
//! in between, so the server picks its certificate per handshake:
//! 1. the operator's PEM certificate, when configured and the client offers no
//!    ALPN of a protocol whose policy is [`CertificatePolicy::NodeKey`]
//!    (browsers, curl, HTTP libraries);
//! 2. otherwise the node certificate (Ed25519), when the client can verify it;
//! 3. otherwise a self-signed ECDSA P-256 "web" certificate kept in the data
//!    directory, for local browser use.
//!
//! Under stealth ([`ServerIdentity::hiding_the_node`]) step 2 applies only to
//! clients that offer such an ALPN: the node certificate names the node.
//!
//! [`CertificatePolicy::NodeKey`]: crate::handler::CertificatePolicy::NodeKey
//!
//! Client certificates are requested but never required; any presented
//! certificate is accepted once its handshake signature verifies, because
//! identity comes from its fingerprint ([`crate::Fingerprint`]), not from a CA.

use std::path::Path;
use std::sync::{Arc, PoisonError, RwLock};

use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::crypto::{CryptoProvider, WebPkiSupportedAlgorithms};
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName, UnixTime};
use rustls::server::danger::{ClientCertVerified, ClientCertVerifier};
use rustls::server::{ClientHello, ResolvesServerCert};
use rustls::sign::CertifiedKey;
use rustls::{DigitallySignedStruct, DistinguishedName, SignatureScheme};

use crate::alpn::Alpn;
use crate::fingerprint::Fingerprint;
use crate::node_key::{CertificateAndKey, NodeKey};

/// Errors building TLS configuration.
#[derive(Debug, thiserror::Error)]
pub enum TlsError {
    /// A PEM file could not be read or parsed.
    #[error("{path}: {reason}")]
    Pem {
        /// The file concerned.
        path: String,
        /// What is wrong.
        reason: String,
    },
    /// rustls refused the configuration or a key.
    #[error("TLS configuration: {0}")]
    Rustls(#[from] rustls::Error),
    /// The key material could not be produced.
    #[error(transparent)]
    Key(#[from] crate::node_key::KeyError),
    /// quinn refused the TLS configuration.
    #[error("QUIC TLS configuration: {0}")]
    Quic(String),
}

/// The crypto provider every alknet TLS configuration uses (ring).
pub fn provider() -> Arc<CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

/// Reads a PEM certificate chain and private key (e.g. an operator's).
pub fn load_pem_pair(cert: &Path, key: &Path) -> Result<CertificateAndKey, TlsError> {
    let pem_err = |path: &Path, reason: String| TlsError::Pem {
        path: path.display().to_string(),
        reason,
    };
    let chain = CertificateDer::pem_file_iter(cert)
        .map_err(|e| pem_err(cert, e.to_string()))?
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| pem_err(cert, e.to_string()))?;
    if chain.is_empty() {
        return Err(pem_err(cert, "no CERTIFICATE block found".into()));
    }
    let key_der = PrivateKeyDer::from_pem_file(key).map_err(|e| pem_err(key, e.to_string()))?;
    Ok(CertificateAndKey {
        chain,
        key: key_der,
    })
}

/// The certificates a server presents.
///
/// Clones share the web and operator certificates:
/// [`Self::replace_certificates`] on any clone (the binary keeps one for
/// `SIGHUP`) changes what every listener presents from the next handshake on,
/// without touching open connections.
#[derive(Clone, Debug)]
pub struct ServerIdentity {
    node: Arc<CertifiedKey>,
    replaceable: Arc<RwLock<Arc<ReplaceableCertificates>>>,
    /// The ALPNs whose clients are shown the node certificate.
    node_alpns: Arc<[Vec<u8>]>,
    hide_node: bool,
}

/// The certificates an operator may replace while the node runs.
#[derive(Debug)]
struct ReplaceableCertificates {
    web: Arc<CertifiedKey>,
    operator: Option<Arc<CertifiedKey>>,
}

impl ReplaceableCertificates {
    fn new(web: CertificateAndKey, operator: Option<CertificateAndKey>) -> Result<Self, TlsError> {
        Ok(Self {
            web: certified(web)?,
            operator: operator.map(certified).transpose()?,
        })
    }
}

fn certified(c: CertificateAndKey) -> Result<Arc<CertifiedKey>, TlsError> {
    Ok(Arc::new(CertifiedKey::from_der(
        c.chain,
        c.key,
        &provider(),
    )?))
}

impl ServerIdentity {
    /// Builds the identity from the node key, the local web certificate and an
    /// optional operator certificate.
    pub fn new(
        node_key: &NodeKey,
        web: CertificateAndKey,
        operator: Option<CertificateAndKey>,
    ) -> Result<Self, TlsError> {
        Ok(Self {
            node: certified(node_key.self_signed_certificate()?)?,
            replaceable: Arc::new(RwLock::new(Arc::new(ReplaceableCertificates::new(
                web, operator,
            )?))),
            node_alpns: Arc::new([]),
            hide_node: false,
        })
    }

    /// Presents `web` and `operator` from the next handshake on, in every
    /// clone of this identity. The node certificate never changes: it is the
    /// node's identity. On an error (a key that does not match its
    /// certificate, say) the current certificates stay.
    pub fn replace_certificates(
        &self,
        web: CertificateAndKey,
        operator: Option<CertificateAndKey>,
    ) -> Result<(), TlsError> {
        let next = Arc::new(ReplaceableCertificates::new(web, operator)?);
        // A poisoned lock only means a panic elsewhere while swapping an Arc:
        // the value inside is whole either way.
        *self
            .replaceable
            .write()
            .unwrap_or_else(PoisonError::into_inner) = next;
        Ok(())
    }

    /// Whether an operator certificate is presented to clients that are not
    /// peers.
    pub fn has_operator_certificate(&self) -> bool {
        self.current().operator.is_some()
    }

    fn current(&self) -> Arc<ReplaceableCertificates> {
        self.replaceable
            .read()
            .unwrap_or_else(PoisonError::into_inner)
            .clone()
    }

    /// Clients offering one of `alpns` are peers: they get the node
    /// certificate even when an operator certificate is configured. The node
    /// passes the ALPNs of its [`CertificatePolicy::NodeKey`] protocols.
    ///
    /// [`CertificatePolicy::NodeKey`]: crate::handler::CertificatePolicy::NodeKey
    pub fn presenting_the_node_to<'a>(mut self, alpns: impl IntoIterator<Item = &'a Alpn>) -> Self {
        self.node_alpns = alpns.into_iter().map(|a| a.as_bytes().to_vec()).collect();
        self
    }

    /// Presents the node certificate only to clients that offer an ALPN given
    /// to [`Self::presenting_the_node_to`]; every other client gets the web
    /// (or operator) certificate, which does not name the node.
    pub fn hiding_the_node(mut self) -> Self {
        self.hide_node = true;
        self
    }

    /// The node certificate's DER (leaf).
    pub fn node_certificate(&self) -> &CertificateDer<'static> {
        &self.node.cert[0]
    }
}

impl ResolvesServerCert for ServerIdentity {
    fn resolve(&self, hello: ClientHello<'_>) -> Option<Arc<CertifiedKey>> {
        let is_peer = hello
            .alpn()
            .map(|mut offered| offered.any(|p| self.node_alpns.iter().any(|n| n == p)))
            .unwrap_or(false);
        let replaceable = self.current();
        if let Some(operator) = &replaceable.operator
            && !is_peer
        {
            return Some(operator.clone());
        }
        let may_see_node = is_peer || !self.hide_node;
        if may_see_node
            && hello
                .signature_schemes()
                .contains(&SignatureScheme::ED25519)
        {
            Some(self.node.clone())
        } else {
            Some(replaceable.web.clone())
        }
    }
}

/// Server-side TLS configuration for the TCP listener (TLS 1.2 and 1.3) or, with
/// `quic = true`, for QUIC (TLS 1.3 only). `alpns` must already be in preference
/// order: rustls picks the first of ours that the client offers.
pub fn server_config(
    identity: &ServerIdentity,
    alpns: &[Alpn],
    quic: bool,
) -> Result<rustls::ServerConfig, TlsError> {
    let provider = provider();
    let versions: &[&rustls::SupportedProtocolVersion] = if quic {
        &[&rustls::version::TLS13]
    } else {
        &[&rustls::version::TLS13, &rustls::version::TLS12]
    };
    let mut config = rustls::ServerConfig::builder_with_provider(provider.clone())
        .with_protocol_versions(versions)?
        .with_client_cert_verifier(Arc::new(AnyClientCertificate {
            algorithms: provider.signature_verification_algorithms,
        }))
        .with_cert_resolver(Arc::new(identity.clone()));
    config.alpn_protocols = alpns.iter().map(|a| a.as_bytes().to_vec()).collect();
    Ok(config)
}

/// Bytes a QUIC peer may send that the node has not read yet, over all of a
/// connection's streams (16 MiB: enough for a fast long link).
pub const CONNECTION_RECEIVE_WINDOW: u32 = 16 * 1024 * 1024;

/// A quinn server configuration over [`server_config`].
pub fn quic_server_config(
    identity: &ServerIdentity,
    alpns: &[Alpn],
) -> Result<quinn::ServerConfig, TlsError> {
    let crypto =
        quinn::crypto::rustls::QuicServerConfig::try_from(server_config(identity, alpns, true)?)
            .map_err(|e| TlsError::Quic(e.to_string()))?;
    let mut config = quinn::ServerConfig::with_crypto(Arc::new(crypto));
    let mut transport = crate::udp::transport_config();
    transport.max_concurrent_bidi_streams(256u32.into());
    // quinn's default lets a peer have its every stream's window unread at
    // once (256 × 1.25 MB); a handler that stops reading (backpressure) must
    // not make the node buffer that much per connection.
    transport.receive_window(CONNECTION_RECEIVE_WINDOW.into());
    config.transport_config(Arc::new(transport));
    Ok(config)
}

/// Accepts any client certificate whose handshake signature verifies; the
/// fingerprint, not a CA, decides what it may do.
#[derive(Debug)]
struct AnyClientCertificate {
    algorithms: WebPkiSupportedAlgorithms,
}

impl ClientCertVerifier for AnyClientCertificate {
    fn offer_client_auth(&self) -> bool {
        true
    }

    fn client_auth_mandatory(&self) -> bool {
        false
    }

    fn root_hint_subjects(&self) -> &[DistinguishedName] {
        &[]
    }

    fn verify_client_cert(
        &self,
        _end_entity: &CertificateDer<'_>,
        _intermediates: &[CertificateDer<'_>],
        _now: UnixTime,
    ) -> Result<ClientCertVerified, rustls::Error> {
        Ok(ClientCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls12_signature(message, cert, dss, &self.algorithms)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(message, cert, dss, &self.algorithms)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.algorithms.supported_schemes()
    }
}

/// How a client decides to trust the server it dialed.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ServerVerification {
    /// Accept only a certificate with this fingerprint (a node id pins the key).
    Pin(Fingerprint),
    /// Accept any certificate. Only for explicit `--insecure` use and tests.
    Insecure,
}

#[derive(Debug)]
struct PinnedServer {
    verification: ServerVerification,
    algorithms: WebPkiSupportedAlgorithms,
}

impl ServerCertVerifier for PinnedServer {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        _intermediates: &[CertificateDer<'_>],
        _server_name: &ServerName<'_>,
        _ocsp_response: &[u8],
        _now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        match self.verification {
            ServerVerification::Insecure => Ok(ServerCertVerified::assertion()),
            ServerVerification::Pin(expected) => {
                let presented = Fingerprint::of_certificate(end_entity);
                if presented == expected {
                    Ok(ServerCertVerified::assertion())
                } else {
                    // rustls prints a certificate error's own text only
                    // as Debug; a general one keeps these words.
                    Err(rustls::Error::General(format!(
                        "the node is {presented}, not the pinned {expected}"
                    )))
                }
            }
        }
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls12_signature(message, cert, dss, &self.algorithms)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(message, cert, dss, &self.algorithms)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.algorithms.supported_schemes()
    }
}

/// Client-side TLS configuration: server verification, an optional client
/// certificate (the dialing node's own key), and the ALPNs to offer.
pub fn client_config(
    verification: ServerVerification,
    client_key: Option<&NodeKey>,
    alpns: &[Alpn],
    quic: bool,
) -> Result<rustls::ClientConfig, TlsError> {
    let provider = provider();
    let versions: &[&rustls::SupportedProtocolVersion] = if quic {
        &[&rustls::version::TLS13]
    } else {
        &[&rustls::version::TLS13, &rustls::version::TLS12]
    };
    let builder = rustls::ClientConfig::builder_with_provider(provider.clone())
        .with_protocol_versions(versions)?
        .dangerous()
        .with_custom_certificate_verifier(Arc::new(PinnedServer {
            verification,
            algorithms: provider.signature_verification_algorithms,
        }));
    let mut config = match client_key {
        Some(key) => {
            let cert = key.self_signed_certificate()?;
            builder.with_client_auth_cert(cert.chain, cert.key)?
        }
        None => builder.with_no_client_auth(),
    };
    config.alpn_protocols = alpns.iter().map(|a| a.as_bytes().to_vec()).collect();
    Ok(config)
}

/// A quinn client configuration over [`client_config`].
pub fn quic_client_config(
    verification: ServerVerification,
    client_key: Option<&NodeKey>,
    alpns: &[Alpn],
) -> Result<quinn::ClientConfig, TlsError> {
    let crypto = quinn::crypto::rustls::QuicClientConfig::try_from(client_config(
        verification,
        client_key,
        alpns,
        true,
    )?)
    .map_err(|e| TlsError::Quic(e.to_string()))?;
    Ok(quinn::ClientConfig::new(Arc::new(crypto)))
}
