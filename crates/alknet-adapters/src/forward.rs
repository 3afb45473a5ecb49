//! Forwarding one imported operation to its HTTP endpoint (docs/protocol.md
//! §14.2), shared by `from_openapi` and `from_jsonschema`.
//!
//! The operation's input is an object: members named after path parameters
//! fill the path template, `body` becomes the JSON body, declared header
//! parameters become headers, and every other member becomes a query
//! parameter (`/widgets/{id}` with `{"id":42,"filter":"active"}` requests
//! `/widgets/42?filter=active`). The credential comes from the registration's
//! capability named after the import's namespace — never from the
//! environment — and is sent as the import's auth scheme says.
//!
//! A 2xx reply is the output (JSON when it parses, else text, `null` when
//! empty); any other status is `HTTP_<status>` with `details.retry_after`
//! when the server sent `Retry-After`; a transport failure is `INTERNAL`.
//! A subscription reads the reply as server-sent events: one output per event.
//! Every body read has a size limit.

use std::sync::Arc;

use alknet_call::registry::Context;
use alknet_call::{CallError, ErrorCode};
use base64::Engine;
use eventsource_stream::Eventsource;
use futures::stream::BoxStream;
use futures::{Stream, StreamExt, TryStreamExt};
use reqwest::Method;
use reqwest::header::{ACCEPT, AUTHORIZATION, HeaderName, HeaderValue};
use serde_json::{Map, Value, json};

use crate::outbound::{Outbound, retry_after};

/// The largest response body read for a query or mutation.
pub const MAX_RESPONSE_BODY: usize = 16 * 1024 * 1024;

/// The largest server-sent event (bytes between two blank lines).
pub const MAX_SSE_EVENT: usize = 1024 * 1024;

/// How the credential is presented.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Auth {
    /// No credential.
    None,
    /// `Authorization: Bearer <credential>`.
    Bearer,
    /// `<header>: <credential>`.
    ApiKey {
        /// The header's name, e.g. `X-API-Key`.
        header: String,
    },
    /// `Authorization: Basic base64(<credential>)`; the credential is
    /// `user:password`.
    Basic,
}

/// Where a declared parameter goes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ParamIn {
    /// A `{name}` in the path template.
    Path,
    /// The query string.
    Query,
    /// A request header.
    Header,
    /// The `Cookie` header.
    Cookie,
}

/// One HTTP endpoint an operation forwards to.
#[derive(Clone, Debug)]
pub struct Endpoint {
    /// The method.
    pub method: Method,
    /// The base URL, e.g. `https://api.example/v1` (no trailing slash needed).
    pub base_url: String,
    /// The path template, e.g. `/pets/{petId}`.
    pub path: String,
    /// Declared non-query parameters (path, header, cookie); anything else
    /// but `body` goes to the query string.
    pub params: Vec<(String, ParamIn)>,
}

/// What every operation of one import shares.
#[derive(Clone, Debug)]
pub struct Target {
    /// The shared client.
    pub outbound: Arc<Outbound>,
    /// How the credential is sent.
    pub auth: Auth,
    /// The capability holding the credential (the import's namespace).
    pub capability: String,
    /// Skip server certificate verification (labs, self-signed peers).
    pub insecure: bool,
}

impl Target {
    /// Sends `input` to `endpoint` and returns the reply as one output.
    pub async fn unary(
        &self,
        cx: &Context,
        endpoint: &Endpoint,
        input: Value,
    ) -> Result<Value, CallError> {
        let timeout = self.outbound.settings().timeout;
        let request = self.request(cx, endpoint, input)?.timeout(timeout);
        let response = request.send().await.map_err(transport_error)?;
        let response = check_status(response)?;
        let body = read_limited(response.bytes_stream(), MAX_RESPONSE_BODY).await?;
        Ok(body_value(&body))
    }

    /// Sends `input` to `endpoint` and streams the reply's server-sent events.
    pub fn stream(
        &self,
        cx: &Context,
        endpoint: &Endpoint,
        input: Value,
    ) -> BoxStream<'static, Result<Value, CallError>> {
        let request = match self.request(cx, endpoint, input) {
            Ok(request) => request.header(ACCEPT, "text/event-stream"),
            Err(error) => return futures::stream::once(async move { Err(error) }).boxed(),
        };
        futures::stream::once(async move {
            let response = request.send().await.map_err(transport_error)?;
            let response = check_status(response)?;
            Ok(sse_outputs(response.bytes_stream()))
        })
        .flat_map(|started: Result<_, CallError>| match started {
            Ok(items) => items,
            Err(error) => futures::stream::once(async move { Err(error) }).boxed(),
        })
        .boxed()
    }

    fn request(
        &self,
        cx: &Context,
        endpoint: &Endpoint,
        input: Value,
    ) -> Result<reqwest_middleware::RequestBuilder, CallError> {
        let mut members = match input {
            Value::Object(members) => members,
            Value::Null => Map::new(),
            other => Map::from_iter([("body".to_owned(), other)]),
        };
        let mut path = endpoint.path.clone();
        let mut headers = Vec::new();
        let mut cookies = Vec::new();
        for (name, location) in &endpoint.params {
            let value = members.remove(name);
            match (location, value) {
                (ParamIn::Path, Some(value)) => {
                    path = path.replace(&format!("{{{name}}}"), &encode_segment(&scalar(&value)));
                }
                (ParamIn::Path, None) => {
                    return Err(CallError::invalid_input(format!(
                        "missing required field: {name}"
                    )));
                }
                (ParamIn::Header, Some(value)) => headers.push((name.clone(), scalar(&value))),
                (ParamIn::Cookie, Some(value)) => {
                    cookies.push(format!("{name}={}", encode_segment(&scalar(&value))));
                }
                (ParamIn::Query, Some(value)) => {
                    members.insert(name.clone(), value);
                }
                (_, None) => {}
            }
        }
        let body = members.remove("body");
        let mut url: reqwest::Url = format!("{}{}", endpoint.base_url.trim_end_matches('/'), path)
            .parse()
            .map_err(|e| CallError::internal(format!("invalid endpoint URL: {e}")))?;
        if !members.is_empty() {
            let mut query = url.query_pairs_mut();
            for (name, value) in &members {
                match value {
                    Value::Array(items) => {
                        for item in items {
                            query.append_pair(name, &scalar(item));
                        }
                    }
                    Value::Null => {}
                    other => {
                        query.append_pair(name, &scalar(other));
                    }
                }
            }
        }
        let client = self.outbound.client(self.insecure);
        let mut request = client.request(endpoint.method.clone(), url);
        for (name, value) in headers {
            let name = HeaderName::try_from(name.as_str())
                .map_err(|_| CallError::invalid_input(format!("invalid header name: {name}")))?;
            let value = HeaderValue::try_from(value.as_str()).map_err(|_| {
                CallError::invalid_input(format!("invalid value for header {name}"))
            })?;
            request = request.header(name, value);
        }
        if !cookies.is_empty() {
            request = request.header(reqwest::header::COOKIE, cookies.join("; "));
        }
        if let Some(body) = body {
            request = request.json(&body);
        }
        if let Some(credential) = cx.capabilities.get(&self.capability) {
            request = match &self.auth {
                Auth::None => request,
                Auth::Bearer => {
                    request.header(AUTHORIZATION, sensitive(&format!("Bearer {credential}"))?)
                }
                Auth::Basic => {
                    let encoded = base64::engine::general_purpose::STANDARD.encode(credential);
                    request.header(AUTHORIZATION, sensitive(&format!("Basic {encoded}"))?)
                }
                Auth::ApiKey { header } => {
                    let name = HeaderName::try_from(header.as_str()).map_err(|_| {
                        CallError::internal(format!("invalid API-key header name: {header}"))
                    })?;
                    request.header(name, sensitive(credential)?)
                }
            };
        }
        Ok(request)
    }
}

/// A header value marked sensitive (kept out of debug output); an invalid
/// credential is reported without its value.
fn sensitive(value: &str) -> Result<HeaderValue, CallError> {
    let mut value = HeaderValue::try_from(value)
        .map_err(|_| CallError::internal("the credential is not a valid header value"))?;
    value.set_sensitive(true);
    Ok(value)
}

/// A JSON value as a path, query or header string: strings as they are,
/// everything else as compact JSON.
fn scalar(value: &Value) -> String {
    match value {
        Value::String(s) => s.clone(),
        other => other.to_string(),
    }
}

/// Percent-encodes everything but RFC 3986 unreserved characters, so a value
/// can never add a path segment or a query.
fn encode_segment(value: &str) -> String {
    let mut out = String::with_capacity(value.len());
    for byte in value.bytes() {
        if byte.is_ascii_alphanumeric() || b"-._~".contains(&byte) {
            out.push(byte as char);
        } else {
            out.push_str(&format!("%{byte:02X}"));
        }
    }
    out
}

/// A transport failure: `INTERNAL`, without the URL (which could carry query
/// values the caller sent).
fn transport_error(error: reqwest_middleware::Error) -> CallError {
    let kind = match &error {
        reqwest_middleware::Error::Reqwest(e) if e.is_timeout() => "timed out",
        reqwest_middleware::Error::Reqwest(e) if e.is_connect() => "could not connect",
        reqwest_middleware::Error::Reqwest(e) if e.is_body() || e.is_decode() => "invalid reply",
        _ => "failed",
    };
    tracing::warn!("outbound HTTP request {kind}: {error}");
    CallError::internal(format!("HTTP request {kind}"))
}

/// A non-2xx reply as `HTTP_<status>` (§14.2).
pub fn status_error(
    status: reqwest::StatusCode,
    headers: &reqwest::header::HeaderMap,
) -> CallError {
    let code = status.as_u16();
    let reason = status.canonical_reason().unwrap_or("");
    let mut error = CallError {
        code: ErrorCode::Domain(format!("HTTP_{code}")),
        message: format!("HTTP {code}: {reason}").trim_end().to_owned(),
        retryable: false,
        details: None,
    };
    if let Some(delay) = retry_after(headers) {
        error = error.with_details(json!({ "retry_after": delay.as_secs() }));
    }
    error
}

fn check_status(response: reqwest::Response) -> Result<reqwest::Response, CallError> {
    if response.status().is_success() {
        Ok(response)
    } else {
        Err(status_error(response.status(), response.headers()))
    }
}

/// Reads a body, refusing more than `limit` bytes.
async fn read_limited(
    mut body: impl Stream<Item = reqwest::Result<axum::body::Bytes>> + Unpin,
    limit: usize,
) -> Result<Vec<u8>, CallError> {
    let mut out = Vec::new();
    while let Some(chunk) = body.next().await {
        let chunk = chunk.map_err(|_| CallError::internal("HTTP reply body could not be read"))?;
        if out.len() + chunk.len() > limit {
            return Err(CallError::internal(format!(
                "HTTP reply body larger than {limit} bytes"
            )));
        }
        out.extend_from_slice(&chunk);
    }
    Ok(out)
}

/// A reply body as an output: `null` when empty, JSON when it parses, else
/// the text (or `INTERNAL`-free lossy text for binary bodies).
pub fn body_value(body: &[u8]) -> Value {
    if body.iter().all(u8::is_ascii_whitespace) {
        return Value::Null;
    }
    serde_json::from_slice(body)
        .unwrap_or_else(|_| Value::String(String::from_utf8_lossy(body).into_owned()))
}

/// Server-sent events as outputs: each event's `data` (JSON when it parses,
/// else the text). An event over [`MAX_SSE_EVENT`] bytes ends the stream with
/// `INTERNAL`.
fn sse_outputs(
    body: impl Stream<Item = reqwest::Result<axum::body::Bytes>> + Send + 'static,
) -> BoxStream<'static, Result<Value, CallError>> {
    let mut guard = EventSizeGuard::default();
    let limited = body.map_err(|_| SseError::Read).and_then(move |chunk| {
        let result = guard.feed(&chunk).map(|()| chunk);
        async move { result }
    });
    limited
        .eventsource()
        .map(|event| match event {
            Ok(event) => Ok(body_value(event.data.as_bytes())),
            Err(eventsource_stream::EventStreamError::Transport(SseError::TooLarge)) => {
                Err(CallError::internal(format!(
                    "server-sent event larger than {MAX_SSE_EVENT} bytes"
                )))
            }
            Err(_) => Err(CallError::internal(
                "server-sent event stream could not be read",
            )),
        })
        .boxed()
}

#[derive(Debug)]
enum SseError {
    Read,
    TooLarge,
}

impl std::fmt::Display for SseError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Self::Read => "read failed",
            Self::TooLarge => "event too large",
        })
    }
}

impl std::error::Error for SseError {}

/// Counts the bytes since the last event boundary (a blank line; `\n`,
/// `\r\n` or `\r` line ends) so one endless event cannot exhaust memory.
#[derive(Default)]
struct EventSizeGuard {
    since_boundary: usize,
    line_ends: u8,
    last_cr: bool,
}

impl EventSizeGuard {
    fn feed(&mut self, chunk: &[u8]) -> Result<(), SseError> {
        for &byte in chunk {
            match byte {
                b'\n' if self.last_cr => self.last_cr = false,
                b'\n' | b'\r' => {
                    self.last_cr = byte == b'\r';
                    self.line_ends += 1;
                    if self.line_ends >= 2 {
                        self.since_boundary = 0;
                        self.line_ends = 0;
                    }
                }
                _ => {
                    self.last_cr = false;
                    self.line_ends = 0;
                    self.since_boundary += 1;
                    if self.since_boundary > MAX_SSE_EVENT {
                        return Err(SseError::TooLarge);
                    }
                }
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn values_never_add_path_segments() {
        assert_eq!(encode_segment("42"), "42");
        assert_eq!(encode_segment("a/../b?x=1"), "a%2F..%2Fb%3Fx%3D1");
        assert_eq!(scalar(&json!(42)), "42");
        assert_eq!(scalar(&json!("x")), "x");
    }

    #[test]
    fn bodies_become_json_text_or_null() {
        assert_eq!(body_value(b""), Value::Null);
        assert_eq!(body_value(b" \n"), Value::Null);
        assert_eq!(body_value(br#"{"a":1}"#), json!({"a": 1}));
        assert_eq!(body_value(b"plain"), json!("plain"));
    }

    #[test]
    fn the_sse_guard_counts_from_the_last_blank_line() {
        let mut guard = EventSizeGuard::default();
        let line = vec![b'x'; MAX_SSE_EVENT / 2];
        guard.feed(&line).unwrap();
        guard.feed(b"\r\n\r\n").unwrap();
        guard.feed(&line).unwrap();
        guard.feed(b"\n\n").unwrap();
        guard.feed(&line).unwrap();
        guard.feed(b"\n").unwrap();
        guard.feed(&line).unwrap();
        assert!(guard.feed(b"xx").is_err());
    }

    #[test]
    fn status_errors_carry_retry_after() {
        let mut headers = reqwest::header::HeaderMap::new();
        let error = status_error(reqwest::StatusCode::NOT_FOUND, &headers);
        assert_eq!(error.code.as_str(), "HTTP_404");
        assert_eq!(error.message, "HTTP 404: Not Found");
        assert!(!error.retryable && error.details.is_none());
        headers.insert(reqwest::header::RETRY_AFTER, HeaderValue::from_static("7"));
        let error = status_error(reqwest::StatusCode::TOO_MANY_REQUESTS, &headers);
        assert_eq!(error.details, Some(json!({"retry_after": 7})));
    }
}
