//! `from_mcp`: a remote MCP server's tools as operations (docs/protocol.md §14.2).
//!
//! Over rmcp's streamable-HTTP client (on the shared outbound client's pool
//! and TLS settings) this lists the server's tools and registers each as
//! `<namespace>/<tool>`: a `mutation` (a tool may do anything) with the tool's
//! `inputSchema`, `internal` unless the import is configured external. A call
//! becomes `tools/call`; the output is the tool's `structuredContent` when
//! present, else its content blocks (text is never parsed as JSON, so an
//! output's shape does not depend on what a string happens to contain). A
//! result with `isError: true` is `MCP_TOOL_ERROR` with the content blocks in
//! `details.content`.
//!
//! The MCP session is one per import, opened at import and re-opened on the
//! next call after it dropped (the server restarted, the network failed); a
//! call that finds the session gone is retried once on a fresh one. The
//! credential is the registration's capability `mcp`, never the environment.

use std::sync::Arc;

use alknet_call::CallError;
use alknet_call::registry::{OperationDef, OperationSpec, Visibility};
use rmcp::model::{CallToolRequestParams, CallToolResult, ClientConfig};
use rmcp::service::{RoleClient, RunningService, ServiceError};
use rmcp::transport::streamable_http_client::{
    StreamableHttpClientTransport, StreamableHttpClientTransportConfig,
};
use rmcp::{ServiceExt, model::Implementation};
use serde_json::{Value, json};

use crate::forward::Auth;
use crate::openapi::sanitize;
use crate::outbound::Outbound;

/// The capability key of an MCP import's credential (§14.2).
pub const CAPABILITY: &str = "mcp";

/// One MCP import.
#[derive(Clone, Debug)]
pub struct McpImport {
    /// Imported names are `<namespace>/<tool>`.
    pub namespace: String,
    /// The server's streamable-HTTP endpoint, e.g. `https://host/mcp`.
    pub url: String,
    /// How the credential is sent.
    pub auth: Auth,
    /// `Internal` unless configured external.
    pub visibility: Visibility,
    /// Skip server certificate verification.
    pub insecure: bool,
}

/// Why an MCP import failed.
#[derive(Debug, thiserror::Error)]
pub enum McpImportError {
    /// The server refused the credential (HTTP 401/403).
    #[error(
        "MCP server {url} refused the import's credential ({detail}): check `credential` and `auth` of this [[import.mcp]]"
    )]
    Unauthorized {
        /// The endpoint.
        url: String,
        /// What the server said.
        detail: String,
    },
    /// The server could not be reached or did not speak MCP.
    #[error("cannot open an MCP session with {url}: {detail}")]
    Connect {
        /// The endpoint.
        url: String,
        /// Why.
        detail: String,
    },
    /// `tools/list` failed.
    #[error("MCP server {url}: tools/list failed: {detail}")]
    List {
        /// The endpoint.
        url: String,
        /// Why.
        detail: String,
    },
    /// A namespace that is not one name segment.
    #[error("namespace `{0}` must be one segment of [A-Za-z0-9._-]")]
    Namespace(String),
}

impl McpImportError {
    /// Whether trying again later could help (the server was unreachable),
    /// as opposed to a configuration problem.
    pub fn is_transient(&self) -> bool {
        matches!(self, Self::Connect { .. } | Self::List { .. })
    }
}

type Session = RunningService<RoleClient, ClientConfig>;

/// The session with one MCP server, re-opened when it has dropped.
struct Link {
    import: McpImport,
    outbound: Arc<Outbound>,
    session: tokio::sync::Mutex<Option<Arc<Session>>>,
}

impl Link {
    async fn session(&self, credential: Option<&str>) -> Result<Arc<Session>, McpImportError> {
        let mut current = self.session.lock().await;
        if let Some(session) = current.as_ref().filter(|s| !s.is_closed()) {
            return Ok(session.clone());
        }
        let session = Arc::new(self.connect(credential).await?);
        *current = Some(session.clone());
        Ok(session)
    }

    /// Forgets `stale` (if it is still the current session).
    async fn drop_session(&self, stale: &Arc<Session>) {
        let mut current = self.session.lock().await;
        if current.as_ref().is_some_and(|s| Arc::ptr_eq(s, stale)) {
            *current = None;
        }
    }

    async fn connect(&self, credential: Option<&str>) -> Result<Session, McpImportError> {
        let url = self.import.url.clone();
        let mut config = StreamableHttpClientTransportConfig::with_uri(url.clone());
        if let Some(credential) = credential {
            match &self.import.auth {
                Auth::None => {}
                Auth::Bearer => config = config.auth_header(credential),
                Auth::Basic | Auth::ApiKey { .. } => {
                    let (name, value) = match &self.import.auth {
                        Auth::ApiKey { header } => (header.clone(), credential.to_owned()),
                        _ => {
                            use base64::Engine;
                            let encoded =
                                base64::engine::general_purpose::STANDARD.encode(credential);
                            ("authorization".to_owned(), format!("Basic {encoded}"))
                        }
                    };
                    let connect_error = |detail: &str| McpImportError::Connect {
                        url: url.clone(),
                        detail: detail.to_owned(),
                    };
                    let name = axum::http::HeaderName::try_from(name)
                        .map_err(|_| connect_error("invalid API-key header name"))?;
                    let mut value = axum::http::HeaderValue::try_from(value)
                        .map_err(|_| connect_error("the credential is not a valid header value"))?;
                    value.set_sensitive(true);
                    config.custom_headers.insert(name, value);
                }
            }
        }
        let transport = StreamableHttpClientTransport::with_client(
            self.outbound.raw_client(self.import.insecure),
            config,
        );
        let info = ClientConfig::new(
            Default::default(),
            Implementation::new("alknet-from-mcp", env!("CARGO_PKG_VERSION")),
        );
        info.serve(transport).await.map_err(|error| {
            let detail = error.to_string();
            if error.auth_challenge().is_some()
                || detail.contains("401")
                || detail.contains("403")
                || detail.to_ascii_lowercase().contains("unauthorized")
            {
                McpImportError::Unauthorized { url, detail }
            } else {
                McpImportError::Connect { url, detail }
            }
        })
    }
}

/// Lists the tools of the MCP server `import` names and returns one operation
/// per tool, not registered (the caller grants each the credential as
/// capability [`CAPABILITY`] and registers them all or none). `credential`
/// opens the discovery session; calls use their registration's capability.
pub async fn from_mcp(
    import: &McpImport,
    credential: Option<&str>,
    outbound: Arc<Outbound>,
) -> Result<Vec<OperationDef>, McpImportError> {
    if import.namespace.is_empty() || sanitize(&import.namespace) != import.namespace {
        return Err(McpImportError::Namespace(import.namespace.clone()));
    }
    let link = Arc::new(Link {
        import: import.clone(),
        outbound,
        session: tokio::sync::Mutex::new(None),
    });
    let session = link.session(credential).await?;
    let tools = session
        .list_all_tools()
        .await
        .map_err(|error| McpImportError::List {
            url: import.url.clone(),
            detail: error.to_string(),
        })?;
    Ok(tools
        .into_iter()
        .map(|tool| {
            let spec = OperationSpec {
                name: format!("{}/{}", import.namespace, sanitize(&tool.name)),
                namespace: import.namespace.clone(),
                op_type: alknet_call::registry::OpType::Mutation,
                visibility: import.visibility,
                description: tool
                    .description
                    .as_deref()
                    .or(tool.title.as_deref())
                    .unwrap_or("")
                    .to_owned(),
                input_schema: Value::Object((*tool.input_schema).clone()),
                output_schema: tool
                    .output_schema
                    .as_ref()
                    .map(|schema| Value::Object((**schema).clone()))
                    .unwrap_or_else(|| json!({})),
                error_schemas: Vec::new(),
                access_control: Default::default(),
            };
            let link = link.clone();
            let tool_name = tool.name.to_string();
            OperationDef::from_spec(spec).unary(move |cx, input: Value| {
                let link = link.clone();
                let tool_name = tool_name.clone();
                async move {
                    let credential = cx.capabilities.get(CAPABILITY);
                    call(&link, credential, &tool_name, input).await
                }
            })
        })
        .collect())
}

/// One `tools/call`, retried once on a fresh session when the session had
/// dropped.
async fn call(
    link: &Link,
    credential: Option<&str>,
    tool: &str,
    input: Value,
) -> Result<Value, CallError> {
    let arguments = match input {
        Value::Object(arguments) => Some(arguments),
        Value::Null => None,
        _ => return Err(CallError::invalid_input("input does not match schema")),
    };
    let mut params = CallToolRequestParams::new(tool.to_owned());
    params.arguments = arguments;
    for attempt in 0..2 {
        let session = link.session(credential).await.map_err(|error| {
            tracing::warn!("{error}");
            CallError::internal("MCP server unreachable")
        })?;
        match session.call_tool(params.clone()).await {
            Ok(result) => return tool_output(result),
            Err(ServiceError::McpError(error)) => {
                return Err(CallError::internal(format!(
                    "MCP error {}: {}",
                    error.code.0, error.message
                )));
            }
            Err(error) => {
                tracing::warn!(url = %link.import.url, "MCP session failed: {error}");
                link.drop_session(&session).await;
                if attempt == 1 {
                    return Err(CallError::internal("MCP server unreachable"));
                }
            }
        }
    }
    Err(CallError::internal("MCP server unreachable"))
}

/// A tool result as an output or `MCP_TOOL_ERROR`.
fn tool_output(result: CallToolResult) -> Result<Value, CallError> {
    let content = serde_json::to_value(&result.content).unwrap_or(Value::Array(Vec::new()));
    if result.is_error == Some(true) {
        let message = result
            .content
            .iter()
            .find_map(|block| block.as_text().map(|text| text.text.clone()))
            .unwrap_or_else(|| "the tool reported an error".to_owned());
        return Err(CallError::domain("MCP_TOOL_ERROR", message, false)
            .with_details(json!({ "content": content })));
    }
    Ok(result.structured_content.unwrap_or(content))
}
