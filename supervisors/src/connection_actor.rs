//! Connection actors: one per accepted connection, temporary, linked under
//! its protocol's supervisor.
//!
//! A connection actor runs its handler in a task of its own so it can still
//! take orders (drain, close) while the handler is busy; the task's panic is
//! caught and turned into the actor's failure.

use std::panic::AssertUnwindSafe;
use std::sync::Arc;

use alknet_core::close;
use alknet_core::log_limit::LogLimit;
use alknet_core::{Connection, ErasedHandler};
use futures::FutureExt;
use ractor::{Actor, ActorCell, ActorProcessingErr, ActorRef, SupervisionEvent};
use tokio_util::task::AbortOnDropHandle;
use tracing::Instrument;

use crate::admission::Permit;
use crate::directory::{ActorInfo, ActorKind, ActorStatus, DirectoryEntry};
use crate::messages::ConnectionMsg;
use crate::protocol_entry::ProtocolEntry;
use crate::state::NodeState;

// A crash is a bug, but one a peer may be able to trigger on every connection.
static SESSION_CRASHED: LogLimit = LogLimit::warn("session actor crashed");

pub(crate) struct ConnectionActor;

pub(crate) struct ConnectionArgs {
    pub(crate) node: Arc<NodeState>,
    pub(crate) entry: Arc<ProtocolEntry>,
    pub(crate) connection: Connection,
    pub(crate) permit: Permit,
}

pub(crate) struct ConnectionState {
    node: Arc<NodeState>,
    connection: Connection,
    handler: ErasedHandler,
    registration: DirectoryEntry,
    task: Option<AbortOnDropHandle<()>>,
    _permit: Permit,
}

impl Actor for ConnectionActor {
    type Msg = ConnectionMsg;
    type State = ConnectionState;
    type Arguments = ConnectionArgs;

    async fn pre_start(
        &self,
        myself: ActorRef<Self::Msg>,
        args: Self::Arguments,
    ) -> Result<Self::State, ActorProcessingErr> {
        let cell = myself.get_cell();
        let info = ActorInfo::new(&args.entry.connection_name, ActorKind::Connection, 0)
            .with_connection(args.connection.info().clone())
            .with_kill(Box::new(move || {
                let _ =
                    cell.send_message(ConnectionMsg::Close(close::NO_ERROR, close::KILLED_REASON));
            }));
        let registration = args.node.directory.register(myself.get_id(), info);
        let alpn = args.connection.alpn().to_string();
        metrics::counter!("alknet_connections_accepted_total", "alpn" => alpn.clone()).increment(1);
        metrics::gauge!("alknet_connections_open", "alpn" => alpn).increment(1.0);
        args.connection.set_tree(Arc::new(ConnectionPlace {
            actor: myself.get_cell(),
            node: args.node.clone(),
        }));
        Ok(ConnectionState {
            node: args.node,
            connection: args.connection,
            handler: args.entry.handler.clone(),
            registration,
            task: None,
            _permit: args.permit,
        })
    }

    async fn post_start(
        &self,
        myself: ActorRef<Self::Msg>,
        state: &mut Self::State,
    ) -> Result<(), ActorProcessingErr> {
        let connection = state.connection.clone();
        // Linked before post_start, so a drain broadcast sent after this check
        // reaches us; one sent before it is seen through the flag.
        if state.node.is_shutting_down() {
            connection.begin_drain();
        }
        let span = tracing::info_span!(
            "conn",
            actor = %myself.get_id(),
            alpn = %connection.alpn(),
            remote = %connection.remote(),
        );
        let handler = state.handler.handle(connection);
        let task = tokio::spawn(
            async move {
                let outcome = AssertUnwindSafe(handler)
                    .catch_unwind()
                    .await
                    .map(|result| result.map_err(|e| e.to_string()))
                    .map_err(panic_message);
                let _ = myself.cast(ConnectionMsg::Finished(outcome));
            }
            .instrument(span),
        );
        state.task = Some(AbortOnDropHandle::new(task));
        Ok(())
    }

    async fn handle(
        &self,
        myself: ActorRef<Self::Msg>,
        message: Self::Msg,
        state: &mut Self::State,
    ) -> Result<(), ActorProcessingErr> {
        match message {
            ConnectionMsg::Finished(Ok(Ok(()))) => myself.stop(None),
            ConnectionMsg::Finished(Ok(Err(error))) => {
                tracing::debug!(actor = %myself.get_id(), "connection ended with an error: {error}");
                myself.stop(Some(error));
            }
            ConnectionMsg::Finished(Err(panic)) => {
                return Err(format!("handler panicked: {panic}").into());
            }
            ConnectionMsg::Drain => {
                state.registration.info().set_status(ActorStatus::Draining);
                state.connection.begin_drain();
            }
            ConnectionMsg::Close(code, reason) => {
                state.connection.close(code, reason);
                myself.stop(Some(reason.to_owned()));
            }
        }
        Ok(())
    }

    async fn handle_supervisor_evt(
        &self,
        myself: ActorRef<Self::Msg>,
        event: SupervisionEvent,
        _state: &mut Self::State,
    ) -> Result<(), ActorProcessingErr> {
        // Sessions the handler runs inside this connection (WebSockets) end
        // on their own; one crashing must not take the connection's other
        // sessions with it, which is ractor's default.
        if let SupervisionEvent::ActorFailed(child, error) = event
            && SESSION_CRASHED.admit()
        {
            tracing::warn!(
                actor = %child.get_id(),
                connection = %myself.get_id(),
                "session actor crashed: {error}"
            );
        }
        Ok(())
    }
}

/// A connection actor's place in the tree, handed to its handler.
struct ConnectionPlace {
    actor: ActorCell,
    node: Arc<NodeState>,
}

impl alknet_core::ConnectionTree for ConnectionPlace {
    fn parent(&self) -> ActorCell {
        self.actor.clone()
    }

    fn register(&self, actor: &ActorCell, child: alknet_core::ChildActor) -> Box<dyn Send + Sync> {
        let info = ActorInfo::new(child.name, ActorKind::Session, 0)
            .with_connection(child.info)
            .with_kill(child.kill);
        Box::new(self.node.directory.register(actor.get_id(), info))
    }
}

impl Drop for ConnectionState {
    /// However the actor ends — its handler returned, it was killed, or it
    /// panicked (ractor skips `post_stop` then) — the connection closes with it.
    fn drop(&mut self) {
        let reason = if self.connection.is_draining() {
            close::SHUTDOWN_REASON
        } else {
            ""
        };
        self.connection.close(close::NO_ERROR, reason);
        // Counted once the connection ends: a long-lived connection's bytes
        // show up then.
        let alpn = self.connection.alpn().to_string();
        let stats = self.connection.info().stats();
        metrics::counter!("alknet_received_bytes_total", "alpn" => alpn.clone())
            .increment(stats.bytes_in());
        metrics::counter!("alknet_sent_bytes_total", "alpn" => alpn.clone())
            .increment(stats.bytes_out());
        metrics::gauge!("alknet_connections_open", "alpn" => alpn).decrement(1.0);
    }
}

fn panic_message(payload: Box<dyn std::any::Any + Send>) -> String {
    if let Some(s) = payload.downcast_ref::<&str>() {
        (*s).to_owned()
    } else if let Some(s) = payload.downcast_ref::<String>() {
        s.clone()
    } else {
        "non-string panic payload".to_owned()
    }
}
