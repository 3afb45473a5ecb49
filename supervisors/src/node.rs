//! [`Node`]: registers the protocols, binds the shared port and starts the
//! supervision tree.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::Arc;

use alknet_core::service::ErasedService;
use alknet_core::tls::{self, ServerIdentity};
use alknet_core::{
    Alpn, CertificatePolicy, ErasedHandler, IdentityProvider, NoIdentities, NodeConfig,
    TransportKind,
};
use ractor::Actor;
use tokio::sync::{mpsc, watch};

use crate::error::StartError;
use crate::handle::NodeHandle;
use crate::messages::RootMsg;
use crate::protocol_entry::ProtocolEntry;
use crate::root::RootSupervisor;
use crate::shutdown::run_shutdown;
use crate::state::{NodeParts, NodeState, PlainSocket};

/// Entry point: start a node with [`Node::builder`].
pub struct Node;

impl Node {
    /// A node on `config` (already validated) presenting `tls`, serving no
    /// protocol yet and resolving no identities.
    pub fn builder(config: NodeConfig, tls: ServerIdentity) -> NodeBuilder {
        NodeBuilder {
            config,
            tls,
            identities: Arc::new(NoIdentities),
            handlers: Vec::new(),
            plain: Vec::new(),
            services: Vec::new(),
        }
    }
}

/// A node being assembled; [`NodeBuilder::start`] runs it.
#[must_use = "a node does nothing until it is started"]
pub struct NodeBuilder {
    config: NodeConfig,
    tls: ServerIdentity,
    identities: Arc<dyn IdentityProvider>,
    handlers: Vec<ErasedHandler>,
    /// Listeners of their own: ALPN, socket, and whether TLS runs on it.
    plain: Vec<(&'static str, std::net::TcpListener, bool)>,
    services: Vec<ErasedService>,
}

impl NodeBuilder {
    /// Resolves client certificates to identities.
    pub fn identities(mut self, identities: Arc<dyn IdentityProvider>) -> Self {
        self.identities = identities;
        self
    }

    /// Serves a protocol. When a client offers several served ALPNs, the
    /// protocol registered first wins, then the handler's own ALPN order.
    pub fn protocol(mut self, handler: impl Into<ErasedHandler>) -> Self {
        self.handlers.push(handler.into());
        self
    }

    /// Serves each of `handlers` (none for `None`), as [`Self::protocol`].
    pub fn protocols<H: Into<ErasedHandler>>(self, handlers: impl IntoIterator<Item = H>) -> Self {
        handlers.into_iter().fold(self, Self::protocol)
    }

    /// Also accepts plain TCP connections (no TLS) on `listener`, each a
    /// connection of the protocol serving `alpn`, under that protocol's
    /// supervisor and caps. For protocols with their own authentication that
    /// some clients must reach directly (SSH for `ssh-keyscan`). The caller
    /// binds the socket, so an address in use is reported before anything
    /// starts.
    pub fn plain_listener(mut self, alpn: &'static str, listener: std::net::TcpListener) -> Self {
        self.plain.push((alpn, listener, false));
        self
    }

    /// Also accepts TCP+TLS connections on `listener`, each a connection of
    /// the protocol serving `alpn` whether the client offered that ALPN or
    /// none (a client offering only others is closed after the handshake),
    /// under that protocol's supervisor and caps. For protocols whose stock
    /// clients send no ALPN to a port of their own (DNS over TLS on 853).
    /// Handshakes are bounded as on the node's port, in its TCP table.
    pub fn tls_listener(mut self, alpn: &'static str, listener: std::net::TcpListener) -> Self {
        self.plain.push((alpn, listener, true));
        self
    }

    /// Adds each of `listeners`, as [`Self::plain_listener`].
    pub fn plain_listeners(
        self,
        listeners: impl IntoIterator<Item = (&'static str, std::net::TcpListener)>,
    ) -> Self {
        listeners.into_iter().fold(self, |node, (alpn, listener)| {
            node.plain_listener(alpn, listener)
        })
    }

    /// Adds each of `listeners`, as [`Self::tls_listener`].
    pub fn tls_listeners(
        self,
        listeners: impl IntoIterator<Item = (&'static str, std::net::TcpListener)>,
    ) -> Self {
        listeners.into_iter().fold(self, |node, (alpn, listener)| {
            node.tls_listener(alpn, listener)
        })
    }

    /// Runs `service` for as long as the node runs, as the actor
    /// `service/<name>`, restarted when it fails (see
    /// [`alknet_core::service`]). Services start before any protocol.
    pub fn service(mut self, service: impl Into<ErasedService>) -> Self {
        self.services.push(service.into());
        self
    }

    /// Runs each of `services`, as [`Self::service`].
    pub fn services<S: Into<ErasedService>>(self, services: impl IntoIterator<Item = S>) -> Self {
        services.into_iter().fold(self, Self::service)
    }

    /// Binds the shared port, starts the supervision tree and begins
    /// accepting.
    pub async fn start(self) -> Result<NodeHandle, StartError> {
        let Self {
            config,
            tls: identity,
            identities,
            handlers,
            plain,
            services,
        } = self;
        let protocols = Registrations::of(&config, handlers)?;
        let plain = plain
            .into_iter()
            .map(|(alpn, listener, tls)| plain_socket(&protocols, alpn, listener, tls))
            .collect::<Result<Vec<_>, _>>()?;
        let identity = identity.presenting_the_node_to(&protocols.node_key);
        let quic_config = tls::quic_server_config(&identity, &protocols.quic)?;
        let tcp_config = Arc::new(tls::server_config(&identity, &protocols.tcp, false)?);
        let (udp, tcp) = bind_pair(config.listen)?;
        let local_addr = udp.local_addr().map_err(|source| StartError::Bind {
            addr: config.listen,
            source,
        })?;
        let endpoint = quinn::Endpoint::new(
            alknet_core::udp::endpoint_config(),
            Some(quic_config),
            udp,
            Arc::new(alknet_core::quic_runtime::QuicRuntime),
        )
        .map_err(|source| StartError::Bind {
            addr: local_addr,
            source,
        })?;
        let tcp = tokio::net::TcpListener::from_std(tcp).map_err(|source| StartError::Bind {
            addr: local_addr,
            source,
        })?;

        let (shutdown_tx, shutdown_rx) = mpsc::unbounded_channel();
        let node = Arc::new(NodeState::new(NodeParts {
            config,
            identities,
            endpoint,
            tcp,
            tls_acceptor: tokio_rustls::TlsAcceptor::from(tcp_config),
            without_alpn: protocols.without_alpn,
            plain,
            services,
            by_alpn: protocols.by_alpn,
            shutdown_requests: shutdown_tx.clone(),
        }));
        let (root, _) = Actor::spawn(None, RootSupervisor, node.clone())
            .await
            .map_err(|e| StartError::Spawn(e.to_string()))?;
        // The root starts its children in post_start; wait until every one is
        // up so the caller can connect as soon as `start` returns.
        let (ready_tx, ready_rx) = tokio::sync::oneshot::channel();
        root.cast(RootMsg::NotifyReady(ready_tx))
            .map_err(|e| StartError::Spawn(e.to_string()))?;
        match ready_rx.await {
            Ok(Ok(())) => {}
            Ok(Err(e)) => return Err(StartError::Spawn(e)),
            Err(_) => return Err(StartError::Spawn("root supervisor stopped".into())),
        }

        let (done_tx, done_rx) = watch::channel(None);
        tokio::spawn(run_shutdown(
            node.clone(),
            root.clone(),
            shutdown_rx,
            done_tx,
        ));
        Ok(NodeHandle {
            node,
            root,
            local_addr,
            alpns: protocols.all,
            shutdown_tx,
            done: done_rx,
        })
    }
}

fn plain_socket(
    protocols: &Registrations,
    alpn: &'static str,
    listener: std::net::TcpListener,
    tls: bool,
) -> Result<PlainSocket, StartError> {
    let alpn = Alpn::new(alpn);
    if !protocols.by_alpn.contains_key(&alpn) {
        return Err(StartError::PlainListenerWithoutProtocol(alpn.to_string()));
    }
    let addr = listener
        .local_addr()
        .unwrap_or_else(|_| SocketAddr::from(([0, 0, 0, 0], 0)));
    let bind_error = |source| StartError::Bind { addr, source };
    listener.set_nonblocking(true).map_err(bind_error)?;
    let listener = tokio::net::TcpListener::from_std(listener).map_err(bind_error)?;
    Ok(PlainSocket {
        alpn,
        listener,
        tls,
    })
}

/// The registered protocols, checked, and the ALPN lists the listeners need.
struct Registrations {
    by_alpn: HashMap<Alpn, Arc<ProtocolEntry>>,
    /// Every ALPN, most preferred first.
    all: Vec<Alpn>,
    /// Those advertised over QUIC, and over TCP+TLS.
    quic: Vec<Alpn>,
    tcp: Vec<Alpn>,
    /// Those whose clients are shown the node certificate.
    node_key: Vec<Alpn>,
    without_alpn: Option<Alpn>,
}

impl Registrations {
    fn of(config: &NodeConfig, handlers: Vec<ErasedHandler>) -> Result<Self, StartError> {
        let mut registered = Self {
            by_alpn: HashMap::new(),
            all: Vec::new(),
            quic: Vec::new(),
            tcp: Vec::new(),
            node_key: Vec::new(),
            without_alpn: None,
        };
        for handler in handlers {
            let protocol = handler.protocol();
            let name = protocol.tree_name();
            let alpns = protocol
                .alpns
                .iter()
                .map(|a| {
                    Alpn::from_wire(a.as_bytes())
                        .ok_or_else(|| StartError::InvalidAlpn(name.clone()))
                })
                .collect::<Result<Vec<_>, _>>()?;
            if alpns.is_empty() {
                return Err(StartError::InvalidAlpn(name));
            }
            if let Some(without) = protocol.without_alpn {
                let own = alpns.iter().any(|a| a.as_str() == without);
                let over_tcp = protocol.transports.includes(TransportKind::Tls);
                if !own || !over_tcp || registered.without_alpn.is_some() {
                    return Err(StartError::WithoutAlpn(name));
                }
                registered.without_alpn = Some(Alpn::new(without));
            }
            let cap = config.max_connections_for(protocol.primary_alpn());
            let entry = Arc::new(ProtocolEntry::new(handler, cap));
            for alpn in alpns {
                if registered
                    .by_alpn
                    .insert(alpn.clone(), entry.clone())
                    .is_some()
                {
                    return Err(StartError::DuplicateAlpn(alpn.to_string()));
                }
                if protocol.transports.includes(TransportKind::Quic) {
                    registered.quic.push(alpn.clone());
                }
                if protocol.transports.includes(TransportKind::Tls) {
                    registered.tcp.push(alpn.clone());
                }
                if protocol.certificate == CertificatePolicy::NodeKey {
                    registered.node_key.push(alpn.clone());
                }
                registered.all.push(alpn);
            }
        }
        // An override for a protocol nobody serves is a typo or a leftover:
        // say so instead of ignoring it.
        if let Some(name) = config.protocols.keys().find(|name| {
            !registered
                .by_alpn
                .keys()
                .any(|a| a.as_str() == name.as_str())
        }) {
            return Err(StartError::UnknownProtocol(name.clone()));
        }
        Ok(registered)
    }
}

/// Binds UDP and TCP to the same port number. With port 0, the port the
/// system picks for UDP is tried for TCP, a few times if it is taken.
fn bind_pair(addr: SocketAddr) -> Result<(std::net::UdpSocket, std::net::TcpListener), StartError> {
    let bind_err = |source| StartError::Bind { addr, source };
    let attempts = if addr.port() == 0 { 20 } else { 1 };
    let mut last_error = None;
    for _ in 0..attempts {
        let (udp, buffers) = alknet_core::udp::bind(addr).map_err(bind_err)?;
        let port = udp.local_addr().map_err(bind_err)?.port();
        match std::net::TcpListener::bind(SocketAddr::new(addr.ip(), port)) {
            Ok(tcp) => {
                tcp.set_nonblocking(true).map_err(bind_err)?;
                if buffers.receive_is_short() {
                    tracing::warn!(
                        granted = buffers.receive,
                        requested = alknet_core::udp::REQUESTED,
                        "the kernel capped the QUIC socket's receive buffer: bursts \
                         will drop datagrams and slow uploads; raise it with \
                         `sysctl -w net.core.rmem_max={}`",
                        alknet_core::udp::REQUESTED
                    );
                }
                if buffers.send_is_short() {
                    tracing::warn!(
                        granted = buffers.send,
                        requested = alknet_core::udp::REQUESTED,
                        "the kernel capped the QUIC socket's send buffer: a sender \
                         that fills it pauses, which costs throughput above a few \
                         Gbit/s; raise it with `sysctl -w net.core.wmem_max={}`",
                        alknet_core::udp::REQUESTED
                    );
                }
                return Ok((udp, tcp));
            }
            Err(error) => last_error = Some(error),
        }
    }
    Err(bind_err(
        last_error.unwrap_or_else(|| std::io::Error::other("no port")),
    ))
}
