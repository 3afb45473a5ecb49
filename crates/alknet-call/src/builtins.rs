//! Built-ins every session offers: discovery, `services/list` and
//! `services/schema` (docs/protocol.md §10.1–§10.2), where each caller sees only
//! what it may call; and `session/register` (§10.5). Also the diagnostic
//! operations the tests and benchmarks use.

use serde_json::{Value, json};

use crate::access::AccessControl;
use crate::error::CallError;
use crate::registry::{Context, OperationDef, RegistrationError, Registry, Visibility};

/// Registers `services/list`, `services/schema` and `session/register`.
pub fn register_discovery(registry: &Registry) -> Result<(), RegistrationError> {
    registry.register(
        OperationDef::query("services/list")
            .description("List the operations the caller may call")
            .access(AccessControl::default())
            .unary(|cx, _| async move { Ok(list(&cx)) }),
    )?;
    registry.register(
        OperationDef::query("services/schema")
            .description("Describe one operation the caller may call")
            .input_schema(json!({
                "type": "object",
                "properties": {"name": {"type": "string"}},
                "required": ["name"]
            }))
            .unary(|cx, input| async move { schema(&cx, &input) }),
    )?;
    registry.register(
        OperationDef::mutation("session/register")
            .description("Offer operations of your own to the node on this session")
            .input_schema(json!({
                "type": "object",
                "properties": {"operations": {"type": "array", "items": {
                    "type": "object",
                    "properties": {
                        "name": {"type": "string"},
                        "op_type": {"enum": ["query", "mutation", "subscription"]}
                    },
                    "required": ["name", "op_type"]
                }}},
                "required": ["operations"]
            }))
            .unary(|cx, input| async move { register_overlay(&cx, input) }),
    )?;
    Ok(())
}

fn register_overlay(cx: &Context, input: Value) -> Result<Value, CallError> {
    let Some(session) = &cx.session else {
        return Err(CallError::invalid_input(
            "session/register requires a call session",
        ));
    };
    let mut input = input;
    let operations = input
        .get_mut("operations")
        .map(Value::take)
        .unwrap_or_default();
    let registered = session.register_overlay(operations, cx.identity.is_none())?;
    Ok(json!({ "registered": registered }))
}

/// Registers the diagnostic operations used by tests and benchmarks:
/// `diag/echo` (returns its input), `diag/sleep` (`{"ms": n}`, at most
/// 60,000), `diag/count` (a subscription: `{"n": items, "interval_ms": gap}`
/// yields `{"i": 0}` … `{"i": n-1}`, then completes) and `diag/callback`
/// (`{"operation": name, "input": …}`: calls an operation the caller
/// registered on its own session and returns its output; a subscription's
/// items come back as an array).
pub fn register_diagnostics(registry: &Registry) -> Result<(), RegistrationError> {
    registry.register(
        OperationDef::subscription("diag/count")
            .description("Count from 0, one item per interval")
            .input_schema(json!({
                "type": "object",
                "properties": {
                    "n": {"type": "integer", "minimum": 0, "maximum": 1000000},
                    "interval_ms": {"type": "integer", "minimum": 0, "maximum": 60000}
                },
                "required": ["n"]
            }))
            .stream(|_, input| {
                let n = input["n"].as_u64().unwrap_or(0);
                let gap =
                    std::time::Duration::from_millis(input["interval_ms"].as_u64().unwrap_or(0));
                futures::stream::unfold(0, move |i| async move {
                    if i >= n {
                        return None;
                    }
                    if i > 0 && !gap.is_zero() {
                        tokio::time::sleep(gap).await;
                    }
                    Some((Ok(json!({ "i": i })), i + 1))
                })
            }),
    )?;
    registry.register(
        OperationDef::mutation("diag/callback")
            .description("Call an operation the caller registered on its session")
            .input_schema(json!({
                "type": "object",
                "properties": {"operation": {"type": "string"}},
                "required": ["operation"]
            }))
            .unary(|cx, input| async move { callback(&cx, input).await }),
    )?;
    registry.register(
        OperationDef::query("diag/echo")
            .description("Return the input unchanged")
            .unary(|_, input| async move { Ok(input) }),
    )?;
    registry.register(
        OperationDef::query("diag/sleep")
            .description("Wait, then answer")
            .input_schema(json!({
                "type": "object",
                "properties": {"ms": {"type": "integer", "minimum": 0, "maximum": 60000}},
                "required": ["ms"]
            }))
            .unary(|_, input| async move {
                let ms = input["ms"].as_u64().unwrap_or(0);
                tokio::time::sleep(std::time::Duration::from_millis(ms)).await;
                Ok(json!({ "slept_ms": ms }))
            }),
    )
}

async fn callback(cx: &Context, input: Value) -> Result<Value, CallError> {
    use futures::TryStreamExt;
    let Some(session) = &cx.session else {
        return Err(CallError::invalid_input(
            "diag/callback requires a call session",
        ));
    };
    let operation = input["operation"].as_str().unwrap_or_default();
    let argument = input.get("input").cloned().unwrap_or_else(|| json!({}));
    let is_subscription = session.overlay().iter().any(|spec| {
        spec.name == operation.trim_start_matches('/')
            && spec.op_type == crate::registry::OpType::Subscription
    });
    if is_subscription {
        let items: Vec<Value> = session
            .subscribe_overlay(operation, argument)
            .await?
            .try_collect()
            .await?;
        return Ok(Value::Array(items));
    }
    session.call_overlay(operation, argument).await
}

fn list(cx: &Context) -> Value {
    let operations: Vec<Value> = cx
        .registry
        .operations()
        .into_iter()
        .filter(|op| op.spec().visibility == Visibility::External)
        .filter(|op| {
            op.spec()
                .access_control
                .check(cx.identity.as_deref())
                .is_ok()
        })
        .map(|op| {
            let spec = op.spec();
            json!({
                "name": spec.name,
                "namespace": spec.namespace,
                "op_type": spec.op_type,
                "description": spec.description,
            })
        })
        .collect();
    json!({ "operations": operations })
}

fn schema(cx: &Context, input: &Value) -> Result<Value, CallError> {
    let requested = input["name"].as_str().unwrap_or_default();
    let name = requested.strip_prefix('/').unwrap_or(requested);
    // Judged exactly as a call to it would be (§7.1 steps 4–6).
    let operation = cx
        .registry
        .get(name)
        .filter(|op| op.spec().visibility == Visibility::External)
        .ok_or_else(|| CallError::operation_not_found(name))?;
    operation
        .spec()
        .access_control
        .check(cx.identity.as_deref())
        .map_err(|denied| crate::access::hidden(name, &denied))?;
    Ok(serde_json::to_value(operation.spec()).expect("a spec always serializes"))
}
