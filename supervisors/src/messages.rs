//! The orders the node's actors take, and the reasons the node stops.
//!
//! They live apart from the actors so that an actor can message another
//! without importing it (the router spawns connection actors that the
//! protocol supervisors later order about; the node state hands connections
//! to the router).

use alknet_core::Connection;
use ractor::RpcReplyPort;

/// Orders the root supervisor takes.
pub(crate) enum RootMsg {
    /// Reply once every child has started (or failed to).
    NotifyReady(tokio::sync::oneshot::Sender<Result<(), String>>),
    /// Stop the listeners and restart nothing from now on.
    StopAccepting(RpcReplyPort<()>),
}

/// Orders the router takes.
pub(crate) enum RouterMsg {
    /// A connection whose handshake completed.
    Route(Connection),
}

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

/// Orders a connection actor takes.
pub(crate) enum ConnectionMsg {
    /// The handler task ended: its result, or the panic message.
    Finished(Result<Result<(), String>, String>),
    /// Ask the handler to finish.
    Drain,
    /// Close now with this QUIC code and reason.
    Close(u32, &'static str),
}

/// How a node ended.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ShutdownReason {
    /// Shutdown was requested (signal, [`crate::NodeHandle::shutdown`]).
    Requested,
    /// A permanent actor exceeded its restart intensity.
    Escalated {
        /// The actor's tree name.
        actor: String,
    },
}
