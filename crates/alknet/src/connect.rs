//! How the client commands (`call`, `admin …`) reach a node: the shared
//! command-line options and the session they open.

use std::net::SocketAddr;
use std::path::PathBuf;

use alknet_call::CallClient;
use alknet_call::ErrorCode;
use alknet_call::client::{ClientOptions, Transport};
use alknet_core::tls::ServerVerification;
use alknet_core::{Fingerprint, NodeId, NodeKey};
use anyhow::Context;
use clap::{ArgGroup, Args};

/// Where the node is, how to trust it, and how to authenticate to it.
#[derive(Debug, Args)]
#[command(group(ArgGroup::new("trust").required(true).args(["pin", "insecure"])))]
pub struct ConnectArgs {
    /// The node's address.
    #[arg(long)]
    pub connect: SocketAddr,
    /// A bearer token, sent with every request.
    #[arg(long, env = "ALKNET_TOKEN", hide_env_values = true)]
    pub token: Option<String>,
    /// Accept only the node with this id (`ed25519:<hex>`).
    #[arg(long)]
    pub pin: Option<NodeId>,
    /// Accept any node certificate.
    #[arg(long)]
    pub insecure: bool,
    /// Dial TLS over TCP instead of QUIC.
    #[arg(long)]
    pub tcp: bool,
    /// Present this Ed25519 key (PKCS#8 PEM, e.g. another data directory's
    /// node.key) as a client certificate; the node maps its fingerprint,
    /// `ed25519:<hex public key>`, to a peer identity (`alknet peer add`).
    #[arg(long, value_name = "PATH")]
    pub key: Option<PathBuf>,
}

impl ConnectArgs {
    /// Opens a call session with the node.
    pub async fn connect(&self) -> anyhow::Result<CallClient> {
        let client_key = match &self.key {
            Some(path) => Some(
                NodeKey::load(path)
                    .with_context(|| format!("cannot load the client key {}", path.display()))?,
            ),
            None => None,
        };
        let options = ClientOptions {
            transport: if self.tcp {
                Transport::Tcp
            } else {
                Transport::Quic
            },
            verification: match &self.pin {
                Some(id) => ServerVerification::Pin(Fingerprint::Ed25519(id.0)),
                None => ServerVerification::Insecure,
            },
            token: self.token.clone(),
            client_key,
            ..ClientOptions::default()
        };
        CallClient::connect(self.connect, options)
            .await
            .with_context(|| format!("cannot open a call session with {}", self.connect))
    }
}

/// Prints a failed call's error on stderr; a `NOT_FOUND` without a token
/// gets a hint, as an operation the caller may not call looks unknown.
pub fn report(error: &alknet_call::CallError, args: &ConnectArgs) {
    eprintln!("{error}");
    if error.code == ErrorCode::NotFound && args.token.is_none() {
        eprintln!(
            "hint: without a token, restricted operations are not found either; pass --token (or set ALKNET_TOKEN)"
        );
    }
}

/// A runtime for one client command.
pub fn runtime() -> anyhow::Result<tokio::runtime::Runtime> {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .context("cannot start the async runtime")
}
