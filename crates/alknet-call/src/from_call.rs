//! `from_call`: import another node's operations (docs/protocol.md §14.2).
//!
//! Over a session to the upstream node this asks `services/list`, then
//! `services/schema` per entry, and registers a forwarder for each operation
//! that node lets us call: `internal` unless the import says otherwise, named
//! `<prefix>/<name>` when a prefix is given. A forwarder relays the call —
//! query, mutation or subscription — with `forwarded_for` set to the identity
//! of the request it relays; dropping it (an abort, a deadline, a closed
//! session) aborts the upstream call, so cancellation crosses nodes.
//!
//! The imported operations keep the upstream's access control: exposing one
//! externally must not let callers of this node borrow this node's authority
//! upstream. The link redials on demand, so a restarted upstream serves the
//! next call; calls in flight when it died fail with `INTERNAL`
//! `connection closed`.

use std::net::SocketAddr;
use std::sync::Arc;

use alknet_core::NodeKey;
use alknet_core::tls::ServerVerification;
use futures::StreamExt;
use serde_json::{Value, json};

use crate::client::{CallClient, ClientOptions, ConnectError, Transport};
use crate::error::CallError;
use crate::registry::{
    OpType, OperationDef, OperationSpec, RegistrationError, Registry, Visibility,
};

/// Finds where an upstream is each time it is dialled: for an upstream
/// named by node id alone, whose address is published rather than
/// configured (the node's pkarr record).
pub trait Locate: Send + Sync {
    /// The address to dial now.
    fn locate(&self) -> futures::future::BoxFuture<'_, Result<SocketAddr, String>>;
}

/// Where and how to reach the upstream node.
#[derive(Clone)]
pub struct UpstreamOptions {
    /// Its address (unused with [`Self::locate`]).
    pub addr: SocketAddr,
    /// Finds its address before each dial, instead of [`Self::addr`].
    pub locate: Option<Arc<dyn Locate>>,
    /// QUIC or TCP+TLS.
    pub transport: Transport,
    /// Pin its node id, or accept any certificate.
    pub verification: ServerVerification,
    /// A bearer token to authenticate with.
    pub token: Option<String>,
    /// Our node key's seed, to present as a client certificate (the upstream
    /// maps its fingerprint with `alknet peer add`).
    pub client_key_seed: Option<[u8; 32]>,
    /// Imported names become `<prefix>/<name>`.
    pub prefix: Option<String>,
    /// Whether the imports are reachable from outside this node.
    pub visibility: Visibility,
    /// QUIC: how long the upstream may be silent before it is presumed gone
    /// and calls in flight fail.
    pub idle_timeout: std::time::Duration,
}

impl std::fmt::Debug for UpstreamOptions {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("UpstreamOptions")
            .field("addr", &self.addr)
            .field("transport", &self.transport)
            .field("prefix", &self.prefix)
            .field("visibility", &self.visibility)
            .finish_non_exhaustive()
    }
}

/// Why an import failed.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ImportError {
    /// The upstream could not be reached.
    #[error("cannot reach upstream {addr}: {source}")]
    Connect {
        /// Its address.
        addr: SocketAddr,
        /// Why.
        source: ConnectError,
    },
    /// Discovery failed.
    #[error("upstream {addr}: {operation} failed: {source}")]
    Discovery {
        /// Its address.
        addr: SocketAddr,
        /// The discovery operation.
        operation: String,
        /// Its error.
        source: CallError,
    },
    /// An imported name collides, or an imported spec is refused.
    #[error("importing from upstream {addr}: {source}")]
    Register {
        /// Its address.
        addr: SocketAddr,
        /// Why.
        source: RegistrationError,
    },
}

/// The connection to one upstream, redialled when it has closed.
struct Link {
    options: UpstreamOptions,
    client: tokio::sync::Mutex<Option<Arc<CallClient>>>,
}

impl Link {
    async fn client(&self) -> Result<Arc<CallClient>, ConnectError> {
        let mut current = self.client.lock().await;
        if let Some(client) = current.as_ref().filter(|c| !c.is_closed()) {
            return Ok(client.clone());
        }
        let options = ClientOptions {
            transport: self.options.transport,
            verification: self.options.verification,
            token: self.options.token.clone(),
            client_key: self
                .options
                .client_key_seed
                .map(|seed| NodeKey::from_seed(&seed)),
            idle_timeout: self.options.idle_timeout,
            ..ClientOptions::default()
        };
        let addr = match &self.options.locate {
            Some(locate) => locate.locate().await.map_err(ConnectError::Unlocated)?,
            None => self.options.addr,
        };
        let client = Arc::new(CallClient::connect(addr, options).await?);
        *current = Some(client.clone());
        Ok(client)
    }

    async fn client_or_internal(&self) -> Result<Arc<CallClient>, CallError> {
        self.client().await.map_err(|e| {
            tracing::warn!(upstream = %self.options.addr, "cannot reach upstream: {e}");
            CallError::internal("upstream unreachable")
        })
    }
}

/// Imports the operations `upstream` lets us call into `registry`; returns
/// their names here. All or nothing: a name already taken fails the import
/// with [`RegistrationError::Duplicate`] and registers none.
pub async fn import(
    registry: &Registry,
    upstream: UpstreamOptions,
) -> Result<Vec<String>, ImportError> {
    let addr = upstream.addr;
    let link = Arc::new(Link {
        options: upstream,
        client: tokio::sync::Mutex::new(None),
    });
    let client = link
        .client()
        .await
        .map_err(|source| ImportError::Connect { addr, source })?;
    let discovery = |operation: &str| {
        let operation = operation.to_owned();
        move |source| ImportError::Discovery {
            addr,
            operation,
            source,
        }
    };
    let listed = client
        .call("services/list", json!({}))
        .await
        .map_err(discovery("services/list"))?;
    let names: Vec<String> = listed["operations"]
        .as_array()
        .map(|ops| {
            ops.iter()
                .filter_map(|op| op["name"].as_str().map(str::to_owned))
                .collect()
        })
        .unwrap_or_default();
    let mut defs = Vec::with_capacity(names.len());
    for name in names {
        let spec = client
            .call("services/schema", json!({ "name": name }))
            .await
            .map_err(discovery("services/schema"))?;
        let spec: OperationSpec =
            serde_json::from_value(spec).map_err(|e| ImportError::Discovery {
                addr,
                operation: "services/schema".to_owned(),
                source: CallError::internal(format!("invalid operation spec for {name}: {e}")),
            })?;
        defs.push(forwarder(&link, spec));
    }
    let imported: Vec<String> = defs.iter().map(|d| d.spec().name.clone()).collect();
    registry
        .register_all(defs)
        .map_err(|source| ImportError::Register { addr, source })?;
    tracing::info!(upstream = %addr, count = imported.len(), "imported operations");
    Ok(imported)
}

fn forwarder(link: &Arc<Link>, remote: OperationSpec) -> OperationDef {
    let local_name = match &link.options.prefix {
        Some(prefix) => format!("{}/{}", prefix.trim_end_matches('/'), remote.name),
        None => remote.name.clone(),
    };
    let spec = OperationSpec {
        name: local_name,
        visibility: link.options.visibility,
        ..remote.clone()
    };
    let def = OperationDef::from_spec(spec);
    let link = link.clone();
    let remote_name = remote.name;
    match remote.op_type {
        OpType::Query | OpType::Mutation => def.unary(move |cx, input: Value| {
            let link = link.clone();
            let remote_name = remote_name.clone();
            async move {
                let client = link.client_or_internal().await?;
                client
                    .call_forwarding(&remote_name, input, cx.identity.as_deref().cloned())
                    .await
            }
        }),
        OpType::Subscription => def.stream(move |cx, input: Value| {
            let link = link.clone();
            let remote_name = remote_name.clone();
            futures::stream::once(async move {
                let client = link.client_or_internal().await?;
                client
                    .subscribe_forwarding(&remote_name, input, cx.identity.as_deref().cloned())
                    .await
            })
            .flat_map(|started| match started {
                Ok(items) => items.boxed(),
                Err(error) => futures::stream::once(async move { Err(error) }).boxed(),
            })
        }),
    }
}
