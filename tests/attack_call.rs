//! Attacks on the call protocol, mounted by anonymous clients against the real
//! `alknet serve`: each asserts the bound that holds the node up (docs/reliability.md).

use std::time::{Duration, Instant};

use alknet_call::CallError;
use alknet_call::ErrorCode;
use alknet_call::codec::DEFAULT_MAX_FRAME;
use alknet_call::envelope::Event;
use alknet_e2e::client::{quic_connect, quic_endpoint, tls_connect};
use alknet_e2e::process::{NodeProcess, run};
use alknet_e2e::raw_call::{Raw, Transport, both, open_at};
use alknet_e2e::{eventually_blocking, runtime};
use serde_json::{Value, json};
use tokio::io::AsyncReadExt;

const MIB: u64 = 1024 * 1024;

/// `count` queries named `<prefix>/<i>`, each with a 20-property input schema
/// (the shape of the registration flood this bound was made for) and about 2
/// KB of JSON in all.
fn operations(prefix: &str, count: usize) -> Value {
    let properties: serde_json::Map<String, Value> = (0..20)
        .map(|i| {
            (
                format!("property_{i}"),
                json!({"type": "string", "maxLength": 64}),
            )
        })
        .collect();
    let operations: Vec<Value> = (0..count)
        .map(|i| {
            json!({
                "name": format!("{prefix}/op{i}"),
                "op_type": "query",
                "description": "d".repeat(1000),
                "input_schema": {"type": "object", "properties": properties},
            })
        })
        .collect();
    json!({ "operations": operations })
}

fn error(event: Event) -> CallError {
    match event {
        Event::Error(error) => error,
        other => panic!("expected call.error, got {other:?}"),
    }
}

#[test]
fn a_registration_flood_is_refused_at_its_bounds_and_memory_stays_bounded() {
    let node = NodeProcess::start("");
    let token = node.admin_token();
    let baseline = node.rss_bytes();
    runtime().block_on(async {
        // One session floods: 2,000 operations of 20 properties a frame, new
        // names each time. Each frame is over the per-session cap whole.
        let mut flooder = open_at(node.addr, Transport::Tcp).await;
        let mut sent = 0usize;
        for round in 0..8 {
            let input = operations(&format!("flood{round}"), 2000);
            sent += input.to_string().len();
            let reply = flooder.round_trip("f", "session/register", input).await;
            assert_eq!(
                error(reply),
                CallError::invalid_input("overlay limit: at most 256 operations per session")
            );
        }
        assert!(sent > 8 * 4_000_000, "the flood sent {sent} bytes");
        let growth = node.rss_bytes().saturating_sub(baseline);
        eprintln!("RSS growth after one session's flood: {} MiB", growth / MIB);
        assert!(growth <= 64 * MIB, "RSS grew by {} MiB", growth / MIB);
        // Within the caps the session registers, up to its byte limit.
        let mut registered = 0;
        let refusal = loop {
            let input = operations(&format!("fill{registered}"), 50);
            match flooder.round_trip("r", "session/register", input).await {
                Event::Responded(_) => registered += 50,
                other => break error(other),
            }
        };
        assert_eq!(
            refusal,
            CallError::invalid_input(
                "overlay limit: at most 262144 bytes of operations per session"
            )
        );
        assert!(registered >= 50, "registered {registered}");

        // 64 more anonymous sessions fill them up: the node's budget for
        // anonymous sessions (8 MiB of 16) runs out, and they are refused.
        let mut sessions = Vec::new();
        let mut node_refusals = 0;
        for i in 0..64 {
            let transport = if i % 2 == 0 {
                Transport::Quic
            } else {
                Transport::Tcp
            };
            let mut raw = open_at(node.addr, transport).await;
            for batch in 0..5 {
                let input = operations(&format!("s{i}b{batch}"), 50);
                match raw.round_trip("r", "session/register", input).await {
                    Event::Responded(_) => {}
                    other => {
                        let refusal = error(other);
                        if refusal.message.contains("the node holds") {
                            node_refusals += 1;
                        }
                        break;
                    }
                }
            }
            sessions.push(raw);
        }
        assert!(node_refusals > 0, "the node budget never ran out");

        // An authenticated session still registers: anonymous sessions
        // cannot take the other half.
        let mut admin = open_at(node.addr, Transport::Quic).await;
        admin
            .call_as(
                "a",
                "session/register",
                operations("admin", 10),
                Some(&token),
                None,
            )
            .await;
        let (_, event) = admin.expect().await;
        assert!(matches!(event, Event::Responded(_)), "{event:?}");

        let growth = node.rss_bytes().saturating_sub(baseline);
        eprintln!(
            "RSS growth after the flood and 66 sessions: {} MiB",
            growth / MIB
        );
        assert!(
            growth <= 256 * MIB,
            "RSS grew by {} MiB for 66 sessions",
            growth / MIB
        );

        // Operators see what each session holds.
        admin
            .call_as("t", "admin/tree", json!({}), Some(&token), None)
            .await;
        let (_, event) = admin.expect().await;
        let Event::Responded(tree) = event else {
            panic!("{event:?}")
        };
        let sessions_held: Vec<u64> = tree["root"]["children"]
            .as_array()
            .unwrap()
            .iter()
            .filter(|child| child["name"] == "proto/alknet/call")
            .flat_map(|proto| proto["children"].as_array().unwrap().iter())
            .map(|session| session["held_bytes"].as_u64().unwrap())
            .collect();
        assert_eq!(sessions_held.len(), 66, "{tree}");
        assert!(
            sessions_held.iter().all(|held| *held <= 262_144),
            "{sessions_held:?}"
        );
        let total: u64 = sessions_held.iter().sum();
        assert!(total > 7 * MIB, "sessions hold {total} bytes in all");
        assert!(total <= 16 * MIB, "sessions hold {total} bytes in all");
        drop(sessions);
    });
}

#[test]
fn a_connection_that_sends_no_whole_frame_is_closed_after_first_request_timeout() {
    let node = NodeProcess::start("[limits]\nfirst_request_timeout = \"1s\"\n");
    runtime().block_on(async {
        // TCP+TLS: silent, then a trickle that never completes a frame.
        for trickle in [false, true] {
            let mut tls = tls_connect(node.addr, &["alknet/call"]).await.unwrap();
            let started = Instant::now();
            let mut buffer = [0u8; 64];
            let read = async {
                if trickle {
                    // A 100-byte frame announced, then one byte at a time.
                    use tokio::io::AsyncWriteExt;
                    tls.write_all(&100u32.to_be_bytes()).await.unwrap();
                    for _ in 0..100 {
                        if tls.write_all(b" ").await.is_err() {
                            break;
                        }
                        tokio::select! {
                            read = tls.read(&mut buffer) => return read,
                            () = tokio::time::sleep(Duration::from_millis(100)) => {}
                        }
                    }
                }
                tls.read(&mut buffer).await
            };
            let read = tokio::time::timeout(Duration::from_secs(10), read)
                .await
                .expect("the node closed the connection");
            assert!(
                matches!(read, Ok(0) | Err(_)),
                "trickle={trickle}: {read:?}"
            );
            let elapsed = started.elapsed();
            assert!(
                elapsed >= Duration::from_millis(900) && elapsed < Duration::from_secs(5),
                "trickle={trickle}: closed after {elapsed:?}"
            );
        }
        // QUIC: a connection that opens no stream.
        let endpoint = quic_endpoint();
        let connection = quic_connect(&endpoint, node.addr, &["alknet/call"])
            .await
            .unwrap();
        let closed = tokio::time::timeout(Duration::from_secs(10), connection.closed())
            .await
            .expect("the node closed the QUIC connection");
        match closed {
            quinn::ConnectionError::ApplicationClosed(close) => {
                assert_eq!(&close.reason[..], b"no request in time");
            }
            other => panic!("{other:?}"),
        }
        // A session that has spoken stays, however quiet it is afterwards.
        for transport in both() {
            let mut raw: Raw = open_at(node.addr, transport).await;
            let reply = raw.round_trip("1", "services/list", json!({})).await;
            assert!(matches!(reply, Event::Responded(_)));
            // Past the timeout on purpose: what is asserted is that nothing
            // happened.
            tokio::time::sleep(Duration::from_millis(1500)).await;
            let reply = raw.round_trip("2", "services/list", json!({})).await;
            assert!(matches!(reply, Event::Responded(_)), "{transport:?}");
        }
    });
}

#[test]
fn an_operation_the_caller_may_not_call_is_indistinguishable_from_an_unknown_one() {
    let node = NodeProcess::start("");
    runtime().block_on(async {
        for transport in both() {
            let mut raw = open_at(node.addr, transport).await;
            raw.call("a", "admin/tree", json!({})).await;
            let hidden = raw.next_json().await.unwrap();
            raw.call("a", "nope/tree", json!({})).await;
            let unknown = raw.next_json().await.unwrap();
            assert_eq!(
                hidden.to_string().replace("admin/tree", "nope/tree"),
                unknown.to_string(),
                "{transport:?}"
            );
            assert_eq!(hidden["payload"]["code"], "NOT_FOUND");
            raw.call("s", "services/schema", json!({"name": "admin/kill"}))
                .await;
            let schema = raw.next_json().await.unwrap();
            assert_eq!(
                schema["payload"]["message"], "operation not found: admin/kill",
                "{schema}"
            );
        }
    });
    // The CLI says so, and says what to do.
    let addr = node.addr.to_string();
    let output = run(&[
        "call",
        "--connect",
        &addr,
        "--pin",
        &node.node_id,
        "admin/tree",
    ]);
    assert_eq!(output.status.code(), Some(1));
    let stderr = String::from_utf8_lossy(&output.stderr);
    let mut lines = stderr.lines();
    assert_eq!(
        lines.next(),
        Some("NOT_FOUND: operation not found: admin/tree")
    );
    assert!(lines.next().unwrap().contains("--token"), "{stderr}");
}

#[test]
fn a_client_over_the_connection_cap_is_told_the_limit_was_reached() {
    let node = NodeProcess::start("[limits]\nmax_connections = 1\n");
    let addr = node.addr.to_string();
    runtime().block_on(async {
        let mut holder = open_at(node.addr, Transport::Quic).await;
        let reply = holder.round_trip("1", "services/list", json!({})).await;
        assert!(matches!(reply, Event::Responded(_)));
        let cli = tokio::task::spawn_blocking(move || {
            run(&["call", "--connect", &addr, "--insecure", "services/list"])
        })
        .await
        .unwrap();
        assert_eq!(cli.status.code(), Some(1));
        let stderr = String::from_utf8_lossy(&cli.stderr);
        assert_eq!(
            stderr.trim(),
            "UNAVAILABLE: connection limit reached",
            "{stderr}"
        );
        drop(holder);
    });
    // Refusals are logged, at info.
    assert!(
        eventually_blocking(Duration::from_secs(5), || {
            node.log()
                .iter()
                .any(|line| line.contains("INFO") && line.contains("connection limit"))
        }),
        "{:?}",
        node.log()
    );
}

#[test]
fn a_quic_peer_filling_large_frames_on_many_streams_is_held_to_one_frame_of_room() {
    let node = NodeProcess::start("");
    let baseline = node.rss_bytes();
    runtime().block_on(async {
        let endpoint = quic_endpoint();
        let connection = quic_connect(&endpoint, node.addr, &["alknet/call"])
            .await
            .unwrap();
        // 64 streams each announce a 16 MiB frame and send up to 4 MiB of it;
        // whatever the node does not take within the deadline stays with us.
        let chunk = vec![b' '; 64 * 1024];
        let mut writers = Vec::new();
        for _ in 0..64 {
            let (mut send, recv) = connection.open_bi().await.unwrap();
            let chunk = chunk.clone();
            writers.push(tokio::spawn(async move {
                let _recv = recv;
                let mut written = 0usize;
                let fill = async {
                    send.write_all(&(16u32 << 20).to_be_bytes()).await.ok()?;
                    while written < 4 << 20 {
                        send.write_all(&chunk).await.ok()?;
                        written += chunk.len();
                    }
                    Some(())
                };
                let _ = tokio::time::timeout(Duration::from_secs(5), fill).await;
                (written, send)
            }));
        }
        let mut accepted = 0usize;
        let mut streams = Vec::new();
        for writer in writers {
            let (written, send) = writer.await.unwrap();
            accepted += written;
            streams.push(send);
        }
        let growth = node.rss_bytes().saturating_sub(baseline);
        eprintln!(
            "the node took {} MiB of large frames; RSS grew by {} MiB",
            accepted as u64 / MIB,
            growth / MIB
        );
        assert!(
            (accepted as u64) <= 40 * MIB,
            "the node took {} MiB",
            accepted as u64 / MIB
        );
        assert!(growth <= 64 * MIB, "RSS grew by {} MiB", growth / MIB);
        drop(streams);
        connection.close(0u32.into(), b"done");
        // The node still serves.
        let mut raw = open_at(node.addr, Transport::Tcp).await;
        let reply = raw.round_trip("1", "services/list", json!({})).await;
        assert!(matches!(reply, Event::Responded(_)));
    });
}

#[test]
fn a_frame_of_small_values_too_costly_to_decode_is_refused_with_its_id() {
    let node = NodeProcess::start("");
    let peak_before = node.peak_rss_bytes();
    let replies = runtime().block_on(async {
        // About 8 million zeros in one 16 MiB frame: a quarter of a GiB once
        // decoded as JSON values, though well within the byte limit.
        let head = r#"{"type":"call.requested","id":"costly","payload":{"operationId":"/services/list","input":["#;
        let tail = "0]}}";
        let zeros = (DEFAULT_MAX_FRAME - head.len() - tail.len()) / 2;
        let body = format!("{head}{}{tail}", "0,".repeat(zeros));
        assert!(body.len() <= DEFAULT_MAX_FRAME);
        let mut frame = (body.len() as u32).to_be_bytes().to_vec();
        frame.extend_from_slice(body.as_bytes());

        let mut replies = Vec::new();
        for transport in both() {
            let mut raw = open_at(node.addr, transport).await;
            raw.write_raw(&frame).await;
            let (id, event) = raw.expect().await;
            // The session survives it.
            let next = raw.round_trip("next", "services/list", json!({})).await;
            replies.push((transport, id, event, next));
        }
        replies
    });
    // Memory first: what the frame would cost is the point.
    let growth = node.peak_rss_bytes().saturating_sub(peak_before);
    eprintln!("peak RSS grew by {} MiB", growth / MIB);
    assert!(growth <= 96 * MIB, "peak RSS grew by {} MiB", growth / MIB);
    for (transport, id, event, next) in replies {
        assert_eq!(id, "costly", "{transport:?}");
        assert_eq!(error(event).code, ErrorCode::InvalidInput, "{transport:?}");
        assert!(
            matches!(next, Event::Responded(_)),
            "{transport:?}: {next:?}"
        );
    }
}
