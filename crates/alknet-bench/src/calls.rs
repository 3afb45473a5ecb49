//! `calls`: call-protocol throughput and latency. Each session runs one call
//! at a time (`diag/echo` with a small object) for a fixed time; sessions run
//! concurrently. The same run measures ractor's raw request/reply rate with the
//! same number of concurrent callers, the floor any actor-based session pays.

use std::sync::Arc;
use std::time::{Duration, Instant};

use alknet_call::client::{ClientOptions, Transport};
use alknet_call::{CallClient, CallHandler, Registry, SessionLimits, builtins};
use alknet_core::{NoIdentities, NodeConfig, NodeKey};
use alknet_supervisors::Node;
use hdrhistogram::Histogram;
use ractor::{Actor, ActorProcessingErr, ActorRef, RpcReplyPort};
use serde_json::json;

/// Arguments of `alknet-bench calls`.
#[derive(Debug, clap::Args)]
pub struct Args {
    /// Seconds per measurement.
    #[arg(long, default_value_t = 3)]
    seconds: u64,
    /// Session counts to measure.
    #[arg(long, value_delimiter = ',', default_value = "1,64,256")]
    sessions: Vec<usize>,
}

pub async fn run(args: Args) -> anyhow::Result<()> {
    let duration = Duration::from_secs(args.seconds);
    let node = start_node().await?;
    println!(
        "calls: diag/echo round trips, one in flight per session, {} s per row, loopback",
        args.seconds
    );
    println!(
        "{:<22} {:>9} {:>12} {:>10} {:>10}",
        "transport", "sessions", "calls/s", "p50 µs", "p99 µs"
    );
    for &sessions in &args.sessions {
        for transport in [Transport::Quic, Transport::Tcp] {
            let (calls, histogram) =
                measure_calls(node.local_addr(), transport, sessions, duration).await?;
            println!(
                "{:<22} {:>9} {:>12.0} {:>10} {:>10}",
                format!("call over {transport:?}"),
                sessions,
                calls as f64 / duration.as_secs_f64(),
                histogram.value_at_quantile(0.5),
                histogram.value_at_quantile(0.99)
            );
        }
        let (messages, histogram) = measure_ractor(sessions, duration).await?;
        println!(
            "{:<22} {:>9} {:>12.0} {:>10} {:>10}",
            "ractor call! baseline",
            sessions,
            messages as f64 / duration.as_secs_f64(),
            histogram.value_at_quantile(0.5),
            histogram.value_at_quantile(0.99)
        );
    }
    node.shutdown();
    node.wait().await;
    Ok(())
}

async fn start_node() -> anyhow::Result<alknet_supervisors::NodeHandle> {
    let key = NodeKey::generate();
    let registry = Registry::new();
    builtins::register_diagnostics(&registry)?;
    let call = CallHandler::new(
        Arc::new(registry),
        Arc::new(NoIdentities),
        SessionLimits::default(),
    );
    let config = NodeConfig {
        listen: "127.0.0.1:0".parse()?,
        ..NodeConfig::default()
    };
    Ok(
        Node::builder(config, crate::support::server_identity(&key)?)
            .protocol(call)
            .start()
            .await?,
    )
}

async fn measure_calls(
    addr: std::net::SocketAddr,
    transport: Transport,
    sessions: usize,
    duration: Duration,
) -> anyhow::Result<(u64, Histogram<u64>)> {
    let mut clients = Vec::with_capacity(sessions);
    for _ in 0..sessions {
        let options = ClientOptions {
            transport,
            ..ClientOptions::default()
        };
        clients.push(CallClient::connect(addr, options).await?);
    }
    let deadline = Instant::now() + duration;
    let mut tasks = tokio::task::JoinSet::new();
    for client in clients {
        tasks.spawn(async move {
            let mut latencies = crate::support::histogram()?;
            let mut calls = 0u64;
            let input = json!({"n": 1, "text": "ping"});
            while Instant::now() < deadline {
                let started = Instant::now();
                client
                    .call("diag/echo", input.clone())
                    .await
                    .map_err(anyhow::Error::new)?;
                latencies.record(started.elapsed().as_micros() as u64)?;
                calls += 1;
            }
            anyhow::Ok((calls, latencies))
        });
    }
    merge(tasks).await
}

async fn merge(
    mut tasks: tokio::task::JoinSet<anyhow::Result<(u64, Histogram<u64>)>>,
) -> anyhow::Result<(u64, Histogram<u64>)> {
    let mut total = 0;
    let mut merged = crate::support::histogram()?;
    while let Some(result) = tasks.join_next().await {
        let (count, latencies) = result??;
        total += count;
        merged.add(latencies)?;
    }
    Ok((total, merged))
}

/// Replies to every request at once: the cheapest possible actor.
struct Echo;

impl Actor for Echo {
    type Msg = (serde_json::Value, RpcReplyPort<serde_json::Value>);
    type State = ();
    type Arguments = ();

    async fn pre_start(&self, _: ActorRef<Self::Msg>, _: ()) -> Result<(), ActorProcessingErr> {
        Ok(())
    }

    async fn handle(
        &self,
        _: ActorRef<Self::Msg>,
        (value, reply): Self::Msg,
        _: &mut (),
    ) -> Result<(), ActorProcessingErr> {
        let _ = reply.send(value);
        Ok(())
    }
}

async fn measure_ractor(
    callers: usize,
    duration: Duration,
) -> anyhow::Result<(u64, Histogram<u64>)> {
    // One actor per caller, as one session actor serves one session.
    let deadline = Instant::now() + duration;
    let mut tasks = tokio::task::JoinSet::new();
    let mut actors = Vec::new();
    for _ in 0..callers {
        let (actor, _) = Actor::spawn(None, Echo, ()).await?;
        actors.push(actor.clone());
        tasks.spawn(async move {
            let mut latencies = crate::support::histogram()?;
            let mut count = 0u64;
            let input = json!({"n": 1, "text": "ping"});
            while Instant::now() < deadline {
                let started = Instant::now();
                let value = input.clone();
                actor
                    .call(|reply| (value, reply), None)
                    .await
                    .map_err(|e| anyhow::anyhow!("{e}"))?;
                latencies.record(started.elapsed().as_micros() as u64)?;
                count += 1;
            }
            anyhow::Ok((count, latencies))
        });
    }
    let result = merge(tasks).await;
    for actor in actors {
        actor.stop(None);
    }
    result
}
