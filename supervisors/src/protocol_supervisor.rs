//! Protocol supervisors: one per registered protocol, owning its connection
//! actors ([`crate::connection_actor`]).
//!
//! A protocol supervisor is permanent: the root restarts it when it crashes.
//! Its connection actors are temporary: never restarted (the client
//! reconnects), and their exit — normal or a panic — never stops the
//! supervisor, which is the opposite of ractor's default and the point of this
//! module.

use std::sync::Arc;

use alknet_core::log_limit::LogLimit;
use ractor::{Actor, ActorProcessingErr, ActorRef, SupervisionEvent};

use crate::directory::{ActorInfo, ActorKind, DirectoryEntry};
use crate::messages::{ConnectionMsg, ProtocolMsg};
use crate::protocol_entry::ProtocolEntry;
use crate::state::NodeState;

// A crash is a bug, but one a peer may be able to trigger on every connection.
static CONNECTION_CRASHED: LogLimit = LogLimit::warn("connection actor crashed");

pub(crate) struct ProtocolSupervisor;

pub(crate) struct ProtocolArgs {
    pub(crate) node: Arc<NodeState>,
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
        let registration = args.node.directory.register(
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
        args.entry.set_supervisor(myself.get_cell());
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
        state.entry.clear_supervisor(&myself.get_cell());
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
        if let SupervisionEvent::ActorFailed(..) = event {
            metrics::counter!("alknet_connection_crashes_total", "alpn" => state.entry.alpn.clone())
                .increment(1);
        }
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
