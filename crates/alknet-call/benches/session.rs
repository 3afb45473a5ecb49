//! What the call protocol costs per request, without sockets: reading one
//! envelope, and one whole `diag/echo` request through a message session —
//! the envelope read, the session's book, dispatch and the reply's JSON — as
//! a WebSocket's task applies it. The I/O around it is measured end to end by
//! `alknet-bench ws`; this isolates what is ours.
//!
//! `cargo bench -p alknet-call --bench session`

use std::hint::black_box;
use std::sync::Arc;

use alknet_call::messages::MessageFeed;
use alknet_call::{EventEnvelope, Registry, SessionConfig, SessionLimits, builtins};
use alknet_core::{Alpn, Connection, Identity, NoIdentities};
use criterion::{Criterion, criterion_group, criterion_main};

const REQUEST: &[u8] =
    br#"{"type":"call.requested","id":"1234","payload":{"operationId":"/diag/echo","input":{"n":1,"text":"ping"}}}"#;

fn envelope(c: &mut Criterion) {
    c.bench_function("envelope/parse a call.requested", |b| {
        b.iter(|| black_box(EventEnvelope::parse(black_box(REQUEST)).unwrap()))
    });
}

fn session(c: &mut Criterion) {
    receive_echo(c, "session/receive a diag/echo request (answered at once)");
}

/// The same, with a Prometheus recorder behind the `metrics` facade, as
/// `alknet serve` installs it when `[metrics] listen` is set: what counting
/// every call costs. Runs last, as the recorder stays installed.
fn session_with_metrics(c: &mut Criterion) {
    let _handle = metrics_exporter_prometheus::PrometheusBuilder::new()
        .install_recorder()
        .unwrap();
    alknet_call::call_metrics::enable();
    receive_echo(
        c,
        "session/receive a diag/echo request (answered at once, metrics recorded)",
    );
}

fn receive_echo(c: &mut Criterion, name: &str) {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()
        .unwrap();
    let registry = Registry::new();
    builtins::register_diagnostics(&registry).unwrap();
    let config = SessionConfig {
        registry: Arc::new(registry),
        identities: Arc::new(NoIdentities),
        limits: SessionLimits::default(),
    };
    let connection = Connection::from_stream(
        tokio::io::duplex(64).0,
        Alpn::new("http/1.1"),
        "127.0.0.1:9".parse().unwrap(),
        None,
    );
    let info = Arc::new(connection.info().carried());
    info.set_identity(Some(Identity::new("bench", ["bench"])));
    let (session, _outbound) = runtime
        .block_on(MessageFeed::start(
            config,
            info,
            None,
            tracing::Span::none(),
        ))
        .unwrap();
    let _entered = runtime.enter();
    c.bench_function(name, |b| {
        b.iter(|| {
            let reply = session.receive(black_box(REQUEST)).unwrap();
            black_box(reply.expect("diag/echo answers at once"))
        })
    });
    drop(session);
}

criterion_group!(benches, envelope, session, session_with_metrics);
criterion_main!(benches);
