//! `admin/tree` and `admin/kill` (`docs/protocol.md` §10.3–§10.4), and the
//! fault-injection `diag/fault/panic-supervisor`: the operator's view of the
//! live tree and the interventions it allows, as call operations.
//!
//! The registry is built before the node starts and the tree belongs to the
//! supervision crate, so the operations reach the node through an
//! [`AdminHandle`]: a [`NodeControl`] the binary attaches once the node runs.

use std::sync::{Arc, OnceLock};

use alknet_core::control::{CrashError, KillError, NodeControl};
use serde_json::{Value, json};

use crate::CallError;
use crate::access::AccessControl;
use crate::registry::{OperationDef, RegistrationError, Registry};

/// Where the admin operations find the running node.
#[derive(Clone, Default)]
pub struct AdminHandle(Arc<OnceLock<Arc<dyn NodeControl>>>);

impl AdminHandle {
    /// Connects the operations to the running node (once).
    pub fn attach(&self, node: impl NodeControl) {
        let _ = self.0.set(Arc::new(node));
    }

    fn node(&self) -> Result<&dyn NodeControl, CallError> {
        self.0
            .get()
            .map(|node| &**node)
            .ok_or_else(|| CallError::unavailable("node is starting", 1))
    }
}

/// Registers `admin/tree` and `admin/kill` (scope `admin`).
pub fn register(registry: &Registry, handle: &AdminHandle) -> Result<(), RegistrationError> {
    let tree = handle.clone();
    registry.register(
        OperationDef::query("admin/tree")
            .description("The live actor tree")
            .input_schema(json!({"type": "object"}))
            .access(AccessControl::scopes(["admin"]))
            .unary(move |_, _| {
                let tree = tree.clone();
                async move {
                    let root = tree
                        .node()?
                        .tree()
                        .ok_or_else(|| CallError::unavailable("shutting down", 1))?;
                    Ok(json!({ "root": root }))
                }
            }),
    )?;
    let kill = handle.clone();
    registry.register(
        OperationDef::mutation("admin/kill")
            .description("Stop one connection or session")
            .input_schema(json!({
                "type": "object",
                "properties": {"id": {"type": "string"}},
                "required": ["id"]
            }))
            .access(AccessControl::scopes(["admin"]))
            .unary(move |_, input: Value| {
                let kill = kill.clone();
                async move {
                    let id = input["id"].as_str().unwrap_or_default().to_owned();
                    match kill.node()?.kill(&id).await {
                        Ok(()) => Ok(json!({ "stopped": id })),
                        Err(KillError::NotAConnection) => Err(CallError::invalid_input(format!(
                            "not a connection or session: {id}"
                        ))),
                        Err(_) => Err(CallError::not_found(format!("actor not found: {id}"))),
                    }
                }
            }),
    )?;
    Ok(())
}

/// Registers `diag/fault/panic-supervisor` (`{"alpn": "..."}`, scope
/// `admin`): makes a protocol supervisor of the running node panic, so that
/// the real binary's restarts and escalation can be measured from outside
/// (`alknet-bench chaos`). Register it only in fault-injection builds with
/// `[diagnostics] fault = true`.
pub fn register_fault(registry: &Registry, handle: &AdminHandle) -> Result<(), RegistrationError> {
    let handle = handle.clone();
    registry.register(
        OperationDef::mutation("diag/fault/panic-supervisor")
            .description("Make a protocol supervisor panic (fault-injection builds only)")
            .input_schema(json!({
                "type": "object",
                "properties": {"alpn": {"type": "string"}},
                "required": ["alpn"]
            }))
            .access(AccessControl::scopes(["admin"]))
            .unary(move |_, input: Value| {
                let handle = handle.clone();
                async move {
                    let alpn = input["alpn"].as_str().unwrap_or_default().to_owned();
                    // Answers once the supervisor has stopped: the caller
                    // times its restart from here.
                    match handle.node()?.crash_supervisor(&alpn).await {
                        Ok(supervisor) => Ok(json!({ "crashed": supervisor })),
                        Err(CrashError::UnknownProtocol) => {
                            Err(CallError::not_found(format!("no protocol serves {alpn}")))
                        }
                        Err(_) => Err(CallError::unavailable(
                            format!("the supervisor of {alpn} is not running"),
                            1,
                        )),
                    }
                }
            }),
    )
}
