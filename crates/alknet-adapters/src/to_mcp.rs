//! `to_mcp`: the node as an MCP server at `/mcp` (docs/protocol.md §14.1).
//!
//! An agent sees exactly four tools — `search`, `schema`, `call`, `batch` —
//! never one tool per operation: the operation list depends on who asks and
//! changes while the node runs, and four fixed tools keep an agent's context
//! small while discovery stays a call away. Every tool dispatches through
//! [`alknet_call::dispatch`] exactly like the HTTP gateway: the identity is
//! the bearer token of the HTTP request carrying the MCP message (the
//! [`PresentedToken`] the HTTP handler's bearer middleware attached), internal
//! operations do not exist, and access, validation and deadlines are the
//! gateway's. Subscriptions are not offered (MCP tool calls have one result).
//!
//! The transport is rmcp's streamable HTTP server, mounted by the HTTP
//! handler; stdio is never built. rmcp validates the `Host` header against
//! an allow-list (loopback only by default, against DNS rebinding); a public
//! node lists its own host names in `[http] mcp_allowed_hosts`.

use std::sync::Arc;
use std::time::Duration;

use alknet_call::CallError;
use alknet_call::dispatch::{self, Expect, Origin, PresentedToken, Request};
use alknet_call::registry::Registry;
use alknet_call::schema::InputSchema;
use alknet_core::IdentityProvider;
use rmcp::ServerHandler;
use rmcp::model::{
    CallToolRequestParams, CallToolResponse, CallToolResult, ContentBlock, ErrorCode, ErrorData,
    Implementation, ListToolsResult, PaginatedRequestParams, ServerCapabilities, ServerConfig,
    Tool,
};
use rmcp::service::{RequestContext, RoleServer};
use rmcp::transport::streamable_http_server::session::local::LocalSessionManager;
use rmcp::transport::streamable_http_server::{StreamableHttpServerConfig, StreamableHttpService};
use serde_json::{Value, json};
use tokio::time::Instant;

/// `serverInfo.name`.
pub const SERVER_NAME: &str = "alknet-to-mcp";

/// Settings of `/mcp`.
#[derive(Clone, Debug)]
pub struct McpSettings {
    /// `Host` values (`name` or `name:port`) accepted; empty accepts any
    /// (not recommended: DNS rebinding).
    pub allowed_hosts: Vec<String>,
    /// Deadline of each dispatched query or mutation.
    pub call_timeout: Duration,
    /// Calls one `batch` may hold.
    pub max_batch: usize,
    /// `serverInfo.version`: the node's version.
    pub version: String,
}

impl Default for McpSettings {
    fn default() -> Self {
        Self {
            allowed_hosts: vec!["localhost".into(), "127.0.0.1".into(), "::1".into()],
            call_timeout: Duration::from_secs(30),
            max_batch: 100,
            version: env!("CARGO_PKG_VERSION").to_owned(),
        }
    }
}

/// The `/mcp` service as an axum router (served at the router's root: the
/// HTTP handler routes `/mcp` to it, behind its bearer middleware).
pub fn router(
    registry: Arc<Registry>,
    identities: Arc<dyn IdentityProvider>,
    settings: McpSettings,
) -> axum::Router {
    let tools = Tools::new(registry, identities, &settings);
    let config =
        StreamableHttpServerConfig::default().with_allowed_hosts(settings.allowed_hosts.clone());
    let service = StreamableHttpService::new(
        move || Ok(tools.clone()),
        Arc::new(LocalSessionManager::default()),
        config,
    );
    axum::Router::new()
        .fallback_service(service)
        .layer(axum::middleware::from_fn(refuse_unresolved_tokens))
}

/// A presented token that does not resolve is refused before MCP sees the
/// message: `401` with `WWW-Authenticate: Bearer` and the `FORBIDDEN`
/// `invalid token` CallError, as MCP's authorization rules require of an
/// invalid token (§14.1 dispatches as the gateway, where that token would
/// fail every operation anyway). No token is anonymous, not refused:
/// operations without access control stay callable.
async fn refuse_unresolved_tokens(
    request: axum::extract::Request,
    next: axum::middleware::Next,
) -> axum::response::Response {
    use axum::response::IntoResponse;
    if let Some(PresentedToken::Unresolved(_)) = request.extensions().get::<PresentedToken>() {
        return (
            axum::http::StatusCode::UNAUTHORIZED,
            [(axum::http::header::WWW_AUTHENTICATE, "Bearer")],
            axum::Json(CallError::forbidden("invalid token")),
        )
            .into_response();
    }
    next.run(request).await
}

/// The four tools' schemas.
fn call_schema() -> Value {
    json!({"type":"object","properties":{"operation":{"type":"string"},"input":{"type":"object"}},"required":["operation"]})
}

fn tool_schemas() -> [(&'static str, &'static str, Value); 4] {
    [
        (
            "search",
            "List the operations you may call (name, description); `query` filters by a case-insensitive substring of either.",
            json!({"type":"object","properties":{"query":{"type":"string"}}}),
        ),
        (
            "schema",
            "The full spec of one operation: input and output JSON schemas, errors, access control.",
            json!({"type":"object","properties":{"name":{"type":"string"}},"required":["name"]}),
        ),
        (
            "call",
            "Call one query or mutation with its input (default {}).",
            call_schema(),
        ),
        (
            "batch",
            "Run several calls concurrently; one result per call, in order. A failing call never fails the batch.",
            json!({"type":"object","properties":{"calls":{"type":"array","items":call_schema()}},"required":["calls"]}),
        ),
    ]
}

/// The tool handler: one per MCP session (rmcp's factory clones it).
#[derive(Clone)]
struct Tools {
    registry: Arc<Registry>,
    identities: Arc<dyn IdentityProvider>,
    tools: Arc<Vec<Tool>>,
    schemas: Arc<Vec<(String, InputSchema)>>,
    call_timeout: Duration,
    max_batch: usize,
    version: String,
}

impl Tools {
    fn new(
        registry: Arc<Registry>,
        identities: Arc<dyn IdentityProvider>,
        settings: &McpSettings,
    ) -> Self {
        let mut tools = Vec::new();
        let mut schemas = Vec::new();
        for (name, description, schema) in tool_schemas() {
            let compiled = InputSchema::compile(&schema).expect("the tool schemas are valid");
            let Value::Object(object) = schema else {
                unreachable!("tool schemas are objects")
            };
            tools.push(Tool::new(name, description, Arc::new(object)));
            schemas.push((name.to_owned(), compiled));
        }
        Self {
            registry,
            identities,
            tools: Arc::new(tools),
            schemas: Arc::new(schemas),
            call_timeout: settings.call_timeout,
            max_batch: settings.max_batch,
            version: settings.version.clone(),
        }
    }

    /// Dispatches one query or mutation as the request's bearer, under the
    /// gateway's rules (§11.3).
    async fn dispatch(
        &self,
        bearer: &PresentedToken,
        operation: &str,
        input: Value,
    ) -> Result<Value, CallError> {
        let (identity, token) = bearer.clone().dispatch_parts(None);
        let deadline = Instant::now() + self.call_timeout;
        dispatch::dispatch(
            &self.registry,
            &*self.identities,
            Request {
                id: uuid::Uuid::new_v4().to_string(),
                operation: operation.to_owned(),
                input,
                session_identity: identity,
                auth_token: token,
                forwarded_for: None,
                origin: Origin::Remote,
                expect: Expect::OneReply,
                deadline: Some(deadline),
                session: None,
            },
        )?
        .one_output(Some(deadline))
        .await
    }

    async fn run(
        &self,
        bearer: &PresentedToken,
        tool: &str,
        arguments: Value,
    ) -> Result<Value, CallError> {
        match tool {
            "search" => {
                let listed = self.dispatch(bearer, "services/list", json!({})).await?;
                let query = arguments["query"].as_str().map(str::to_lowercase);
                let operations: Vec<Value> = listed["operations"]
                    .as_array()
                    .into_iter()
                    .flatten()
                    .filter(|op| op["op_type"] != "subscription")
                    .filter(|op| match &query {
                        None => true,
                        Some(query) => [&op["name"], &op["description"]].iter().any(|field| {
                            field
                                .as_str()
                                .is_some_and(|text| text.to_lowercase().contains(query))
                        }),
                    })
                    .map(|op| json!({"name": op["name"], "description": op["description"]}))
                    .collect();
                Ok(json!({ "operations": operations }))
            }
            "schema" => {
                self.dispatch(
                    bearer,
                    "services/schema",
                    json!({"name": arguments["name"]}),
                )
                .await
            }
            "call" => {
                let (operation, input) = call_parts(&arguments);
                self.dispatch(bearer, &operation, input).await
            }
            "batch" => {
                let calls = arguments["calls"].as_array().cloned().unwrap_or_default();
                if calls.len() > self.max_batch {
                    return Err(CallError::invalid_input(format!(
                        "batch too large: {} items (limit {})",
                        calls.len(),
                        self.max_batch
                    )));
                }
                let runs = calls.iter().map(|call| {
                    let (operation, input) = call_parts(call);
                    async move { self.dispatch(bearer, &operation, input).await }
                });
                let results: Vec<Value> = futures::future::join_all(runs)
                    .await
                    .into_iter()
                    .map(|result| match result {
                        Ok(output) => json!({"isError": false, "output": output}),
                        Err(error) => json!({"isError": true, "error": error}),
                    })
                    .collect();
                Ok(json!({ "results": results }))
            }
            _ => Err(CallError::internal("unknown tool")),
        }
    }
}

/// `{operation, input?}`: absent input is `{}`; the leading slash is optional.
fn call_parts(call: &Value) -> (String, Value) {
    let operation = call["operation"].as_str().unwrap_or_default().to_owned();
    let input = call.get("input").cloned().unwrap_or_else(|| json!({}));
    (operation, input)
}

/// A tool result (§14.1): the output as structured content (wrapped in
/// `{"output": …}` unless it is an object) and as one compact JSON text
/// block; a CallError as an error result.
fn tool_result(result: Result<Value, CallError>) -> CallToolResult {
    match result {
        Ok(output) => {
            let text = output.to_string();
            let structured = if output.is_object() {
                output
            } else {
                json!({ "output": output })
            };
            let mut result = CallToolResult::success(vec![ContentBlock::text(text)]);
            result.structured_content = Some(structured);
            result
        }
        Err(error) => {
            let text = format!("{}: {}", error.code, error.message);
            let mut result = CallToolResult::error(vec![ContentBlock::text(text)]);
            result.structured_content = Some(serde_json::to_value(&error).unwrap_or(Value::Null));
            result
        }
    }
}

/// The bearer of the HTTP request that carried this MCP message.
fn bearer(context: &RequestContext<RoleServer>) -> PresentedToken {
    context
        .extensions
        .get::<axum::http::request::Parts>()
        .and_then(|parts| parts.extensions.get::<PresentedToken>())
        .cloned()
        .unwrap_or(PresentedToken::Anonymous)
}

impl ServerHandler for Tools {
    fn get_info(&self) -> ServerConfig {
        ServerConfig::new(ServerCapabilities::builder().enable_tools().build())
            .with_server_info(Implementation::new(SERVER_NAME, self.version.clone()))
    }

    async fn list_tools(
        &self,
        _request: Option<PaginatedRequestParams>,
        _context: RequestContext<RoleServer>,
    ) -> Result<ListToolsResult, ErrorData> {
        Ok(ListToolsResult::with_all_items((*self.tools).clone()))
    }

    async fn call_tool(
        &self,
        request: CallToolRequestParams,
        context: RequestContext<RoleServer>,
    ) -> Result<CallToolResponse, ErrorData> {
        let name = request.name.as_ref();
        let Some((_, schema)) = self.schemas.iter().find(|(tool, _)| tool == name) else {
            let error = CallError::not_found(format!("unknown tool: {name}"));
            return Err(ErrorData::new(
                ErrorCode::INVALID_PARAMS,
                format!("unknown tool: {name}"),
                serde_json::to_value(&error).ok(),
            ));
        };
        let arguments = Value::Object(request.arguments.clone().unwrap_or_default());
        let bearer = bearer(&context);
        let result = match schema.validate(&arguments) {
            Err(error) => Err(error),
            Ok(()) => self.run(&bearer, name, arguments).await,
        };
        Ok(tool_result(result).into())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn results_follow_the_mapping_of_section_14_1() {
        let ok = tool_result(Ok(json!([1, 2])));
        assert_eq!(ok.is_error, Some(false));
        assert_eq!(ok.structured_content, Some(json!({"output": [1, 2]})));
        let ok = tool_result(Ok(json!({"a": 1})));
        assert_eq!(ok.structured_content, Some(json!({"a": 1})));
        let error = tool_result(Err(CallError::invalid_input(
            "missing required field: name",
        )));
        assert_eq!(error.is_error, Some(true));
        assert_eq!(
            error.structured_content.unwrap()["code"],
            json!("INVALID_INPUT")
        );
        let text = serde_json::to_value(&error.content[0]).unwrap();
        assert_eq!(
            text["text"],
            json!("INVALID_INPUT: missing required field: name")
        );
    }
}
