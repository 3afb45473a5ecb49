//! The dispatch order of docs/protocol.md §7.1 (steps 4–9) and the §16 items it
//! decides, exercised on a real registry without sockets.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use alknet_call::CallError;
use alknet_call::ErrorCode;
use alknet_call::access::AccessControl;
use alknet_call::dispatch::{Expect, Origin, Reply, Request, dispatch};
use alknet_call::registry::{ErrorSchema, OperationDef, RegistrationError, Registry};
use alknet_core::{Fingerprint, Identity, IdentityProvider};
use futures::StreamExt;
use serde_json::{Value, json};

/// Tokens `admin-token` (scope admin) and `user-token` (scope user).
struct Tokens;

impl IdentityProvider for Tokens {
    fn resolve_fingerprint(&self, _: &Fingerprint) -> Option<Identity> {
        None
    }

    fn resolve_token(&self, token: &str) -> Option<Identity> {
        match token {
            "admin-token" => Some(Identity::new("root", ["admin"])),
            "user-token" => Some(Identity::new("bob", ["user"])),
            _ => None,
        }
    }
}

fn registry(ran: Arc<AtomicBool>) -> Arc<Registry> {
    let registry = Registry::new();
    let flag = ran.clone();
    registry
        .register(
            OperationDef::query("test/echo")
                .input_schema(
                    json!({"type":"object","properties":{"n":{"type":"integer"}},"required":["n"]}),
                )
                .unary(move |cx, input| {
                    flag.store(true, Ordering::SeqCst);
                    async move { Ok(json!({"input": input, "as": cx.identity.map(|i| i.id.clone())})) }
                }),
        )
        .unwrap();
    let flag = ran.clone();
    registry
        .register(
            OperationDef::query("admin/secret")
                .access(AccessControl::scopes(["admin"]))
                .unary(move |_, _| {
                    flag.store(true, Ordering::SeqCst);
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
                .unary(|_, _| async { Ok(json!("inside")) }),
        )
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
            OperationDef::subscription("test/fail_after_one").stream(|_, _| {
                futures::stream::iter([
                    Ok(json!(0)),
                    Err(CallError::internal("broke")),
                    Ok(json!("never sent")),
                ])
            }),
        )
        .unwrap();
    registry
        .register(OperationDef::query("test/panic").unary(|_, _| async { panic!("handler bug") }))
        .unwrap();
    registry
        .register(
            OperationDef::query("test/domain")
                .error(ErrorSchema {
                    code: "FILE_NOT_FOUND".into(),
                    description: String::new(),
                    schema: json!({}),
                    http_status: Some(404),
                })
                .unary(|_, input: Value| async move {
                    let code = input["code"]
                        .as_str()
                        .unwrap_or("FILE_NOT_FOUND")
                        .to_owned();
                    Err(CallError::domain(code, "no such file", false)
                        .with_details(json!({"path": "/x"})))
                }),
        )
        .unwrap();
    Arc::new(registry)
}

fn request(operation: &str, input: Value) -> Request {
    Request::new("r1", operation, input)
}

async fn one(registry: &Arc<Registry>, request: Request) -> Result<Value, CallError> {
    match dispatch(registry, &Tokens, request)? {
        Reply::One(future) => future.await,
        Reply::Stream(_) => panic!("expected one reply"),
    }
}

async fn all(registry: &Arc<Registry>, request: Request) -> Vec<Result<Value, CallError>> {
    match dispatch(registry, &Tokens, request).expect("dispatched") {
        Reply::Stream(stream) => stream.collect().await,
        Reply::One(_) => panic!("expected a stream"),
    }
}

/// Conformance item 6 (docs/protocol.md §16).
#[tokio::test]
async fn leading_slash_and_bare_name_reach_the_same_operation() {
    let registry = registry(Default::default());
    let with = one(&registry, request("/test/echo", json!({"n": 1})))
        .await
        .unwrap();
    let without = one(&registry, request("test/echo", json!({"n": 1})))
        .await
        .unwrap();
    assert_eq!(with, without);
}

/// Conformance item 7 (docs/protocol.md §16).
#[tokio::test]
async fn unknown_operation_is_not_found() {
    let registry = registry(Default::default());
    let error = one(&registry, request("/nope/missing", json!({})))
        .await
        .unwrap_err();
    assert_eq!(
        serde_json::to_value(&error).unwrap(),
        json!({"code":"NOT_FOUND","message":"operation not found: nope/missing","retryable":false})
    );
}

/// Conformance item 8 (docs/protocol.md §16).
#[tokio::test]
async fn internal_operations_look_unknown_from_outside_only() {
    let registry = registry(Default::default());
    let outside = one(&registry, request("/test/hidden", json!({})))
        .await
        .unwrap_err();
    assert_eq!(outside, CallError::operation_not_found("test/hidden"));
    assert!(outside.details.is_none());
    let mut nested = request("test/hidden", json!({}));
    nested.origin = Origin::Nested;
    assert_eq!(one(&registry, nested).await.unwrap(), json!("inside"));
}

/// Conformance item 9 (docs/protocol.md §16).
#[tokio::test]
async fn restricted_operation_without_identity_never_runs() {
    let ran = Arc::new(AtomicBool::new(false));
    let registry = registry(ran.clone());
    let error = one(&registry, request("admin/secret", json!({})))
        .await
        .unwrap_err();
    assert_eq!(error, CallError::operation_not_found("admin/secret"));
    assert!(!ran.load(Ordering::SeqCst), "the handler ran");
}

/// Conformance item 10 (docs/protocol.md §16).
#[tokio::test]
async fn a_caller_without_the_scopes_is_told_the_operation_does_not_exist() {
    let registry = registry(Default::default());
    let mut as_user = request("admin/secret", json!({}));
    as_user.session_identity = Some(Arc::new(Identity::new("bob", ["user"])));
    assert_eq!(
        one(&registry, as_user).await.unwrap_err(),
        CallError::operation_not_found("admin/secret")
    );
    let mut any = request("test/any", json!({}));
    any.session_identity = Some(Arc::new(Identity::new("bob", ["user"])));
    assert_eq!(
        one(&registry, any).await.unwrap_err(),
        CallError::operation_not_found("test/any")
    );
}

/// Conformance item 11 (docs/protocol.md §16).
#[tokio::test]
async fn a_resolving_token_applies_to_its_request_only() {
    let registry = registry(Default::default());
    let mut with_token = request("admin/secret", json!({}));
    with_token.session_identity = Some(Arc::new(Identity::new("bob", ["user"])));
    with_token.auth_token = Some("admin-token".into());
    assert_eq!(one(&registry, with_token).await.unwrap(), json!("secret"));
    let mut next = request("test/echo", json!({"n": 1}));
    next.session_identity = Some(Arc::new(Identity::new("bob", ["user"])));
    assert_eq!(one(&registry, next).await.unwrap()["as"], "bob");
}

/// Conformance item 12 (docs/protocol.md §16).
#[tokio::test]
async fn an_unresolvable_token_is_forbidden_even_without_access_control() {
    let registry = registry(Default::default());
    let mut bad = request("test/echo", json!({"n": 1}));
    bad.session_identity = Some(Arc::new(Identity::new("bob", ["admin"])));
    bad.auth_token = Some("alk_unknown".into());
    assert_eq!(
        one(&registry, bad).await.unwrap_err(),
        CallError::forbidden("invalid token")
    );
}

/// Conformance item 13 (docs/protocol.md §16).
#[tokio::test]
async fn forwarded_for_never_passes_an_access_check() {
    let registry = registry(Default::default());
    let mut relayed = request("admin/secret", json!({}));
    relayed.forwarded_for = Some(Identity::new("root", ["admin"]));
    assert_eq!(
        one(&registry, relayed).await.unwrap_err(),
        CallError::operation_not_found("admin/secret")
    );
}

/// Conformance item 14 (docs/protocol.md §16).
#[tokio::test]
async fn invalid_input_is_refused_before_the_handler_runs() {
    let ran = Arc::new(AtomicBool::new(false));
    let registry = registry(ran.clone());
    let error = one(&registry, request("test/echo", json!({"n": "one"})))
        .await
        .unwrap_err();
    assert_eq!(error.code, ErrorCode::InvalidInput);
    assert_eq!(error.details.unwrap()["errors"][0]["pointer"], "/n");
    assert!(!ran.load(Ordering::SeqCst));
}

/// Conformance item 16 (docs/protocol.md §16).
#[tokio::test]
async fn subscriptions_stream_their_items_and_stop_at_an_error() {
    let registry = registry(Default::default());
    let items = all(&registry, request("test/count", json!({"n": 3}))).await;
    assert_eq!(items, vec![Ok(json!(0)), Ok(json!(1)), Ok(json!(2))]);
    let items = all(&registry, request("test/fail_after_one", json!({}))).await;
    assert_eq!(items, vec![Ok(json!(0)), Err(CallError::internal("broke"))]);
}

#[tokio::test]
async fn the_entry_point_decides_which_reply_patterns_fit() {
    let registry = registry(Default::default());
    let mut one_reply = request("test/count", json!({}));
    one_reply.expect = Expect::OneReply;
    assert_eq!(
        dispatch(&registry, &Tokens, one_reply).unwrap_err(),
        CallError::invalid_operation_type("invalid operation type: test/count is a subscription")
    );
    let mut stream = request("test/echo", json!({"n": 1}));
    stream.expect = Expect::Stream;
    assert_eq!(
        dispatch(&registry, &Tokens, stream).unwrap_err(),
        CallError::invalid_operation_type(
            "invalid operation type: test/echo is not a subscription"
        )
    );
}

#[tokio::test]
async fn a_panicking_handler_answers_internal_error() {
    let registry = registry(Default::default());
    let error = one(&registry, request("test/panic", json!({})))
        .await
        .unwrap_err();
    assert_eq!(error, CallError::internal("internal error"));
    // The registry keeps serving.
    assert!(
        one(&registry, request("test/echo", json!({"n": 2})))
            .await
            .is_ok()
    );
}

#[tokio::test]
async fn declared_domain_codes_pass_and_undeclared_ones_become_internal() {
    let registry = registry(Default::default());
    let declared = one(&registry, request("test/domain", json!({})))
        .await
        .unwrap_err();
    assert_eq!(declared.code.as_str(), "FILE_NOT_FOUND");
    assert_eq!(declared.details, Some(json!({"path": "/x"})));
    let undeclared = one(
        &registry,
        request("test/domain", json!({"code": "SURPRISE"})),
    )
    .await
    .unwrap_err();
    assert_eq!(undeclared, CallError::internal("no such file"));
}

#[test]
fn registration_refuses_what_could_only_fail_later() {
    let registry = Registry::new();
    let ok = || OperationDef::query("a/b").unary(|_, _| async { Ok(json!(null)) });
    registry.register(ok()).unwrap();
    assert_eq!(
        registry.register(ok()),
        Err(RegistrationError::Duplicate("a/b".into()))
    );
    assert!(matches!(
        registry
            .register(OperationDef::query("nonamespace").unary(|_, _| async { Ok(json!(null)) })),
        Err(RegistrationError::Name(_))
    ));
    assert!(matches!(
        registry.register(
            OperationDef::query("a/c")
                .input_schema(json!({"type": 5}))
                .unary(|_, _| async { Ok(json!(null)) })
        ),
        Err(RegistrationError::Schema { .. })
    ));
    assert_eq!(
        registry
            .register(OperationDef::subscription("a/d").unary(|_, _| async { Ok(json!(null)) })),
        Err(RegistrationError::HandlerKind("a/d".into()))
    );
    assert_eq!(
        registry.register(OperationDef::query("a/e")),
        Err(RegistrationError::HandlerKind("a/e".into()))
    );
    let bad_code = OperationDef::query("a/f")
        .error(ErrorSchema {
            code: "NOT_FOUND".into(),
            description: String::new(),
            schema: json!({}),
            http_status: None,
        })
        .unary(|_, _| async { Ok(json!(null)) });
    assert!(matches!(
        registry.register(bad_code),
        Err(RegistrationError::ErrorSchema { .. })
    ));
    let bad_status = OperationDef::query("a/g")
        .error(ErrorSchema {
            code: "GONE".into(),
            description: String::new(),
            schema: json!({}),
            http_status: Some(302),
        })
        .unary(|_, _| async { Ok(json!(null)) });
    assert!(matches!(
        registry.register(bad_status),
        Err(RegistrationError::ErrorSchema { .. })
    ));
}

#[test]
fn capabilities_reach_the_handler_and_never_debug_print() {
    let registry = Registry::new();
    registry
        .register(
            OperationDef::query("a/cap")
                .capability("api_key", "s3cr3t")
                .unary(|cx, _| async move { Ok(json!(cx.capabilities.get("api_key"))) }),
        )
        .unwrap();
    let registry = Arc::new(registry);
    let output = futures::executor::block_on(one(&registry, request("a/cap", json!({})))).unwrap();
    assert_eq!(output, json!("s3cr3t"));
    let debug = format!("{:?}", registry.get("a/cap").unwrap());
    assert!(!debug.contains("s3cr3t"), "{debug}");
}

fn discovery_registry() -> Arc<Registry> {
    let registry = Registry::new();
    alknet_call::builtins::register_discovery(&registry).unwrap();
    registry
        .register(
            OperationDef::query("admin/tree")
                .description("The live actor tree")
                .access(AccessControl::scopes(["admin"]))
                .unary(|_, _| async { Ok(json!({})) }),
        )
        .unwrap();
    registry
        .register(
            OperationDef::query("fs/readFile")
                .description("Read a UTF-8 file")
                .unary(|_, _| async { Ok(json!({})) }),
        )
        .unwrap();
    registry
        .register(
            OperationDef::query("zz/hidden")
                .internal()
                .unary(|_, _| async { Ok(json!({})) }),
        )
        .unwrap();
    Arc::new(registry)
}

fn names(list: &Value) -> Vec<&str> {
    list["operations"]
        .as_array()
        .unwrap()
        .iter()
        .map(|o| o["name"].as_str().unwrap())
        .collect()
}

/// Conformance item 26 (docs/protocol.md §16).
#[tokio::test]
async fn services_list_shows_each_caller_what_it_may_call() {
    let registry = discovery_registry();
    let anonymous = one(&registry, request("/services/list", json!({})))
        .await
        .unwrap();
    assert_eq!(
        names(&anonymous),
        [
            "fs/readFile",
            "services/list",
            "services/schema",
            "session/register"
        ]
    );
    let entry = &anonymous["operations"][0];
    assert_eq!(
        entry,
        &json!({"name":"fs/readFile","namespace":"fs","op_type":"query","description":"Read a UTF-8 file"})
    );
    let mut admin = request("/services/list", json!({}));
    admin.auth_token = Some("admin-token".into());
    let listed = one(&registry, admin).await.unwrap();
    assert_eq!(
        names(&listed),
        [
            "admin/tree",
            "fs/readFile",
            "services/list",
            "services/schema",
            "session/register"
        ]
    );
}

/// Conformance item 27 (docs/protocol.md §16).
#[tokio::test]
async fn services_schema_is_judged_like_a_call() {
    let registry = discovery_registry();
    let hidden = one(
        &registry,
        request("/services/schema", json!({"name": "zz/hidden"})),
    )
    .await;
    assert_eq!(
        hidden.unwrap_err(),
        CallError::operation_not_found("zz/hidden")
    );
    let mut as_user = request("/services/schema", json!({"name": "/admin/tree"}));
    as_user.auth_token = Some("user-token".into());
    assert_eq!(
        one(&registry, as_user).await.unwrap_err(),
        CallError::operation_not_found("admin/tree")
    );
    let missing = one(&registry, request("/services/schema", json!({})))
        .await
        .unwrap_err();
    assert_eq!(
        (missing.code.as_str(), missing.message.as_str()),
        ("INVALID_INPUT", "missing required field: name")
    );
    let spec = one(
        &registry,
        request("/services/schema", json!({"name": "/fs/readFile"})),
    )
    .await
    .unwrap();
    assert_eq!(spec["name"], "fs/readFile");
    assert_eq!(spec["visibility"], "external");
    assert_eq!(spec["access_control"]["required_scopes_any"], Value::Null);
    for key in [
        "namespace",
        "op_type",
        "description",
        "input_schema",
        "output_schema",
        "error_schemas",
    ] {
        assert!(spec.get(key).is_some(), "spec lacks {key}: {spec}");
    }
}
