//! The pkarr relay API at `/pkarr/<z32>` on the node's HTTP handler, so a
//! hub is a relay stock pkarr clients publish to and resolve from.
//!
//! `PUT /pkarr/<z32>` with the relay payload (64-byte signature, 8-byte
//! timestamp, DNS packet: at most 1,072 bytes) stores it when the signature
//! verifies for that key and it is newer than the stored packet (409
//! otherwise), and when the node is on the Mainline DHT puts it there too
//! ([`MAX_FORWARDS`] at once; past that the packet is stored only).
//! `GET /pkarr/<z32>` returns the stored payload, else the one the DHT has
//! (never another relay's: two relays naming each other must not loop),
//! with `Cache-Control: max-age` from its TTL, or 404. No token is needed:
//! a packet is its own authorization.

use std::sync::Arc;

use alknet_http::ExtraRoute;
use axum::body::Body;
use axum::extract::{Path, Request};
use axum::http::{HeaderValue, Method, StatusCode, header};
use axum::response::{IntoResponse, Response};
use pkarr::{PublicKey, SignedPacket, Timestamp};

use tokio::sync::Semaphore;

use crate::packets::PutError;
use crate::resolver::{ResolveError, Resolver};

/// The route's prefix.
pub const PREFIX: &str = "/pkarr/";
/// The media type of a relay payload.
pub const MEDIA_TYPE: &str = "application/pkarr.org/relays#payload";
/// The largest payload: signature, timestamp and a 1000-byte packet.
pub const MAX_PAYLOAD: usize = 64 + 8 + 1000;

/// Packets being put on the DHT for relay clients at once.
pub const MAX_FORWARDS: usize = 16;

/// The `/pkarr/{key}` route over the resolver's store (and its DHT).
pub fn route(resolver: Arc<Resolver>) -> ExtraRoute {
    let forwards = Arc::new(Semaphore::new(MAX_FORWARDS));
    ExtraRoute {
        path: format!("{PREFIX}{{key}}"),
        route: axum::routing::any(move |Path(key): Path<String>, request: Request| {
            let resolver = resolver.clone();
            let forwards = forwards.clone();
            async move { serve(&resolver, &forwards, &key, request).await }
        }),
    }
}

async fn serve(
    resolver: &Resolver,
    forwards: &Arc<Semaphore>,
    key: &str,
    request: Request,
) -> Response {
    let Ok(key) = PublicKey::try_from(key) else {
        return problem(
            StatusCode::BAD_REQUEST,
            "not a pkarr key (52 characters of z-base-32)",
        );
    };
    match *request.method() {
        Method::GET | Method::HEAD => match resolver.resolve_on_dht(&key).await {
            Ok(Some(packet)) => stored(&packet, &request),
            Ok(None) => problem(StatusCode::NOT_FOUND, "no packet for this key"),
            Err(error @ ResolveError::Busy) => {
                problem(StatusCode::SERVICE_UNAVAILABLE, &error.to_string())
            }
            Err(error) => problem(StatusCode::BAD_GATEWAY, &error.to_string()),
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
            match resolver.store().put(packet.clone()).await {
                Ok(()) => {
                    forward_to_dht(resolver, forwards, packet);
                    StatusCode::NO_CONTENT.into_response()
                }
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

/// The relay payload of `packet`, with `Cache-Control: max-age` from its
/// TTL and `Last-Modified` from its timestamp; 304 when the client's
/// `If-Modified-Since` is not older (what pkarr's client sends for a packet
/// it caches).
fn stored(packet: &SignedPacket, request: &Request) -> Response {
    let modified = packet.timestamp();
    let not_newer = request
        .headers()
        .get(header::IF_MODIFIED_SINCE)
        .and_then(|value| value.to_str().ok())
        .and_then(|value| Timestamp::parse_http_date(value).ok())
        // HTTP dates count whole seconds.
        .is_some_and(|since| modified.as_u64() / 1_000_000 <= since.as_u64() / 1_000_000);
    let max_age = packet.ttl(pkarr::DEFAULT_MINIMUM_TTL, pkarr::DEFAULT_MAXIMUM_TTL);
    let headers = [
        (
            header::CACHE_CONTROL,
            HeaderValue::from_str(&format!("public, max-age={max_age}"))
                .unwrap_or(HeaderValue::from_static("no-store")),
        ),
        (
            header::LAST_MODIFIED,
            HeaderValue::from_str(&modified.format_http_date())
                .unwrap_or(HeaderValue::from_static("Thu, 01 Jan 1970 00:00:00 GMT")),
        ),
    ];
    if not_newer {
        return (StatusCode::NOT_MODIFIED, headers).into_response();
    }
    (
        headers,
        [(header::CONTENT_TYPE, HeaderValue::from_static(MEDIA_TYPE))],
        Body::from(packet.to_relay_payload()),
    )
        .into_response()
}

/// Puts a stored client packet on the DHT in the background, when the node
/// is on it and a forwarding slot is free.
fn forward_to_dht(resolver: &Resolver, forwards: &Arc<Semaphore>, packet: SignedPacket) {
    let Some(dht) = resolver.dht().cloned() else {
        return;
    };
    let Ok(slot) = forwards.clone().try_acquire_owned() else {
        tracing::debug!(key = %packet.public_key().to_z32(), "DHT forwarding busy: packet stored only");
        return;
    };
    tokio::spawn(async move {
        let _slot = slot;
        if let Err(error) = dht.publish(&packet).await {
            tracing::debug!(key = %packet.public_key().to_z32(), "relay packet not put on the DHT: {error}");
        }
    });
}

fn problem(status: StatusCode, detail: &str) -> Response {
    (status, format!("{detail}\n")).into_response()
}
