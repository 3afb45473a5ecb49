//! `soak`: the real binary under mixed steady load for minutes (issue #14).
//!
//! Starts `alknet serve` with the diagnostic call operations and runs
//! [`alknet_bench::load`]'s mixed load (calls over QUIC and TCP+TLS, HTTP
//! `POST /call`, WebSocket calls, `diag/count` subscriptions, connection
//! churn), sampling the node's RSS, open fds, actor count and CPU, and the
//! calls' p99, every few seconds. After a warm-up, each series' least-squares
//! slope is judged against its noise (see [`alknet_bench::trend`]). Then
//! connect/close cycles on `alknet/call` (QUIC and TCP+TLS alternating, one
//! call each, every tenth a bare handshake), after which `admin/tree` must
//! show exactly the connections still open.

use std::path::PathBuf;
use std::time::Duration;

use alknet_bench::cycles::{self, Held};
use alknet_bench::load::{self, Kind, Sample, Shape, SoakRun, Target};
use alknet_bench::node_process::{self, NodeProcess};
use alknet_bench::trend::Trend;

const CONFIG: &str = "[diagnostics]\ncall_ops = true\n";
const MIB: f64 = 1024.0 * 1024.0;

/// Arguments of `alknet-bench soak`.
#[derive(Debug, clap::Args)]
pub struct Args {
    /// The `alknet` binary [default: the one beside this executable].
    #[arg(long)]
    bin: Option<PathBuf>,
    /// Minutes of mixed load.
    #[arg(long, default_value_t = 2.0)]
    minutes: f64,
    /// Seconds between samples.
    #[arg(long, default_value_t = 5)]
    sample_seconds: u64,
    /// Seconds of load before the trends start (allocator and caches
    /// settle).
    #[arg(long, default_value_t = 30)]
    warmup_seconds: u64,
    /// Requests per second of each worker.
    #[arg(long, default_value_t = 50)]
    rate: u32,
    /// Connect/call/close cycles per second during the load.
    #[arg(long, default_value_t = 10)]
    churn_rate: u32,
    /// Drift over the run, as a fraction of the mean, below which a
    /// significant slope is still called flat.
    #[arg(long, default_value_t = 0.05)]
    tolerance: f64,
    /// Connect/close cycles after the load.
    #[arg(long, default_value_t = 100_000)]
    cycles: u64,
    /// Of them at once.
    #[arg(long, default_value_t = 8)]
    concurrency: usize,
    /// Sessions held open across the cycles.
    #[arg(long, default_value_t = 6)]
    held: usize,
}

pub async fn run(args: Args) -> anyhow::Result<()> {
    let bin = match &args.bin {
        Some(bin) => bin.clone(),
        None => node_process::alknet_beside_me()?,
    };
    let node = NodeProcess::start(&bin, CONFIG)?;
    let target = Target {
        addr: node.addr,
        pid: node.pid(),
        admin_token: node.admin_token.clone(),
    };
    let shape = Shape {
        rate: args.rate,
        churn_rate: args.churn_rate,
        ..Shape::default()
    };
    let duration = Duration::from_secs_f64(args.minutes * 60.0);
    let warmup = Duration::from_secs(args.warmup_seconds);
    println!(
        "soak: {} (pid {}) for {:.1} min, sampled every {} s, trends after {} s; {shape:?}",
        bin.display(),
        target.pid,
        args.minutes,
        args.sample_seconds,
        args.warmup_seconds
    );
    println!(
        "CPU columns: % of one core used by the node, by this load generator, and by every \
         other process of the machine since the previous sample"
    );
    println!(
        "{:>7} {:>9} {:>5} {:>7} {:>6} {:>6} {:>6} {:>8} {:>7} {:>8}",
        "t s", "RSS MiB", "fds", "actors", "node", "load", "other", "done/s", "failed", "p99 ms"
    );
    let mut previous: Option<Sample> = None;
    let run = load::run(
        &target,
        &shape,
        duration,
        Duration::from_secs(args.sample_seconds),
        |sample: &Sample| {
            let wall = sample
                .at
                .saturating_sub(previous.as_ref().map_or(Duration::ZERO, |p| p.at))
                .as_secs_f64()
                .max(1e-9);
            let share = |now: Duration, then: fn(&Sample) -> Duration| match &previous {
                Some(previous) => now.saturating_sub(then(previous)).as_secs_f64() / wall * 100.0,
                None => f64::NAN,
            };
            let node = share(sample.usage.cpu, |p| p.usage.cpu);
            let client = share(sample.client_cpu, |p| p.client_cpu);
            let other = share(sample.host_busy, |p| p.host_busy) - node - client;
            println!(
                "{:>7.0} {:>9.1} {:>5} {:>7} {:>6.1} {:>6.1} {:>6.0} {:>8.0} {:>7} {:>8.2}",
                sample.at.as_secs_f64(),
                sample.usage.rss_bytes as f64 / MIB,
                sample.usage.open_fds,
                sample.actors,
                node,
                client,
                other.max(0.0),
                sample.window.completions() as f64 / wall,
                sample.window.failures(),
                sample.window.steady_calls().value_at_quantile(0.99) as f64 / 1000.0,
            );
            previous = Some(sample.clone());
        },
    )
    .await?;
    report_load(&run, warmup, args.tolerance);

    let before = node.usage()?;
    let admin = load::connect_admin(&target).await?;
    let held = Held::open(target.addr, args.held).await?;
    println!();
    println!(
        "cycles: {} connect/close cycles on alknet/call (QUIC and TCP+TLS alternating, one call \
         each, every tenth a bare handshake), {} at once, {} sessions held open",
        args.cycles, args.concurrency, args.held
    );
    let cycles = cycles::run(target.addr, args.cycles, args.concurrency, 10).await?;
    let after = node.usage()?;
    println!(
        "  {} completed, {} failed in {:.1} s ({:.0} cycles/s); per cycle p50 {:.2} ms, p99 {:.2} ms",
        cycles.completed,
        cycles.failed,
        cycles.elapsed.as_secs_f64(),
        cycles.completed as f64 / cycles.elapsed.as_secs_f64(),
        cycles.latency.value_at_quantile(0.5) as f64 / 1000.0,
        cycles.latency.value_at_quantile(0.99) as f64 / 1000.0,
    );
    for error in &cycles.errors {
        println!("  cycle error: {error}");
    }
    println!(
        "  node before → after the cycles: RSS {:.1} → {:.1} MiB, fds {} → {}, CPU {:.1} s",
        before.rss_bytes as f64 / MIB,
        after.rss_bytes as f64 / MIB,
        before.open_fds,
        after.open_fds,
        after.cpu.saturating_sub(before.cpu).as_secs_f64()
    );
    held.prove_open().await?;
    match cycles::wait_until_exact(&admin, &held, Duration::from_secs(30)).await {
        Ok(waited) => println!(
            "  admin/tree exact {:.0} ms after the last cycle: {} actors, {} held sessions + the \
             admin session",
            waited.as_secs_f64() * 1000.0,
            cycles::read_tree(&admin).await?.count(),
            held.len()
        ),
        Err(error) => {
            println!("  admin/tree NOT exact: {error:#}");
            return Err(error.context("admin/tree after the cycles"));
        }
    }
    anyhow::ensure!(cycles.failed == 0, "{} cycles failed", cycles.failed);
    Ok(())
}

/// Prints the per-kind totals, each series' trend and the p99 drift.
fn report_load(run: &SoakRun, warmup: Duration, tolerance: f64) {
    let total = run.total_since(Duration::ZERO);
    println!();
    println!(
        "{:<20} {:>9} {:>7} {:>8} {:>8} {:>9} {:>8}",
        "load", "done", "failed", "p50 ms", "p99 ms", "p99.9 ms", "max ms"
    );
    for kind in Kind::ALL {
        let tally = total.tally(kind);
        let h = &tally.latency;
        println!(
            "{:<20} {:>9} {:>7} {:>8.2} {:>8.2} {:>9.2} {:>8.2}",
            kind.label(),
            tally.done,
            tally.failed,
            h.value_at_quantile(0.5) as f64 / 1000.0,
            h.value_at_quantile(0.99) as f64 / 1000.0,
            h.value_at_quantile(0.999) as f64 / 1000.0,
            h.max() as f64 / 1000.0,
        );
    }
    for error in &run.errors {
        println!("  error: {error}");
    }
    println!();
    let cpu = run.cpu_between(warmup, Duration::MAX);
    println!(
        "trends after {} s of warm-up (cores busy on average: node {:.2}, load {:.2}, other \
         processes {:.2}; \"flat\": slope within 3 standard errors of 0, or drift over the run \
         within {:.0} % of the mean)",
        warmup.as_secs(),
        cpu.node,
        cpu.load,
        cpu.other,
        tolerance * 100.0
    );
    println!(
        "{:<16} {:>10} {:>16} {:>10} {:>9} {:>9} {:>8}",
        "series", "mean", "slope/min ± 3σ", "noise σ", "drift %", "thirds %", "verdict"
    );
    // Name, the unit the value is printed in, the value.
    type Series = (&'static str, f64, fn(&Sample) -> f64);
    let series: [Series; 4] = [
        ("RSS MiB", MIB, |s| s.usage.rss_bytes as f64),
        ("open fds", 1.0, |s| s.usage.open_fds as f64),
        ("actors", 1.0, |s| s.actors as f64),
        ("call p99 ms", 1000.0, |s| {
            s.window.steady_calls().value_at_quantile(0.99) as f64
        }),
    ];
    for (name, unit, value) in &series {
        let Some(trend) = run.trend(warmup, value) else {
            println!("{name:<16} too few samples after the warm-up");
            continue;
        };
        print_trend(name, *unit, &trend, tolerance);
    }
    let last = run.samples.last().map_or(Duration::ZERO, |s| s.at);
    let minute = Duration::from_secs(60);
    if last >= warmup + minute * 2 {
        let first = run.total_between(warmup, warmup + minute).steady_calls();
        let final_minute = run.total_between(last - minute, last).steady_calls();
        let shares = |cpu: load::CpuShares| {
            format!(
                "cores busy: node {:.2}, load {:.2}, other {:.2}",
                cpu.node, cpu.load, cpu.other
            )
        };
        println!(
            "call p99: first minute after warm-up {:.2} ms (median of its windows {:.2} ms; {}), \
             last minute {:.2} ms (median {:.2} ms; {})",
            first.value_at_quantile(0.99) as f64 / 1000.0,
            run.median_window_p99(warmup, warmup + minute) as f64 / 1000.0,
            shares(run.cpu_between(warmup, warmup + minute)),
            final_minute.value_at_quantile(0.99) as f64 / 1000.0,
            run.median_window_p99(last - minute, last) as f64 / 1000.0,
            shares(run.cpu_between(last - minute, last)),
        );
    }
}

fn print_trend(name: &str, unit: f64, trend: &Trend, tolerance: f64) {
    println!(
        "{:<16} {:>10.2} {:>16} {:>10.2} {:>9.2} {:>9.2} {:>8}",
        name,
        trend.mean / unit,
        format!(
            "{:+.3} ± {:.3}",
            trend.slope_per_minute / unit,
            3.0 * trend.slope_error / unit
        ),
        trend.noise / unit,
        trend.drift * 100.0,
        trend.thirds_change * 100.0,
        match (trend.is_flat(tolerance), trend.slope_per_minute > 0.0) {
            (true, _) => "flat",
            (false, true) => "RISING",
            (false, false) => "falling",
        },
    );
}
