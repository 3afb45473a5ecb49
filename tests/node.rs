//! The node in-process, driven over loopback by real QUIC and TLS clients:
//! ALPN dispatch, echo on both transports, admission caps, panic isolation,
//! supervisor restarts and escalation, and the live actor tree.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::Duration;

use alknet_core::NoIdentities;
use alknet_core::fault::{FAULT_ALPN, FaultHandler};
use alknet_e2e::client::{payload, quic_connect, quic_echo, quic_endpoint, tls_connect, tls_echo};
use alknet_e2e::{eventually, start_node, start_web_node, test_config};
use alknet_echo::EchoHandler;
use alknet_supervisors::{NodeHandle, ShutdownReason, TreeNode};
use futures::StreamExt;
use futures::stream::FuturesUnordered;

const ECHO: &str = "alknet/echo";

fn tree(node: &NodeHandle) -> TreeNode {
    node.tree().expect("the node is running")
}

fn supervisor<'a>(tree: &'a TreeNode, name: &str) -> &'a TreeNode {
    tree.find(name)
        .unwrap_or_else(|| panic!("{name} missing from {tree:#?}"))
}

/// A node serving `alknet/echo` and the fault-injection protocol.
async fn start_fault_node() -> NodeHandle {
    start_web_node(
        vec![EchoHandler.into(), FaultHandler.into()],
        Arc::new(NoIdentities),
    )
    .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn echo_over_quic_concurrent_streams_and_over_tcp_on_the_same_port() {
    let node = start_node(test_config()).await;
    let addr = node.local_addr();
    let endpoint = quic_endpoint();
    let conn = quic_connect(&endpoint, addr, &[ECHO])
        .await
        .expect("QUIC handshake");

    let round_trips: FuturesUnordered<_> = (0..16u32)
        .map(|i| {
            let conn = conn.clone();
            async move {
                let sent = payload(i, 64 * 1024 + i as usize);
                let echoed = quic_echo(&conn, &sent).await.expect("echo");
                assert_eq!(echoed, sent, "stream {i} echoed other bytes");
            }
        })
        .collect();
    round_trips.collect::<Vec<()>>().await;

    // Same port number, TCP this time.
    let tls = tls_connect(addr, &[ECHO]).await.expect("TLS handshake");
    assert_eq!(tls.get_ref().1.alpn_protocol(), Some(ECHO.as_bytes()));
    let sent = payload(99, 100_000);
    assert_eq!(tls_echo(tls, &sent).await.expect("echo"), sent);

    // While the QUIC connection is open the tree shows it, with its counters.
    let snapshot = tree(&node);
    let echo_sup = supervisor(&snapshot, "proto/alknet/echo");
    let conn_node = echo_sup
        .children
        .iter()
        .find(|c| {
            c.connection
                .as_ref()
                .is_some_and(|d| d.remote == endpoint.local_addr().unwrap().to_string())
        })
        .unwrap_or_else(|| panic!("QUIC connection missing from {echo_sup:#?}"));
    let details = conn_node.connection.as_ref().unwrap();
    assert_eq!(conn_node.name, "echo-conn");
    assert_eq!(details.alpn, ECHO);
    let expected: u64 = (0..16u64).map(|i| 64 * 1024 + i).sum();
    assert_eq!(details.bytes_in, expected);
    assert_eq!(details.bytes_out, expected);
}

/// Endpoints built on `alknet_core::udp` find loopback's large MTU and send
/// datagrams of up to `MAX_DATAGRAM` bytes, ten per system call, without losing
/// them: a batch the kernel refused (over 64 KiB in all) would vanish and
/// show up as lost packets and a black hole that shrinks the MTU again.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn quic_grows_its_datagrams_to_the_path_and_loses_none() {
    use alknet_core::udp::{MAX_DATAGRAM, client_endpoint, transport_config};

    let node = start_node(test_config()).await;
    let addr = node.local_addr();
    let endpoint = client_endpoint(addr).expect("client endpoint");
    let mut config = alknet_core::tls::quic_client_config(
        alknet_core::tls::ServerVerification::Insecure,
        None,
        &[alknet_core::Alpn::new(ECHO)],
    )
    .expect("client config");
    config.transport_config(Arc::new(transport_config()));
    let conn = endpoint
        .connect_with(config, addr, "localhost")
        .expect("connect parameters")
        .await
        .expect("QUIC handshake");

    // Written and read at once: the echo stalls if its answers go unread.
    let sent = payload(7, 32 << 20);
    let (mut send, mut recv) = conn.open_bi().await.expect("stream");
    let writer = tokio::spawn({
        let sent = sent.clone();
        async move {
            send.write_all(&sent).await?;
            send.finish()?;
            anyhow::Ok(())
        }
    });
    let echoed = recv.read_to_end(sent.len() + 1).await.expect("echo");
    writer.await.expect("writer task").expect("write");
    assert!(echoed == sent, "the echo differs from what was sent");
    let path = conn.stats().path;
    // Past half the ceiling is far past quinn's 1,452-byte default; the
    // search may stop short of the ceiling itself if one of its probes was
    // lost.
    assert!(path.current_mtu >= MAX_DATAGRAM / 2, "{path:#?}");
    assert_eq!(path.black_holes_detected, 0, "{path:#?}");
    // Loopback drops nothing unless a socket buffer overflows; a handful is
    // scheduling noise, a refused batch would be thousands.
    assert!(path.lost_packets < 100, "{path:#?}");
    assert!(
        conn.stats().udp_tx.bytes / conn.stats().udp_tx.ios > 2 * u64::from(MAX_DATAGRAM),
        "datagrams are not batched: {:#?}",
        conn.stats().udp_tx
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unknown_alpn_fails_the_handshake_on_both_transports() {
    let node = start_node(test_config()).await;
    let addr = node.local_addr();

    let error = tls_connect(addr, &["nope/1"])
        .await
        .expect_err("must be refused");
    let inner = error
        .get_ref()
        .and_then(|e| e.downcast_ref::<rustls::Error>());
    assert_eq!(
        inner,
        Some(&rustls::Error::AlertReceived(
            rustls::AlertDescription::NoApplicationProtocol
        )),
        "{error}"
    );

    let endpoint = quic_endpoint();
    match quic_connect(&endpoint, addr, &["nope/1"]).await {
        Err(quinn::ConnectionError::ConnectionClosed(close)) => {
            assert_eq!(u64::from(close.error_code), 0x0178, "{close}");
        }
        other => panic!("expected CRYPTO_ERROR 0x0178, got {other:?}"),
    }

    // The node keeps serving.
    let conn = quic_connect(&endpoint, addr, &[ECHO])
        .await
        .expect("served");
    assert_eq!(
        quic_echo(&conn, b"still here").await.unwrap(),
        b"still here"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_thousand_concurrent_connections_are_served_and_the_cap_refuses_the_excess() {
    const CAP: usize = 1000;
    let mut config = test_config();
    config
        .protocols
        .entry(ECHO.to_owned())
        .or_default()
        .max_connections = Some(CAP);
    let node = start_node(config).await;
    let addr = node.local_addr();
    let endpoint = quic_endpoint();

    // Open CAP connections, 50 handshakes at a time, and echo on every one.
    let mut connections = Vec::with_capacity(CAP);
    let mut pending = FuturesUnordered::new();
    let mut next = 0u32;
    while connections.len() < CAP {
        while pending.len() < 50 && (next as usize) < CAP {
            let endpoint = endpoint.clone();
            let seed = next;
            pending.push(async move {
                let conn = quic_connect(&endpoint, addr, &[ECHO])
                    .await
                    .expect("handshake");
                let sent = payload(seed, 32);
                assert_eq!(quic_echo(&conn, &sent).await.expect("echo"), sent);
                conn
            });
            next += 1;
        }
        connections.push(pending.next().await.expect("pending connection"));
    }
    assert!(
        eventually(Duration::from_secs(10), || node.admission_stats().open
            == CAP)
        .await
    );

    // The next one completes its handshake and is closed with the reason.
    let refused = quic_connect(&endpoint, addr, &[ECHO])
        .await
        .expect("handshake");
    match refused.closed().await {
        quinn::ConnectionError::ApplicationClosed(close) => {
            assert_eq!(u64::from(close.error_code), 0x2);
            assert_eq!(&close.reason[..], b"connection limit reached");
        }
        other => panic!("expected a refusal, got {other:?}"),
    }
    // Over TCP+TLS the refusal is a close right after the handshake.
    let tls = tls_connect(addr, &[ECHO]).await.expect("TLS handshake");
    assert!(
        tls_echo(tls, b"x")
            .await
            .map(|v| v.is_empty())
            .unwrap_or(true)
    );
    let stats = node.admission_stats();
    assert_eq!(stats.refused, 2);
    assert_eq!(stats.protocols[ECHO], (CAP, 2));

    // Every admitted connection still works, and a freed slot is reusable.
    for (i, conn) in connections.iter().enumerate().step_by(97) {
        assert_eq!(
            quic_echo(conn, &payload(i as u32, 8)).await.unwrap(),
            payload(i as u32, 8)
        );
    }
    connections.pop().unwrap().close(0u32.into(), b"bye");
    assert!(
        eventually(Duration::from_secs(10), || node.admission_stats().open
            == CAP - 1)
        .await
    );
    let conn = quic_connect(&endpoint, addr, &[ECHO])
        .await
        .expect("handshake");
    assert_eq!(quic_echo(&conn, b"again").await.unwrap(), b"again");
}

/// Echo traffic on its own connections, counting failures, until told to stop.
fn echo_traffic(
    addr: std::net::SocketAddr,
    stop: Arc<AtomicBool>,
) -> tokio::task::JoinHandle<(u64, u64)> {
    tokio::spawn(async move {
        let endpoint = quic_endpoint();
        let (mut ok, mut failed) = (0u64, 0u64);
        let mut seed = 0u32;
        while !stop.load(Ordering::Relaxed) {
            // A fresh connection every 20 requests exercises the router too.
            let conn = match quic_connect(&endpoint, addr, &[ECHO]).await {
                Ok(conn) => conn,
                Err(_) => {
                    failed += 1;
                    continue;
                }
            };
            for _ in 0..20 {
                seed += 1;
                let sent = payload(seed, 256);
                match quic_echo(&conn, &sent).await {
                    Ok(echoed) if echoed == sent => ok += 1,
                    _ => failed += 1,
                }
            }
            conn.close(0u32.into(), b"done");
        }
        (ok, failed)
    })
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_thousand_connection_panics_fail_no_echo_request_and_restart_nothing() {
    let node = start_fault_node().await;
    let addr = node.local_addr();
    let before = tree(&node);
    let fault_sup_id = supervisor(&before, "proto/alknet/fault").id.clone();

    let stop = Arc::new(AtomicBool::new(false));
    let traffic = echo_traffic(addr, stop.clone());

    let endpoint = quic_endpoint();
    let panicked = Arc::new(AtomicU64::new(0));
    let mut pending = FuturesUnordered::new();
    for _ in 0..1000 {
        if pending.len() >= 32 {
            pending.next().await;
        }
        let endpoint = endpoint.clone();
        let panicked = panicked.clone();
        pending.push(async move {
            let conn = quic_connect(&endpoint, addr, &[FAULT_ALPN])
                .await
                .expect("handshake");
            let (mut send, _recv) = conn.open_bi().await.expect("stream");
            send.write_all(b"p").await.expect("command");
            send.finish().expect("finish");
            // The server's handler panics; its actor dies and closes the connection.
            let _ = conn.closed().await;
            panicked.fetch_add(1, Ordering::Relaxed);
        });
    }
    while pending.next().await.is_some() {}
    stop.store(true, Ordering::Relaxed);
    let (ok, failed) = traffic.await.expect("traffic task");

    assert_eq!(panicked.load(Ordering::Relaxed), 1000);
    assert_eq!(
        failed, 0,
        "echo requests failed while another protocol panicked"
    );
    assert!(ok > 0, "no echo traffic ran during the panics");
    assert!(
        eventually(Duration::from_secs(10), || {
            supervisor(&tree(&node), "proto/alknet/fault")
                .children
                .is_empty()
        })
        .await,
        "panicked connection actors are still in the tree"
    );
    let after = tree(&node);
    let fault_sup = supervisor(&after, "proto/alknet/fault");
    assert_eq!(
        fault_sup.id, fault_sup_id,
        "the fault supervisor was replaced"
    );
    assert_eq!(fault_sup.restarts, 0);
    assert_eq!(supervisor(&after, "proto/alknet/echo").restarts, 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_panicking_protocol_supervisor_is_restarted_and_serves_again() {
    let node = start_fault_node().await;
    let addr = node.local_addr();
    let endpoint = quic_endpoint();
    let before = tree(&node);
    let old_id = supervisor(&before, "proto/alknet/echo").id.clone();

    // A connection of another protocol, open across the restart.
    let bystander = quic_connect(&endpoint, addr, &[FAULT_ALPN])
        .await
        .expect("handshake");
    let (mut send, mut recv) = bystander.open_bi().await.expect("stream");
    send.write_all(b"e-before").await.unwrap();

    assert!(node.inject_supervisor_panic(ECHO));
    assert!(
        eventually(Duration::from_secs(5), || {
            node.tree()
                .and_then(|t| {
                    t.find("proto/alknet/echo")
                        .map(|s| (s.id.clone(), s.restarts))
                })
                .is_some_and(|(id, restarts)| id != old_id && restarts == 1)
        })
        .await,
        "echo supervisor was not restarted: {:#?}",
        node.tree()
    );
    let conn = quic_connect(&endpoint, addr, &[ECHO])
        .await
        .expect("handshake");
    assert_eq!(
        quic_echo(&conn, b"after restart").await.unwrap(),
        b"after restart"
    );

    // The other protocol never noticed: same supervisor, same connection.
    send.write_all(b"-after").await.unwrap();
    send.finish().unwrap();
    let echoed = recv.read_to_end(64).await.expect("bystander stream");
    assert_eq!(echoed, b"-before-after");
    let after = tree(&node);
    assert_eq!(
        supervisor(&after, "proto/alknet/fault").id,
        supervisor(&before, "proto/alknet/fault").id
    );
    assert_eq!(supervisor(&after, "proto/alknet/fault").restarts, 0);
}

#[derive(Clone, Default)]
struct CapturedLog(Arc<std::sync::Mutex<Vec<u8>>>);

impl std::io::Write for CapturedLog {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(buf);
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn exceeding_the_restart_intensity_shuts_the_node_down_with_one_log_line() {
    let log = CapturedLog::default();
    let writer = log.clone();
    // nextest runs each test in its own process, so a global subscriber is ours alone.
    tracing_subscriber::fmt()
        .with_writer(move || writer.clone())
        .with_ansi(false)
        .with_max_level(tracing::Level::WARN)
        .init();

    let mut config = test_config();
    let echo = config.protocols.entry(ECHO.to_owned()).or_default();
    echo.max_restarts = Some(2);
    echo.restart_window = Some(Duration::from_secs(60));
    let node = start_node(config).await;

    for expected_restarts in 1..=2 {
        // A restarted supervisor shows in the tree (pre_start) a moment before
        // it takes orders (post_start): retry the injection until it lands.
        assert!(
            eventually(Duration::from_secs(5), || node
                .inject_supervisor_panic(ECHO))
            .await
        );
        assert!(
            eventually(Duration::from_secs(5), || {
                node.tree()
                    .and_then(|t| t.find("proto/alknet/echo").map(|s| s.restarts))
                    == Some(expected_restarts)
            })
            .await
        );
    }
    assert!(
        eventually(Duration::from_secs(5), || node
            .inject_supervisor_panic(ECHO))
        .await
    );
    let reason = tokio::time::timeout(Duration::from_secs(10), node.wait())
        .await
        .expect("the node shuts down after escalation");
    assert_eq!(
        reason,
        ShutdownReason::Escalated {
            actor: "proto/alknet/echo".into()
        }
    );
    assert!(node.tree().is_none(), "the tree is gone after shutdown");
    let text = String::from_utf8(log.0.lock().unwrap().clone()).unwrap();
    let escalations: Vec<&str> = text
        .lines()
        .filter(|l| l.contains("exceeded its restart intensity"))
        .collect();
    assert_eq!(escalations.len(), 1, "{text}");
    assert!(escalations[0].contains("ERROR") && escalations[0].contains("proto/alknet/echo"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ten_thousand_clean_closes_leave_every_supervisor_alive_and_no_stale_children() {
    let node = start_node(test_config()).await;
    let addr = node.local_addr();
    let before = tree(&node);
    let endpoint = quic_endpoint();

    let mut pending = FuturesUnordered::new();
    let mut closed = 0u32;
    for i in 0..10_000u32 {
        if pending.len() >= 64 {
            pending.next().await;
        }
        let endpoint = endpoint.clone();
        pending.push(async move {
            if i % 10 == 0 {
                // Every tenth over TCP+TLS.
                let tls = tls_connect(addr, &[ECHO]).await.expect("TLS handshake");
                assert_eq!(tls_echo(tls, b"x").await.expect("echo"), b"x");
            } else {
                let conn = quic_connect(&endpoint, addr, &[ECHO])
                    .await
                    .expect("handshake");
                assert_eq!(quic_echo(&conn, b"x").await.expect("echo"), b"x");
                conn.close(0u32.into(), b"done");
            }
        });
        closed += 1;
    }
    while pending.next().await.is_some() {}
    assert_eq!(closed, 10_000);

    assert!(
        eventually(Duration::from_secs(30), || node.admission_stats().open == 0).await,
        "connections still open: {:?}",
        node.admission_stats()
    );
    let after = tree(&node);
    assert!(
        supervisor(&after, "proto/alknet/echo").children.is_empty(),
        "{after:#?}"
    );
    // Same actors as before: nothing was restarted, nothing is left over.
    let ids = |t: &TreeNode| {
        let mut v = Vec::new();
        fn walk(t: &TreeNode, v: &mut Vec<(String, String, u32)>) {
            v.push((t.name.clone(), t.id.clone(), t.restarts));
            t.children.iter().for_each(|c| walk(c, v));
        }
        walk(t, &mut v);
        v
    };
    assert_eq!(ids(&after), ids(&before));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_tree_has_the_documented_shape() {
    let node = start_node(test_config()).await;
    let snapshot = tree(&node);
    assert_eq!(snapshot.name, "node");
    let names: Vec<(&str, String)> = snapshot
        .children
        .iter()
        .map(|c| (c.name.as_str(), serde_kind(c)))
        .collect();
    assert_eq!(
        names,
        [
            ("proto/alknet/echo", "supervisor".to_owned()),
            ("router", "router".to_owned()),
            ("listener/quic", "listener".to_owned()),
            ("listener/tcp", "listener".to_owned()),
        ]
    );
    let json = serde_json_value(&snapshot);
    let started_at = json["started_at"].as_str().unwrap();
    assert_eq!(
        started_at.len(),
        "2026-11-22T18:40:00.123Z".len(),
        "{started_at}"
    );
    assert!(started_at.ends_with('Z'));
    assert_eq!(json["status"], "running");
    assert!(json["id"].as_str().unwrap().starts_with("0."));
    assert!(
        json.get("alpn").is_none(),
        "supervisors carry no connection fields"
    );
}

fn serde_kind(node: &TreeNode) -> String {
    serde_json_value(node)["kind"].as_str().unwrap().to_owned()
}

fn serde_json_value(node: &TreeNode) -> serde_json::Value {
    serde_json::to_value(node).unwrap()
}

/// Fails its first run, panics in its second, then runs until stopped.
struct Flaky(Arc<AtomicU64>);

impl alknet_core::service::Service for Flaky {
    const NAME: &'static str = "flaky";

    async fn run(&self) -> Result<(), alknet_core::service::ServiceError> {
        match self.0.fetch_add(1, Ordering::SeqCst) {
            0 => Err(alknet_core::service::ServiceError::new("first run fails")),
            1 => panic!("second run panics"),
            _ => std::future::pending().await,
        }
    }
}

/// Finishes at once.
struct OneShot;

impl alknet_core::service::Service for OneShot {
    const NAME: &'static str = "one-shot";

    async fn run(&self) -> Result<(), alknet_core::service::ServiceError> {
        Ok(())
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn services_are_restarted_after_errors_and_panics_and_not_after_finishing() {
    let runs = Arc::new(AtomicU64::new(0));
    let tls = alknet_core::tls::ServerIdentity::new(
        &alknet_core::NodeKey::generate(),
        alknet_e2e::generate_certificate("localhost"),
        None,
    )
    .expect("server identity");
    let node = alknet_supervisors::Node::builder(test_config(), tls)
        .protocol(EchoHandler)
        .service(Flaky(runs.clone()))
        .service(OneShot)
        .start()
        .await
        .expect("node starts");
    let restarted = eventually(Duration::from_secs(10), || {
        let tree = tree(&node);
        let flaky = tree.find("service/flaky").map(|s| s.restarts);
        flaky == Some(2) && tree.find("service/one-shot").is_none()
    })
    .await;
    assert!(restarted, "{:#?}", tree(&node));
    assert_eq!(runs.load(Ordering::SeqCst), 3);
    // The rest of the node never noticed.
    let endpoint = quic_endpoint();
    let connection = quic_connect(&endpoint, node.local_addr(), &[ECHO])
        .await
        .unwrap();
    assert_eq!(
        quic_echo(&connection, b"still here").await.unwrap(),
        b"still here"
    );
    node.shutdown();
    assert_eq!(node.wait().await, ShutdownReason::Requested);
}
