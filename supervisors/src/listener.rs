//! The two listeners: QUIC on UDP and TLS on TCP, same port number; and the
//! TCP listeners a protocol may ask for on addresses of their own: plain
//! (`[ssh] listen`, for clients that cannot use a proxy command) or TLS for
//! one protocol whatever ALPN the client offers (`[dns] dot_listen`, for
//! stub resolvers that offer none).
//!
//! A listener accepts, runs the TLS handshake far enough to know the ALPN and
//! the client certificate (each handshake in its own task, bounded by the
//! handshake timeout and by the pending-handshake table, [`crate::pending`]),
//! and hands the connection to the router. Each listener advertises the ALPNs
//! of the protocols that serve its transport; any other offered ALPN fails
//! inside rustls with `no_application_protocol` (QUIC: CRYPTO_ERROR 0x0178) —
//! the listener never sees such a connection.
//!
//! The sockets themselves belong to the node, not to the listener actors: a
//! restarted listener resumes accepting on the same socket, and connections
//! already established never notice.

use std::sync::Arc;
use std::time::Duration;

use alknet_core::close;
use alknet_core::log_limit::LogLimit;
use alknet_core::{Alpn, Connection, Filling, Fingerprint};
use ractor::{Actor, ActorProcessingErr, ActorRef};
use rustls::pki_types::CertificateDer;
use tokio_util::task::AbortOnDropHandle;

use crate::directory::{ActorInfo, ActorKind, DirectoryEntry};
use crate::pending::{PendingHandshakes, Progress, Slot};
use crate::state::NodeState;

/// Which socket a listener serves.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum ListenerKind {
    Quic,
    Tcp,
    /// The listener of its own at this index of [`NodeState::plain`].
    Plain(usize),
}

impl ListenerKind {
    pub(crate) fn name(self) -> &'static str {
        match self {
            Self::Quic => "listener/quic",
            Self::Tcp => "listener/tcp",
            Self::Plain(_) => "listener/plain",
        }
    }
}

pub(crate) struct Listener;

pub(crate) struct ListenerArgs {
    pub(crate) node: Arc<NodeState>,
    pub(crate) kind: ListenerKind,
    pub(crate) restarts: u32,
}

pub(crate) struct ListenerState {
    _accept_loop: AbortOnDropHandle<()>,
    _registration: DirectoryEntry,
}

/// Listeners take no orders; they are stopped or restarted by the root.
pub(crate) enum ListenerMsg {}

impl Actor for Listener {
    type Msg = ListenerMsg;
    type State = ListenerState;
    type Arguments = ListenerArgs;

    async fn pre_start(
        &self,
        myself: ActorRef<Self::Msg>,
        args: Self::Arguments,
    ) -> Result<Self::State, ActorProcessingErr> {
        let name = match args.kind {
            ListenerKind::Plain(index) if args.node.plain.get(index).is_some_and(|p| p.tls) => {
                "listener/tls"
            }
            kind => kind.name(),
        };
        let registration = args.node.directory.register(
            myself.get_id(),
            ActorInfo::new(name, ActorKind::Listener, args.restarts),
        );
        let node = args.node.clone();
        let accept_loop = match args.kind {
            ListenerKind::Quic => tokio::spawn(accept_quic(node)),
            ListenerKind::Tcp => tokio::spawn(accept_tcp(node)),
            ListenerKind::Plain(index) => tokio::spawn(accept_plain(node, index)),
        };
        Ok(ListenerState {
            _accept_loop: AbortOnDropHandle::new(accept_loop),
            _registration: registration,
        })
    }
}

/// A full pending-handshake table: logged at `info`, a few lines a window.
static HANDSHAKE_PRESSURE: LogLimit =
    LogLimit::info("pending handshakes at the cap: evicting the oldest");
/// QUIC under handshake pressure: logged at `info`, a few lines a window.
static QUIC_RETRY: LogLimit =
    LogLimit::info("QUIC handshakes under pressure: unvalidated Initials answered with a Retry");
/// Accepting a TCP connection failed (out of file descriptors and the like).
static TCP_ACCEPT_FAILED: LogLimit = LogLimit::warn("TCP accept failed");

fn log_eviction(kind: ListenerKind, pending: &PendingHandshakes) {
    if HANDSHAKE_PRESSURE.admit() {
        tracing::info!(
            listener = kind.name(),
            capacity = pending.capacity(),
            evicted_total = pending.evicted(),
            "pending handshakes at the cap (limits.max_pending_handshakes): evicted the oldest, silent ones first"
        );
    }
}

async fn accept_quic(node: Arc<NodeState>) {
    let pending = node.pending_handshakes[0].clone();
    // Past half the table, an Initial from an address that has not proven it
    // receives our packets gets a stateless Retry: spoofed or abandoned
    // Initials then cost no state, and real clients come back validated.
    let retry_from = pending.capacity() / 2;
    while let Some(incoming) = node.endpoint.accept().await {
        if node.is_shutting_down() {
            incoming.refuse();
            continue;
        }
        let validated = incoming.remote_address_validated();
        if !validated && incoming.may_retry() && pending.len() >= retry_from {
            if QUIC_RETRY.admit() {
                tracing::info!(
                    pending = pending.len(),
                    capacity = pending.capacity(),
                    "QUIC handshakes under pressure: answering unvalidated Initials with a Retry"
                );
            }
            if let Err(error) = incoming.retry() {
                tracing::debug!("QUIC retry not sent: {error}");
            }
            continue;
        }
        let progress = if validated {
            Progress::Answered
        } else {
            Progress::Silent
        };
        let admitted = pending.admit(progress);
        if admitted.evicted_one {
            log_eviction(ListenerKind::Quic, &pending);
        }
        let node = node.clone();
        tokio::spawn(async move {
            handshake_quic(node, incoming, admitted.slot).await;
        });
    }
}

async fn handshake_quic(node: Arc<NodeState>, incoming: quinn::Incoming, slot: Slot) {
    let remote = incoming.remote_address();
    let connecting = match incoming.accept() {
        Ok(connecting) => connecting,
        Err(error) => {
            tracing::debug!(%remote, "QUIC connection not accepted: {error}");
            return;
        }
    };
    let timeout = node.config.limits.handshake_timeout;
    // Evicted or timed out: dropping `connecting` closes the connection.
    let connection = match slot
        .unless_evicted(tokio::time::timeout(timeout, connecting))
        .await
    {
        Some(Ok(Ok(connection))) => connection,
        Some(Ok(Err(error))) => {
            tracing::debug!(%remote, "QUIC handshake failed: {error}");
            return;
        }
        Some(Err(_)) => {
            tracing::debug!(%remote, "QUIC handshake timed out");
            return;
        }
        None => {
            tracing::debug!(%remote, "QUIC handshake evicted by a newer one");
            return;
        }
    };
    let alpn = connection
        .handshake_data()
        .and_then(|data| data.downcast::<quinn::crypto::rustls::HandshakeData>().ok())
        .and_then(|data| data.protocol)
        .and_then(|bytes| Alpn::from_wire(&bytes));
    let Some(alpn) = alpn else {
        // rustls enforces ALPN on QUIC, so only a broken peer gets here.
        connection.close(close::PROTOCOL_ERROR.into(), b"no ALPN");
        return;
    };
    let peer = connection
        .peer_identity()
        .and_then(|identity| identity.downcast::<Vec<CertificateDer<'static>>>().ok())
        .and_then(|chain| chain.first().map(|leaf| Fingerprint::of_certificate(leaf)));
    drop(slot);
    node.dispatch(Connection::from_quic(connection, alpn, peer))
        .await;
}

async fn accept_tcp(node: Arc<NodeState>) {
    let pending = node.pending_handshakes[1].clone();
    loop {
        match node.tcp.accept().await {
            Ok((stream, remote)) => {
                if node.is_shutting_down() {
                    continue;
                }
                let slot = admit_handshake(&stream, &pending, ListenerKind::Tcp);
                let _ = stream.set_nodelay(true);
                let node = node.clone();
                tokio::spawn(async move {
                    handshake_tcp(node, stream, remote, slot, None).await;
                });
            }
            Err(error) => {
                // Out of file descriptors and the like: back off instead of
                // spinning, and keep serving existing connections.
                if TCP_ACCEPT_FAILED.admit() {
                    tracing::warn!("TCP accept failed: {error}");
                }
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
        }
    }
}

/// A plain listener has no handshake: each accepted stream is a connection of
/// its one protocol at once, admitted under the same caps as any other. The
/// protocol bounds what an unauthenticated peer may do (SSH: a login grace
/// time), as it does for its TLS connections. A TLS one runs the handshake
/// as the node's port does, then hands over its one protocol's connection.
async fn accept_plain(node: Arc<NodeState>, index: usize) {
    let Some(plain) = node.plain.get(index) else {
        return;
    };
    let pending = node.pending_handshakes[1].clone();
    loop {
        match plain.listener.accept().await {
            Ok((stream, remote)) => {
                if node.is_shutting_down() {
                    continue;
                }
                let _ = stream.set_nodelay(true);
                if plain.tls {
                    let slot = admit_handshake(&stream, &pending, ListenerKind::Plain(index));
                    let node = node.clone();
                    let alpn = plain.alpn.clone();
                    tokio::spawn(async move {
                        handshake_tcp(node, stream, remote, slot, Some(alpn)).await;
                    });
                    continue;
                }
                node.dispatch(Connection::from_stream(
                    stream,
                    plain.alpn.clone(),
                    remote,
                    None,
                ))
                .await;
            }
            Err(error) => {
                if TCP_ACCEPT_FAILED.admit() {
                    tracing::warn!(alpn = %plain.alpn, "TCP accept failed: {error}");
                }
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
        }
    }
}

/// A place in `pending` for `stream`'s TLS handshake, evicting the oldest
/// (silent ones first) when the table is full.
fn admit_handshake(
    stream: &tokio::net::TcpStream,
    pending: &Arc<PendingHandshakes>,
    kind: ListenerKind,
) -> Slot {
    // A real client's ClientHello is often here already (always when the
    // accept loop lags behind a flood): such a handshake must not be taken
    // for a silent one and evicted.
    let progress = if has_spoken(stream) {
        Progress::Answered
    } else {
        Progress::Silent
    };
    let admitted = pending.admit(progress);
    if admitted.evicted_one {
        log_eviction(kind, pending);
    }
    admitted.slot
}

/// Whether the peer has sent anything yet, without waiting for it or
/// consuming it (the socket is non-blocking).
fn has_spoken(stream: &tokio::net::TcpStream) -> bool {
    let mut first = [std::mem::MaybeUninit::uninit()];
    matches!(socket2::SockRef::from(stream).peek(&mut first), Ok(read) if read > 0)
}

/// The TLS handshake of a TCP connection, then its dispatch: to the protocol
/// of the negotiated ALPN, or to `dedicated`'s on a listener of its own.
async fn handshake_tcp(
    node: Arc<NodeState>,
    stream: tokio::net::TcpStream,
    remote: std::net::SocketAddr,
    slot: Slot,
    dedicated: Option<Alpn>,
) {
    let timeout = node.config.limits.handshake_timeout;
    let handshake = async {
        // The first bytes (a ClientHello, from any real client) move this
        // handshake behind every silent one in the eviction order. A peek,
        // not `readable()`, which may report a socket that has nothing.
        if stream.peek(&mut [0u8]).await.is_ok_and(|read| read > 0) {
            slot.answered();
        }
        node.tls_acceptor.accept(stream).await
    };
    let tls = match slot
        .unless_evicted(tokio::time::timeout(timeout, handshake))
        .await
    {
        Some(Ok(Ok(tls))) => tls,
        Some(Ok(Err(error))) => {
            tracing::debug!(%remote, "TLS handshake failed: {error}");
            return;
        }
        Some(Err(_)) => {
            tracing::debug!(%remote, "TLS handshake timed out");
            return;
        }
        None => {
            tracing::debug!(%remote, "TLS handshake evicted by a newer one");
            return;
        }
    };
    drop(slot);
    let (_, session) = tls.get_ref();
    let negotiated = session.alpn_protocol().and_then(Alpn::from_wire);
    let peer = session
        .peer_certificates()
        .and_then(|chain| chain.first().map(|leaf| Fingerprint::of_certificate(leaf)));
    let chosen = match dedicated {
        // A listener of its own serves its protocol to clients that offered
        // its ALPN or none; one that wanted another is at the wrong port.
        Some(alpn) => negotiated
            .as_ref()
            .is_none_or(|n| *n == alpn)
            .then_some(alpn),
        // docs/protocol.md §2 rule 4: a client that offers no ALPN is served
        // by the protocol that claims such clients, if one does.
        None => negotiated.or_else(|| node.without_alpn.clone()),
    };
    let Some(alpn) = chosen else {
        tracing::debug!(%remote, "no protocol here for the TLS client's ALPN; closing");
        let mut tls = tls;
        let _ = tokio::io::AsyncWriteExt::shutdown(&mut tls).await;
        return;
    };
    // rustls hands out one record (at most 16 KiB) per read: reading every
    // record that is ready at once gives a bulk upload a handler's buffer
    // full per pass instead of a pass per record.
    let stream = Filling::new(tls);
    node.dispatch(Connection::from_stream(stream, alpn, remote, peer))
        .await;
}
