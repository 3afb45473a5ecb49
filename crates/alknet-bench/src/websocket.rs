//! `ws`: echo calls over alknet's WebSocket session (`/alknet/call`, the call
//! protocol's envelopes) against a jsonrpsee 0.26 WebSocket server with an
//! equivalent `echo` method (JSON-RPC 2.0). Both serve HTTP/1.1 over TLS from
//! this process with the same certificate and rustls configuration; the same
//! tokio-tungstenite client drives both with the same input, one call in
//! flight per connection, and parses every reply. The two sides alternate in
//! rounds so that machine noise hits both. The servers and the client run on
//! runtimes of their own, as they would on separate machines, so that the
//! servers' threads' CPU time over the calls served is each server's cost
//! per call.
//!
//! `ws-memory`: what an idle WebSocket session costs the node. A child process
//! (this binary, `ws-memory-client`) opens the sessions, so only the node's
//! memory is in the measured process: its resident set before and after, over
//! the number of sessions the node's actor tree shows.

use std::io::BufRead;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use alknet_call::{Registry, builtins};
use alknet_core::tls;
use alknet_core::{Alpn, Identity, IdentityProvider, NodeConfig, NodeKey};
use alknet_http::{HttpHandler, HttpSettings};

use crate::support::TlsDialer;
use alknet_supervisors::{Node, NodeHandle};
use futures::{SinkExt, StreamExt};
use hdrhistogram::Histogram;
use serde_json::{Value, json};
use tokio::io::{AsyncRead, AsyncWrite};
use tokio_tungstenite::WebSocketStream;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::tungstenite::client::IntoClientRequest;

/// The token the benchmark's sessions present.
const TOKEN: &str = "bench-token";

/// Arguments of `alknet-bench ws`.
#[derive(Debug, clap::Args)]
pub struct Args {
    /// Seconds per side per round.
    #[arg(long, default_value_t = 3)]
    seconds: u64,
    /// Rounds (each measures both sides once).
    #[arg(long, default_value_t = 2)]
    rounds: u32,
    /// Connection counts to measure.
    #[arg(long, value_delimiter = ',', default_value = "1,64,256")]
    connections: Vec<usize>,
    /// Measure one side only (for profiling one server at a time).
    #[arg(long, value_enum)]
    only: Option<Side>,
    /// Also measure the floor: a bare tokio-tungstenite echo over the same
    /// TLS that does nothing a server could skip, which bounds the ratio any
    /// server can reach against jsonrpsee in this harness.
    #[arg(long)]
    floor: bool,
    /// Run the servers on one thread pinned to CPU 0 and the client on one
    /// thread pinned to CPU 1, instead of sharing every core.
    #[arg(long, conflicts_with = "shared_runtime")]
    pin: bool,
    /// Run the servers and the client on one runtime, as this benchmark did
    /// until 2026-11-23; the servers' CPU per call is then not known.
    #[arg(long)]
    shared_runtime: bool,
}

/// Arguments of `alknet-bench ws-memory`.
#[derive(Debug, clap::Args)]
pub struct MemoryArgs {
    /// Idle sessions to open.
    #[arg(long, default_value_t = 10_000)]
    sessions: usize,
}

/// Arguments of the child process of `ws-memory`.
#[derive(Debug, clap::Args)]
pub struct ClientArgs {
    /// The node.
    #[arg(long)]
    addr: SocketAddr,
    /// Sessions to open and hold.
    #[arg(long)]
    sessions: usize,
}

/// Resolves the benchmark's one token.
struct BenchToken;

impl IdentityProvider for BenchToken {
    fn resolve_fingerprint(&self, _: &alknet_core::Fingerprint) -> Option<Identity> {
        None
    }

    fn resolve_token(&self, token: &str) -> Option<Identity> {
        (token == TOKEN).then(|| Identity::new("bench", ["bench"]))
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
enum Side {
    Alknet,
    Jsonrpsee,
    Floor,
}

impl Side {
    fn label(self) -> &'static str {
        match self {
            Side::Alknet => "alknet /alknet/call",
            Side::Jsonrpsee => "jsonrpsee 0.26",
            Side::Floor => "floor (bare echo)",
        }
    }
}

pub async fn run(args: Args) -> anyhow::Result<()> {
    let servers = runtime(SERVER_THREAD, args.pin.then_some(0))?;
    let own_clients = match args.shared_runtime {
        true => None,
        false => Some(runtime("bench-client", args.pin.then_some(1))?),
    };
    let clients = own_clients.as_ref().unwrap_or(&servers);
    let key = NodeKey::generate();
    let identity = crate::support::server_identity(&key)?;
    let floor = args.floor;
    let (node, mut sides) = servers
        .spawn(async move {
            let node = start_node(identity.clone()).await?;
            let mut sides = vec![
                (Side::Alknet, node.local_addr()),
                (Side::Jsonrpsee, start_jsonrpsee(&identity).await?),
            ];
            if floor {
                sides.push((Side::Floor, start_floor(&identity).await?));
            }
            anyhow::Ok((node, sides))
        })
        .await??;
    sides.retain(|(side, _)| args.only.is_none_or(|only| only == *side));
    println!(
        "ws: echo calls over a WebSocket, HTTP/1.1 over TLS, one call in flight per connection, \
         {} round(s) of {} s per side",
        args.rounds, args.seconds
    );
    println!(
        "{:<20} {:>6} {:>10} {:>8} {:>8} {:>10}",
        "server", "conns", "calls/s", "p50 µs", "p99 µs", "cpu µs/call"
    );
    let duration = Duration::from_secs(args.seconds);
    let seconds = duration.as_secs_f64() * f64::from(args.rounds);
    for &connections in &args.connections {
        let mut totals = Vec::new();
        for _ in 0..sides.len() {
            totals.push(Totals::new()?);
        }
        for _ in 0..args.rounds {
            for ((side, addr), totals) in sides.iter().zip(&mut totals) {
                let (side, addr) = (*side, *addr);
                let cpu = server_cpu()?;
                let measured = clients
                    .spawn(measure(side, addr, connections, duration))
                    .await??;
                totals.server_cpu += server_cpu()? - cpu;
                totals.add(measured)?;
            }
        }
        // On a shared runtime the servers' threads run the client too.
        let cpu = |value: f64, precision: usize| match args.shared_runtime {
            true => "-".to_owned(),
            false => format!("{value:.precision$}"),
        };
        for ((side, _), totals) in sides.iter().zip(&totals) {
            println!(
                "{:<20} {:>6} {:>10.0} {:>8} {:>8} {:>10}",
                side.label(),
                connections,
                totals.calls as f64 / seconds,
                totals.latencies.value_at_quantile(0.5),
                totals.latencies.value_at_quantile(0.99),
                cpu(totals.server_micros_per_call(), 2),
            );
        }
        let find = |wanted: Side| {
            sides
                .iter()
                .position(|(side, _)| *side == wanted)
                .map(|at| &totals[at])
        };
        let Some(theirs) = find(Side::Jsonrpsee) else {
            continue;
        };
        for side in [Side::Alknet, Side::Floor] {
            let Some(ours) = find(side) else { continue };
            let ratio = |q: f64| {
                ours.latencies.value_at_quantile(q) as f64
                    / theirs.latencies.value_at_quantile(q) as f64
            };
            println!(
                "{:<20} {:>6} {:>10.3} {:>8.3} {:>8.3} {:>10}",
                format!(
                    "{} / jsonrpsee",
                    side.label().split(' ').next().unwrap_or("")
                ),
                connections,
                ours.calls as f64 / theirs.calls as f64,
                ratio(0.5),
                ratio(0.99),
                cpu(
                    ours.server_micros_per_call() / theirs.server_micros_per_call(),
                    3
                ),
            );
        }
    }
    node.shutdown();
    node.wait().await;
    if let Some(clients) = own_clients {
        clients.shutdown_background();
    }
    servers.shutdown_background();
    Ok(())
}

/// The name of the servers' threads, whose CPU time is the servers' cost.
const SERVER_THREAD: &str = "bench-server";

/// A runtime of its own: on one thread pinned to `cpu` when given, else on
/// a worker per core.
fn runtime(name: &str, cpu: Option<usize>) -> anyhow::Result<tokio::runtime::Runtime> {
    let mut builder = tokio::runtime::Builder::new_multi_thread();
    builder.enable_all().thread_name(name);
    if let Some(cpu) = cpu {
        builder.worker_threads(1).on_thread_start(move || {
            let mut set = nix::sched::CpuSet::new();
            if set.set(cpu).is_ok() {
                let _ = nix::sched::sched_setaffinity(nix::unistd::Pid::from_raw(0), &set);
            }
        });
    }
    Ok(builder.build()?)
}

/// CPU time the servers' threads have used so far, in their own code and in
/// the kernel on their behalf.
fn server_cpu() -> anyhow::Result<Duration> {
    let mut total = Duration::ZERO;
    for task in std::fs::read_dir("/proc/self/task")? {
        let path = task?.path();
        let Ok(comm) = std::fs::read_to_string(path.join("comm")) else {
            continue;
        };
        if comm.trim_end() != SERVER_THREAD {
            continue;
        }
        let Ok(schedstat) = std::fs::read_to_string(path.join("schedstat")) else {
            continue;
        };
        let on_cpu: u64 = schedstat
            .split_whitespace()
            .next()
            .and_then(|ns| ns.parse().ok())
            .unwrap_or(0);
        total += Duration::from_nanos(on_cpu);
    }
    Ok(total)
}

async fn start_node(tls: alknet_core::tls::ServerIdentity) -> anyhow::Result<NodeHandle> {
    let registry = Registry::new();
    builtins::register_diagnostics(&registry)?;
    let identities: Arc<dyn IdentityProvider> = Arc::new(BenchToken);
    let http = HttpHandler::new(
        Arc::new(registry),
        identities.clone(),
        HttpSettings::default(),
    );
    let mut config = NodeConfig {
        listen: "127.0.0.1:0".parse()?,
        ..NodeConfig::default()
    };
    config.limits.max_connections = 20_000;
    config.limits.max_connections_per_protocol = 20_000;
    Ok(Node::builder(config, tls)
        .identities(identities)
        .protocol(http)
        .start()
        .await?)
}

/// jsonrpsee's WebSocket server, behind the same TLS configuration the node
/// uses, with an `echo` method returning its params.
async fn start_jsonrpsee(
    identity: &alknet_core::tls::ServerIdentity,
) -> anyhow::Result<SocketAddr> {
    use jsonrpsee::server::{RpcModule, Server, ServerConfig, stop_channel};
    let mut module = RpcModule::new(());
    module.register_method("echo", |params, _, _| params.parse::<Value>())?;
    let config = tls::server_config(identity, &[Alpn::new(alknet_http::ALPN_HTTP_1_1)], false)?;
    let acceptor = tokio_rustls::TlsAcceptor::from(Arc::new(config));
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let addr = listener.local_addr()?;
    let (stop, handle) = stop_channel();
    let builder = Server::builder()
        .set_config(ServerConfig::builder().max_connections(20_000).build())
        .to_service_builder();
    let methods: jsonrpsee::server::Methods = module.into();
    tokio::spawn(async move {
        let _handle = handle;
        while let Ok((tcp, _)) = listener.accept().await {
            let _ = tcp.set_nodelay(true);
            let (acceptor, builder, methods, stop) = (
                acceptor.clone(),
                builder.clone(),
                methods.clone(),
                stop.clone(),
            );
            tokio::spawn(async move {
                let Ok(tls) = acceptor.accept(tcp).await else {
                    return;
                };
                let service = builder.build(methods, stop);
                let _ = jsonrpsee::server::serve(tls, service).await;
            });
        }
    });
    Ok(addr)
}

/// The floor: tokio-tungstenite straight on the TLS stream, one task per
/// socket, answering each JSON-RPC request with its params without building
/// any value. Nothing a real server does beyond it could be skipped.
async fn start_floor(identity: &alknet_core::tls::ServerIdentity) -> anyhow::Result<SocketAddr> {
    #[derive(serde::Deserialize)]
    struct Request<'a> {
        id: u64,
        #[serde(borrow)]
        params: &'a serde_json::value::RawValue,
    }
    let config = tls::server_config(identity, &[Alpn::new(alknet_http::ALPN_HTTP_1_1)], false)?;
    let acceptor = tokio_rustls::TlsAcceptor::from(Arc::new(config));
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let addr = listener.local_addr()?;
    let socket_config = tokio_tungstenite::tungstenite::protocol::WebSocketConfig::default()
        .read_buffer_size(8 * 1024)
        .write_buffer_size(0);
    tokio::spawn(async move {
        while let Ok((tcp, _)) = listener.accept().await {
            let _ = tcp.set_nodelay(true);
            let acceptor = acceptor.clone();
            tokio::spawn(async move {
                let Ok(tls) = acceptor.accept(tcp).await else {
                    return;
                };
                let Ok(mut socket) =
                    tokio_tungstenite::accept_async_with_config(tls, Some(socket_config)).await
                else {
                    return;
                };
                while let Some(Ok(message)) = socket.next().await {
                    let Message::Text(text) = message else {
                        continue;
                    };
                    let Ok(request) = serde_json::from_str::<Request>(&text) else {
                        return;
                    };
                    let reply = format!(
                        r#"{{"jsonrpc":"2.0","id":{},"result":{}}}"#,
                        request.id,
                        request.params.get()
                    );
                    if socket.send(Message::Text(reply.into())).await.is_err() {
                        return;
                    }
                }
            });
        }
    });
    Ok(addr)
}

struct Totals {
    calls: u64,
    latencies: Histogram<u64>,
    server_cpu: Duration,
}

impl Totals {
    fn new() -> anyhow::Result<Self> {
        Ok(Self {
            calls: 0,
            latencies: crate::support::histogram()?,
            server_cpu: Duration::ZERO,
        })
    }

    fn add(&mut self, other: Totals) -> anyhow::Result<()> {
        self.calls += other.calls;
        self.latencies.add(other.latencies)?;
        self.server_cpu += other.server_cpu;
        Ok(())
    }

    fn server_micros_per_call(&self) -> f64 {
        self.server_cpu.as_secs_f64() * 1e6 / self.calls.max(1) as f64
    }
}

trait Io: AsyncRead + AsyncWrite + Send + Unpin {}
impl<T: AsyncRead + AsyncWrite + Send + Unpin> Io for T {}
type Socket = WebSocketStream<Box<dyn Io>>;

async fn connect(dialer: &TlsDialer, side: Side, addr: SocketAddr) -> anyhow::Result<Socket> {
    let tls = dialer.connect(addr).await?;
    let path = match side {
        Side::Alknet => "/alknet/call",
        Side::Jsonrpsee | Side::Floor => "/",
    };
    let mut request = format!("wss://localhost:{}{path}", addr.port()).into_client_request()?;
    request
        .headers_mut()
        .insert("authorization", format!("Bearer {TOKEN}").parse()?);
    let stream: Box<dyn Io> = Box::new(tls);
    // tungstenite zeroes its read buffer's spare room on every read: its
    // 128 KiB default would make the client, not the servers, the subject.
    let config =
        tokio_tungstenite::tungstenite::protocol::WebSocketConfig::default().read_buffer_size(4096);
    let (socket, _) =
        tokio_tungstenite::client_async_with_config(request, stream, Some(config)).await?;
    Ok(socket)
}

async fn measure(
    side: Side,
    addr: SocketAddr,
    connections: usize,
    duration: Duration,
) -> anyhow::Result<Totals> {
    let dialer = TlsDialer::new(alknet_http::ALPN_HTTP_1_1)?;
    let mut sockets = Vec::with_capacity(connections);
    for _ in 0..connections {
        sockets.push(connect(&dialer, side, addr).await?);
    }
    let input = json!({"n": 1, "text": "ping"});
    let deadline = Instant::now() + duration;
    let mut tasks = tokio::task::JoinSet::new();
    for mut socket in sockets {
        let input = input.clone();
        tasks.spawn(async move {
            let mut totals = Totals::new()?;
            let mut id = 0u64;
            while Instant::now() < deadline {
                id += 1;
                let started = Instant::now();
                let message = match side {
                    Side::Alknet => Message::Binary(
                        serde_json::to_vec(&json!({
                            "type": "call.requested",
                            "id": id.to_string(),
                            "payload": {"operationId": "/diag/echo", "input": input}
                        }))?
                        .into(),
                    ),
                    Side::Jsonrpsee | Side::Floor => Message::Text(
                        serde_json::to_string(&json!({
                            "jsonrpc": "2.0", "id": id, "method": "echo", "params": input
                        }))?
                        .into(),
                    ),
                };
                socket.send(message).await?;
                let reply = loop {
                    match socket.next().await {
                        Some(Ok(Message::Binary(bytes))) => break bytes,
                        Some(Ok(Message::Text(text))) => break text.into(),
                        Some(Ok(_)) => continue,
                        Some(Err(error)) => return Err(error.into()),
                        None => anyhow::bail!("the server closed the socket"),
                    }
                };
                let reply: Value = serde_json::from_slice(&reply)?;
                let output = match side {
                    Side::Alknet => {
                        anyhow::ensure!(reply["id"].as_str() == Some(&*id.to_string()), "{reply}");
                        &reply["payload"]["output"]
                    }
                    Side::Jsonrpsee | Side::Floor => {
                        anyhow::ensure!(reply["id"] == id, "{reply}");
                        &reply["result"]
                    }
                };
                anyhow::ensure!(*output == input, "{reply}");
                totals
                    .latencies
                    .record(started.elapsed().as_micros() as u64)?;
                totals.calls += 1;
            }
            let _ = socket.close(None).await;
            anyhow::Ok(totals)
        });
    }
    let mut merged = Totals::new()?;
    while let Some(result) = tasks.join_next().await {
        merged.add(result??)?;
    }
    Ok(merged)
}

pub async fn memory(args: MemoryArgs) -> anyhow::Result<()> {
    let key = NodeKey::generate();
    let node = start_node(crate::support::server_identity(&key)?).await?;
    // Warm up: one session opened and closed, so that one-time allocations
    // (the TLS and WebSocket code paths, the runtime's workers) are not
    // charged to the sessions.
    let dialer = TlsDialer::new(alknet_http::ALPN_HTTP_1_1)?;
    drop(connect(&dialer, Side::Alknet, node.local_addr()).await?);
    wait_for_sessions(&node, 0).await?;
    let before = resident_bytes()?;
    let mut child = std::process::Command::new(std::env::current_exe()?)
        .args(["ws-memory-client", "--addr"])
        .arg(node.local_addr().to_string())
        .args(["--sessions", &args.sessions.to_string()])
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .spawn()?;
    let stdout = child.stdout.take().expect("piped");
    let opened = tokio::task::spawn_blocking(move || {
        std::io::BufReader::new(stdout).lines().next().transpose()
    })
    .await??;
    anyhow::ensure!(
        opened.as_deref() == Some("open"),
        "the client failed: {opened:?}"
    );
    wait_for_sessions(&node, args.sessions).await?;
    let after = resident_bytes()?;
    let per_session = (after.saturating_sub(before)) as f64 / args.sessions as f64;
    drop(child.stdin.take());
    child.wait()?;
    println!("ws-memory: idle WebSocket sessions held open by a child process; node RSS (VmRSS)");
    println!("{:<28} {:>12}", "sessions", args.sessions);
    println!(
        "{:<28} {:>12.1}",
        "RSS before, MiB",
        before as f64 / 1048576.0
    );
    println!(
        "{:<28} {:>12.1}",
        "RSS with sessions, MiB",
        after as f64 / 1048576.0
    );
    println!("{:<28} {:>12.1}", "per session, KiB", per_session / 1024.0);
    node.shutdown();
    node.wait().await;
    Ok(())
}

/// Waits until the node's tree shows exactly `count` WebSocket sessions.
async fn wait_for_sessions(node: &NodeHandle, count: usize) -> anyhow::Result<()> {
    let deadline = Instant::now() + Duration::from_secs(120);
    loop {
        let shown = node
            .tree()
            .map_or(0, |tree| count_named(&tree, "ws-session"));
        if shown == count {
            return Ok(());
        }
        anyhow::ensure!(
            Instant::now() < deadline,
            "{shown} WebSocket sessions in the tree, expected {count}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

fn count_named(node: &alknet_supervisors::TreeNode, name: &str) -> usize {
    usize::from(node.name == name)
        + node
            .children
            .iter()
            .map(|c| count_named(c, name))
            .sum::<usize>()
}

fn resident_bytes() -> anyhow::Result<u64> {
    let status = std::fs::read_to_string("/proc/self/status")?;
    let kib = status
        .lines()
        .find_map(|line| line.strip_prefix("VmRSS:"))
        .and_then(|rest| {
            rest.trim()
                .trim_end_matches("kB")
                .trim()
                .parse::<u64>()
                .ok()
        })
        .ok_or_else(|| anyhow::anyhow!("no VmRSS in /proc/self/status"))?;
    Ok(kib * 1024)
}

/// The child of `ws-memory`: opens the sessions, says `open`, and holds them
/// until its standard input closes.
pub async fn client(args: ClientArgs) -> anyhow::Result<()> {
    // A few handshakes at a time: the node's listener is not the subject.
    let dialer = TlsDialer::new(alknet_http::ALPN_HTTP_1_1)?;
    let mut opening = futures::stream::iter(0..args.sessions)
        .map(|_| connect(&dialer, Side::Alknet, args.addr))
        .buffer_unordered(32);
    let mut readers = tokio::task::JoinSet::new();
    while let Some(socket) = opening.next().await {
        let mut socket = socket?;
        // Idle, but alive: reading lets tungstenite answer the node's pings.
        readers.spawn(async move { while let Some(Ok(_)) = socket.next().await {} });
    }
    println!("open");
    tokio::task::spawn_blocking(|| {
        let mut sink = String::new();
        let _ = std::io::stdin().read_line(&mut sink);
    })
    .await?;
    readers.shutdown().await;
    Ok(())
}
