//! The call protocol (PROTOCOL.md §3–§10): how everything above the byte level
//! talks.
//!
//! This crate starts from its sans-IO core, which is tested without sockets:
//! - [`envelope`]: the `EventEnvelope` and its five event types (§4);
//! - [`error`]: `CallError` and the protocol error codes (§8);
//! - [`codec`]: the length-prefixed framing for byte streams (§3.1), with every
//!   size limit checked before anything is allocated;
//! - [`names`]: operation names (§6.1);
//! - [`access`]: the per-operation access check with its exact messages (§6.3);
//! - [`schema`]: input validation against compiled JSON Schemas (§6.4);
//! - [`registry`]: operations, their specs and handlers (§6);
//! - [`dispatch`]: the order in which a request is checked and run (§7.1);
//! - [`builtins`]: discovery, `services/list` and `services/schema` (§10);
//! - [`session`]: a session's bookkeeping — correlation, duplicate ids, the
//!   in-flight cap, aborts and close (§4.3, §5, §9).
//!
//! Around it, the asynchronous shell:
//! - [`actor`]: the `CallSession` actor running one session, either end;
//! - `streams`: feeding a session from a connection's streams;
//! - [`messages`]: feeding a session from whole messages (a WebSocket);
//! - [`handle`]: `SessionHandle`, calling the remote end and its overlay;
//! - [`overlay`]: what a session's remote end registered, and its bounds;
//! - [`server`]: the `alknet/call` protocol handler;
//! - [`client`]: `CallClient`, dialing a node over QUIC or TCP+TLS;
//! - [`from_call`]: importing another node's operations;
//! - [`admin`]: `admin/tree` and `admin/kill`, reaching the node through
//!   [`alknet_core::NodeControl`].

#![warn(missing_docs)]

pub mod access;
pub mod actor;
pub mod admin;
pub mod builtins;
pub mod client;
pub mod codec;
pub mod dispatch;
pub mod envelope;
pub mod error;
pub mod from_call;
pub mod handle;
pub mod messages;
pub mod names;
pub mod overlay;
pub mod registry;
pub mod schema;
pub mod server;
pub mod session;
mod streams;

pub use client::{CallClient, ClientOptions};
pub use codec::{FrameDecoder, FrameError};
pub use envelope::{CallRequest, Event, EventEnvelope, Incoming};
pub use error::CallError;
pub use handle::{CallOptions, SessionHandle, Subscription};
pub use registry::{OperationDef, Registry};
pub use server::{CallHandler, SessionConfig, SessionLimits};

pub use alknet_core::close::{NO_ERROR, PROTOCOL_ERROR};

/// The call protocol's ALPN (`docs/protocol.md` §2).
pub const ALPN: &str = "alknet/call";
