//! The node-wide part of the file `alknet init` writes; each section's part
//! is its [`ConfigSection::TEMPLATE`](super::ConfigSection::TEMPLATE), and
//! [`SectionRegistry::template`](super::SectionRegistry::template) joins them.

/// Core's keys, each with its default and what it does.
pub(super) const NODE_TEMPLATE: &str = r#"# alknet node configuration.
# Every key below is shown with its default; delete a line to keep the default.
# Unknown keys are errors. Durations are written like "500ms", "10s", "2m".

# QUIC (UDP) and TLS (TCP) listen on this address, the same port number for both.
listen = "127.0.0.1:4433"

# Log filter (tracing EnvFilter syntax, e.g. "info,alknet_supervisors=debug").
# Each comma-separated directive is a level (trace, debug, info, warn, error,
# off) or target=level. The ALKNET_LOG environment variable overrides it.
log = "info"
# How log lines are written on standard error: "text" for people, or "json"
# (one object per line) for log collectors.
log_format = "text"
# Threads that run the node's work. Unset: one per CPU core. Where the node
# shares a few cores with busy local clients, fewer threads hand work between
# them less often (docs/operations.md has the trade-off). Needs a restart.
# workers = 2

[tls]
# An operator certificate (PEM chain and key) for browser-facing TLS: used for
# clients that offer no alknet/* ALPN. Relative paths are relative to the data
# directory. Without it, peers get the node's Ed25519 certificate and browsers a
# self-signed ECDSA certificate from the data directory.
# cert = "fullchain.pem"
# key = "privkey.pem"

[limits]
# Connections the node holds at once, over all protocols. Excess connections
# are refused: QUIC application error 0x2 "connection limit reached"; TCP+TLS
# closed right after the handshake.
max_connections = 10000
# Connections one protocol holds at once (override under [protocols."<alpn>"]).
max_connections_per_protocol = 4096
# Time a client has to complete its TLS handshake.
handshake_timeout = "10s"
# Handshakes in progress at once, per listener. When full, a new connection
# evicts the oldest handshake whose peer has sent nothing yet (QUIC: whose
# address is not validated), else the oldest, so idle sockets cannot lock real
# clients out. Past half of it, QUIC answers Initials from unvalidated
# addresses with a stateless Retry.
max_pending_handshakes = 1024
# Largest call-protocol frame, in bytes (at most 67108864 = 64 MiB).
max_frame = 16777216
# Requests one call session serves at once; beyond it: UNAVAILABLE.
max_in_flight = 256
# Deadline of a query or mutation; beyond it: TIMEOUT.
call_timeout = "30s"
# A call session whose peer reads nothing for this long while output waits is
# closed.
write_stall = "30s"
# Calls one HTTP gateway /batch may hold; beyond it: 413.
max_batch = 100
# A connection that has sent no complete request (HTTP) or frame (alknet/call)
# this long after its TLS handshake is closed.
first_request_timeout = "30s"
# HTTP/1.1: time a client has to send a request's headers, counted from when the
# connection starts waiting for the next request; beyond it the connection is
# closed.
header_read_timeout = "30s"
# An HTTP connection with no request in flight this long is closed.
http_idle_timeout = "60s"
# HTTP/2: a connection that has received nothing this long is pinged, and closed
# if the ping goes unanswered for http2_ping_timeout.
http2_ping_interval = "20s"
http2_ping_timeout = "20s"
# Slowest average rate (bytes per second) a request body may arrive at; a body
# may fall behind it by header_read_timeout. Slower: 408, and the body is dropped.
min_body_rate = 1024
# Request- and response-body bytes one HTTP connection may hold at once, over
# all its requests (a reply counts until its peer has read it); beyond it: 503.
http_body_budget = 33554432
# HTTP/2: requests (streams) one connection may have open at once.
http2_max_streams = 100
# HTTP/2: response bytes queued per stream while the peer is not reading.
http2_send_buffer = 16384
# /subscribe streams one HTTP connection may hold at once; beyond it: 503. A
# subscription whose events the peer does not read for write_stall is ended.
http_max_subscriptions = 16
# What one call session may register with session/register (operations, and
# bytes of their JSON), and what all sessions may hold together; sessions
# without an identity share at most half of the total. Beyond: INVALID_INPUT.
max_overlay_operations = 256
max_overlay_bytes = 262144
max_overlay_bytes_total = 16777216

[supervision]
# A crashed protocol supervisor, listener or router is restarted; more than
# max_restarts restarts within restart_window escalate: the node logs one line
# and shuts down in order (exit status 1), for the service manager to act on.
max_restarts = 5
restart_window = "10s"
# On SIGINT/SIGTERM, connections get this long to finish before they are closed.
drain_timeout = "5s"

# Per-protocol overrides, keyed by ALPN:
# [protocols."alknet/echo"]
# max_connections = 1000
# max_restarts = 3
# restart_window = "30s"
"#;
