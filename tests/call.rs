//! The call protocol end to end: a node serving `alknet/call` in-process, and a
//! raw client speaking the framing of docs/protocol.md §3.1 over quinn (QUIC) and
//! tokio-rustls (TCP+TLS) — not our client, so the wire is what is tested. Test
//! doc comments cite the §16 conformance items; each runs over both transports.

use std::sync::Arc;
use std::time::{Duration, Instant};

use alknet_call::codec::{DEFAULT_MAX_FRAME, encode_frame};
use alknet_call::envelope::{CallRequest, Event, EventEnvelope};
use alknet_call::registry::{OperationDef, Registry};
use alknet_call::{CallError, CallHandler, SessionLimits};
use alknet_core::{NoIdentities, NodeKey};
use alknet_e2e::client::{quic_connect, quic_endpoint};
use alknet_e2e::raw_call::{Transport, both, open};
use alknet_e2e::{
    generate_certificate, hanging_query, start_call_node, start_node_with, test_config,
};
use alknet_supervisors::NodeHandle;
use serde_json::{Value, json};
use tokio::sync::mpsc;

const CALL: &str = "alknet/call";
const WAIT: Duration = Duration::from_secs(5);

async fn node(limits: SessionLimits) -> (NodeHandle, mpsc::UnboundedReceiver<()>) {
    let (dropped_tx, dropped_rx) = mpsc::unbounded_channel();
    let registry = Registry::new();
    alknet_call::builtins::register_discovery(&registry).unwrap();
    registry
        .register(
            OperationDef::query("test/slow").unary(|_, input: Value| async move {
                let ms = input["ms"].as_u64().unwrap_or(0);
                tokio::time::sleep(Duration::from_millis(ms)).await;
                Ok(json!({"slept": ms}))
            }),
        )
        .unwrap();
    registry
        .register(hanging_query("test/hang", dropped_tx.clone()))
        .unwrap();
    registry
        .register(
            OperationDef::subscription("test/count").stream(|_, input: Value| {
                let n = input["n"].as_u64().unwrap_or(3);
                futures::stream::iter((0..n).map(|i| Ok(json!(i))))
            }),
        )
        .unwrap();
    registry
        .register(
            OperationDef::subscription("test/sizes").stream(|_, input: Value| {
                let sizes: Vec<usize> = serde_json::from_value(input["sizes"].clone()).unwrap();
                futures::stream::iter(sizes.into_iter().map(|n| Ok(json!("x".repeat(n)))))
            }),
        )
        .unwrap();
    let mut config = test_config();
    // A request that never ends holds shutdown for the whole drain deadline.
    config.supervision.drain_timeout = Duration::from_millis(500);
    let node = start_call_node(config, registry, Arc::new(NoIdentities), limits).await;
    (node, dropped_rx)
}

/// Conformance item 2 (docs/protocol.md §16).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn services_list_on_one_port_over_both_transports() {
    let (node, _) = node(SessionLimits::default()).await;
    for transport in both() {
        let mut raw = open(&node, transport).await;
        raw.call("l1", "/services/list", json!({})).await;
        let (id, event) = raw.expect().await;
        assert_eq!(id, "l1");
        let Event::Responded(output) = event else {
            panic!("{transport:?}: {event:?}")
        };
        let names: Vec<&str> = output["operations"]
            .as_array()
            .unwrap()
            .iter()
            .map(|o| o["name"].as_str().unwrap())
            .collect();
        assert_eq!(
            names,
            [
                "services/list",
                "services/schema",
                "session/register",
                "test/count",
                "test/hang",
                "test/sizes",
                "test/slow"
            ]
        );
    }
}

/// Conformance item 3 (docs/protocol.md §16).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_frames_get_no_envelope_and_end_the_stream_within_one_second() {
    let (node, _) = node(SessionLimits::default()).await;
    let cases: [(&str, Vec<u8>); 3] = [
        ("length 0", vec![0, 0, 0, 0]),
        ("length 0xFFFFFFFF", vec![0xff, 0xff, 0xff, 0xff]),
        ("{nope", [&5u32.to_be_bytes()[..], b"{nope"].concat()),
    ];
    for transport in both() {
        for (name, bytes) in &cases {
            let mut raw = open(&node, transport).await;
            raw.write_raw(bytes).await;
            let started = Instant::now();
            assert!(
                raw.next().await.is_none(),
                "{transport:?} {name}: an envelope came back"
            );
            assert!(
                started.elapsed() < Duration::from_secs(1),
                "{transport:?} {name}: too slow"
            );
            // A new connection is served normally.
            let mut fresh = open(&node, transport).await;
            fresh.call("ok", "/services/list", json!({})).await;
            assert!(
                matches!(fresh.expect().await.1, Event::Responded(_)),
                "{transport:?} {name}"
            );
        }
    }
}

/// Conformance items 7 and 15 (docs/protocol.md §16).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unknown_is_one_not_found_and_a_query_one_reply() {
    let (node, _) = node(SessionLimits::default()).await;
    for transport in both() {
        let mut raw = open(&node, transport).await;
        raw.call("n1", "/nope/missing", json!({})).await;
        raw.call("q1", "/test/slow", json!({"ms": 0})).await;
        raw.call("marker", "/test/slow", json!({"ms": 50})).await;
        let mut seen = Vec::new();
        while seen.len() < 3 {
            seen.push(raw.expect().await);
        }
        assert_eq!(
            seen[..2],
            [
                (
                    "n1".to_owned(),
                    Event::Error(CallError::operation_not_found("nope/missing"))
                ),
                ("q1".to_owned(), Event::Responded(json!({"slept": 0}))),
            ],
            "{transport:?}"
        );
        // The marker came last: nothing else (no call.completed) was sent for q1 or n1.
        assert_eq!(seen[2].0, "marker", "{transport:?}");
    }
}

/// Conformance item 16 (docs/protocol.md §16).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_subscription_streams_then_completes() {
    let (node, _) = node(SessionLimits::default()).await;
    for transport in both() {
        let mut raw = open(&node, transport).await;
        raw.call("s1", "/test/count", json!({"n": 3})).await;
        let mut events = Vec::new();
        for _ in 0..4 {
            events.push(raw.expect().await);
        }
        let expected: Vec<(String, Event)> = vec![
            ("s1".into(), Event::Responded(json!(0))),
            ("s1".into(), Event::Responded(json!(1))),
            ("s1".into(), Event::Responded(json!(2))),
            ("s1".into(), Event::Completed),
        ];
        assert_eq!(events, expected, "{transport:?}");
    }
}

/// An item larger than a frame may be ends the subscription with
/// `INTERNAL` `response too large`: nothing of that call follows the error.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_subscription_item_too_large_to_send_ends_the_call_with_its_error() {
    let limits = SessionLimits {
        max_frame: 64 * 1024,
        ..SessionLimits::default()
    };
    let (node, _) = node(limits).await;
    for transport in both() {
        let mut raw = open(&node, transport).await;
        raw.call("big", "/test/sizes", json!({"sizes": [3, 100_000, 3]}))
            .await;
        assert_eq!(
            raw.expect().await,
            ("big".into(), Event::Responded(json!("xxx"))),
            "{transport:?}"
        );
        assert_eq!(
            raw.expect().await,
            (
                "big".into(),
                Event::Error(CallError::internal("response too large"))
            ),
            "{transport:?}"
        );
        // The next envelope on the stream answers the next call: the
        // subscription sent nothing after its error.
        raw.call("after", "/test/slow", json!({"ms": 0})).await;
        assert_eq!(
            raw.expect().await,
            ("after".into(), Event::Responded(json!({"slept": 0}))),
            "{transport:?}"
        );
    }
}

/// Conformance item 17 (docs/protocol.md §16).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn requests_on_one_stream_are_answered_in_completion_order() {
    let (node, _) = node(SessionLimits::default()).await;
    for transport in both() {
        let mut raw = open(&node, transport).await;
        raw.call("slow", "/test/slow", json!({"ms": 300})).await;
        raw.call("fast1", "/test/slow", json!({"ms": 0})).await;
        raw.call("fast2", "/test/slow", json!({"ms": 0})).await;
        let mut order = Vec::new();
        for _ in 0..3 {
            order.push(raw.expect().await.0);
        }
        assert_eq!(
            order.last().map(String::as_str),
            Some("slow"),
            "{transport:?}: {order:?}"
        );
    }
}

/// Conformance item 18 (docs/protocol.md §16).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_duplicate_in_flight_id_is_refused_and_the_first_completes() {
    let (node, _) = node(SessionLimits::default()).await;
    for transport in both() {
        let mut raw = open(&node, transport).await;
        raw.call("dup", "/test/slow", json!({"ms": 200})).await;
        raw.call("dup", "/test/slow", json!({"ms": 0})).await;
        assert_eq!(
            raw.expect().await,
            (
                "dup".into(),
                Event::Error(CallError::invalid_input("duplicate request id"))
            )
        );
        assert_eq!(
            raw.expect().await,
            ("dup".into(), Event::Responded(json!({"slept": 200})))
        );
    }
}

/// Conformance item 19 (docs/protocol.md §16).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_request_over_the_in_flight_cap_is_unavailable() {
    let limits = SessionLimits {
        max_in_flight: 256,
        ..SessionLimits::default()
    };
    let (node, _) = node(limits).await;
    for transport in both() {
        let mut raw = open(&node, transport).await;
        for i in 0..256 {
            raw.call(&format!("h{i}"), "/test/hang", json!({})).await;
        }
        raw.call("over", "/test/slow", json!({"ms": 0})).await;
        let (id, event) = raw.expect().await;
        assert_eq!(id, "over");
        let Event::Error(error) = event else {
            panic!("{event:?}")
        };
        assert_eq!(
            (error.code.as_str(), error.retryable),
            ("UNAVAILABLE", true)
        );
        assert_eq!(error.message, "too many in-flight requests");
    }
}

/// Conformance items 20 and 22 (docs/protocol.md §16).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn abort_drops_the_handler_and_unknown_aborts_change_nothing() {
    let (node, mut dropped) = node(SessionLimits::default()).await;
    for transport in both() {
        let mut raw = open(&node, transport).await;
        raw.call("h", "/test/hang", json!({})).await;
        // Make sure it is running before aborting it.
        raw.call("sync", "/test/slow", json!({"ms": 0})).await;
        assert_eq!(raw.expect().await.0, "sync");
        raw.send(EventEnvelope::aborted("h")).await;
        let started = Instant::now();
        tokio::time::timeout(Duration::from_millis(100), dropped.recv())
            .await
            .expect("the handler was dropped within 100 ms");
        assert!(started.elapsed() < Duration::from_millis(100));
        raw.send(EventEnvelope::aborted("never-sent")).await;
        raw.call("after", "/test/slow", json!({"ms": 0})).await;
        // Nothing more for "h": the next envelope answers "after".
        assert_eq!(raw.expect().await.0, "after", "{transport:?}");
    }
}

/// Conformance item 23 (docs/protocol.md §16).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_query_past_its_deadline_times_out_and_is_cancelled() {
    let limits = SessionLimits {
        call_timeout: Duration::from_millis(200),
        ..SessionLimits::default()
    };
    let (node, mut dropped) = node(limits).await;
    for transport in both() {
        let mut raw = open(&node, transport).await;
        raw.call("t", "/test/hang", json!({})).await;
        assert_eq!(
            raw.expect().await,
            ("t".into(), Event::Error(CallError::timeout()))
        );
        tokio::time::timeout(WAIT, dropped.recv())
            .await
            .expect("handler cancelled");
    }
}

/// Conformance item 24 (docs/protocol.md §16).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn closing_the_session_aborts_its_handlers() {
    let (node, mut dropped) = node(SessionLimits::default()).await;
    for transport in both() {
        let mut raw = open(&node, transport).await;
        raw.call("h", "/test/hang", json!({})).await;
        raw.call("sync", "/test/slow", json!({"ms": 0})).await;
        assert_eq!(raw.expect().await.0, "sync");
        drop(raw);
        tokio::time::timeout(WAIT, dropped.recv())
            .await
            .unwrap_or_else(|_| panic!("{transport:?}: handler not aborted on close"));
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_session_shows_in_the_tree_with_its_request_count() {
    let (node, _) = node(SessionLimits::default()).await;
    let mut raw = open(&node, Transport::Quic).await;
    raw.call("a", "/services/list", json!({})).await;
    raw.call("b", "/services/list", json!({})).await;
    raw.expect().await;
    raw.expect().await;
    let tree = node.tree().unwrap();
    let session = tree
        .find("proto/alknet/call")
        .and_then(|p| p.children.first())
        .cloned()
        .expect("a session under proto/alknet/call");
    assert_eq!(session.name, "session");
    let details = session.connection.expect("connection details");
    assert_eq!((details.alpn.as_str(), details.requests), (CALL, 2));
    assert!(details.bytes_in > 0 && details.bytes_out > 0);
}

mod client {
    use super::*;
    use alknet_call::client::{ClientOptions, Transport as ClientTransport};
    use alknet_core::Fingerprint;
    use alknet_core::tls::ServerVerification;
    use futures::StreamExt;

    fn options(transport: ClientTransport) -> ClientOptions {
        ClientOptions {
            transport,
            ..ClientOptions::default()
        }
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn call_client_calls_and_subscribes_over_both_transports() {
        let (node, _) = node(SessionLimits::default()).await;
        for transport in [ClientTransport::Quic, ClientTransport::Tcp] {
            let client = alknet_call::CallClient::connect(node.local_addr(), options(transport))
                .await
                .expect("connected");
            let list = client.call("services/list", json!({})).await.unwrap();
            assert!(
                list["operations"].as_array().unwrap().len() >= 5,
                "{transport:?}"
            );
            assert_eq!(
                client.call("/nope/missing", json!({})).await.unwrap_err(),
                CallError::operation_not_found("nope/missing")
            );
            let items: Vec<_> = client
                .subscribe("test/count", json!({"n": 3}))
                .await
                .unwrap()
                .collect()
                .await;
            assert_eq!(
                items,
                vec![Ok(json!(0)), Ok(json!(1)), Ok(json!(2))],
                "{transport:?}"
            );
            // Concurrent calls on one session are correlated by id.
            let (slow, fast) = tokio::join!(
                client.call("test/slow", json!({"ms": 200})),
                client.call("test/slow", json!({"ms": 0}))
            );
            assert_eq!(slow.unwrap(), json!({"slept": 200}));
            assert_eq!(fast.unwrap(), json!({"slept": 0}));
        }
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_pinned_client_refuses_a_node_with_another_key() {
        let (node, _) = node(SessionLimits::default()).await;
        for transport in [ClientTransport::Quic, ClientTransport::Tcp] {
            let pinned = ClientOptions {
                verification: ServerVerification::Pin(Fingerprint::Ed25519([7; 32])),
                ..options(transport)
            };
            let refused = alknet_call::CallClient::connect(node.local_addr(), pinned).await;
            assert!(
                refused.is_err(),
                "{transport:?}: connected to the wrong node"
            );
        }
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn in_flight_calls_fail_with_connection_closed_when_the_node_goes_away() {
        for transport in [ClientTransport::Quic, ClientTransport::Tcp] {
            let (node, _) = node(SessionLimits::default()).await;
            let client = alknet_call::CallClient::connect(node.local_addr(), options(transport))
                .await
                .unwrap();
            let pending = client.call("test/hang", json!({}));
            let stopper = async {
                // Let the request reach the node first.
                client.call("test/slow", json!({"ms": 0})).await.unwrap();
                node.shutdown();
            };
            let (result, ()) = tokio::join!(pending, stopper);
            assert_eq!(
                result.unwrap_err(),
                CallError::internal("connection closed"),
                "{transport:?}"
            );
        }
    }
}

mod admin {
    use super::*;
    use alknet_call::admin::{AdminHandle, register};
    use alknet_call::client::{ClientOptions, Transport as ClientTransport};
    use alknet_core::{Fingerprint, Identity, IdentityProvider};

    /// The admin is whoever presents `admin_key`; `user-token` is a user.
    struct Operators {
        admin: Fingerprint,
    }

    impl IdentityProvider for Operators {
        fn resolve_fingerprint(&self, fingerprint: &Fingerprint) -> Option<Identity> {
            (*fingerprint == self.admin).then(|| Identity::new("admin", ["admin"]))
        }

        fn resolve_token(&self, token: &str) -> Option<Identity> {
            (token == "user-token").then(|| Identity::new("bob", ["user"]))
        }
    }

    async fn admin_node() -> (NodeHandle, NodeKey) {
        let admin_key = NodeKey::generate();
        let registry = Registry::new();
        alknet_call::builtins::register_discovery(&registry).unwrap();
        let handle = AdminHandle::default();
        register(&registry, &handle).unwrap();
        let identities: Arc<dyn IdentityProvider> = Arc::new(Operators {
            admin: admin_key.node_id().fingerprint(),
        });
        let call = CallHandler::new(
            Arc::new(registry),
            identities.clone(),
            SessionLimits::default(),
        );
        let handlers = vec![call.into(), alknet_echo::EchoHandler.into()];
        let node = start_node_with(
            test_config(),
            handlers,
            identities,
            NodeKey::generate(),
            generate_certificate("web"),
            None,
        )
        .await;
        handle.attach(node.clone());
        (node, admin_key)
    }

    async fn connect(
        node: &NodeHandle,
        key: Option<NodeKey>,
        transport: ClientTransport,
    ) -> alknet_call::CallClient {
        let options = ClientOptions {
            transport,
            client_key: key,
            ..ClientOptions::default()
        };
        alknet_call::CallClient::connect(node.local_addr(), options)
            .await
            .expect("connected")
    }

    fn find<'a>(node: &'a Value, name: &str) -> Vec<&'a Value> {
        let mut found = Vec::new();
        if node["name"] == name {
            found.push(node);
        }
        for child in node["children"].as_array().into_iter().flatten() {
            found.extend(find(child, name));
        }
        found
    }

    /// Conformance item 28 (docs/protocol.md §16).
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn admin_tree_needs_admin_and_shows_the_callers_session() {
        let (node, admin_key) = admin_node().await;
        for transport in [ClientTransport::Quic, ClientTransport::Tcp] {
            let anonymous = connect(&node, None, transport).await;
            assert_eq!(
                anonymous.call("admin/tree", json!({})).await.unwrap_err(),
                CallError::operation_not_found("admin/tree")
            );
            let admin = connect(
                &node,
                Some(NodeKey::from_seed(&seed_of(&admin_key))),
                transport,
            )
            .await;
            let tree = admin.call("admin/tree", json!({})).await.unwrap();
            let root = &tree["root"];
            for name in [
                "node",
                "listener/quic",
                "listener/tcp",
                "router",
                "proto/alknet/call",
            ] {
                assert_eq!(find(root, name).len(), 1, "{transport:?}: {name} missing");
            }
            let sessions = find(root, "session");
            assert!(
                sessions
                    .iter()
                    .any(|s| s["identity"] == "admin" && s["kind"] == "connection"),
                "{transport:?}: the caller's own session is missing: {sessions:?}"
            );
        }
    }

    /// Conformance item 29 (docs/protocol.md §16).
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn admin_kill_closes_a_session_and_refuses_other_targets() {
        let (node, admin_key) = admin_node().await;
        let admin = connect(
            &node,
            Some(NodeKey::from_seed(&seed_of(&admin_key))),
            ClientTransport::Quic,
        )
        .await;
        // A victim session with a call in flight.
        let victim = connect(&node, None, ClientTransport::Tcp).await;
        victim.call("services/list", json!({})).await.unwrap();
        let tree = admin.call("admin/tree", json!({})).await.unwrap();
        let victim_id = find(&tree["root"], "session")
            .into_iter()
            .find(|s| s["identity"].is_null())
            .map(|s| s["id"].as_str().unwrap().to_owned())
            .expect("the victim's session");
        let stopped = admin
            .call("admin/kill", json!({"id": victim_id}))
            .await
            .unwrap();
        assert_eq!(stopped, json!({"stopped": victim_id}));
        assert_eq!(
            victim.call("services/list", json!({})).await.unwrap_err(),
            CallError::internal("connection closed")
        );
        let supervisor = find(&tree["root"], "proto/alknet/call")[0]["id"]
            .as_str()
            .unwrap()
            .to_owned();
        assert_eq!(
            admin
                .call("admin/kill", json!({"id": supervisor}))
                .await
                .unwrap_err(),
            CallError::invalid_input(format!("not a connection or session: {supervisor}"))
        );
        assert_eq!(
            admin
                .call("admin/kill", json!({"id": "0.999999"}))
                .await
                .unwrap_err(),
            CallError::not_found("actor not found: 0.999999")
        );
        // A user's token does not carry the admin scope.
        let user_options = ClientOptions {
            token: Some("user-token".into()),
            ..ClientOptions::default()
        };
        let user = alknet_call::CallClient::connect(node.local_addr(), user_options)
            .await
            .unwrap();
        assert_eq!(
            user.call("admin/kill", json!({"id": supervisor}))
                .await
                .unwrap_err(),
            CallError::operation_not_found("admin/kill")
        );
    }

    /// The 32-byte seed behind a test key, to hand an equal key to a client.
    fn seed_of(key: &NodeKey) -> [u8; 32] {
        key.seed()
    }
}

/// Conformance item 3 (docs/protocol.md §16).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn over_quic_the_stream_is_reset_and_stopped_with_protocol_error() {
    let (node, _) = node(SessionLimits::default()).await;
    let endpoint = quic_endpoint();
    let conn = quic_connect(&endpoint, node.local_addr(), &[CALL])
        .await
        .unwrap();
    let (mut send, mut recv) = conn.open_bi().await.unwrap();
    send.write_all(&[0xff, 0xff, 0xff, 0xff]).await.unwrap();
    let mut buffer = [0u8; 64];
    match tokio::time::timeout(Duration::from_secs(1), recv.read(&mut buffer)).await {
        Ok(Err(quinn::ReadError::Reset(code))) => assert_eq!(u64::from(code), 0x1),
        other => panic!("expected RESET_STREAM 0x1, got {other:?}"),
    }
    let stopped = tokio::time::timeout(Duration::from_secs(1), send.stopped()).await;
    assert!(
        matches!(stopped, Ok(Ok(Some(code))) if u64::from(code) == 0x1),
        "expected STOP_SENDING 0x1, got {stopped:?}"
    );
    // Only that stream: the connection still serves another.
    let (mut send, mut recv) = conn.open_bi().await.unwrap();
    let frame = encode_frame(
        &EventEnvelope::requested("ok", &CallRequest::new("/services/list", json!({}))),
        DEFAULT_MAX_FRAME,
    )
    .unwrap();
    send.write_all(&frame).await.unwrap();
    let mut header = [0u8; 4];
    recv.read_exact(&mut header)
        .await
        .expect("a reply on the same connection");
}

/// Conformance item 4 (docs/protocol.md §16).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn envelopes_are_exactly_what_the_protocol_says() {
    let (node, _) = node(SessionLimits::default()).await;
    for transport in both() {
        let mut raw = open(&node, transport).await;
        raw.call("s", "/test/count", json!({"n": 1})).await;
        let item = raw.next_json().await.expect("an item");
        assert_eq!(
            item,
            json!({"id": "s", "type": "call.responded", "payload": {"output": 0}}),
            "{transport:?}"
        );
        let completed = raw.next_json().await.expect("the end");
        assert_eq!(
            completed,
            json!({"id": "s", "type": "call.completed", "payload": {}}),
            "{transport:?}"
        );
        raw.call("e", "/nope/missing", json!({})).await;
        let error = raw.next_json().await.expect("an error");
        assert_eq!(error["type"], "call.error");
        let payload = error["payload"].as_object().expect("an object");
        assert!(
            !payload.contains_key("details"),
            "{transport:?}: a call.error without details has no details key: {error}"
        );
        assert_eq!(
            payload.keys().map(String::as_str).collect::<Vec<_>>(),
            ["code", "message", "retryable"]
        );
    }
}

/// Conformance item 5 (docs/protocol.md §16).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_unknown_type_is_ignored_and_the_next_request_answered() {
    let (node, _) = node(SessionLimits::default()).await;
    for transport in both() {
        let mut raw = open(&node, transport).await;
        let unknown = br#"{"id":"u","type":"call.future","payload":{"x":1}}"#;
        let mut frame = (unknown.len() as u32).to_be_bytes().to_vec();
        frame.extend_from_slice(unknown);
        raw.write_raw(&frame).await;
        let Event::Responded(_) = raw.round_trip("next", "/services/list", json!({})).await else {
            panic!("{transport:?}: the next request was not answered");
        };
    }
}

fn sessions(node: &NodeHandle) -> usize {
    node.tree()
        .and_then(|tree| tree.find("proto/alknet/call").map(|p| p.children.len()))
        .unwrap_or(0)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_peer_that_reads_nothing_is_disconnected_after_the_write_stall_limit() {
    let limits = SessionLimits {
        write_stall: Duration::from_millis(300),
        outgoing_queue: 4,
        ..SessionLimits::default()
    };
    let (node, _) = node(limits).await;
    for transport in both() {
        let mut raw = open(&node, transport).await;
        // Output without end, never read: the transport's buffers fill, the
        // node's writes wait, and past the limit the session is closed.
        raw.call("flood", "/test/count", json!({"n": u64::MAX}))
            .await;
        assert!(
            alknet_e2e::eventually(WAIT, || sessions(&node) == 1).await,
            "{transport:?}: the session started"
        );
        assert!(
            alknet_e2e::eventually(Duration::from_secs(20), || sessions(&node) == 0).await,
            "{transport:?}: the stalled session was never closed"
        );
        drop(raw);
    }
}
