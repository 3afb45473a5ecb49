//! `[limits]`: admission, handshake, call-session and HTTP-connection limits.
//!
//! Some keys bound one protocol (`http_*`, `max_overlay_*`) but live here
//! because the file's format predates per-crate sections and must not change.

use std::time::Duration;

use serde::{Deserialize, Serialize};

/// `[limits]`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Limits {
    /// Connections the node holds at once, over all protocols.
    pub max_connections: usize,
    /// Connections one protocol holds at once (override per protocol).
    pub max_connections_per_protocol: usize,
    /// Time a client has to complete its TLS handshake.
    #[serde(with = "humantime_serde")]
    pub handshake_timeout: Duration,
    /// Handshakes in progress at once, per listener. When full, a new
    /// connection evicts the oldest handshake whose peer has sent nothing yet
    /// (QUIC: whose address is not validated), else the oldest; past half of
    /// it, QUIC answers Initials from unvalidated addresses with a stateless
    /// Retry.
    pub max_pending_handshakes: usize,
    /// Largest call-protocol frame (and WebSocket message), in bytes; at most
    /// 64 MiB.
    pub max_frame: usize,
    /// Requests a call session serves at once from its remote end.
    pub max_in_flight: usize,
    /// Deadline of a query or mutation.
    #[serde(with = "humantime_serde")]
    pub call_timeout: Duration,
    /// A call session whose peer reads nothing for this long while output
    /// waits is closed.
    #[serde(with = "humantime_serde")]
    pub write_stall: Duration,
    /// Items one gateway `/batch` may hold.
    pub max_batch: usize,
    /// A connection that has sent no complete request (HTTP) or frame (call
    /// protocol) this long after its TLS handshake is closed.
    #[serde(with = "humantime_serde")]
    pub first_request_timeout: Duration,
    /// HTTP/1.1: time a client has to send a request's headers, counted from
    /// when the connection waits for the next request.
    #[serde(with = "humantime_serde")]
    pub header_read_timeout: Duration,
    /// An HTTP connection with no request in flight this long is closed.
    #[serde(with = "humantime_serde")]
    pub http_idle_timeout: Duration,
    /// HTTP/2: a connection that has received nothing this long is pinged.
    #[serde(with = "humantime_serde")]
    pub http2_ping_interval: Duration,
    /// HTTP/2: a ping unanswered this long closes the connection.
    #[serde(with = "humantime_serde")]
    pub http2_ping_timeout: Duration,
    /// Slowest average rate a request body may arrive at, in bytes per
    /// second; a body may fall behind it by `header_read_timeout`.
    pub min_body_rate: u64,
    /// Request- and response-body bytes one HTTP connection may hold at
    /// once, over all its requests.
    pub http_body_budget: usize,
    /// HTTP/2: requests (streams) one connection may have open at once.
    pub http2_max_streams: u32,
    /// HTTP/2: bytes of response data queued per stream for a peer that is
    /// not reading.
    pub http2_send_buffer: usize,
    /// `/subscribe` streams one HTTP connection may hold at once.
    pub http_max_subscriptions: usize,
    /// Operations one call session may register with `session/register`.
    pub max_overlay_operations: usize,
    /// JSON bytes of the operations one call session may register.
    pub max_overlay_bytes: usize,
    /// JSON bytes of registered operations over all sessions of the node;
    /// sessions without an identity share at most half of it.
    pub max_overlay_bytes_total: usize,
}

/// The largest `limits.max_frame` any configuration may set (64 MiB).
pub const ABSOLUTE_MAX_FRAME: usize = 67_108_864;

impl Default for Limits {
    fn default() -> Self {
        Self {
            max_connections: 10_000,
            max_connections_per_protocol: 4_096,
            handshake_timeout: Duration::from_secs(10),
            max_pending_handshakes: 1_024,
            max_frame: 16_777_216,
            max_in_flight: 256,
            call_timeout: Duration::from_secs(30),
            write_stall: Duration::from_secs(30),
            max_batch: 100,
            first_request_timeout: Duration::from_secs(30),
            max_overlay_operations: 256,
            max_overlay_bytes: 262_144,
            max_overlay_bytes_total: 16_777_216,
            header_read_timeout: Duration::from_secs(30),
            http_idle_timeout: Duration::from_secs(60),
            http2_ping_interval: Duration::from_secs(20),
            http2_ping_timeout: Duration::from_secs(20),
            min_body_rate: 1024,
            http_body_budget: 32 * 1024 * 1024,
            http2_max_streams: 100,
            http2_send_buffer: 16 * 1024,
            http_max_subscriptions: 16,
        }
    }
}
