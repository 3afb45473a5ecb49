//! [`NodeState`]: what every actor of one node shares — configuration,
//! sockets, registered protocols, the directory and the admission counters.
//!
//! It depends only on leaf modules, so every actor can hold it without the
//! actors depending on each other.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, PoisonError, RwLock};
use std::time::{Duration, Instant};

use alknet_core::close;
use alknet_core::service::ErasedService;
use alknet_core::{Alpn, Connection, IdentityProvider, NodeConfig};
use ractor::ActorRef;
use tokio::sync::mpsc;

use crate::admission::Admission;
use crate::directory::ActorDirectory;
use crate::messages::{RouterMsg, ShutdownReason};
use crate::pending::PendingHandshakes;
use crate::protocol_entry::ProtocolEntry;

/// State every actor of the node shares.
pub(crate) struct NodeState {
    pub(crate) config: NodeConfig,
    pub(crate) directory: Arc<ActorDirectory>,
    pub(crate) admission: Arc<Admission>,
    pub(crate) identities: Arc<dyn IdentityProvider>,
    pub(crate) endpoint: quinn::Endpoint,
    pub(crate) tcp: tokio::net::TcpListener,
    pub(crate) tls_acceptor: tokio_rustls::TlsAcceptor,
    /// Handshakes in progress, per listener (QUIC, TCP).
    pub(crate) pending_handshakes: [Arc<PendingHandshakes>; 2],
    /// The ALPN a TCP+TLS client that offers none is served as, if any.
    pub(crate) without_alpn: Option<Alpn>,
    /// Plain TCP listeners, each serving one protocol without TLS.
    pub(crate) plain: Vec<PlainSocket>,
    /// Long-lived services, each run by its own actor.
    pub(crate) services: Vec<ErasedService>,
    /// Every registered protocol once, by tree name.
    entries: Vec<Arc<ProtocolEntry>>,
    by_alpn: HashMap<Alpn, Arc<ProtocolEntry>>,
    router: RwLock<Option<ActorRef<RouterMsg>>>,
    shutting_down: AtomicBool,
    shutdown_requests: mpsc::UnboundedSender<ShutdownReason>,
}

/// The parts of [`NodeState`] that [`crate::Node`] prepares.
pub(crate) struct NodeParts {
    pub(crate) config: NodeConfig,
    pub(crate) identities: Arc<dyn IdentityProvider>,
    pub(crate) endpoint: quinn::Endpoint,
    pub(crate) tcp: tokio::net::TcpListener,
    pub(crate) tls_acceptor: tokio_rustls::TlsAcceptor,
    pub(crate) without_alpn: Option<Alpn>,
    pub(crate) plain: Vec<PlainSocket>,
    pub(crate) services: Vec<ErasedService>,
    pub(crate) by_alpn: HashMap<Alpn, Arc<ProtocolEntry>>,
    pub(crate) shutdown_requests: mpsc::UnboundedSender<ShutdownReason>,
}

/// A TCP listener of its own and the protocol its connections are: plain
/// (no TLS), or TLS whatever ALPN the client offers, if any.
pub(crate) struct PlainSocket {
    pub(crate) alpn: Alpn,
    pub(crate) listener: tokio::net::TcpListener,
    pub(crate) tls: bool,
}

impl NodeState {
    pub(crate) fn new(parts: NodeParts) -> Self {
        let mut entries = Vec::<Arc<ProtocolEntry>>::new();
        for entry in parts.by_alpn.values() {
            if !entries.iter().any(|e| Arc::ptr_eq(e, entry)) {
                entries.push(entry.clone());
            }
        }
        entries.sort_by(|a, b| a.supervisor_name.cmp(&b.supervisor_name));
        let pending = parts.config.limits.max_pending_handshakes;
        Self {
            admission: Admission::new(parts.config.limits.max_connections),
            config: parts.config,
            directory: Arc::new(ActorDirectory::default()),
            identities: parts.identities,
            endpoint: parts.endpoint,
            tcp: parts.tcp,
            tls_acceptor: parts.tls_acceptor,
            pending_handshakes: [
                PendingHandshakes::new(pending),
                PendingHandshakes::new(pending),
            ],
            without_alpn: parts.without_alpn,
            plain: parts.plain,
            services: parts.services,
            entries,
            by_alpn: parts.by_alpn,
            router: RwLock::new(None),
            shutting_down: AtomicBool::new(false),
            shutdown_requests: parts.shutdown_requests,
        }
    }

    /// The protocol serving `alpn`.
    pub(crate) fn protocol(&self, alpn: &Alpn) -> Option<&Arc<ProtocolEntry>> {
        self.by_alpn.get(alpn)
    }

    /// Every registered protocol once, by tree name.
    pub(crate) fn protocols(&self) -> &[Arc<ProtocolEntry>] {
        &self.entries
    }

    pub(crate) fn is_shutting_down(&self) -> bool {
        self.shutting_down.load(Ordering::Acquire)
    }

    /// From now on nothing is accepted and nothing restarted.
    pub(crate) fn begin_shutdown(&self) {
        self.shutting_down.store(true, Ordering::Release);
    }

    pub(crate) fn set_router(&self, router: Option<ActorRef<RouterMsg>>) {
        *self.router.write().unwrap_or_else(PoisonError::into_inner) = router;
    }

    fn router(&self) -> Option<ActorRef<RouterMsg>> {
        self.router
            .read()
            .unwrap_or_else(PoisonError::into_inner)
            .clone()
    }

    /// Hands a negotiated connection to the router. While the router restarts
    /// (a few milliseconds) the connection waits briefly instead of failing.
    pub(crate) async fn dispatch(&self, connection: Connection) {
        let deadline = Instant::now() + Duration::from_secs(1);
        let mut connection = connection;
        loop {
            if let Some(router) = self.router() {
                match router.cast(RouterMsg::Route(connection)) {
                    Ok(()) => return,
                    Err(ractor::MessagingErr::SendErr(RouterMsg::Route(returned))) => {
                        connection = returned;
                    }
                    Err(_) => return,
                }
            }
            if Instant::now() >= deadline || self.is_shutting_down() {
                connection.close(close::REFUSED, "router unavailable");
                return;
            }
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
    }

    /// A permanent child failed past its restart intensity: stop the node.
    pub(crate) fn escalate(&self, actor: String) {
        self.begin_shutdown();
        let _ = self
            .shutdown_requests
            .send(ShutdownReason::Escalated { actor });
    }
}
