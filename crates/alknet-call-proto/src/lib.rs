//! The call protocol without I/O (docs/protocol.md §3–§10), as quinn-proto is
//! to quinn: every rule that does not need a socket, a clock or a task lives
//! here and is tested here. `alknet-call` runs it — actors, streams, handlers —
//! and re-exports what its users need.
//!
//! - [`envelope`]: the `EventEnvelope` and its five event types (§4);
//! - [`codec`]: the length-prefixed framing for byte streams (§3.1), with every
//!   size limit checked before anything is allocated;
//! - [`error`]: `CallError` and its [`ErrorCode`]s (§8);
//! - [`names`]: operation names (§6.1);
//! - [`access`]: the per-operation access check with its exact messages (§6.3);
//! - [`schema`]: input validation against compiled JSON Schemas (§6.4);
//! - [`operation`]: what describes an operation — its kind, visibility,
//!   declared errors and spec (§6.2);
//! - [`session`]: a session's bookkeeping — correlation, duplicate ids, the
//!   in-flight cap, aborts and close (§4.3, §5, §9).

#![warn(missing_docs)]

pub mod access;
pub mod codec;
pub mod envelope;
pub mod error;
pub mod names;
pub mod operation;
pub mod schema;
pub mod session;

pub use codec::{FrameDecoder, FrameError};
pub use envelope::{CallRequest, Event, EventEnvelope, Incoming};
pub use error::{CallError, ErrorCode};
