//! The types every alknet crate shares.
//!
//! A protocol crate implements [`ProtocolHandler`] and receives [`Connection`]s;
//! the `alknet-supervisors` crate accepts those connections on one port number
//! (QUIC and TCP+TLS), routes them by the ALPN they negotiated and runs each one
//! in its own actor. Neither side needs to know the other's internals: this crate
//! is the seam between them, plus the node's configuration and TLS set-up that
//! both the server and the clients use.

#![warn(missing_docs)]

pub mod alpn;
pub mod close;
pub mod config;
#[cfg(feature = "runtime")]
pub mod connection;
#[cfg(feature = "runtime")]
pub mod echo;
#[cfg(feature = "fault-injection")]
pub mod fault;
pub mod fingerprint;
#[cfg(feature = "runtime")]
pub mod handler;
pub mod identity;
#[cfg(feature = "runtime")]
pub mod log_limit;
pub mod node_key;
#[cfg(feature = "runtime")]
pub mod stall;
#[cfg(feature = "runtime")]
pub mod tls;
#[cfg(feature = "runtime")]
pub mod tree;

pub use alpn::Alpn;
pub use config::{ConfigError, NodeConfig};
#[cfg(feature = "runtime")]
pub use connection::{
    BiStream, Connection, ConnectionInfo, ConnectionStats, Duplex, TransportKind,
};
pub use fingerprint::Fingerprint;
#[cfg(feature = "runtime")]
pub use handler::{HandlerError, HandlerFuture, ProtocolHandler};
pub use identity::{Identity, IdentityProvider, NoIdentities};
pub use node_key::{NodeId, NodeKey};
#[cfg(feature = "runtime")]
pub use tree::{ChildActor, ConnectionTree};

/// The `alknet/fault` handler in builds with the `fault-injection` feature
/// (tests), `None` elsewhere: for crates that cannot see this crate's
/// features, such as the binary, whose `[diagnostics] fault` switches it.
pub fn fault_injection_handler() -> Option<std::sync::Arc<dyn ProtocolHandler>> {
    #[cfg(feature = "fault-injection")]
    return Some(std::sync::Arc::new(fault::FaultHandler));
    #[cfg(not(feature = "fault-injection"))]
    None
}
