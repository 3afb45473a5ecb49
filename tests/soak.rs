//! The soak in CI (issue #14): two minutes of mixed steady load on the real
//! `alknet serve` — calls over QUIC and TCP+TLS, HTTP `POST /call`,
//! WebSocket calls, `diag/count` subscriptions and connection churn, all
//! paced (`alknet_bench::load`) — must fail nothing and leave the node's RSS,
//! open fds and actor count flat and its p99 where it was; then 5,000
//! connect/close cycles must leave `admin/tree` showing exactly the
//! connections still open. `alknet-bench soak` runs the same for longer and
//! prints the figures (docs/benchmarks.md).

use std::time::Duration;

use alknet_bench::cycles::{self, Held};
use alknet_bench::load::{self, Kind, Sample, Shape, SoakRun, Target};
use alknet_e2e::process::NodeProcess;
use alknet_e2e::runtime;

const LOAD: Duration = Duration::from_secs(120);
const SAMPLE_EVERY: Duration = Duration::from_secs(5);
/// Allocator arenas, TLS session caches and the runtime's pools grow to
/// their working size first; trends are judged after this.
const WARMUP: Duration = Duration::from_secs(30);
const CYCLES: u64 = 5_000;
const MIB: u64 = 1024 * 1024;

/// Mean of the last third of the samples after the warm-up, minus the mean
/// of the first third.
fn thirds_change(run: &SoakRun, value: impl Fn(&Sample) -> f64) -> (f64, f64) {
    let values: Vec<f64> = run.since(WARMUP).map(value).collect();
    let third = (values.len() / 3).max(1);
    let mean = |slice: &[f64]| slice.iter().sum::<f64>() / slice.len() as f64;
    let first = mean(&values[..third]);
    (first, mean(&values[values.len() - third..]) - first)
}

/// `value` after the warm-up neither rises nor falls by more than
/// `fraction` of its level or `slack`, whichever is larger: between the
/// first and last thirds, and along its least-squares line unless that
/// line's slope is within noise.
fn assert_flat(
    run: &SoakRun,
    name: &str,
    fraction: f64,
    slack: f64,
    value: impl Fn(&Sample) -> f64,
) {
    let (level, change) = thirds_change(run, &value);
    let bound = (level * fraction).max(slack);
    let trend = run.trend(WARMUP, &value).expect("enough samples");
    eprintln!(
        "{name}: level {level:.1}, first→last third {change:+.1} (bound ±{bound:.1}); slope \
         {:+.2}/min ± {:.2} (3σ), noise {:.2}",
        trend.slope_per_minute,
        3.0 * trend.slope_error,
        trend.noise
    );
    assert!(
        change.abs() <= bound,
        "{name} moved by {change:+.1} (bound ±{bound:.1})"
    );
    let predicted = trend.slope_per_minute * (LOAD - WARMUP).as_secs_f64() / 60.0;
    assert!(
        trend.slope_is_noise() || predicted.abs() <= bound,
        "{name}'s trend predicts {predicted:+.1} over the run (bound ±{bound:.1}): {trend:?}"
    );
}

#[test]
fn two_minutes_of_mixed_load_stay_flat_and_connect_close_cycles_leave_the_tree_exact() {
    let node = NodeProcess::start("[diagnostics]\ncall_ops = true\n");
    let target = Target {
        addr: node.addr,
        pid: node.pid(),
        admin_token: node.admin_token(),
    };
    let shape = Shape::default();
    runtime().block_on(async {
        let run = load::run(&target, &shape, LOAD, SAMPLE_EVERY, |sample| {
            eprintln!(
                "{:>4.0} s: RSS {:.1} MiB, {} fds, {} actors, {} done, {} failed, p99 {} µs",
                sample.at.as_secs_f64(),
                sample.usage.rss_bytes as f64 / MIB as f64,
                sample.usage.open_fds,
                sample.actors,
                sample.window.completions(),
                sample.window.failures(),
                sample.window.steady_calls().value_at_quantile(0.99)
            );
        })
        .await
        .expect("the load runs");

        // Nothing failed, and every kind of load really ran.
        let total = run.total_since(Duration::ZERO);
        assert_eq!(total.failures(), 0, "failures: {:#?}", run.errors);
        let seconds = LOAD.as_secs_f64();
        let rate = f64::from(shape.rate);
        for (kind, workers, per_second) in [
            (Kind::QuicCall, shape.call_sessions, rate),
            (Kind::TcpCall, shape.call_sessions, rate),
            (Kind::HttpCall, shape.http_connections, rate),
            (Kind::WsCall, shape.websockets, rate),
            (
                Kind::Subscription,
                shape.subscriptions,
                rate / shape.items_per_subscription as f64,
            ),
            (Kind::Churn, 1, f64::from(shape.churn_rate)),
        ] {
            let nominal = workers as f64 * per_second * seconds;
            let done = total.tally(kind).done as f64;
            // Pacing only slows down, under a loaded machine; a quarter of
            // the nominal count proves the kind ran all along.
            assert!(
                done >= nominal / 4.0,
                "{}: {done} of a nominal {nominal}",
                kind.label()
            );
        }

        // The node's footprint is flat after the warm-up.
        assert_flat(&run, "RSS MiB", 0.10, 2.0, |s| {
            s.usage.rss_bytes as f64 / MIB as f64
        });
        assert_flat(&run, "open fds", 0.10, 4.0, |s| s.usage.open_fds as f64);
        assert_flat(&run, "actors", 0.10, 3.0, |s| s.actors as f64);

        // p99 does not drift: the median of the 5 s windows' p99s over the
        // last 45 s is at most twice that over the first 45 s after the
        // warm-up, plus 5 ms for a 2-core machine shared by client and node.
        // (A median, so that a few windows slowed by another process on the
        // machine do not pass for a drift.)
        let end = run.samples.last().expect("samples").at;
        let span = (end - WARMUP) / 2;
        let first = run.median_window_p99(WARMUP, WARMUP + span);
        let last = run.median_window_p99(end - span, end);
        let merged = |from, to| {
            run.total_between(from, to)
                .steady_calls()
                .value_at_quantile(0.99)
        };
        eprintln!(
            "steady calls' p99, median of windows (merged): first {span:?} {first} µs ({} µs), \
             last {span:?} {last} µs ({} µs)",
            merged(WARMUP, WARMUP + span),
            merged(end - span, end)
        );
        assert!(
            last <= 2 * first + 5_000,
            "p99 drifted from {first} µs to {last} µs"
        );

        // Connect/close cycles leave the tree exact.
        let admin = load::connect_admin(&target).await.expect("admin session");
        let held = Held::open(target.addr, 6).await.expect("held sessions");
        let cycled = cycles::run(target.addr, CYCLES, 8, 10)
            .await
            .expect("cycles run");
        eprintln!(
            "{} cycles in {:?}, p99 {} µs",
            cycled.completed,
            cycled.elapsed,
            cycled.latency.value_at_quantile(0.99)
        );
        assert_eq!(cycled.failed, 0, "cycle failures: {:#?}", cycled.errors);
        assert_eq!(cycled.completed, CYCLES);
        held.prove_open().await.expect("held sessions stay open");
        let waited = cycles::wait_until_exact(&admin, &held, Duration::from_secs(30))
            .await
            .expect("admin/tree shows exactly the open connections");
        eprintln!("admin/tree exact {waited:?} after the last cycle");
    });
}
