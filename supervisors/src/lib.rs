//! The node's actor topology.
//!
//! ```text
//! node (root supervisor)
//! ├── proto/<alpn>     one supervisor per registered handler
//! │   └── <proto>-conn one temporary actor per accepted connection
//! ├── router           ALPN → protocol supervisor; admission control
//! ├── listener/quic    accepts QUIC connections
//! └── listener/tcp     accepts TCP+TLS connections
//! ```
//!
//! This crate knows the tree and nothing about any protocol's bytes: protocols
//! plug in as [`alknet_core::ProtocolHandler`]s. ractor provides actors, links
//! and panic capture but no restart strategies, so [`policy`] implements the
//! small one-for-one policy the tree needs (restart types and intensity), and
//! [`tree`] reads the live tree from ractor's own parent/child links.

#![warn(missing_docs)]

pub mod admin;
mod admission;
pub mod directory;
pub mod fault;
mod listener;
mod node;
mod pending;
pub mod policy;
mod protocol;
mod router;
pub mod tree;

pub use admission::AdmissionStats;
pub use directory::{ActorDirectory, ActorInfo, ActorKind, ActorStatus};
#[cfg(feature = "fault-injection")]
pub use node::CrashError;
pub use node::{KillError, Node, NodeHandle, NodeOptions, ShutdownReason, StartError};
pub use tree::TreeNode;

/// QUIC application error codes shared by every protocol (PROTOCOL.md §2).
pub mod close_code {
    pub use alknet_core::close::{NO_ERROR, PROTOCOL_ERROR, REFUSED};
}

pub use alknet_core::close::{KILLED_REASON, REFUSED_REASON, SHUTDOWN_REASON};
