//! Pieces every benchmark shares.

use std::net::SocketAddr;
use std::sync::Arc;

use alknet_core::tls::{self, ServerIdentity, ServerVerification};
use alknet_core::{Alpn, NodeKey};
use hdrhistogram::Histogram;

/// The node's TLS identity: its Ed25519 certificate for peers and a fresh
/// self-signed ECDSA certificate for clients without Ed25519, loaded through
/// the same PEM path an operator's files take.
pub fn server_identity(key: &NodeKey) -> anyhow::Result<ServerIdentity> {
    let dir = tempfile::tempdir()?;
    let (cert, web_key) = alknet_core::node_key::generate_web_certificate("bench")?;
    std::fs::write(dir.path().join("web.crt"), cert)?;
    std::fs::write(dir.path().join("web.key"), web_key)?;
    let web = tls::load_pem_pair(&dir.path().join("web.crt"), &dir.path().join("web.key"))?;
    Ok(ServerIdentity::new(key, web, None)?)
}

/// A latency histogram in microseconds, 1 µs to 60 s, 3 significant digits.
pub fn histogram() -> anyhow::Result<Histogram<u64>> {
    Ok(Histogram::new_with_bounds(1, 60_000_000, 3)?)
}

/// Dials TCP+TLS clients offering one ALPN, trusting any server certificate;
/// its rustls configuration is built once for every connection.
#[derive(Clone)]
pub struct TlsDialer(tokio_rustls::TlsConnector);

impl TlsDialer {
    /// A dialer offering `alpn`.
    pub fn new(alpn: &str) -> anyhow::Result<Self> {
        let config = tls::client_config(
            ServerVerification::Insecure,
            None,
            &[Alpn::new(alpn)],
            false,
        )?;
        Ok(Self(tokio_rustls::TlsConnector::from(Arc::new(config))))
    }

    /// A TLS session with `addr`, Nagle off (request/response latency is
    /// what the benchmarks measure).
    pub async fn connect(
        &self,
        addr: SocketAddr,
    ) -> anyhow::Result<tokio_rustls::client::TlsStream<tokio::net::TcpStream>> {
        let tcp = tokio::net::TcpStream::connect(addr).await?;
        tcp.set_nodelay(true)?;
        Ok(self.0.connect("localhost".try_into()?, tcp).await?)
    }
}
