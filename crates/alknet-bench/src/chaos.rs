//! `chaos`: the resilience promise measured on the real binary (issue #14).
//!
//! Starts `alknet serve` (a build with the `fault-injection` feature) with
//! `alknet/fault` and the diagnostic call operations, keeps steady
//! `diag/echo` calls running over QUIC and TCP+TLS, and then:
//! - A: 1,000 `alknet/fault` connections whose handlers panic — the calls
//!   must not notice (0 failed), the fault supervisor must not restart;
//! - B: crash loops of the fault supervisor within its restart intensity
//!   (`diag/fault/panic-supervisor`) — the calls must not notice, and each
//!   time the supervisor must be back serving a new connection quickly
//!   (target p99 ≤ 100 ms from the crash order to the first echo served);
//! - C: crashes past the intensity — the node must escalate: one log line,
//!   an ordered shutdown, exit status 1.

use std::path::PathBuf;
use std::time::{Duration, Instant};

use alknet_bench::load::{self, Kind, Load, Shape, Target, Window};
use alknet_bench::node_process::{self, NodeProcess};
use alknet_bench::support::{self, TlsDialer};
use alknet_call::CallClient;
use alknet_call::ErrorCode;
use alknet_call::client::Transport;
use alknet_core::Alpn;
use alknet_core::tls::{self, ServerVerification};
use anyhow::Context;
use futures::StreamExt;
use hdrhistogram::Histogram;
use serde_json::json;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

const FAULT: &str = "alknet/fault";
const CONFIG: &str = "[diagnostics]\ncall_ops = true\nfault = true\n";
/// How long one fault connection may take before it counts as failed.
const FAULT_DEADLINE: Duration = Duration::from_secs(5);

/// Arguments of `alknet-bench chaos`.
#[derive(Debug, clap::Args)]
pub struct Args {
    /// The `alknet` binary, built with the `fault-injection` feature
    /// [default: the one beside this executable].
    #[arg(long)]
    bin: Option<PathBuf>,
    /// Call sessions per transport (QUIC and TCP+TLS) taking steady calls.
    #[arg(long, default_value_t = 2)]
    sessions: usize,
    /// Calls per second of each session.
    #[arg(long, default_value_t = 100)]
    rate: u32,
    /// Phase A: connections whose handler panics.
    #[arg(long, default_value_t = 1000)]
    panics: u64,
    /// Phase A: of them at once.
    #[arg(long, default_value_t = 32)]
    concurrency: usize,
    /// Phase A: panicking connections started per second [default: as
    /// fast as they are served].
    #[arg(long)]
    panic_rate: Option<u32>,
    /// Phase B: supervisor crashes.
    #[arg(long, default_value_t = 20)]
    rounds: u32,
    /// Phase B: seconds between crashes (the default intensity allows 5
    /// restarts in 10 s: 2.5 s apart stays within it).
    #[arg(long, default_value_t = 2.5)]
    interval: f64,
}

pub async fn run(args: Args) -> anyhow::Result<()> {
    let bin = match &args.bin {
        Some(bin) => bin.clone(),
        None => node_process::alknet_beside_me()?,
    };
    let mut node = NodeProcess::start(&bin, CONFIG).with_context(|| {
        format!(
            "{} must be built with the fault-injection feature \
             (cargo build --workspace --release builds it so)",
            bin.display()
        )
    })?;
    let target = Target {
        addr: node.addr,
        pid: node.pid(),
        admin_token: node.admin_token.clone(),
    };
    let admin = load::connect_admin(&target).await?;
    let fault = FaultDialer::new(target.addr)?;
    let shape = Shape {
        call_sessions: args.sessions,
        http_connections: 0,
        websockets: 0,
        subscriptions: 0,
        churn_rate: 0,
        rate: args.rate,
        ..Shape::default()
    };
    println!(
        "chaos: {} (pid {}), {} call sessions per transport at {} calls/s each",
        bin.display(),
        target.pid,
        args.sessions,
        args.rate
    );
    let calls = Load::start(&target, &shape);
    // Let every session connect before anything is counted.
    tokio::time::sleep(Duration::from_secs(2)).await;
    let warmup = calls.take();
    anyhow::ensure!(
        warmup.failures() == 0,
        "calls failed before any fault: {:?}",
        calls.errors()
    );
    let before = fault_supervisor(&admin).await?;

    // A: connection panics.
    let cpu = node.usage()?.cpu;
    let started = Instant::now();
    let panicked =
        connection_panics(&fault, args.panics, args.concurrency, args.panic_rate).await?;
    let phase_a = PhaseCalls::new("A", started.elapsed(), calls.take());
    let cpu_a = node.usage()?.cpu.saturating_sub(cpu);
    let settled = wait_for(Duration::from_secs(10), || async {
        Ok(fault_supervisor(&admin).await?.children == 0)
    })
    .await?;
    let after_a = fault_supervisor(&admin).await?;
    let panic_lines = count_lines(&node, "panic: injected connection panic");

    // B: supervisor crash loops within the intensity.
    let baseline = probe_baseline(&fault, 20).await?;
    let cpu = node.usage()?.cpu;
    let started = Instant::now();
    let recovery = crash_loop(&admin, &fault, args.rounds, args.interval).await?;
    let phase_b = PhaseCalls::new("B", started.elapsed(), calls.take());
    let cpu_b = node.usage()?.cpu.saturating_sub(cpu);
    let after_b = fault_supervisor(&admin).await?;
    let errors = calls.errors();
    calls.stop().await?;

    // C: past the intensity.
    let escalation = escalate(&admin, &mut node).await?;
    drop(admin);
    let log = node.log();

    println!();
    println!(
        "phase A: {} fault connections (QUIC and TCP+TLS alternating, {} at once, {})",
        args.panics,
        args.concurrency,
        match args.panic_rate {
            Some(rate) => format!("{rate} started a second"),
            None => "as fast as served".to_owned(),
        }
    );
    println!(
        "  connections closed by their panic: {} of {} in {:.1} s; server CPU {:.1} s",
        panicked.closed,
        args.panics,
        phase_a.elapsed.as_secs_f64(),
        cpu_a.as_secs_f64()
    );
    println!(
        "  `panic: injected connection panic` lines in the log: {panic_lines}; fault supervisor {} → {} (restarts {}), children gone: {settled}",
        before.id, after_a.id, after_a.restarts
    );
    println!();
    println!(
        "phase B: {} crashes of proto/alknet/fault, {:.1} s apart, while the calls go on",
        args.rounds, args.interval
    );
    println!(
        "  crash order → first fault connection served: p50 {:.1} ms, p99 {:.1} ms, max {:.1} ms \
         (a fault connection without a crash: p50 {:.1} ms, p99 {:.1} ms)",
        ms(recovery.latency.value_at_quantile(0.5)),
        ms(recovery.latency.value_at_quantile(0.99)),
        ms(recovery.latency.max()),
        ms(baseline.value_at_quantile(0.5)),
        ms(baseline.value_at_quantile(0.99)),
    );
    println!(
        "  refused attempts while restarting: {}; fault supervisor restarts after B: {}; server CPU {:.1} s",
        recovery.refused,
        after_b.restarts,
        cpu_b.as_secs_f64()
    );
    println!();
    println!("steady calls on alknet/call during the faults");
    println!(
        "{:<28} {:>8} {:>7} {:>8} {:>8} {:>8} {:>8}",
        "phase", "calls", "failed", "p50 ms", "p99 ms", "p99.9 ms", "max ms"
    );
    for phase in [&phase_a, &phase_b] {
        phase.print();
    }
    if !errors.is_empty() {
        println!("  first call errors: {errors:#?}");
    }
    println!();
    println!("phase C: crashes past the restart intensity (default 5 restarts in 10 s)");
    println!(
        "  crash orders in C: {} (the last {}); last crash order → process exit: {:.0} ms; {}",
        escalation.crashes,
        if escalation.last_answered {
            "answered"
        } else {
            "overtaken by the shutdown"
        },
        escalation.exit_after.as_secs_f64() * 1000.0,
        escalation.status
    );
    for needle in ["exceeded its restart intensity", "shutdown complete"] {
        match log.iter().find(|line| line.contains(needle)) {
            Some(line) => println!("  log: {line}"),
            None => println!("  log: NO line containing `{needle}`"),
        }
    }
    let unexpected: Vec<&String> = log
        .iter()
        .filter(|line| line.contains("panic:") && !line.contains("injected"))
        .collect();
    println!(
        "  panics other than the injected ones: {}",
        unexpected.len()
    );
    for line in unexpected.iter().take(5) {
        println!("    {line}");
    }

    let p99 = ms(recovery.latency.value_at_quantile(0.99));
    let verdicts = [
        (
            "0 failed calls in A and B",
            phase_a.window.failures() + phase_b.window.failures() == 0,
        ),
        (
            "every fault connection closed by its panic",
            panicked.closed == args.panics,
        ),
        (
            "no restart from connection panics",
            after_a.restarts == 0 && after_a.id == before.id,
        ),
        (
            "one restart per supervisor crash",
            after_b.restarts == args.rounds,
        ),
        ("supervisor back serving p99 ≤ 100 ms", p99 <= 100.0),
        (
            "escalation exits with status 1, no other panic",
            escalation.status.code() == Some(1) && unexpected.is_empty(),
        ),
        (
            "escalation logged and shutdown complete",
            log.iter()
                .any(|l| l.contains("exceeded its restart intensity"))
                && log.iter().any(|l| l.contains("shutdown complete")),
        ),
    ];
    println!();
    for (claim, held) in verdicts {
        println!("  [{}] {claim}", if held { "ok" } else { "FAILED" });
    }
    anyhow::ensure!(
        verdicts.iter().all(|(_, held)| *held),
        "the resilience promise did not hold"
    );
    Ok(())
}

fn ms(micros: u64) -> f64 {
    micros as f64 / 1000.0
}

/// The steady calls over one phase.
struct PhaseCalls {
    name: &'static str,
    elapsed: Duration,
    window: Window,
}

impl PhaseCalls {
    fn new(name: &'static str, elapsed: Duration, window: Window) -> Self {
        Self {
            name,
            elapsed,
            window,
        }
    }

    fn print(&self) {
        for kind in [Kind::QuicCall, Kind::TcpCall] {
            let tally = self.window.tally(kind);
            let h = &tally.latency;
            println!(
                "{:<28} {:>8} {:>7} {:>8.2} {:>8.2} {:>8.2} {:>8.2}",
                format!("{} ({})", self.name, kind.label()),
                tally.done,
                tally.failed,
                ms(h.value_at_quantile(0.5)),
                ms(h.value_at_quantile(0.99)),
                ms(h.value_at_quantile(0.999)),
                ms(h.max()),
            );
        }
    }
}

/// `proto/alknet/fault` as `admin/tree` shows it.
struct FaultSupervisor {
    id: String,
    restarts: u32,
    children: usize,
}

async fn fault_supervisor(admin: &CallClient) -> anyhow::Result<FaultSupervisor> {
    let tree = alknet_bench::cycles::read_tree(admin).await?;
    let node = tree
        .find("proto/alknet/fault")
        .context("proto/alknet/fault is not in the tree")?;
    Ok(FaultSupervisor {
        id: node.id.clone(),
        restarts: node.restarts,
        children: node.children.len(),
    })
}

/// Polls `condition` until it holds or `deadline` passes.
async fn wait_for<F, Fut>(deadline: Duration, mut condition: F) -> anyhow::Result<bool>
where
    F: FnMut() -> Fut,
    Fut: Future<Output = anyhow::Result<bool>>,
{
    let end = Instant::now() + deadline;
    loop {
        if condition().await? {
            return Ok(true);
        }
        if Instant::now() >= end {
            return Ok(false);
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

fn count_lines(node: &NodeProcess, needle: &str) -> usize {
    node.log().iter().filter(|l| l.contains(needle)).count()
}

/// Dials `alknet/fault` over either transport.
struct FaultDialer {
    addr: std::net::SocketAddr,
    endpoint: quinn::Endpoint,
    quic: quinn::ClientConfig,
    tcp: TlsDialer,
}

impl FaultDialer {
    fn new(addr: std::net::SocketAddr) -> anyhow::Result<Self> {
        Ok(Self {
            addr,
            endpoint: quinn::Endpoint::client("127.0.0.1:0".parse()?)?,
            quic: tls::quic_client_config(ServerVerification::Insecure, None, &[Alpn::new(FAULT)])?,
            tcp: TlsDialer::new(FAULT)?,
        })
    }

    /// Sends `command` and reads to the end of what comes back: the echo of
    /// what follows the command byte, or nothing when the handler panics
    /// (its actor dies and the connection closes). The outer error is a
    /// failure to connect or send; the inner one, how the reading ended.
    async fn exchange(
        &self,
        transport: Transport,
        command: &[u8],
    ) -> anyhow::Result<anyhow::Result<Vec<u8>>> {
        tokio::time::timeout(FAULT_DEADLINE, async {
            match transport {
                Transport::Quic => {
                    let connection = self
                        .endpoint
                        .connect_with(self.quic.clone(), self.addr, "localhost")?
                        .await?;
                    let (mut send, mut recv) = connection.open_bi().await?;
                    send.write_all(command).await?;
                    send.finish()?;
                    let read = recv.read_to_end(1024).await;
                    connection.close(alknet_core::close::NO_ERROR.into(), b"done");
                    Ok(read.map_err(anyhow::Error::from))
                }
                Transport::Tcp => {
                    let mut stream = self.tcp.connect(self.addr).await?;
                    stream.write_all(command).await?;
                    stream.shutdown().await?;
                    let mut echoed = Vec::new();
                    let read = stream.read_to_end(&mut echoed).await;
                    Ok(read.map(|_| echoed).map_err(anyhow::Error::from))
                }
            }
        })
        .await
        .context("no answer in time")?
    }

    /// A connection whose handler panics; `Ok` once the node has closed it
    /// without echoing anything (over QUIC the close ends the read in an
    /// error, over TCP+TLS in an end of stream with or without close_notify).
    async fn panic(&self, transport: Transport) -> anyhow::Result<()> {
        match self.exchange(transport, b"p").await? {
            Ok(bytes) => anyhow::ensure!(bytes.is_empty(), "a panicking handler echoed"),
            Err(_closed) => {}
        }
        Ok(())
    }

    /// A connection served: its echo came back.
    async fn echo(&self, transport: Transport) -> anyhow::Result<()> {
        let echoed = self.exchange(transport, b"eprobe").await??;
        anyhow::ensure!(echoed == b"probe", "echoed {echoed:?}");
        Ok(())
    }
}

fn transport(i: u64) -> Transport {
    if i.is_multiple_of(2) {
        Transport::Quic
    } else {
        Transport::Tcp
    }
}

struct Panicked {
    closed: u64,
}

/// Phase A: `count` panicking connections, `concurrency` at a time, and
/// `per_second` started a second when given.
async fn connection_panics(
    fault: &FaultDialer,
    count: u64,
    concurrency: usize,
    per_second: Option<u32>,
) -> anyhow::Result<Panicked> {
    let start = tokio::time::Instant::now();
    let gap = per_second.map(|rate| Duration::from_secs(1) / rate.max(1));
    let mut outcomes = futures::stream::iter(0..count)
        .map(|i| async move {
            if let Some(gap) = gap {
                tokio::time::sleep_until(start + gap * i as u32).await;
            }
            fault.panic(transport(i)).await
        })
        .buffer_unordered(concurrency.max(1));
    let mut closed = 0;
    let mut errors = Vec::new();
    while let Some(outcome) = outcomes.next().await {
        match outcome {
            Ok(()) => closed += 1,
            Err(error) if errors.len() < 5 => errors.push(format!("{error:#}")),
            Err(_) => {}
        }
    }
    if !errors.is_empty() {
        println!("  fault connections that did not end in a panic: {errors:#?}");
    }
    Ok(Panicked { closed })
}

/// Time to a served fault connection with no crash: the floor a recovery
/// time includes.
async fn probe_baseline(fault: &FaultDialer, count: u64) -> anyhow::Result<Histogram<u64>> {
    let mut latency = support::histogram()?;
    for i in 0..count {
        let started = Instant::now();
        fault.echo(transport(i)).await?;
        latency.record(started.elapsed().as_micros() as u64)?;
    }
    Ok(latency)
}

struct Recovery {
    latency: Histogram<u64>,
    refused: u64,
}

/// Phase B: `rounds` crashes `interval` seconds apart; each timed from the
/// crash order to the first fault connection served again.
async fn crash_loop(
    admin: &CallClient,
    fault: &FaultDialer,
    rounds: u32,
    interval: f64,
) -> anyhow::Result<Recovery> {
    let mut recovery = Recovery {
        latency: support::histogram()?,
        refused: 0,
    };
    let start = tokio::time::Instant::now();
    for round in 0..rounds {
        // An absolute schedule: the gaps never shrink below `interval`, so
        // the crashes stay within the restart intensity.
        tokio::time::sleep_until(start + Duration::from_secs_f64(interval * f64::from(round)))
            .await;
        let ordered = Instant::now();
        admin
            .call("diag/fault/panic-supervisor", json!({"alpn": FAULT}))
            .await
            .context("diag/fault/panic-supervisor")?;
        let mut attempt = u64::from(round);
        loop {
            match fault.echo(transport(attempt)).await {
                Ok(()) => break,
                Err(_) if ordered.elapsed() < Duration::from_secs(10) => {
                    recovery.refused += 1;
                    attempt += 1;
                }
                Err(error) => return Err(error.context("the fault supervisor did not come back")),
            }
        }
        recovery
            .latency
            .record(ordered.elapsed().as_micros() as u64)?;
    }
    Ok(recovery)
}

struct Escalation {
    /// Crash orders sent in C, the escalating one included.
    crashes: u32,
    /// Whether the node answered the last order before it shut down.
    last_answered: bool,
    exit_after: Duration,
    status: std::process::ExitStatus,
}

/// Phase C: crash the fault supervisor as fast as it restarts until the
/// node gives up; time the last crash order to the process's exit.
async fn escalate(admin: &CallClient, node: &mut NodeProcess) -> anyhow::Result<Escalation> {
    let mut crashes = 0;
    let mut last_answered = false;
    let mut last_order = Instant::now();
    let deadline = Instant::now() + Duration::from_secs(30);
    while node.try_exit()?.is_none() && Instant::now() < deadline {
        let ordered = Instant::now();
        match admin
            .call("diag/fault/panic-supervisor", json!({"alpn": FAULT}))
            .await
        {
            Ok(_) => {
                crashes += 1;
                last_answered = true;
                last_order = ordered;
            }
            // Restarting (or shutting down): no supervisor to crash; ask again.
            Err(error) if error.code == ErrorCode::Unavailable => {
                tokio::time::sleep(Duration::from_millis(1)).await;
            }
            // The session ended with the node while the order was out: the
            // order that escalated, whose answer the shutdown overtook.
            Err(_) => {
                crashes += 1;
                last_answered = false;
                last_order = ordered;
                break;
            }
        }
    }
    let (status, exited) = node
        .wait_exit(Duration::from_secs(30))
        .await?
        .context("the node did not exit after escalating")?;
    Ok(Escalation {
        crashes,
        last_answered,
        exit_after: exited.saturating_duration_since(last_order),
        status,
    })
}
