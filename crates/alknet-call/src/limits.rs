//! A session's limits (docs/protocol.md §15): in-flight requests, frame
//! sizes, timers, the overlay's bounds. Plain values, read by every part of a
//! session that enforces one.

use std::time::Duration;

use crate::codec::DEFAULT_MAX_FRAME;
use crate::overlay::OverlayLimits;

/// Per-session limits (docs/protocol.md §15).
#[derive(Clone, Debug)]
pub struct SessionLimits {
    /// Largest frame read or written.
    pub max_frame: usize,
    /// The peer's requests in flight at once.
    pub max_in_flight: usize,
    /// Deadline of a query or mutation.
    pub call_timeout: Duration,
    /// Frames queued per stream before writers wait.
    pub outgoing_queue: usize,
    /// How long one write may wait on a peer that reads nothing before the
    /// session is closed.
    pub write_stall: Duration,
    /// What the remote end may register with `session/register`; sessions
    /// sharing these limits share their node-wide budget.
    pub overlay: OverlayLimits,
    /// An accepted connection that has sent no complete frame this long
    /// after its handshake is closed (the dialling side sends first, so it
    /// keeps no such timer).
    pub first_frame_timeout: Duration,
}

impl Default for SessionLimits {
    fn default() -> Self {
        Self {
            max_frame: DEFAULT_MAX_FRAME,
            max_in_flight: 256,
            call_timeout: Duration::from_secs(30),
            outgoing_queue: 1024,
            write_stall: Duration::from_secs(30),
            overlay: OverlayLimits::default(),
            first_frame_timeout: Duration::from_secs(30),
        }
    }
}

impl SessionLimits {
    /// How long a caller waits for the reply to a query or mutation it sent:
    /// the callee's deadline plus 5 s of grace (§9.2).
    pub fn caller_timer(&self) -> Duration {
        self.call_timeout + Duration::from_secs(5)
    }
}
