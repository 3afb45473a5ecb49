//! Access control, identity and discovery over the wire (docs/protocol.md §6.3, §7,
//! §10.1–10.2): each test cites its §16 item and runs over QUIC and TCP+TLS
//! with a raw framed client.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use alknet_call::access::AccessControl;
use alknet_call::admin::{AdminHandle, register};
use alknet_call::envelope::Event;
use alknet_call::registry::{OperationDef, Registry};
use alknet_call::{CallError, SessionLimits};
use alknet_core::Identity;
use alknet_e2e::raw_call::{both, open};
use alknet_e2e::{TestTokens, start_call_node, test_config};
use alknet_supervisors::NodeHandle;
use serde_json::{Value, json};

async fn node(ran: Arc<AtomicBool>) -> NodeHandle {
    let registry = Registry::new();
    alknet_call::builtins::register_discovery(&registry).unwrap();
    let admin = AdminHandle::default();
    register(&registry, &admin).unwrap();
    registry
        .register(
            OperationDef::query("test/echo")
                .input_schema(
                    json!({"type":"object","properties":{"n":{"type":"integer"}},"required":["n"]}),
                )
                .unary({
                    let ran = ran.clone();
                    move |_, input| {
                        ran.store(true, Ordering::SeqCst);
                        async move { Ok(input) }
                    }
                }),
        )
        .unwrap();
    registry
        .register(
            OperationDef::query("test/whoami").unary(|cx, _| async move {
                Ok(json!({
                    "identity": cx.identity.map(|i| i.id.clone()),
                    "forwarded_for": cx.forwarded_for.map(|i| i.id),
                }))
            }),
        )
        .unwrap();
    registry
        .register(
            OperationDef::query("test/secret")
                .access(AccessControl::scopes(["admin"]))
                .unary(move |_, _| {
                    ran.store(true, Ordering::SeqCst);
                    async { Ok(json!("secret")) }
                }),
        )
        .unwrap();
    registry
        .register(
            OperationDef::query("test/any")
                .access(AccessControl {
                    required_scopes_any: Some(vec!["a".into(), "b".into()]),
                    ..Default::default()
                })
                .unary(|_, _| async { Ok(json!(1)) }),
        )
        .unwrap();
    registry
        .register(
            OperationDef::query("test/hidden")
                .internal()
                .unary(|_, _| async { Ok(json!(1)) }),
        )
        .unwrap();
    let node = start_call_node(
        test_config(),
        registry,
        Arc::new(TestTokens),
        SessionLimits::default(),
    )
    .await;
    admin.attach(node.clone());
    node
}

fn error(event: Event) -> CallError {
    match event {
        Event::Error(error) => error,
        other => panic!("expected call.error, got {other:?}"),
    }
}

fn output(event: Event) -> Value {
    match event {
        Event::Responded(output) => output,
        other => panic!("expected call.responded, got {other:?}"),
    }
}

/// Conformance item 6 (docs/protocol.md §16).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn with_and_without_the_leading_slash() {
    let node = node(Default::default()).await;
    for transport in both() {
        let mut raw = open(&node, transport).await;
        let with = output(raw.round_trip("a", "/test/echo", json!({"n": 1})).await);
        let without = output(raw.round_trip("b", "test/echo", json!({"n": 1})).await);
        assert_eq!(with, without, "{transport:?}");
    }
}

/// Conformance item 8 (docs/protocol.md §16).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_internal_operation_answers_like_an_unknown_one() {
    let node = node(Default::default()).await;
    for transport in both() {
        let mut raw = open(&node, transport).await;
        let internal = error(raw.round_trip("i", "/test/hidden", json!({})).await);
        assert_eq!(
            internal,
            CallError::operation_not_found("test/hidden"),
            "{transport:?}"
        );
        assert!(internal.details.is_none());
    }
}

/// Conformance item 9 (docs/protocol.md §16).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_restricted_operation_without_identity_never_runs() {
    let ran = Arc::new(AtomicBool::new(false));
    let node = node(ran.clone()).await;
    for transport in both() {
        let mut raw = open(&node, transport).await;
        let denied = error(raw.round_trip("s", "/test/secret", json!({})).await);
        assert_eq!(
            denied,
            CallError::operation_not_found("test/secret"),
            "{transport:?}"
        );
    }
    assert!(!ran.load(Ordering::SeqCst), "the handler ran");
}

/// Conformance item 10 (docs/protocol.md §16).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_missing_scope_looks_like_an_unknown_operation() {
    let node = node(Default::default()).await;
    for transport in both() {
        let mut raw = open(&node, transport).await;
        raw.call_as("a", "/admin/tree", json!({}), Some("user-token"), None)
            .await;
        assert_eq!(
            error(raw.expect().await.1),
            CallError::operation_not_found("admin/tree")
        );
        raw.call_as("b", "/test/any", json!({}), Some("user-token"), None)
            .await;
        assert_eq!(
            error(raw.expect().await.1),
            CallError::operation_not_found("test/any"),
            "{transport:?}"
        );
    }
}

/// Conformance item 11 (docs/protocol.md §16).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_token_applies_to_its_own_request_only() {
    let node = node(Default::default()).await;
    for transport in both() {
        let mut raw = open(&node, transport).await;
        raw.call_as("a", "/test/whoami", json!({}), Some("admin-token"), None)
            .await;
        assert_eq!(output(raw.expect().await.1)["identity"], "root");
        let next = output(raw.round_trip("b", "/test/whoami", json!({})).await);
        assert_eq!(
            next["identity"],
            Value::Null,
            "{transport:?}: the token leaked into the session"
        );
    }
}

/// Conformance item 12 (docs/protocol.md §16).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_unresolvable_token_is_refused_even_without_access_control() {
    let node = node(Default::default()).await;
    for transport in both() {
        let mut raw = open(&node, transport).await;
        raw.call_as(
            "a",
            "/test/echo",
            json!({"n": 1}),
            Some("alk_unknown"),
            None,
        )
        .await;
        assert_eq!(
            error(raw.expect().await.1),
            CallError::forbidden("invalid token"),
            "{transport:?}"
        );
    }
}

/// Conformance item 13 (docs/protocol.md §16).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn forwarded_for_is_metadata_not_authority() {
    let node = node(Default::default()).await;
    let root = Identity::new("root", ["admin"]);
    for transport in both() {
        let mut raw = open(&node, transport).await;
        raw.call_as("a", "/test/secret", json!({}), None, Some(root.clone()))
            .await;
        assert_eq!(
            error(raw.expect().await.1),
            CallError::operation_not_found("test/secret")
        );
        raw.call_as("b", "/test/whoami", json!({}), None, Some(root.clone()))
            .await;
        let seen = output(raw.expect().await.1);
        assert_eq!(
            seen,
            json!({"identity": null, "forwarded_for": "root"}),
            "{transport:?}"
        );
    }
}

/// Conformance item 14 (docs/protocol.md §16).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn schema_violations_name_the_value_and_the_handler_never_runs() {
    let ran = Arc::new(AtomicBool::new(false));
    let node = node(ran.clone()).await;
    for transport in both() {
        let mut raw = open(&node, transport).await;
        let invalid = error(raw.round_trip("a", "/test/echo", json!({"n": "one"})).await);
        assert_eq!(invalid.code.as_str(), "INVALID_INPUT");
        assert!(
            invalid
                .message
                .starts_with("input does not match schema at /n: \"one\" is not of type"),
            "{}",
            invalid.message
        );
        assert_eq!(
            invalid.details.unwrap()["errors"][0]["pointer"],
            "/n",
            "{transport:?}"
        );
        let missing = error(raw.round_trip("b", "/services/schema", json!({})).await);
        assert_eq!(
            missing.message, "missing required field: name",
            "{transport:?}"
        );
    }
    assert!(
        !ran.load(Ordering::SeqCst),
        "the handler ran on invalid input"
    );
}

/// Conformance item 26 (docs/protocol.md §16).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn services_list_shows_only_what_the_caller_may_call() {
    let node = node(Default::default()).await;
    for transport in both() {
        let mut raw = open(&node, transport).await;
        let anonymous = output(raw.round_trip("a", "/services/list", json!({})).await);
        let names = |list: &Value| -> Vec<String> {
            list["operations"]
                .as_array()
                .unwrap()
                .iter()
                .map(|o| o["name"].as_str().unwrap().to_owned())
                .collect()
        };
        let listed = names(&anonymous);
        assert!(
            !listed.contains(&"admin/tree".to_owned())
                && !listed.contains(&"test/hidden".to_owned())
        );
        let mut sorted = listed.clone();
        sorted.sort();
        assert_eq!(listed, sorted, "sorted by name");
        for entry in anonymous["operations"].as_array().unwrap() {
            let mut keys: Vec<&str> = entry
                .as_object()
                .unwrap()
                .keys()
                .map(String::as_str)
                .collect();
            keys.sort();
            assert_eq!(keys, ["description", "name", "namespace", "op_type"]);
        }
        raw.call_as("b", "/services/list", json!({}), Some("admin-token"), None)
            .await;
        let admin = names(&output(raw.expect().await.1));
        assert!(
            admin.contains(&"admin/tree".to_owned()),
            "{transport:?}: {admin:?}"
        );
    }
}

/// Conformance item 27 (docs/protocol.md §16).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn services_schema_answers_like_a_call_would() {
    let node = node(Default::default()).await;
    for transport in both() {
        let mut raw = open(&node, transport).await;
        let hidden = error(
            raw.round_trip("a", "/services/schema", json!({"name": "test/hidden"}))
                .await,
        );
        assert_eq!(hidden, CallError::operation_not_found("test/hidden"));
        let forbidden = error(
            raw.round_trip("b", "/services/schema", json!({"name": "/admin/tree"}))
                .await,
        );
        assert_eq!(
            forbidden,
            CallError::operation_not_found("admin/tree"),
            "{transport:?}"
        );
    }
}
