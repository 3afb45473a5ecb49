//! What the listeners present and tolerate during the TLS handshake:
//! certificate selection per client, and the bound on pending handshakes.

use std::sync::Arc;
use std::time::Duration;

use alknet_core::tls::ServerIdentity;
use alknet_core::{
    Connection, Fingerprint, HandlerError, NoIdentities, NodeKey, Protocol, ProtocolHandler,
    Transports,
};
use alknet_e2e::client::{quic_connect, quic_echo, quic_endpoint, tls_connect, tls_echo};
use alknet_e2e::{
    generate_certificate, start_node, start_node_presenting, start_node_with, start_web_node,
    test_config,
};
use alknet_echo::EchoHandler;
use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::pki_types::{CertificateDer, ServerName, UnixTime};
use rustls::{DigitallySignedStruct, SignatureScheme};

/// Echo under another ALPN, showing browsers' certificate as HTTP does.
struct PlainEcho;

impl ProtocolHandler for PlainEcho {
    const PROTOCOL: Protocol = Protocol::new(&["x-plain"]).web_certificate();

    async fn handle(&self, connection: Connection) -> Result<(), HandlerError> {
        EchoHandler.handle(connection).await
    }
}

/// Echo advertised over QUIC only, as DNS over QUIC will be.
struct QuicOnlyEcho;

impl ProtocolHandler for QuicOnlyEcho {
    const PROTOCOL: Protocol = Protocol::new(&["x-quic-only"]).on(Transports::QuicOnly);

    async fn handle(&self, connection: Connection) -> Result<(), HandlerError> {
        EchoHandler.handle(connection).await
    }
}

/// Echo for peers under an ALPN outside the `alknet/` family: the node
/// certificate follows the protocol's policy, not its ALPN's spelling.
struct PeerEcho;

impl ProtocolHandler for PeerEcho {
    const PROTOCOL: Protocol = Protocol::new(&["x-peer"]);

    async fn handle(&self, connection: Connection) -> Result<(), HandlerError> {
        EchoHandler.handle(connection).await
    }
}

fn refused_for_want_of_a_protocol(error: &std::io::Error) -> bool {
    error
        .get_ref()
        .and_then(|e| e.downcast_ref::<rustls::Error>())
        .is_some_and(|e| {
            *e == rustls::Error::AlertReceived(rustls::AlertDescription::NoApplicationProtocol)
        })
}

async fn leaf_for(addr: std::net::SocketAddr, alpn: &str) -> CertificateDer<'static> {
    let tls = tls_connect(addr, &[alpn]).await.expect("handshake");
    tls.get_ref().1.peer_certificates().expect("certificate")[0].clone()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn peers_get_the_node_certificate_and_browsers_the_operator_certificate() {
    let key = NodeKey::generate();
    let node_id = key.node_id();
    let operator = generate_certificate("operator");
    let operator_der = operator.chain[0].clone();
    let handlers = vec![EchoHandler.into(), PlainEcho.into()];
    let node = start_node_with(
        test_config(),
        handlers,
        Arc::new(NoIdentities),
        key,
        generate_certificate("web"),
        Some(operator),
    )
    .await;
    let addr = node.local_addr();

    let peer_leaf = leaf_for(addr, "alknet/echo").await;
    assert_eq!(
        Fingerprint::of_certificate(&peer_leaf),
        node_id.fingerprint()
    );
    assert_eq!(leaf_for(addr, "x-plain").await, operator_der);
    // Both are served on the same port.
    let tls = tls_connect(addr, &["x-plain"]).await.unwrap();
    assert_eq!(tls_echo(tls, b"plain").await.unwrap(), b"plain");
}

/// A client that, like browsers, cannot verify Ed25519 signatures.
#[derive(Debug)]
struct NoEd25519;

impl ServerCertVerifier for NoEd25519 {
    fn verify_server_cert(
        &self,
        _: &CertificateDer<'_>,
        _: &[CertificateDer<'_>],
        _: &ServerName<'_>,
        _: &[u8],
        _: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        Ok(ServerCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        _: &[u8],
        _: &CertificateDer<'_>,
        _: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        Ok(HandshakeSignatureValid::assertion())
    }

    fn verify_tls13_signature(
        &self,
        _: &[u8],
        _: &CertificateDer<'_>,
        _: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        Ok(HandshakeSignatureValid::assertion())
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        vec![
            SignatureScheme::ECDSA_NISTP256_SHA256,
            SignatureScheme::RSA_PSS_SHA256,
        ]
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_client_without_ed25519_gets_the_ecdsa_web_certificate() {
    let web = generate_certificate("web");
    let web_der = web.chain[0].clone();
    let node = start_node_with(
        test_config(),
        vec![EchoHandler.into()],
        Arc::new(NoIdentities),
        NodeKey::generate(),
        web,
        None,
    )
    .await;
    let mut config = rustls::ClientConfig::builder_with_provider(alknet_core::tls::provider())
        .with_safe_default_protocol_versions()
        .unwrap()
        .dangerous()
        .with_custom_certificate_verifier(Arc::new(NoEd25519))
        .with_no_client_auth();
    config.alpn_protocols = vec![b"alknet/echo".to_vec()];
    let connector = tokio_rustls::TlsConnector::from(Arc::new(config));
    let tcp = tokio::net::TcpStream::connect(node.local_addr())
        .await
        .unwrap();
    let tls = connector
        .connect("localhost".try_into().unwrap(), tcp)
        .await
        .expect("handshake with ECDSA");
    assert_eq!(tls.get_ref().1.peer_certificates().unwrap()[0], web_der);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_full_handshake_table_evicts_its_oldest_silent_client() {
    let mut config = test_config();
    config.limits.max_pending_handshakes = 1;
    let node = start_node(config).await;
    let addr = node.local_addr();

    // A client that connects and never says anything holds the only slot...
    let mut silent = tokio::net::TcpStream::connect(addr).await.unwrap();
    // ...until a real client arrives: it is served, and the silent one is
    // closed to make room for it.
    let tls = tls_connect(addr, &["alknet/echo"])
        .await
        .expect("the newcomer is served");
    assert_eq!(tls_echo(tls, b"back").await.unwrap(), b"back");
    let mut byte = [0u8; 1];
    let read = tokio::time::timeout(
        Duration::from_secs(5),
        tokio::io::AsyncReadExt::read(&mut silent, &mut byte),
    )
    .await
    .expect("the silent client was closed");
    assert!(matches!(read, Ok(0) | Err(_)), "{read:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_quic_only_protocol_is_advertised_on_quic_and_not_on_tcp() {
    let handlers = vec![EchoHandler.into(), QuicOnlyEcho.into()];
    let node = start_web_node(handlers, Arc::new(NoIdentities)).await;
    let addr = node.local_addr();

    let endpoint = quic_endpoint();
    let quic = quic_connect(&endpoint, addr, &["x-quic-only"])
        .await
        .expect("negotiated over QUIC");
    assert_eq!(quic_echo(&quic, b"quic").await.unwrap(), b"quic");

    let error = tls_connect(addr, &["x-quic-only"])
        .await
        .expect_err("not advertised over TCP+TLS");
    assert!(refused_for_want_of_a_protocol(&error), "{error}");
    // The protocols on both transports are still served over TCP+TLS.
    let tls = tls_connect(addr, &["alknet/echo"]).await.unwrap();
    assert_eq!(tls_echo(tls, b"tcp").await.unwrap(), b"tcp");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn under_stealth_only_node_key_protocols_see_the_node_certificate() {
    let key = NodeKey::generate();
    let node_id = key.node_id();
    let web = generate_certificate("web");
    let web_der = web.chain[0].clone();
    let tls = ServerIdentity::new(&key, web, None)
        .expect("server identity")
        .hiding_the_node();
    let node = start_node_presenting(
        test_config(),
        vec![EchoHandler.into(), PeerEcho.into(), PlainEcho.into()],
        Arc::new(NoIdentities),
        tls,
    )
    .await;
    let addr = node.local_addr();

    for peer_alpn in ["alknet/echo", "x-peer"] {
        let leaf = leaf_for(addr, peer_alpn).await;
        assert_eq!(
            Fingerprint::of_certificate(&leaf),
            node_id.fingerprint(),
            "{peer_alpn}"
        );
    }
    assert_eq!(leaf_for(addr, "x-plain").await, web_der);
}
