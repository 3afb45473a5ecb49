//! Real clients: quinn for QUIC, tokio-rustls for TCP+TLS.

use std::net::SocketAddr;
use std::sync::Arc;

use alknet_core::Alpn;
use alknet_core::tls::{self, ServerVerification};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio_rustls::client::TlsStream;

/// A QUIC client endpoint on an ephemeral loopback port, trusting any server
/// certificate.
pub fn quic_endpoint() -> quinn::Endpoint {
    quinn::Endpoint::client("127.0.0.1:0".parse().expect("valid address")).expect("client endpoint")
}

/// Dials `addr` over QUIC offering exactly `alpns`.
pub async fn quic_connect(
    endpoint: &quinn::Endpoint,
    addr: SocketAddr,
    alpns: &[&str],
) -> Result<quinn::Connection, quinn::ConnectionError> {
    let alpns: Vec<Alpn> = alpns.iter().map(|a| Alpn::new(a)).collect();
    let config =
        tls::quic_client_config(ServerVerification::Insecure, None, &alpns).expect("client config");
    endpoint
        .connect_with(config, addr, "localhost")
        .expect("connect parameters are valid")
        .await
}

/// Dials `addr` over TCP+TLS offering exactly `alpns`.
pub async fn tls_connect(
    addr: SocketAddr,
    alpns: &[&str],
) -> std::io::Result<TlsStream<TcpStream>> {
    let alpns: Vec<Alpn> = alpns.iter().map(|a| Alpn::new(a)).collect();
    let config = tls::client_config(ServerVerification::Insecure, None, &alpns, false)
        .expect("client config");
    let connector = tokio_rustls::TlsConnector::from(Arc::new(config));
    let tcp = TcpStream::connect(addr).await?;
    connector
        .connect("localhost".try_into().expect("valid name"), tcp)
        .await
}

/// One echo round trip on a new QUIC stream: send `payload`, finish, read all.
pub async fn quic_echo(connection: &quinn::Connection, payload: &[u8]) -> anyhow::Result<Vec<u8>> {
    let (mut send, mut recv) = connection.open_bi().await?;
    send.write_all(payload).await?;
    send.finish()?;
    Ok(recv.read_to_end(payload.len() + 1).await?)
}

/// One echo round trip over a TLS stream: send `payload`, close our side, read all.
pub async fn tls_echo(mut stream: TlsStream<TcpStream>, payload: &[u8]) -> anyhow::Result<Vec<u8>> {
    stream.write_all(payload).await?;
    stream.shutdown().await?;
    let mut echoed = Vec::new();
    stream.read_to_end(&mut echoed).await?;
    Ok(echoed)
}

/// A payload whose bytes depend on `seed`, so mixed-up streams are detected.
pub fn payload(seed: u32, len: usize) -> Vec<u8> {
    (0..len)
        .map(|i| {
            (i as u32)
                .wrapping_mul(31)
                .wrapping_add(seed.wrapping_mul(7919)) as u8
        })
        .collect()
}
