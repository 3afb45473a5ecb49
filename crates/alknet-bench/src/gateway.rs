//! `gateway`: what the operation gateway costs over plain HTTP. One node
//! serves both sides through the same `HttpHandler` on the same TLS listener:
//! `POST /call` with `diag/echo`, and `POST /bench/echo`, a bare axum route
//! that echoes its JSON body. Each connection alternates the two requests, so
//! both sides see the same load at the same moment — and run in lockstep,
//! which is why the comparison is per-request latency (the request rates are
//! equal by construction).

use std::sync::Arc;
use std::time::{Duration, Instant};

use alknet_call::{Registry, builtins};

use alknet_core::{IdentityProvider, NoIdentities, NodeConfig, NodeKey};
use alknet_http::{ExtraRoute, HttpHandler, HttpSettings};
use alknet_supervisors::{Node, NodeHandle};
use hdrhistogram::Histogram;
use http_body_util::{BodyExt, Full};
use hyper::body::Bytes;
use hyper_util::rt::TokioIo;
use serde_json::{Value, json};

/// Arguments of `alknet-bench gateway`.
#[derive(Debug, clap::Args)]
pub struct Args {
    /// Seconds per measurement.
    #[arg(long, default_value_t = 3)]
    seconds: u64,
    /// Connection counts to measure.
    #[arg(long, value_delimiter = ',', default_value = "1,64")]
    connections: Vec<usize>,
}

pub async fn run(args: Args) -> anyhow::Result<()> {
    let duration = Duration::from_secs(args.seconds);
    let node = start_node().await?;
    println!(
        "gateway: POST /call diag/echo vs a bare axum echo route, HTTP/1.1 over TLS, {} s per row",
        args.seconds
    );
    println!(
        "{:<18} {:>6} {:>10} {:>8} {:>8}",
        "route", "conns", "req/s", "p50 µs", "p99 µs"
    );
    for &connections in &args.connections {
        let [gateway, bare] = measure(&node, connections, duration).await?;
        for (name, (count, latencies)) in [("POST /call", &gateway), ("bare axum route", &bare)] {
            println!(
                "{:<18} {:>6} {:>10.0} {:>8} {:>8}",
                name,
                connections,
                *count as f64 / duration.as_secs_f64(),
                latencies.value_at_quantile(0.5),
                latencies.value_at_quantile(0.99),
            );
        }
        let ratio =
            |q: f64| gateway.1.value_at_quantile(q) as f64 / bare.1.value_at_quantile(q) as f64;
        println!(
            "{:<18} {:>6} {:>10} {:>8.3} {:>8.3}",
            "gateway / bare",
            connections,
            "",
            ratio(0.5),
            ratio(0.99),
        );
    }
    node.shutdown();
    node.wait().await;
    Ok(())
}

async fn start_node() -> anyhow::Result<NodeHandle> {
    let key = NodeKey::generate();
    let registry = Registry::new();
    builtins::register_diagnostics(&registry)?;
    let identities: Arc<dyn IdentityProvider> = Arc::new(NoIdentities);
    let bare = ExtraRoute {
        path: "/bench/echo".into(),
        route: axum::routing::post(|axum::Json(body): axum::Json<Value>| async move {
            axum::Json(body)
        }),
    };
    let http = HttpHandler::with_extra_routes(
        Arc::new(registry),
        identities.clone(),
        HttpSettings::default(),
        vec![bare],
    )?;
    let config = NodeConfig {
        listen: "127.0.0.1:0".parse()?,
        ..NodeConfig::default()
    };
    Ok(
        Node::builder(config, crate::support::server_identity(&key)?)
            .identities(identities)
            .protocol(http)
            .start()
            .await?,
    )
}

type Side = (u64, Histogram<u64>);

async fn measure(
    node: &NodeHandle,
    connections: usize,
    duration: Duration,
) -> anyhow::Result<[Side; 2]> {
    let dialer = crate::support::TlsDialer::new(alknet_http::ALPN_HTTP_1_1)?;
    let mut senders = Vec::with_capacity(connections);
    for _ in 0..connections {
        let tls = dialer.connect(node.local_addr()).await?;
        let (sender, connection) = hyper::client::conn::http1::handshake(TokioIo::new(tls)).await?;
        tokio::spawn(connection);
        senders.push(sender);
    }
    let gateway_body = Bytes::from(
        json!({"operation": "diag/echo", "input": {"n": 1, "text": "ping"}}).to_string(),
    );
    let bare_body = Bytes::from(json!({"n": 1, "text": "ping"}).to_string());
    let deadline = Instant::now() + duration;
    let mut tasks = tokio::task::JoinSet::new();
    for mut sender in senders {
        let (gateway_body, bare_body) = (gateway_body.clone(), bare_body.clone());
        tasks.spawn(async move {
            let mut sides = [
                (0u64, crate::support::histogram()?),
                (0u64, crate::support::histogram()?),
            ];
            while Instant::now() < deadline {
                for (side, (path, body)) in [("/call", &gateway_body), ("/bench/echo", &bare_body)]
                    .into_iter()
                    .enumerate()
                {
                    let request = hyper::Request::post(path)
                        .header("host", "localhost")
                        .header("content-type", "application/json")
                        .body(Full::new(body.clone()))?;
                    let started = Instant::now();
                    let response = sender.send_request(request).await?;
                    anyhow::ensure!(response.status() == 200, "{path}: {}", response.status());
                    response.into_body().collect().await?;
                    sides[side].1.record(started.elapsed().as_micros() as u64)?;
                    sides[side].0 += 1;
                }
            }
            anyhow::Ok(sides)
        });
    }
    let mut merged = [
        (0u64, crate::support::histogram()?),
        (0u64, crate::support::histogram()?),
    ];
    while let Some(result) = tasks.join_next().await {
        for (total, part) in merged.iter_mut().zip(result??) {
            total.0 += part.0;
            total.1.add(part.1)?;
        }
    }
    Ok(merged)
}
