//! The node's actor topology.
//!
//! ```text
//! node (root supervisor)                      root.rs
//! ├── proto/<name>     one per protocol       protocol_supervisor.rs
//! │   └── <name>-conn  one per connection     connection_actor.rs
//! ├── service/<name>   long-lived work a protocol needs  service_actor.rs
//! ├── router           ALPN → protocol supervisor; admission control
//! ├── listener/quic    accepts QUIC connections
//! └── listener/tcp     accepts TCP+TLS connections
//! ```
//!
//! This crate knows the tree and nothing about any protocol: protocols plug
//! in as [`alknet_core::ProtocolHandler`]s through [`Node::builder`], and their
//! descriptors ([`alknet_core::Protocol`]) say where each ALPN is advertised
//! and which certificate its clients see. The actors share one
//! `NodeState` and message each other through types of their own module
//! (`messages`), so no actor module imports another's. ractor provides actors,
//! links and panic capture but no restart strategies, so [`policy`] implements
//! the small one-for-one policy the tree needs (restart types and intensity),
//! and [`tree`] reads the live tree from ractor's own parent/child links.

#![warn(missing_docs)]

mod admission;
mod connection_actor;
pub mod directory;
mod error;
mod handle;
mod listener;
mod messages;
mod node;
mod pending;
pub mod policy;
mod protocol_entry;
mod protocol_supervisor;
mod root;
mod router;
mod service_actor;
mod shutdown;
mod state;
pub mod tree;

pub use admission::AdmissionStats;
pub use alknet_core::control::{CrashError, KillError};
pub use directory::{ActorDirectory, ActorInfo, ActorKind, ActorStatus};
pub use error::StartError;
pub use handle::NodeHandle;
pub use messages::ShutdownReason;
pub use node::{Node, NodeBuilder};
pub use tree::TreeNode;
