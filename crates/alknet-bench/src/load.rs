//! The soak's mixed steady load against a running `alknet serve`, and its
//! sampling.
//!
//! Paced workers, each on a connection of its own: `diag/echo` over the call
//! protocol on QUIC and on TCP+TLS, `POST /call` over HTTP/1.1, calls over a
//! WebSocket session at `/alknet/call`, `diag/count` subscriptions one after
//! another, and churn (connect, one call, close). A worker whose request
//! fails counts the failure and reconnects. Every sampling period the sampler
//! reads the node's resident set, open file descriptors and CPU time from
//! `/proc`, counts the actors `admin/tree` shows, and closes the window of
//! latencies. Pacing keeps the load steady and far below what the machine
//! can serve: a soak looks for what accumulates, not for a maximum.

use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use alknet_call::CallClient;
use alknet_call::client::{ClientOptions, Transport};
use anyhow::Context;
use futures::{SinkExt, StreamExt};
use hdrhistogram::Histogram;
use http_body_util::{BodyExt, Full};
use hyper::body::Bytes;
use hyper_util::rt::TokioIo;
use serde_json::{Value, json};
use tokio::task::JoinSet;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::tungstenite::client::IntoClientRequest;
use tokio_util::sync::CancellationToken;

use crate::cycles::{Cycler, read_tree};
use crate::node_process::{Usage, host_busy};
use crate::support::TlsDialer;
use crate::trend::Trend;

/// What the load does, in workers and their paces.
#[derive(Clone, Debug)]
pub struct Shape {
    /// Call-protocol sessions per transport (QUIC and TCP+TLS each).
    pub call_sessions: usize,
    /// HTTP/1.1 connections sending `POST /call`.
    pub http_connections: usize,
    /// WebSocket sessions at `/alknet/call`.
    pub websockets: usize,
    /// `diag/count` subscriptions running at once, each over a session of
    /// its own, one subscription after another.
    pub subscriptions: usize,
    /// Items per subscription.
    pub items_per_subscription: u64,
    /// Requests per second of each call, HTTP and WebSocket worker, and
    /// items per second of each subscription.
    pub rate: u32,
    /// Connect/call/close cycles per second.
    pub churn_rate: u32,
}

impl Default for Shape {
    fn default() -> Self {
        Self {
            call_sessions: 2,
            http_connections: 1,
            websockets: 2,
            subscriptions: 2,
            items_per_subscription: 100,
            rate: 50,
            churn_rate: 10,
        }
    }
}

/// The node under load.
#[derive(Clone, Debug)]
pub struct Target {
    /// Where it listens.
    pub addr: SocketAddr,
    /// Its process, for `/proc`.
    pub pid: u32,
    /// A token with scope `admin` (for `admin/tree`; every worker presents
    /// it too, so the load passes the same checks a deployment's would).
    pub admin_token: String,
}

/// What the workers do, each counted apart.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Kind {
    /// `diag/echo` over the call protocol on QUIC.
    QuicCall,
    /// `diag/echo` over the call protocol on TCP+TLS.
    TcpCall,
    /// `POST /call` over HTTP/1.1.
    HttpCall,
    /// `diag/echo` over a WebSocket session.
    WsCall,
    /// A whole `diag/count` subscription; its latency is the time to its
    /// first item.
    Subscription,
    /// Connect, one call, close.
    Churn,
}

impl Kind {
    /// Every kind, in report order.
    pub const ALL: [Kind; 6] = [
        Kind::QuicCall,
        Kind::TcpCall,
        Kind::HttpCall,
        Kind::WsCall,
        Kind::Subscription,
        Kind::Churn,
    ];

    /// The report's name.
    pub fn label(self) -> &'static str {
        match self {
            Kind::QuicCall => "call over QUIC",
            Kind::TcpCall => "call over TCP+TLS",
            Kind::HttpCall => "HTTP POST /call",
            Kind::WsCall => "WebSocket call",
            Kind::Subscription => "subscription",
            Kind::Churn => "connect+call+close",
        }
    }

    /// Steady request/reply on an open connection: what the p99 drift is
    /// judged on (churn pays handshakes, subscriptions wait for items).
    pub fn is_steady_call(self) -> bool {
        matches!(
            self,
            Kind::QuicCall | Kind::TcpCall | Kind::HttpCall | Kind::WsCall
        )
    }

    fn index(self) -> usize {
        Self::ALL.iter().position(|k| *k == self).unwrap_or(0)
    }
}

/// One kind's count, failures and latencies (µs) over some time.
#[derive(Clone, Debug)]
pub struct Tally {
    /// Completed.
    pub done: u64,
    /// Failed.
    pub failed: u64,
    /// Latencies of the completed, µs.
    pub latency: Histogram<u64>,
}

/// Every kind's tally over some time.
#[derive(Clone, Debug)]
pub struct Window {
    tallies: Vec<Tally>,
}

impl Window {
    /// An empty window.
    pub fn new() -> Self {
        Self {
            tallies: Kind::ALL
                .iter()
                .map(|_| Tally {
                    done: 0,
                    failed: 0,
                    latency: crate::support::histogram().expect("valid bounds"),
                })
                .collect(),
        }
    }

    /// One kind's tally.
    pub fn tally(&self, kind: Kind) -> &Tally {
        &self.tallies[kind.index()]
    }

    /// Adds `other` to this window.
    pub fn add(&mut self, other: &Window) {
        for (mine, theirs) in self.tallies.iter_mut().zip(&other.tallies) {
            mine.done += theirs.done;
            mine.failed += theirs.failed;
            let _ = mine.latency.add(&theirs.latency);
        }
    }

    /// The steady calls' latencies merged.
    pub fn steady_calls(&self) -> Histogram<u64> {
        let mut merged = crate::support::histogram().expect("valid bounds");
        for kind in Kind::ALL.into_iter().filter(|k| k.is_steady_call()) {
            let _ = merged.add(&self.tally(kind).latency);
        }
        merged
    }

    /// Failures of every kind.
    pub fn failures(&self) -> u64 {
        self.tallies.iter().map(|t| t.failed).sum()
    }

    /// Completions of every kind.
    pub fn completions(&self) -> u64 {
        self.tallies.iter().map(|t| t.done).sum()
    }
}

impl Default for Window {
    fn default() -> Self {
        Self::new()
    }
}

/// The node and the load at one sampling moment.
#[derive(Clone, Debug)]
pub struct Sample {
    /// Since the load started.
    pub at: Duration,
    /// The node's resources.
    pub usage: Usage,
    /// CPU time this process (the load) has used so far.
    pub client_cpu: Duration,
    /// CPU time the whole machine has been busy so far, over all cores.
    pub host_busy: Duration,
    /// Actors `admin/tree` shows.
    pub actors: usize,
    /// What the load did since the previous sample.
    pub window: Window,
}

/// A whole soak.
pub struct SoakRun {
    /// In order.
    pub samples: Vec<Sample>,
    /// The first failures' messages.
    pub errors: Vec<String>,
}

impl SoakRun {
    /// Everything the load did, from `from` on.
    pub fn total_since(&self, from: Duration) -> Window {
        self.total_between(from, Duration::MAX)
    }

    /// What the load did in the windows that closed in `(from, to]`.
    pub fn total_between(&self, from: Duration, to: Duration) -> Window {
        let mut total = Window::new();
        for sample in self.samples.iter().filter(|s| s.at > from && s.at <= to) {
            total.add(&sample.window);
        }
        total
    }

    /// The median over the windows that closed in `(from, to]` of each
    /// window's steady-call p99, µs: a drift moves it, a few windows slowed
    /// by the machine's other work do not.
    pub fn median_window_p99(&self, from: Duration, to: Duration) -> u64 {
        let mut p99s: Vec<u64> = self
            .samples
            .iter()
            .filter(|s| s.at > from && s.at <= to)
            .map(|s| s.window.steady_calls().value_at_quantile(0.99))
            .collect();
        p99s.sort_unstable();
        p99s.get(p99s.len() / 2).copied().unwrap_or(0)
    }

    /// The samples taken from `from` on.
    pub fn since(&self, from: Duration) -> impl Iterator<Item = &Sample> {
        self.samples.iter().filter(move |s| s.at >= from)
    }

    /// The trend of `value` over the samples taken from `from` on.
    pub fn trend(&self, from: Duration, value: impl Fn(&Sample) -> f64) -> Option<Trend> {
        let points: Vec<(f64, f64)> = self
            .since(from)
            .map(|s| (s.at.as_secs_f64() / 60.0, value(s)))
            .collect();
        Trend::fit(&points)
    }

    /// Who used the CPU between the first sample taken from `from` on and
    /// the last one taken by `to`.
    pub fn cpu_between(&self, from: Duration, to: Duration) -> CpuShares {
        let mut within = self.samples.iter().filter(|s| s.at >= from && s.at <= to);
        let (Some(first), Some(last)) = (within.next(), within.next_back()) else {
            return CpuShares::default();
        };
        let wall = last.at.saturating_sub(first.at).as_secs_f64();
        if wall <= 0.0 {
            return CpuShares::default();
        }
        let share = |now: Duration, then: Duration| now.saturating_sub(then).as_secs_f64() / wall;
        let node = share(last.usage.cpu, first.usage.cpu);
        let load = share(last.client_cpu, first.client_cpu);
        let host = share(last.host_busy, first.host_busy);
        CpuShares {
            node,
            load,
            other: (host - node - load).max(0.0),
        }
    }
}

/// Cores busy on average (1.0: one core) with the node, with the load, and
/// with everything else on the machine.
#[derive(Clone, Copy, Debug, Default)]
pub struct CpuShares {
    /// The node under load.
    pub node: f64,
    /// This process, generating the load.
    pub load: f64,
    /// Every other process.
    pub other: f64,
}

/// Records what the workers do; the sampler takes its window.
struct Recorder {
    window: Mutex<Window>,
    errors: Mutex<Vec<String>>,
}

impl Recorder {
    fn ok(&self, kind: Kind, took: Duration) {
        let mut window = self.window.lock().expect("window lock");
        let tally = &mut window.tallies[kind.index()];
        tally.done += 1;
        let _ = tally.latency.record(took.as_micros().max(1) as u64);
    }

    fn failed(&self, kind: Kind, error: &anyhow::Error) {
        self.window.lock().expect("window lock").tallies[kind.index()].failed += 1;
        let mut errors = self.errors.lock().expect("errors lock");
        if errors.len() < 20 {
            errors.push(format!("{}: {error:#}", kind.label()));
        }
    }

    fn take(&self) -> Window {
        std::mem::take(&mut *self.window.lock().expect("window lock"))
    }
}

/// Ticks at a steady pace until stopped.
struct Pacer {
    interval: tokio::time::Interval,
    stop: CancellationToken,
}

impl Pacer {
    /// `per_second` ticks a second; the first after `offset`, so workers
    /// of the same pace do not all tick together.
    fn new(per_second: u32, offset: Duration, stop: CancellationToken) -> Self {
        let period = Duration::from_secs(1) / per_second.max(1);
        let mut interval = tokio::time::interval_at(tokio::time::Instant::now() + offset, period);
        interval.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        Self { interval, stop }
    }

    /// The next tick; `false` once stopped.
    async fn tick(&mut self) -> bool {
        tokio::select! {
            () = self.stop.cancelled() => false,
            _ = self.interval.tick() => true,
        }
    }
}

/// The load's workers, running until [`Load::stop`].
pub struct Load {
    recorder: Arc<Recorder>,
    stop: CancellationToken,
    workers: JoinSet<()>,
}

impl Load {
    /// Starts every worker `shape` asks for against `target`.
    pub fn start(target: &Target, shape: &Shape) -> Self {
        let recorder = Arc::new(Recorder {
            window: Mutex::new(Window::new()),
            errors: Mutex::new(Vec::new()),
        });
        let stop = CancellationToken::new();
        let mut workers = JoinSet::new();
        let period = Duration::from_secs(1) / shape.rate.max(1);
        // Workers of one kind tick evenly spread over the period.
        let offset = |i: usize, of: usize| period * i as u32 / of.max(1) as u32;
        let pacer = |i: usize, of: usize| Pacer::new(shape.rate, offset(i, of), stop.clone());
        for i in 0..shape.call_sessions {
            for (transport, kind) in [
                (Transport::Quic, Kind::QuicCall),
                (Transport::Tcp, Kind::TcpCall),
            ] {
                let pacer = pacer(i, shape.call_sessions);
                workers.spawn(call_worker(
                    target.clone(),
                    transport,
                    kind,
                    pacer,
                    recorder.clone(),
                ));
            }
        }
        for i in 0..shape.http_connections {
            let pacer = pacer(i, shape.http_connections);
            workers.spawn(http_worker(target.clone(), pacer, recorder.clone()));
        }
        for i in 0..shape.websockets {
            let pacer = pacer(i, shape.websockets);
            workers.spawn(ws_worker(target.clone(), pacer, recorder.clone()));
        }
        for i in 0..shape.subscriptions {
            let transport = if i % 2 == 0 {
                Transport::Quic
            } else {
                Transport::Tcp
            };
            workers.spawn(subscription_worker(
                target.clone(),
                transport,
                shape.items_per_subscription,
                shape.rate,
                stop.clone(),
                recorder.clone(),
            ));
        }
        if shape.churn_rate > 0 {
            let pacer = Pacer::new(shape.churn_rate, Duration::ZERO, stop.clone());
            workers.spawn(churn_worker(target.addr, pacer, recorder.clone()));
        }
        Self {
            recorder,
            stop,
            workers,
        }
    }

    /// What the load did since the previous call (or its start).
    pub fn take(&self) -> Window {
        self.recorder.take()
    }

    /// The first failures' messages so far.
    pub fn errors(&self) -> Vec<String> {
        self.recorder.errors.lock().expect("errors lock").clone()
    }

    /// Stops every worker and waits until each has closed its connection;
    /// returns what the load did since the last [`Load::take`].
    pub async fn stop(mut self) -> anyhow::Result<Window> {
        self.stop.cancel();
        while let Some(joined) = self.workers.join_next().await {
            joined.context("a load worker panicked")?;
        }
        Ok(self.take())
    }
}

/// Runs the load for `duration`, sampling every `sample_every`, calling
/// `progress` with each sample; then stops every worker and waits until
/// their connections are closed.
pub async fn run(
    target: &Target,
    shape: &Shape,
    duration: Duration,
    sample_every: Duration,
    mut progress: impl FnMut(&Sample),
) -> anyhow::Result<SoakRun> {
    let admin = connect_admin(target).await?;
    let load = Load::start(target, shape);
    let started = Instant::now();
    let mut samples = Vec::new();
    let mut next = tokio::time::Instant::from_std(started) + sample_every;
    let sampled = async {
        while started.elapsed() + sample_every / 2 < duration {
            tokio::time::sleep_until(next).await;
            next += sample_every;
            let usage = Usage::of(target.pid).context("the node's /proc entry")?;
            let client_cpu = Usage::of(std::process::id())?.cpu;
            let host_busy = host_busy()?;
            let actors = read_tree(&admin).await.context("admin/tree")?.count();
            let sample = Sample {
                at: started.elapsed(),
                usage,
                client_cpu,
                host_busy,
                actors,
                window: load.take(),
            };
            progress(&sample);
            samples.push(sample);
        }
        anyhow::Ok(())
    }
    .await;
    let errors = load.errors();
    load.stop().await?;
    sampled?;
    Ok(SoakRun { samples, errors })
}

/// A call session presenting the admin token that has read the tree once:
/// a session that sends nothing within the node's `first_request_timeout`
/// is closed, and an admin session may wait long before its next question.
pub async fn connect_admin(target: &Target) -> anyhow::Result<CallClient> {
    let admin = connect_call(target, Transport::Quic).await?;
    read_tree(&admin).await.context("admin/tree")?;
    Ok(admin)
}

/// A call session presenting the admin token.
pub async fn connect_call(target: &Target, transport: Transport) -> anyhow::Result<CallClient> {
    let options = ClientOptions {
        transport,
        token: Some(target.admin_token.clone()),
        ..ClientOptions::default()
    };
    Ok(CallClient::connect(target.addr, options).await?)
}

async fn call_worker(
    target: Target,
    transport: Transport,
    kind: Kind,
    mut pacer: Pacer,
    recorder: Arc<Recorder>,
) {
    let mut session = None;
    let mut n = 0u64;
    while pacer.tick().await {
        n += 1;
        let started = Instant::now();
        let outcome = async {
            if session.is_none() {
                session = Some(connect_call(&target, transport).await?);
            }
            let input = json!({"n": n, "text": "soak"});
            let output = session
                .as_ref()
                .expect("connected above")
                .call("diag/echo", input.clone())
                .await?;
            anyhow::ensure!(output == input, "echoed {output}");
            anyhow::Ok(())
        }
        .await;
        match outcome {
            Ok(()) => recorder.ok(kind, started.elapsed()),
            Err(error) => {
                recorder.failed(kind, &error);
                session = None;
            }
        }
    }
}

type HttpSender = hyper::client::conn::http1::SendRequest<Full<Bytes>>;

async fn http_connect(dialer: &TlsDialer, addr: SocketAddr) -> anyhow::Result<HttpSender> {
    let tls = dialer.connect(addr).await?;
    let (sender, connection) = hyper::client::conn::http1::handshake(TokioIo::new(tls)).await?;
    tokio::spawn(connection);
    Ok(sender)
}

async fn http_worker(target: Target, mut pacer: Pacer, recorder: Arc<Recorder>) {
    let Ok(dialer) = TlsDialer::new(alknet_http::ALPN_HTTP_1_1) else {
        return;
    };
    let mut sender: Option<HttpSender> = None;
    let mut n = 0u64;
    while pacer.tick().await {
        n += 1;
        let started = Instant::now();
        let outcome = async {
            if sender.is_none() {
                sender = Some(http_connect(&dialer, target.addr).await?);
            }
            let input = json!({"n": n, "text": "soak"});
            let body = json!({"operation": "diag/echo", "input": input}).to_string();
            let request = hyper::Request::post("/call")
                .header("host", "localhost")
                .header("content-type", "application/json")
                .header("authorization", format!("Bearer {}", target.admin_token))
                .body(Full::new(Bytes::from(body)))?;
            let sending = sender.as_mut().expect("connected above");
            sending.ready().await?;
            let response = sending.send_request(request).await?;
            let status = response.status();
            let body = response.into_body().collect().await?.to_bytes();
            anyhow::ensure!(
                status == 200,
                "status {status}: {}",
                String::from_utf8_lossy(&body)
            );
            let reply: Value = serde_json::from_slice(&body)?;
            anyhow::ensure!(reply["output"] == input, "replied {reply}");
            anyhow::Ok(())
        }
        .await;
        match outcome {
            Ok(()) => recorder.ok(Kind::HttpCall, started.elapsed()),
            Err(error) => {
                recorder.failed(Kind::HttpCall, &error);
                sender = None;
            }
        }
    }
}

trait Io: tokio::io::AsyncRead + tokio::io::AsyncWrite + Send + Unpin {}
impl<T: tokio::io::AsyncRead + tokio::io::AsyncWrite + Send + Unpin> Io for T {}
type Socket = tokio_tungstenite::WebSocketStream<Box<dyn Io>>;

async fn ws_connect(dialer: &TlsDialer, target: &Target) -> anyhow::Result<Socket> {
    let tls = dialer.connect(target.addr).await?;
    let mut request =
        format!("wss://localhost:{}/alknet/call", target.addr.port()).into_client_request()?;
    request.headers_mut().insert(
        "authorization",
        format!("Bearer {}", target.admin_token).parse()?,
    );
    let stream: Box<dyn Io> = Box::new(tls);
    let (socket, _) = tokio_tungstenite::client_async(request, stream).await?;
    Ok(socket)
}

async fn ws_call(socket: &mut Socket, id: u64) -> anyhow::Result<()> {
    let input = json!({"n": id, "text": "soak"});
    let envelope = json!({
        "type": "call.requested",
        "id": id.to_string(),
        "payload": {"operationId": "diag/echo", "input": input}
    });
    socket
        .send(Message::Binary(serde_json::to_vec(&envelope)?.into()))
        .await?;
    let reply = loop {
        match socket
            .next()
            .await
            .context("the node closed the socket")??
        {
            Message::Binary(bytes) => break bytes,
            Message::Close(frame) => anyhow::bail!("the node closed the socket: {frame:?}"),
            _ => continue,
        }
    };
    let reply: Value = serde_json::from_slice(&reply)?;
    anyhow::ensure!(
        reply["id"].as_str() == Some(&*id.to_string()) && reply["payload"]["output"] == input,
        "replied {reply}"
    );
    Ok(())
}

async fn ws_worker(target: Target, mut pacer: Pacer, recorder: Arc<Recorder>) {
    let Ok(dialer) = TlsDialer::new(alknet_http::ALPN_HTTP_1_1) else {
        return;
    };
    let mut socket: Option<Socket> = None;
    let mut n = 0u64;
    while pacer.tick().await {
        n += 1;
        let started = Instant::now();
        let outcome = async {
            if socket.is_none() {
                socket = Some(ws_connect(&dialer, &target).await?);
            }
            ws_call(socket.as_mut().expect("connected above"), n).await
        }
        .await;
        match outcome {
            Ok(()) => recorder.ok(Kind::WsCall, started.elapsed()),
            Err(error) => {
                recorder.failed(Kind::WsCall, &error);
                socket = None;
            }
        }
    }
    if let Some(mut socket) = socket {
        let _ = socket.close(None).await;
        // Read to the node's close frame, so the close completes.
        let _ = tokio::time::timeout(Duration::from_secs(5), async {
            while let Some(Ok(_)) = socket.next().await {}
        })
        .await;
    }
}

/// One subscription after another, each `items` long at `rate` items a
/// second; each must deliver `{"i": 0}` … `{"i": items-1}` in order.
async fn subscription_worker(
    target: Target,
    transport: Transport,
    items: u64,
    rate: u32,
    stop: CancellationToken,
    recorder: Arc<Recorder>,
) {
    let interval_ms = 1000 / u64::from(rate.max(1));
    let mut session = None;
    while !stop.is_cancelled() {
        let started = Instant::now();
        let outcome = async {
            if session.is_none() {
                session = Some(connect_call(&target, transport).await?);
            }
            let client = session.as_ref().expect("connected above");
            let mut items_stream = client
                .subscribe(
                    "diag/count",
                    json!({"n": items, "interval_ms": interval_ms}),
                )
                .await?;
            let mut first_item = None;
            let mut expected = 0u64;
            // Late by more than a few seconds is a failure, not a pause.
            let item_deadline = Duration::from_millis(interval_ms) + Duration::from_secs(5);
            loop {
                let next = tokio::select! {
                    () = stop.cancelled() => return Ok(None),
                    next = tokio::time::timeout(item_deadline, items_stream.next()) => next,
                };
                match next.context("no item in time")? {
                    Some(item) => {
                        let item = item?;
                        anyhow::ensure!(item["i"] == expected, "item {item} out of order");
                        first_item.get_or_insert_with(|| started.elapsed());
                        expected += 1;
                    }
                    None => break,
                }
            }
            anyhow::ensure!(expected == items, "{expected} items of {items}");
            anyhow::Ok(first_item)
        }
        .await;
        match outcome {
            Ok(Some(first_item)) => recorder.ok(Kind::Subscription, first_item),
            Ok(None) => {}
            Err(error) => {
                recorder.failed(Kind::Subscription, &error);
                session = None;
                // Do not spin on a node that refuses.
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
        }
    }
}

async fn churn_worker(addr: SocketAddr, mut pacer: Pacer, recorder: Arc<Recorder>) {
    let cycler = match Cycler::new(addr) {
        Ok(cycler) => cycler,
        Err(error) => {
            recorder.failed(Kind::Churn, &error);
            return;
        }
    };
    let mut quic = true;
    while pacer.tick().await {
        let transport = if quic {
            Transport::Quic
        } else {
            Transport::Tcp
        };
        quic = !quic;
        match cycler.cycle(transport, false).await {
            Ok(took) => recorder.ok(Kind::Churn, took),
            Err(error) => recorder.failed(Kind::Churn, &error),
        }
    }
    cycler.finish().await;
}
