//! A node serving only the echo protocol, on an ephemeral loopback port, with
//! a fresh self-signed identity. Ctrl-C shuts it down.
//!
//! ```text
//! cargo run -p alknet-echo --example echo_node
//! ```

use alknet_core::tls::ServerIdentity;
use alknet_core::{NodeConfig, NodeKey};
use alknet_echo::EchoHandler;
use alknet_supervisors::Node;

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let key = NodeKey::generate();
    // Browsers are not expected here: the node certificate serves as the web
    // certificate too.
    let tls = ServerIdentity::new(&key, key.self_signed_certificate()?, None)?;
    let config = NodeConfig {
        listen: "127.0.0.1:0".parse()?,
        ..NodeConfig::default()
    };
    let node = Node::builder(config, tls)
        .protocol(EchoHandler)
        .start()
        .await?;
    println!(
        "node {} serving {} on {} (QUIC and TCP+TLS)",
        key.node_id(),
        alknet_echo::ALPN,
        node.local_addr()
    );
    tokio::signal::ctrl_c().await?;
    node.shutdown();
    node.wait().await;
    Ok(())
}
