//! Attacks on the listener and the process, mounted on the real `alknet serve`
//! binary from loopback, each asserting the bound that keeps the node serving
//! (issue #14, defects 4–6): idle TCP sockets and unanswered QUIC Initials do
//! not lock legitimate clients out, input anyone can send does not grow the
//! log by more than 20 KB a minute, and memory taken at a peak goes back to
//! the system.

use std::net::{SocketAddr, UdpSocket};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use alknet_call::codec::{DEFAULT_MAX_FRAME, FrameDecoder, encode_frame};
use alknet_call::envelope::{CallRequest, Event, EventEnvelope};
use alknet_core::Alpn;
use alknet_core::tls::{self, ServerVerification};
use alknet_e2e::client::{quic_connect, quic_echo, quic_endpoint, tls_connect, tls_echo};
use alknet_e2e::eventually;
use alknet_e2e::process::NodeProcess;
use serde_json::json;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

/// Pending handshakes per listener in the flood tests: small, so that the
/// floods fill it in a fraction of a second.
const PENDING: usize = 64;
/// Legitimate clients counted during a flood, and how many must be served.
const CLIENTS: usize = 40;
const SERVED_SHARE: f64 = 0.95;
/// Time one legitimate client gets to connect and get its echo back.
const CLIENT_DEADLINE: Duration = Duration::from_secs(5);

fn flood_config() -> String {
    format!("[limits]\nmax_pending_handshakes = {PENDING}\n[diagnostics]\necho = true\n")
}

/// Sets `stop` when dropped, so a flood ends even when an assertion fails.
struct StopOnDrop(Arc<AtomicBool>);

impl Drop for StopOnDrop {
    fn drop(&mut self) {
        self.0.store(true, Ordering::Release);
    }
}

/// Runs `client` `CLIENTS` times, one every 25 ms while a flood goes on, and
/// counts the clients served within [`CLIENT_DEADLINE`].
async fn count_served<F, Fut>(client: F) -> usize
where
    F: Fn(u32) -> Fut,
    Fut: Future<Output = bool> + Send + 'static,
{
    let mut ticks = tokio::time::interval(Duration::from_millis(25));
    let mut attempts = Vec::new();
    for seed in 0..CLIENTS as u32 {
        ticks.tick().await;
        let attempt = client(seed);
        attempts.push(tokio::spawn(async move {
            tokio::time::timeout(CLIENT_DEADLINE, attempt)
                .await
                .unwrap_or(false)
        }));
    }
    let mut served = 0;
    for attempt in attempts {
        served += usize::from(attempt.await.unwrap());
    }
    served
}

fn assert_served(served: usize, flood: &str) {
    let needed = (CLIENTS as f64 * SERVED_SHARE).ceil() as usize;
    eprintln!("{flood}: {served} of {CLIENTS} legitimate clients served");
    assert!(
        served >= needed,
        "{flood}: only {served} of {CLIENTS} legitimate clients served (at least {needed} must be)"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn idle_tcp_sockets_do_not_lock_tls_clients_out() {
    let node = NodeProcess::start(&flood_config());
    let addr = node.addr;
    // Fill the table three times over with sockets that never say anything...
    let mut idle = Vec::new();
    for _ in 0..3 * PENDING {
        idle.push(TcpStream::connect(addr).await.expect("connect"));
    }
    // ...and keep opening more, 200 a second, while real clients connect
    // (at a steady rate: a test process paused by a busy machine does not
    // catch up in one burst).
    let stop = Arc::new(AtomicBool::new(false));
    let _stop = StopOnDrop(stop.clone());
    let flood = tokio::spawn({
        let stop = stop.clone();
        async move {
            let mut ticks = tokio::time::interval(Duration::from_millis(5));
            ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            while !stop.load(Ordering::Acquire) {
                ticks.tick().await;
                if let Ok(socket) = TcpStream::connect(addr).await {
                    idle.push(socket);
                }
            }
            idle.len()
        }
    });
    let served = count_served(|seed| async move {
        let tls = match tls_connect(addr, &["alknet/echo"]).await {
            Ok(tls) => tls,
            Err(error) => {
                eprintln!("client {seed}: {error}");
                return false;
            }
        };
        let payload = seed.to_be_bytes();
        let echoed = tls_echo(tls, &payload).await;
        if let Err(error) = &echoed {
            eprintln!("client {seed}: {error}");
        }
        echoed.is_ok_and(|echoed| echoed == payload)
    })
    .await;
    stop.store(true, Ordering::Release);
    let idle_sockets = flood.await.unwrap();
    eprintln!("idle sockets opened: {idle_sockets}");
    assert_served(served, "idle TCP sockets");
    let log = node.log().join("\n");
    assert!(
        log.contains("pending handshakes at the cap"),
        "the pressure is logged: {log}"
    );
}

/// A client's first QUIC datagram (an Initial, padded to 1,200 bytes) for a
/// new connection to `addr`, built without any socket.
fn initial_datagram(endpoint: &mut quinn_proto::Endpoint, addr: SocketAddr) -> Vec<u8> {
    let config = tls::quic_client_config(
        ServerVerification::Insecure,
        None,
        &[Alpn::new("alknet/echo")],
    )
    .expect("client config");
    let now = Instant::now();
    let (_, mut connection) = endpoint
        .connect(now, config, addr, "localhost")
        .expect("connect parameters are valid");
    let mut datagram = Vec::new();
    let transmit = connection
        .poll_transmit(now, 1, &mut datagram)
        .expect("a new connection has an Initial to send");
    datagram.truncate(transmit.size);
    datagram
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unanswered_quic_initials_do_not_lock_quic_clients_out() {
    let node = NodeProcess::start(&flood_config());
    let addr = node.addr;
    // Initials from a fresh port each, ≈ 330 a second, never answered: the
    // socket that sent one is closed at once.
    let stop = Arc::new(AtomicBool::new(false));
    let _stop = StopOnDrop(stop.clone());
    let sent = Arc::new(AtomicUsize::new(0));
    let flood = std::thread::spawn({
        let (stop, sent) = (stop.clone(), sent.clone());
        move || {
            let mut endpoint = quinn_proto::Endpoint::new(Default::default(), None, false, None);
            while !stop.load(Ordering::Acquire) {
                let datagram = initial_datagram(&mut endpoint, addr);
                let socket = UdpSocket::bind("127.0.0.1:0").expect("bind");
                if socket.send_to(&datagram, addr).is_ok() {
                    sent.fetch_add(1, Ordering::Relaxed);
                }
                drop(socket);
                // Pacing, not waiting for anything: the flood's rate.
                std::thread::sleep(Duration::from_millis(3));
            }
        }
    });
    // The table is full of unanswered handshakes before the first client.
    let filled = eventually(Duration::from_secs(10), || {
        sent.load(Ordering::Relaxed) >= 3 * PENDING
    })
    .await;
    assert!(filled, "the flood did not start");
    let endpoint = quic_endpoint();
    let served = count_served(|seed| {
        let endpoint = endpoint.clone();
        async move {
            let Ok(connection) = quic_connect(&endpoint, addr, &["alknet/echo"]).await else {
                return false;
            };
            let payload = seed.to_be_bytes();
            quic_echo(&connection, &payload)
                .await
                .is_ok_and(|echoed| echoed == payload)
        }
    })
    .await;
    stop.store(true, Ordering::Release);
    flood.join().unwrap();
    eprintln!("unanswered Initials sent: {}", sent.load(Ordering::Relaxed));
    assert_served(served, "unanswered QUIC Initials");
    let log = node.log().join("\n");
    assert!(
        log.contains("answering unvalidated Initials with a Retry"),
        "the pressure is logged: {log}"
    );
}

/// Records that rustls cannot take as a ClientHello, each of which it used to
/// log at `warn`: a HelloRequest, and application data before any handshake.
const NOT_A_CLIENT_HELLO: [&[u8]; 2] = [
    &[0x16, 0x03, 0x01, 0x00, 0x04, 0x00, 0x00, 0x00, 0x00],
    &[0x17, 0x03, 0x03, 0x00, 0x05, b'h', b'e', b'l', b'l', b'o'],
];

/// The longest log growth allowed per minute of attack.
const LOG_BYTES_PER_MINUTE: usize = 20_000;

/// Sends `bytes` on a fresh connection and reads until the node closes it.
async fn send_and_wait_for_close(
    mut stream: impl tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin,
    bytes: &[u8],
) {
    if stream.write_all(bytes).await.is_err() || stream.flush().await.is_err() {
        return;
    }
    let mut sink = Vec::new();
    let _ = tokio::time::timeout(Duration::from_secs(5), stream.read_to_end(&mut sink)).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn malformed_input_grows_the_log_by_a_bounded_amount() {
    let node = NodeProcess::start("[diagnostics]\necho = true\n");
    let addr = node.addr;
    let lines_before = node.log().len();
    let bytes_before = node.log_bytes();
    let attack = Duration::from_secs(10);
    let end = Instant::now() + attack;
    let hellos = tokio::spawn(async move {
        let mut sent = 0usize;
        while Instant::now() < end {
            if let Ok(tcp) = TcpStream::connect(addr).await {
                send_and_wait_for_close(tcp, NOT_A_CLIENT_HELLO[sent % 2]).await;
                sent += 1;
            }
        }
        sent
    });
    let frames = tokio::spawn(async move {
        let mut sent = 0usize;
        while Instant::now() < end {
            // Frame length 0: a framing error (docs/protocol.md §3.1 rule 1).
            if let Ok(tls) = tls_connect(addr, &["alknet/call"]).await {
                send_and_wait_for_close(tls, &[0, 0, 0, 0]).await;
                sent += 1;
            }
        }
        sent
    });
    let (hellos, frames) = (hellos.await.unwrap(), frames.await.unwrap());
    let attack_took = attack.max(Instant::now() - (end - attack));
    eprintln!("sent {hellos} malformed ClientHellos and {frames} bad frames in {attack_took:?}");
    assert!(hellos > 100 && frames > 100, "the attack ran");
    // What was suppressed is reported once its window ends, without any
    // further input.
    let summarised = eventually(Duration::from_secs(20), || {
        node.log()[lines_before..]
            .iter()
            .any(|line| line.contains("suppressed"))
    })
    .await;
    let grown = node.log_bytes() - bytes_before;
    let per_minute = grown as f64 * 60.0 / attack_took.as_secs_f64();
    eprintln!("log grew {grown} bytes: {per_minute:.0} bytes per minute of attack");
    let new_lines = node.log()[lines_before..].join("\n");
    assert!(
        per_minute <= LOG_BYTES_PER_MINUTE as f64,
        "log grew {grown} bytes in {attack_took:?} ({per_minute:.0} per minute): {}",
        &new_lines[..new_lines.len().min(4_000)]
    );
    assert!(summarised, "no \"suppressed\" summary: {new_lines}");
}

/// Sends a pre-encoded `call.requested` frame over its own TCP+TLS session;
/// whether `call.responded` came back.
async fn call_over_tls(
    mut tls: tokio_rustls::client::TlsStream<TcpStream>,
    frame: Arc<Vec<u8>>,
) -> bool {
    // Flushed: the last records may still sit in rustls' buffer otherwise.
    if tls.write_all(&frame).await.is_err() || tls.flush().await.is_err() {
        return false;
    }
    let mut decoder = FrameDecoder::new(DEFAULT_MAX_FRAME);
    let mut buffer = vec![0u8; 64 * 1024];
    loop {
        match decoder.next_envelope() {
            Ok(Some(envelope)) => return matches!(envelope.event(), Ok(Event::Responded(_))),
            Ok(None) => {}
            Err(_) => return false,
        }
        match tls.read(&mut buffer).await {
            Ok(0) | Err(_) => return false,
            Ok(read) => decoder.push(&buffer[..read]),
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn memory_taken_at_a_peak_goes_back_to_the_system() {
    const SESSIONS: usize = 32;
    const PAD: usize = 6 << 20;
    const ROUNDS: usize = 2;
    let node = NodeProcess::start("[diagnostics]\ncall_ops = true\n");
    let addr = node.addr;
    let baseline = node.rss_bytes();
    // A peak that does not depend on how fast the machine is: 32 calls that
    // each carry 6 MiB and hold it for the 5 s they sleep, all at once.
    let request = CallRequest::new("diag/sleep", json!({"ms": 5_000, "pad": "x".repeat(PAD)}));
    let frame = Arc::new(
        encode_frame(
            &EventEnvelope::requested("big", &request),
            DEFAULT_MAX_FRAME,
        )
        .expect("the frame fits"),
    );
    // Twice: glibc's malloc serves the first round from fresh mappings it
    // unmaps on free, but raises its mapping threshold on the way, so that it
    // serves the second round from its heaps, which it keeps.
    for _ in 0..ROUNDS {
        // Connected first, so that no handshake waits behind the uploads.
        let mut sessions = Vec::new();
        for _ in 0..SESSIONS {
            sessions.push(
                tls_connect(addr, &["alknet/call"])
                    .await
                    .expect("TLS handshake"),
            );
        }
        let calls: Vec<_> = sessions
            .into_iter()
            .map(|tls| tokio::spawn(call_over_tls(tls, frame.clone())))
            .collect();
        for call in calls {
            let answered = tokio::time::timeout(Duration::from_secs(120), call)
                .await
                .is_ok_and(|answered| answered.unwrap_or(false));
            assert!(answered, "a call was not answered; log: {:#?}", node.log());
        }
    }
    let peak = node.peak_rss_bytes();
    let mib = |bytes: u64| bytes / (1 << 20);
    eprintln!(
        "RSS: {} MiB at start, {} MiB at the peak",
        mib(baseline),
        mib(peak)
    );
    assert!(
        peak >= baseline + (160 << 20),
        "the load did not make a peak worth measuring: {} MiB → {} MiB",
        mib(baseline),
        mib(peak)
    );
    let started = Instant::now();
    let bound = baseline + (peak - baseline) / 10;
    let returned = eventually(Duration::from_secs(20), || node.rss_bytes() <= bound).await;
    let now = node.rss_bytes();
    eprintln!(
        "RSS {} MiB {:?} after the peak (bound {} MiB)",
        mib(now),
        started.elapsed(),
        mib(bound)
    );
    assert!(
        returned,
        "RSS stayed at {} MiB after a peak of {} MiB (start {} MiB, bound {} MiB)",
        mib(now),
        mib(peak),
        mib(baseline),
        mib(bound)
    );
}
