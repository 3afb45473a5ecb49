//! Pieces every benchmark shares.

use alknet_core::NodeKey;
use alknet_core::tls::{self, ServerIdentity};
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
