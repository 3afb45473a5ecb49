//! The WebSocket session at `/alknet/call` (docs/protocol.md §12) against a node in
//! this process: tokio-tungstenite upgrading over HTTP/1.1 and over HTTP/2
//! extended CONNECT, and a hand-written client for the idle timeout, which
//! needs a peer that provably answers nothing. Test doc comments cite §16 items.

use std::sync::Arc;
use std::time::{Duration, Instant};

use alknet_call::admin::AdminHandle;
use alknet_call::registry::{OperationDef, Registry};
use alknet_call::{CallHandler, SessionLimits};
use alknet_core::IdentityProvider;
use alknet_e2e::client::tls_connect;
use alknet_e2e::ws::{
    self, Auth, bearer_entry, call, close_frame, connect_h1, connect_h1_request, connect_h2,
    next_envelope, round_trip, send_json,
};
use alknet_e2e::{TestTokens, hanging_query, start_web_node};
use alknet_http::{HttpHandler, HttpSettings};
use alknet_supervisors::NodeHandle;
use futures::SinkExt;
use serde_json::{Value, json};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::sync::mpsc;
use tokio_tungstenite::tungstenite::client::IntoClientRequest;
use tokio_tungstenite::tungstenite::{self, Message};

struct TestNode {
    node: NodeHandle,
    dropped: mpsc::UnboundedReceiver<()>,
}

async fn node() -> TestNode {
    node_with(HttpSettings::default()).await
}

async fn node_with(settings: HttpSettings) -> TestNode {
    let (dropped_tx, dropped) = mpsc::unbounded_channel();
    let registry = Registry::new();
    alknet_call::builtins::register_discovery(&registry).unwrap();
    alknet_call::builtins::register_diagnostics(&registry).unwrap();
    let admin = AdminHandle::default();
    alknet_call::admin::register(&registry, &admin).unwrap();
    registry
        .register(hanging_query("test/hang", dropped_tx.clone()))
        .unwrap();
    registry
        .register(
            OperationDef::subscription("test/count").stream(|_, input: Value| {
                let n = input["n"].as_u64().unwrap_or(3);
                futures::stream::iter((0..n).map(|i| Ok(json!({ "i": i }))))
            }),
        )
        .unwrap();
    let registry = Arc::new(registry);
    let identities: Arc<dyn IdentityProvider> = Arc::new(TestTokens);
    let handlers = vec![
        CallHandler::new(
            registry.clone(),
            identities.clone(),
            SessionLimits::default(),
        )
        .into(),
        HttpHandler::new(registry, identities.clone(), settings).into(),
    ];
    let node = start_web_node(handlers, identities).await;
    admin.attach(node.clone());
    TestNode { node, dropped }
}

fn refusal(error: tungstenite::Error) -> (u16, Option<String>, String) {
    match error {
        tungstenite::Error::Http(response) => {
            let status = response.status().as_u16();
            let www = response
                .headers()
                .get("www-authenticate")
                .map(|v| v.to_str().unwrap().to_owned());
            let body = String::from_utf8_lossy(response.body().as_deref().unwrap_or_default())
                .into_owned();
            (status, www, body)
        }
        other => panic!("expected an HTTP refusal, got {other}"),
    }
}

/// Conformance item 40 (docs/protocol.md §16).
#[tokio::test]
async fn an_upgrade_without_a_resolvable_token_is_401() {
    let t = node().await;
    let addr = t.node.local_addr();
    for auth in [
        Auth::None,
        Auth::Header("wrong-token"),
        Auth::Subprotocol("wrong-token"),
    ] {
        let error = connect_h1(addr, auth).await.err().expect("refused");
        let (status, www, body) = refusal(error);
        assert_eq!(status, 401, "{auth:?}");
        assert_eq!(www.as_deref(), Some("Bearer"), "{auth:?}");
        assert_eq!(body, "401 Unauthorized", "{auth:?}");
    }
    // A bearer entry that is not unpadded base64url of UTF-8.
    for entry in ["alknet.bearer.YWRtaW4tdG9rZW4=", "alknet.bearer._w"] {
        let mut request = format!("wss://localhost:{}/alknet/call", addr.port())
            .into_client_request()
            .unwrap();
        request.headers_mut().insert(
            "sec-websocket-protocol",
            format!("alknet.call, {entry}").parse().unwrap(),
        );
        let error = connect_h1_request(addr, request)
            .await
            .err()
            .expect("refused");
        assert_eq!(refusal(error).0, 401, "{entry}");
    }
    assert_eq!(connect_h2(addr, None).await.err(), Some(401));
    assert_eq!(connect_h2(addr, Some("wrong-token")).await.err(), Some(401));
}

/// Conformance item 40 (docs/protocol.md §16).
#[tokio::test]
async fn subprotocol_auth_selects_alknet_call_and_never_echoes_the_token() {
    let t = node().await;
    let (mut socket, response) = connect_h1(t.node.local_addr(), Auth::Subprotocol("admin-token"))
        .await
        .expect("upgraded");
    assert_eq!(response.status(), 101);
    assert_eq!(
        response.headers().get("sec-websocket-protocol").unwrap(),
        "alknet.call"
    );
    // The session runs as the token's identity: admin operations are listed.
    let reply = round_trip(&mut socket, "l1", "/services/list", json!({})).await;
    assert_eq!(reply["type"], "call.responded");
    let names: Vec<&str> = reply["payload"]["output"]["operations"]
        .as_array()
        .unwrap()
        .iter()
        .map(|op| op["name"].as_str().unwrap())
        .collect();
    assert!(names.contains(&"admin/tree"), "{names:?}");
    // The gateway shape does not exist on a session.
    let reply = round_trip(&mut socket, "s1", "/search", json!({})).await;
    assert_eq!(reply["type"], "call.error");
    assert_eq!(reply["payload"]["code"], "NOT_FOUND");
    assert_eq!(reply["payload"]["message"], "operation not found: search");
}

/// Conformance item 40 (docs/protocol.md §16).
#[tokio::test]
async fn a_subprotocol_list_without_alknet_call_is_400_and_a_plain_get_is_400() {
    let t = node().await;
    let addr = t.node.local_addr();
    let mut request = format!("wss://localhost:{}/alknet/call", addr.port())
        .into_client_request()
        .unwrap();
    request.headers_mut().insert(
        "sec-websocket-protocol",
        bearer_entry("admin-token").parse().unwrap(),
    );
    let error = connect_h1_request(addr, request)
        .await
        .err()
        .expect("refused");
    assert_eq!(refusal(error).0, 400);
    // Not an upgrade at all.
    let mut tls = tls_connect(addr, &["http/1.1"]).await.unwrap();
    tls.write_all(
        b"GET /alknet/call HTTP/1.1\r\nhost: localhost\r\nauthorization: Bearer admin-token\r\nconnection: close\r\n\r\n",
    )
    .await
    .unwrap();
    let mut response = Vec::new();
    tls.read_to_end(&mut response).await.ok();
    let response = String::from_utf8_lossy(&response);
    assert!(response.starts_with("HTTP/1.1 400"), "{response}");
}

/// Conformance item 40 (docs/protocol.md §16).
#[tokio::test]
async fn header_auth_works_over_http1_and_http2_extended_connect() {
    let t = node().await;
    let addr = t.node.local_addr();
    let (h1, response) = connect_h1(addr, Auth::Header("user-token"))
        .await
        .expect("upgraded");
    assert!(
        response.headers().get("sec-websocket-protocol").is_none(),
        "no subprotocol offered, none selected"
    );
    let h2 = connect_h2(addr, Some("user-token"))
        .await
        .expect("upgraded over HTTP/2");
    for mut socket in [h1, h2] {
        // `bob` has scope `user`: the admin tree is refused per call, as if
        // it did not exist.
        let reply = round_trip(&mut socket, "t1", "admin/tree", json!({})).await;
        assert_eq!(reply["payload"]["code"], "NOT_FOUND", "{reply}");
        assert_eq!(
            reply["payload"]["message"],
            "operation not found: admin/tree"
        );
        let reply = round_trip(&mut socket, "e1", "diag/echo", json!({"x": [1, 2]})).await;
        assert_eq!(reply["payload"]["output"], json!({"x": [1, 2]}));
    }
}

#[tokio::test]
async fn a_ws_session_is_listed_under_its_http_conn_with_its_identity_and_admin_kill_closes_it_with_1008()
 {
    let t = node().await;
    let addr = t.node.local_addr();
    for version in ["http/1.1", "h2"] {
        let mut socket = if version == "h2" {
            connect_h2(addr, Some("admin-token")).await.unwrap()
        } else {
            connect_h1(addr, Auth::Subprotocol("admin-token"))
                .await
                .unwrap()
                .0
        };
        let reply = round_trip(&mut socket, "tree", "admin/tree", json!({})).await;
        let root = &reply["payload"]["output"]["root"];
        let http = find(root, "proto/http").expect("proto/http");
        let ws_session = http["children"]
            .as_array()
            .unwrap()
            .iter()
            .filter(|conn| conn["name"] == "http-conn")
            .flat_map(|conn| conn["children"].as_array().unwrap())
            .find(|child| child["name"] == "ws-session")
            .unwrap_or_else(|| panic!("no ws-session under an http-conn: {http}"))
            .clone();
        assert_eq!(ws_session["kind"], "session");
        assert_eq!(ws_session["identity"], "root");
        assert_eq!(ws_session["alpn"], version);
        assert!(ws_session["requests"].as_u64().unwrap() >= 1);
        let id = ws_session["id"].as_str().unwrap();
        // Killing it from another session closes this socket with 1008.
        let mut operator = connect_h1(addr, Auth::Header("admin-token"))
            .await
            .unwrap()
            .0;
        let killed = round_trip(&mut operator, "k", "admin/kill", json!({ "id": id })).await;
        assert_eq!(killed["type"], "call.responded", "{killed}");
        assert_eq!(
            close_frame(&mut socket).await,
            (1008, "killed by operator".to_owned())
        );
        // Gone from the tree once killed.
        let reply = round_trip(&mut operator, "tree2", "admin/tree", json!({})).await;
        let tree = reply["payload"]["output"]["root"].to_string();
        assert!(!tree.contains(&format!("\"{id}\"")), "{tree}");
    }
}

#[tokio::test]
async fn admin_kill_reaches_a_session_flooded_with_messages() {
    use futures::StreamExt;
    let t = node().await;
    let addr = t.node.local_addr();
    let socket = connect_h1(addr, Auth::Header("user-token"))
        .await
        .unwrap()
        .0;
    let (mut sink, mut stream) = socket.split();
    // Aborts of unknown ids: applied and answered with nothing, as fast as
    // the node takes them, until the socket closes.
    let flood = tokio::spawn(async move {
        let abort =
            serde_json::to_vec(&json!({"type": "call.aborted", "id": "x", "payload": {}})).unwrap();
        let mut sent = 0u64;
        while sink
            .send(Message::Binary(abort.clone().into()))
            .await
            .is_ok()
        {
            sent += 1;
        }
        sent
    });
    let mut operator = connect_h1(addr, Auth::Header("admin-token"))
        .await
        .unwrap()
        .0;
    let reply = round_trip(&mut operator, "tree", "admin/tree", json!({})).await;
    let root = reply["payload"]["output"]["root"].clone();
    let bob = find(&root, "proto/http").unwrap()["children"]
        .as_array()
        .unwrap()
        .iter()
        .flat_map(|conn| conn["children"].as_array().unwrap())
        .find(|child| child["identity"] == "bob")
        .unwrap_or_else(|| panic!("bob's ws-session: {root}"))
        .clone();
    let killed = round_trip(&mut operator, "k", "admin/kill", json!({ "id": bob["id"] })).await;
    assert_eq!(killed["type"], "call.responded", "{killed}");
    let close = tokio::time::timeout(Duration::from_secs(10), async {
        while let Some(message) = stream.next().await {
            if let Ok(Message::Close(frame)) = message {
                return frame.map(|f| (u16::from(f.code), f.reason.to_string()));
            }
        }
        None
    })
    .await
    .expect("the flooded session was not closed within 10 s");
    assert_eq!(close, Some((1008, "killed by operator".to_owned())));
    assert!(flood.await.unwrap() > 0);
}

#[tokio::test]
async fn killing_the_http_conn_closes_its_ws_sessions_with_1008() {
    let t = node().await;
    let addr = t.node.local_addr();
    // Over HTTP/1.1 the socket outlives hyper's connection, so it can still
    // say why it closes; over HTTP/2 it ends with the connection.
    let mut socket = connect_h1(addr, Auth::Header("user-token"))
        .await
        .unwrap()
        .0;
    round_trip(&mut socket, "e", "diag/echo", json!({})).await;
    let mut operator = connect_h1(addr, Auth::Header("admin-token"))
        .await
        .unwrap()
        .0;
    let reply = round_trip(&mut operator, "tree", "admin/tree", json!({})).await;
    let http = find(&reply["payload"]["output"]["root"], "proto/http")
        .unwrap()
        .clone();
    // The http-conn whose ws-session is bob's.
    let conn = http["children"]
        .as_array()
        .unwrap()
        .iter()
        .find(|conn| {
            conn["children"]
                .as_array()
                .unwrap()
                .iter()
                .any(|child| child["identity"] == "bob")
        })
        .unwrap_or_else(|| panic!("bob's http-conn: {http}"));
    let killed = round_trip(
        &mut operator,
        "k",
        "admin/kill",
        json!({ "id": conn["id"] }),
    )
    .await;
    assert_eq!(killed["type"], "call.responded", "{killed}");
    assert_eq!(
        close_frame(&mut socket).await,
        (1008, "killed by operator".to_owned())
    );
}

fn find<'a>(node: &'a Value, name: &str) -> Option<&'a Value> {
    if node["name"] == name {
        return Some(node);
    }
    node["children"]
        .as_array()?
        .iter()
        .find_map(|c| find(c, name))
}

/// Conformance item 41 (docs/protocol.md §16).
#[tokio::test]
async fn a_text_message_closes_with_1002() {
    let t = node().await;
    let (mut socket, _) = connect_h1(t.node.local_addr(), Auth::Header("user-token"))
        .await
        .unwrap();
    socket
        .send(Message::Text(r#"{"type":"call.requested"}"#.into()))
        .await
        .unwrap();
    assert_eq!(
        close_frame(&mut socket).await,
        (1002, "text messages not supported".to_owned())
    );
}

/// Conformance item 41 (docs/protocol.md §16).
#[tokio::test]
async fn an_invalid_envelope_closes_with_1002() {
    let t = node().await;
    for bad in [
        &b"{nope"[..],
        b"[]",
        br#"{"type":"call.requested","id":"","payload":{}}"#,
    ] {
        let (mut socket, _) = connect_h1(t.node.local_addr(), Auth::Header("user-token"))
            .await
            .unwrap();
        socket
            .send(Message::Binary(bad.to_vec().into()))
            .await
            .unwrap();
        assert_eq!(
            close_frame(&mut socket).await,
            (1002, "invalid EventEnvelope".to_owned()),
            "{}",
            String::from_utf8_lossy(bad)
        );
    }
}

/// Conformance item 41 (docs/protocol.md §16).
#[tokio::test]
async fn a_message_under_16_mib_is_served_and_a_17_mib_one_closes_with_1009() {
    let t = node().await;
    let (mut socket, _) = connect_h1(t.node.local_addr(), Auth::Header("user-token"))
        .await
        .unwrap();
    // Just under the limit, both ways: served.
    let filler = "x".repeat(16 * 1024 * 1024 - 200);
    let reply = round_trip(&mut socket, "big", "diag/echo", json!({ "s": filler })).await;
    assert_eq!(reply["type"], "call.responded");
    assert_eq!(
        reply["payload"]["output"]["s"].as_str().map(str::len),
        Some(filler.len())
    );
    let too_big = vec![b' '; 17 * 1024 * 1024];
    socket.send(Message::Binary(too_big.into())).await.unwrap();
    assert_eq!(
        close_frame(&mut socket).await,
        (1009, "message too big".to_owned())
    );
}

#[tokio::test]
async fn a_subscription_arrives_as_responded_events_then_completed() {
    let t = node().await;
    let (mut socket, _) = connect_h1(t.node.local_addr(), Auth::Header("user-token"))
        .await
        .unwrap();
    call(&mut socket, "sub", "test/count", json!({"n": 3})).await;
    for i in 0..3 {
        let event = next_envelope(&mut socket).await;
        assert_eq!(event["type"], "call.responded");
        assert_eq!(event["id"], "sub");
        assert_eq!(event["payload"]["output"], json!({ "i": i }));
    }
    let end = next_envelope(&mut socket).await;
    assert_eq!(
        end,
        json!({"type": "call.completed", "id": "sub", "payload": {}})
    );
}

#[tokio::test]
async fn an_abort_drops_the_handler_and_closing_the_socket_aborts_the_rest() {
    let mut t = node().await;
    let (mut socket, _) = connect_h1(t.node.local_addr(), Auth::Header("user-token"))
        .await
        .unwrap();
    call(&mut socket, "h1", "test/hang", json!({})).await;
    // Answered after the hanging request: it is running.
    round_trip(&mut socket, "e", "diag/echo", json!({})).await;
    send_json(
        &mut socket,
        &json!({"type": "call.aborted", "id": "h1", "payload": {}}),
    )
    .await;
    let started = Instant::now();
    tokio::time::timeout(Duration::from_secs(1), t.dropped.recv())
        .await
        .expect("the handler is dropped")
        .unwrap();
    assert!(started.elapsed() < Duration::from_millis(100));
    // Nothing more for h1: the next envelope answers the next request.
    let reply = round_trip(&mut socket, "e2", "diag/echo", json!(2)).await;
    assert_eq!(reply["payload"]["output"], 2);
    // §9.3: closing the socket aborts what it left running.
    call(&mut socket, "h2", "test/hang", json!({})).await;
    round_trip(&mut socket, "e3", "diag/echo", json!({})).await;
    socket.close(None).await.unwrap();
    tokio::time::timeout(Duration::from_secs(2), t.dropped.recv())
        .await
        .expect("closing the socket drops the handler")
        .unwrap();
}

#[tokio::test]
async fn the_257th_request_in_flight_is_unavailable() {
    let t = node().await;
    let (mut socket, _) = connect_h1(t.node.local_addr(), Auth::Header("user-token"))
        .await
        .unwrap();
    for i in 0..256 {
        call(&mut socket, &format!("h{i}"), "test/hang", json!({})).await;
    }
    let reply = round_trip(&mut socket, "one-more", "diag/echo", json!({})).await;
    assert_eq!(reply["payload"]["code"], "UNAVAILABLE", "{reply}");
    assert_eq!(reply["payload"]["retryable"], true);
    assert_eq!(reply["payload"]["message"], "too many in-flight requests");
}

#[tokio::test]
async fn the_node_calls_an_operation_the_browser_side_registered_on_its_session() {
    let t = node().await;
    for version in ["http/1.1", "h2"] {
        let mut socket = if version == "h2" {
            connect_h2(t.node.local_addr(), Some("user-token"))
                .await
                .unwrap()
        } else {
            connect_h1(t.node.local_addr(), Auth::Header("user-token"))
                .await
                .unwrap()
                .0
        };
        let spec = json!({"name": "ui/ping", "op_type": "query"});
        let reply = round_trip(
            &mut socket,
            "r",
            "session/register",
            json!({ "operations": [spec] }),
        )
        .await;
        assert_eq!(reply["type"], "call.responded", "{reply}");
        call(
            &mut socket,
            "cb",
            "diag/callback",
            json!({"operation": "ui/ping", "input": {"n": 7}}),
        )
        .await;
        // The node's request for our operation, which we answer.
        let request = next_envelope(&mut socket).await;
        assert_eq!(request["type"], "call.requested", "{request}");
        assert_eq!(request["payload"]["operationId"], "/ui/ping");
        let input = request["payload"]["input"].clone();
        send_json(
            &mut socket,
            &json!({
                "type": "call.responded",
                "id": request["id"],
                "payload": {"output": {"pong": input["n"]}}
            }),
        )
        .await;
        let reply = next_envelope(&mut socket).await;
        assert_eq!(reply["id"], "cb");
        assert_eq!(reply["payload"]["output"], json!({"pong": 7}), "{version}");
    }
}

#[tokio::test]
async fn shutdown_closes_sessions_with_1001_going_away() {
    let t = node().await;
    let (mut socket, _) = connect_h1(t.node.local_addr(), Auth::Header("user-token"))
        .await
        .unwrap();
    round_trip(&mut socket, "e", "diag/echo", json!({})).await;
    t.node.shutdown();
    assert_eq!(
        close_frame(&mut socket).await,
        (1001, "going away".to_owned())
    );
}

/// Configured timings, so the behaviour is checked in seconds; the default
/// timings are checked by the next test.
#[tokio::test]
async fn pings_keep_a_responsive_peer_open_and_a_silent_one_is_closed_with_1001() {
    let settings = HttpSettings {
        websocket: alknet_http::websocket::WebSocketSettings {
            ping_interval: Duration::from_millis(300),
            idle_timeout: Duration::from_millis(900),
        },
        ..HttpSettings::default()
    };
    let t = node_with(settings).await;
    // tungstenite answers each ping while we read: the session outlives
    // several idle timeouts.
    let (mut socket, _) = connect_h1(t.node.local_addr(), Auth::Header("user-token"))
        .await
        .unwrap();
    let pings = read_pings(&mut socket, Duration::from_millis(2_500)).await;
    assert!(pings >= 5, "{pings} pings in 2.5 s");
    let reply = round_trip(&mut socket, "alive", "diag/echo", json!(1)).await;
    assert_eq!(reply["payload"]["output"], 1);
    // A peer that answers nothing is closed.
    let (code, reason, after) = silent_peer(&t.node).await;
    assert_eq!((code, reason.as_str()), (1001, "idle timeout"));
    assert!(
        after >= Duration::from_millis(900) && after < Duration::from_millis(2_000),
        "{after:?}"
    );
}

/// Conformance item 41 (docs/protocol.md §16).
#[tokio::test]
async fn a_peer_that_stops_answering_pings_is_closed_between_60_and_65_s() {
    let t = node().await;
    let (code, reason, after) = silent_peer(&t.node).await;
    assert_eq!((code, reason.as_str()), (1001, "idle timeout"));
    assert!(
        after >= Duration::from_secs(60) && after <= Duration::from_secs(65),
        "{after:?}"
    );
}

#[tokio::test]
async fn messages_sent_with_the_upgrade_request_are_not_lost() {
    // A client may send its first messages without waiting for the 101:
    // they reach the server in the same read as the request, inside the
    // HTTP layer's buffer, and must be handed to the session first.
    let t = node().await;
    let mut tls = tls_connect(t.node.local_addr(), &["http/1.1"])
        .await
        .unwrap();
    let mut bytes = b"GET /alknet/call HTTP/1.1\r\nhost: localhost\r\nconnection: upgrade\r\n\
        upgrade: websocket\r\nsec-websocket-version: 13\r\n\
        sec-websocket-key: dGhlIHNhbXBsZSBub25jZQ==\r\nauthorization: Bearer user-token\r\n\r\n"
        .to_vec();
    for id in ["early-1", "early-2"] {
        let envelope = json!({
            "type": "call.requested",
            "id": id,
            "payload": {"operationId": "/diag/echo", "input": {"id": id}}
        });
        bytes.extend(masked_binary_frame(&serde_json::to_vec(&envelope).unwrap()));
    }
    tls.write_all(&bytes).await.unwrap();
    // The 101 response, read byte by byte so that nothing after it is taken.
    let mut head = Vec::new();
    while !head.ends_with(b"\r\n\r\n") {
        let mut byte = [0u8; 1];
        tls.read_exact(&mut byte).await.unwrap();
        head.push(byte[0]);
    }
    assert!(
        head.starts_with(b"HTTP/1.1 101"),
        "{}",
        String::from_utf8_lossy(&head)
    );
    let io: Box<dyn ws::Io> = Box::new(tls);
    let mut socket = tokio_tungstenite::WebSocketStream::from_raw_socket(
        io,
        tungstenite::protocol::Role::Client,
        None,
    )
    .await;
    for id in ["early-1", "early-2"] {
        let reply = next_envelope(&mut socket).await;
        assert_eq!(reply["id"], id, "{reply}");
        assert_eq!(reply["payload"]["output"], json!({ "id": id }), "{reply}");
    }
}

/// One final binary frame as a client sends it: masked (RFC 6455 §5.3).
fn masked_binary_frame(payload: &[u8]) -> Vec<u8> {
    const MASK: [u8; 4] = [0x37, 0xfa, 0x21, 0x3d];
    assert!(payload.len() < 126, "a one-byte length suffices here");
    let mut frame = vec![0x82, 0x80 | payload.len() as u8];
    frame.extend(MASK);
    frame.extend(payload.iter().enumerate().map(|(i, b)| b ^ MASK[i % 4]));
    frame
}

async fn read_pings(socket: &mut ws::Socket, period: Duration) -> usize {
    use futures::StreamExt;
    let end = tokio::time::Instant::now() + period;
    let mut pings = 0;
    while let Ok(Some(message)) = tokio::time::timeout_at(end, socket.next()).await {
        if matches!(message.unwrap(), Message::Ping(_)) {
            pings += 1;
        }
    }
    pings
}

/// Upgrades by hand and then answers nothing — not even the pings a
/// WebSocket library would answer for us — and reads frames until the close.
/// Returns its code, its reason, and the time since our last byte.
async fn silent_peer(node: &NodeHandle) -> (u16, String, Duration) {
    let mut tls = tls_connect(node.local_addr(), &["http/1.1"]).await.unwrap();
    tls.write_all(
        b"GET /alknet/call HTTP/1.1\r\nhost: localhost\r\nconnection: upgrade\r\nupgrade: websocket\r\n\
          sec-websocket-version: 13\r\nsec-websocket-key: dGhlIHNhbXBsZSBub25jZQ==\r\n\
          authorization: Bearer user-token\r\n\r\n",
    )
    .await
    .unwrap();
    let last_sent = Instant::now();
    let mut buffer = Vec::new();
    let mut chunk = [0u8; 4096];
    // The 101 response.
    let head_end = loop {
        let n = tls.read(&mut chunk).await.unwrap();
        assert!(n > 0, "the node closed during the upgrade");
        buffer.extend_from_slice(&chunk[..n]);
        if let Some(end) = buffer.windows(4).position(|w| w == b"\r\n\r\n") {
            break end + 4;
        }
    };
    assert!(
        buffer.starts_with(b"HTTP/1.1 101"),
        "{}",
        String::from_utf8_lossy(&buffer)
    );
    buffer.drain(..head_end);
    loop {
        // Server frames are unmasked; ours are all short (ping, close).
        while buffer.len() >= 2 {
            let opcode = buffer[0] & 0x0f;
            let len = usize::from(buffer[1] & 0x7f);
            assert!(len < 126, "a control frame");
            if buffer.len() < 2 + len {
                break;
            }
            let payload: Vec<u8> = buffer.drain(..2 + len).skip(2).collect();
            match opcode {
                0x9 => {} // ping: deliberately unanswered
                0x8 => {
                    let code = u16::from_be_bytes([payload[0], payload[1]]);
                    let reason = String::from_utf8(payload[2..].to_vec()).unwrap();
                    return (code, reason, last_sent.elapsed());
                }
                other => panic!("unexpected opcode {other}"),
            }
        }
        let n = tokio::time::timeout(Duration::from_secs(90), tls.read(&mut chunk))
            .await
            .expect("the node closes a silent peer")
            .unwrap();
        assert!(n > 0, "the socket ended without a close frame");
        buffer.extend_from_slice(&chunk[..n]);
    }
}

#[tokio::test]
async fn every_server_message_is_binary_including_errors() {
    let t = node().await;
    let (mut socket, _) = connect_h1(t.node.local_addr(), Auth::Header("user-token"))
        .await
        .unwrap();
    // `next` asserts binary and a leading `{` for every message.
    let reply = round_trip(&mut socket, "x", "nope/missing", json!({})).await;
    assert_eq!(
        reply,
        json!({"type": "call.error", "id": "x", "payload": {
            "code": "NOT_FOUND", "message": "operation not found: nope/missing", "retryable": false}})
    );
    let reply = round_trip(&mut socket, "x2", "admin/tree", json!({})).await;
    assert_eq!(reply["payload"]["code"], "NOT_FOUND");
}
