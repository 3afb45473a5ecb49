//! `GET /openapi.json` (docs/protocol.md §13): the gateway's contract, the same
//! for every caller whatever the registry holds. Operations are discovered
//! through `/search` and `/schema`, never as paths, so the document changes
//! only with the gateway itself (`info.version`).

use axum::Json;
use serde_json::{Value, json};

/// The gateway contract's version.
pub const GATEWAY_VERSION: &str = "1.0.0";

/// The document.
pub async fn document() -> Json<Value> {
    Json(spec())
}

fn error_example(code: &str, message: &str, retryable: bool) -> Value {
    json!({"code": code, "message": message, "retryable": retryable})
}

fn error_response(description: &str, example: Value) -> Value {
    json!({
        "description": description,
        "content": {"application/json": {
            "schema": {"$ref": "#/components/schemas/CallError"},
            "example": example
        }}
    })
}

/// The error responses every endpoint documents; POST endpoints add 413/415.
fn errors(post: bool) -> serde_json::Map<String, Value> {
    let mut responses = serde_json::Map::new();
    responses.insert(
        "400".into(),
        error_response(
            "Malformed request, or a subscription called where one reply is expected",
            error_example(
                "INVALID_INPUT",
                "invalid request body: expected value",
                false,
            ),
        ),
    );
    let mut unauthorized = error_response(
        "A token that did not resolve (unknown, revoked or expired)",
        error_example("FORBIDDEN", "invalid token", false),
    );
    unauthorized["headers"] = json!({"WWW-Authenticate": {
        "description": "Always `Bearer`",
        "schema": {"type": "string"}
    }});
    responses.insert("401".into(), unauthorized);
    responses.insert(
        "403".into(),
        error_response(
            "An operation refused the identity itself",
            error_example("FORBIDDEN", "not allowed for this identity", false),
        ),
    );
    responses.insert(
        "404".into(),
        error_response(
            "Unknown or internal operation, or one the caller may not call",
            error_example("NOT_FOUND", "operation not found: nope/missing", false),
        ),
    );
    responses.insert(
        "422".into(),
        error_response(
            "Input does not match the operation's input schema",
            error_example("INVALID_INPUT", "input does not match the schema", false),
        ),
    );
    responses.insert(
        "500".into(),
        error_response(
            "Handler failure",
            error_example("INTERNAL", "internal error", false),
        ),
    );
    let mut unavailable = error_response(
        "Overloaded or shutting down; retry after the given seconds",
        error_example("UNAVAILABLE", "shutting down", true),
    );
    unavailable["headers"] = json!({"Retry-After": {
        "description": "Seconds to wait before retrying",
        "schema": {"type": "integer"}
    }});
    responses.insert("503".into(), unavailable);
    responses.insert(
        "504".into(),
        error_response(
            "The operation's deadline passed",
            error_example("TIMEOUT", "request timed out", true),
        ),
    );
    if post {
        responses.insert(
            "413".into(),
            error_response(
                "Body over 16 MiB, or a batch of more than 100 items",
                error_example("INVALID_INPUT", "request body too large", false),
            ),
        );
        responses.insert(
            "415".into(),
            error_response(
                "The body is not application/json",
                error_example(
                    "INVALID_INPUT",
                    "unsupported content type: expected application/json",
                    false,
                ),
            ),
        );
    }
    responses.insert(
        "default".into(),
        error_response(
            "A status from an imported HTTP error (`HTTP_<status>`) or a declared domain error code",
            error_example("HTTP_429", "HTTP 429: Too Many Requests", false),
        ),
    );
    responses
}

fn with(success: (&str, Value), post: bool) -> Value {
    let mut responses = errors(post);
    responses.insert(success.0.into(), success.1);
    Value::Object(responses)
}

fn ok_response(description: &str, example: Value) -> Value {
    json!({
        "description": description,
        "content": {"application/json": {
            "schema": {"$ref": "#/components/schemas/CallResult"},
            "example": example
        }}
    })
}

fn call_body(schema: Value, example: Value) -> Value {
    json!({
        "required": true,
        "content": {"application/json": {"schema": schema, "example": example}}
    })
}

/// The OpenAPI 3.1 document.
pub fn spec() -> Value {
    let list_example = json!({
        "request_id": "5d0c0a8e-2f7c-4c39-9a43-0f3c6c1f9b2e",
        "result": "ok",
        "output": {"operations": [{
            "name": "services/list", "namespace": "services", "op_type": "query",
            "description": "List the operations the caller may call"
        }]}
    });
    let call_example = json!({"operation": "services/list", "input": {}});
    json!({
        "openapi": "3.1.0",
        "info": {
            "title": "alknet gateway",
            "version": GATEWAY_VERSION,
            "description": "Call the node's operations over plain HTTP. Operations are discovered with /search and /schema; credentials are optional bearer tokens and each operation decides what it requires."
        },
        "security": [{}, {"bearerAuth": []}],
        "paths": {
            "/search": {"get": {
                "operationId": "search",
                "summary": "List the operations the caller may call",
                "responses": with(("200", ok_response("The operations", list_example.clone())), false)
            }},
            "/schema": {"get": {
                "operationId": "schema",
                "summary": "Describe one operation",
                "parameters": [{
                    "name": "name", "in": "query", "required": true,
                    "schema": {"type": "string"},
                    "example": "services/list"
                }],
                "responses": with(("200", ok_response("The operation's spec", json!({
                    "request_id": "5d0c0a8e-2f7c-4c39-9a43-0f3c6c1f9b2e",
                    "result": "ok",
                    "output": {"name": "services/list", "namespace": "services", "op_type": "query"}
                }))), false)
            }},
            "/call": {"post": {
                "operationId": "call",
                "summary": "Call one query or mutation",
                "requestBody": call_body(json!({"$ref": "#/components/schemas/CallObject"}), call_example.clone()),
                "responses": with(("200", ok_response("The output", list_example.clone())), true)
            }},
            "/batch": {"post": {
                "operationId": "batch",
                "summary": "Call several queries or mutations; at most 100 items",
                "description": "Each item is dispatched on its own, concurrently; results come in request order and a failing item never fails the batch. More than 100 items: 413 and nothing runs.",
                "requestBody": call_body(
                    json!({"type": "array", "items": {"$ref": "#/components/schemas/CallObject"}}),
                    json!([call_example.clone()])
                ),
                "responses": with(("200", json!({
                    "description": "One result per item, in order",
                    "content": {"application/json": {
                        "schema": {"$ref": "#/components/schemas/BatchResults"},
                        "example": {"results": [list_example.clone()]}
                    }}
                })), true)
            }},
            "/subscribe": {"post": {
                "operationId": "subscribe",
                "summary": "Call one subscription as server-sent events",
                "description": "Each output is one `data:` event; the body ends after the last one. A failure, at dispatch or later, is one `event: error` whose data is the CallError.",
                "requestBody": call_body(json!({"$ref": "#/components/schemas/CallObject"}), call_example),
                "responses": with(("200", json!({
                    "description": "The subscription's events",
                    "content": {"text/event-stream": {
                        "description": "One event per output (`data:` the output as JSON), or one `error` event whose data is the CallError",
                        "schema": {
                            "type": "object",
                            "properties": {
                                "event": {"enum": ["error"]},
                                "data": {"type": "string"}
                            },
                            "required": ["data"]
                        }
                    }}
                })), true)
            }}
        },
        "components": {
            "securitySchemes": {"bearerAuth": {"type": "http", "scheme": "bearer"}},
            "schemas": {
                "CallObject": {
                    "type": "object",
                    "properties": {
                        "operation": {"type": "string", "description": "The operation's name; the leading slash is optional"},
                        "input": {"description": "The operation's input; {} when absent"}
                    },
                    "required": ["operation"]
                },
                "CallError": {
                    "type": "object",
                    "properties": {
                        "code": {"type": "string"},
                        "message": {"type": "string"},
                        "retryable": {"type": "boolean"},
                        "details": {}
                    },
                    "required": ["code", "message", "retryable"]
                },
                "CallResult": {
                    "type": "object",
                    "properties": {
                        "request_id": {"type": "string", "format": "uuid"},
                        "result": {"const": "ok"},
                        "output": {}
                    },
                    "required": ["request_id", "result", "output"]
                },
                "BatchItem": {
                    "oneOf": [
                        {"$ref": "#/components/schemas/CallResult"},
                        {
                            "type": "object",
                            "properties": {
                                "request_id": {"type": ["string", "null"]},
                                "result": {"const": "error"},
                                "error": {"$ref": "#/components/schemas/CallError"}
                            },
                            "required": ["request_id", "result", "error"]
                        }
                    ]
                },
                "BatchResults": {
                    "type": "object",
                    "properties": {"results": {"type": "array", "items": {"$ref": "#/components/schemas/BatchItem"}}},
                    "required": ["results"]
                }
            }
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn exactly_the_five_gateway_paths() {
        let spec = spec();
        assert_eq!(spec["openapi"], "3.1.0");
        assert_eq!(spec["info"]["version"], "1.0.0");
        let mut paths: Vec<&str> = spec["paths"]
            .as_object()
            .unwrap()
            .keys()
            .map(String::as_str)
            .collect();
        paths.sort_unstable();
        assert_eq!(
            paths,
            ["/batch", "/call", "/schema", "/search", "/subscribe"]
        );
        for (path, statuses) in [
            (
                "/search",
                &["400", "401", "403", "404", "422", "500", "503", "504"][..],
            ),
            ("/call", &["413", "415"][..]),
        ] {
            let method = if path == "/search" { "get" } else { "post" };
            for status in statuses {
                assert!(
                    spec["paths"][path][method]["responses"][*status].is_object(),
                    "{path} documents {status}"
                );
            }
        }
    }
}
