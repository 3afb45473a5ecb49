//! Shared pieces of the end-to-end tests: start a real node (in-process or as
//! the `alknet` binary) on a loopback port, and real QUIC / TLS clients.

pub mod client;
pub mod process;
pub mod raw_call;
pub mod ssh;
pub mod ws;

use std::sync::Arc;
use std::time::{Duration, Instant};

use alknet_core::node_key::CertificateAndKey;
use alknet_core::tls::ServerIdentity;
use alknet_core::{ErasedHandler, IdentityProvider, NoIdentities, NodeConfig, NodeKey};
use alknet_echo::EchoHandler;
use alknet_supervisors::{Node, NodeHandle};

/// A two-worker runtime, for tests that drive an `alknet serve` process (the
/// node runs in its own process; the test's clients run here).
pub fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("a tokio runtime")
}

/// Two fixed tokens: `admin-token` is `root` (scope `admin`), `user-token`
/// is `bob` (scope `user`); no peers.
pub struct TestTokens;

impl IdentityProvider for TestTokens {
    fn resolve_fingerprint(&self, _: &alknet_core::Fingerprint) -> Option<alknet_core::Identity> {
        None
    }

    fn resolve_token(&self, token: &str) -> Option<alknet_core::Identity> {
        match token {
            "admin-token" => Some(alknet_core::Identity::new("root", ["admin"])),
            "user-token" => Some(alknet_core::Identity::new("bob", ["user"])),
            _ => None,
        }
    }
}

/// Signals when dropped: how a test observes that a handler's future was
/// cancelled rather than assuming it.
pub struct DropSignal(pub tokio::sync::mpsc::UnboundedSender<()>);

impl Drop for DropSignal {
    fn drop(&mut self) {
        let _ = self.0.send(());
    }
}

/// `name`: a query that never answers, whose handler signals on `dropped`
/// when it is dropped (aborted, timed out, or its session closed).
pub fn hanging_query(
    name: &str,
    dropped: tokio::sync::mpsc::UnboundedSender<()>,
) -> alknet_call::OperationDef {
    alknet_call::OperationDef::query(name).unary(move |_, _| {
        let signal = DropSignal(dropped.clone());
        async move {
            let _signal = signal;
            std::future::pending::<()>().await;
            Ok(serde_json::Value::Null)
        }
    })
}

/// A configuration for tests: an ephemeral loopback port.
pub fn test_config() -> NodeConfig {
    NodeConfig {
        listen: "127.0.0.1:0".parse().expect("valid address"),
        ..NodeConfig::default()
    }
}

/// Starts a node in this process serving `alknet/echo`.
pub async fn start_node(config: NodeConfig) -> NodeHandle {
    start_node_with(
        config,
        vec![EchoHandler.into()],
        Arc::new(NoIdentities),
        NodeKey::generate(),
        generate_certificate("test"),
        None,
    )
    .await
}

/// Starts a node in this process with explicit handlers and certificates.
pub async fn start_node_with(
    config: NodeConfig,
    handlers: Vec<ErasedHandler>,
    identities: Arc<dyn IdentityProvider>,
    key: NodeKey,
    web: CertificateAndKey,
    operator: Option<CertificateAndKey>,
) -> NodeHandle {
    let tls = ServerIdentity::new(&key, web, operator).expect("server identity");
    start_node_presenting(config, handlers, identities, tls).await
}

/// Starts a node in this process with explicit handlers, presenting `tls`.
pub async fn start_node_presenting(
    config: NodeConfig,
    handlers: Vec<ErasedHandler>,
    identities: Arc<dyn IdentityProvider>,
    tls: ServerIdentity,
) -> NodeHandle {
    Node::builder(config, tls)
        .identities(identities)
        .protocols(handlers)
        .start()
        .await
        .expect("node starts")
}

/// Starts a node in this process on [`test_config`] with `handlers`, a fresh
/// node key and a self-signed web certificate.
pub async fn start_web_node(
    handlers: Vec<ErasedHandler>,
    identities: Arc<dyn IdentityProvider>,
) -> NodeHandle {
    start_node_with(
        test_config(),
        handlers,
        identities,
        NodeKey::generate(),
        generate_certificate("web"),
        None,
    )
    .await
}

/// Starts a node in this process serving `alknet/call` from `registry`, with
/// `identities` resolving both client certificates and tokens.
pub async fn start_call_node(
    config: NodeConfig,
    registry: alknet_call::Registry,
    identities: Arc<dyn IdentityProvider>,
    limits: alknet_call::SessionLimits,
) -> NodeHandle {
    let call = alknet_call::CallHandler::new(Arc::new(registry), identities.clone(), limits);
    start_node_with(
        config,
        vec![call.into()],
        identities,
        NodeKey::generate(),
        generate_certificate("web"),
        None,
    )
    .await
}

/// A fresh self-signed ECDSA certificate, through the same PEM files an
/// operator would supply.
pub fn generate_certificate(name: &str) -> CertificateAndKey {
    let (cert_pem, key_pem) =
        alknet_core::node_key::generate_web_certificate(name).expect("certificate");
    let dir = tempfile::tempdir().expect("tempdir");
    let (cert_path, key_path) = (dir.path().join("c.pem"), dir.path().join("k.pem"));
    std::fs::write(&cert_path, cert_pem).expect("write cert");
    std::fs::write(&key_path, key_pem).expect("write key");
    alknet_core::tls::load_pem_pair(&cert_path, &key_path).expect("load pair")
}

/// Like [`eventually`], for tests without a runtime (driving the binary).
pub fn eventually_blocking(deadline: Duration, mut condition: impl FnMut() -> bool) -> bool {
    let end = Instant::now() + deadline;
    loop {
        if condition() {
            return true;
        }
        if Instant::now() >= end {
            return false;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
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
