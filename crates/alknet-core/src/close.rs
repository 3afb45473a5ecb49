//! How a node closes connections: the QUIC application error codes every
//! protocol shares (docs/protocol.md §2), and the reasons sent with them, so that
//! a client can tell a refusal from a failure without depending on the
//! supervision tree.

/// Normal close, shutdown, an operator's kill, or a peer that sent nothing in
/// time.
pub const NO_ERROR: u32 = 0x0;
/// A framing or protocol violation.
pub const PROTOCOL_ERROR: u32 = 0x1;
/// Refused by admission control.
pub const REFUSED: u32 = 0x2;

/// The reason sent with a refused connection.
pub const REFUSED_REASON: &str = "connection limit reached";
/// The reason sent when the node shuts down.
pub const SHUTDOWN_REASON: &str = "shutting down";
/// The reason sent with `admin/kill`.
pub const KILLED_REASON: &str = "killed by operator";
