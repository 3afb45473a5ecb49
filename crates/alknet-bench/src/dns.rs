//! `alknet-bench dns`: Debian's `dnsperf` against alknet's DNS, against
//! hickory-dns (the hickory project's own server) and against Knot DNS
//! (`knotd`, the ceiling), on loopback, in one run, the servers interleaved
//! round by round so that machine noise hits them all alike.
//!
//! Every server answers one generated zone, `bench.test.`, read from the
//! same master file: `--records` names with an A record, every tenth with
//! AAAA and TXT too. The query list asks for those names' A records, every
//! tenth name's TXT, and one name in ten that does not exist (NXDOMAIN with
//! the SOA). Transports: UDP, TCP and DoT through dnsperf (`-m udp|tcp|dot`);
//! DoQ through this benchmark's own quinn client, one query per stream as
//! RFC 9250 has it (dnsperf has no DoQ). Knot 3.2 (Debian 12) serves UDP and
//! TCP only.
//!
//! A do-nothing floor server (this binary's `dns-floor`: every query sent
//! back as its own answer, on each transport) shows what the client, the
//! TLS and QUIC libraries and loopback cost without any DNS work; with
//! client and servers on the same two cores, it is the most any server can
//! reach here.
//!
//! Reported per transport and server: queries per second (the median of
//! `--rounds`), the 99th percentile latency of that run (dnsperf's
//! per-response latencies, `-v`; the DoQ client's own), and the server's
//! CPU time per query, from `/proc` before and after each run.

use std::collections::HashMap;
use std::io::{BufRead, BufReader, Write};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use alknet_core::tls::{self, ServerVerification};
use alknet_core::{Alpn, NodeKey};
use anyhow::{Context, bail, ensure};

use crate::openssh::{cpu_of, free_port, wait_listening};
use crate::support;
use alknet_bench::node_process::{NodeProcess, alknet_beside_me};

/// The zone every server answers.
const ZONE: &str = "bench.test";

/// `alknet-bench dns`.
#[derive(Debug, clap::Args)]
pub struct Args {
    /// The alknet binary [default: the one beside this benchmark].
    #[arg(long)]
    bin: Option<PathBuf>,
    /// hickory-dns, built with DoT and DoQ (`cargo install hickory-dns
    /// --features tls-ring,quic-ring`).
    #[arg(long, default_value = "hickory-dns")]
    hickory_dns: PathBuf,
    /// Knot DNS's server.
    #[arg(long, default_value = "/usr/sbin/knotd")]
    knotd: PathBuf,
    /// The load generator.
    #[arg(long, default_value = "dnsperf")]
    dnsperf: PathBuf,
    /// Seconds of load per server, transport and round.
    #[arg(long, default_value_t = 10)]
    seconds: u64,
    /// Runs per server and transport; the median is reported.
    #[arg(long, default_value_t = 3)]
    rounds: usize,
    /// Names in the zone.
    #[arg(long, default_value_t = 1000)]
    records: usize,
    /// dnsperf's clients (`-c`: sockets, or connections), and the DoQ
    /// client's connections.
    #[arg(long, default_value_t = 4)]
    clients: usize,
    /// Queries in flight at once (dnsperf's `-q`; the DoQ client's streams).
    #[arg(long, default_value_t = 100)]
    outstanding: usize,
    /// The transports to measure, comma-separated.
    #[arg(long, value_enum, value_delimiter = ',', default_values_t = Transport::ALL)]
    transports: Vec<Transport>,
    /// The servers to measure, comma-separated.
    #[arg(long, value_enum, value_delimiter = ',', default_values_t = Server::ALL)]
    servers: Vec<Server>,
}

/// How queries travel.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, clap::ValueEnum)]
enum Transport {
    Udp,
    Tcp,
    Dot,
    Doq,
}

impl Transport {
    const ALL: [Transport; 4] = [Self::Udp, Self::Tcp, Self::Dot, Self::Doq];

    fn label(self) -> &'static str {
        match self {
            Self::Udp => "UDP",
            Self::Tcp => "TCP",
            Self::Dot => "DoT",
            Self::Doq => "DoQ",
        }
    }
}

/// Who answers.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, clap::ValueEnum)]
enum Server {
    /// Every query sent back as its answer (`alknet-bench dns-floor`).
    Floor,
    Alknet,
    HickoryDns,
    Knot,
}

impl Server {
    const ALL: [Server; 4] = [Self::Floor, Self::Alknet, Self::HickoryDns, Self::Knot];

    fn label(self) -> &'static str {
        match self {
            Self::Floor => "floor (no DNS work)",
            Self::Alknet => "alknet",
            Self::HickoryDns => "hickory-dns",
            Self::Knot => "knotd",
        }
    }
}

/// A server started for the run.
struct Running {
    server: Server,
    pid: u32,
    /// Where each transport it serves is reached.
    addrs: HashMap<Transport, SocketAddr>,
    /// What keeps it alive (its process guard): dropped, the server stops.
    _keep: Box<dyn std::any::Any>,
}

/// A child process killed when dropped, with the directory it runs in.
struct ChildGuard {
    child: Child,
    _dir: tempfile::TempDir,
}

impl Drop for ChildGuard {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// One run's figures.
#[derive(Clone, Copy, Debug)]
struct Measured {
    qps: f64,
    p99: Duration,
    cpu_per_query: Duration,
    failed: u64,
}

pub async fn run(args: Args) -> anyhow::Result<()> {
    ensure!(args.rounds > 0, "--rounds must be at least 1");
    ensure!(
        args.clients > 0 && args.outstanding > 0,
        "--clients and --outstanding must be positive"
    );
    let dir = tempfile::tempdir()?;
    let zone = zone_text(args.records);
    let queries = query_list(args.records);
    let query_file = dir.path().join("queries.txt");
    std::fs::write(
        &query_file,
        queries
            .iter()
            .map(|(name, kind)| format!("{name} {kind}\n"))
            .collect::<String>(),
    )?;
    println!(
        "dns: zone {ZONE}. with {} names, {} queries in the list (1 in 10 NXDOMAIN); \
         {} s per run, {} clients, {} in flight, median of {} rounds",
        args.records,
        queries.len(),
        args.seconds,
        args.clients,
        args.outstanding,
        args.rounds
    );

    let mut servers = args.servers.clone();
    servers.dedup();
    let mut running = Vec::new();
    for &server in &servers {
        match start(server, &args, &zone) {
            Ok(started) => running.push(started),
            Err(error) => eprintln!("{}: not measured: {error:#}", server.label()),
        }
    }
    ensure!(!running.is_empty(), "no server started");

    let mut results: HashMap<(Transport, Server), Vec<Measured>> = HashMap::new();
    let mut failures: HashMap<(Transport, Server), String> = HashMap::new();
    for round in 1..=args.rounds {
        for &transport in &args.transports {
            for server in &running {
                let Some(&addr) = server.addrs.get(&transport) else {
                    continue;
                };
                let key = (transport, server.server);
                if failures.contains_key(&key) {
                    continue;
                }
                let before = cpu_of(server.pid, false)?;
                let measured = match transport {
                    Transport::Doq => doq_load(addr, &queries, &args).await,
                    _ => dnsperf(&args, transport, addr, &query_file).await,
                };
                let cpu = cpu_of(server.pid, false)?.saturating_sub(before);
                match measured {
                    Ok((qps, p99, completed, failed)) => {
                        let measured = Measured {
                            qps,
                            p99,
                            cpu_per_query: cpu
                                / u32::try_from(completed.max(1)).unwrap_or(u32::MAX),
                            failed,
                        };
                        eprintln!(
                            "round {round}: {} {}: {:.0} q/s, p99 {:.2} ms, {:.1} µs CPU/query, {} failed",
                            transport.label(),
                            server.server.label(),
                            measured.qps,
                            measured.p99.as_secs_f64() * 1e3,
                            measured.cpu_per_query.as_secs_f64() * 1e6,
                            measured.failed
                        );
                        results.entry(key).or_default().push(measured);
                    }
                    Err(error) => {
                        eprintln!("{} {}: {error:#}", transport.label(), server.server.label());
                        failures.insert(key, format!("{error:#}"));
                    }
                }
            }
        }
    }
    print_table(&args, &running, &results, &failures);
    Ok(())
}

fn print_table(
    args: &Args,
    running: &[Running],
    results: &HashMap<(Transport, Server), Vec<Measured>>,
    failures: &HashMap<(Transport, Server), String>,
) {
    println!();
    println!(
        "| transport | server | queries/s | × hickory-dns | p99 ms | server CPU µs/query | failed |"
    );
    println!("|---|---|---:|---:|---:|---:|---:|");
    for &transport in &args.transports {
        let median_of = |server: Server| results.get(&(transport, server)).map(|runs| median(runs));
        let hickory = median_of(Server::HickoryDns);
        for server in running {
            if !server.addrs.contains_key(&transport) {
                continue;
            }
            let key = (transport, server.server);
            if let Some(error) = failures.get(&key) {
                println!(
                    "| {} | {} | failed: {error} | | | | |",
                    transport.label(),
                    server.server.label()
                );
                continue;
            }
            let Some(measured) = median_of(server.server) else {
                continue;
            };
            let ratio = hickory
                .map(|h| format!("{:.2}×", measured.qps / h.qps))
                .unwrap_or_else(|| "–".into());
            println!(
                "| {} | {} | {:.0} | {ratio} | {:.2} | {:.1} | {} |",
                transport.label(),
                server.server.label(),
                measured.qps,
                measured.p99.as_secs_f64() * 1e3,
                measured.cpu_per_query.as_secs_f64() * 1e6,
                measured.failed
            );
        }
    }
}

/// The run with the median queries per second.
fn median(runs: &[Measured]) -> Measured {
    let mut sorted = runs.to_vec();
    sorted.sort_by(|a, b| a.qps.total_cmp(&b.qps));
    sorted[sorted.len() / 2]
}

/// The zone's master file.
fn zone_text(records: usize) -> String {
    let mut text = format!(
        "$ORIGIN {ZONE}.\n$TTL 3600\n\
         @ IN SOA ns1 hostmaster 1 7200 3600 1209600 300\n\
         @ IN NS ns1\nns1 IN A 127.0.0.1\n"
    );
    for i in 0..records {
        text.push_str(&format!(
            "host{i} IN A 10.{}.{}.{}\n",
            (i >> 16) & 0xff,
            (i >> 8) & 0xff,
            i & 0xff
        ));
        if i % 10 == 0 {
            text.push_str(&format!("host{i} IN AAAA 2001:db8::{i:x}\n"));
            text.push_str(&format!("host{i} IN TXT \"v=bench name {i}\"\n"));
        }
    }
    text
}

/// The queries, as (name, type).
fn query_list(records: usize) -> Vec<(String, &'static str)> {
    let mut queries = Vec::new();
    for i in 0..records {
        queries.push((format!("host{i}.{ZONE}"), "A"));
        if i % 10 == 0 {
            queries.push((format!("host{i}.{ZONE}"), "TXT"));
            queries.push((format!("missing{i}.{ZONE}"), "A"));
        }
    }
    queries
}

fn start(server: Server, args: &Args, zone: &str) -> anyhow::Result<Running> {
    match server {
        Server::Floor => start_floor(),
        Server::Alknet => start_alknet(args, zone),
        Server::HickoryDns => start_hickory(args, zone),
        Server::Knot => start_knot(args, zone),
    }
}

/// This binary's `dns-floor`, which prints where it listens.
fn start_floor() -> anyhow::Result<Running> {
    let dir = tempfile::tempdir()?;
    let mut child = Command::new(std::env::current_exe()?)
        .arg("dns-floor")
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .spawn()
        .context("cannot start dns-floor")?;
    let stdout = child.stdout.take().context("no stdout")?;
    let mut addrs = HashMap::new();
    for line in BufReader::new(stdout).lines() {
        let line = line?;
        if line == "ready" {
            break;
        }
        let (name, addr) = line.split_once(' ').context("dns-floor: unexpected line")?;
        let transport = match name {
            "udp" => Transport::Udp,
            "tcp" => Transport::Tcp,
            "dot" => Transport::Dot,
            "doq" => Transport::Doq,
            _ => bail!("dns-floor: unexpected transport {name}"),
        };
        addrs.insert(transport, addr.parse()?);
    }
    ensure!(addrs.len() == 4, "dns-floor did not say where it listens");
    Ok(Running {
        server: Server::Floor,
        pid: child.id(),
        addrs,
        _keep: Box::new(ChildGuard { child, _dir: dir }),
    })
}

/// `alknet serve` with the zone in its data directory, plain DNS on a
/// loopback port and no response-rate limit (one source sends everything).
fn start_alknet(args: &Args, zone: &str) -> anyhow::Result<Running> {
    let bin = match &args.bin {
        Some(bin) => bin.clone(),
        None => alknet_beside_me()?,
    };
    let plain = SocketAddr::from(([127, 0, 0, 1], free_port()?));
    let dot = SocketAddr::from(([127, 0, 0, 1], free_port()?));
    // DoT on `dot_listen`: dnsperf offers no ALPN, which the node's own
    // port would take for HTTP.
    let config = format!(
        "[dns]\nlisten = \"{plain}\"\ndot_listen = \"{dot}\"\nresponse_rate_limit = 0\n\
         [[dns.zones]]\nname = \"{ZONE}\"\n[pkarr]\npublish = false\n"
    );
    let node = NodeProcess::start_with_setup(&bin, &config, |data_dir| {
        let zones = data_dir.join("dns").join("zones");
        std::fs::create_dir_all(&zones)?;
        std::fs::write(zones.join(format!("{ZONE}.zone")), zone)?;
        Ok(())
    })
    .context("starting alknet serve")?;
    let addrs = HashMap::from([
        (Transport::Udp, plain),
        (Transport::Tcp, plain),
        (Transport::Dot, dot),
        (Transport::Doq, node.addr),
    ]);
    Ok(Running {
        server: Server::Alknet,
        pid: node.pid(),
        addrs,
        _keep: Box::new(node),
    })
}

/// hickory-dns with the zone as a primary file zone, DoT and DoQ on their
/// own ports with a self-signed certificate.
fn start_hickory(args: &Args, zone: &str) -> anyhow::Result<Running> {
    let dir = tempfile::tempdir()?;
    std::fs::write(dir.path().join(format!("{ZONE}.zone")), zone)?;
    let (cert, key) = alknet_core::node_key::generate_web_certificate("localhost")?;
    std::fs::write(dir.path().join("cert.pem"), cert)?;
    std::fs::write(dir.path().join("key.pem"), key)?;
    let (plain, tls_port, quic_port) = (free_port()?, free_port()?, free_port()?);
    std::fs::write(
        dir.path().join("named.toml"),
        format!(
            "listen_addrs_ipv4 = [\"127.0.0.1\"]\nlisten_port = {plain}\n\
             tls_listen_port = {tls_port}\nquic_listen_port = {quic_port}\n\
             directory = \"{}\"\ndrop_privileges = false\n\
             [tls_cert]\npath = \"cert.pem\"\nprivate_key = \"key.pem\"\n\
             [[zones]]\nzone = \"{ZONE}\"\nzone_type = \"Primary\"\nfile = \"{ZONE}.zone\"\n",
            dir.path().display()
        ),
    )?;
    let child = Command::new(&args.hickory_dns)
        .arg("-q")
        .arg("-c")
        .arg(dir.path().join("named.toml"))
        .arg("-z")
        .arg(dir.path())
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .with_context(|| format!("cannot run {}", args.hickory_dns.display()))?;
    let guard = ChildGuard { child, _dir: dir };
    wait_listening(plain).context("hickory-dns did not start")?;
    wait_listening(tls_port).context("hickory-dns serves no DoT (built without tls-ring?)")?;
    let at = |port| SocketAddr::from(([127, 0, 0, 1], port));
    Ok(Running {
        server: Server::HickoryDns,
        pid: guard.child.id(),
        addrs: HashMap::from([
            (Transport::Udp, at(plain)),
            (Transport::Tcp, at(plain)),
            (Transport::Dot, at(tls_port)),
            (Transport::Doq, at(quic_port)),
        ]),
        _keep: Box::new(guard),
    })
}

/// knotd with the zone; UDP and TCP (Knot 3.2 has no DoT or DoQ server).
fn start_knot(args: &Args, zone: &str) -> anyhow::Result<Running> {
    let dir = tempfile::tempdir()?;
    std::fs::write(dir.path().join(format!("{ZONE}.zone")), zone)?;
    let port = free_port()?;
    let conf = dir.path().join("knot.conf");
    std::fs::write(
        &conf,
        format!(
            "server:\n    listen: 127.0.0.1@{port}\n    rundir: \"{dir}\"\n\
             database:\n    storage: \"{dir}\"\n\
             template:\n  - id: default\n    storage: \"{dir}\"\n\
             zone:\n  - domain: {ZONE}\n    file: \"{ZONE}.zone\"\n",
            dir = dir.path().display()
        ),
    )?;
    let child = Command::new(&args.knotd)
        .arg("-c")
        .arg(&conf)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .with_context(|| format!("cannot run {}", args.knotd.display()))?;
    let guard = ChildGuard { child, _dir: dir };
    wait_listening(port).context("knotd did not start")?;
    let at = SocketAddr::from(([127, 0, 0, 1], port));
    Ok(Running {
        server: Server::Knot,
        pid: guard.child.id(),
        addrs: HashMap::from([(Transport::Udp, at), (Transport::Tcp, at)]),
        _keep: Box::new(guard),
    })
}

/// One dnsperf run: queries per second, p99, completed queries, and the
/// lost and wrongly answered ones.
async fn dnsperf(
    args: &Args,
    transport: Transport,
    addr: SocketAddr,
    query_file: &Path,
) -> anyhow::Result<(f64, Duration, u64, u64)> {
    let mode = match transport {
        Transport::Udp => "udp",
        Transport::Tcp => "tcp",
        Transport::Dot => "dot",
        Transport::Doq => bail!("dnsperf has no DoQ"),
    };
    let stderr_file = query_file.with_extension("stderr");
    let mut command = Command::new(&args.dnsperf);
    command
        .args(["-s", &addr.ip().to_string(), "-p", &addr.port().to_string()])
        .args(["-m", mode, "-l", &args.seconds.to_string()])
        .args(["-c", &args.clients.to_string()])
        .args(["-q", &args.outstanding.to_string()])
        .args([
            "-t",
            "2",
            "-v",
            "-O",
            "suppress=sockready,congestion,timeouts",
            "-d",
        ])
        .arg(query_file)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        // A file, not a pipe: nobody reads it until dnsperf is done.
        .stderr(std::fs::File::create(&stderr_file)?);
    let output = tokio::task::spawn_blocking(move || -> anyhow::Result<_> {
        let mut child = command.spawn().context("cannot run dnsperf")?;
        let stdout = child.stdout.take().context("no stdout")?;
        let mut latencies = support::histogram()?;
        let mut wrong = 0u64;
        let mut summary = Vec::new();
        // `-v` writes one line per response (`> NOERROR name type
        // seconds`); read them as they come rather than hold them all.
        for line in BufReader::new(stdout).lines() {
            let line = line?;
            if let Some(rest) = line.strip_prefix("> ") {
                let mut words = rest.split_whitespace();
                // Only NOERROR and NXDOMAIN are right answers here; a
                // server refusing fast must not look fast.
                if !matches!(words.next(), Some("NOERROR" | "NXDOMAIN")) {
                    wrong += 1;
                } else if let Some(seconds) = words.last().and_then(|s| s.parse::<f64>().ok()) {
                    latencies.record(((seconds * 1e6) as u64).max(1))?;
                }
            } else {
                summary.push(line);
            }
        }
        let status = child.wait()?;
        ensure!(
            status.success(),
            "dnsperf failed: {}",
            std::fs::read_to_string(&stderr_file).unwrap_or_default()
        );
        Ok((latencies, wrong, summary))
    })
    .await??;
    let (latencies, wrong, summary) = output;
    let field = |name: &str| -> anyhow::Result<f64> {
        summary
            .iter()
            .find_map(|line| {
                let rest = line.trim().strip_prefix(name)?;
                rest.split_whitespace().next()?.parse().ok()
            })
            .with_context(|| format!("dnsperf printed no {name:?}:\n{}", summary.join("\n")))
    };
    let qps = field("Queries per second:")?;
    let completed = field("Queries completed:")? as u64;
    let lost = field("Queries lost:")? as u64;
    ensure!(completed > 0, "no query completed:\n{}", summary.join("\n"));
    Ok((
        qps,
        Duration::from_micros(latencies.value_at_quantile(0.99)),
        completed,
        lost + wrong,
    ))
}

/// DoQ load: `--outstanding` tasks over `--clients` connections, each
/// sending one query per stream (message id 0, RFC 9250 §4.2.1) until the
/// time is up. A connection the server closes (hickory-dns ends one after
/// 100 queries) is replaced, as any DoQ client would, and the query asked
/// again on the new one; the replacements are counted and printed.
async fn doq_load(
    addr: SocketAddr,
    queries: &[(String, &'static str)],
    args: &Args,
) -> anyhow::Result<(f64, Duration, u64, u64)> {
    let wires: Arc<Vec<Vec<u8>>> = Arc::new(
        queries
            .iter()
            .map(|(name, kind)| query_wire(name, if *kind == "TXT" { 16 } else { 1 }))
            .collect(),
    );
    let dialer = Arc::new(DoqDialer {
        endpoint: quinn::Endpoint::client("127.0.0.1:0".parse()?)?,
        config: tls::quic_client_config(ServerVerification::Insecure, None, &[Alpn::new("doq")])?,
        addr,
        reconnects: AtomicUsize::new(0),
    });
    let mut slots = Vec::new();
    for _ in 0..args.clients {
        slots.push(Arc::new(DoqSlot {
            current: std::sync::Mutex::new(dialer.connect().await?),
            replacing: tokio::sync::Mutex::new(()),
        }));
    }
    let next = Arc::new(AtomicUsize::new(0));
    let deadline = Instant::now() + Duration::from_secs(args.seconds);
    let started = Instant::now();
    let mut tasks = tokio::task::JoinSet::new();
    for index in 0..args.outstanding {
        let slot = slots[index % slots.len()].clone();
        let dialer = dialer.clone();
        let wires = wires.clone();
        let next = next.clone();
        tasks.spawn(async move {
            let mut latencies = support::histogram()?;
            let mut failed = 0u64;
            let mut first_error = None;
            let mut wire = &wires[next.fetch_add(1, Ordering::Relaxed) % wires.len()];
            while Instant::now() < deadline {
                let connection = slot.connection();
                let sent = Instant::now();
                match doq_exchange(&connection, wire).await {
                    Ok(()) => {
                        latencies.record(sent.elapsed().as_micros().max(1) as u64)?;
                        wire = &wires[next.fetch_add(1, Ordering::Relaxed) % wires.len()];
                    }
                    // Closed under it: the same query again on a new one.
                    Err(_) if connection.close_reason().is_some() => {
                        slot.replace(&connection, &dialer).await?;
                    }
                    Err(error) => {
                        failed += 1;
                        first_error.get_or_insert_with(|| format!("{error:#}"));
                        wire = &wires[next.fetch_add(1, Ordering::Relaxed) % wires.len()];
                    }
                }
            }
            anyhow::Ok((latencies, failed, first_error))
        });
    }
    let mut latencies = support::histogram()?;
    let mut failed = 0;
    let mut first_error = None;
    while let Some(done) = tasks.join_next().await {
        let (task_latencies, task_failed, task_error) = done??;
        latencies.add(&task_latencies)?;
        failed += task_failed;
        first_error = first_error.or(task_error);
    }
    let elapsed = started.elapsed();
    if let Some(error) = first_error {
        eprintln!("DoQ {addr}: {failed} queries failed, the first with: {error}");
    }
    let reconnects = dialer.reconnects.load(Ordering::Relaxed);
    if reconnects > 0 {
        eprintln!("DoQ {addr}: the server closed {reconnects} connections, each replaced");
    }
    for slot in &slots {
        slot.connection().close(0u32.into(), b"");
    }
    dialer.endpoint.wait_idle().await;
    let completed = latencies.len();
    ensure!(completed > 0, "no DoQ query completed ({failed} failed)");
    Ok((
        completed as f64 / elapsed.as_secs_f64(),
        Duration::from_micros(latencies.value_at_quantile(0.99)),
        completed,
        failed,
    ))
}

/// What opens DoQ connections to the server under test.
struct DoqDialer {
    endpoint: quinn::Endpoint,
    config: quinn::ClientConfig,
    addr: SocketAddr,
    reconnects: AtomicUsize,
}

impl DoqDialer {
    async fn connect(&self) -> anyhow::Result<quinn::Connection> {
        self.endpoint
            .connect_with(self.config.clone(), self.addr, "localhost")?
            .await
            .context("DoQ connection")
    }
}

/// One of the client's connections, replaced when the server closes it.
struct DoqSlot {
    current: std::sync::Mutex<quinn::Connection>,
    /// Held while replacing, so that one closed connection is replaced once.
    replacing: tokio::sync::Mutex<()>,
}

impl DoqSlot {
    fn connection(&self) -> quinn::Connection {
        self.current
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .clone()
    }

    async fn replace(&self, closed: &quinn::Connection, dialer: &DoqDialer) -> anyhow::Result<()> {
        let _replacing = self.replacing.lock().await;
        if self.connection().stable_id() == closed.stable_id() {
            let fresh = dialer.connect().await?;
            dialer.reconnects.fetch_add(1, Ordering::Relaxed);
            *self
                .current
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner) = fresh;
        }
        Ok(())
    }
}

/// One query on its own stream; the answer must be a response.
async fn doq_exchange(connection: &quinn::Connection, wire: &[u8]) -> anyhow::Result<()> {
    let (mut send, mut recv) = connection.open_bi().await?;
    send.write_all(wire).await?;
    send.finish()?;
    let answer = recv.read_to_end(65_537).await?;
    ensure!(
        answer.len() >= 14 && answer[4] & 0x80 != 0,
        "not a DNS response"
    );
    // NOERROR or NXDOMAIN, as for dnsperf's runs.
    ensure!(
        matches!(answer[5] & 0x0f, 0 | 3),
        "answered rcode {}",
        answer[5] & 0x0f
    );
    Ok(())
}

/// A query for `name` of type `qtype`, class IN, id 0, recursion not
/// desired, with DoQ's two-byte length in front.
fn query_wire(name: &str, qtype: u16) -> Vec<u8> {
    let mut message = vec![0, 0, 0, 0, 0, 1, 0, 0, 0, 0, 0, 0];
    for label in name.trim_end_matches('.').split('.') {
        message.push(label.len() as u8);
        message.extend_from_slice(label.as_bytes());
    }
    message.push(0);
    message.extend_from_slice(&qtype.to_be_bytes());
    message.extend_from_slice(&1u16.to_be_bytes());
    let mut wire = (message.len() as u16).to_be_bytes().to_vec();
    wire.extend(message);
    wire
}

/// `alknet-bench dns-floor`.
#[derive(Debug, clap::Args)]
pub struct FloorArgs {}

/// The floor server: UDP, TCP, DoT and DoQ on loopback ports (printed as
/// `<transport> <addr>` lines, then `ready`), each answering a query with
/// the query itself, its QR bit set. Runs until killed.
pub async fn floor(_args: FloorArgs) -> anyhow::Result<()> {
    let identity = support::server_identity(&NodeKey::generate())?;
    let udp = Arc::new(tokio::net::UdpSocket::bind("127.0.0.1:0").await?);
    let tcp = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let dot = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let acceptor = tokio_rustls::TlsAcceptor::from(Arc::new(tls::server_config(
        &identity,
        &[Alpn::new("dot")],
        false,
    )?));
    let doq = quinn::Endpoint::server(
        tls::quic_server_config(&identity, &[Alpn::new("doq")])?,
        "127.0.0.1:0".parse()?,
    )?;
    {
        let mut out = std::io::stdout().lock();
        writeln!(out, "udp {}", udp.local_addr()?)?;
        writeln!(out, "tcp {}", tcp.local_addr()?)?;
        writeln!(out, "dot {}", dot.local_addr()?)?;
        writeln!(out, "doq {}", doq.local_addr()?)?;
        writeln!(out, "ready")?;
        out.flush()?;
    }
    // One receive loop per core, as the servers measured have.
    for _ in 0..std::thread::available_parallelism().map_or(2, usize::from) {
        let udp = udp.clone();
        tokio::spawn(async move {
            let mut buf = vec![0u8; 65_535];
            while let Ok((n, from)) = udp.recv_from(&mut buf).await {
                if n >= 12 {
                    buf[2] |= 0x80;
                    let _ = udp.send_to(&buf[..n], from).await;
                }
            }
        });
    }
    tokio::spawn(async move {
        while let Ok((stream, _)) = tcp.accept().await {
            let _ = stream.set_nodelay(true);
            tokio::spawn(floor_stream(stream));
        }
    });
    tokio::spawn(async move {
        while let Ok((stream, _)) = dot.accept().await {
            let _ = stream.set_nodelay(true);
            let acceptor = acceptor.clone();
            tokio::spawn(async move {
                if let Ok(stream) = acceptor.accept(stream).await {
                    floor_stream(stream).await;
                }
            });
        }
    });
    while let Some(incoming) = doq.accept().await {
        tokio::spawn(async move {
            let Ok(connection) = incoming.await else {
                return;
            };
            while let Ok((mut send, mut recv)) = connection.accept_bi().await {
                tokio::spawn(async move {
                    if let Ok(mut wire) = recv.read_to_end(65_537).await
                        && wire.len() >= 14
                    {
                        wire[4] |= 0x80;
                        let _ = send.write_all(&wire).await;
                        let _ = send.finish();
                    }
                });
            }
        });
    }
    Ok(())
}

/// Length-prefixed queries on a stream, each answered with itself.
async fn floor_stream(stream: impl tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin) {
    use tokio::io::{AsyncReadExt, AsyncWriteExt, BufReader as AsyncBufReader, BufWriter};
    let (read, write) = tokio::io::split(stream);
    let mut read = AsyncBufReader::new(read);
    let mut write = BufWriter::new(write);
    let mut message = vec![0u8; 65_535];
    loop {
        let Ok(len) = read.read_u16().await else {
            return;
        };
        let len = usize::from(len);
        if len < 12 || read.read_exact(&mut message[..len]).await.is_err() {
            return;
        }
        message[2] |= 0x80;
        if write.write_u16(len as u16).await.is_err()
            || write.write_all(&message[..len]).await.is_err()
        {
            return;
        }
        // Answer at once unless more queries are already here (pipelining).
        if read.buffer().is_empty() && write.flush().await.is_err() {
            return;
        }
    }
}
