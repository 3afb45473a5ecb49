//! HTTP-backed adapters (docs/protocol.md §14) over loopback: `from_openapi`
//! against a local axum server standing in for the Swagger Petstore (its real
//! OpenAPI 3.0 document, `tests/data/petstore.yaml`), `from_jsonschema`, the
//! shared outbound client's retries and `Retry-After`, SSE subscriptions;
//! `to_mcp` at `/mcp` of a real node driven by rmcp's client; `from_mcp`
//! importing that `/mcp` into a second registry, through a restart.

use std::collections::VecDeque;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use alknet_adapters::forward::Auth;
use alknet_adapters::from_mcp::{self, McpImport, McpImportError};
use alknet_adapters::openapi::{self, HttpImport};
use alknet_adapters::outbound::{Outbound, OutboundSettings};
use alknet_adapters::to_mcp::{self, McpSettings};
use alknet_call::ErrorCode;
use alknet_call::access::AccessControl;
use alknet_call::dispatch::{self, Expect, Origin, Reply};
use alknet_call::registry::{OpType, OperationDef, OperationSpec, Registry, Visibility};
use alknet_call::{CallError, builtins};
use alknet_core::{IdentityProvider, NoIdentities, NodeKey};
use alknet_e2e::{TestTokens, generate_certificate, start_node_with, test_config};
use alknet_http::{HttpHandler, HttpSettings};
use alknet_supervisors::NodeHandle;
use axum::extract::{Path, Request, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use futures::StreamExt;
use rmcp::ServiceExt;
use rmcp::model::CallToolRequestParams;
use rmcp::transport::streamable_http_client::{
    StreamableHttpClientTransport, StreamableHttpClientTransportConfig,
};
use serde_json::{Value, json};

const PETSTORE: &[u8] = include_bytes!("data/petstore.yaml");
const EVENTS: &[u8] = include_bytes!("data/events.json");

/// One request the stand-in API saw.
#[derive(Clone, Debug)]
struct Seen {
    method: String,
    path: String,
    query: Option<String>,
    headers: HeaderMap,
    body: Option<Value>,
    at: Instant,
}

/// A scripted reply: status and `Retry-After`.
type Scripted = (u16, Option<&'static str>);

/// The stand-in API's state: what it saw, and scripted replies for
/// `/v2/store/inventory` (status, Retry-After) before it answers 200.
#[derive(Clone, Default)]
struct Api {
    seen: Arc<Mutex<Vec<Seen>>>,
    script: Arc<Mutex<VecDeque<Scripted>>>,
}

impl Api {
    fn seen(&self) -> Vec<Seen> {
        self.seen.lock().unwrap().clone()
    }

    fn seen_at(&self, path: &str) -> Vec<Seen> {
        self.seen().into_iter().filter(|s| s.path == path).collect()
    }

    fn script(&self, replies: &[Scripted]) {
        self.script.lock().unwrap().extend(replies.iter().copied());
    }
}

async fn record(
    State(api): State<Api>,
    request: Request,
    next: axum::middleware::Next,
) -> Response {
    let (parts, body) = request.into_parts();
    let bytes = axum::body::to_bytes(body, 1 << 20)
        .await
        .unwrap_or_default();
    api.seen.lock().unwrap().push(Seen {
        method: parts.method.to_string(),
        path: parts.uri.path().to_owned(),
        query: parts.uri.query().map(str::to_owned),
        headers: parts.headers.clone(),
        body: serde_json::from_slice(&bytes).ok(),
        at: Instant::now(),
    });
    next.run(Request::from_parts(parts, axum::body::Body::from(bytes)))
        .await
}

async fn get_pet(Path(id): Path<i64>) -> Response {
    if id == 404 {
        return (StatusCode::NOT_FOUND, "no such pet").into_response();
    }
    axum::Json(json!({"id": id, "name": "doggie", "photoUrls": [], "status": "available"}))
        .into_response()
}

async fn inventory(State(api): State<Api>) -> Response {
    let next = api.script.lock().unwrap().pop_front();
    match next {
        Some((status, retry_after)) => {
            let mut response = StatusCode::from_u16(status).unwrap().into_response();
            if let Some(after) = retry_after {
                response
                    .headers_mut()
                    .insert("retry-after", after.parse().unwrap());
            }
            response
        }
        None => axum::Json(json!({"available": 7})).into_response(),
    }
}

async fn events(axum::extract::RawQuery(query): axum::extract::RawQuery) -> Response {
    let count: usize = query
        .as_deref()
        .and_then(|q| q.strip_prefix("count="))
        .and_then(|n| n.parse().ok())
        .unwrap_or(0);
    let body: String = (0..count)
        .map(|n| format!("data: {{\"n\":{n}}}\n\n"))
        .chain(std::iter::once("data: plain text\n\n".to_owned()))
        .collect();
    ([("content-type", "text/event-stream")], body).into_response()
}

async fn serve_api() -> (String, Api) {
    let api = Api::default();
    let router = axum::Router::new()
        .route("/v2/pet/{id}", get(get_pet))
        .route(
            "/v2/pet/findByStatus",
            get(|| async { axum::Json(json!([])) }),
        )
        .route(
            "/v2/store/order",
            post(|axum::Json(body): axum::Json<Value>| async move { axum::Json(body) }),
        )
        .route("/v2/store/inventory", get(inventory))
        .route("/events", get(events))
        .route(
            "/widgets/{id}",
            get(|Path(id): Path<String>| async move { axum::Json(json!({ "id": id })) }),
        )
        .layer(axum::middleware::from_fn_with_state(api.clone(), record))
        .with_state(api.clone());
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, router).await });
    (format!("http://{addr}"), api)
}

fn outbound(retries: u32) -> Arc<Outbound> {
    Arc::new(
        Outbound::new(OutboundSettings {
            retries,
            backoff: Duration::from_millis(20),
            ..OutboundSettings::default()
        })
        .unwrap(),
    )
}

fn petstore(base: &str, namespace: &str, visibility: Visibility) -> HttpImport {
    HttpImport {
        namespace: namespace.to_owned(),
        base_url: Some(format!("{base}/v2")),
        auth: Auth::ApiKey {
            header: "api_key".to_owned(),
        },
        visibility,
        insecure: false,
    }
}

/// A registry holding the Petstore import, with `special-key` as the
/// credential (capability `pets`).
fn petstore_registry(base: &str, retries: u32) -> Arc<Registry> {
    let registry = Registry::new();
    let defs = openapi::from_openapi(
        PETSTORE,
        &petstore(base, "pets", Visibility::Internal),
        outbound(retries),
    )
    .unwrap()
    .into_iter()
    .map(|def| def.capability("pets", "special-key"))
    .collect();
    registry.register_all(defs).unwrap();
    Arc::new(registry)
}

/// A nested call: how the node's own operations reach internal imports.
async fn call(registry: &Arc<Registry>, operation: &str, input: Value) -> Result<Value, CallError> {
    let mut request = dispatch::Request::new(uuid::Uuid::new_v4().to_string(), operation, input);
    request.origin = Origin::Nested;
    request.expect = Expect::OneReply;
    match dispatch::dispatch(registry, &NoIdentities, request)? {
        Reply::One(output) => output.await,
        Reply::Stream(_) => panic!("a stream for a unary call"),
    }
}

#[tokio::test]
async fn every_petstore_operation_is_imported_with_its_kind() {
    let registry = petstore_registry("http://127.0.0.1:9", 0);
    let mut imported: Vec<(String, OpType)> = registry
        .operations()
        .iter()
        .map(|op| (op.spec().name.clone(), op.spec().op_type))
        .collect();
    imported.sort_by(|a, b| a.0.cmp(&b.0));
    let expected = [
        ("addPet", OpType::Mutation),
        ("createUser", OpType::Mutation),
        ("createUsersWithArrayInput", OpType::Mutation),
        ("createUsersWithListInput", OpType::Mutation),
        ("deleteOrder", OpType::Mutation),
        ("deletePet", OpType::Mutation),
        ("deleteUser", OpType::Mutation),
        ("findPetsByStatus", OpType::Query),
        ("findPetsByTags", OpType::Query),
        ("getInventory", OpType::Query),
        ("getOrderById", OpType::Query),
        ("getPetById", OpType::Query),
        ("getUserByName", OpType::Query),
        ("loginUser", OpType::Query),
        ("logoutUser", OpType::Query),
        ("placeOrder", OpType::Mutation),
        ("updatePet", OpType::Mutation),
        ("updatePetWithForm", OpType::Mutation),
        ("updateUser", OpType::Mutation),
        ("uploadFile", OpType::Mutation),
    ]
    .map(|(name, kind)| (format!("pets/{name}"), kind));
    assert_eq!(imported, expected);
    let add_pet = registry.get("pets/addPet").unwrap();
    let spec = add_pet.spec();
    // `requestBody: {$ref: '#/components/requestBodies/Pet'}`, inlined.
    assert_eq!(spec.input_schema["required"], json!(["body"]));
    assert_eq!(
        spec.input_schema["properties"]["body"]["required"],
        json!(["name", "photoUrls"])
    );
    assert_eq!(spec.visibility, Visibility::Internal);
    let get_pet = registry.get("pets/getPetById").unwrap();
    let codes: Vec<(&str, Option<u16>)> = get_pet
        .spec()
        .error_schemas
        .iter()
        .map(|e| (e.code.as_str(), e.http_status))
        .collect();
    assert_eq!(codes, [("HTTP_400", Some(400)), ("HTTP_404", Some(404))]);
}

#[tokio::test]
async fn a_call_forwards_path_query_body_and_the_credential() {
    let (base, api) = serve_api().await;
    let registry = petstore_registry(&base, 0);

    let pet = call(&registry, "pets/getPetById", json!({"petId": 12}))
        .await
        .unwrap();
    assert_eq!(pet["id"], 12);
    let seen = api.seen_at("/v2/pet/12");
    assert_eq!(seen.len(), 1);
    assert_eq!(seen[0].method, "GET");
    assert_eq!(seen[0].headers["api_key"], "special-key");

    call(
        &registry,
        "pets/findPetsByStatus",
        json!({"status": ["available", "sold"]}),
    )
    .await
    .unwrap();
    let seen = api.seen_at("/v2/pet/findByStatus");
    assert_eq!(
        seen[0].query.as_deref(),
        Some("status=available&status=sold")
    );

    let order = json!({"id": 3, "petId": 12, "quantity": 1, "status": "placed"});
    let echoed = call(&registry, "pets/placeOrder", json!({ "body": order }))
        .await
        .unwrap();
    assert_eq!(echoed, order);
    let seen = api.seen_at("/v2/store/order");
    assert_eq!(seen[0].method, "POST");
    assert_eq!(seen[0].body.as_ref(), Some(&order));
    assert_eq!(seen[0].headers["content-type"], "application/json");

    // Input is validated against the imported schema before anything is sent.
    let error = call(&registry, "pets/getPetById", json!({"petId": "twelve"}))
        .await
        .unwrap_err();
    assert_eq!(error.code, ErrorCode::InvalidInput);
    assert_eq!(api.seen().len(), 3);
}

#[tokio::test]
async fn a_404_is_http_404_and_is_not_retried() {
    let (base, api) = serve_api().await;
    let registry = petstore_registry(&base, 3);
    let error = call(&registry, "pets/getPetById", json!({"petId": 404}))
        .await
        .unwrap_err();
    assert_eq!(
        serde_json::to_value(&error).unwrap(),
        json!({"code": "HTTP_404", "message": "HTTP 404: Not Found", "retryable": false})
    );
    assert_eq!(api.seen_at("/v2/pet/404").len(), 1);
}

#[tokio::test]
async fn transient_5xx_are_retried_with_backoff_and_then_reported() {
    let (base, api) = serve_api().await;
    let registry = petstore_registry(&base, 3);
    api.script(&[(500, None), (502, None)]);
    let output = call(&registry, "pets/getInventory", json!({}))
        .await
        .unwrap();
    assert_eq!(output, json!({"available": 7}));
    assert_eq!(api.seen_at("/v2/store/inventory").len(), 3);

    // Retries exhausted: the last status is the error.
    api.script(&[(500, None), (500, None), (500, None), (500, None)]);
    let error = call(&registry, "pets/getInventory", json!({}))
        .await
        .unwrap_err();
    assert_eq!(error.code.as_str(), "HTTP_500");
    assert_eq!(api.seen_at("/v2/store/inventory").len(), 3 + 4);
}

#[tokio::test]
async fn retry_after_on_a_503_holds_the_next_request_to_that_url() {
    let (base, api) = serve_api().await;
    // Retried: the retry waits for Retry-After, not just the backoff.
    let registry = petstore_registry(&base, 3);
    api.script(&[(503, Some("2"))]);
    let started = Instant::now();
    let output = call(&registry, "pets/getInventory", json!({}))
        .await
        .unwrap();
    assert_eq!(output, json!({"available": 7}));
    let seen = api.seen_at("/v2/store/inventory");
    assert_eq!(seen.len(), 2);
    assert!(
        seen[1].at - seen[0].at >= Duration::from_secs(2),
        "the retry came {:?} after the 503",
        seen[1].at - seen[0].at
    );
    assert!(started.elapsed() >= Duration::from_secs(2));

    // Not retried (retries = 0): the error carries retry_after, and the next
    // call to the same URL still waits.
    let (base, api) = serve_api().await;
    let registry = petstore_registry(&base, 0);
    api.script(&[(503, Some("2"))]);
    let error = call(&registry, "pets/getInventory", json!({}))
        .await
        .unwrap_err();
    assert_eq!(error.code.as_str(), "HTTP_503");
    assert_eq!(error.details, Some(json!({"retry_after": 2})));
    call(&registry, "pets/getInventory", json!({}))
        .await
        .unwrap();
    let seen = api.seen_at("/v2/store/inventory");
    assert_eq!(seen.len(), 2);
    assert!(seen[1].at - seen[0].at >= Duration::from_secs(2));
}

#[tokio::test]
async fn an_event_stream_endpoint_is_a_subscription() {
    let (base, _api) = serve_api().await;
    let import = HttpImport {
        namespace: "feed".to_owned(),
        base_url: Some(base),
        auth: Auth::None,
        visibility: Visibility::Internal,
        insecure: false,
    };
    let registry = Registry::new();
    registry
        .register_all(openapi::from_openapi(EVENTS, &import, outbound(0)).unwrap())
        .unwrap();
    let registry = Arc::new(registry);
    assert_eq!(
        registry.get("feed/watch").unwrap().spec().op_type,
        OpType::Subscription
    );
    let mut request = dispatch::Request::new("s1", "feed/watch", json!({"count": 3}));
    request.origin = Origin::Nested;
    request.expect = Expect::Stream;
    let Reply::Stream(items) = dispatch::dispatch(&registry, &NoIdentities, request).unwrap()
    else {
        panic!("not a stream");
    };
    let items: Vec<Value> = items.map(Result::unwrap).collect().await;
    assert_eq!(
        items,
        [
            json!({"n": 0}),
            json!({"n": 1}),
            json!({"n": 2}),
            json!("plain text")
        ]
    );
}

#[tokio::test]
async fn from_jsonschema_fills_the_path_template_and_the_query() {
    let (base, api) = serve_api().await;
    let spec: OperationSpec = serde_json::from_value(json!({
        "name": "getWidget", "namespace": "getWidget", "op_type": "query",
        "visibility": "external", "description": "one widget",
        "input_schema": {"type": "object", "properties": {"id": {"type": "integer"}, "filter": {"type": "string"}}, "required": ["id"]},
        "output_schema": {}, "error_schemas": [],
        "access_control": {"required_scopes": [], "required_scopes_any": null, "resource_type": null, "resource_action": null}
    }))
    .unwrap();
    let import = HttpImport {
        namespace: "widgets".to_owned(),
        base_url: Some(base),
        auth: Auth::Bearer,
        visibility: Visibility::Internal,
        insecure: false,
    };
    let def = openapi::from_jsonschema(spec, "get", "/widgets/{id}", &import, outbound(0))
        .unwrap()
        .capability("widgets", "widget-token");
    assert_eq!(def.spec().name, "widgets/getWidget");
    assert_eq!(def.spec().visibility, Visibility::Internal);
    let registry = Registry::new();
    registry.register(def).unwrap();
    let registry = Arc::new(registry);
    let output = call(
        &registry,
        "widgets/getWidget",
        json!({"id": 42, "filter": "active"}),
    )
    .await
    .unwrap();
    assert_eq!(output, json!({"id": "42"}));
    let seen = api.seen_at("/widgets/42");
    assert_eq!(seen[0].query.as_deref(), Some("filter=active"));
    assert_eq!(seen[0].headers["authorization"], "Bearer widget-token");
}

#[tokio::test]
async fn swapped_settings_apply_to_the_next_call() {
    let (base, api) = serve_api().await;
    let shared = outbound(3);
    let registry = Registry::new();
    registry
        .register_all(
            openapi::from_openapi(
                PETSTORE,
                &petstore(&base, "pets", Visibility::Internal),
                shared.clone(),
            )
            .unwrap(),
        )
        .unwrap();
    let registry = Arc::new(registry);
    shared
        .swap(OutboundSettings {
            retries: 0,
            ..OutboundSettings::default()
        })
        .unwrap();
    api.script(&[(500, None)]);
    let error = call(&registry, "pets/getInventory", json!({}))
        .await
        .unwrap_err();
    assert_eq!(error.code.as_str(), "HTTP_500");
    assert_eq!(api.seen_at("/v2/store/inventory").len(), 1);
}

/// A node serving the gateway and `/mcp` over `registry`, tokens of
/// [`TestTokens`].
async fn http_node(registry: Arc<Registry>, listen: SocketAddr) -> NodeHandle {
    let identities: Arc<dyn IdentityProvider> = Arc::new(TestTokens);
    let http = HttpHandler::new(
        registry.clone(),
        identities.clone(),
        HttpSettings::default(),
    )
    .with_mcp(to_mcp::router(
        registry,
        identities.clone(),
        McpSettings::default(),
    ));
    let mut config = test_config();
    config.listen = listen;
    start_node_with(
        config,
        vec![http.into()],
        identities,
        NodeKey::generate(),
        generate_certificate("web"),
        None,
    )
    .await
}

async fn post_call(node: &NodeHandle, operation: &str, input: Value) -> (u16, Value) {
    let client = outbound(0).raw_client(true);
    let response = client
        .post(format!("https://{}/call", node.local_addr()))
        .json(&json!({"operation": operation, "input": input}))
        .send()
        .await
        .unwrap();
    (response.status().as_u16(), response.json().await.unwrap())
}

#[tokio::test]
async fn imports_are_unreachable_from_the_wire_unless_external() {
    let (base, _api) = serve_api().await;
    let registry = Registry::new();
    builtins::register_discovery(&registry).unwrap();
    for (namespace, visibility) in [
        ("pets", Visibility::Internal),
        ("shop", Visibility::External),
    ] {
        let defs = openapi::from_openapi(
            PETSTORE,
            &petstore(&base, namespace, visibility),
            outbound(0),
        )
        .unwrap();
        registry.register_all(defs).unwrap();
    }
    let node = http_node(Arc::new(registry), "127.0.0.1:0".parse().unwrap()).await;
    let (status, body) = post_call(&node, "pets/getPetById", json!({"petId": 1})).await;
    assert_eq!(status, 404);
    assert_eq!(
        body,
        json!({"code": "NOT_FOUND", "message": "operation not found: pets/getPetById", "retryable": false})
    );
    let (status, body) = post_call(&node, "shop/getPetById", json!({"petId": 1})).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["output"]["name"], "doggie");
    // An imported HTTP error keeps its status through the gateway.
    let (status, body) = post_call(&node, "shop/getPetById", json!({"petId": 404})).await;
    assert_eq!((status, body["code"].clone()), (404, json!("HTTP_404")));
    node.shutdown();
    node.wait().await;
}

/// A registry with an open echo, an admin-only op, an internal op and a
/// subscription.
fn mcp_registry() -> Arc<Registry> {
    let registry = Registry::new();
    builtins::register_discovery(&registry).unwrap();
    registry
        .register(
            OperationDef::query("test/echo")
                .description("Echo the input")
                .input_schema(json!({"type": "object", "properties": {"n": {"type": "integer"}}, "required": ["n"]}))
                .unary(|_, input| async move { Ok(input) }),
        )
        .unwrap();
    registry
        .register(
            OperationDef::query("test/secret")
                .description("Admins only")
                .access(AccessControl::scopes(["admin"]))
                .unary(|_, _| async { Ok(json!("secret")) }),
        )
        .unwrap();
    registry
        .register(
            OperationDef::query("test/hidden")
                .internal()
                .unary(|_, _| async { Ok(json!(1)) }),
        )
        .unwrap();
    registry
        .register(
            OperationDef::subscription("test/ticks")
                .stream(|_, _| futures::stream::iter([Ok(json!(1))])),
        )
        .unwrap();
    Arc::new(registry)
}

type McpClient = rmcp::service::RunningService<rmcp::RoleClient, ()>;

async fn mcp_client(node: &NodeHandle, token: &str) -> McpClient {
    let config =
        StreamableHttpClientTransportConfig::with_uri(format!("https://{}/mcp", node.local_addr()))
            .auth_header(token);
    let transport =
        StreamableHttpClientTransport::with_client(outbound(0).raw_client(true), config);
    ().serve(transport).await.expect("MCP session")
}

async fn tool(client: &McpClient, name: &str, arguments: Value) -> rmcp::model::CallToolResult {
    let mut params = CallToolRequestParams::new(name.to_owned());
    params.arguments = arguments.as_object().cloned();
    client.call_tool(params).await.expect("tools/call")
}

fn searched(result: &rmcp::model::CallToolResult) -> Vec<String> {
    result.structured_content.as_ref().unwrap()["operations"]
        .as_array()
        .unwrap()
        .iter()
        .map(|op| op["name"].as_str().unwrap().to_owned())
        .collect()
}

#[tokio::test]
async fn mcp_lists_exactly_four_tools_and_search_follows_the_token() {
    let node = http_node(mcp_registry(), "127.0.0.1:0".parse().unwrap()).await;
    let user = mcp_client(&node, "user-token").await;
    let info = user.peer_info().unwrap();
    assert_eq!(info.server_info.as_ref().unwrap().name, "alknet-to-mcp");
    let tools = user.list_all_tools().await.unwrap();
    let names: Vec<&str> = tools.iter().map(|t| t.name.as_ref()).collect();
    assert_eq!(names, ["search", "schema", "call", "batch"]);
    assert!(tools.iter().all(|t| t.output_schema.is_none()));

    let listed = searched(&tool(&user, "search", json!({})).await);
    assert_eq!(
        listed,
        [
            "services/list",
            "services/schema",
            "session/register",
            "test/echo"
        ]
    );
    let admin = mcp_client(&node, "admin-token").await;
    let listed = searched(&tool(&admin, "search", json!({})).await);
    assert_eq!(
        listed,
        [
            "services/list",
            "services/schema",
            "session/register",
            "test/echo",
            "test/secret"
        ]
    );
    let listed = searched(&tool(&admin, "search", json!({"query": "ADMINS"})).await);
    assert_eq!(listed, ["test/secret"]);

    // call: output as structured content and one JSON text block.
    let result = tool(
        &user,
        "call",
        json!({"operation": "/test/echo", "input": {"n": 5}}),
    )
    .await;
    assert_eq!(result.is_error, Some(false));
    assert_eq!(result.structured_content, Some(json!({"n": 5})));
    // A CallError is an error result; an op this token may not call too,
    // as if it did not exist.
    let result = tool(&user, "call", json!({"operation": "test/secret"})).await;
    assert_eq!(result.is_error, Some(true));
    assert_eq!(
        result.structured_content.unwrap()["message"],
        "operation not found: test/secret"
    );
    let result = tool(&user, "call", json!({"operation": "test/hidden"})).await;
    assert_eq!(result.structured_content.unwrap()["code"], "NOT_FOUND");
    let result = tool(&user, "call", json!({"operation": "test/ticks"})).await;
    assert_eq!(
        result.structured_content.unwrap()["code"],
        "INVALID_OPERATION_TYPE"
    );
    let result = tool(&user, "schema", json!({})).await;
    assert_eq!(
        result.structured_content.unwrap()["message"],
        "missing required field: name"
    );
    let result = tool(
        &user,
        "batch",
        json!({"calls": [{"operation": "test/echo", "input": {"n": 1}}, {"operation": "test/secret"}]}),
    )
    .await;
    assert_eq!(result.is_error, Some(false));
    let results = &result.structured_content.unwrap()["results"];
    assert_eq!(results[0], json!({"isError": false, "output": {"n": 1}}));
    assert_eq!(results[1]["error"]["code"], "NOT_FOUND");
    let mut params = CallToolRequestParams::new("nope");
    params.arguments = None;
    let Err(rmcp::ServiceError::McpError(error)) = user.call_tool(params).await else {
        panic!("an unknown tool was answered");
    };
    assert_eq!(error.code.0, -32602);
    assert_eq!(error.data.unwrap()["code"], "NOT_FOUND");

    // A token that does not resolve is refused before MCP: 401.
    let response = outbound(0)
        .raw_client(true)
        .post(format!("https://{}/mcp", node.local_addr()))
        .bearer_auth("wrong-token")
        .header("accept", "application/json, text/event-stream")
        .json(&json!({"jsonrpc": "2.0", "id": 1, "method": "ping"}))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 401);
    assert_eq!(response.headers()["www-authenticate"], "Bearer");
    node.shutdown();
    node.wait().await;
}

/// A TCP relay to a backend that can be replaced: the MCP server "moves"
/// (restarts elsewhere) while its URL stays the same.
struct Relay {
    addr: SocketAddr,
    backend: Arc<Mutex<SocketAddr>>,
}

async fn relay(backend: SocketAddr) -> Relay {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let backend = Arc::new(Mutex::new(backend));
    let current = backend.clone();
    tokio::spawn(async move {
        while let Ok((mut inbound, _)) = listener.accept().await {
            let target = *current.lock().unwrap();
            tokio::spawn(async move {
                if let Ok(mut outbound) = tokio::net::TcpStream::connect(target).await {
                    let _ = tokio::io::copy_bidirectional(&mut inbound, &mut outbound).await;
                }
            });
        }
    });
    Relay { addr, backend }
}

#[tokio::test]
async fn from_mcp_imports_a_node_round_trips_and_reconnects_after_a_restart() {
    let node = http_node(mcp_registry(), "127.0.0.1:0".parse().unwrap()).await;
    let relay = relay(node.local_addr()).await;
    let addr = relay.addr;
    let import = |namespace: &str| McpImport {
        namespace: namespace.to_owned(),
        url: format!("https://{addr}/mcp"),
        auth: Auth::Bearer,
        visibility: Visibility::Internal,
        insecure: true,
    };
    let shared = outbound(0);

    // A credential the node does not know: a clear error, nothing imported.
    let error = from_mcp::from_mcp(&import("bad"), Some("wrong-token"), shared.clone())
        .await
        .err()
        .expect("an unauthorised import fails");
    assert!(
        matches!(error, McpImportError::Unauthorized { .. }),
        "{error}"
    );
    assert!(
        error
            .to_string()
            .contains("refused the import's credential"),
        "{error}"
    );

    let defs = from_mcp::from_mcp(&import("hub"), Some("admin-token"), shared.clone())
        .await
        .unwrap();
    let registry = Registry::new();
    registry
        .register_all(
            defs.into_iter()
                .map(|def| def.capability(from_mcp::CAPABILITY, "admin-token"))
                .collect(),
        )
        .unwrap();
    let registry = Arc::new(registry);
    let mut names: Vec<String> = registry
        .operations()
        .iter()
        .map(|o| o.spec().name.clone())
        .collect();
    names.sort();
    assert_eq!(names, ["hub/batch", "hub/call", "hub/schema", "hub/search"]);
    let spec = registry.get("hub/call").unwrap().spec().clone();
    assert_eq!(
        (spec.op_type, spec.visibility),
        (OpType::Mutation, Visibility::Internal)
    );

    let echo = json!({"operation": "test/echo", "input": {"n": 7}});
    assert_eq!(
        call(&registry, "hub/call", echo.clone()).await.unwrap(),
        json!({"n": 7})
    );
    // A remote tool error is MCP_TOOL_ERROR with the content blocks.
    let error = call(&registry, "hub/call", json!({"operation": "nope/missing"}))
        .await
        .unwrap_err();
    assert_eq!(error.code.as_str(), "MCP_TOOL_ERROR");
    assert_eq!(
        error.message,
        "NOT_FOUND: operation not found: nope/missing"
    );
    assert_eq!(
        error.details.unwrap()["content"][0]["text"],
        "NOT_FOUND: operation not found: nope/missing"
    );

    // The server goes away (its session with it) and comes back behind the
    // same URL: the next call opens a new session.
    node.shutdown();
    node.wait().await;
    let error = call(&registry, "hub/call", echo.clone()).await.unwrap_err();
    assert_eq!(error.code, ErrorCode::Internal);
    let node = http_node(mcp_registry(), "127.0.0.1:0".parse().unwrap()).await;
    *relay.backend.lock().unwrap() = node.local_addr();
    assert_eq!(
        call(&registry, "hub/call", echo).await.unwrap(),
        json!({"n": 7})
    );
    node.shutdown();
    node.wait().await;
}
