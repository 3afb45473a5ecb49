//! Shared pieces of the end-to-end tests: start a real node (in-process or as
//! the `alknet` binary) on a loopback port, and real QUIC / TLS clients.

pub mod client;
pub mod process;

use std::sync::Arc;
use std::time::{Duration, Instant};

use alknet_core::tls::ServerIdentity;
use alknet_core::{NoIdentities, NodeConfig, NodeKey};
use alknet_supervisors::{Node, NodeHandle, NodeOptions};

/// A configuration for tests: an ephemeral loopback port and `alknet/echo`.
pub fn test_config() -> NodeConfig {
    let mut config = NodeConfig {
        listen: "127.0.0.1:0".parse().expect("valid address"),
        ..NodeConfig::default()
    };
    config.diagnostics.echo = true;
    config
}

/// Starts a node in this process with the diagnostic handlers `config` enables.
pub async fn start_node(config: NodeConfig) -> NodeHandle {
    let key = NodeKey::generate();
    let (cert_pem, key_pem) =
        alknet_core::node_key::generate_web_certificate("test").expect("web certificate");
    let dir = tempfile::tempdir().expect("tempdir");
    let (cert_path, key_path) = (dir.path().join("web.crt"), dir.path().join("web.key"));
    std::fs::write(&cert_path, cert_pem).expect("write cert");
    std::fs::write(&key_path, key_pem).expect("write key");
    let web = alknet_core::tls::load_pem_pair(&cert_path, &key_path).expect("load web pair");
    let tls = ServerIdentity::new(&key, web, None).expect("server identity");
    Node::start(NodeOptions {
        handlers: alknet_core::echo::diagnostic_handlers(&config.diagnostics),
        identities: Arc::new(NoIdentities),
        tls,
        config,
    })
    .await
    .expect("node starts")
}

/// Polls `condition` every few milliseconds until it holds or `deadline`
/// passes; returns whether it held. For state that has no event to wait on
/// (the actor tree is a snapshot).
pub async fn eventually(deadline: Duration, mut condition: impl FnMut() -> bool) -> bool {
    let end = Instant::now() + deadline;
    loop {
        if condition() {
            return true;
        }
        if Instant::now() >= end {
            return false;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}
