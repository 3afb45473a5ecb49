//! The gateway (docs/protocol.md §11.3–§11.4): the only way plain HTTP invokes
//! operations. Five endpoints, one dispatch path: each request gets a fresh
//! UUIDv4 id, the identity of its bearer token, the call deadline, and no
//! `forwarded_for`. If the client goes away, hyper drops the response future
//! and with it the handler's — the abort cascades like a session's.

use alknet_call::CallError;
use alknet_call::dispatch::{self, Expect, Origin, Reply, Request as DispatchRequest};
use axum::Extension;
use axum::extract::{RawQuery, Request, State};
use axum::http::{StatusCode, header};
use axum::response::sse::{Event, KeepAlive, Sse};
use axum::response::{IntoResponse, Response};
use futures::{StreamExt, stream};
use serde::Deserialize;
use serde_json::{Value, json};
use tokio::time::Instant;

use crate::AppState;
use crate::auth::Bearer;
use crate::body::{self, BodyError, BodyRules};
use crate::event_queue::{self, StallWatch};
use crate::scope::ConnectionScope;
use crate::status::{Fault, error_response, fault, status_for};

/// One call object: `{"operation": string, "input": any}`.
#[derive(Debug, Deserialize)]
struct CallObject {
    operation: String,
    #[serde(default = "empty_input")]
    input: Value,
}

fn empty_input() -> Value {
    json!({})
}

/// A request ready to dispatch, with the id the response reports.
struct Prepared {
    id: String,
    operation: String,
    reply: Result<Reply, CallError>,
    deadline: Instant,
}

fn prepare(
    state: &AppState,
    bearer: &Bearer,
    operation: String,
    input: Value,
    expect: Expect,
) -> Prepared {
    let id = uuid::Uuid::new_v4().to_string();
    let (identity, token) = bearer.clone().dispatch_parts(None);
    let deadline = Instant::now() + state.settings.call_timeout;
    let reply = dispatch::dispatch(
        &state.registry,
        &*state.identities,
        DispatchRequest {
            id: id.clone(),
            operation: operation.clone(),
            input,
            session_identity: identity,
            auth_token: token,
            forwarded_for: None,
            origin: Origin::Remote,
            expect,
            deadline: Some(deadline),
            session: None,
        },
    );
    Prepared {
        id,
        operation,
        reply,
        deadline,
    }
}

/// Runs a query or mutation to its one reply. The request id comes back when
/// the handler ran (§11.4: a batch item refused before that has none).
async fn run_one(prepared: Prepared) -> (Option<String>, Result<Value, CallError>) {
    match prepared.reply {
        Ok(reply) => {
            let result = reply.one_output(Some(prepared.deadline)).await;
            (Some(prepared.id), result)
        }
        Err(error) => (None, Err(error)),
    }
}

async fn answer(state: &AppState, bearer: &Bearer, prepared: Prepared) -> Response {
    let operation = prepared.operation.clone();
    match run_one(prepared).await {
        (Some(id), Ok(output)) => ok(&id, output),
        (None, Ok(_)) => error_response(
            StatusCode::INTERNAL_SERVER_ERROR,
            &CallError::internal("internal error"),
        ),
        (_, Err(error)) => {
            let status = status_for(&error, bearer, &state.registry, Some(&operation));
            error_response(status, &error)
        }
    }
}

/// A result as §11.4 shapes it: `ok` with the output, or `error` with the
/// CallError (batch items only; `/call` answers errors bare).
fn result_body(id: Option<&str>, result: Result<Value, CallError>) -> Value {
    match result {
        Ok(output) => json!({"request_id": id, "result": "ok", "output": output}),
        Err(error) => json!({"request_id": id, "result": "error", "error": error}),
    }
}

fn ok(id: &str, output: Value) -> Response {
    axum::Json(result_body(Some(id), Ok(output))).into_response()
}

/// `GET /search`: `services/list` for the bearer.
pub async fn search(
    State(state): State<AppState>,
    Extension(bearer): Extension<Bearer>,
) -> Response {
    let prepared = prepare(
        &state,
        &bearer,
        "services/list".to_owned(),
        json!({}),
        Expect::OneReply,
    );
    answer(&state, &bearer, prepared).await
}

/// `GET /schema?name=<op>`: `services/schema`.
pub async fn schema(
    State(state): State<AppState>,
    Extension(bearer): Extension<Bearer>,
    RawQuery(query): RawQuery,
) -> Response {
    let pairs: Vec<(String, String)> =
        match serde_urlencoded::from_str(query.as_deref().unwrap_or("")) {
            Ok(pairs) => pairs,
            Err(e) => return fault(Fault::Malformed, format!("invalid query: {e}")),
        };
    let mut names = pairs.into_iter().filter(|(key, _)| key == "name");
    let name = match (names.next(), names.next()) {
        (None, _) => return fault(Fault::Malformed, "missing required field: name"),
        (Some(_), Some(_)) => {
            return fault(Fault::Malformed, "invalid query: name given more than once");
        }
        (Some((_, name)), None) => name,
    };
    let prepared = prepare(
        &state,
        &bearer,
        "services/schema".to_owned(),
        json!({ "name": name }),
        Expect::OneReply,
    );
    answer(&state, &bearer, prepared).await
}

/// Reads a JSON body under the gateway's rules: `application/json`, at most
/// the body limit, valid JSON. The body is read before the content type is
/// judged: answering while the client is still sending makes HTTP/2 reset the
/// stream, and curl, among others, then reports a framing error instead of the
/// 415.
async fn json_body(state: &AppState, request: Request) -> Result<Value, Response> {
    let is_json = request
        .headers()
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.split(';').next())
        .is_some_and(|essence| essence.trim().eq_ignore_ascii_case("application/json"));
    let rules = request
        .extensions()
        .get::<ConnectionScope>()
        .map(|scope| BodyRules {
            budget: scope.body_budget.clone(),
            min_rate: state.settings.limits.min_body_rate,
            grace: state.settings.limits.header_read_timeout,
        });
    let body = match body::read_whole(request.into_body(), state.settings.max_body, rules.as_ref())
        .await
    {
        Ok(body) => body,
        Err(error) => return Err(body_error(error)),
    };
    if !is_json {
        return Err(fault(
            Fault::ContentType,
            "unsupported content type: expected application/json",
        ));
    }
    serde_json::from_slice(&body.bytes)
        .map_err(|e| fault(Fault::Malformed, format!("invalid request body: {e}")))
}

/// The answer to a body that could not be read.
fn body_error(error: BodyError) -> Response {
    match error {
        BodyError::TooLarge => fault(Fault::TooLarge, "request body too large"),
        BodyError::Read(error) => fault(Fault::Malformed, format!("invalid request body: {error}")),
        BodyError::TooSlow => {
            tracing::debug!("request body slower than min_body_rate: answered 408");
            let error = CallError {
                message: "request body too slow".to_owned(),
                ..CallError::timeout()
            };
            error_response(StatusCode::REQUEST_TIMEOUT, &error)
        }
        BodyError::OverBudget => {
            tracing::debug!("connection's http_body_budget spent: answered 503");
            budget_spent()
        }
    }
}

/// The answer when the connection's body budget is spent.
pub(crate) fn budget_spent() -> Response {
    unavailable("too many request or response bodies in progress on this connection")
}

fn unavailable(message: &str) -> Response {
    error_response(
        StatusCode::SERVICE_UNAVAILABLE,
        &CallError::unavailable(message, 1),
    )
}

/// Reads the one call object `/call` and `/subscribe` take.
async fn call_object(state: &AppState, request: Request) -> Result<CallObject, Response> {
    let body = json_body(state, request).await?;
    serde_json::from_value(body)
        .map_err(|e| fault(Fault::Malformed, format!("invalid request body: {e}")))
}

/// `POST /call`: one query or mutation.
pub async fn call(
    State(state): State<AppState>,
    Extension(bearer): Extension<Bearer>,
    request: Request,
) -> Response {
    let object = match call_object(&state, request).await {
        Ok(object) => object,
        Err(response) => return response,
    };
    let prepared = prepare(
        &state,
        &bearer,
        object.operation,
        object.input,
        Expect::OneReply,
    );
    answer(&state, &bearer, prepared).await
}

/// `POST /batch`: several calls, concurrently, answered in request order.
pub async fn batch(
    State(state): State<AppState>,
    Extension(bearer): Extension<Bearer>,
    request: Request,
) -> Response {
    let body = match json_body(&state, request).await {
        Ok(body) => body,
        Err(response) => return response,
    };
    let items: Vec<CallObject> = match serde_json::from_value(body) {
        Ok(items) => items,
        Err(e) => {
            return fault(
                Fault::Malformed,
                format!("invalid request body: expected an array of call objects: {e}"),
            );
        }
    };
    let limit = state.settings.max_batch;
    if items.len() > limit {
        return fault(
            Fault::TooLarge,
            format!("batch too large: {} items (limit {limit})", items.len()),
        );
    }
    let runs = items.into_iter().map(|item| {
        let prepared = prepare(
            &state,
            &bearer,
            item.operation,
            item.input,
            Expect::OneReply,
        );
        run_one(prepared)
    });
    let results: Vec<Value> = futures::future::join_all(runs)
        .await
        .into_iter()
        .map(|(id, result)| result_body(id.as_deref(), result))
        .collect();
    axum::Json(json!({ "results": results })).into_response()
}

/// `POST /subscribe`: one subscription as server-sent events, within the
/// connection's subscription cap, ended if its peer stops reading.
pub async fn subscribe(
    State(state): State<AppState>,
    Extension(bearer): Extension<Bearer>,
    request: Request,
) -> Response {
    let scope = request.extensions().get::<ConnectionScope>().cloned();
    let sole_response = request.version() < axum::http::Version::HTTP_2;
    let object = match call_object(&state, request).await {
        Ok(object) => object,
        Err(response) => return response,
    };
    // Taken once the body is read: answering before makes HTTP/2 reset the
    // stream (see `json_body`).
    let watch = match scope {
        Some(scope) => match scope.subscriptions.clone().try_acquire_owned() {
            Ok(slot) => Some(StallWatch {
                info: scope.connection.info().clone(),
                close: scope.stalled.clone(),
                _slot: slot,
                sole_response,
            }),
            Err(_) => {
                tracing::debug!("http_max_subscriptions reached on this connection: answered 503");
                return unavailable("too many subscriptions on this connection");
            }
        },
        None => None,
    };
    let prepared = prepare(
        &state,
        &bearer,
        object.operation,
        object.input,
        Expect::Stream,
    );
    let events = match prepared.reply {
        Ok(Reply::Stream(items)) => items
            .map(|item| match item {
                Ok(output) => Event::default().data(output.to_string()),
                Err(error) => error_event(&error),
            })
            .boxed(),
        Ok(Reply::One(_)) => {
            stream::once(async { error_event(&CallError::internal("invalid response payload")) })
                .boxed()
        }
        Err(error) => stream::once(async move { error_event(&error) }).boxed(),
    };
    let events = event_queue::end_on_stall(events, state.settings.session.write_stall, watch);
    let sse = Sse::new(events).keep_alive(
        KeepAlive::new()
            .interval(state.settings.keep_alive)
            .text("ping"),
    );
    (StatusCode::OK, [(header::CACHE_CONTROL, "no-cache")], sse).into_response()
}

fn error_event(error: &CallError) -> Event {
    Event::default()
        .event("error")
        .data(serde_json::to_string(error).unwrap_or_default())
}
