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
#[cfg(feature = "runtime")]
pub mod auth_log;
pub mod close;
pub mod config;
#[cfg(feature = "runtime")]
pub mod connection;
#[cfg(feature = "runtime")]
pub mod control;
#[cfg(feature = "runtime")]
pub mod counted;
#[cfg(feature = "runtime")]
pub mod fault;
#[cfg(feature = "runtime")]
pub mod filling;
pub mod fingerprint;
#[cfg(feature = "runtime")]
pub mod handler;
pub mod identity;
#[cfg(feature = "runtime")]
pub mod log_limit;
pub mod node_key;
pub mod pattern;
pub mod protocol_keys;
#[cfg(feature = "runtime")]
pub mod quic_runtime;
#[cfg(feature = "runtime")]
pub mod service;
#[cfg(feature = "runtime")]
pub mod stall;
#[cfg(feature = "runtime")]
pub mod tls;
#[cfg(feature = "runtime")]
pub mod tree;
#[cfg(feature = "runtime")]
pub mod udp;

pub use alpn::Alpn;
pub use config::{ConfigError, NodeConfig};
#[cfg(feature = "runtime")]
pub use connection::{
    BiStream, Connection, ConnectionInfo, ConnectionStats, Duplex, TransportKind,
};
#[cfg(feature = "runtime")]
pub use control::NodeControl;
#[cfg(feature = "runtime")]
pub use counted::Counted;
#[cfg(feature = "runtime")]
pub use filling::Filling;
pub use fingerprint::Fingerprint;
#[cfg(feature = "runtime")]
pub use handler::{
    CertificatePolicy, ErasedHandler, HandlerError, Protocol, ProtocolHandler, Transports,
};
pub use identity::{Identity, IdentityProvider, NoIdentities};
pub use node_key::{NodeId, NodeKey};
pub use protocol_keys::{KeyDeclaration, KeySource, ProtocolKey, ProtocolKeys};
#[cfg(feature = "runtime")]
pub use tree::{ChildActor, ConnectionTree};
