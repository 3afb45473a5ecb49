//! The HTTP handler through curl (docs/protocol.md §11): a node in this process
//! serving `alknet/call`, `h2` and `http/1.1` on one port, and the system's
//! curl over TLS, with `--http1.1` and with `--http2`. Test doc comments cite the §16
//! conformance items.

use std::collections::BTreeMap;
use std::process::Command;
use std::sync::Arc;
use std::time::Duration;

use alknet_call::access::AccessControl;
use alknet_call::registry::{ErrorSchema, OperationDef, Registry};
use alknet_call::{CallError, CallHandler, SessionLimits};
use alknet_core::IdentityProvider;
use alknet_e2e::client::tls_connect;
use alknet_e2e::{DropSignal, TestTokens, hanging_query, start_web_node};
use alknet_http::decoy::Decoy;
use alknet_http::{ExtraRoute, HttpHandler, HttpSettings};
use alknet_supervisors::NodeHandle;
use serde_json::{Value, json};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::sync::mpsc;

async fn node() -> (NodeHandle, mpsc::UnboundedReceiver<()>) {
    node_with(Decoy::NotFound, Vec::new()).await
}

async fn node_with(
    decoy: Decoy,
    extra: Vec<ExtraRoute>,
) -> (NodeHandle, mpsc::UnboundedReceiver<()>) {
    let (dropped_tx, dropped) = mpsc::unbounded_channel();
    let wait_dropped = dropped_tx.clone();
    let registry = Registry::new();
    alknet_call::builtins::register_discovery(&registry).unwrap();
    registry
        .register(
            OperationDef::query("test/echo")
                .input_schema(json!({"type": "object", "properties": {"n": {"type": "integer"}}, "required": ["n"]}))
                .unary(|_, input| async move { Ok(input) }),
        )
        .unwrap();
    registry
        .register(
            OperationDef::query("test/secret")
                .access(AccessControl::scopes(["admin"]))
                .unary(|_, _| async { Ok(json!("secret")) }),
        )
        .unwrap();
    registry
        .register(
            OperationDef::query("test/hidden")
                .internal()
                .unary(|_, _| async { Ok(json!(1)) }),
        )
        .unwrap();
    registry
        .register(
            OperationDef::query("test/fail")
                .unary(|_, input: Value| async move {
                    let code = input["code"].as_str().unwrap_or("INTERNAL").to_owned();
                    let mut error = CallError {
                        code: code.into(),
                        message: "failed on purpose".into(),
                        retryable: false,
                        details: None,
                    };
                    if let Some(after) = input.get("retry_after") {
                        error = error.with_details(json!({ "retry_after": after }));
                    }
                    Err(error)
                })
                .error(ErrorSchema {
                    code: "CONFLICT_HERE".into(),
                    description: "a declared domain error".into(),
                    schema: json!({}),
                    http_status: Some(409),
                }),
        )
        .unwrap();
    registry
        .register(hanging_query("test/hang", dropped_tx.clone()))
        .unwrap();
    registry
        .register(OperationDef::subscription("test/wait").stream(move |_, _| {
            let signal = DropSignal(wait_dropped.clone());
            futures::stream::once(async move {
                let _signal = signal;
                std::future::pending::<()>().await;
                Ok(json!(null))
            })
        }))
        .unwrap();
    registry
        .register(
            OperationDef::subscription("test/count").stream(|_, input: Value| {
                let n = input["n"].as_u64().unwrap_or(3);
                let fail_at = input["fail_at"].as_u64();
                futures::stream::iter((0..n).map(move |i| {
                    if Some(i) == fail_at {
                        Err(CallError::internal("stream failed"))
                    } else {
                        Ok(json!({"i": i}))
                    }
                }))
            }),
        )
        .unwrap();
    let registry = Arc::new(registry);
    let identities: Arc<dyn IdentityProvider> = Arc::new(TestTokens);
    let settings = HttpSettings {
        call_timeout: Duration::from_millis(500),
        decoy,
        ..HttpSettings::default()
    };
    let handlers = vec![
        CallHandler::new(
            registry.clone(),
            identities.clone(),
            SessionLimits::default(),
        )
        .into(),
        HttpHandler::with_extra_routes(registry, identities.clone(), settings, extra)
            .expect("no collision")
            .into(),
    ];
    let node = start_web_node(handlers, identities).await;
    (node, dropped)
}

/// One curl exchange.
#[derive(Debug)]
struct Reply {
    status: u16,
    headers: BTreeMap<String, String>,
    body: Vec<u8>,
}

impl Reply {
    fn json(&self) -> Value {
        serde_json::from_slice(&self.body)
            .unwrap_or_else(|e| panic!("not JSON ({e}): {}", String::from_utf8_lossy(&self.body)))
    }

    fn text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }

    fn header(&self, name: &str) -> Option<&str> {
        self.headers.get(name).map(String::as_str)
    }
}

#[derive(Clone, Copy, Debug)]
enum Version {
    Http1,
    Http2,
}

const VERSIONS: [Version; 2] = [Version::Http1, Version::Http2];

/// Runs curl against the node; `args` come after the URL's method setup.
async fn curl(
    node: &NodeHandle,
    version: Version,
    method: &str,
    path: &str,
    args: &[&str],
) -> Reply {
    let url = format!("https://127.0.0.1:{}{path}", node.local_addr().port());
    let mut command = Command::new("curl");
    command
        .args(["-sS", "-k", "-i", "--max-time", "10", "-X", method])
        .arg(match version {
            Version::Http1 => "--http1.1",
            Version::Http2 => "--http2",
        })
        .args(args)
        .arg(&url);
    if method == "HEAD" {
        command.arg("--head");
    }
    let output = tokio::task::spawn_blocking(move || command.output())
        .await
        .unwrap()
        .expect("curl runs");
    assert!(
        !output.stdout.is_empty(),
        "{version:?} {method} {path}: curl failed: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    parse(&output.stdout)
}

fn parse(raw: &[u8]) -> Reply {
    let split = raw
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .unwrap_or_else(|| panic!("no header end in {:?}", String::from_utf8_lossy(raw)));
    let head = String::from_utf8_lossy(&raw[..split]).into_owned();
    let mut lines = head.lines();
    let status_line = lines.next().expect("status line");
    let status = status_line
        .split_whitespace()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| panic!("status in {status_line}"));
    let headers = lines
        .filter_map(|l| l.split_once(':'))
        .map(|(k, v)| (k.trim().to_ascii_lowercase(), v.trim().to_owned()))
        .collect();
    Reply {
        status,
        headers,
        body: raw[split + 4..].to_vec(),
    }
}

const JSON: &str = "Content-Type: application/json";

async fn post(
    node: &NodeHandle,
    version: Version,
    path: &str,
    body: &str,
    extra: &[&str],
) -> Reply {
    let mut args = vec!["-H", JSON, "--data-binary", body];
    args.extend_from_slice(extra);
    curl(node, version, "POST", path, &args).await
}

/// Conformance item 31 (docs/protocol.md §16).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn healthz_needs_no_credentials() {
    let (node, _) = node().await;
    for version in VERSIONS {
        let reply = curl(&node, version, "GET", "/healthz", &[]).await;
        assert_eq!(reply.status, 200, "{version:?}");
        assert!(
            reply
                .header("content-type")
                .unwrap()
                .starts_with("text/plain")
        );
        assert_eq!(reply.text(), "ok");
    }
}

/// Conformance item 2 (docs/protocol.md §16).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_tls_client_without_alpn_is_served_http_1_1() {
    let (node, _) = node().await;
    let mut tls = tls_connect(node.local_addr(), &[])
        .await
        .expect("TLS handshake");
    tls.write_all(b"GET /healthz HTTP/1.1\r\nHost: node\r\nConnection: close\r\n\r\n")
        .await
        .unwrap();
    let mut raw = Vec::new();
    tokio::time::timeout(Duration::from_secs(5), tls.read_to_end(&mut raw))
        .await
        .expect("answered")
        .ok();
    let reply = parse(&raw);
    assert_eq!(reply.status, 200);
    assert_eq!(reply.text(), "ok");
}

/// Conformance item 32 (docs/protocol.md §16).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn anything_else_is_nginxs_404_byte_for_byte() {
    let (node, _) = node().await;
    for version in VERSIONS {
        for (method, path) in [
            ("GET", "/definitely-not-here"),
            ("POST", "/admin"),
            ("GET", "/call/x"),
        ] {
            let reply = curl(&node, version, method, path, &[]).await;
            assert_eq!(reply.status, 404, "{version:?} {method} {path}");
            assert_eq!(reply.body, alknet_http::decoy::NOT_FOUND_BODY.as_bytes());
            assert_eq!(reply.body.len(), 146);
            assert_eq!(reply.header("server"), Some("nginx"));
            assert_eq!(
                reply.header("content-type"),
                Some("text/html; charset=utf-8")
            );
            for (name, value) in &reply.headers {
                assert!(
                    !name.contains("alknet") && !value.to_ascii_lowercase().contains("alknet"),
                    "{name}: {value}"
                );
            }
        }
    }
}

/// Conformance item 33 (docs/protocol.md §16).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn call_answers_with_or_without_the_slash_and_hides_internal_operations() {
    let (node, _) = node().await;
    for version in VERSIONS {
        for operation in ["test/echo", "/test/echo"] {
            let body = json!({"operation": operation, "input": {"n": 7}}).to_string();
            let reply = post(&node, version, "/call", &body, &[]).await;
            assert_eq!(reply.status, 200, "{version:?} {}", reply.text());
            let json = reply.json();
            assert_eq!(json["result"], "ok");
            assert_eq!(json["output"], json!({"n": 7}));
            let id = json["request_id"].as_str().unwrap();
            assert!(uuid::Uuid::parse_str(id).is_ok(), "{id}");
        }
        for operation in ["nope/missing", "test/hidden"] {
            let body = json!({"operation": operation}).to_string();
            let reply = post(&node, version, "/call", &body, &[]).await;
            assert_eq!(reply.status, 404);
            assert_eq!(
                reply.json(),
                json!({"code": "NOT_FOUND", "message": format!("operation not found: {operation}"), "retryable": false})
            );
        }
    }
}

/// Conformance item 34 (docs/protocol.md §16).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bearer_decides_401_404_and_200() {
    let (node, _) = node().await;
    let body = r#"{"operation":"test/secret"}"#;
    for version in VERSIONS {
        // A token that does not resolve: 401, whatever the operation.
        let reply = post(
            &node,
            version,
            "/call",
            body,
            &["-H", "Authorization: Bearer nope"],
        )
        .await;
        assert_eq!(reply.status, 401, "{version:?}");
        assert_eq!(reply.header("www-authenticate"), Some("Bearer"));
        assert_eq!(reply.json()["code"], "FORBIDDEN");
        // No bearer token, or one without the scope: the operation does not
        // exist for the caller.
        for auth in [
            None,
            Some("Authorization: Basic dXNlcjpwdw=="),
            Some("Authorization: Bearer user-token"),
        ] {
            let extra: Vec<&str> = auth.map(|h| vec!["-H", h]).unwrap_or_default();
            let reply = post(&node, version, "/call", body, &extra).await;
            assert_eq!(reply.status, 404, "{version:?} {auth:?}");
            assert_eq!(
                reply.json(),
                json!({"code": "NOT_FOUND", "message": "operation not found: test/secret", "retryable": false})
            );
        }
        let reply = post(
            &node,
            version,
            "/call",
            body,
            &["-H", "Authorization: bearer admin-token"],
        )
        .await;
        assert_eq!(reply.status, 200);
        assert_eq!(reply.json()["output"], "secret");
        // An unresolvable token fails even an operation without access control.
        let reply = post(
            &node,
            version,
            "/call",
            r#"{"operation":"test/echo","input":{"n":1}}"#,
            &["-H", "Authorization: Bearer nope"],
        )
        .await;
        assert_eq!(
            (reply.status, reply.json()["message"].clone()),
            (401, json!("invalid token"))
        );
    }
}

/// Conformance item 35 (docs/protocol.md §16).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_error_gets_its_status() {
    let (node, _) = node().await;
    for version in VERSIONS {
        let reply = post(
            &node,
            version,
            "/call",
            r#"{"operation":"test/echo","input":{"n":"x"}}"#,
            &[],
        )
        .await;
        assert_eq!(reply.status, 422, "{version:?}");
        assert_eq!(reply.json()["code"], "INVALID_INPUT");
        let reply = post(&node, version, "/call", "{nope", &[]).await;
        assert_eq!(reply.status, 400);
        assert!(
            reply.json()["message"]
                .as_str()
                .unwrap()
                .starts_with("invalid request body: ")
        );
        let reply = post(&node, version, "/call", r#"{"input":{}}"#, &[]).await;
        assert_eq!(reply.status, 400);
        let reply = curl(
            &node,
            version,
            "POST",
            "/call",
            &[
                "-H",
                "Content-Type: text/plain",
                "--data-binary",
                r#"{"operation":"test/echo"}"#,
            ],
        )
        .await;
        assert_eq!(reply.status, 415);
        assert_eq!(
            reply.json()["message"],
            "unsupported content type: expected application/json"
        );
        let reply = post(
            &node,
            version,
            "/call",
            r#"{"operation":"test/count"}"#,
            &[],
        )
        .await;
        assert_eq!(
            (reply.status, reply.json()["code"].clone()),
            (400, json!("INVALID_OPERATION_TYPE"))
        );
        let fail = |input: Value| json!({"operation": "test/fail", "input": input}).to_string();
        let reply = post(
            &node,
            version,
            "/call",
            &fail(json!({"code": "UNAVAILABLE", "retry_after": 4})),
            &[],
        )
        .await;
        assert_eq!(
            (reply.status, reply.header("retry-after")),
            (503, Some("4"))
        );
        let reply = post(
            &node,
            version,
            "/call",
            &fail(json!({"code": "UNAVAILABLE"})),
            &[],
        )
        .await;
        assert_eq!(
            (reply.status, reply.header("retry-after")),
            (503, Some("1"))
        );
        let reply = post(
            &node,
            version,
            "/call",
            &fail(json!({"code": "HTTP_429", "retry_after": 2})),
            &[],
        )
        .await;
        assert_eq!(
            (reply.status, reply.header("retry-after")),
            (429, Some("2"))
        );
        let reply = post(
            &node,
            version,
            "/call",
            &fail(json!({"code": "CONFLICT_HERE"})),
            &[],
        )
        .await;
        assert_eq!(reply.status, 409);
        assert_eq!(reply.json()["code"], "CONFLICT_HERE");
        let reply = post(&node, version, "/call", r#"{"operation":"test/hang"}"#, &[]).await;
        assert_eq!(reply.status, 504);
        assert_eq!(
            reply.json(),
            json!({"code":"TIMEOUT","message":"request timed out","retryable":true})
        );
    }
}

/// Conformance item 36 (docs/protocol.md §16).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn batch_answers_in_order_and_refuses_more_than_100() {
    let (node, _) = node().await;
    for version in VERSIONS {
        let body = r#"[{"operation":"test/echo","input":{"n":1}},{"operation":"test/secret"}]"#;
        let reply = post(&node, version, "/batch", body, &[]).await;
        assert_eq!(reply.status, 200, "{version:?}");
        let results = reply.json()["results"].clone();
        assert_eq!(results[0]["result"], "ok");
        assert_eq!(results[0]["output"], json!({"n": 1}));
        assert!(results[0]["request_id"].is_string());
        assert_eq!(
            results[1],
            json!({"request_id": null, "result": "error", "error": {"code":"NOT_FOUND","message":"operation not found: test/secret","retryable":false}})
        );
        let reply = post(&node, version, "/batch", "[]", &[]).await;
        assert_eq!(reply.json(), json!({"results": []}));
        let many: Vec<Value> = (0..101)
            .map(|_| json!({"operation": "test/hang"}))
            .collect();
        let reply = post(
            &node,
            version,
            "/batch",
            &Value::Array(many).to_string(),
            &[],
        )
        .await;
        assert_eq!(reply.status, 413);
        assert_eq!(
            reply.json()["message"],
            "batch too large: 101 items (limit 100)"
        );
    }
}

/// Conformance item 37 (docs/protocol.md §16).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn subscribe_streams_events_and_errors() {
    let (node, _) = node().await;
    for version in VERSIONS {
        let reply = post(
            &node,
            version,
            "/subscribe",
            r#"{"operation":"test/count","input":{"n":3}}"#,
            &[],
        )
        .await;
        assert_eq!(reply.status, 200, "{version:?}");
        assert!(
            reply
                .header("content-type")
                .unwrap()
                .starts_with("text/event-stream")
        );
        assert_eq!(reply.header("cache-control"), Some("no-cache"));
        assert_eq!(
            reply.text(),
            "data: {\"i\":0}\n\ndata: {\"i\":1}\n\ndata: {\"i\":2}\n\n"
        );
        let reply = post(
            &node,
            version,
            "/subscribe",
            r#"{"operation":"nope/missing"}"#,
            &[],
        )
        .await;
        assert_eq!(reply.status, 200);
        assert_eq!(
            reply.text(),
            "event: error\ndata: {\"code\":\"NOT_FOUND\",\"message\":\"operation not found: nope/missing\",\"retryable\":false}\n\n"
        );
        let reply = post(
            &node,
            version,
            "/subscribe",
            r#"{"operation":"test/count","input":{"n":3,"fail_at":1}}"#,
            &[],
        )
        .await;
        assert_eq!(
            reply.text(),
            "data: {\"i\":0}\n\nevent: error\ndata: {\"code\":\"INTERNAL\",\"message\":\"stream failed\",\"retryable\":false}\n\n"
        );
    }
}

/// Conformance item 37 (docs/protocol.md §16).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_client_that_goes_away_aborts_the_handler() {
    let (node, mut dropped) = node().await;
    for version in VERSIONS {
        // A subscription has no deadline: only the client leaving ends it.
        let reply = curl(
            &node,
            version,
            "POST",
            "/subscribe",
            &[
                "-H",
                JSON,
                "--data-binary",
                r#"{"operation":"test/wait"}"#,
                "--max-time",
                "0.3",
            ],
        );
        let _ = tokio::time::timeout(Duration::from_secs(5), reply).await;
        tokio::time::timeout(Duration::from_secs(5), dropped.recv())
            .await
            .unwrap_or_else(|_| panic!("{version:?}: handler not dropped"));
    }
}

/// Conformance item 38 (docs/protocol.md §16).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_listed_path_with_another_method_is_405_with_allow() {
    let (node, _) = node().await;
    for version in VERSIONS {
        let reply = curl(&node, version, "DELETE", "/call", &[]).await;
        assert_eq!(reply.status, 405, "{version:?}");
        assert_eq!(reply.header("allow"), Some("POST"));
        assert!(reply.body.is_empty());
        let reply = curl(&node, version, "HEAD", "/healthz", &[]).await;
        assert_eq!(reply.status, 200);
        assert!(reply.body.is_empty());
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn search_schema_and_openapi() {
    let (node, _) = node().await;
    for version in VERSIONS {
        let reply = curl(&node, version, "GET", "/search", &[]).await;
        assert_eq!(reply.status, 200);
        let names: Vec<String> = reply.json()["output"]["operations"]
            .as_array()
            .unwrap()
            .iter()
            .map(|o| o["name"].as_str().unwrap().to_owned())
            .collect();
        assert!(
            names.contains(&"test/echo".to_owned()) && !names.contains(&"test/secret".to_owned())
        );
        let reply = curl(&node, version, "GET", "/schema?name=test%2Fecho", &[]).await;
        assert_eq!(reply.status, 200);
        assert_eq!(reply.json()["output"]["name"], "test/echo");
        let reply = curl(&node, version, "GET", "/schema", &[]).await;
        assert_eq!(
            (reply.status, reply.json()["message"].clone()),
            (400, json!("missing required field: name"))
        );
        let reply = curl(&node, version, "GET", "/schema?name=a%2Fb&name=c%2Fd", &[]).await;
        assert_eq!(reply.status, 400);
        // An operation the caller may not call does not exist for it.
        let reply = curl(&node, version, "GET", "/schema?name=test%2Fsecret", &[]).await;
        assert_eq!(reply.status, 404);
        let reply = curl(&node, version, "GET", "/openapi.json", &[]).await;
        assert_eq!(reply.status, 200);
        assert_eq!(reply.json()["openapi"], "3.1.0");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn over_quic_http_rides_the_first_stream_and_later_streams_are_refused() {
    use alknet_e2e::client::{quic_connect, quic_endpoint};
    let (node, _) = node().await;
    let endpoint = quic_endpoint();
    let conn = quic_connect(&endpoint, node.local_addr(), &["http/1.1"])
        .await
        .expect("QUIC handshake with http/1.1");
    let (mut send, mut recv) = conn.open_bi().await.unwrap();
    send.write_all(b"GET /healthz HTTP/1.1\r\nHost: node\r\n\r\n")
        .await
        .unwrap();
    let mut raw = Vec::new();
    let mut buffer = [0u8; 1024];
    while !raw.ends_with(b"ok") {
        let read = tokio::time::timeout(Duration::from_secs(5), recv.read(&mut buffer))
            .await
            .expect("answered")
            .unwrap()
            .expect("more bytes");
        raw.extend_from_slice(&buffer[..read]);
    }
    let reply = parse(&raw);
    assert_eq!((reply.status, reply.text()), (200, "ok".to_owned()));
    // §2 rule 7: a second stream gets STOP_SENDING 0x1.
    // The write itself may already see it, if the node was that quick.
    let (mut second, _) = conn.open_bi().await.unwrap();
    if let Err(error) = second.write_all(b"GET / HTTP/1.1\r\n\r\n").await {
        assert!(
            matches!(error, quinn::WriteError::Stopped(code) if u64::from(code) == 0x1),
            "{error:?}"
        );
        return;
    }
    let stopped = tokio::time::timeout(Duration::from_secs(5), second.stopped()).await;
    assert!(
        matches!(stopped, Ok(Ok(Some(code))) if u64::from(code) == 0x1),
        "{stopped:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_body_over_16_mib_is_413() {
    let (node, _) = node().await;
    let dir = tempfile::tempdir().unwrap();
    let big = dir.path().join("big.json");
    let padding = "x".repeat(17 * 1024 * 1024);
    std::fs::write(
        &big,
        format!(r#"{{"operation":"test/echo","input":{{"p":"{padding}"}}}}"#),
    )
    .unwrap();
    let file = format!("@{}", big.display());
    let reply = curl(
        &node,
        Version::Http1,
        "POST",
        "/call",
        &["-H", JSON, "-H", "Expect:", "--data-binary", &file],
    )
    .await;
    assert_eq!(reply.status, 413);
    assert_eq!(reply.json()["message"], "request body too large");
}

/// Conformance item 39 (docs/protocol.md §16).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn extra_routes_never_shadow_the_surface_and_see_the_bearer() {
    use alknet_http::auth::Bearer;
    let status = || ExtraRoute {
        path: "/status".into(),
        route: axum::routing::get(
            |axum::Extension(bearer): axum::Extension<Bearer>| async move {
                match bearer {
                    Bearer::Identity(identity) => format!("hello {}", identity.id),
                    _ => "hello stranger".to_owned(),
                }
            },
        ),
    };
    for path in ["/call", "/alknet/call", "/mcp/x", "/healthz"] {
        let colliding = ExtraRoute {
            path: path.into(),
            route: axum::routing::get(|| async { "mine" }),
        };
        let refused = HttpHandler::with_extra_routes(
            Arc::new(Registry::new()),
            Arc::new(TestTokens),
            HttpSettings::default(),
            vec![status(), colliding],
        )
        .err()
        .expect("refused");
        assert_eq!(
            refused.to_string(),
            format!("extra route \"{path}\" collides with a built-in route")
        );
    }
    let (node, _) = node_with(Decoy::NotFound, vec![status()]).await;
    for version in VERSIONS {
        let reply = curl(
            &node,
            version,
            "GET",
            "/status",
            &["-H", "Authorization: Bearer admin-token"],
        )
        .await;
        assert_eq!((reply.status, reply.text()), (200, "hello root".to_owned()));
        let reply = curl(&node, version, "GET", "/status", &[]).await;
        assert_eq!(reply.text(), "hello stranger");
        let search = curl(&node, version, "GET", "/search", &[]).await.text();
        let openapi = curl(&node, version, "GET", "/openapi.json", &[])
            .await
            .text();
        assert!(!search.contains("/status") && !openapi.contains("/status"));
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_decoy_can_be_a_static_site_or_a_redirect() {
    let site = tempfile::tempdir().unwrap();
    std::fs::write(site.path().join("index.html"), "<h1>Welcome</h1>").unwrap();
    std::fs::write(site.path().join("style.css"), "h1 {}").unwrap();
    let (node, _) = node_with(
        Decoy::StaticSite {
            root: site.path().to_owned(),
        },
        Vec::new(),
    )
    .await;
    for version in VERSIONS {
        let home = curl(&node, version, "GET", "/", &[]).await;
        assert_eq!(
            (home.status, home.text()),
            (200, "<h1>Welcome</h1>".to_owned())
        );
        assert_eq!(home.header("server"), Some("nginx"));
        assert_eq!(
            home.header("content-type"),
            Some("text/html; charset=utf-8")
        );
        let css = curl(&node, version, "GET", "/style.css", &[]).await;
        assert_eq!(css.header("content-type"), Some("text/css"));
        for (method, path) in [
            ("GET", "/missing.html"),
            ("POST", "/"),
            ("GET", "/%2e%2e/etc/passwd"),
        ] {
            let reply = curl(&node, version, method, path, &[]).await;
            assert_eq!(reply.status, 404, "{method} {path}");
            assert_eq!(reply.body, alknet_http::decoy::NOT_FOUND_BODY.as_bytes());
        }
        // The default surface still wins.
        assert_eq!(
            curl(&node, version, "GET", "/healthz", &[]).await.text(),
            "ok"
        );
    }
    let (node, _) = node_with(
        Decoy::Redirect {
            to: "https://example.com/".into(),
        },
        Vec::new(),
    )
    .await;
    for version in VERSIONS {
        let reply = curl(&node, version, "GET", "/anything", &[]).await;
        assert_eq!(reply.status, 302);
        assert_eq!(reply.header("location"), Some("https://example.com/"));
        assert_eq!(reply.header("server"), Some("nginx"));
    }
}
