//! Connect/close cycles on `alknet/call`, and the check that they leave
//! `admin/tree` exact.
//!
//! A cycle dials the node (QUIC or TCP+TLS), makes one `diag/echo` call with
//! frames written by hand (or none: a bare handshake) and closes. QUIC cycles
//! share one client endpoint, which stays up so every `CONNECTION_CLOSE` goes
//! out. Afterwards the tree must show exactly the connections still open:
//! [`Held`] connections, each recognisable by its request count, and the
//! admin session that reads the tree.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use alknet_call::CallClient;
use alknet_call::client::{ClientOptions, Transport};
use alknet_call::codec::{DEFAULT_MAX_FRAME, FrameDecoder, encode_frame};
use alknet_call::envelope::{CallRequest, Event, EventEnvelope};
use alknet_core::Alpn;
use alknet_core::tls::{self, ServerVerification};
use alknet_supervisors::{ActorKind, TreeNode};
use anyhow::Context;
use futures::StreamExt;
use hdrhistogram::Histogram;
use serde_json::json;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};

use crate::support::TlsDialer;

/// How long one cycle may take before it counts as failed.
const CYCLE_DEADLINE: Duration = Duration::from_secs(10);

/// Dials `alknet/call` over either transport, ready for many cycles.
pub struct Cycler {
    addr: SocketAddr,
    endpoint: quinn::Endpoint,
    quic: quinn::ClientConfig,
    tcp: TlsDialer,
}

impl Cycler {
    /// A cycler for the node at `addr`.
    pub fn new(addr: SocketAddr) -> anyhow::Result<Self> {
        let alpn = [Alpn::new(alknet_call::ALPN)];
        Ok(Self {
            addr,
            endpoint: quinn::Endpoint::client("127.0.0.1:0".parse()?)?,
            quic: tls::quic_client_config(ServerVerification::Insecure, None, &alpn)?,
            tcp: TlsDialer::new(alknet_call::ALPN)?,
        })
    }

    /// One cycle: connect, one call unless `bare`, close. Returns its time.
    pub async fn cycle(&self, transport: Transport, bare: bool) -> anyhow::Result<Duration> {
        let started = Instant::now();
        tokio::time::timeout(CYCLE_DEADLINE, async {
            match transport {
                Transport::Quic => {
                    let connection = self
                        .endpoint
                        .connect_with(self.quic.clone(), self.addr, "localhost")?
                        .await?;
                    if !bare {
                        let (mut send, mut recv) = connection.open_bi().await?;
                        one_call(&mut send, &mut recv).await?;
                    }
                    connection.close(alknet_core::close::NO_ERROR.into(), b"cycle done");
                }
                Transport::Tcp => {
                    let stream = self.tcp.connect(self.addr).await?;
                    if !bare {
                        let (mut recv, mut send) = tokio::io::split(stream);
                        one_call(&mut send, &mut recv).await?;
                    }
                    // Dropped without close_notify: for the call protocol a
                    // TLS close_notify ends only the client's half (§5.3).
                }
            }
            anyhow::Ok(())
        })
        .await
        .context("cycle timed out")??;
        Ok(started.elapsed())
    }

    /// Waits until every QUIC connection it closed has told the node.
    pub async fn finish(&self) {
        let _ = tokio::time::timeout(Duration::from_secs(5), self.endpoint.wait_idle()).await;
    }
}

/// Writes one `diag/echo` request and reads its reply.
async fn one_call(
    send: &mut (impl AsyncWrite + Unpin),
    recv: &mut (impl AsyncRead + Unpin),
) -> anyhow::Result<()> {
    let input = json!({"cycle": true});
    let request = EventEnvelope::requested("1", &CallRequest::new("diag/echo", input.clone()));
    send.write_all(&encode_frame(&request, DEFAULT_MAX_FRAME)?)
        .await?;
    send.flush().await?;
    let mut decoder = FrameDecoder::new(DEFAULT_MAX_FRAME);
    let mut buffer = [0u8; 4096];
    let reply = loop {
        if let Some(envelope) = decoder.next_envelope()? {
            break envelope;
        }
        let read = recv.read(&mut buffer).await?;
        anyhow::ensure!(read > 0, "the node closed before replying");
        decoder.push(&buffer[..read]);
    };
    match reply.event()? {
        Event::Responded(output) if output == input => Ok(()),
        other => anyhow::bail!("unexpected reply {other:?}"),
    }
}

/// What a run of cycles did.
pub struct CycleRun {
    /// Cycles that completed.
    pub completed: u64,
    /// Cycles that failed, with the first few reasons.
    pub failed: u64,
    /// The first few failures.
    pub errors: Vec<String>,
    /// Time per completed cycle, µs.
    pub latency: Histogram<u64>,
    /// Wall time of the whole run.
    pub elapsed: Duration,
}

/// `count` cycles, `concurrency` at a time, alternating QUIC and TCP+TLS;
/// every `bare_every`-th cycle (0: none) is a bare handshake.
pub async fn run(
    addr: SocketAddr,
    count: u64,
    concurrency: usize,
    bare_every: u64,
) -> anyhow::Result<CycleRun> {
    let cycler = Arc::new(Cycler::new(addr)?);
    let started = Instant::now();
    let mut outcomes = futures::stream::iter(0..count)
        .map(|i| {
            let cycler = cycler.clone();
            async move {
                let transport = if i % 2 == 0 {
                    Transport::Quic
                } else {
                    Transport::Tcp
                };
                let bare = bare_every > 0 && i % bare_every == bare_every - 1;
                cycler.cycle(transport, bare).await
            }
        })
        .buffer_unordered(concurrency.max(1));
    let mut run = CycleRun {
        completed: 0,
        failed: 0,
        errors: Vec::new(),
        latency: crate::support::histogram()?,
        elapsed: Duration::ZERO,
    };
    while let Some(outcome) = outcomes.next().await {
        match outcome {
            Ok(took) => {
                run.completed += 1;
                run.latency.record(took.as_micros() as u64)?;
            }
            Err(error) => {
                run.failed += 1;
                if run.errors.len() < 10 {
                    run.errors.push(format!("{error:#}"));
                }
            }
        }
    }
    cycler.finish().await;
    run.elapsed = started.elapsed();
    Ok(run)
}

/// Call sessions held open across the cycles, alternating QUIC and TCP+TLS.
/// Session `i` has made exactly `i + 2` calls when the tree is checked (a
/// cycle's connection makes at most one), which is how the check tells each
/// one apart from anything a cycle might have left behind.
pub struct Held {
    sessions: Vec<CallClient>,
}

impl Held {
    /// Opens `count` sessions; session `i` makes `i + 1` calls now.
    pub async fn open(addr: SocketAddr, count: usize) -> anyhow::Result<Self> {
        let mut sessions = Vec::with_capacity(count);
        for i in 0..count {
            let transport = if i % 2 == 0 {
                Transport::Quic
            } else {
                Transport::Tcp
            };
            let options = ClientOptions {
                transport,
                ..ClientOptions::default()
            };
            let session = CallClient::connect(addr, options).await?;
            for _ in 0..=i {
                session.call("diag/echo", json!({"held": i})).await?;
            }
            sessions.push(session);
        }
        Ok(Self { sessions })
    }

    /// Proves each session still open with its last call (the `+ 2`).
    pub async fn prove_open(&self) -> anyhow::Result<()> {
        for (i, session) in self.sessions.iter().enumerate() {
            session
                .call("diag/echo", json!({"held": i}))
                .await
                .with_context(|| format!("held session {i} is gone"))?;
        }
        Ok(())
    }

    /// Why `tree` is not exactly the held sessions plus one admin session
    /// (the only connection with an identity) under `proto/alknet/call`,
    /// with no other connection or session anywhere; `None` when it is.
    pub fn mismatch(&self, tree: &TreeNode) -> Option<String> {
        let mut call_connections = Vec::new();
        let mut strays = Vec::new();
        collect_connections(tree, None, &mut call_connections, &mut strays);
        let mut problems = strays;
        let (admin, anonymous): (Vec<&TreeNode>, Vec<&TreeNode>) =
            call_connections.into_iter().partition(|node| {
                node.connection
                    .as_ref()
                    .is_some_and(|c| c.identity.is_some())
            });
        if admin.len() != 1 {
            problems.push(format!(
                "{} connections with an identity, expected 1 (the admin session)",
                admin.len()
            ));
        }
        let mut requests: Vec<u64> = anonymous
            .iter()
            .filter_map(|node| node.connection.as_ref().map(|c| c.requests))
            .collect();
        requests.sort_unstable();
        let expected: Vec<u64> = (2..self.sessions.len() as u64 + 2).collect();
        if requests != expected {
            problems.push(format!(
                "anonymous call connections' request counts {requests:?}, expected {expected:?}"
            ));
        }
        (!problems.is_empty()).then(|| problems.join("; "))
    }

    /// Sessions held.
    pub fn len(&self) -> usize {
        self.sessions.len()
    }

    /// Whether none are held.
    pub fn is_empty(&self) -> bool {
        self.sessions.is_empty()
    }
}

/// Sorts the tree's connections: those of `proto/alknet/call` into `call`,
/// any other connection or session into `strays` (described).
fn collect_connections<'a>(
    node: &'a TreeNode,
    supervisor: Option<&'a str>,
    call: &mut Vec<&'a TreeNode>,
    strays: &mut Vec<String>,
) {
    match node.kind {
        ActorKind::Connection if supervisor == Some("proto/alknet/call") => call.push(node),
        ActorKind::Connection | ActorKind::Session => strays.push(format!(
            "stray {} {} under {} ({:?})",
            node.name,
            node.id,
            supervisor.unwrap_or("?"),
            node.connection.as_ref().map(|c| &c.remote)
        )),
        _ => {}
    }
    let supervisor = match node.kind {
        ActorKind::Supervisor if node.name.starts_with("proto/") => Some(node.name.as_str()),
        _ => supervisor,
    };
    for child in &node.children {
        collect_connections(child, supervisor, call, strays);
    }
}

/// The live tree, read with `admin/tree` over `admin`.
pub async fn read_tree(admin: &CallClient) -> anyhow::Result<TreeNode> {
    let reply = admin.call("admin/tree", json!({})).await?;
    Ok(serde_json::from_value(reply["root"].clone())?)
}

/// Waits until `admin/tree` is exact for `held` (see [`Held::mismatch`]) and
/// still is a moment later; the last mismatch if `deadline` passes first.
pub async fn wait_until_exact(
    admin: &CallClient,
    held: &Held,
    deadline: Duration,
) -> anyhow::Result<Duration> {
    let started = Instant::now();
    let mut exact_since: Option<Instant> = None;
    loop {
        let tree = read_tree(admin).await?;
        match held.mismatch(&tree) {
            None => {
                let since = *exact_since.get_or_insert_with(Instant::now);
                // Twice in a row, 200 ms apart: a tree that only passes
                // through the right shape is not exact.
                if since.elapsed() >= Duration::from_millis(200) {
                    return Ok(since - started);
                }
            }
            Some(problem) => {
                exact_since = None;
                anyhow::ensure!(
                    started.elapsed() < deadline,
                    "admin/tree is not exact after {deadline:?}: {problem}"
                );
            }
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}
