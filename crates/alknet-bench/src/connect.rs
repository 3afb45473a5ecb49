//! `connect`: the cost of the node's accept path (listener → router → protocol
//! supervisor → connection actor) over a bare quinn accept loop.
//!
//! Both servers use the same quinn server configuration (certificate, ALPN,
//! transport settings) built by `alknet_core::tls`, run on the same runtime, and
//! serve the same echo; the client alternates between them connection by
//! connection.

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use alknet_core::tls::{self, ServerVerification};
use alknet_core::{Alpn, NodeConfig, NodeKey};
use alknet_supervisors::Node;

/// Arguments of `alknet-bench connect`.
#[derive(Debug, clap::Args)]
pub struct Args {
    /// Connections per server.
    #[arg(long, default_value_t = 1000)]
    count: u32,
    /// Bytes echoed on each connection.
    #[arg(long, default_value_t = 64)]
    payload: usize,
    /// Unmeasured connections per server before measuring.
    #[arg(long, default_value_t = 50)]
    warmup: u32,
}

pub async fn run(args: Args) -> anyhow::Result<()> {
    let key = NodeKey::generate();
    let identity = crate::support::server_identity(&key)?;
    let echo = Alpn::new(alknet_echo::ALPN);

    let config = NodeConfig {
        listen: "127.0.0.1:0".parse()?,
        ..NodeConfig::default()
    };
    let node = Node::builder(config, identity.clone())
        .protocol(alknet_echo::EchoHandler)
        .start()
        .await?;
    let bare = BareServer::start(tls::quic_server_config(
        &identity,
        std::slice::from_ref(&echo),
    )?)?;

    let client = quinn::Endpoint::client("127.0.0.1:0".parse()?)?;
    let client_config = tls::quic_client_config(ServerVerification::Insecure, None, &[echo])?;
    let payload = vec![0x5au8; args.payload];
    let targets = [
        ("alknet (listener+router+actors)", node.local_addr()),
        ("bare quinn", bare.addr),
    ];

    for _ in 0..args.warmup {
        for (_, addr) in targets {
            connect_and_echo(&client, &client_config, addr, &payload).await?;
        }
    }
    let mut histograms = [crate::support::histogram()?, crate::support::histogram()?];
    for i in 0..args.count {
        // Alternate which server goes first so neither always follows the other.
        let order = if i % 2 == 0 { [0, 1] } else { [1, 0] };
        for index in order {
            let elapsed =
                connect_and_echo(&client, &client_config, targets[index].1, &payload).await?;
            histograms[index].record(elapsed.as_micros() as u64)?;
        }
    }
    node.shutdown();
    node.wait().await;

    println!(
        "connect: {} sequential QUIC connects + one {}-byte echo round trip per server (interleaved), loopback",
        args.count, args.payload
    );
    println!(
        "{:<34} {:>10} {:>10} {:>10}",
        "server", "p50 µs", "p99 µs", "mean µs"
    );
    for (index, (name, _)) in targets.iter().enumerate() {
        let h = &histograms[index];
        println!(
            "{:<34} {:>10} {:>10} {:>10.0}",
            name,
            h.value_at_quantile(0.50),
            h.value_at_quantile(0.99),
            h.mean()
        );
    }
    let ratio = |q: f64| {
        histograms[0].value_at_quantile(q) as f64 / histograms[1].value_at_quantile(q) as f64
    };
    println!(
        "{:<34} {:>10.3} {:>10.3} {:>10.3}",
        "ratio alknet / bare",
        ratio(0.50),
        ratio(0.99),
        histograms[0].mean() / histograms[1].mean()
    );
    Ok(())
}

async fn connect_and_echo(
    client: &quinn::Endpoint,
    config: &quinn::ClientConfig,
    addr: SocketAddr,
    payload: &[u8],
) -> anyhow::Result<Duration> {
    let started = Instant::now();
    let connection = client
        .connect_with(config.clone(), addr, "localhost")?
        .await?;
    let (mut send, mut recv) = connection.open_bi().await?;
    send.write_all(payload).await?;
    send.finish()?;
    let echoed = recv.read_to_end(payload.len()).await?;
    let elapsed = started.elapsed();
    anyhow::ensure!(echoed == payload, "echo mismatch");
    connection.close(alknet_core::close::NO_ERROR.into(), b"");
    Ok(elapsed)
}

/// The baseline: quinn's accept loop and an echo, nothing else.
struct BareServer {
    addr: SocketAddr,
    _accept: tokio_util::task::AbortOnDropHandle<()>,
}

impl BareServer {
    fn start(config: quinn::ServerConfig) -> anyhow::Result<Self> {
        let endpoint = quinn::Endpoint::server(config, "127.0.0.1:0".parse()?)?;
        let addr = endpoint.local_addr()?;
        let accept = tokio::spawn(async move {
            while let Some(incoming) = endpoint.accept().await {
                tokio::spawn(async move {
                    let Ok(connection) = incoming.await else {
                        return;
                    };
                    while let Ok((mut send, mut recv)) = connection.accept_bi().await {
                        tokio::spawn(async move {
                            let _ = tokio::io::copy(&mut recv, &mut send).await;
                            let _ = send.finish();
                        });
                    }
                });
            }
        });
        Ok(Self {
            addr,
            _accept: tokio_util::task::AbortOnDropHandle::new(accept),
        })
    }
}
