//! Closes HTTP connections that hold a slot without using it.
//!
//! hyper serves a connection for as long as its peer keeps it open; a peer
//! that completes TLS and then sends nothing, or trickles its headers, would
//! hold a connection slot forever. [`Activity`] counts the connection's
//! requests in flight (a response counts until its body is done), and
//! [`Activity::expired`] resolves once the connection has been idle past its
//! limit: before the first request, between requests, or in the middle of a
//! request's headers.

use std::sync::Arc;

use alknet_core::ConnectionInfo;
use tokio::sync::watch;
use tokio::time::Instant;

use crate::limits::ConnectionLimits;

/// Why an idle connection is closed.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Expiry {
    /// No complete request within `first_request_timeout`.
    NoFirstRequest,
    /// Bytes of a request arrived, but not its whole head, within
    /// `header_read_timeout`.
    HeadersTooSlow,
    /// No request in flight for `idle_timeout`.
    Idle,
}

impl Expiry {
    /// For the log.
    pub(crate) fn describe(self) -> &'static str {
        match self {
            Self::NoFirstRequest => "no complete request within first_request_timeout",
            Self::HeadersTooSlow => "request headers incomplete after header_read_timeout",
            Self::Idle => "idle for http_idle_timeout",
        }
    }
}

#[derive(Clone, Copy, Debug)]
struct State {
    in_flight: usize,
    requests: u64,
    /// When `in_flight` last dropped to zero (or the connection started).
    idle_since: Instant,
    /// The connection's received bytes at `idle_since`.
    bytes_in_at_idle: u64,
}

/// The requests of one connection, as the watchdog sees them.
#[derive(Clone)]
pub(crate) struct Activity {
    state: Arc<watch::Sender<State>>,
    info: Arc<ConnectionInfo>,
}

/// One request in flight; dropping it ends the request.
pub(crate) struct InFlight(Activity);

impl Drop for InFlight {
    fn drop(&mut self) {
        let bytes_in = self.0.info.stats().bytes_in();
        self.0.state.send_modify(|state| {
            state.in_flight -= 1;
            if state.in_flight == 0 {
                state.idle_since = Instant::now();
                state.bytes_in_at_idle = bytes_in;
            }
        });
    }
}

impl Activity {
    /// A connection that starts now, with nothing received yet.
    pub(crate) fn new(info: Arc<ConnectionInfo>) -> Self {
        let state = State {
            in_flight: 0,
            requests: 0,
            idle_since: Instant::now(),
            bytes_in_at_idle: info.stats().bytes_in(),
        };
        Self {
            state: Arc::new(watch::Sender::new(state)),
            info,
        }
    }

    /// Marks a request (or a session riding the connection) as in flight
    /// until the guard is dropped.
    pub(crate) fn request_started(&self) -> InFlight {
        self.state.send_modify(|state| {
            state.in_flight += 1;
            state.requests += 1;
        });
        InFlight(self.clone())
    }

    /// Resolves once the connection has been idle past its limit.
    /// `watch_headers`: HTTP/1.1, where bytes that arrive while no request is
    /// in flight are the next request's head.
    pub(crate) async fn expired(&self, limits: &ConnectionLimits, watch_headers: bool) -> Expiry {
        let mut changes = self.state.subscribe();
        loop {
            let state = *changes.borrow_and_update();
            if state.in_flight > 0 {
                // The sender lives in `self`: `changed` cannot fail.
                let _ = changes.changed().await;
                continue;
            }
            let (limit, expiry) = if state.requests == 0 {
                (limits.first_request_timeout, Expiry::NoFirstRequest)
            } else {
                (limits.idle_timeout, Expiry::Idle)
            };
            let idle_deadline = state.idle_since + limit;
            let header_deadline = state.idle_since + limits.header_read_timeout;
            if watch_headers && header_deadline < idle_deadline {
                tokio::select! {
                    _ = changes.changed() => continue,
                    () = tokio::time::sleep_until(header_deadline) => {}
                }
                if self.info.stats().bytes_in() > state.bytes_in_at_idle {
                    return Expiry::HeadersTooSlow;
                }
            }
            tokio::select! {
                _ = changes.changed() => continue,
                () = tokio::time::sleep_until(idle_deadline) => return expiry,
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use alknet_core::{Alpn, Connection};

    use super::*;

    fn limits(first: u64, headers: u64, idle: u64) -> ConnectionLimits {
        ConnectionLimits {
            first_request_timeout: Duration::from_millis(first),
            header_read_timeout: Duration::from_millis(headers),
            idle_timeout: Duration::from_millis(idle),
            ..ConnectionLimits::default()
        }
    }

    fn activity() -> Activity {
        let (stream, _) = tokio::io::duplex(64);
        let connection = Connection::from_stream(
            stream,
            Alpn::new(crate::ALPN_HTTP_1_1),
            "127.0.0.1:1".parse().unwrap(),
            None,
        );
        Activity::new(connection.info().clone())
    }

    #[tokio::test]
    async fn idle_limits_run_only_while_nothing_is_in_flight() {
        let activity = activity();
        let started = Instant::now();
        let expiry = activity.expired(&limits(50, 1000, 1000), true).await;
        assert_eq!(expiry, Expiry::NoFirstRequest);
        assert!(started.elapsed() >= Duration::from_millis(50));

        let request = activity.request_started();
        let limits = limits(50, 1000, 100);
        let waiting = activity.expired(&limits, true);
        tokio::pin!(waiting);
        // A request in flight (a long response) is never idle.
        assert!(
            tokio::time::timeout(Duration::from_millis(300), waiting.as_mut())
                .await
                .is_err()
        );
        let ended = Instant::now();
        drop(request);
        assert_eq!(waiting.await, Expiry::Idle);
        assert!(ended.elapsed() >= Duration::from_millis(100));
    }

    #[tokio::test]
    async fn bytes_without_a_whole_head_expire_at_the_header_limit() {
        let activity = activity();
        drop(activity.request_started());
        activity.info.stats().record_in(10);
        let ended = Instant::now();
        let expiry = activity.expired(&limits(50, 100, 5000), true).await;
        assert_eq!(expiry, Expiry::HeadersTooSlow);
        let waited = ended.elapsed();
        assert!(waited >= Duration::from_millis(100) && waited < Duration::from_secs(4));
    }
}
