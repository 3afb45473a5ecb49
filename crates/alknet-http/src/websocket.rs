//! The WebSocket session at `/alknet/call` (docs/protocol.md §12).
//!
//! A browser cannot open an `alknet/call` connection, so it gets the same
//! session over a WebSocket: after the upgrade each binary message is one
//! envelope and the socket feeds a [`MessageFeed`] — the very `CallSession`
//! actor a native connection runs, linked under this HTTP connection's actor
//! and listed in the tree as `ws-session`. What is WebSocket-specific lives
//! here and nowhere else: authentication at the upgrade (a header, or the
//! subprotocol list because browsers cannot set headers), close codes, pings
//! and the idle timeout.

use std::sync::Arc;
use std::time::Duration;

use alknet_call::SessionConfig;
use alknet_call::messages::{MessageFeed, Refused, SendQueue};
use alknet_core::{ChildActor, Connection, ConnectionInfo, Duplex};
use axum::Extension;
use axum::extract::{Request, State};
use axum::http::header::{
    CONNECTION, SEC_WEBSOCKET_ACCEPT, SEC_WEBSOCKET_KEY, SEC_WEBSOCKET_PROTOCOL,
    SEC_WEBSOCKET_VERSION, UPGRADE, WWW_AUTHENTICATE,
};
use axum::http::{HeaderMap, HeaderValue, Method, StatusCode, Version};
use axum::response::{IntoResponse, Response};
use base64::Engine;
use futures::{SinkExt, StreamExt};
use hyper::upgrade::Upgraded;
use hyper_util::rt::TokioIo;
use tokio::io::AsyncReadExt;
use tokio::sync::mpsc;
use tokio::time::Instant;
use tokio_tungstenite::WebSocketStream;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::tungstenite::protocol::frame::CloseFrame;
use tokio_tungstenite::tungstenite::protocol::{Role, WebSocketConfig};
use tokio_util::either::Either;
use tokio_util::sync::CancellationToken;
use tokio_util::task::AbortOnDropHandle;

use crate::AppState;
use crate::auth::Bearer;
use crate::scope::ConnectionScope;
use crate::stealth::Http11StatusLine;

/// The subprotocol the node selects.
pub const SUBPROTOCOL: &str = "alknet.call";
/// Prefix of the subprotocol entry carrying a token (base64url, unpadded).
pub const BEARER_PREFIX: &str = "alknet.bearer.";

/// The tree name of a WebSocket session.
pub const ACTOR_NAME: &str = "ws-session";

/// WebSocket liveness settings (§12.3).
#[derive(Clone, Debug)]
pub struct WebSocketSettings {
    /// How often the node pings.
    pub ping_interval: Duration,
    /// How long a peer may stay silent (no data, ping or pong) before it is
    /// closed with 1001 `idle timeout`.
    pub idle_timeout: Duration,
}

impl Default for WebSocketSettings {
    fn default() -> Self {
        Self {
            ping_interval: Duration::from_secs(30),
            idle_timeout: Duration::from_secs(60),
        }
    }
}

/// How much tungstenite reads at a time. It zeroes that much of its buffer
/// before each read, and every socket holds one such buffer even when idle:
/// small, so that both stay cheap; a large message is read in more chunks of
/// the TLS layer's already decrypted bytes.
const READ_CHUNK: usize = 2 * 1024;

/// Messages queued by the session that go out in one flush.
const WRITE_BURST: usize = 64;

/// Close codes (RFC 6455 §7.4.1) and their reasons (§3.2, §12.3).
mod close {
    pub(super) const GOING_AWAY: (u16, &str) = (1001, "going away");
    pub(super) const IDLE: (u16, &str) = (1001, "idle timeout");
    pub(super) const TEXT: (u16, &str) = (1002, "text messages not supported");
    pub(super) const INVALID: (u16, &str) = (1002, "invalid EventEnvelope");
    pub(super) const KILLED: (u16, &str) = (1008, "killed by operator");
    pub(super) const TOO_BIG: (u16, &str) = (1009, "message too big");
}

/// `GET` (HTTP/1.1) or extended `CONNECT` (HTTP/2) `/alknet/call`.
pub(crate) async fn upgrade(
    State(state): State<AppState>,
    Extension(bearer): Extension<Bearer>,
    scope: Option<Extension<ConnectionScope>>,
    mut request: Request,
) -> Response {
    let Some(accept) = websocket_handshake(&request) else {
        return plain(StatusCode::BAD_REQUEST, "400 Bad Request");
    };
    let headers = request.headers();
    let offered = offered_subprotocols(headers);
    let protocol_offered = headers.contains_key(SEC_WEBSOCKET_PROTOCOL);
    if protocol_offered && !offered.iter().any(|p| p == SUBPROTOCOL) {
        return plain(StatusCode::BAD_REQUEST, "400 Bad Request");
    }
    let identity = match bearer {
        Bearer::Identity(identity) => Some(identity),
        Bearer::Unresolved(_) => None,
        // No bearer header: the subprotocol list, whose first token entry counts.
        Bearer::Anonymous => subprotocol_token(headers).and_then(|token| {
            let identity = state.identities.resolve_token(&token);
            if let (None, Some(Extension(scope))) = (&identity, &scope) {
                alknet_core::auth_log::token_refused(
                    scope.connection.remote(),
                    &token,
                    "websocket",
                );
            }
            identity
        }),
    };
    let Some(identity) = identity else {
        return unauthorized();
    };
    let Some(Extension(scope)) = scope else {
        // Only a request served by HttpHandler can carry a session.
        return plain(StatusCode::BAD_REQUEST, "400 Bad Request");
    };
    let on_upgrade = hyper::upgrade::on(&mut request);
    let limits = state.settings.session.clone();
    let session_config = SessionConfig {
        registry: state.registry.clone(),
        identities: state.identities.clone(),
        limits: limits.clone(),
    };
    let info = Arc::new(scope.connection.info().carried());
    info.set_identity(Some(identity));
    let liveness = state.settings.websocket.clone();
    let socket_config = WebSocketConfig::default()
        .max_message_size(Some(limits.max_frame))
        .max_frame_size(Some(limits.max_frame))
        .read_buffer_size(READ_CHUNK)
        .write_buffer_size(0);
    // Held by the socket's task: the connection's handler waits for it.
    let running = scope.sessions.token();
    // A session keeps its connection busy: the watchdog leaves it open.
    let in_flight = scope.activity.request_started();
    // The connection's span (actor, ALPN, peer), which the socket's task,
    // spawned apart from hyper's, would not inherit.
    let parent_span = tracing::Span::current();
    tokio::spawn(async move {
        let _running = running;
        let _in_flight = in_flight;
        let Ok(upgraded) = on_upgrade.await else {
            return;
        };
        let socket = open_socket(upgraded, socket_config).await;
        serve(
            socket,
            parent_span,
            scope.connection,
            session_config,
            info,
            liveness,
        )
        .await;
    });
    let mut response = match accept {
        Some(accept) => {
            let mut response = StatusCode::SWITCHING_PROTOCOLS.into_response();
            let headers = response.headers_mut();
            headers.insert(CONNECTION, HeaderValue::from_static("upgrade"));
            headers.insert(UPGRADE, HeaderValue::from_static("websocket"));
            headers.insert(SEC_WEBSOCKET_ACCEPT, accept);
            response
        }
        // RFC 8441: a 2xx accepts an extended CONNECT.
        None => StatusCode::OK.into_response(),
    };
    if protocol_offered {
        response.headers_mut().insert(
            SEC_WEBSOCKET_PROTOCOL,
            HeaderValue::from_static(SUBPROTOCOL),
        );
    }
    response
}

/// Whether `request` opens a WebSocket (RFC 6455 §4.2.1 over HTTP/1.1,
/// RFC 8441 §4 over HTTP/2): `None` if not; `Some(Some(accept))` with the
/// `Sec-WebSocket-Accept` value for HTTP/1.1; `Some(None)` for HTTP/2.
fn websocket_handshake(request: &Request) -> Option<Option<HeaderValue>> {
    let headers = request.headers();
    if headers.get(SEC_WEBSOCKET_VERSION)? != "13" {
        return None;
    }
    if request.version() >= Version::HTTP_2 {
        let protocol = request.extensions().get::<hyper::ext::Protocol>()?;
        return (request.method() == Method::CONNECT && protocol.as_str() == "websocket")
            .then_some(None);
    }
    let has_token = |name, token: &str| {
        headers.get_all(name).iter().any(|value| {
            value
                .to_str()
                .is_ok_and(|v| v.split(',').any(|t| t.trim().eq_ignore_ascii_case(token)))
        })
    };
    if request.method() != Method::GET
        || !has_token(CONNECTION, "upgrade")
        || !has_token(UPGRADE, "websocket")
    {
        return None;
    }
    let key = headers.get(SEC_WEBSOCKET_KEY)?;
    let accept = tokio_tungstenite::tungstenite::handshake::derive_accept_key(key.as_bytes());
    Some(Some(HeaderValue::from_str(&accept).ok()?))
}

/// The entries of every `Sec-WebSocket-Protocol` header, in order.
fn offered_subprotocols(headers: &HeaderMap) -> Vec<String> {
    headers
        .get_all(SEC_WEBSOCKET_PROTOCOL)
        .iter()
        .filter_map(|value| value.to_str().ok())
        .flat_map(|value| value.split(','))
        .map(|entry| entry.trim().to_owned())
        .filter(|entry| !entry.is_empty())
        .collect()
}

/// The token a browser offers in the subprotocol list: the first
/// `alknet.bearer.` entry.
pub(crate) fn subprotocol_token(headers: &HeaderMap) -> Option<String> {
    offered_subprotocols(headers)
        .iter()
        .find_map(|p| p.strip_prefix(BEARER_PREFIX))
        .and_then(decode_token)
}

/// The token in an `alknet.bearer.` entry: unpadded base64url of UTF-8.
fn decode_token(encoded: &str) -> Option<String> {
    let bytes = base64::engine::general_purpose::URL_SAFE_NO_PAD
        .decode(encoded)
        .ok()?;
    String::from_utf8(bytes).ok().filter(|t| !t.is_empty())
}

fn plain(status: StatusCode, body: &'static str) -> Response {
    (
        status,
        [("content-type", "text/plain; charset=utf-8")],
        body,
    )
        .into_response()
}

fn unauthorized() -> Response {
    let mut response = plain(StatusCode::UNAUTHORIZED, "401 Unauthorized");
    response
        .headers_mut()
        .insert(WWW_AUTHENTICATE, "Bearer".parse().expect("a valid header"));
    response
}

/// Why the socket's loop ended.
enum Ending {
    /// Close with this code and reason.
    Close((u16, &'static str)),
    /// The peer closed, vanished, or stopped reading: nothing more to send.
    Gone,
}

type Socket = WebSocketStream<Either<Duplex, TokioIo<Upgraded>>>;

/// The WebSocket over an upgraded request. An HTTP/1.1 upgrade gives back the
/// connection's own stream, with whatever hyper had read past the request (a
/// client may send messages before it sees the `101`), so that reads and
/// writes skip hyper's boxed wrapper; a stream of an HTTP/2 connection stays
/// hyper's.
async fn open_socket(upgraded: Upgraded, config: WebSocketConfig) -> Socket {
    // Under stealth the stream wears the status-line fix, which a WebSocket
    // does not need.
    let own_stream = match upgraded.downcast::<TokioIo<Duplex>>() {
        Ok(parts) => Ok((parts.io.into_inner(), parts.read_buf)),
        Err(upgraded) => upgraded
            .downcast::<TokioIo<Http11StatusLine<Duplex>>>()
            .map(|parts| (parts.io.into_inner().into_inner(), parts.read_buf)),
    };
    match own_stream {
        Ok((stream, read_buf)) => {
            WebSocketStream::from_partially_read(
                Either::Left(stream),
                read_buf.to_vec(),
                Role::Server,
                Some(config),
            )
            .await
        }
        Err(upgraded) => {
            WebSocketStream::from_raw_socket(
                Either::Right(TokioIo::new(upgraded)),
                Role::Server,
                Some(config),
            )
            .await
        }
    }
}

/// Runs one session until its socket closes.
async fn serve(
    socket: Socket,
    parent_span: tracing::Span,
    connection: Connection,
    config: SessionConfig,
    info: Arc<ConnectionInfo>,
    liveness: WebSocketSettings,
) {
    let write_stall = config.limits.write_stall;
    let span = tracing::info_span!(
        parent: &parent_span,
        "ws-session",
        actor = tracing::field::Empty,
        alpn = %info.alpn(),
        remote = %info.remote(),
        identity = info.identity().map(|i| i.id).unwrap_or_default(),
    );
    let tree = connection.tree().cloned();
    let parent = tree.as_ref().map(|tree| tree.parent());
    let (mut session, outbound) =
        match MessageFeed::start(config, info.clone(), parent, span.clone()).await {
            Ok(started) => started,
            Err(error) => {
                tracing::warn!(parent: &span, "could not start a WebSocket session: {error}");
                return;
            }
        };
    span.record("actor", tracing::field::display(session.actor().get_id()));
    let killed = CancellationToken::new();
    let listed = tree.map(|tree| {
        let kill = killed.clone();
        tree.register(
            &session.actor(),
            ChildActor {
                name: ACTOR_NAME.to_owned(),
                info: info.clone(),
                kill: Box::new(move || kill.cancel()),
            },
        )
    });
    tracing::debug!(parent: &span, "WebSocket session started");
    let mut channel = Channel {
        socket,
        info: &info,
        write_stall,
    };
    let ending = run(
        &mut channel,
        &mut session,
        outbound,
        &connection,
        &killed,
        &liveness,
    )
    .await;
    let closing = match ending {
        Ending::Close((code, reason)) => {
            tracing::debug!(parent: &span, code, reason, "closing the WebSocket");
            channel.close(code, reason).await;
            Some(code)
        }
        Ending::Gone => None,
    };
    // §9.3: abort what the session serves, fail what it awaits. Before the
    // closing handshake ends: `admin/kill` returns once the actor stopped.
    session.close().await;
    drop(listed);
    tracing::debug!(parent: &span, "WebSocket session ended");
    if let Some(code) = closing {
        linger(channel.socket, code).await;
    }
}

// Anyone can open a WebSocket and stop reading: a few lines a window.
static WRITE_STALL_LOG: alknet_core::log_limit::LogLimit =
    alknet_core::log_limit::LogLimit::warn("closing the WebSocket: the peer read nothing");

/// The socket, written to by the session's loop. One task owns it whole:
/// split halves would take a lock on every read and write.
struct Channel<'a> {
    socket: Socket,
    info: &'a ConnectionInfo,
    write_stall: Duration,
}

impl Channel<'_> {
    /// Sends `first` and whatever else is queued already, then flushes once;
    /// `false` if the socket failed or the peer read nothing for the stall
    /// limit.
    async fn send_burst(&mut self, first: Vec<u8>, outbound: &mut SendQueue) -> bool {
        let write = async {
            self.info.stats().record_out(first.len());
            self.socket.feed(Message::Binary(first.into())).await?;
            for _ in 1..WRITE_BURST {
                let Some(next) = outbound.try_next() else {
                    break;
                };
                self.info.stats().record_out(next.len());
                self.socket.feed(Message::Binary(next.into())).await?;
            }
            self.socket.flush().await
        };
        match alknet_core::stall::within(self.write_stall, write).await {
            Ok(Ok(())) => true,
            Ok(Err(_)) => false,
            Err(_) => {
                if WRITE_STALL_LOG.admit() {
                    tracing::warn!(
                        remote = %self.info.remote(),
                        "closing the WebSocket: the peer read nothing for {:?}",
                        self.write_stall
                    );
                }
                false
            }
        }
    }

    async fn ping(&mut self) -> bool {
        let ping = self.socket.send(Message::Ping(Default::default()));
        matches!(
            alknet_core::stall::within(self.write_stall, ping).await,
            Ok(Ok(()))
        )
    }

    async fn close(&mut self, code: u16, reason: &'static str) {
        let frame = CloseFrame {
            code: code.into(),
            reason: reason.into(),
        };
        let close = async {
            self.socket.send(Message::Close(Some(frame))).await?;
            self.socket.close(None).await
        };
        let _ = tokio::time::timeout(Duration::from_secs(5), close).await;
    }
}

/// When the loop must next look at the peer's liveness: the earlier of the
/// next ping and the end of the allowed silence. One timer for both, re-armed
/// only when it fires, because reading the clock per message is cheaper than
/// resetting a timer per message.
struct Liveness {
    settings: WebSocketSettings,
    next_ping: Instant,
    last_heard: Instant,
}

/// What the liveness timer asks for when it fires.
enum Due {
    Ping,
    Idle,
    Nothing,
}

impl Liveness {
    fn new(settings: &WebSocketSettings) -> Self {
        let now = Instant::now();
        Self {
            settings: settings.clone(),
            next_ping: now + settings.ping_interval,
            last_heard: now,
        }
    }

    fn heard(&mut self) {
        self.last_heard = Instant::now();
    }

    fn next_check(&self) -> Instant {
        self.next_ping
            .min(self.last_heard + self.settings.idle_timeout)
    }

    fn due(&mut self) -> Due {
        let now = Instant::now();
        if now >= self.last_heard + self.settings.idle_timeout {
            Due::Idle
        } else if now >= self.next_ping {
            self.next_ping = now + self.settings.ping_interval;
            Due::Ping
        } else {
            Due::Nothing
        }
    }
}

async fn run(
    channel: &mut Channel<'_>,
    session: &mut MessageFeed,
    mut outbound: SendQueue,
    connection: &Connection,
    killed: &CancellationToken,
    liveness: &WebSocketSettings,
) -> Ending {
    let mut liveness = Liveness::new(liveness);
    let check = tokio::time::sleep_until(liveness.next_check());
    tokio::pin!(check);
    let mut draining = false;
    let (mut interrupts, _watcher) = watch(connection.clone(), killed.clone());
    let mut watching = true;
    loop {
        // Interrupts first, so that no flood of messages can keep a kill
        // from being seen; then the busy branches, so that a message that is
        // ready is taken without polling the rest, which are polled once
        // before the task sleeps.
        tokio::select! {
            biased;
            interrupt = interrupts.recv(), if watching => match interrupt {
                Some(Interrupt::Killed) => return Ending::Close(close::KILLED),
                // The HTTP connection carrying the socket was closed: killed
                // by an operator, or past the shutdown deadline.
                Some(Interrupt::Closed) => {
                    return Ending::Close(if connection.is_draining() {
                        close::GOING_AWAY
                    } else {
                        close::KILLED
                    });
                }
                Some(Interrupt::Drain) if !draining => {
                    draining = true;
                    session.drain();
                }
                Some(Interrupt::Drain) => {}
                None => watching = false,
            },
            received = channel.socket.next() => {
                liveness.heard();
                match received {
                    Some(Ok(Message::Binary(bytes))) => {
                        channel.info.stats().record_in(bytes.len());
                        match session.receive(&bytes) {
                            // Replies of longer requests must not wait
                            // behind a stream of messages that need none.
                            Ok(None) => {
                                if let Some(queued) = outbound.try_next()
                                    && !channel.send_burst(queued, &mut outbound).await {
                                        return Ending::Gone;
                                    }
                            }
                            Ok(Some(reply)) => {
                                if !channel.send_burst(reply, &mut outbound).await {
                                    return Ending::Gone;
                                }
                            }
                            Err(Refused::InvalidEnvelope(error)) => {
                                tracing::debug!("closing the WebSocket: {error}");
                                return Ending::Close(close::INVALID);
                            }
                            Err(Refused::SessionOver) => return Ending::Close(close::GOING_AWAY),
                        }
                    }
                    Some(Ok(Message::Text(_))) => return Ending::Close(close::TEXT),
                    // Keep-alives; tungstenite answers pings itself.
                    Some(Ok(Message::Ping(_) | Message::Pong(_) | Message::Frame(_))) => {}
                    // tungstenite answers the close itself.
                    Some(Ok(Message::Close(_))) | None => return Ending::Gone,
                    Some(Err(error)) => return ending_for(error),
                }
            }
            message = outbound.next() => match message {
                Some(message) => {
                    if !channel.send_burst(message, &mut outbound).await {
                        return Ending::Gone;
                    }
                }
                None => return Ending::Close(close::GOING_AWAY),
            },
            () = session.stopped() => {
                // Drained: send what it queued, then say goodbye.
                while let Some(message) = outbound.try_next() {
                    if !channel.send_burst(message, &mut outbound).await {
                        return Ending::Gone;
                    }
                }
                return Ending::Close(close::GOING_AWAY);
            }
            () = &mut check => {
                match liveness.due() {
                    Due::Idle => return Ending::Close(close::IDLE),
                    Due::Ping => {
                        if !channel.ping().await {
                            return Ending::Gone;
                        }
                    }
                    Due::Nothing => {}
                }
                check.as_mut().reset(liveness.next_check());
            }
        }
    }
}

/// What reaches a session's loop from outside its socket.
enum Interrupt {
    /// The node is shutting down: finish what is in flight.
    Drain,
    /// `admin/kill` on the session.
    Killed,
    /// The HTTP connection carrying the socket was closed.
    Closed,
}

/// Watches for [`Interrupt`]s in a task of its own, which the loop hears
/// from through one channel: polling three cancellation futures for every
/// message would take two locks each.
fn watch(
    connection: Connection,
    killed: CancellationToken,
) -> (mpsc::Receiver<Interrupt>, AbortOnDropHandle<()>) {
    let (sender, receiver) = mpsc::channel(2);
    let watcher = tokio::spawn(async move {
        let ended = tokio::select! {
            biased;
            () = killed.cancelled() => Interrupt::Killed,
            () = connection.closed() => Interrupt::Closed,
            () = connection.draining() => {
                if sender.send(Interrupt::Drain).await.is_err() {
                    return;
                }
                tokio::select! {
                    biased;
                    () = killed.cancelled() => Interrupt::Killed,
                    () = connection.closed() => Interrupt::Closed,
                }
            }
        };
        let _ = sender.send(ended).await;
    });
    (receiver, AbortOnDropHandle::new(watcher))
}

/// What a read error means for the socket.
fn ending_for(error: tokio_tungstenite::tungstenite::Error) -> Ending {
    use tokio_tungstenite::tungstenite::Error;
    match error {
        Error::Capacity(_) => Ending::Close(close::TOO_BIG),
        error => {
            tracing::debug!("WebSocket read failed: {error}");
            Ending::Gone
        }
    }
}

/// How long the node waits for the peer's side of a closing handshake.
const LINGER: Duration = Duration::from_secs(2);
/// The most a closing socket reads and discards.
const LINGER_BYTES: usize = 64 * 1024 * 1024;

/// After our close frame: wait briefly for the peer's, reading and
/// discarding what it still sends, so that dropping the connection does not
/// reset it with our close frame still unread (RFC 6455 §7.1.1). After a
/// message too big the frame reader is mid-message, so raw bytes are read.
async fn linger(mut socket: Socket, code: u16) {
    let discard = async {
        if code == close::TOO_BIG.0 {
            let io = socket.get_mut();
            let mut buffer = vec![0u8; 64 * 1024];
            let mut total = 0;
            while total < LINGER_BYTES {
                match io.read(&mut buffer).await {
                    Ok(0) | Err(_) => break,
                    Ok(read) => total += read,
                }
            }
        } else {
            while let Some(Ok(message)) = socket.next().await {
                if message.is_close() {
                    break;
                }
            }
        }
    };
    let _ = tokio::time::timeout(LINGER, discard).await;
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_token_entry_is_unpadded_base64url_of_utf8() {
        assert_eq!(
            decode_token("YWxrXzNmOWMyZTdkMWI").as_deref(),
            Some("alk_3f9c2e7d1b")
        );
        assert_eq!(decode_token("YWxrXzNmOWMyZTdkMWI="), None, "padding");
        assert_eq!(decode_token("YWxr+zNm"), None, "not the URL alphabet");
        assert_eq!(decode_token("_w"), None, "not UTF-8");
        assert_eq!(decode_token(""), None);
    }

    #[test]
    fn subprotocols_are_read_from_every_header_in_order() {
        let mut headers = HeaderMap::new();
        headers.append(
            SEC_WEBSOCKET_PROTOCOL,
            "alknet.call, alknet.bearer.eA".parse().unwrap(),
        );
        headers.append(SEC_WEBSOCKET_PROTOCOL, "other".parse().unwrap());
        assert_eq!(
            offered_subprotocols(&headers),
            ["alknet.call", "alknet.bearer.eA", "other"]
        );
    }
}
