//! Attacks on the HTTP side of a real `alknet serve` (issue #14, defects 2, 3
//! and 8), each mounted by one anonymous client over loopback, each asserting
//! the bound that now holds it:
//!
//! - memory: an HTTP/2 peer with maximal windows that never reads its
//!   subscriptions, an HTTP/1.1 subscription never read, and request bodies
//!   that never finish grow the node's RSS by at most 64 MiB per connection;
//! - time: a connection that sends nothing, or its headers at a byte at a
//!   time, or nothing after a response, is closed within its limit;
//! - stealth: anonymous requests get nginx's 404, byte for byte against
//!   reference bytes captured from nginx (`tests/data/nginx/`).
//!
//! The limits are shortened in each node's configuration to keep the tests
//! quick; that the defaults are 30 s is checked in `alknet-core`'s config
//! tests and below.

use std::time::{Duration, Instant};

use alknet_e2e::client::{quic_connect, quic_endpoint, tls_connect};
use alknet_e2e::process::{self, NodeProcess};
use axum::http::{Request, StatusCode};
use bytes::Bytes;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWriteExt};

const MIB: u64 = 1024 * 1024;
/// What one attacking connection may cost the node (issue #14).
const MAX_GROWTH_PER_CONNECTION: u64 = 64 * MIB;

/// Time limits short enough for a test: 2 s to a first request and to a
/// request's headers, 6 s idle between requests, 2 s write stall.
const SHORT_LIMITS: &str = r#"
[diagnostics]
call_ops = true

[limits]
write_stall = "2s"
first_request_timeout = "2s"
header_read_timeout = "2s"
http_idle_timeout = "6s"
"#;

/// A subscription that produces as fast as the node lets it.
const ENDLESS_SUBSCRIPTION: &str = r#"{"operation":"diag/count","input":{"n":1000000}}"#;

/// The largest HTTP/2 flow-control window (RFC 9113 §6.9.1).
const MAX_WINDOW: u32 = (1 << 31) - 1;

// ---------------------------------------------------------------------------
// Time limits (defect 3)

#[test]
fn the_default_limits_close_a_silent_connection_after_30_s() {
    let limits = alknet_core::config::Limits::default();
    assert_eq!(limits.first_request_timeout, Duration::from_secs(30));
    assert_eq!(limits.header_read_timeout, Duration::from_secs(30));
    let defaults = alknet_http::ConnectionLimits::default();
    assert_eq!(defaults.first_request_timeout, Duration::from_secs(30));
    assert_eq!(defaults.header_read_timeout, Duration::from_secs(30));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_connection_that_sends_nothing_is_closed_after_first_request_timeout() {
    let node = NodeProcess::start(SHORT_LIMITS);
    let addr = node.addr;
    let silent_tls = |alpn: &'static str| async move {
        let mut tls = tls_connect(addr, &[alpn]).await.unwrap();
        let started = Instant::now();
        (
            alpn,
            closed_within(&mut tls, started, Duration::from_secs(10)).await,
        )
    };
    let (h2, http1) = tokio::join!(silent_tls("h2"), silent_tls("http/1.1"));
    // Over QUIC: a client that opens no stream at all.
    let endpoint = quic_endpoint();
    let quic = quic_connect(&endpoint, node.addr, &["h2"]).await.unwrap();
    let started = Instant::now();
    let quic_closed = tokio::time::timeout(Duration::from_secs(10), quic.closed())
        .await
        .map(|_| started.elapsed())
        .ok();
    for (what, closed) in [(h2.0, h2.1), (http1.0, http1.1), ("quic h2", quic_closed)] {
        assert_closed_at_limit(what, closed, Duration::from_secs(2));
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn headers_sent_a_byte_at_a_time_are_cut_off() {
    let node = NodeProcess::start(SHORT_LIMITS);
    let request = b"GET /healthz HTTP/1.1\r\nHost: localhost\r\n\r\n";
    // The first request's headers, over HTTP/1.1.
    let tls = tls_connect(node.addr, &["http/1.1"]).await.unwrap();
    let closed = trickle_until_closed(tls, request, Instant::now()).await;
    assert_closed_at_limit("http/1.1 first request", closed, Duration::from_secs(2));
    // HTTP/2's connection preface.
    let tls = tls_connect(node.addr, &["h2"]).await.unwrap();
    let preface = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n";
    let closed = trickle_until_closed(tls, preface, Instant::now()).await;
    assert_closed_at_limit("h2 preface", closed, Duration::from_secs(2));
    // A second request's headers: header_read_timeout (2 s) cuts it off,
    // long before the 6 s idle limit would.
    let mut tls = tls_connect(node.addr, &["http/1.1"]).await.unwrap();
    tls.write_all(request).await.unwrap();
    read_response(&mut tls, false).await;
    let closed = trickle_until_closed(tls, request, Instant::now()).await;
    assert_closed_at_limit("http/1.1 second request", closed, Duration::from_secs(2));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_keep_alive_connection_is_closed_after_http_idle_timeout() {
    let node = NodeProcess::start(SHORT_LIMITS);
    let idle = Duration::from_secs(6);
    let http1 = async {
        let mut tls = tls_connect(node.addr, &["http/1.1"]).await.unwrap();
        tls.write_all(b"GET /healthz HTTP/1.1\r\nHost: localhost\r\n\r\n")
            .await
            .unwrap();
        read_response(&mut tls, false).await;
        let served = Instant::now();
        closed_within(&mut tls, served, Duration::from_secs(15)).await
    };
    let h2 = async {
        // A client that answers pings and keeps reading: only idleness ends it.
        let tls = tls_connect(node.addr, &["h2"]).await.unwrap();
        let (send, connection) = h2::client::handshake(tls).await.unwrap();
        let driven = tokio::spawn(connection);
        let mut send = send.ready().await.unwrap();
        let (response, _) = send.send_request(get("/healthz"), true).unwrap();
        let response = response.await.unwrap();
        assert_eq!(response.status(), StatusCode::OK);
        drop(response);
        let served = Instant::now();
        tokio::time::timeout(Duration::from_secs(15), driven)
            .await
            .map(|_| served.elapsed())
            .ok()
    };
    let (http1, h2) = tokio::join!(http1, h2);
    assert_closed_at_limit("http/1.1 idle", http1, idle);
    assert_closed_at_limit("h2 idle", h2, idle);
}

// ---------------------------------------------------------------------------
// Memory (defect 2)

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn h2_subscriptions_that_are_never_read_stay_bounded_and_are_closed() {
    let node = NodeProcess::start(SHORT_LIMITS);
    let (baseline_rss, baseline_fds) = settled(&node).await;
    let mut attacker = H2Attacker::connect(&node).await;
    // 200 subscriptions on one connection, as many as the node lets open.
    let responses = attacker.open_subscriptions(200).await;
    let statuses: Vec<StatusCode> = responses.iter().map(status_or_refused).collect();
    let streaming = statuses.iter().filter(|s| **s == StatusCode::OK).count();
    // From now on the attacker reads nothing, yet keeps the connection open.
    attacker.stop_reading();
    let watched = watch_until(&node, Duration::from_secs(20), || {
        node.open_fds() <= baseline_fds
    })
    .await;
    let growth = watched.max_rss.saturating_sub(baseline_rss);
    eprintln!(
        "h2 subscriptions never read: {streaming} open, RSS growth {} KiB, closed: {}",
        growth / 1024,
        watched.done
    );
    assert!(
        growth <= MAX_GROWTH_PER_CONNECTION,
        "RSS grew by {} MiB",
        growth / MIB
    );
    assert!(
        watched.done,
        "the connection whose peer reads nothing was not closed"
    );
    assert!(
        streaming > 0 && streaming <= 16,
        "{streaming} subscriptions open on one connection (cap 16)"
    );
    assert!(
        statuses
            .iter()
            .all(|s| *s == StatusCode::OK || *s == StatusCode::SERVICE_UNAVAILABLE),
        "{statuses:?}"
    );
    drop(responses);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn four_attacking_connections_stay_within_256_mib_in_total() {
    let node = NodeProcess::start(SHORT_LIMITS);
    let (baseline_rss, baseline_fds) = settled(&node).await;
    let mut attackers = Vec::new();
    let mut streams = Vec::new();
    for _ in 0..4 {
        let mut attacker = H2Attacker::connect(&node).await;
        streams.push(attacker.open_subscriptions(100).await);
        attacker.stop_reading();
        attackers.push(attacker);
    }
    let watched = watch_until(&node, Duration::from_secs(20), || {
        node.open_fds() <= baseline_fds
    })
    .await;
    let growth = watched.max_rss.saturating_sub(baseline_rss);
    eprintln!(
        "4 connections, subscriptions never read: RSS growth {} KiB, closed: {}",
        growth / 1024,
        watched.done
    );
    assert!(growth <= 256 * MIB, "RSS grew by {} MiB", growth / MIB);
    assert!(
        watched.done,
        "the connections whose peers read nothing were not closed"
    );
    drop(streams);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_http1_subscription_that_is_never_read_is_closed_after_write_stall() {
    let node = NodeProcess::start(SHORT_LIMITS);
    let (baseline_rss, baseline_fds) = settled(&node).await;
    let mut tls = tls_connect(node.addr, &["http/1.1"]).await.unwrap();
    let request = format!(
        "POST /subscribe HTTP/1.1\r\nHost: localhost\r\nContent-Type: application/json\r\n\
         Content-Length: {}\r\n\r\n{ENDLESS_SUBSCRIPTION}",
        ENDLESS_SUBSCRIPTION.len()
    );
    tls.write_all(request.as_bytes()).await.unwrap();
    // Never read; the socket stays open until the node closes it.
    let watched = watch_until(&node, Duration::from_secs(20), || {
        node.open_fds() <= baseline_fds
    })
    .await;
    let growth = watched.max_rss.saturating_sub(baseline_rss);
    eprintln!(
        "http/1.1 subscription never read: RSS growth {} KiB, closed after {:?}",
        growth / 1024,
        watched.elapsed
    );
    assert!(
        growth <= MAX_GROWTH_PER_CONNECTION,
        "RSS grew by {} MiB",
        growth / MIB
    );
    assert!(
        watched.done,
        "the stalled subscription's connection was not closed"
    );
    drop(tls);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn request_bodies_that_never_finish_stay_bounded() {
    let node = NodeProcess::start(SHORT_LIMITS);
    let (baseline_rss, _) = settled(&node).await;
    let attacker = H2Attacker::connect(&node).await;
    // 100 requests, each announcing one byte more than the 4 MiB it sends.
    let part = Bytes::from(vec![b' '; 4 << 20]);
    let mut heads = Vec::new();
    let mut bodies = Vec::new();
    for _ in 0..100 {
        let mut send = tokio::time::timeout(Duration::from_secs(10), attacker.send.clone().ready())
            .await
            .expect("a stream slot within 10 s")
            .unwrap();
        let (response, mut body) = send
            .send_request(post_json("/call", Some(part.len() + 1)), false)
            .unwrap();
        body.send_data(part.clone(), false).unwrap();
        heads.push(response);
        bodies.push(body);
    }
    let answered = tokio::spawn(futures::future::join_all(heads));
    let watched = watch_until(&node, Duration::from_secs(30), || answered.is_finished()).await;
    let growth = watched.max_rss.saturating_sub(baseline_rss);
    eprintln!(
        "100 unfinished 4 MiB bodies on one connection: RSS growth {} KiB, all answered: {}",
        growth / 1024,
        watched.done
    );
    assert!(
        growth <= MAX_GROWTH_PER_CONNECTION,
        "RSS grew by {} MiB",
        growth / MIB
    );
    assert!(
        watched.done,
        "requests with unfinished bodies were never answered"
    );
    let statuses: Vec<StatusCode> = answered
        .await
        .unwrap()
        .iter()
        .map(status_or_refused)
        .collect();
    assert!(
        statuses
            .iter()
            .all(|s| *s == StatusCode::SERVICE_UNAVAILABLE || *s == StatusCode::REQUEST_TIMEOUT),
        "{statuses:?}"
    );
    drop(bodies);

    // A body that stops arriving: 408 once it is header_read_timeout (2 s)
    // behind.
    let mut tls = tls_connect(node.addr, &["http/1.1"]).await.unwrap();
    tls.write_all(
        b"POST /call HTTP/1.1\r\nHost: localhost\r\nContent-Type: application/json\r\n\
          Content-Length: 100\r\n\r\n{\"operation\"",
    )
    .await
    .unwrap();
    let started = Instant::now();
    let response = tokio::time::timeout(Duration::from_secs(10), read_response(&mut tls, false))
        .await
        .expect("answered within 10 s");
    assert!(
        response.starts_with(b"HTTP/1.1 408 "),
        "{}",
        String::from_utf8_lossy(&response)
    );
    assert_closed_at_limit(
        "stalled body",
        Some(started.elapsed()),
        Duration::from_secs(2),
    );
}

/// What the node may log per minute of an attack by anonymous peers (as in
/// `attack_listener.rs`).
const LOG_BYTES_PER_MINUTE: usize = 20_000;

/// HTTP/2 "rapid reset" (CVE-2023-44487): streams opened and cancelled at
/// once, connection after connection. The node must cut such connections
/// off, keep serving others, and log a bounded amount however long the flood
/// lasts (issue #14, defect 5).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_h2_rapid_reset_flood_is_cut_off_and_logs_a_bounded_amount() {
    let node = NodeProcess::start(SHORT_LIMITS);
    let (baseline_rss, _) = settled(&node).await;
    let lines_before = node.log().len();
    let bytes_before = node.log_bytes();
    let attack = Duration::from_secs(10);
    let started = Instant::now();
    let (mut connections, mut resets) = (0usize, 0usize);
    let mut max_rss = 0;
    while started.elapsed() < attack {
        resets += rapid_reset_connection(&node, 10_000).await;
        connections += 1;
        max_rss = max_rss.max(node.rss_bytes());
    }
    let attack_took = started.elapsed();
    eprintln!("{resets} streams reset over {connections} connections in {attack_took:?}");
    assert!(
        connections > 10,
        "the attack ran: {connections} connections"
    );
    // Cut off: no connection got anywhere near the 10,000 resets it tried.
    let per_connection = resets / connections;
    assert!(
        per_connection < 2_000,
        "{per_connection} resets per connection went through"
    );
    // Still serving, at once.
    let (after_rss, _) = tokio::time::timeout(Duration::from_secs(5), settled(&node))
        .await
        .expect("a plain request is served right after the flood");
    let growth = max_rss.max(after_rss).saturating_sub(baseline_rss);
    assert!(
        growth <= MAX_GROWTH_PER_CONNECTION,
        "RSS grew by {} MiB",
        growth / MIB
    );
    let grown = node.log_bytes() - bytes_before;
    let per_minute = grown as f64 * 60.0 / attack_took.as_secs_f64();
    eprintln!("log grew {grown} bytes: {per_minute:.0} bytes per minute of attack");
    assert!(
        per_minute <= LOG_BYTES_PER_MINUTE as f64,
        "log grew {grown} bytes in {attack_took:?}: {}",
        node.log()[lines_before..].join("\n")
    );
}

/// Opens up to `limit` streams on one new HTTP/2 connection, resetting each
/// the moment it is sent, until the node ends the connection; returns how
/// many were sent.
async fn rapid_reset_connection(node: &NodeProcess, limit: usize) -> usize {
    let Ok(tls) = tls_connect(node.addr, &["h2"]).await else {
        return 0;
    };
    let Ok((send, connection)) = h2::client::Builder::new().handshake::<_, Bytes>(tls).await else {
        return 0;
    };
    let driver = tokio::spawn(connection);
    let mut sent = 0;
    while sent < limit {
        let ready = tokio::time::timeout(Duration::from_secs(5), send.clone().ready()).await;
        let Ok(Ok(mut ready)) = ready else { break };
        let Ok((_response, mut body)) = ready.send_request(post_json("/call", None), false) else {
            break;
        };
        body.send_reset(h2::Reason::CANCEL);
        sent += 1;
    }
    // With every handle gone the client ends the connection itself, if the
    // node has not already.
    drop(send);
    let _ = tokio::time::timeout(Duration::from_secs(5), driver).await;
    sent
}

// ---------------------------------------------------------------------------
// Stealth (defect 8)

/// The requests `tests/data/nginx/capture.py` sent to nginx, and what nginx
/// answered.
const NGINX_REFERENCE: &[(&str, &[u8], &[u8])] = &[
    (
        "GET, HTTP/1.1",
        b"GET /definitely-not-here HTTP/1.1\r\nHost: localhost\r\n\r\n",
        include_bytes!("data/nginx/404-get11.http"),
    ),
    (
        "GET, HTTP/1.0",
        b"GET /definitely-not-here HTTP/1.0\r\n\r\n",
        include_bytes!("data/nginx/404-get10.http"),
    ),
    (
        "GET /call",
        b"GET /call HTTP/1.1\r\nHost: localhost\r\n\r\n",
        include_bytes!("data/nginx/404-getcall.http"),
    ),
    (
        "POST /call",
        b"POST /call HTTP/1.1\r\nHost: localhost\r\nContent-Type: application/json\r\nContent-Length: 2\r\n\r\n{}",
        include_bytes!("data/nginx/404-post.http"),
    ),
    (
        "HEAD",
        b"HEAD /x HTTP/1.1\r\nHost: localhost\r\n\r\n",
        include_bytes!("data/nginx/404-head.http"),
    ),
];

const STEALTH: &str = r#"
[diagnostics]
call_ops = true

[http]
stealth = true
public_paths = ["/openapi.json"]
"#;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn under_stealth_anonymous_requests_get_nginxs_404_byte_for_byte() {
    let node = NodeProcess::start(STEALTH);
    for (what, request, reference) in NGINX_REFERENCE {
        let mut tls = tls_connect(node.addr, &["http/1.1"]).await.unwrap();
        tls.write_all(request).await.unwrap();
        let head_only = request.starts_with(b"HEAD");
        let answer = read_response(&mut tls, head_only).await;
        assert_eq!(
            String::from_utf8_lossy(&with_date_masked(&answer)),
            String::from_utf8_lossy(&with_date_masked(reference)),
            "{what}"
        );
        if reference.windows(17).any(|w| w == b"Connection: close") {
            let closed = closed_within(&mut tls, Instant::now(), Duration::from_secs(5)).await;
            assert!(closed.is_some(), "{what}: nginx closes here");
        }
    }
    // HTTP/2: nginx's header list, in its order, and its body.
    let reference = include_str!("data/nginx/404-h2.headers");
    let expected: Vec<(String, String)> = reference
        .lines()
        .skip(1)
        .filter_map(|line| line.split_once(": "))
        .map(|(name, value)| (name.to_owned(), value.to_owned()))
        .collect();
    let tls = tls_connect(node.addr, &["h2"]).await.unwrap();
    let (send, connection) = h2::client::handshake(tls).await.unwrap();
    tokio::spawn(connection);
    let mut send = send.ready().await.unwrap();
    let (response, _) = send.send_request(get("/call"), true).unwrap();
    let response = response.await.unwrap();
    assert_eq!(response.status(), StatusCode::NOT_FOUND);
    let headers: Vec<(String, String)> = response
        .headers()
        .iter()
        .map(|(name, value)| (name.to_string(), value.to_str().unwrap().to_owned()))
        .collect();
    let names = |list: &[(String, String)]| list.iter().map(|(n, _)| n.clone()).collect::<Vec<_>>();
    assert_eq!(names(&headers), names(&expected));
    for ((name, value), (_, expected)) in headers.iter().zip(&expected) {
        if name != "date" {
            assert_eq!(value, expected, "{name}");
        }
    }
    let mut body = response.into_body();
    let mut bytes = Vec::new();
    while let Some(chunk) = body.data().await {
        bytes.extend_from_slice(&chunk.unwrap());
    }
    assert_eq!(bytes, &include_bytes!("data/nginx/404-get11.http")[148..]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn under_stealth_a_token_healthz_and_public_paths_get_through() {
    let node = NodeProcess::start(STEALTH);
    let data_dir = node.data_dir.path().to_str().unwrap().to_owned();
    let created = process::run(&[
        "token",
        "create",
        "--scopes",
        "admin",
        "--id",
        "ops",
        "--data-dir",
        &data_dir,
    ]);
    assert!(created.status.success(), "{created:?}");
    let token = String::from_utf8(created.stdout)
        .unwrap()
        .lines()
        .find_map(|line| line.strip_prefix("token: ").map(str::to_owned))
        .expect("a token line");
    let call = r#"{"operation":"diag/echo","input":{"x":1}}"#;
    for (what, request, status) in [
        (
            "healthz",
            "GET /healthz HTTP/1.1\r\nHost: localhost\r\n\r\n".to_owned(),
            200,
        ),
        (
            "public path",
            "GET /openapi.json HTTP/1.1\r\nHost: localhost\r\n\r\n".to_owned(),
            200,
        ),
        (
            "a call with a token",
            format!(
                "POST /call HTTP/1.1\r\nHost: localhost\r\nAuthorization: Bearer {token}\r\n\
                 Content-Type: application/json\r\nContent-Length: {}\r\n\r\n{call}",
                call.len()
            ),
            200,
        ),
        (
            "a call with a token that does not resolve",
            format!(
                "POST /call HTTP/1.1\r\nHost: localhost\r\nAuthorization: Bearer alk_nope\r\n\
                 Content-Type: application/json\r\nContent-Length: {}\r\n\r\n{call}",
                call.len()
            ),
            404,
        ),
    ] {
        let mut tls = tls_connect(node.addr, &["http/1.1"]).await.unwrap();
        tls.write_all(request.as_bytes()).await.unwrap();
        let answer = read_response(&mut tls, false).await;
        let expected = format!("HTTP/1.1 {status} ");
        assert!(
            answer.starts_with(expected.as_bytes()),
            "{what}: {}",
            String::from_utf8_lossy(&answer)
        );
    }
    // The browser-facing certificate does not name the node.
    let tls = tls_connect(node.addr, &["h2"]).await.unwrap();
    let certificate = tls.get_ref().1.peer_certificates().unwrap()[0].to_vec();
    let id = node.node_id.as_bytes();
    assert!(!certificate.windows(id.len()).any(|w| w == id));
}

// ---------------------------------------------------------------------------
// The attacking clients and what the tests observe

/// An HTTP/2 client that advertises maximal windows and can stop reading.
struct H2Attacker {
    send: h2::client::SendRequest<Bytes>,
    stop: Option<tokio::sync::oneshot::Sender<()>>,
    driver: tokio::task::JoinHandle<()>,
}

impl H2Attacker {
    async fn connect(node: &NodeProcess) -> Self {
        let tls = tls_connect(node.addr, &["h2"]).await.unwrap();
        let (send, connection) = h2::client::Builder::new()
            .initial_window_size(MAX_WINDOW)
            .initial_connection_window_size(MAX_WINDOW)
            .handshake::<_, Bytes>(tls)
            .await
            .unwrap();
        let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
        let driver = tokio::spawn(async move {
            let mut connection = std::pin::pin!(connection);
            tokio::select! {
                _ = connection.as_mut() => return,
                _ = stopped => {}
            }
            // Never polled again: the socket is never read, yet stays open
            // until the test ends.
            std::future::pending::<()>().await;
        });
        Self {
            send,
            stop: Some(stop),
            driver,
        }
    }

    /// Asks for `count` endless subscriptions, as fast as the node lets
    /// streams open; returns the answers (the streams stay open while held).
    async fn open_subscriptions(
        &mut self,
        count: usize,
    ) -> Vec<Result<axum::http::Response<h2::RecvStream>, h2::Error>> {
        let mut heads = Vec::new();
        for _ in 0..count {
            let mut send = tokio::time::timeout(Duration::from_secs(10), self.send.clone().ready())
                .await
                .expect("a stream slot within 10 s")
                .unwrap();
            let (response, mut body) = send
                .send_request(post_json("/subscribe", None), false)
                .unwrap();
            body.send_data(Bytes::from_static(ENDLESS_SUBSCRIPTION.as_bytes()), true)
                .unwrap();
            heads.push(response);
        }
        tokio::time::timeout(Duration::from_secs(20), futures::future::join_all(heads))
            .await
            .expect("every request answered")
    }

    /// From now on nothing is read from the socket.
    fn stop_reading(&mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
    }
}

impl Drop for H2Attacker {
    fn drop(&mut self) {
        self.driver.abort();
    }
}

/// A response's status; a stream the node refused counts as `503`. (A
/// client that opens a stream the moment it sees one closed can find it still
/// counted on the node's side: HTTP/2 refuses it, safe to retry.)
fn status_or_refused(
    response: &Result<axum::http::Response<h2::RecvStream>, h2::Error>,
) -> StatusCode {
    match response {
        Ok(response) => response.status(),
        Err(error) if error.reason() == Some(h2::Reason::REFUSED_STREAM) => {
            StatusCode::SERVICE_UNAVAILABLE
        }
        Err(error) => panic!("a request failed: {error:?}"),
    }
}

fn get(path: &str) -> Request<()> {
    Request::get(format!("https://localhost{path}"))
        .body(())
        .unwrap()
}

fn post_json(path: &str, length: Option<usize>) -> Request<()> {
    let mut request = Request::post(format!("https://localhost{path}"))
        .header("content-type", "application/json");
    if let Some(length) = length {
        request = request.header("content-length", length);
    }
    request.body(()).unwrap()
}

/// The node's RSS and open fds once a first request has been served.
async fn settled(node: &NodeProcess) -> (u64, usize) {
    let mut tls = tls_connect(node.addr, &["http/1.1"]).await.unwrap();
    tls.write_all(b"GET /healthz HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n")
        .await
        .unwrap();
    read_response(&mut tls, false).await;
    assert!(
        closed_within(&mut tls, Instant::now(), Duration::from_secs(5))
            .await
            .is_some()
    );
    drop(tls);
    // The node closes its side as it answers; wait for its fd to go.
    let mut fds = node.open_fds();
    for _ in 0..100 {
        tokio::time::sleep(Duration::from_millis(20)).await;
        let now = node.open_fds();
        if now == fds {
            break;
        }
        fds = now;
    }
    (node.rss_bytes(), fds)
}

struct Watched {
    /// The highest RSS sampled.
    max_rss: u64,
    /// Whether the condition came to hold.
    done: bool,
    elapsed: Duration,
}

/// Samples the node's RSS every 20 ms until `done` holds or `deadline`
/// passes.
async fn watch_until(
    node: &NodeProcess,
    deadline: Duration,
    mut done: impl FnMut() -> bool,
) -> Watched {
    let started = Instant::now();
    let mut max_rss = 0;
    loop {
        max_rss = max_rss.max(node.rss_bytes());
        let finished = done();
        if finished || started.elapsed() >= deadline {
            // A last sample: what the attack left behind counts too.
            max_rss = max_rss.max(node.rss_bytes());
            return Watched {
                max_rss,
                done: finished,
                elapsed: started.elapsed(),
            };
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// How long after `started` the node closed `stream` (reading and
/// discarding what it sends); `None` if still open after `deadline`.
async fn closed_within<S: AsyncRead + Unpin>(
    stream: &mut S,
    started: Instant,
    deadline: Duration,
) -> Option<Duration> {
    let end = tokio::time::Instant::from_std(started + deadline);
    let mut buf = [0u8; 4096];
    loop {
        match tokio::time::timeout_at(end, stream.read(&mut buf)).await {
            Err(_) => return None,
            Ok(Ok(0) | Err(_)) => return Some(started.elapsed()),
            Ok(Ok(_)) => {}
        }
    }
}

/// Sends `bytes` one every 250 ms (a 4 byte/s header) until the node closes
/// the connection; how long after `started` it did.
async fn trickle_until_closed(
    stream: tokio_rustls::client::TlsStream<tokio::net::TcpStream>,
    bytes: &[u8],
    started: Instant,
) -> Option<Duration> {
    let (mut reader, mut writer) = tokio::io::split(stream);
    let bytes = bytes.to_vec();
    let trickle = tokio::spawn(async move {
        for byte in bytes {
            if writer.write_all(&[byte]).await.is_err() || writer.flush().await.is_err() {
                return;
            }
            tokio::time::sleep(Duration::from_millis(250)).await;
        }
        // All sent: keep the connection open, silent.
        std::future::pending::<()>().await;
    });
    let closed = closed_within(&mut reader, started, Duration::from_secs(15)).await;
    trickle.abort();
    closed
}

/// Reads one HTTP/1.x response: its head and `Content-Length` bytes of body
/// (none for `head_only`).
async fn read_response<S: AsyncRead + Unpin>(stream: &mut S, head_only: bool) -> Vec<u8> {
    let mut response = Vec::new();
    let mut byte = [0u8; 1];
    while !response.ends_with(b"\r\n\r\n") {
        let n = stream.read(&mut byte).await.expect("response head");
        assert_eq!(
            n,
            1,
            "closed mid-head: {}",
            String::from_utf8_lossy(&response)
        );
        response.push(byte[0]);
    }
    let head = String::from_utf8_lossy(&response).to_ascii_lowercase();
    let length: usize = head
        .lines()
        .find_map(|line| line.strip_prefix("content-length: "))
        .map(|n| n.trim().parse().unwrap())
        .unwrap_or(0);
    if !head_only {
        let mut body = vec![0u8; length];
        stream.read_exact(&mut body).await.expect("response body");
        response.extend_from_slice(&body);
    }
    response
}

/// `response` with its `Date` value replaced, after checking it is one.
fn with_date_masked(response: &[u8]) -> Vec<u8> {
    let text = String::from_utf8(response.to_vec()).expect("ASCII response");
    let start = text.find("\r\nDate: ").expect("a Date header") + "\r\nDate: ".len();
    let end = start + text[start..].find("\r\n").unwrap();
    httpdate::parse_http_date(&text[start..end]).expect("an HTTP date");
    format!("{}<date>{}", &text[..start], &text[end..]).into_bytes()
}

/// `closed` came about the limit: not before it, and not long after.
fn assert_closed_at_limit(what: &str, closed: Option<Duration>, limit: Duration) {
    let closed = closed.unwrap_or_else(|| panic!("{what}: still open long after {limit:?}"));
    assert!(
        closed >= limit.mul_f64(0.75) && closed <= limit + Duration::from_secs(3),
        "{what}: closed after {closed:?}, limit {limit:?}"
    );
}
