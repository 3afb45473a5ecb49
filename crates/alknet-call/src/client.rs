//! `CallClient`: dial a node over QUIC or TCP+TLS and call its operations.
//!
//! One client is one session on one stream. A reader task routes every reply
//! to its waiting call by id through the same [`SessionBook`] the node uses, so
//! correlation, late replies and close behave identically on both ends. Calls
//! the node makes to the client are answered `NOT_FOUND` until the client
//! registers operations of its own.

use std::net::SocketAddr;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use alknet_core::tls::{self, ServerVerification};
use alknet_core::{Alpn, NodeKey};
use futures::Stream;
use serde_json::Value;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::sync::mpsc;
use tokio_rustls::rustls::pki_types::ServerName;
use tokio_util::task::AbortOnDropHandle;

use crate::codec::{DEFAULT_MAX_FRAME, FrameDecoder, encode_frame};
use crate::envelope::{CallRequest, EventEnvelope};
use crate::error::CallError;
use crate::session::{Action, CallKind, Delivery, SessionBook};

/// Which transport to dial.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Transport {
    /// QUIC over UDP.
    Quic,
    /// TLS over TCP.
    Tcp,
}

/// How to dial.
#[derive(Debug)]
pub struct ClientOptions {
    /// QUIC or TCP+TLS.
    pub transport: Transport,
    /// Pin the node's id, or accept any certificate (`--insecure`).
    pub verification: ServerVerification,
    /// A bearer token sent with every request.
    pub token: Option<String>,
    /// Our own key, presented as a client certificate.
    pub client_key: Option<NodeKey>,
    /// Largest frame written or read.
    pub max_frame: usize,
    /// How long a query or mutation may take before the client gives up
    /// (the node's deadline plus 5 s of grace).
    pub call_timeout: Duration,
}

impl Default for ClientOptions {
    fn default() -> Self {
        Self {
            transport: Transport::Quic,
            verification: ServerVerification::Insecure,
            token: None,
            client_key: None,
            max_frame: DEFAULT_MAX_FRAME,
            call_timeout: Duration::from_secs(35),
        }
    }
}

/// Why a client could not connect.
#[derive(Debug, thiserror::Error)]
pub enum ConnectError {
    /// TLS configuration failed.
    #[error(transparent)]
    Tls(#[from] tls::TlsError),
    /// The network failed.
    #[error("cannot connect: {0}")]
    Io(#[from] std::io::Error),
    /// The QUIC handshake failed.
    #[error("QUIC: {0}")]
    Quic(String),
}

type Waiter = mpsc::UnboundedSender<Delivery>;
type Book = Arc<Mutex<SessionBook<(), Waiter>>>;

/// A call session from the client side.
pub struct CallClient {
    frames: mpsc::Sender<Vec<u8>>,
    book: Book,
    token: Option<String>,
    max_frame: usize,
    call_timeout: Duration,
    _reader: AbortOnDropHandle<()>,
    _writer: AbortOnDropHandle<()>,
    _quic: Option<(quinn::Endpoint, quinn::Connection)>,
}

impl CallClient {
    /// Dials `addr` and opens the session.
    pub async fn connect(addr: SocketAddr, options: ClientOptions) -> Result<Self, ConnectError> {
        let alpns = [Alpn::new(Alpn::CALL)];
        let key = options.client_key.as_ref();
        let (send, recv, quic): (
            Box<dyn AsyncWrite + Send + Unpin>,
            Box<dyn AsyncRead + Send + Unpin>,
            _,
        ) = match options.transport {
            Transport::Quic => {
                let config = tls::quic_client_config(options.verification, key, &alpns)?;
                let bind: SocketAddr = if addr.is_ipv6() {
                    "[::]:0"
                } else {
                    "0.0.0.0:0"
                }
                .parse()
                .expect("valid wildcard address");
                let endpoint = quinn::Endpoint::client(bind)?;
                let connection = endpoint
                    .connect_with(config, addr, "localhost")
                    .map_err(|e| ConnectError::Quic(e.to_string()))?
                    .await
                    .map_err(|e| ConnectError::Quic(e.to_string()))?;
                let (send, recv) = connection
                    .open_bi()
                    .await
                    .map_err(|e| ConnectError::Quic(e.to_string()))?;
                (Box::new(send), Box::new(recv), Some((endpoint, connection)))
            }
            Transport::Tcp => {
                let config = tls::client_config(options.verification, key, &alpns, false)?;
                let tcp = tokio::net::TcpStream::connect(addr).await?;
                tcp.set_nodelay(true)?;
                // Trust comes from the pin, not the name: any valid name will do.
                let name = ServerName::try_from("localhost").expect("a valid DNS name");
                let tls = tokio_rustls::TlsConnector::from(Arc::new(config))
                    .connect(name, tcp)
                    .await?;
                let (recv, send) = tokio::io::split(tls);
                (Box::new(send), Box::new(recv), None)
            }
        };
        let (frames, queue) = mpsc::channel(1024);
        let book: Book = Arc::new(Mutex::new(SessionBook::new(256)));
        let reader = tokio::spawn(read_replies(
            recv,
            book.clone(),
            frames.clone(),
            options.max_frame,
        ));
        let writer = tokio::spawn(write_frames(send, queue));
        Ok(Self {
            frames,
            book,
            token: options.token,
            max_frame: options.max_frame,
            call_timeout: options.call_timeout,
            _reader: AbortOnDropHandle::new(reader),
            _writer: AbortOnDropHandle::new(writer),
            _quic: quic,
        })
    }

    async fn start(
        &self,
        operation: &str,
        input: Value,
        kind: CallKind,
    ) -> Result<(String, mpsc::UnboundedReceiver<Delivery>), CallError> {
        let id = uuid::Uuid::new_v4().to_string();
        let (tx, rx) = mpsc::unbounded_channel();
        let wire_name = if operation.starts_with('/') {
            operation.to_owned()
        } else {
            format!("/{operation}")
        };
        let mut request = CallRequest::new(wire_name, input);
        request.auth_token = self.token.clone();
        let frame = encode_frame(
            &EventEnvelope::requested(id.clone(), &request),
            self.max_frame,
        )
        .map_err(|_| CallError::internal("request too large"))?;
        lock(&self.book)
            .call(id.clone(), kind, tx)
            .map_err(|refused| CallError::internal(refused.to_string()))?;
        if self.frames.send(frame).await.is_err() {
            lock(&self.book).forget(&id);
            return Err(CallError::internal("connection closed"));
        }
        Ok((id, rx))
    }

    /// Calls a query or mutation and waits for its one reply.
    pub async fn call(&self, operation: &str, input: Value) -> Result<Value, CallError> {
        let (id, mut replies) = self.start(operation, input, CallKind::Unary).await?;
        match tokio::time::timeout(self.call_timeout, replies.recv()).await {
            Ok(Some(Delivery::Output { output, .. })) => Ok(output),
            Ok(Some(Delivery::Failed(error))) => Err(error),
            Ok(Some(Delivery::Completed)) => Err(CallError::internal("invalid response payload")),
            Ok(None) => Err(CallError::internal("connection closed")),
            Err(_) => {
                self.abort(&id).await;
                Err(CallError::timeout())
            }
        }
    }

    /// Calls a subscription; its items arrive on the returned stream, which
    /// ends after `call.completed` or with one error. Dropping it early does
    /// not abort the call: use [`CallClient::abort`] with [`Subscription::id`].
    pub async fn subscribe(
        &self,
        operation: &str,
        input: Value,
    ) -> Result<Subscription, CallError> {
        let (id, replies) = self.start(operation, input, CallKind::Subscription).await?;
        Ok(Subscription {
            id,
            replies,
            done: false,
        })
    }

    /// Aborts one of our calls; late replies for it are ignored.
    pub async fn abort(&self, id: &str) {
        lock(&self.book).forget(id);
        if let Ok(frame) = encode_frame(&EventEnvelope::aborted(id), self.max_frame) {
            let _ = self.frames.send(frame).await;
        }
    }
}

fn lock(book: &Book) -> std::sync::MutexGuard<'_, SessionBook<(), Waiter>> {
    book.lock().unwrap_or_else(PoisonError::into_inner)
}

/// A running subscription's items.
pub struct Subscription {
    id: String,
    replies: mpsc::UnboundedReceiver<Delivery>,
    done: bool,
}

impl Subscription {
    /// The request id (for [`CallClient::abort`]).
    pub fn id(&self) -> &str {
        &self.id
    }
}

impl Stream for Subscription {
    type Item = Result<Value, CallError>;

    fn poll_next(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Option<Self::Item>> {
        use std::task::Poll;
        if self.done {
            return Poll::Ready(None);
        }
        match self.replies.poll_recv(cx) {
            Poll::Pending => Poll::Pending,
            Poll::Ready(Some(Delivery::Output { output, .. })) => Poll::Ready(Some(Ok(output))),
            Poll::Ready(Some(Delivery::Completed)) => {
                self.done = true;
                Poll::Ready(None)
            }
            Poll::Ready(Some(Delivery::Failed(error))) => {
                self.done = true;
                Poll::Ready(Some(Err(error)))
            }
            Poll::Ready(None) => {
                self.done = true;
                Poll::Ready(Some(Err(CallError::internal("connection closed"))))
            }
        }
    }
}

async fn read_replies(
    mut recv: Box<dyn AsyncRead + Send + Unpin>,
    book: Book,
    frames: mpsc::Sender<Vec<u8>>,
    max_frame: usize,
) {
    let mut decoder = FrameDecoder::new(max_frame);
    let mut buffer = vec![0u8; 64 * 1024];
    'read: loop {
        let read = match recv.read(&mut buffer).await {
            Ok(0) | Err(_) => break,
            Ok(read) => read,
        };
        decoder.push(&buffer[..read]);
        loop {
            let envelope = match decoder.next_envelope() {
                Ok(Some(envelope)) => envelope,
                Ok(None) => break,
                Err(error) => {
                    tracing::warn!("closing the session after a protocol error: {error}");
                    break 'read;
                }
            };
            let action = lock(&book).receive(0, envelope);
            match action {
                Action::Deliver(waiter, delivery) => {
                    let _ = waiter.send(delivery);
                }
                Action::Dispatch { id, request, .. } => {
                    // No operations of our own yet: answer like an empty registry.
                    lock(&book).served(&id);
                    let error = CallError::operation_not_found(request.operation_name());
                    if let Ok(frame) = encode_frame(&EventEnvelope::error(id, &error), max_frame) {
                        let _ = frames.send(frame).await;
                    }
                }
                Action::Reply(_, envelope) => {
                    if let Ok(frame) = encode_frame(&envelope, max_frame) {
                        let _ = frames.send(frame).await;
                    }
                }
                Action::Abort(()) | Action::Ignore => {}
            }
        }
    }
    let (_, failures) = lock(&book).close();
    for (waiter, delivery) in failures {
        let _ = waiter.send(delivery);
    }
}

async fn write_frames(
    mut send: Box<dyn AsyncWrite + Send + Unpin>,
    mut frames: mpsc::Receiver<Vec<u8>>,
) {
    while let Some(frame) = frames.recv().await {
        if send.write_all(&frame).await.is_err() || send.flush().await.is_err() {
            return;
        }
    }
    let _ = send.shutdown().await;
}
