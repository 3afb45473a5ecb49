//! The pkarr relay API at `/pkarr/<z32>` on the node's HTTP handler, so a
//! hub is a relay stock pkarr clients publish to and resolve from.
//!
//! `PUT /pkarr/<z32>` with the relay payload (64-byte signature, 8-byte
//! timestamp, DNS packet: at most 1,072 bytes) stores it when the signature
//! verifies for that key and it is newer than the stored packet (409
//! otherwise); `GET /pkarr/<z32>` returns the stored payload with
//! `Cache-Control: max-age` from its TTL, or 404. No token is needed: a
//! packet is its own authorization.

use std::sync::Arc;

use alknet_http::ExtraRoute;
use axum::body::Body;
use axum::extract::{Path, Request};
use axum::http::{HeaderValue, Method, StatusCode, header};
use axum::response::{IntoResponse, Response};
use pkarr::{PublicKey, SignedPacket};

use crate::packets::{PacketStore, PutError};

/// The route's prefix.
pub const PREFIX: &str = "/pkarr/";
/// The media type of a relay payload.
pub const MEDIA_TYPE: &str = "application/pkarr.org/relays#payload";
/// The largest payload: signature, timestamp and a 1000-byte packet.
pub const MAX_PAYLOAD: usize = 64 + 8 + 1000;

/// The `/pkarr/{key}` route over `store`.
pub fn route(store: Arc<PacketStore>) -> ExtraRoute {
    ExtraRoute {
        path: format!("{PREFIX}{{key}}"),
        route: axum::routing::any(move |Path(key): Path<String>, request: Request| {
            let store = store.clone();
            async move { serve(&store, &key, request).await }
        }),
    }
}

async fn serve(store: &PacketStore, key: &str, request: Request) -> Response {
    let Ok(key) = PublicKey::try_from(key) else {
        return problem(
            StatusCode::BAD_REQUEST,
            "not a pkarr key (52 characters of z-base-32)",
        );
    };
    match *request.method() {
        Method::GET | Method::HEAD => match store.get(&key) {
            Some(packet) => {
                let max_age = packet.ttl(pkarr::DEFAULT_MINIMUM_TTL, pkarr::DEFAULT_MAXIMUM_TTL);
                let cache = format!("public, max-age={max_age}");
                (
                    [
                        (header::CONTENT_TYPE, HeaderValue::from_static(MEDIA_TYPE)),
                        (
                            header::CACHE_CONTROL,
                            HeaderValue::from_str(&cache)
                                .unwrap_or(HeaderValue::from_static("no-store")),
                        ),
                    ],
                    Body::from(packet.to_relay_payload()),
                )
                    .into_response()
            }
            None => problem(StatusCode::NOT_FOUND, "no packet for this key"),
        },
        Method::PUT => {
            let body = match axum::body::to_bytes(request.into_body(), MAX_PAYLOAD).await {
                Ok(body) => body,
                Err(_) => {
                    return problem(
                        StatusCode::PAYLOAD_TOO_LARGE,
                        "a relay payload is at most 1072 bytes",
                    );
                }
            };
            let packet = match SignedPacket::from_relay_payload(&key, &body) {
                Ok(packet) => packet,
                Err(error) => {
                    return problem(
                        StatusCode::BAD_REQUEST,
                        &format!("not a packet signed by this key: {error}"),
                    );
                }
            };
            match store.put(packet).await {
                Ok(()) => StatusCode::NO_CONTENT.into_response(),
                Err(error @ PutError::NotNewer) => {
                    problem(StatusCode::CONFLICT, &error.to_string())
                }
                Err(error @ PutError::FromTheFuture) => {
                    problem(StatusCode::BAD_REQUEST, &error.to_string())
                }
                Err(error @ PutError::Full(_)) => {
                    problem(StatusCode::INSUFFICIENT_STORAGE, &error.to_string())
                }
                Err(error) => {
                    tracing::warn!("pkarr relay store failed: {error}");
                    problem(
                        StatusCode::INTERNAL_SERVER_ERROR,
                        "the packet could not be stored",
                    )
                }
            }
        }
        _ => {
            let mut response = problem(StatusCode::METHOD_NOT_ALLOWED, "GET or PUT");
            response
                .headers_mut()
                .insert(header::ALLOW, HeaderValue::from_static("GET, HEAD, PUT"));
            response
        }
    }
}

fn problem(status: StatusCode, detail: &str) -> Response {
    (status, format!("{detail}\n")).into_response()
}
