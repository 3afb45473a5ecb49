//! A negotiated connection as a protocol handler sees it.
//!
//! QUIC carries many bidirectional streams per connection; TCP+TLS carries
//! exactly one. [`Connection`] hides the difference so that a protocol written
//! against streams runs over both unchanged. Every byte read or written through
//! a [`BiStream`] is counted in the connection's [`ConnectionStats`], which the
//! actor tree reports; nothing else keeps a second count.

use std::io;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, OnceLock, PoisonError, RwLock};
use std::task::{Context, Poll};

use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio_util::sync::CancellationToken;

use crate::alpn::Alpn;
use crate::fingerprint::Fingerprint;
use crate::identity::Identity;
use crate::tree::ConnectionTree;

/// Which transport a connection arrived on.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum TransportKind {
    /// QUIC over UDP: many bidirectional streams.
    Quic,
    /// TLS over TCP: exactly one bidirectional stream.
    Tls,
}

/// Counters a connection keeps about itself.
#[derive(Debug, Default)]
pub struct ConnectionStats {
    bytes_in: AtomicU64,
    bytes_out: AtomicU64,
    requests: AtomicU64,
    held: AtomicU64,
}

impl ConnectionStats {
    /// Application bytes received.
    pub fn bytes_in(&self) -> u64 {
        self.bytes_in.load(Ordering::Relaxed)
    }

    /// Application bytes sent.
    pub fn bytes_out(&self) -> u64 {
        self.bytes_out.load(Ordering::Relaxed)
    }

    /// Requests received, as the protocol defines them.
    pub fn requests(&self) -> u64 {
        self.requests.load(Ordering::Relaxed)
    }

    /// Bytes of state the peer made the node keep for this connection beyond
    /// its buffers (a call session: the operations it registered).
    pub fn held(&self) -> u64 {
        self.held.load(Ordering::Relaxed)
    }

    /// Sets [`ConnectionStats::held`].
    pub fn set_held(&self, bytes: u64) {
        self.held.store(bytes, Ordering::Relaxed);
    }

    /// Counts one request (the protocol decides what a request is).
    pub fn record_request(&self) {
        self.requests.fetch_add(1, Ordering::Relaxed);
    }

    /// Counts bytes received. Streams count themselves; a session that does
    /// its own reading (a WebSocket inside an HTTP connection) calls this.
    pub fn record_in(&self, bytes: usize) {
        if bytes > 0 {
            self.bytes_in.fetch_add(bytes as u64, Ordering::Relaxed);
        }
    }

    /// Counts bytes sent (see [`ConnectionStats::record_in`]).
    pub fn record_out(&self, bytes: usize) {
        if bytes > 0 {
            self.bytes_out.fetch_add(bytes as u64, Ordering::Relaxed);
        }
    }

    /// Counts what a read added to `buf`, passing its result on.
    fn read_into(
        &self,
        buf: &mut ReadBuf<'_>,
        read: impl FnOnce(&mut ReadBuf<'_>) -> Poll<io::Result<()>>,
    ) -> Poll<io::Result<()>> {
        let before = buf.filled().len();
        let result = read(buf);
        self.record_in(buf.filled().len() - before);
        result
    }

    /// Counts what a write reports written, passing its result on.
    fn written(&self, result: Poll<io::Result<usize>>) -> Poll<io::Result<usize>> {
        if let Poll::Ready(Ok(n)) = result {
            self.record_out(n);
        }
        result
    }
}

/// What is known about a connection once its handshake completed.
#[derive(Debug)]
pub struct ConnectionInfo {
    alpn: Alpn,
    remote: SocketAddr,
    transport: TransportKind,
    peer: Option<Fingerprint>,
    identity: RwLock<Option<Arc<Identity>>>,
    token_identity: RwLock<Option<String>>,
    detail: RwLock<Option<String>>,
    stats: ConnectionStats,
}

impl ConnectionInfo {
    /// The negotiated ALPN.
    pub fn alpn(&self) -> &Alpn {
        &self.alpn
    }

    /// The peer's address.
    pub fn remote(&self) -> SocketAddr {
        self.remote
    }

    /// The transport the connection arrived on.
    pub fn transport(&self) -> TransportKind {
        self.transport
    }

    /// The fingerprint of the client certificate, if one was presented.
    pub fn peer_fingerprint(&self) -> Option<Fingerprint> {
        self.peer
    }

    /// The identity the connection runs as, if resolved.
    pub fn identity(&self) -> Option<Identity> {
        self.shared_identity().as_deref().cloned()
    }

    /// The identity the connection runs as, shared rather than copied: what
    /// each of a session's requests runs as unless it presents a token.
    pub fn shared_identity(&self) -> Option<Arc<Identity>> {
        self.identity
            .read()
            .unwrap_or_else(PoisonError::into_inner)
            .clone()
    }

    /// Replaces the connection's identity (e.g. after a protocol-level login).
    pub fn set_identity(&self, identity: Option<Identity>) {
        *self
            .identity
            .write()
            .unwrap_or_else(PoisonError::into_inner) = identity.map(Arc::new);
    }

    /// Records the id of the identity the latest bearer token on this
    /// connection resolved to. Display only: it never becomes the connection's
    /// identity (a token applies to its own request, docs/protocol.md §7.2).
    pub fn note_token_identity(&self, id: &str) {
        let mut noted = self
            .token_identity
            .write()
            .unwrap_or_else(PoisonError::into_inner);
        if noted.as_deref() != Some(id) {
            *noted = Some(id.to_owned());
        }
    }

    /// Who this connection shows as to operators: its own identity, else the
    /// identity its latest bearer token resolved to.
    pub fn display_identity(&self) -> Option<String> {
        let own = self.shared_identity().map(|identity| identity.id.clone());
        own.or_else(|| {
            self.token_identity
                .read()
                .unwrap_or_else(PoisonError::into_inner)
                .clone()
        })
    }

    /// What the connection or session is doing, in a few words, for
    /// operators (an SSH channel: `exec: make test`,
    /// `direct-tcpip 127.0.0.1:8080`).
    pub fn detail(&self) -> Option<String> {
        self.detail
            .read()
            .unwrap_or_else(PoisonError::into_inner)
            .clone()
    }

    /// Replaces [`Self::detail`].
    pub fn set_detail(&self, detail: impl Into<String>) {
        *self.detail.write().unwrap_or_else(PoisonError::into_inner) = Some(detail.into());
    }

    /// The connection's counters.
    pub fn stats(&self) -> &ConnectionStats {
        &self.stats
    }

    /// The info of a session carried inside this connection (a WebSocket in
    /// an HTTP connection): the same ALPN, peer and transport, with an
    /// identity and counters of its own.
    pub fn carried(&self) -> ConnectionInfo {
        ConnectionInfo {
            alpn: self.alpn.clone(),
            remote: self.remote,
            transport: self.transport,
            peer: self.peer,
            identity: RwLock::new(None),
            token_identity: RwLock::new(None),
            detail: RwLock::new(None),
            stats: ConnectionStats::default(),
        }
    }
}

/// Errors from opening or accepting streams.
#[derive(Debug, thiserror::Error)]
pub enum StreamError {
    /// The QUIC connection failed.
    #[error("QUIC connection error: {0}")]
    Quic(#[from] quinn::ConnectionError),
    /// A TCP+TLS connection carries one stream and it is already in use.
    #[error("a TCP+TLS connection carries exactly one stream, and it is taken")]
    SingleStream,
}

/// Any ordered, reliable byte stream (a TLS session over TCP, either side).
pub trait ByteStream: AsyncRead + AsyncWrite + Send + Unpin + 'static {}
impl<T: AsyncRead + AsyncWrite + Send + Unpin + 'static> ByteStream for T {}

enum Transport {
    Quic(quinn::Connection),
    Stream(Mutex<Option<Box<dyn ByteStream>>>),
}

/// A negotiated connection: ALPN, peer, identity, and its streams.
///
/// Cloning is cheap and every clone refers to the same connection.
#[derive(Clone)]
pub struct Connection {
    info: Arc<ConnectionInfo>,
    transport: Arc<Transport>,
    draining: CancellationToken,
    closed: CancellationToken,
    tree: Arc<OnceLock<Arc<dyn ConnectionTree>>>,
}

impl std::fmt::Debug for Connection {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Connection")
            .field("info", &self.info)
            .finish_non_exhaustive()
    }
}

impl Connection {
    /// Wraps an established QUIC connection.
    pub fn from_quic(connection: quinn::Connection, alpn: Alpn, peer: Option<Fingerprint>) -> Self {
        let remote = connection.remote_address();
        Self::new(
            TransportKind::Quic,
            Transport::Quic(connection),
            alpn,
            remote,
            peer,
        )
    }

    /// Wraps an established TLS session over TCP (or any single byte stream).
    pub fn from_stream(
        stream: impl ByteStream,
        alpn: Alpn,
        remote: SocketAddr,
        peer: Option<Fingerprint>,
    ) -> Self {
        Self::new(
            TransportKind::Tls,
            Transport::Stream(Mutex::new(Some(Box::new(stream)))),
            alpn,
            remote,
            peer,
        )
    }

    fn new(
        kind: TransportKind,
        transport: Transport,
        alpn: Alpn,
        remote: SocketAddr,
        peer: Option<Fingerprint>,
    ) -> Self {
        Self {
            info: Arc::new(ConnectionInfo {
                alpn,
                remote,
                transport: kind,
                peer,
                identity: RwLock::new(None),
                token_identity: RwLock::new(None),
                detail: RwLock::new(None),
                stats: ConnectionStats::default(),
            }),
            transport: Arc::new(transport),
            draining: CancellationToken::new(),
            closed: CancellationToken::new(),
            tree: Arc::new(OnceLock::new()),
        }
    }

    /// Where this connection sits in the node's actor tree, once its
    /// connection actor runs; `None` for a connection outside a node (a
    /// client's, or a test's).
    pub fn tree(&self) -> Option<&Arc<dyn ConnectionTree>> {
        self.tree.get()
    }

    /// Set by the connection actor that serves this connection (once).
    pub fn set_tree(&self, tree: Arc<dyn ConnectionTree>) {
        let _ = self.tree.set(tree);
    }

    /// What is known about this connection; shared with the actor tree.
    pub fn info(&self) -> &Arc<ConnectionInfo> {
        &self.info
    }

    /// The negotiated ALPN.
    pub fn alpn(&self) -> &Alpn {
        &self.info.alpn
    }

    /// The peer's address.
    pub fn remote(&self) -> SocketAddr {
        self.info.remote
    }

    /// The underlying QUIC connection, for protocols that need QUIC specifics
    /// (datagrams, stream priorities). `None` over TCP+TLS.
    pub fn quic(&self) -> Option<&quinn::Connection> {
        match &*self.transport {
            Transport::Quic(c) => Some(c),
            Transport::Stream(_) => None,
        }
    }

    /// Waits for the peer's next bidirectional stream.
    ///
    /// Returns `Ok(None)` once no more streams will come: the QUIC connection was
    /// closed (by either side, or timed out), or, over TCP+TLS, the single stream
    /// has already been handed out.
    pub async fn accept_bi(&self) -> Result<Option<BiStream>, StreamError> {
        match &*self.transport {
            Transport::Quic(conn) => match conn.accept_bi().await {
                Ok((send, recv)) => Ok(Some(self.quic_stream(send, recv))),
                Err(e) if is_normal_close(&e) => Ok(None),
                Err(e) => Err(e.into()),
            },
            Transport::Stream(slot) => Ok(self.take_stream(slot)),
        }
    }

    /// Opens a bidirectional stream towards the peer. Over TCP+TLS this hands out
    /// the single stream if nobody took it yet.
    pub async fn open_bi(&self) -> Result<BiStream, StreamError> {
        match &*self.transport {
            Transport::Quic(conn) => {
                let (send, recv) = conn.open_bi().await?;
                Ok(self.quic_stream(send, recv))
            }
            Transport::Stream(slot) => self.take_stream(slot).ok_or(StreamError::SingleStream),
        }
    }

    fn quic_stream(&self, send: quinn::SendStream, recv: quinn::RecvStream) -> BiStream {
        self.bi_stream(WriteInner::Quic(send), ReadInner::Quic(recv))
    }

    fn take_stream(&self, slot: &Mutex<Option<Box<dyn ByteStream>>>) -> Option<BiStream> {
        let stream = slot.lock().unwrap_or_else(PoisonError::into_inner).take()?;
        let (recv, send) = tokio::io::split(stream);
        Some(self.bi_stream(WriteInner::Stream(send), ReadInner::Stream(recv)))
    }

    fn bi_stream(&self, send: WriteInner, recv: ReadInner) -> BiStream {
        BiStream {
            send: SendHalf {
                inner: send,
                info: self.info.clone(),
            },
            recv: RecvHalf {
                inner: recv,
                info: self.info.clone(),
            },
        }
    }

    /// Asks the handler to finish: stop taking new work, complete what is in
    /// flight, and return. The node force-closes whatever is left at its drain
    /// deadline.
    pub fn begin_drain(&self) {
        self.draining.cancel();
    }

    /// Whether [`Connection::begin_drain`] was called.
    pub fn is_draining(&self) -> bool {
        self.draining.is_cancelled()
    }

    /// Completes when the node asks this connection to drain.
    pub async fn draining(&self) {
        self.draining.cancelled().await
    }

    /// Closes the connection. Over QUIC the peer sees application error `code`
    /// with `reason`; over TCP+TLS the stream is dropped by whoever holds it, so
    /// the owner of the handler task must stop it (the connection actor does).
    pub fn close(&self, code: u32, reason: &str) {
        if let Transport::Quic(conn) = &*self.transport {
            conn.close(quinn::VarInt::from_u32(code), reason.as_bytes());
        }
        if let Transport::Stream(slot) = &*self.transport {
            slot.lock().unwrap_or_else(PoisonError::into_inner).take();
        }
        self.closed.cancel();
    }

    /// Completes when [`Connection::close`] was called on any clone.
    pub async fn closed(&self) {
        self.closed.cancelled().await
    }
}

fn is_normal_close(e: &quinn::ConnectionError) -> bool {
    use quinn::ConnectionError as E;
    matches!(
        e,
        E::ApplicationClosed(_)
            | E::ConnectionClosed(_)
            | E::LocallyClosed
            | E::Reset
            | E::TimedOut
    )
}

/// One bidirectional stream: a QUIC stream pair or the single TCP+TLS stream.
pub struct BiStream {
    /// The half we write to the peer.
    pub send: SendHalf,
    /// The half we read from the peer.
    pub recv: RecvHalf,
}

impl BiStream {
    /// The stream as one value that both reads and writes, for protocols
    /// that take a single I/O object (HTTP). Over TCP+TLS it is the TLS
    /// stream itself again, without the lock two halves of one stream share.
    pub fn into_duplex(self) -> Duplex {
        let info = self.recv.info.clone();
        let inner = match (self.recv.inner, self.send.inner) {
            (ReadInner::Stream(recv), WriteInner::Stream(send)) if recv.is_pair_of(&send) => {
                DuplexInner::Whole(recv.unsplit(send))
            }
            (recv, send) => DuplexInner::Halves {
                recv: RecvHalf {
                    inner: recv,
                    info: info.clone(),
                },
                send: SendHalf {
                    inner: send,
                    info: info.clone(),
                },
            },
        };
        Duplex { inner, info }
    }
}

/// A [`BiStream`] as one reader-writer (see [`BiStream::into_duplex`]); it
/// counts the connection's bytes like the halves do.
pub struct Duplex {
    inner: DuplexInner,
    info: Arc<ConnectionInfo>,
}

enum DuplexInner {
    Whole(Box<dyn ByteStream>),
    Halves { recv: RecvHalf, send: SendHalf },
}

impl AsyncRead for Duplex {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let this = &mut *self;
        match &mut this.inner {
            DuplexInner::Whole(stream) => this
                .info
                .stats
                .read_into(buf, |buf| Pin::new(stream).poll_read(cx, buf)),
            DuplexInner::Halves { recv, .. } => Pin::new(recv).poll_read(cx, buf),
        }
    }
}

impl AsyncWrite for Duplex {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        let this = &mut *self;
        match &mut this.inner {
            DuplexInner::Whole(stream) => this
                .info
                .stats
                .written(Pin::new(stream).poll_write(cx, buf)),
            DuplexInner::Halves { send, .. } => Pin::new(send).poll_write(cx, buf),
        }
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        let this = &mut *self;
        match &mut this.inner {
            DuplexInner::Whole(stream) => this
                .info
                .stats
                .written(Pin::new(stream).poll_write_vectored(cx, bufs)),
            DuplexInner::Halves { send, .. } => Pin::new(send).poll_write_vectored(cx, bufs),
        }
    }

    fn is_write_vectored(&self) -> bool {
        match &self.inner {
            DuplexInner::Whole(stream) => stream.is_write_vectored(),
            DuplexInner::Halves { send, .. } => send.is_write_vectored(),
        }
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match &mut self.inner {
            DuplexInner::Whole(stream) => Pin::new(stream).poll_flush(cx),
            DuplexInner::Halves { send, .. } => Pin::new(send).poll_flush(cx),
        }
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match &mut self.inner {
            DuplexInner::Whole(stream) => Pin::new(stream).poll_shutdown(cx),
            DuplexInner::Halves { send, .. } => Pin::new(send).poll_shutdown(cx),
        }
    }
}

/// The writing half of a [`BiStream`]. `shutdown()` finishes the stream (QUIC
/// FIN; TLS close_notify) after buffered data is delivered.
pub struct SendHalf {
    inner: WriteInner,
    info: Arc<ConnectionInfo>,
}

/// The reading half of a [`BiStream`].
pub struct RecvHalf {
    inner: ReadInner,
    info: Arc<ConnectionInfo>,
}

enum WriteInner {
    Quic(quinn::SendStream),
    Stream(tokio::io::WriteHalf<Box<dyn ByteStream>>),
}

enum ReadInner {
    Quic(quinn::RecvStream),
    Stream(tokio::io::ReadHalf<Box<dyn ByteStream>>),
}

impl SendHalf {
    /// Abandons the stream with an application error code: QUIC RESET_STREAM.
    /// Over TCP+TLS a stream cannot be reset; close the connection instead.
    pub fn reset(&mut self, code: u32) {
        if let WriteInner::Quic(send) = &mut self.inner {
            let _ = send.reset(quinn::VarInt::from_u32(code));
        }
    }
}

impl RecvHalf {
    /// Tells the peer to stop sending, with an application error code: QUIC
    /// STOP_SENDING. Over TCP+TLS a stream cannot be stopped; close the
    /// connection instead.
    pub fn stop(&mut self, code: u32) {
        if let ReadInner::Quic(recv) = &mut self.inner {
            let _ = recv.stop(quinn::VarInt::from_u32(code));
        }
    }
}

impl AsyncRead for RecvHalf {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let this = &mut *self;
        this.info.stats.read_into(buf, |buf| match &mut this.inner {
            ReadInner::Quic(recv) => AsyncRead::poll_read(Pin::new(recv), cx, buf),
            ReadInner::Stream(recv) => AsyncRead::poll_read(Pin::new(recv), cx, buf),
        })
    }
}

impl AsyncWrite for SendHalf {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        let this = &mut *self;
        this.info.stats.written(match &mut this.inner {
            WriteInner::Quic(send) => AsyncWrite::poll_write(Pin::new(send), cx, buf),
            WriteInner::Stream(send) => AsyncWrite::poll_write(Pin::new(send), cx, buf),
        })
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match &mut self.inner {
            WriteInner::Quic(send) => AsyncWrite::poll_flush(Pin::new(send), cx),
            WriteInner::Stream(send) => AsyncWrite::poll_flush(Pin::new(send), cx),
        }
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match &mut self.inner {
            WriteInner::Quic(send) => AsyncWrite::poll_shutdown(Pin::new(send), cx),
            WriteInner::Stream(send) => AsyncWrite::poll_shutdown(Pin::new(send), cx),
        }
    }
}
