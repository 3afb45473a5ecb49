//! Both ends call (docs/protocol.md §5.1, §9, §10.5): the node calls operations a
//! raw client registered on its session. The client here is hand-written
//! frames over quinn and tokio-rustls, not `CallClient`, so what is asserted is
//! the wire. Test doc comments cite the §16 conformance items; each runs over
//! QUIC and TCP+TLS.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use alknet_call::ErrorCode;
use alknet_call::envelope::{Event, EventEnvelope};
use alknet_call::registry::{OperationDef, Registry};
use alknet_call::{CallError, SessionHandle, SessionLimits};
use alknet_core::NoIdentities;
use alknet_e2e::raw_call::{Raw, Transport, both, open};
use alknet_e2e::{eventually, start_call_node, test_config};
use alknet_supervisors::NodeHandle;
use serde_json::{Value, json};

const WAIT: Duration = Duration::from_secs(5);

type Remembered = Arc<Mutex<Option<SessionHandle>>>;

/// A node with the built-ins, `diag/callback`, and two test operations:
/// `test/remember` keeps the calling session's handle, `test/relay` calls an
/// overlay operation through the remembered session — node-side code holding
/// another session's handle.
async fn node() -> (NodeHandle, Remembered) {
    let registry = Registry::new();
    alknet_call::builtins::register_discovery(&registry).unwrap();
    alknet_call::builtins::register_diagnostics(&registry).unwrap();
    let remembered: Remembered = Arc::default();
    let slot = remembered.clone();
    registry
        .register(OperationDef::mutation("test/remember").unary(move |cx, _| {
            *slot.lock().unwrap() = cx.session.clone();
            async move { Ok(json!({})) }
        }))
        .unwrap();
    let slot = remembered.clone();
    registry
        .register(
            OperationDef::mutation("test/relay").unary(move |_, input: Value| {
                let session = slot.lock().unwrap().clone();
                async move {
                    let session =
                        session.ok_or_else(|| CallError::internal("nobody remembered"))?;
                    let operation = input["operation"].as_str().unwrap_or_default().to_owned();
                    session.call_overlay(&operation, json!({})).await
                }
            }),
        )
        .unwrap();
    let node = start_call_node(
        test_config(),
        registry,
        Arc::new(NoIdentities),
        SessionLimits::default(),
    )
    .await;
    (node, remembered)
}

fn output(event: Event) -> Value {
    match event {
        Event::Responded(output) => output,
        other => panic!("expected call.responded, got {other:?}"),
    }
}

fn error(event: Event) -> CallError {
    match event {
        Event::Error(error) => error,
        other => panic!("expected call.error, got {other:?}"),
    }
}

/// Registers `names` (queries) on the raw client's session.
async fn register(raw: &mut Raw, names: &[&str]) {
    let operations: Vec<Value> = names
        .iter()
        .map(|name| json!({"name": name, "op_type": "query", "input_schema": {"type": "object"}}))
        .collect();
    let reply = raw
        .round_trip(
            "reg",
            "/session/register",
            json!({ "operations": operations }),
        )
        .await;
    assert_eq!(output(reply), json!({ "registered": names }));
}

/// Reads until a `call.requested` from the node arrives; returns its id and
/// operation. Replies to our own calls seen meanwhile are returned too.
async fn next_request(raw: &mut Raw) -> (String, String, Vec<(String, Event)>) {
    let mut others = Vec::new();
    loop {
        let (id, event) = raw.expect().await;
        match event {
            Event::Requested(request) => {
                return (id, request.operation_name().to_owned(), others);
            }
            event => others.push((id, event)),
        }
    }
}

/// Conformance item 25 (docs/protocol.md §16).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_node_calls_the_client_and_correlates_a_reply_from_another_stream() {
    let (node, _) = node().await;
    for transport in both() {
        let mut raw = open(&node, transport).await;
        register(&mut raw, &["ui/ping"]).await;
        raw.call(
            "cb",
            "/diag/callback",
            json!({"operation": "ui/ping", "input": {"n": 7}}),
        )
        .await;
        let (nested, operation, early) = next_request(&mut raw).await;
        assert_eq!(operation, "ui/ping", "{transport:?}");
        assert!(early.is_empty(), "{transport:?}: {early:?}");
        assert_ne!(nested, "cb", "the node chooses its own ids");
        let reply = EventEnvelope::responded(nested.clone(), json!({"pong": 7}));
        match transport {
            // Over QUIC the reply goes on a stream of its own (§5.2 rule 2).
            Transport::Quic => {
                let mut other = raw.open_stream().await.expect("QUIC");
                other.send(reply).await;
            }
            Transport::Tcp => raw.send(reply).await,
        }
        let (id, event) = raw.expect().await;
        assert_eq!(id, "cb");
        assert_eq!(output(event), json!({"pong": 7}), "{transport:?}");

        // An error reply is relayed as the caller's error.
        raw.call("cb2", "/diag/callback", json!({"operation": "ui/ping"}))
            .await;
        let (nested, _, _) = next_request(&mut raw).await;
        raw.send(EventEnvelope::error(
            nested,
            &CallError::invalid_input("no pong today"),
        ))
        .await;
        let (id, event) = raw.expect().await;
        assert_eq!(id, "cb2");
        assert_eq!(error(event), CallError::invalid_input("no pong today"));
    }
}

/// Conformance item 30 (docs/protocol.md §16).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn overlay_operations_are_the_sessions_own_and_die_with_it() {
    let (node, remembered) = node().await;
    for transport in both() {
        let mut owner = open(&node, transport).await;
        register(&mut owner, &["ui/ping"]).await;
        output(owner.round_trip("m", "/test/remember", json!({})).await);

        // Absent from discovery and from the registry, also for its owner.
        let listed = output(owner.round_trip("l", "/services/list", json!({})).await);
        assert!(
            !listed.to_string().contains("ui/ping"),
            "{transport:?}: {listed}"
        );
        assert_eq!(
            error(owner.round_trip("d", "/ui/ping", json!({})).await),
            CallError::operation_not_found("ui/ping")
        );
        // Another session cannot reach it through its own overlay.
        let mut other = open(&node, transport).await;
        assert_eq!(
            error(
                other
                    .round_trip("o", "/diag/callback", json!({"operation": "ui/ping"}))
                    .await
            ),
            CallError::operation_not_found("ui/ping")
        );
        // Node-side code holding the owner's handle reaches it.
        other
            .call("r", "/test/relay", json!({"operation": "ui/ping"}))
            .await;
        let (nested, operation, _) = next_request(&mut owner).await;
        assert_eq!(operation, "ui/ping");
        owner
            .send(EventEnvelope::responded(nested, json!("pong")))
            .await;
        let (id, event) = other.expect().await;
        assert_eq!((id.as_str(), output(event)), ("r", json!("pong")));

        // Gone once the session closes.
        owner.close();
        let handle = remembered.lock().unwrap().clone().expect("remembered");
        assert!(
            eventually(WAIT, || handle.overlay().is_empty()).await,
            "{transport:?}: overlay outlived its session"
        );
        assert_eq!(
            error(
                other
                    .round_trip("r2", "/test/relay", json!({"operation": "ui/ping"}))
                    .await
            ),
            CallError::operation_not_found("ui/ping")
        );
    }
}

/// Conformance item 30 (docs/protocol.md §16).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn invalid_entries_are_refused_whole() {
    let (node, _) = node().await;
    for transport in both() {
        let mut raw = open(&node, transport).await;
        let refused = error(
            raw.round_trip(
                "bad",
                "/session/register",
                json!({"operations": [
                    {"name": "ui/fine", "op_type": "query"},
                    {"name": "no-namespace", "op_type": "query"}
                ]}),
            )
            .await,
        );
        assert_eq!(
            refused.code,
            ErrorCode::InvalidInput,
            "{transport:?}: {refused:?}"
        );
        let missing = error(
            raw.round_trip(
                "bad2",
                "/session/register",
                json!({"operations": [{"name": "ui/x"}]}),
            )
            .await,
        );
        assert_eq!(missing.code, ErrorCode::InvalidInput);
        // Nothing of the refused call was registered.
        assert_eq!(
            error(
                raw.round_trip("cb", "/diag/callback", json!({"operation": "ui/fine"}))
                    .await
            ),
            CallError::operation_not_found("ui/fine")
        );
    }
}

/// A peer session serving `peer/hang` and a caller whose request `outer` the
/// node relays to it: returns both and the id of the relayed request.
async fn relayed_to_a_peer(node: &NodeHandle, transport: Transport) -> (Raw, Raw, String) {
    let mut peer = open(node, transport).await;
    register(&mut peer, &["peer/hang"]).await;
    output(peer.round_trip("m", "/test/remember", json!({})).await);
    let mut caller = open(node, transport).await;
    caller
        .call("outer", "/test/relay", json!({"operation": "peer/hang"}))
        .await;
    let (nested, operation, _) = next_request(&mut peer).await;
    assert_eq!(operation, "peer/hang");
    (peer, caller, nested)
}

/// Conformance item 21 (docs/protocol.md §16).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn aborting_a_request_aborts_its_nested_call_on_the_other_session() {
    let (node, _) = node().await;
    for transport in both() {
        let (mut peer, mut caller, nested) = relayed_to_a_peer(&node, transport).await;
        caller.send(EventEnvelope::aborted("outer")).await;
        // The node relays the abort for its own id on the peer's session.
        let (id, event) = peer.expect().await;
        assert_eq!(
            (id.as_str(), &event),
            (nested.as_str(), &Event::Aborted),
            "{transport:?}"
        );
        // Nothing more for the aborted request (round_trip insists the next
        // envelope is for "next"); the caller's session goes on.
        output(caller.round_trip("next", "/services/list", json!({})).await);
    }
}

/// Conformance item 24 (docs/protocol.md §16).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn closing_a_session_fails_the_nodes_outstanding_calls_on_it() {
    let (node, _) = node().await;
    for transport in both() {
        let (peer, mut caller, _) = relayed_to_a_peer(&node, transport).await;
        peer.close();
        let (id, event) = caller.expect().await;
        assert_eq!(id, "outer");
        assert_eq!(
            error(event),
            CallError::internal("connection closed"),
            "{transport:?}"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn call_client_serves_the_operations_it_registers() {
    use alknet_call::client::{ClientOptions, Transport as ClientTransport};
    use alknet_call::registry::OperationDef;
    let (node, _) = node().await;
    for transport in [ClientTransport::Quic, ClientTransport::Tcp] {
        let client = alknet_call::CallClient::connect(
            node.local_addr(),
            ClientOptions {
                transport,
                ..ClientOptions::default()
            },
        )
        .await
        .unwrap();
        client
            .register(
                OperationDef::query("ui/double")
                    .input_schema(json!({
                        "type": "object",
                        "properties": {"n": {"type": "integer"}},
                        "required": ["n"]
                    }))
                    .unary(|_, input: Value| async move {
                        Ok(json!(input["n"].as_i64().unwrap_or(0) * 2))
                    }),
            )
            .await
            .unwrap();
        client
            .register(
                OperationDef::subscription("ui/ticks")
                    .stream(|_, _| futures::stream::iter((0..3).map(|i| Ok(json!(i))))),
            )
            .await
            .unwrap();
        let doubled = client
            .call(
                "diag/callback",
                json!({"operation": "ui/double", "input": {"n": 21}}),
            )
            .await
            .unwrap();
        assert_eq!(doubled, json!(42), "{transport:?}");
        let ticks = client
            .call("diag/callback", json!({"operation": "ui/ticks"}))
            .await
            .unwrap();
        assert_eq!(ticks, json!([0, 1, 2]), "{transport:?}");
        // The node checks the registered schema before calling back.
        let refused = client
            .call(
                "diag/callback",
                json!({"operation": "ui/double", "input": {}}),
            )
            .await
            .unwrap_err();
        assert_eq!(refused.code, ErrorCode::InvalidInput, "{refused:?}");
    }
}
