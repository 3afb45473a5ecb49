//! A WebSocket client for `/alknet/call` (docs/protocol.md §12): tokio-tungstenite
//! over TLS, upgraded over HTTP/1.1 or over HTTP/2 extended CONNECT (hyper's
//! client), the way a non-browser client would.

use std::net::SocketAddr;
use std::time::Duration;

use alknet_call::EventEnvelope;
use base64::Engine;
use futures::{SinkExt, StreamExt};
use hyper_util::rt::{TokioExecutor, TokioIo};
use serde_json::{Value, json};
use tokio::io::{AsyncRead, AsyncWrite};
use tokio_tungstenite::WebSocketStream;
use tokio_tungstenite::tungstenite::client::IntoClientRequest;
use tokio_tungstenite::tungstenite::protocol::{Role, WebSocketConfig};
use tokio_tungstenite::tungstenite::{self, Message};

use crate::client::tls_connect;

/// Any byte stream a WebSocket can run on.
pub trait Io: AsyncRead + AsyncWrite + Send + Unpin {}
impl<T: AsyncRead + AsyncWrite + Send + Unpin> Io for T {}

/// An open WebSocket.
pub type Socket = WebSocketStream<Box<dyn Io>>;

/// How the client authenticates at the upgrade.
#[derive(Clone, Copy, Debug)]
pub enum Auth<'a> {
    /// No token.
    None,
    /// `Authorization: Bearer <token>`.
    Header(&'a str),
    /// `Sec-WebSocket-Protocol: alknet.call, alknet.bearer.<b64url token>`.
    Subprotocol(&'a str),
}

/// The `alknet.bearer.` entry for `token`.
pub fn bearer_entry(token: &str) -> String {
    format!(
        "alknet.bearer.{}",
        base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(token)
    )
}

fn config() -> WebSocketConfig {
    WebSocketConfig::default()
        .max_message_size(Some(64 << 20))
        .max_frame_size(Some(64 << 20))
}

/// Upgrades over HTTP/1.1. `Err` carries the refusal (status, headers, body).
pub async fn connect_h1(
    addr: SocketAddr,
    auth: Auth<'_>,
) -> Result<(Socket, tungstenite::handshake::client::Response), tungstenite::Error> {
    let mut request = format!("wss://localhost:{}/alknet/call", addr.port())
        .into_client_request()
        .expect("valid request");
    match auth {
        Auth::None => {}
        Auth::Header(token) => {
            request.headers_mut().insert(
                "authorization",
                format!("Bearer {token}").parse().expect("valid header"),
            );
        }
        Auth::Subprotocol(token) => {
            request.headers_mut().insert(
                "sec-websocket-protocol",
                format!("alknet.call, {}", bearer_entry(token))
                    .parse()
                    .expect("valid header"),
            );
        }
    }
    connect_h1_request(addr, request).await
}

/// Upgrades over HTTP/1.1 with a request of the caller's making.
pub async fn connect_h1_request(
    addr: SocketAddr,
    request: tungstenite::handshake::client::Request,
) -> Result<(Socket, tungstenite::handshake::client::Response), tungstenite::Error> {
    let tls = tls_connect(addr, &["http/1.1"]).await?;
    let stream: Box<dyn Io> = Box::new(tls);
    tokio_tungstenite::client_async_with_config(request, stream, Some(config())).await
}

/// Upgrades over HTTP/2 extended CONNECT (RFC 8441) with a bearer header;
/// `Err` carries the status of a refusal.
pub async fn connect_h2(addr: SocketAddr, token: Option<&str>) -> Result<Socket, u16> {
    let tls = tls_connect(addr, &["h2"]).await.expect("TLS connects");
    let (mut sender, connection) = hyper::client::conn::http2::Builder::new(TokioExecutor::new())
        .handshake::<_, http_body_util::Empty<bytes::Bytes>>(TokioIo::new(tls))
        .await
        .expect("HTTP/2 handshake");
    tokio::spawn(connection);
    let mut request = hyper::Request::builder()
        .method(hyper::Method::CONNECT)
        .uri(format!("https://localhost:{}/alknet/call", addr.port()))
        .header("sec-websocket-version", "13");
    if let Some(token) = token {
        request = request.header("authorization", format!("Bearer {token}"));
    }
    let mut request = request
        .body(http_body_util::Empty::new())
        .expect("valid request");
    request
        .extensions_mut()
        .insert(hyper::ext::Protocol::from_static("websocket"));
    let response = sender.send_request(request).await.expect("request sent");
    if response.status() != hyper::StatusCode::OK {
        return Err(response.status().as_u16());
    }
    let upgraded = hyper::upgrade::on(response).await.expect("upgraded");
    let stream: Box<dyn Io> = Box::new(TokioIo::new(upgraded));
    Ok(WebSocketStream::from_raw_socket(stream, Role::Client, Some(config())).await)
}

/// What the node sent, as a test sees it.
#[derive(Debug)]
pub enum Received {
    /// A binary message holding an envelope.
    Envelope(Value),
    /// A close frame: code and reason.
    Closed(u16, String),
    /// The socket ended without a close frame.
    Ended,
}

/// Sends `call.requested`.
pub async fn call(socket: &mut Socket, id: &str, operation: &str, input: Value) {
    let envelope = json!({
        "type": "call.requested",
        "id": id,
        "payload": {"operationId": operation, "input": input}
    });
    send_json(socket, &envelope).await;
}

/// Sends one envelope as a binary message.
pub async fn send_json(socket: &mut Socket, envelope: &Value) {
    socket
        .send(Message::Binary(
            serde_json::to_vec(envelope).expect("JSON").into(),
        ))
        .await
        .expect("message sent");
}

/// Sends an envelope built by the library.
pub async fn send_envelope(socket: &mut Socket, envelope: &EventEnvelope) {
    socket
        .send(Message::Binary(envelope.to_bytes().into()))
        .await
        .expect("message sent");
}

/// The next message the node sends (pings are skipped; tungstenite answers
/// them). Asserts every data message is binary and starts with `{` (§3.2).
pub async fn next(socket: &mut Socket) -> Received {
    let deadline = Duration::from_secs(10);
    loop {
        let message = tokio::time::timeout(deadline, socket.next())
            .await
            .expect("the node answers within 10 s");
        match message {
            Some(Ok(Message::Binary(bytes))) => {
                assert_eq!(bytes.first(), Some(&b'{'), "every message starts with {{");
                return Received::Envelope(serde_json::from_slice(&bytes).expect("JSON"));
            }
            Some(Ok(Message::Text(text))) => panic!("the node sent text: {text}"),
            Some(Ok(Message::Close(frame))) => {
                return frame.map_or(Received::Closed(1005, String::new()), |f| {
                    Received::Closed(f.code.into(), f.reason.to_string())
                });
            }
            Some(Ok(_)) => continue,
            Some(Err(_)) | None => return Received::Ended,
        }
    }
}

/// The next envelope; panics on anything else.
pub async fn next_envelope(socket: &mut Socket) -> Value {
    match next(socket).await {
        Received::Envelope(envelope) => envelope,
        other => panic!("expected an envelope, got {other:?}"),
    }
}

/// The close frame the node sends next, skipping envelopes.
pub async fn close_frame(socket: &mut Socket) -> (u16, String) {
    loop {
        match next(socket).await {
            Received::Envelope(_) => continue,
            Received::Closed(code, reason) => return (code, reason),
            Received::Ended => panic!("the socket ended without a close frame"),
        }
    }
}

/// One query or mutation: its terminal envelope.
pub async fn round_trip(socket: &mut Socket, id: &str, operation: &str, input: Value) -> Value {
    call(socket, id, operation, input).await;
    let reply = next_envelope(socket).await;
    assert_eq!(reply["id"], id, "{reply}");
    reply
}
