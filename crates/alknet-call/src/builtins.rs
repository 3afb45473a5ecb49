//! Discovery built-ins: `services/list` and `services/schema` (PROTOCOL.md
//! §10.1–§10.2). Each caller sees only what it may call.

use serde_json::{Value, json};

use crate::access::AccessControl;
use crate::error::CallError;
use crate::registry::{Context, OperationDef, RegistrationError, Registry, Visibility};

/// Registers `services/list` and `services/schema`.
pub fn register_discovery(registry: &mut Registry) -> Result<(), RegistrationError> {
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
    Ok(())
}

/// Registers the diagnostic operations `diag/echo` (returns its input) and
/// `diag/sleep` (`{"ms": n}`, at most 60,000), used by tests and benchmarks.
pub fn register_diagnostics(registry: &mut Registry) -> Result<(), RegistrationError> {
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

fn list(cx: &Context) -> Value {
    let operations: Vec<Value> = cx
        .registry
        .iter()
        .filter(|op| op.spec().visibility == Visibility::External)
        .filter(|op| op.spec().access_control.check(cx.identity.as_ref()).is_ok())
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
        .check(cx.identity.as_ref())
        .map_err(CallError::from)?;
    Ok(serde_json::to_value(operation.spec()).expect("a spec always serializes"))
}
