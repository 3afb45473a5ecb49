//! The router: resolves a negotiated connection's ALPN to its protocol, admits
//! it under the caps, resolves the peer's identity, and spawns its connection
//! actor linked under the protocol's supervisor.
//!
//! It holds no connection state, so restarting it loses nothing.

use std::sync::Arc;

use alknet_core::Connection;
use alknet_core::log_limit::LogLimit;
use ractor::{Actor, ActorProcessingErr, ActorRef};

use crate::admission::Refusal;
use crate::directory::{ActorInfo, ActorKind, DirectoryEntry};
use crate::node::Shared;
use crate::protocol::{ConnectionActor, ConnectionArgs};
use crate::{REFUSED_REASON, SHUTDOWN_REASON, close_code};

/// Orders the router takes.
pub(crate) enum RouterMsg {
    /// A connection whose handshake completed.
    Route(Connection),
}

pub(crate) struct Router;

pub(crate) struct RouterArgs {
    pub(crate) shared: Arc<Shared>,
    pub(crate) restarts: u32,
}

pub(crate) struct RouterState {
    shared: Arc<Shared>,
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
        let registration = args.shared.directory.register(
            myself.get_id(),
            ActorInfo::new("router", ActorKind::Router, args.restarts),
        );
        Ok(RouterState {
            shared: args.shared,
            _registration: registration,
        })
    }

    async fn post_start(
        &self,
        myself: ActorRef<Self::Msg>,
        state: &mut Self::State,
    ) -> Result<(), ActorProcessingErr> {
        state.shared.set_router(Some(myself));
        Ok(())
    }

    async fn handle(
        &self,
        _myself: ActorRef<Self::Msg>,
        message: Self::Msg,
        state: &mut Self::State,
    ) -> Result<(), ActorProcessingErr> {
        let RouterMsg::Route(connection) = message;
        route(&state.shared, connection).await;
        Ok(())
    }
}

// Each of these happens once per connection attempt, which anyone can make.
static REFUSED_OVER_CAP: LogLimit =
    LogLimit::info("connection refused over a connection cap (limits.max_connections*)");
static SUPERVISOR_RESTARTING: LogLimit =
    LogLimit::warn("connection refused while its protocol supervisor restarts");
static SPAWN_FAILED: LogLimit = LogLimit::warn("cannot start a connection actor");

async fn route(shared: &Arc<Shared>, connection: Connection) {
    let alpn = connection.alpn().clone();
    let remote = connection.remote();
    if shared.is_shutting_down() {
        connection.close(close_code::NO_ERROR, SHUTDOWN_REASON);
        return;
    }
    let Some(entry) = shared.protocol(&alpn) else {
        // Listeners advertise only registered ALPNs, so this is a bug, not input.
        tracing::error!(%alpn, %remote, "negotiated ALPN has no handler");
        connection.close(close_code::PROTOCOL_ERROR, "no handler");
        return;
    };
    let permit = match shared.admission.try_admit(&entry.gauge) {
        Ok(permit) => permit,
        Err(refusal) => {
            let cap = match refusal {
                Refusal::Node => "node",
                Refusal::Protocol => "protocol",
            };
            if REFUSED_OVER_CAP.admit() {
                tracing::info!(%alpn, %remote, cap, "connection refused: {REFUSED_REASON}");
            }
            connection.close(close_code::REFUSED, REFUSED_REASON);
            return;
        }
    };
    if let Some(fingerprint) = connection.info().peer_fingerprint() {
        connection
            .info()
            .set_identity(shared.identities.resolve_fingerprint(&fingerprint));
    }
    let Some(supervisor) = entry.supervisor() else {
        if SUPERVISOR_RESTARTING.admit() {
            tracing::warn!(%alpn, %remote, "protocol supervisor is restarting; connection refused");
        }
        connection.close(close_code::REFUSED, "protocol restarting");
        return;
    };
    let args = ConnectionArgs {
        shared: shared.clone(),
        entry: entry.clone(),
        connection: connection.clone(),
        permit,
    };
    if let Err(error) = Actor::spawn_linked(None, ConnectionActor, args, supervisor).await {
        if SPAWN_FAILED.admit() {
            tracing::warn!(%alpn, %remote, "cannot start connection actor: {error}");
        }
        connection.close(close_code::REFUSED, "protocol restarting");
    }
}
