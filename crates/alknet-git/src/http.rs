//! Smart HTTP under `/git/<name>.git/`: `info/refs`, `git-upload-pack`
//! and `git-receive-pack`, as `git http-backend` serves them.
//!
//! Bodies stream both ways (no pack is held in memory); a gzipped request
//! body is inflated on the way to git. The token comes as
//! `Authorization: Bearer <token>` or as the password of Basic
//! authentication, so `git credential` helpers work; a request that needs
//! an identity and has none is answered 401 with `WWW-Authenticate:
//! Basic`, which is what makes git ask for credentials.

use std::sync::Arc;

use alknet_call::dispatch::PresentedToken;
use alknet_core::{Counted, Identity};
use alknet_http::{AppState, ExtraRoute};
use async_compression::tokio::bufread::GzipDecoder;
use axum::body::Body;
use axum::extract::{Request, State};
use axum::http::{HeaderMap, HeaderValue, Method, StatusCode, header};
use axum::response::{IntoResponse, Response};
use base64::Engine;
use futures::TryStreamExt;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWriteExt};
use tokio_util::io::{ReaderStream, StreamReader};

use crate::pack::{Mode, Service};
use crate::{Git, Refusal};

/// Where the routes live.
pub const PREFIX: &str = "/git/";

/// Buffer between git's stdout and the response body, and the most one
/// body chunk takes from it: git writes a pack in 64 KiB pipe loads, and
/// each chunk costs an HTTP/1.1 chunk header or an HTTP/2 frame and a TLS
/// record, so chunks as large as git's writes (not `ReaderStream`'s 4 KiB
/// default) keep that cost per pack small.
const PIPE: usize = 64 * 1024;

/// The most an upload-pack request (wants and haves) may inflate to.
const MAX_NEGOTIATION: u64 = 64 * 1024 * 1024;

/// The route that serves `git` over HTTP, for the HTTP handler's extra
/// routes.
pub fn route(git: Git) -> ExtraRoute {
    ExtraRoute {
        path: format!("{PREFIX}{{*path}}"),
        route: axum::routing::any(move |State(state): State<AppState>, request: Request| {
            let git = git.clone();
            async move { serve(&git, &state, request).await }
        }),
    }
}

/// What a request asks for.
#[derive(Debug, PartialEq, Eq)]
enum Endpoint {
    /// `GET …/info/refs?service=…`.
    InfoRefs,
    /// `POST …/git-upload-pack` or `…/git-receive-pack`.
    Rpc(Service),
}

/// Splits `/git/<repo>/<endpoint>` into the repository and the endpoint.
fn endpoint(path: &str) -> Option<(&str, Endpoint)> {
    let rest = path.strip_prefix(PREFIX)?;
    if let Some(repo) = rest.strip_suffix("/info/refs") {
        return Some((repo, Endpoint::InfoRefs));
    }
    let (repo, last) = rest.rsplit_once('/')?;
    Some((repo, Endpoint::Rpc(Service::parse(last)?)))
}

fn text(status: StatusCode, message: &str) -> Response {
    (
        status,
        [(header::CONTENT_TYPE, "text/plain; charset=utf-8")],
        format!("{message}\n"),
    )
        .into_response()
}

fn unauthorized(message: &str) -> Response {
    let mut response = text(StatusCode::UNAUTHORIZED, message);
    response.headers_mut().insert(
        header::WWW_AUTHENTICATE,
        HeaderValue::from_static("Basic realm=\"alknet git\", charset=\"UTF-8\""),
    );
    response
}

/// The token in `Authorization`: a Bearer token, or Basic's password (its
/// user name when the password is empty).
fn presented_token(headers: &HeaderMap) -> Option<String> {
    let value = headers.get(header::AUTHORIZATION)?.to_str().ok()?;
    if let Some(token) = alknet_http::auth::bearer_token(value) {
        return Some(token.to_owned());
    }
    let (scheme, encoded) = value.trim().split_once(' ')?;
    if !scheme.eq_ignore_ascii_case("basic") {
        return None;
    }
    let decoded = base64::engine::general_purpose::STANDARD
        .decode(encoded.trim())
        .ok()?;
    let decoded = String::from_utf8(decoded).ok()?;
    let (user, password) = decoded.split_once(':').unwrap_or((&decoded, ""));
    let token = if password.is_empty() { user } else { password };
    (!token.is_empty()).then(|| token.to_owned())
}

async fn serve(git: &Git, state: &AppState, request: Request) -> Response {
    let Some((repo, endpoint)) = endpoint(request.uri().path()) else {
        return text(StatusCode::NOT_FOUND, "not a git endpoint");
    };
    let repo = repo.to_owned();
    let service = match (&endpoint, request.method()) {
        (Endpoint::InfoRefs, &Method::GET) => {
            let query = request.uri().query().unwrap_or("");
            match query
                .split('&')
                .find_map(|pair| pair.strip_prefix("service="))
                .and_then(Service::parse)
            {
                Some(service) => service,
                None => {
                    return text(
                        StatusCode::FORBIDDEN,
                        "only smart HTTP is served: ask for ?service=git-upload-pack or git-receive-pack",
                    );
                }
            }
        }
        (Endpoint::Rpc(service), &Method::POST) => *service,
        _ => return text(StatusCode::METHOD_NOT_ALLOWED, "method not allowed here"),
    };
    // A pack is listed under its connection: a router served outside the
    // HTTP handler has none to list it under.
    let Some(connection) = alknet_http::connection_of(&request).cloned() else {
        return text(
            StatusCode::INTERNAL_SERVER_ERROR,
            "git is served by the node's HTTP handler only",
        );
    };
    let token = presented_token(request.headers());
    let presented =
        PresentedToken::resolve_from(&*state.identities, token, connection.remote(), "git-http");
    let identity: Option<Identity> = match presented {
        PresentedToken::Anonymous => None,
        PresentedToken::Identity(identity) => Some(identity),
        PresentedToken::Unresolved(_) => return unauthorized("invalid token"),
    };
    let authorized = match git.authorize(identity.as_ref(), &repo, service) {
        Ok(authorized) => authorized,
        Err(refusal) => return refused(&refusal),
    };
    let protocol = request
        .headers()
        .get("git-protocol")
        .and_then(|v| v.to_str().ok())
        .map(str::to_owned);
    if let Endpoint::Rpc(service) = endpoint {
        let expected = format!("application/x-{}-request", service.name());
        let content_type = request
            .headers()
            .get(header::CONTENT_TYPE)
            .and_then(|v| v.to_str().ok());
        if content_type != Some(expected.as_str()) {
            return text(
                StatusCode::UNSUPPORTED_MEDIA_TYPE,
                &format!("expected Content-Type {expected}"),
            );
        }
    }
    let gzipped = request
        .headers()
        .get(header::CONTENT_ENCODING)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.eq_ignore_ascii_case("gzip") || v.eq_ignore_ascii_case("x-gzip"));
    let detail = format!("{authorized} (http)");
    let mode = match endpoint {
        Endpoint::InfoRefs => Mode::AdvertiseRefs,
        Endpoint::Rpc(_) => Mode::StatelessRpc,
    };
    let running = match git.start(authorized, mode, protocol.as_deref()) {
        Ok(running) => running,
        Err(refusal) => return refused(&refusal),
    };
    let info = Arc::new(connection.info().carried());
    info.set_identity(identity);
    info.set_detail(detail);

    let input_limit = match service {
        Service::UploadPack => MAX_NEGOTIATION,
        Service::ReceivePack => git.max_push_size().saturating_add(1 << 20),
    };
    let body = request
        .into_body()
        .into_data_stream()
        .map_err(std::io::Error::other);
    let body = StreamReader::new(body);
    let input: Box<dyn AsyncRead + Send + Unpin> = match mode {
        Mode::AdvertiseRefs => Box::new(tokio::io::empty()),
        _ if gzipped => Box::new(GzipDecoder::new(body).take(input_limit)),
        _ => Box::new(body.take(input_limit)),
    };
    let advertisement_prefix = (mode == Mode::AdvertiseRefs
        && !protocol
            .as_deref()
            .is_some_and(|p| p.split(':').any(|p| p == "version=2")))
    .then(|| {
        let line = format!("# service={}\n", service.name());
        format!("{:04x}{line}0000", line.len() + 4)
    });
    // A duplex pipe, not a simplex one: when the task ends without
    // finishing the body (`admin/kill`), dropping its end is an end of
    // body here.
    let (output, writer) = tokio::io::duplex(PIPE);
    let counted_info = info.clone();
    let task = async move {
        let mut writer = Counted {
            inner: writer,
            info: counted_info.clone(),
        };
        if let Some(prefix) = advertisement_prefix
            && writer.write_all(prefix.as_bytes()).await.is_err()
        {
            return;
        }
        let input = Counted {
            inner: input,
            info: counted_info,
        };
        running
            .converse(input, writer, None::<tokio::io::Sink>)
            .await;
    };
    crate::child::spawn_under(&connection, info, Box::pin(task));
    let kind = match mode {
        Mode::AdvertiseRefs => "advertisement",
        _ => "result",
    };
    let mut response = Response::new(Body::from_stream(ReaderStream::with_capacity(output, PIPE)));
    let headers = response.headers_mut();
    if let Ok(value) = HeaderValue::from_str(&format!("application/x-{}-{kind}", service.name())) {
        headers.insert(header::CONTENT_TYPE, value);
    }
    headers.insert(
        header::CACHE_CONTROL,
        HeaderValue::from_static("no-cache, max-age=0, must-revalidate"),
    );
    response
}

/// The answer to a refused request.
fn refused(refusal: &Refusal) -> Response {
    let message = refusal.to_string();
    match refusal {
        Refusal::NeedsIdentity(_) => unauthorized(&message),
        Refusal::NotFound(_) => text(StatusCode::NOT_FOUND, &message),
        Refusal::ReadOnly { .. } => text(StatusCode::FORBIDDEN, &message),
        Refusal::InvalidName(_) => text(StatusCode::BAD_REQUEST, &message),
        Refusal::Busy(_) => {
            let mut response = text(StatusCode::SERVICE_UNAVAILABLE, &message);
            response
                .headers_mut()
                .insert(header::RETRY_AFTER, HeaderValue::from_static("5"));
            response
        }
        Refusal::Failed(_) => text(StatusCode::INTERNAL_SERVER_ERROR, &message),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn endpoints_are_split_from_the_repository() {
        assert_eq!(
            endpoint("/git/team/app.git/info/refs"),
            Some(("team/app.git", Endpoint::InfoRefs))
        );
        assert_eq!(
            endpoint("/git/app.git/git-receive-pack"),
            Some(("app.git", Endpoint::Rpc(Service::ReceivePack)))
        );
        assert_eq!(endpoint("/git/app.git/HEAD"), None);
        assert_eq!(endpoint("/other/app.git/info/refs"), None);
    }

    #[test]
    fn the_token_is_a_bearer_or_a_basic_password() {
        let headers = |value: &str| {
            let mut headers = HeaderMap::new();
            headers.insert(header::AUTHORIZATION, HeaderValue::from_str(value).unwrap());
            headers
        };
        let basic = |credentials: &str| {
            format!(
                "Basic {}",
                base64::engine::general_purpose::STANDARD.encode(credentials)
            )
        };
        assert_eq!(
            presented_token(&headers("Bearer t1")).as_deref(),
            Some("t1")
        );
        assert_eq!(
            presented_token(&headers(&basic("git:t2"))).as_deref(),
            Some("t2")
        );
        assert_eq!(
            presented_token(&headers(&basic("t3:"))).as_deref(),
            Some("t3")
        );
        assert_eq!(presented_token(&headers(&basic(":"))), None);
        assert_eq!(presented_token(&headers("Basic !!!")), None);
        assert_eq!(presented_token(&HeaderMap::new()), None);
    }
}
