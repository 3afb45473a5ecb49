//! What describes an operation, as discovery shows it (docs/protocol.md §6.2):
//! its kind, who may reach it, the errors it declares and its whole spec.
//! The registry that holds operations with their handlers is the shell's
//! (`alknet-call`); everything here is plain data.

use serde::{Deserialize, Serialize};
use serde_json::{Value, json};

use crate::access::AccessControl;

/// How an operation replies (§5.4).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum OpType {
    /// Reads; one reply.
    Query,
    /// Writes; one reply.
    Mutation,
    /// A stream of outputs, then `call.completed`.
    Subscription,
}

/// Who may reach an operation.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Visibility {
    /// Every entry point.
    #[default]
    External,
    /// Only nested calls inside the node.
    Internal,
}

/// A domain error an operation declares (§6.2 `error_schemas`).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct ErrorSchema {
    /// `[A-Z][A-Z0-9_]*`, not a protocol code.
    pub code: String,
    /// What it means.
    #[serde(default)]
    pub description: String,
    /// The schema of its `details`.
    #[serde(default = "empty_schema")]
    pub schema: Value,
    /// The gateway's HTTP status for it (400–599).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub http_status: Option<u16>,
}

fn empty_schema() -> Value {
    json!({})
}

/// An operation's public description, as `services/schema` returns it (§6.2).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct OperationSpec {
    /// Registry name, e.g. `fs/readFile`.
    pub name: String,
    /// First segment of the name.
    pub namespace: String,
    /// Reply pattern.
    pub op_type: OpType,
    /// Reachability.
    pub visibility: Visibility,
    /// Human-readable; `""` when none.
    pub description: String,
    /// JSON Schema of the input.
    pub input_schema: Value,
    /// JSON Schema of the output (documentation; not enforced).
    pub output_schema: Value,
    /// Declared domain errors.
    pub error_schemas: Vec<ErrorSchema>,
    /// Access requirements.
    pub access_control: AccessControl,
}

impl OperationSpec {
    /// Whether `code` is declared by this operation (or is an importer's
    /// `HTTP_<status>` / `MCP_TOOL_ERROR`, which count as declared).
    pub fn declares(&self, code: &str) -> bool {
        code.starts_with("HTTP_")
            || code == "MCP_TOOL_ERROR"
            || self.error_schemas.iter().any(|e| e.code == code)
    }
}
