//! What one HTTP connection may make the node hold, and for how long
//! (`[limits]` in the node configuration). An anonymous peer controls its own
//! flow-control windows, pace and concurrency; these bound what that can cost
//! the node whatever it chooses.

use std::time::Duration;

/// Time limits and caps applied to every HTTP connection.
#[derive(Clone, Debug)]
pub struct ConnectionLimits {
    /// A connection without a complete request this long after its handshake
    /// is closed.
    pub first_request_timeout: Duration,
    /// HTTP/1.1: a request's headers must be complete this long after the
    /// connection starts waiting for them.
    pub header_read_timeout: Duration,
    /// A connection with no request in flight this long is closed.
    pub idle_timeout: Duration,
    /// HTTP/2: a connection that has received nothing this long is pinged.
    pub ping_interval: Duration,
    /// HTTP/2: an unanswered ping closes the connection after this long.
    pub ping_timeout: Duration,
    /// Slowest average rate of a request body, in bytes per second; a body may
    /// fall behind it by `header_read_timeout`.
    pub min_body_rate: u64,
    /// Request- and response-body bytes one connection may hold at once, over
    /// all its requests (a reply counts until its peer has read it).
    pub body_budget: usize,
    /// HTTP/2: streams open at once.
    pub max_streams: u32,
    /// HTTP/2: response bytes queued per stream for a peer that is not
    /// reading.
    pub send_buffer: usize,
    /// `/subscribe` streams one connection may hold at once.
    pub max_subscriptions: usize,
}

impl Default for ConnectionLimits {
    fn default() -> Self {
        Self {
            first_request_timeout: Duration::from_secs(30),
            header_read_timeout: Duration::from_secs(30),
            idle_timeout: Duration::from_secs(60),
            ping_interval: Duration::from_secs(20),
            ping_timeout: Duration::from_secs(20),
            min_body_rate: 1024,
            body_budget: 32 * 1024 * 1024,
            max_streams: 100,
            send_buffer: 16 * 1024,
            max_subscriptions: 16,
        }
    }
}
