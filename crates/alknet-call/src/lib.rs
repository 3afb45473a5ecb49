//! The call protocol (docs/protocol.md §3–§10): how everything above the byte
//! level talks.
//!
//! The rules that need no I/O — envelopes, framing, error codes, names, access
//! checks, schema validation, operation metadata and a session's book — are
//! the `alknet-call-proto` crate, re-exported here under the same module names.
//! This crate runs them:
//! - [`registry`]: operations with their handlers (§6);
//! - [`dispatch`]: the order in which a request is checked and run (§7.1), and
//!   a handler's nested calls;
//! - [`builtins`]: discovery, `services/list` and `services/schema` (§10);
//! - [`actor`]: the `CallSession` actor running one session, either end;
//!   `mailbox` is what it takes, `switchboard` what it shares with handles and
//!   reader tasks;
//! - `streams` and `stream_feed`: feeding a session from a connection's streams;
//! - [`messages`]: feeding a session from whole messages (a WebSocket);
//! - [`handle`]: `SessionHandle`, calling the remote end and its overlay;
//! - [`overlay`]: what a session's remote end registered, and its bounds;
//! - [`session_config`]: what a session runs with, and its limits;
//! - [`server`]: the `alknet/call` protocol handler;
//! - [`client`]: `CallClient`, dialing a node over QUIC or TCP+TLS;
//! - [`from_call`]: importing another node's operations;
//! - [`admin`]: `admin/tree` and `admin/kill`, reaching the node through
//!   [`alknet_core::NodeControl`].

#![warn(missing_docs)]

pub use alknet_call_proto::{access, codec, envelope, error, names, operation, schema, session};

pub mod actor;
pub mod admin;
pub mod builtins;
pub mod call_metrics;
pub mod client;
pub mod dispatch;
pub mod from_call;
pub mod handle;
mod limits;
mod mailbox;
pub mod messages;
pub mod overlay;
pub mod registry;
pub mod server;
pub mod session_config;
mod stream_feed;
mod streams;
mod switchboard;

pub use client::{CallClient, ClientOptions};
pub use codec::{FrameDecoder, FrameError};
pub use envelope::{CallRequest, Event, EventEnvelope, Incoming};
pub use error::{CallError, ErrorCode};
pub use handle::{CallOptions, SessionHandle, Subscription};
pub use registry::{OperationDef, Registry};
pub use server::{CallHandler, LiveSessionLimits, SessionConfig, SessionLimits};

pub use alknet_core::close::{NO_ERROR, PROTOCOL_ERROR};

/// The call protocol's ALPN (`docs/protocol.md` §2).
pub const ALPN: &str = "alknet/call";
