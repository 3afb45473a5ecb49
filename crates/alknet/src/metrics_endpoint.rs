//! `GET /metrics` for Prometheus, on the `[metrics] listen` address.
//!
//! The crates count through the `metrics` facade; this module installs the
//! Prometheus recorder behind it, adds what is read at scrape time (build
//! information, uptime), and serves the text exposition. Call durations are
//! histograms with fixed buckets, so that Prometheus can aggregate them
//! across nodes.

use std::net::SocketAddr;
use std::time::{Instant, SystemTime, UNIX_EPOCH};

use anyhow::Context;
use axum::Router;
use axum::http::header;
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use metrics_exporter_prometheus::{Matcher, PrometheusBuilder, PrometheusHandle};

/// Call durations, in seconds: 100 µs to 30 s.
const CALL_DURATION_BUCKETS: &[f64] = &[
    0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5,
    5.0, 10.0, 30.0,
];

/// The version of the text exposition format served.
const CONTENT_TYPE: &str = "text/plain; version=0.0.4; charset=utf-8";

/// Installs the recorder, binds `listen` and serves until the process ends.
/// Returns the bound address (the port may have been 0).
pub async fn start(listen: SocketAddr) -> anyhow::Result<SocketAddr> {
    let handle = PrometheusBuilder::new()
        .set_buckets_for_metric(
            Matcher::Full("alknet_call_duration_seconds".to_owned()),
            CALL_DURATION_BUCKETS,
        )
        .context("metrics buckets")?
        .install_recorder()
        .context("cannot install the metrics recorder")?;
    describe();
    alknet_call::call_metrics::enable();
    let listener = tokio::net::TcpListener::bind(listen)
        .await
        .with_context(|| format!("cannot listen for metrics on {listen} ([metrics] listen)"))?;
    let local = listener.local_addr()?;
    let started = Instant::now();
    let start_time = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap_or_default()
        .as_secs_f64();
    let app = Router::new().route(
        "/metrics",
        get(move || {
            let handle = handle.clone();
            async move { render(&handle, started, start_time) }
        }),
    );
    tokio::spawn(async move {
        if let Err(error) = axum::serve(listener, app).await {
            tracing::error!("the metrics endpoint stopped: {error}");
        }
    });
    Ok(local)
}

fn render(handle: &PrometheusHandle, started: Instant, start_time: f64) -> Response {
    metrics::gauge!("alknet_uptime_seconds").set(started.elapsed().as_secs_f64());
    metrics::gauge!("alknet_start_time_seconds").set(start_time);
    metrics::gauge!("alknet_build_info", "version" => env!("CARGO_PKG_VERSION")).set(1.0);
    ([(header::CONTENT_TYPE, CONTENT_TYPE)], handle.render()).into_response()
}

/// HELP lines for every series the node exports.
fn describe() {
    use metrics::{Unit, describe_counter, describe_gauge, describe_histogram};
    describe_counter!(
        "alknet_connections_accepted_total",
        "Connections handed to their protocol, by negotiated ALPN."
    );
    describe_counter!(
        "alknet_connections_refused_total",
        "Connections closed after the handshake without reaching their protocol, by ALPN and cause (node_cap, protocol_cap, restarting, spawn_failed, shutting_down)."
    );
    describe_gauge!("alknet_connections_open", "Connections open now, by ALPN.");
    describe_counter!(
        "alknet_received_bytes_total",
        Unit::Bytes,
        "Application bytes received on connections that ended, by ALPN."
    );
    describe_counter!(
        "alknet_sent_bytes_total",
        Unit::Bytes,
        "Application bytes sent on connections that ended, by ALPN."
    );
    describe_counter!(
        "alknet_calls_total",
        "Call-protocol requests answered (sessions, HTTP gateway, MCP, nested calls), by operation and code (OK or the error code)."
    );
    describe_histogram!(
        "alknet_call_duration_seconds",
        Unit::Seconds,
        "Time from dispatch to the answer of queries and mutations, by operation."
    );
    describe_counter!(
        "alknet_supervisor_restarts_total",
        "Restarts of the node's permanent actors (listeners, router, protocol supervisors), by child."
    );
    describe_counter!(
        "alknet_connection_crashes_total",
        "Connection actors that panicked (contained to the connection), by ALPN."
    );
    describe_counter!(
        "alknet_log_lines_suppressed_total",
        "Log lines the rate limits dropped, by cause."
    );
    describe_gauge!(
        "alknet_uptime_seconds",
        Unit::Seconds,
        "Seconds since the node started."
    );
    describe_gauge!(
        "alknet_start_time_seconds",
        Unit::Seconds,
        "When the node started, in seconds since the Unix epoch."
    );
    describe_gauge!(
        "alknet_build_info",
        "Always 1; the version label names the build."
    );
}
