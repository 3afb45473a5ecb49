//! The two listeners: QUIC on UDP and TLS on TCP, same port number.
//!
//! A listener accepts, runs the TLS handshake far enough to know the ALPN and
//! the client certificate (each handshake in its own task, bounded by the
//! handshake timeout), and hands the connection to the router. An offered ALPN
//! that no handler serves fails inside rustls with `no_application_protocol`
//! (QUIC: CRYPTO_ERROR 0x0178) — the listener never sees such a connection.
//!
//! The sockets themselves belong to the node, not to the listener actors: a
//! restarted listener resumes accepting on the same socket, and connections
//! already established never notice.

use std::sync::Arc;
use std::time::Duration;

use alknet_core::{Alpn, Connection, Fingerprint};
use ractor::{Actor, ActorProcessingErr, ActorRef};
use rustls::pki_types::CertificateDer;
use tokio_util::task::AbortOnDropHandle;

use crate::directory::{ActorInfo, ActorKind, DirectoryEntry};
use crate::node::Shared;

/// Which socket a listener serves.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum ListenerKind {
    Quic,
    Tcp,
}

impl ListenerKind {
    pub(crate) fn name(self) -> &'static str {
        match self {
            Self::Quic => "listener/quic",
            Self::Tcp => "listener/tcp",
        }
    }
}

pub(crate) struct Listener;

pub(crate) struct ListenerArgs {
    pub(crate) shared: Arc<Shared>,
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
        let registration = args.shared.directory.register(
            myself.get_id(),
            ActorInfo::new(args.kind.name(), ActorKind::Listener, args.restarts),
        );
        let shared = args.shared.clone();
        let accept_loop = match args.kind {
            ListenerKind::Quic => tokio::spawn(accept_quic(shared)),
            ListenerKind::Tcp => tokio::spawn(accept_tcp(shared)),
        };
        Ok(ListenerState {
            _accept_loop: AbortOnDropHandle::new(accept_loop),
            _registration: registration,
        })
    }
}

async fn accept_quic(shared: Arc<Shared>) {
    let pending = shared.pending_handshakes[0].clone();
    while let Some(incoming) = shared.endpoint.accept().await {
        if shared.is_shutting_down() {
            incoming.refuse();
            continue;
        }
        let Ok(permit) = pending.clone().try_acquire_owned() else {
            tracing::debug!(remote = %incoming.remote_address(), "too many pending handshakes; refused");
            incoming.refuse();
            continue;
        };
        let shared = shared.clone();
        tokio::spawn(async move {
            handshake_quic(shared, incoming, permit).await;
        });
    }
}

async fn handshake_quic(
    shared: Arc<Shared>,
    incoming: quinn::Incoming,
    permit: tokio::sync::OwnedSemaphorePermit,
) {
    let remote = incoming.remote_address();
    let connecting = match incoming.accept() {
        Ok(connecting) => connecting,
        Err(error) => {
            tracing::debug!(%remote, "QUIC connection not accepted: {error}");
            return;
        }
    };
    let timeout = shared.config.limits.handshake_timeout;
    let connection = match tokio::time::timeout(timeout, connecting).await {
        Ok(Ok(connection)) => connection,
        Ok(Err(error)) => {
            tracing::debug!(%remote, "QUIC handshake failed: {error}");
            return;
        }
        Err(_) => {
            tracing::debug!(%remote, "QUIC handshake timed out");
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
        connection.close(crate::close_code::PROTOCOL_ERROR.into(), b"no ALPN");
        return;
    };
    let peer = connection
        .peer_identity()
        .and_then(|identity| identity.downcast::<Vec<CertificateDer<'static>>>().ok())
        .and_then(|chain| chain.first().map(|leaf| Fingerprint::of_certificate(leaf)));
    drop(permit);
    shared
        .dispatch(Connection::from_quic(connection, alpn, peer))
        .await;
}

async fn accept_tcp(shared: Arc<Shared>) {
    let pending = shared.pending_handshakes[1].clone();
    loop {
        match shared.tcp.accept().await {
            Ok((stream, remote)) => {
                if shared.is_shutting_down() {
                    continue;
                }
                let Ok(permit) = pending.clone().try_acquire_owned() else {
                    tracing::debug!(%remote, "too many pending handshakes; closed");
                    continue;
                };
                let _ = stream.set_nodelay(true);
                let shared = shared.clone();
                tokio::spawn(async move {
                    handshake_tcp(shared, stream, remote, permit).await;
                });
            }
            Err(error) => {
                // Out of file descriptors and the like: back off instead of
                // spinning, and keep serving existing connections.
                tracing::warn!("TCP accept failed: {error}");
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
        }
    }
}

async fn handshake_tcp(
    shared: Arc<Shared>,
    stream: tokio::net::TcpStream,
    remote: std::net::SocketAddr,
    permit: tokio::sync::OwnedSemaphorePermit,
) {
    let timeout = shared.config.limits.handshake_timeout;
    let tls = match tokio::time::timeout(timeout, shared.tls_acceptor.accept(stream)).await {
        Ok(Ok(tls)) => tls,
        Ok(Err(error)) => {
            tracing::debug!(%remote, "TLS handshake failed: {error}");
            return;
        }
        Err(_) => {
            tracing::debug!(%remote, "TLS handshake timed out");
            return;
        }
    };
    drop(permit);
    let (_, session) = tls.get_ref();
    let negotiated = session.alpn_protocol().and_then(Alpn::from_wire);
    let peer = session
        .peer_certificates()
        .and_then(|chain| chain.first().map(|leaf| Fingerprint::of_certificate(leaf)));
    // PROTOCOL.md §2 rule 4: no ALPN extension means HTTP/1.1 when it is served.
    let alpn = match negotiated {
        Some(alpn) => alpn,
        None => match shared.protocol(&Alpn::new(Alpn::HTTP_1_1)) {
            Some(_) => Alpn::new(Alpn::HTTP_1_1),
            None => {
                tracing::debug!(%remote, "TLS client sent no ALPN; closing");
                let mut tls = tls;
                let _ = tokio::io::AsyncWriteExt::shutdown(&mut tls).await;
                return;
            }
        },
    };
    shared
        .dispatch(Connection::from_stream(tls, alpn, remote, peer))
        .await;
}
