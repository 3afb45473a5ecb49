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
pub mod connection;
pub mod control;
pub mod fault;
pub mod fingerprint;
pub mod handler;
pub mod identity;
pub mod log_limit;
pub mod node_key;
pub mod stall;
pub mod tls;
pub mod tree;

pub use alpn::Alpn;
pub use config::{ConfigError, NodeConfig};
pub use connection::{
    BiStream, Connection, ConnectionInfo, ConnectionStats, Duplex, TransportKind,
};
pub use control::NodeControl;
pub use fingerprint::Fingerprint;
pub use handler::{
    CertificatePolicy, ErasedHandler, HandlerError, Protocol, ProtocolHandler, Transports,
};
pub use identity::{Identity, IdentityProvider, NoIdentities};
pub use node_key::{NodeId, NodeKey};
pub use tree::{ChildActor, ConnectionTree};
