//! Protocol supervisors and the connection actors under them.
//!
//! A protocol supervisor is permanent: the root restarts it when it crashes.
//! Its connection actors are temporary: never restarted (the client
//! reconnects), and their exit — normal or a panic — never stops the
//! supervisor, which is the opposite of ractor's default and the point of this
//! module. A connection actor runs its handler in a task of its own so it can
//! still take orders (drain, close) while the handler is busy; the task's
//! panic is caught and turned into the actor's failure.

use std::panic::AssertUnwindSafe;
use std::sync::{Arc, PoisonError, RwLock};

use alknet_core::log_limit::LogLimit;
use alknet_core::{Connection, ProtocolHandler};
use futures::FutureExt;
use ractor::{Actor, ActorCell, ActorProcessingErr, ActorRef, SupervisionEvent};
use tokio_util::task::AbortOnDropHandle;
use tracing::Instrument;

use crate::admission::{Gauge, Permit};
use crate::close_code;
use crate::directory::{ActorInfo, ActorKind, DirectoryEntry};
use crate::node::Shared;

/// Everything the node knows about one registered protocol.
pub(crate) struct ProtocolEntry {
    /// `proto/<name>`.
    pub(crate) supervisor_name: String,
    /// Name of its connection actors.
    pub(crate) connection_name: String,
    /// The first ALPN: the key for configuration overrides and logs.
    pub(crate) alpn: String,
    pub(crate) handler: Arc<dyn ProtocolHandler>,
    pub(crate) gauge: Arc<Gauge>,
    supervisor: RwLock<Option<ActorCell>>,
}

impl ProtocolEntry {
    pub(crate) fn new(handler: Arc<dyn ProtocolHandler>, alpn: String, cap: usize) -> Self {
        let name = handler.name();
        let supervisor_name =
            if alpn == alknet_core::Alpn::H2 || alpn == alknet_core::Alpn::HTTP_1_1 {
                "proto/http".to_owned()
            } else {
                format!("proto/{name}")
            };
        Self {
            supervisor_name,
            connection_name: handler.connection_actor_name(),
            alpn,
            handler,
            gauge: Arc::new(Gauge::new(cap)),
            supervisor: RwLock::new(None),
        }
    }

    /// The live supervisor, if it is up.
    pub(crate) fn supervisor(&self) -> Option<ActorCell> {
        self.supervisor
            .read()
            .unwrap_or_else(PoisonError::into_inner)
            .clone()
            .filter(|cell| {
                matches!(
                    cell.get_status(),
                    ractor::ActorStatus::Starting | ractor::ActorStatus::Running
                )
            })
    }

    fn set_supervisor(&self, cell: Option<ActorCell>) {
        *self
            .supervisor
            .write()
            .unwrap_or_else(PoisonError::into_inner) = cell;
    }
}

// A crash is a bug, but one a peer may be able to trigger on every connection.
static CONNECTION_CRASHED: LogLimit = LogLimit::warn("connection actor crashed");
static SESSION_CRASHED: LogLimit = LogLimit::warn("session actor crashed");

/// Orders a protocol supervisor takes.
pub(crate) enum ProtocolMsg {
    /// Ask every connection to finish its work.
    Drain,
    /// Close every connection now with this QUIC code and reason.
    CloseAll(u32, &'static str),
    /// Test builds: panic inside the supervisor.
    #[cfg(feature = "fault-injection")]
    InjectPanic,
}

pub(crate) struct ProtocolSupervisor;

pub(crate) struct ProtocolArgs {
    pub(crate) shared: Arc<Shared>,
    pub(crate) entry: Arc<ProtocolEntry>,
    pub(crate) restarts: u32,
}

pub(crate) struct ProtocolState {
    entry: Arc<ProtocolEntry>,
    _registration: DirectoryEntry,
}

impl Actor for ProtocolSupervisor {
    type Msg = ProtocolMsg;
    type State = ProtocolState;
    type Arguments = ProtocolArgs;

    async fn pre_start(
        &self,
        myself: ActorRef<Self::Msg>,
        args: Self::Arguments,
    ) -> Result<Self::State, ActorProcessingErr> {
        let registration = args.shared.directory.register(
            myself.get_id(),
            ActorInfo::new(
                &args.entry.supervisor_name,
                ActorKind::Supervisor,
                args.restarts,
            ),
        );
        // Published as soon as it exists: ractor links children to a starting
        // actor and queues their supervision events until it runs, so the
        // router never has to refuse a connection while we start.
        args.entry.set_supervisor(Some(myself.get_cell()));
        Ok(ProtocolState {
            entry: args.entry,
            _registration: registration,
        })
    }

    async fn post_stop(
        &self,
        myself: ActorRef<Self::Msg>,
        state: &mut Self::State,
    ) -> Result<(), ActorProcessingErr> {
        let mut slot = state
            .entry
            .supervisor
            .write()
            .unwrap_or_else(PoisonError::into_inner);
        if slot.as_ref().is_some_and(|c| c.get_id() == myself.get_id()) {
            *slot = None;
        }
        Ok(())
    }

    async fn handle(
        &self,
        myself: ActorRef<Self::Msg>,
        message: Self::Msg,
        _state: &mut Self::State,
    ) -> Result<(), ActorProcessingErr> {
        match message {
            ProtocolMsg::Drain => {
                tracing::debug!(
                    children = myself.get_children().len(),
                    "draining connections"
                );
                for child in myself.get_children() {
                    let _ = child.send_message(ConnectionMsg::Drain);
                }
            }
            ProtocolMsg::CloseAll(code, reason) => {
                for child in myself.get_children() {
                    let _ = child.send_message(ConnectionMsg::Close(code, reason));
                }
            }
            #[cfg(feature = "fault-injection")]
            ProtocolMsg::InjectPanic => panic!("injected supervisor panic"),
        }
        Ok(())
    }

    async fn handle_supervisor_evt(
        &self,
        _myself: ActorRef<Self::Msg>,
        event: SupervisionEvent,
        state: &mut Self::State,
    ) -> Result<(), ActorProcessingErr> {
        // Connection actors are temporary: log their end, never restart them,
        // never stop because of them.
        match event {
            SupervisionEvent::ActorFailed(child, error) if CONNECTION_CRASHED.admit() => {
                tracing::warn!(
                    actor = %child.get_id(),
                    alpn = %state.entry.alpn,
                    "connection actor crashed: {error}"
                );
            }
            SupervisionEvent::ActorTerminated(child, _, reason) => {
                tracing::trace!(actor = %child.get_id(), ?reason, "connection actor ended");
            }
            _ => {}
        }
        Ok(())
    }
}

/// Orders a connection actor takes.
pub(crate) enum ConnectionMsg {
    /// The handler task ended: its result, or the panic message.
    Finished(Result<Result<(), String>, String>),
    /// Ask the handler to finish.
    Drain,
    /// Close now with this QUIC code and reason.
    Close(u32, &'static str),
}

pub(crate) struct ConnectionActor;

pub(crate) struct ConnectionArgs {
    pub(crate) shared: Arc<Shared>,
    pub(crate) entry: Arc<ProtocolEntry>,
    pub(crate) connection: Connection,
    pub(crate) permit: Permit,
}

pub(crate) struct ConnectionState {
    shared: Arc<Shared>,
    connection: Connection,
    handler: Arc<dyn ProtocolHandler>,
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
                let _ = cell.send_message(ConnectionMsg::Close(
                    close_code::NO_ERROR,
                    crate::KILLED_REASON,
                ));
            }));
        let registration = args.shared.directory.register(myself.get_id(), info);
        args.connection.set_tree(Arc::new(ConnectionPlace {
            actor: myself.get_cell(),
            shared: args.shared.clone(),
        }));
        Ok(ConnectionState {
            shared: args.shared,
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
        if state.shared.is_shutting_down() {
            connection.begin_drain();
        }
        let span = tracing::info_span!(
            "conn",
            actor = %myself.get_id(),
            alpn = %connection.alpn(),
            remote = %connection.remote(),
        );
        let handler = state.handler.clone().handle(connection);
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
                state
                    .registration
                    .info()
                    .set_status(crate::ActorStatus::Draining);
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
    shared: Arc<Shared>,
}

impl alknet_core::ConnectionTree for ConnectionPlace {
    fn parent(&self) -> ActorCell {
        self.actor.clone()
    }

    fn register(&self, actor: &ActorCell, child: alknet_core::ChildActor) -> Box<dyn Send + Sync> {
        let info = ActorInfo::new(child.name, ActorKind::Session, 0)
            .with_connection(child.info)
            .with_kill(child.kill);
        Box::new(self.shared.directory.register(actor.get_id(), info))
    }
}

impl Drop for ConnectionState {
    /// However the actor ends — its handler returned, it was killed, or it
    /// panicked (ractor skips `post_stop` then) — the connection closes with it.
    fn drop(&mut self) {
        let reason = if self.connection.is_draining() {
            crate::SHUTDOWN_REASON
        } else {
            ""
        };
        self.connection.close(close_code::NO_ERROR, reason);
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
