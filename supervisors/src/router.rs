//! The router: resolves a negotiated connection's ALPN to its protocol, admits
//! it under the caps, resolves the peer's identity, and spawns its connection
//! actor linked under the protocol's supervisor.
//!
//! It holds no connection state, so restarting it loses nothing.

use std::sync::Arc;

use alknet_core::Connection;
use alknet_core::close::{self, REFUSED_REASON, SHUTDOWN_REASON};
use alknet_core::log_limit::LogLimit;
use ractor::{Actor, ActorProcessingErr, ActorRef};

use crate::admission::Refusal;
use crate::connection_actor::{ConnectionActor, ConnectionArgs};
use crate::directory::{ActorInfo, ActorKind, DirectoryEntry};
use crate::messages::RouterMsg;
use crate::state::NodeState;

pub(crate) struct Router;

pub(crate) struct RouterArgs {
    pub(crate) node: Arc<NodeState>,
    pub(crate) restarts: u32,
}

pub(crate) struct RouterState {
    node: Arc<NodeState>,
    _registration: DirectoryEntry,
}

impl Actor for Router {
    type Msg = RouterMsg;
    type State = RouterState;
    type Arguments = RouterArgs;

    async fn pre_start(
        &self,
        myself: ActorRef<Self::Msg>,
        args: Self::Arguments,
    ) -> Result<Self::State, ActorProcessingErr> {
        let registration = args.node.directory.register(
            myself.get_id(),
            ActorInfo::new("router", ActorKind::Router, args.restarts),
        );
        Ok(RouterState {
            node: args.node,
            _registration: registration,
        })
    }

    async fn post_start(
        &self,
        myself: ActorRef<Self::Msg>,
        state: &mut Self::State,
    ) -> Result<(), ActorProcessingErr> {
        state.node.set_router(Some(myself));
        Ok(())
    }

    async fn handle(
        &self,
        _myself: ActorRef<Self::Msg>,
        message: Self::Msg,
        state: &mut Self::State,
    ) -> Result<(), ActorProcessingErr> {
        let RouterMsg::Route(connection) = message;
        route(&state.node, connection).await;
        Ok(())
    }
}

// Each of these happens once per connection attempt, which anyone can make.
static REFUSED_OVER_CAP: LogLimit =
    LogLimit::info("connection refused over a connection cap (limits.max_connections*)");
static SUPERVISOR_RESTARTING: LogLimit =
    LogLimit::warn("connection refused while its protocol supervisor restarts");
static SPAWN_FAILED: LogLimit = LogLimit::warn("cannot start a connection actor");

async fn route(node: &Arc<NodeState>, connection: Connection) {
    let alpn = connection.alpn().clone();
    let remote = connection.remote();
    if node.is_shutting_down() {
        refused(&alpn, "shutting_down");
        connection.close(close::NO_ERROR, SHUTDOWN_REASON);
        return;
    }
    let Some(entry) = node.protocol(&alpn) else {
        // Listeners advertise only registered ALPNs, so this is a bug, not input.
        tracing::error!(%alpn, %remote, "negotiated ALPN has no handler");
        connection.close(close::PROTOCOL_ERROR, "no handler");
        return;
    };
    let permit = match node.admission.try_admit(&entry.gauge) {
        Ok(permit) => permit,
        Err(refusal) => {
            let cap = match refusal {
                Refusal::Node => "node",
                Refusal::Protocol => "protocol",
            };
            refused(
                &alpn,
                if cap == "node" {
                    "node_cap"
                } else {
                    "protocol_cap"
                },
            );
            if REFUSED_OVER_CAP.admit() {
                tracing::info!(%alpn, %remote, cap, "connection refused: {REFUSED_REASON}");
            }
            connection.close(entry.handler.protocol().refused_code, REFUSED_REASON);
            return;
        }
    };
    if let Some(fingerprint) = connection.info().peer_fingerprint() {
        let identity = node.identities.resolve_fingerprint(&fingerprint);
        if identity.is_none() {
            alknet_core::auth_log::peer_unknown(remote, &fingerprint, alpn.as_str());
        }
        connection.info().set_identity(identity);
    }
    let Some(supervisor) = entry.supervisor() else {
        refused(&alpn, "restarting");
        if SUPERVISOR_RESTARTING.admit() {
            tracing::warn!(%alpn, %remote, "protocol supervisor is restarting; connection refused");
        }
        connection.close(entry.handler.protocol().refused_code, "protocol restarting");
        return;
    };
    let args = ConnectionArgs {
        node: node.clone(),
        entry: entry.clone(),
        connection: connection.clone(),
        permit,
    };
    if let Err(error) = Actor::spawn_linked(None, ConnectionActor, args, supervisor).await {
        refused(&alpn, "spawn_failed");
        if SPAWN_FAILED.admit() {
            tracing::warn!(%alpn, %remote, "cannot start connection actor: {error}");
        }
        connection.close(entry.handler.protocol().refused_code, "protocol restarting");
    }
}

/// `alknet_connections_refused_total{alpn, cause}`: the ALPN was negotiated,
/// so it is one the node serves (a bounded label).
fn refused(alpn: &alknet_core::Alpn, cause: &'static str) {
    metrics::counter!(
        "alknet_connections_refused_total",
        "alpn" => alpn.to_string(),
        "cause" => cause
    )
    .increment(1);
}
