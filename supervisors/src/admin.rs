//! `admin/tree` and `admin/kill` (PROTOCOL.md §10.3–§10.4): the operator's
//! view of the live tree and the one intervention it allows, as call-protocol
//! operations. The registry is built before the node starts, so the operations
//! reach the node through an [`AdminHandle`] filled in once it runs.

use std::sync::{Arc, OnceLock};

use alknet_call::CallError;
use alknet_call::access::AccessControl;
use alknet_call::registry::{OperationDef, RegistrationError, Registry};
use serde_json::{Value, json};

use crate::NodeHandle;
use crate::node::KillError;

/// Where the admin operations find the running node.
#[derive(Clone, Default)]
pub struct AdminHandle(Arc<OnceLock<NodeHandle>>);

impl AdminHandle {
    /// Connects the operations to the running node (once).
    pub fn attach(&self, node: NodeHandle) {
        let _ = self.0.set(node);
    }

    pub(crate) fn node(&self) -> Result<&NodeHandle, CallError> {
        self.0
            .get()
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
                        Err(KillError::NotFound) => {
                            Err(CallError::not_found(format!("actor not found: {id}")))
                        }
                        Err(KillError::NotAConnection) => Err(CallError::invalid_input(format!(
                            "not a connection or session: {id}"
                        ))),
                    }
                }
            }),
    )?;
    Ok(())
}
