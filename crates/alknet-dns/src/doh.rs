//! DNS over HTTPS (RFC 8484) at `/dns-query` on the node's HTTP handler.
//!
//! `GET /dns-query?dns=<base64url message>` and `POST /dns-query` with an
//! `application/dns-message` body; the answer comes back as
//! `application/dns-message` with `Cache-Control: max-age` set to the least
//! TTL in it (RFC 8484 §5.1). No token is needed: the zones are public,
//! as over every other DNS transport.

use alknet_http::ExtraRoute;
use axum::body::Body;
use axum::extract::Request;
use axum::http::{HeaderValue, Method, StatusCode, header};
use axum::response::{IntoResponse, Response};
use base64::Engine;

use crate::Dns;
use crate::answer::{Reply, Transport};

/// The path, as RFC 8484's examples name it.
pub const PATH: &str = "/dns-query";
/// The media type of a DNS message.
pub const MEDIA_TYPE: &str = "application/dns-message";
/// The largest DNS message: what fits its 2-byte length elsewhere.
const MAX_MESSAGE: usize = u16::MAX as usize;

/// The `/dns-query` route.
pub fn route(dns: Dns) -> ExtraRoute {
    ExtraRoute {
        path: PATH.to_owned(),
        route: axum::routing::any(move |request: Request| {
            let dns = dns.clone();
            async move { serve(&dns, request).await }
        }),
    }
}

async fn serve(dns: &Dns, request: Request) -> Response {
    let message = match *request.method() {
        Method::GET => match query_message(request.uri().query().unwrap_or_default()) {
            Ok(message) => message,
            Err((status, detail)) => return problem(status, detail),
        },
        Method::POST => {
            let media_type = request
                .headers()
                .get(header::CONTENT_TYPE)
                .and_then(|value| value.to_str().ok())
                .map(|value| value.split(';').next().unwrap_or_default().trim());
            if media_type != Some(MEDIA_TYPE) {
                return problem(
                    StatusCode::UNSUPPORTED_MEDIA_TYPE,
                    "POST a DNS message as Content-Type: application/dns-message",
                );
            }
            match axum::body::to_bytes(request.into_body(), MAX_MESSAGE).await {
                Ok(body) => body.to_vec(),
                Err(_) => {
                    return problem(
                        StatusCode::PAYLOAD_TOO_LARGE,
                        "a DNS message is at most 65535 bytes",
                    );
                }
            }
        }
        _ => {
            let mut response = problem(
                StatusCode::METHOD_NOT_ALLOWED,
                "DNS over HTTPS takes GET ?dns= or POST",
            );
            response
                .headers_mut()
                .insert(header::ALLOW, HeaderValue::from_static("GET, POST"));
            return response;
        }
    };
    match dns
        .answerer()
        .answer_resolving(&message, Transport::Stream)
        .await
    {
        Reply::Send(answered) => {
            let cache = format!("max-age={}", answered.max_age);
            (
                [
                    (header::CONTENT_TYPE, HeaderValue::from_static(MEDIA_TYPE)),
                    (
                        header::CACHE_CONTROL,
                        HeaderValue::from_str(&cache)
                            .unwrap_or(HeaderValue::from_static("no-store")),
                    ),
                ],
                Body::from(answered.bytes),
            )
                .into_response()
        }
        Reply::Drop | Reply::Resolve(_) => problem(StatusCode::BAD_REQUEST, "not a DNS query"),
    }
}

/// The message in a GET's `dns` parameter, or the status and reason of a
/// refusal.
fn query_message(query: &str) -> Result<Vec<u8>, (StatusCode, &'static str)> {
    let encoded = query
        .split('&')
        .find_map(|pair| pair.strip_prefix("dns="))
        .ok_or((StatusCode::BAD_REQUEST, "missing the dns= parameter"))?;
    // base64url of 65535 bytes is 87380 characters.
    if encoded.len() > MAX_MESSAGE.div_ceil(3) * 4 {
        return Err((
            StatusCode::URI_TOO_LONG,
            "a DNS message is at most 65535 bytes",
        ));
    }
    let engine = base64::engine::GeneralPurpose::new(
        &base64::alphabet::URL_SAFE,
        base64::engine::GeneralPurposeConfig::new()
            .with_decode_padding_mode(base64::engine::DecodePaddingMode::Indifferent),
    );
    engine.decode(encoded).map_err(|_| {
        (
            StatusCode::BAD_REQUEST,
            "the dns= parameter is not base64url (RFC 8484 §4.1)",
        )
    })
}

fn problem(status: StatusCode, detail: &str) -> Response {
    (status, format!("{detail}\n")).into_response()
}
