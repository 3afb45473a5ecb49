//! Composition inside one registry (docs/protocol.md §7.2, §9): nested calls run as
//! the registration's authority, reach internal operations, inherit the
//! deadline, and are cancelled with the request that made them. No sockets:
//! these drive `dispatch` directly.

use std::sync::Arc;
use std::time::Duration;

use alknet_call::CallError;
use alknet_call::access::AccessControl;
use alknet_call::dispatch::{Reply, Request, dispatch};
use alknet_call::registry::{OperationDef, Registry};
use alknet_core::{Identity, NoIdentities};
use futures::StreamExt;
use serde_json::{Value, json};
use tokio::sync::mpsc;

fn request(operation: &str, identity: Option<Identity>) -> Request {
    Request {
        session_identity: identity.map(std::sync::Arc::new),
        ..Request::new("outer", operation, json!({}))
    }
}

async fn one(registry: &Arc<Registry>, request: Request) -> Result<Value, CallError> {
    match dispatch(registry, &NoIdentities, request)? {
        Reply::One(future) => future.await,
        Reply::Stream(_) => panic!("expected one reply"),
    }
}

/// Sends on drop: lets a test observe that a handler's future was dropped.
struct DropSignal(Option<mpsc::UnboundedSender<&'static str>>, &'static str);

impl Drop for DropSignal {
    fn drop(&mut self) {
        if let Some(tx) = self.0.take() {
            let _ = tx.send(self.1);
        }
    }
}

fn composing_registry(dropped: mpsc::UnboundedSender<&'static str>) -> Arc<Registry> {
    let registry = Registry::new();
    registry
        .register(
            OperationDef::query("inner/whoami")
                .internal()
                .access(AccessControl::scopes(["ops"]))
                .unary(|cx, _| async move {
                    Ok(json!({
                        "identity": cx.identity.map(|i| i.id.clone()),
                        "forwarded_for": cx.forwarded_for.map(|i| i.id),
                    }))
                }),
        )
        .unwrap();
    let inner_dropped = dropped.clone();
    registry
        .register(
            OperationDef::query("inner/forever")
                .internal()
                .unary(move |_, _| {
                    let signal = DropSignal(Some(inner_dropped.clone()), "inner");
                    let started = inner_dropped.clone();
                    async move {
                        let _signal = signal;
                        let _ = started.send("inner started");
                        std::future::pending::<()>().await;
                        Ok(json!(null))
                    }
                }),
        )
        .unwrap();
    registry
        .register(
            OperationDef::query("outer/granted")
                .authority(Identity::new("composer", ["ops"]))
                .unary(|cx, _| async move { cx.call("inner/whoami", json!({})).await }),
        )
        .unwrap();
    registry
        .register(
            OperationDef::query("outer/ungranted")
                .unary(|cx, _| async move { cx.call("/inner/whoami", json!({})).await }),
        )
        .unwrap();
    registry
        .register(OperationDef::query("outer/waits").unary(move |cx, _| {
            let signal = DropSignal(Some(dropped.clone()), "outer");
            async move {
                let _signal = signal;
                cx.call("inner/forever", json!({})).await
            }
        }))
        .unwrap();
    registry
        .register(OperationDef::subscription("outer/stream").stream(|cx, _| {
            futures::stream::iter(0..2)
                .then(move |i| {
                    let cx = cx.clone();
                    async move { cx.call("inner/whoami", json!({})).await.map(|_| json!(i)) }
                })
                .boxed()
        }))
        .unwrap();
    Arc::new(registry)
}

#[tokio::test]
async fn a_nested_call_runs_as_the_registrations_authority_with_the_caller_as_metadata() {
    let (tx, _rx) = mpsc::unbounded_channel();
    let registry = composing_registry(tx);
    let alice = Identity::new("alice", ["user"]);
    let output = one(&registry, request("outer/granted", Some(alice)))
        .await
        .unwrap();
    assert_eq!(
        output,
        json!({"identity": "composer", "forwarded_for": "alice"})
    );
}

#[tokio::test]
async fn a_nested_call_without_a_grant_is_anonymous_even_for_an_admin_caller() {
    let (tx, _rx) = mpsc::unbounded_channel();
    let registry = composing_registry(tx);
    let admin = Identity::new("admin", ["admin", "ops"]);
    let error = one(&registry, request("outer/ungranted", Some(admin)))
        .await
        .unwrap_err();
    assert_eq!(error, CallError::operation_not_found("inner/whoami"));
}

#[tokio::test]
async fn internal_operations_are_reachable_only_nested() {
    let (tx, _rx) = mpsc::unbounded_channel();
    let registry = composing_registry(tx);
    let error = one(&registry, request("inner/whoami", None))
        .await
        .unwrap_err();
    assert_eq!(error, CallError::operation_not_found("inner/whoami"));
}

#[tokio::test]
async fn a_nested_call_inherits_the_deadline() {
    let (tx, _rx) = mpsc::unbounded_channel();
    let registry = composing_registry(tx);
    let mut outer = request("outer/waits", None);
    outer.deadline = Some(tokio::time::Instant::now() + Duration::from_millis(50));
    let error = tokio::time::timeout(Duration::from_secs(5), one(&registry, outer))
        .await
        .expect("the nested call gives up at the outer deadline")
        .unwrap_err();
    assert_eq!(error, CallError::timeout());
}

#[tokio::test]
async fn dropping_the_outer_request_drops_the_nested_handler() {
    let (tx, mut dropped) = mpsc::unbounded_channel();
    let registry = composing_registry(tx);
    let Reply::One(future) =
        dispatch(&registry, &NoIdentities, request("outer/waits", None)).expect("dispatched")
    else {
        panic!("expected one reply");
    };
    let task = tokio::spawn(future);
    let started = tokio::time::timeout(Duration::from_secs(5), dropped.recv()).await;
    assert_eq!(started.ok().flatten(), Some("inner started"));
    task.abort();
    let mut seen = Vec::new();
    while seen.len() < 2 {
        let name = tokio::time::timeout(Duration::from_millis(100), dropped.recv())
            .await
            .expect("both handlers dropped within 100 ms")
            .expect("signal");
        seen.push(name);
    }
    seen.sort_unstable();
    assert_eq!(seen, ["inner", "outer"]);
}

#[tokio::test]
async fn a_subscription_composes_without_a_deadline() {
    let (tx, _rx) = mpsc::unbounded_channel();
    let registry = composing_registry(tx);
    let mut sub = request("outer/stream", None);
    // A deadline given for a subscription is ignored (§9.2), so a past one
    // must not time the nested calls out. Without a grant they are
    // anonymous and refused, which proves they ran.
    sub.deadline = Some(tokio::time::Instant::now());
    let Reply::Stream(items) = dispatch(&registry, &NoIdentities, sub).unwrap() else {
        panic!("expected a stream");
    };
    let items: Vec<_> = items.collect().await;
    assert_eq!(
        items,
        vec![Err(CallError::operation_not_found("inner/whoami"))]
    );
}
