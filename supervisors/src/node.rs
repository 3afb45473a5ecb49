//! The node: binds the shared port, starts the root supervisor and runs the
//! ordered shutdown.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, PoisonError, RwLock};
use std::time::{Duration, Instant};

use alknet_core::tls::{self, ServerIdentity};
use alknet_core::{Alpn, Connection, IdentityProvider, NodeConfig, ProtocolHandler};
use ractor::{
    Actor, ActorCell, ActorId, ActorProcessingErr, ActorRef, RpcReplyPort, SupervisionEvent,
};
use tokio::sync::{mpsc, watch};

use crate::admission::{Admission, AdmissionStats};
use crate::directory::{ActorDirectory, ActorInfo, ActorKind, ActorStatus, DirectoryEntry};
use crate::listener::{Listener, ListenerArgs, ListenerKind};
use crate::pending::PendingHandshakes;
use crate::policy::{ExitKind, RestartDecision, RestartIntensity, RestartTracker, RestartType};
use crate::protocol::{ProtocolArgs, ProtocolEntry, ProtocolMsg, ProtocolSupervisor};
use crate::router::{Router, RouterArgs, RouterMsg};
use crate::tree::{self, TreeNode};
use crate::{SHUTDOWN_REASON, close_code};

/// What a node is started with.
pub struct NodeOptions {
    /// The configuration (already validated).
    pub config: NodeConfig,
    /// The protocol handlers; their ALPNs are what the node advertises.
    pub handlers: Vec<Arc<dyn ProtocolHandler>>,
    /// Resolves client certificates (and later tokens) to identities.
    pub identities: Arc<dyn IdentityProvider>,
    /// The certificates the listeners present.
    pub tls: ServerIdentity,
}

/// Why a node could not start.
#[derive(Debug, thiserror::Error)]
pub enum StartError {
    /// Two handlers claim the same ALPN.
    #[error("ALPN `{0}` is served by two handlers")]
    DuplicateAlpn(String),
    /// A configuration override names a protocol this node does not know.
    #[error("configuration key `protocols.\"{0}\"`: no protocol with this ALPN exists")]
    UnknownProtocol(String),
    /// A socket could not be bound.
    #[error("cannot listen on {addr}: {source}")]
    Bind {
        /// The address.
        addr: SocketAddr,
        /// Why.
        source: std::io::Error,
    },
    /// TLS configuration failed.
    #[error(transparent)]
    Tls(#[from] tls::TlsError),
    /// The root supervisor failed to start.
    #[error("cannot start the supervision tree: {0}")]
    Spawn(String),
}

/// How a node ended.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ShutdownReason {
    /// Shutdown was requested (signal, [`NodeHandle::shutdown`]).
    Requested,
    /// A permanent actor exceeded its restart intensity.
    Escalated {
        /// The actor's tree name.
        actor: String,
    },
}

/// State every actor of the node shares.
pub(crate) struct Shared {
    pub(crate) config: NodeConfig,
    pub(crate) directory: Arc<ActorDirectory>,
    pub(crate) admission: Arc<Admission>,
    pub(crate) identities: Arc<dyn IdentityProvider>,
    pub(crate) endpoint: quinn::Endpoint,
    pub(crate) tcp: tokio::net::TcpListener,
    pub(crate) tls_acceptor: tokio_rustls::TlsAcceptor,
    /// Handshakes in progress, per listener (QUIC, TCP).
    pub(crate) pending_handshakes: [Arc<PendingHandshakes>; 2],
    protocols: HashMap<Alpn, Arc<ProtocolEntry>>,
    router: RwLock<Option<ActorRef<RouterMsg>>>,
    shutting_down: AtomicBool,
    shutdown_requests: mpsc::UnboundedSender<ShutdownReason>,
}

impl Shared {
    pub(crate) fn protocol(&self, alpn: &Alpn) -> Option<&Arc<ProtocolEntry>> {
        self.protocols.get(alpn)
    }

    pub(crate) fn is_shutting_down(&self) -> bool {
        self.shutting_down.load(Ordering::Acquire)
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
                connection.close(close_code::REFUSED, "router unavailable");
                return;
            }
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
    }

    fn unique_entries(&self) -> Vec<Arc<ProtocolEntry>> {
        let mut seen = Vec::<Arc<ProtocolEntry>>::new();
        for entry in self.protocols.values() {
            if !seen.iter().any(|e| Arc::ptr_eq(e, entry)) {
                seen.push(entry.clone());
            }
        }
        seen.sort_by(|a, b| a.supervisor_name.cmp(&b.supervisor_name));
        seen
    }

    fn escalate(&self, actor: String) {
        self.shutting_down.store(true, Ordering::Release);
        let _ = self
            .shutdown_requests
            .send(ShutdownReason::Escalated { actor });
    }
}

/// Entry point: start a node.
pub struct Node;

impl Node {
    /// Binds the shared port, starts the supervision tree and begins accepting.
    pub async fn start(options: NodeOptions) -> Result<NodeHandle, StartError> {
        let NodeOptions {
            config,
            handlers,
            identities,
            tls: identity,
        } = options;
        let mut protocols = HashMap::new();
        for handler in handlers {
            let alpns = handler.alpns();
            let Some(primary) = alpns.first() else {
                continue;
            };
            let cap = config.max_connections_for(primary.as_str());
            let entry = Arc::new(ProtocolEntry::new(
                handler.clone(),
                primary.to_string(),
                cap,
            ));
            for alpn in alpns {
                if protocols.insert(alpn.clone(), entry.clone()).is_some() {
                    return Err(StartError::DuplicateAlpn(alpn.to_string()));
                }
            }
        }
        for name in config.protocols.keys() {
            let served = protocols.keys().any(|a| a.as_str() == name);
            if !served && !Alpn::TABLE.contains(&name.as_str()) {
                return Err(StartError::UnknownProtocol(name.clone()));
            }
        }
        let mut alpns: Vec<Alpn> = protocols.keys().cloned().collect();
        Alpn::sort_by_preference(&mut alpns);

        let quic_config = tls::quic_server_config(&identity, &alpns)?;
        let tcp_config = Arc::new(tls::server_config(&identity, &alpns, false)?);
        let (udp, tcp) = bind_pair(config.listen)?;
        let local_addr = udp.local_addr().map_err(|source| StartError::Bind {
            addr: config.listen,
            source,
        })?;
        let endpoint = quinn::Endpoint::new(
            quinn::EndpointConfig::default(),
            Some(quic_config),
            udp,
            Arc::new(quinn::TokioRuntime),
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
        let pending = config.limits.max_pending_handshakes;
        let shared = Arc::new(Shared {
            admission: Admission::new(config.limits.max_connections),
            config,
            directory: Arc::new(ActorDirectory::default()),
            identities,
            endpoint,
            tcp,
            tls_acceptor: tokio_rustls::TlsAcceptor::from(tcp_config),
            pending_handshakes: [
                PendingHandshakes::new(pending),
                PendingHandshakes::new(pending),
            ],
            protocols,
            router: RwLock::new(None),
            shutting_down: AtomicBool::new(false),
            shutdown_requests: shutdown_tx.clone(),
        });
        let (root, _) = Actor::spawn(None, RootSupervisor, shared.clone())
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
            shared.clone(),
            root.clone(),
            shutdown_rx,
            done_tx,
        ));
        Ok(NodeHandle {
            shared,
            root,
            local_addr,
            alpns,
            shutdown_tx,
            done: done_rx,
        })
    }
}

/// Binds UDP and TCP to the same port number. With port 0, the port the
/// system picks for UDP is tried for TCP, a few times if it is taken.
fn bind_pair(addr: SocketAddr) -> Result<(std::net::UdpSocket, std::net::TcpListener), StartError> {
    let bind_err = |source| StartError::Bind { addr, source };
    let attempts = if addr.port() == 0 { 20 } else { 1 };
    let mut last_error = None;
    for _ in 0..attempts {
        let udp = std::net::UdpSocket::bind(addr).map_err(bind_err)?;
        let port = udp.local_addr().map_err(bind_err)?.port();
        match std::net::TcpListener::bind(SocketAddr::new(addr.ip(), port)) {
            Ok(tcp) => {
                tcp.set_nonblocking(true).map_err(bind_err)?;
                return Ok((udp, tcp));
            }
            Err(error) => last_error = Some(error),
        }
    }
    Err(bind_err(
        last_error.unwrap_or_else(|| std::io::Error::other("no port")),
    ))
}

/// A running node.
#[derive(Clone)]
pub struct NodeHandle {
    shared: Arc<Shared>,
    root: ActorRef<RootMsg>,
    local_addr: SocketAddr,
    alpns: Vec<Alpn>,
    shutdown_tx: mpsc::UnboundedSender<ShutdownReason>,
    done: watch::Receiver<Option<ShutdownReason>>,
}

impl NodeHandle {
    /// The bound address (UDP and TCP share its port number).
    pub fn local_addr(&self) -> SocketAddr {
        self.local_addr
    }

    /// The advertised ALPNs, most preferred first.
    pub fn alpns(&self) -> &[Alpn] {
        &self.alpns
    }

    /// The live actor tree (`None` once the node has stopped).
    pub fn tree(&self) -> Option<TreeNode> {
        tree::snapshot(&self.root.get_cell(), &self.shared.directory)
    }

    /// Every live actor's self-description, for protocols that add actors.
    pub fn directory(&self) -> &Arc<ActorDirectory> {
        &self.shared.directory
    }

    /// Admission counters.
    pub fn admission_stats(&self) -> AdmissionStats {
        let mut stats = AdmissionStats {
            open: self.shared.admission.open(),
            refused: self.shared.admission.refused(),
            ..Default::default()
        };
        for entry in self.shared.unique_entries() {
            stats.protocols.insert(
                entry.alpn.clone(),
                (entry.gauge.open(), entry.gauge.refused()),
            );
        }
        stats
    }

    /// Starts the ordered shutdown; returns at once.
    pub fn shutdown(&self) {
        let _ = self.shutdown_tx.send(ShutdownReason::Requested);
    }

    /// Waits until the node has shut down, and says why.
    pub async fn wait(&self) -> ShutdownReason {
        let mut done = self.done.clone();
        match done.wait_for(Option::is_some).await {
            Ok(reason) => reason.clone().unwrap_or(ShutdownReason::Requested),
            Err(_) => ShutdownReason::Requested,
        }
    }

    /// Stops one connection or session actor by its tree id, closing its
    /// connection with `killed by operator` (QUIC code 0).
    pub async fn kill(&self, id: &str) -> Result<(), KillError> {
        let cell = find_actor(&self.root.get_cell(), id).ok_or(KillError::NotFound)?;
        let info = self
            .shared
            .directory
            .get(&cell.get_id())
            .ok_or(KillError::NotFound)?;
        // Connections and sessions say how they are stopped; supervisors,
        // listeners and the router cannot be.
        let Some(kill) = &info.kill else {
            return Err(KillError::NotAConnection);
        };
        kill();
        // "Stopped" means stopped: the caller must not be able to reach the
        // connection after this returns. Its close ran before the actor
        // stopped; a connection actor stops promptly, so the bound is only a
        // guard against a wedged handler.
        let _ = cell.wait(Some(KILL_WAIT)).await;
        Ok(())
    }

    /// Makes the protocol supervisor of `alpn` panic (test builds only).
    #[cfg(feature = "fault-injection")]
    pub fn inject_supervisor_panic(&self, alpn: &str) -> bool {
        self.shared
            .protocol(&Alpn::new(alpn))
            .and_then(|entry| entry.supervisor())
            .is_some_and(|sup| sup.send_message(ProtocolMsg::InjectPanic).is_ok())
    }

    /// Makes the protocol supervisor of `alpn` panic and waits until it has
    /// stopped, so that the caller's next connection meets the restart, not
    /// the supervisor that is about to die (test builds only). Returns the
    /// supervisor's tree name.
    #[cfg(feature = "fault-injection")]
    pub async fn crash_supervisor(&self, alpn: &str) -> Result<String, CrashError> {
        let entry = self
            .shared
            .protocol(&Alpn::new(alpn))
            .ok_or(CrashError::UnknownProtocol)?;
        let supervisor = entry.supervisor().ok_or(CrashError::Restarting)?;
        supervisor
            .send_message(ProtocolMsg::InjectPanic)
            .map_err(|_| CrashError::Restarting)?;
        let _ = supervisor.wait(Some(KILL_WAIT)).await;
        Ok(entry.supervisor_name.clone())
    }
}

/// Why [`NodeHandle::crash_supervisor`] did nothing.
#[cfg(feature = "fault-injection")]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum CrashError {
    /// No protocol of the node has that ALPN.
    UnknownProtocol,
    /// Its supervisor is down (restarting, or the node is stopping).
    Restarting,
}

/// How long [`NodeHandle::kill`] waits for its target to stop.
const KILL_WAIT: Duration = Duration::from_secs(5);

/// Why [`NodeHandle::kill`] refused.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum KillError {
    /// No live actor has that id.
    NotFound,
    /// The actor is a supervisor, listener, router or service.
    NotAConnection,
}

fn find_actor(cell: &ActorCell, id: &str) -> Option<ActorCell> {
    if cell.get_id().to_string() == id {
        return Some(cell.clone());
    }
    cell.get_children()
        .iter()
        .find_map(|child| find_actor(child, id))
}

/// Shutdown in order: stop accepting, drain, close, stop the tree, close the
/// endpoint. Runs once, for the first reason that arrives.
async fn run_shutdown(
    shared: Arc<Shared>,
    root: ActorRef<RootMsg>,
    mut requests: mpsc::UnboundedReceiver<ShutdownReason>,
    done: watch::Sender<Option<ShutdownReason>>,
) {
    let reason = requests.recv().await.unwrap_or(ShutdownReason::Requested);
    shared.shutting_down.store(true, Ordering::Release);
    let drain_timeout = shared.config.supervision.drain_timeout;
    tracing::info!(?reason, drain_timeout = ?drain_timeout, "shutting down");

    // 1. Stop accepting: listeners stop; the root restarts nothing from now on.
    let _ = ractor::call!(root, RootMsg::StopAccepting);
    // 2. Ask every connection to finish, and wait for them up to the deadline.
    let entries = shared.unique_entries();
    for entry in &entries {
        let sent = entry
            .supervisor()
            .map(|sup| sup.send_message(ProtocolMsg::Drain).is_ok());
        tracing::debug!(protocol = %entry.alpn, ?sent, "drain requested");
    }
    let drained = tokio::time::timeout(drain_timeout, shared.admission.idle())
        .await
        .is_ok();
    // 3. Close what is left.
    if !drained {
        tracing::info!(
            open = shared.admission.open(),
            "drain deadline reached; closing connections"
        );
        if let Some(tree) = tree::snapshot(&root.get_cell(), &shared.directory) {
            log_open_connections(&tree);
        }
        for entry in &entries {
            if let Some(sup) = entry.supervisor() {
                let _ =
                    sup.send_message(ProtocolMsg::CloseAll(close_code::NO_ERROR, SHUTDOWN_REASON));
            }
        }
        let _ = tokio::time::timeout(Duration::from_secs(1), shared.admission.idle()).await;
    }
    // 4. Stop the tree (children first: ractor stops an actor's children with it).
    let _ = root
        .get_cell()
        .stop_and_wait(Some(SHUTDOWN_REASON.into()), Some(Duration::from_secs(2)))
        .await;
    // 5. Close the endpoint, giving peers a moment to receive the close.
    shared
        .endpoint
        .close(close_code::NO_ERROR.into(), SHUTDOWN_REASON.as_bytes());
    let _ = tokio::time::timeout(Duration::from_millis(500), shared.endpoint.wait_idle()).await;
    tracing::info!("shutdown complete");
    let _ = done.send(Some(reason));
}

fn log_open_connections(node: &TreeNode) {
    if let Some(details) = &node.connection {
        tracing::info!(
            actor = %node.id,
            alpn = %details.alpn,
            remote = %details.remote,
            "closing {} that did not finish draining",
            node.name
        );
    }
    node.children.iter().for_each(log_open_connections);
}

/// Messages to the root supervisor.
pub(crate) enum RootMsg {
    /// Reply once every child has started (or failed to).
    NotifyReady(tokio::sync::oneshot::Sender<Result<(), String>>),
    /// Stop the listeners and restart nothing from now on.
    StopAccepting(RpcReplyPort<()>),
}

/// One permanent child of the root.
#[derive(Clone)]
enum ChildSpec {
    Protocol(Arc<ProtocolEntry>),
    Router,
    Listener(ListenerKind),
}

impl ChildSpec {
    fn name(&self) -> String {
        match self {
            Self::Protocol(entry) => entry.supervisor_name.clone(),
            Self::Router => "router".into(),
            Self::Listener(kind) => kind.name().into(),
        }
    }
}

struct ChildSlot {
    spec: ChildSpec,
    restart: RestartType,
    tracker: RestartTracker,
    restarts: u32,
    current: Option<ActorCell>,
}

struct RootSupervisor;

struct RootState {
    shared: Arc<Shared>,
    slots: Vec<ChildSlot>,
    by_id: HashMap<ActorId, usize>,
    start_error: Option<String>,
    _registration: DirectoryEntry,
}

impl RootState {
    async fn start_child(
        &mut self,
        myself: &ActorRef<RootMsg>,
        index: usize,
    ) -> Result<(), String> {
        let slot = &self.slots[index];
        let cell = myself.get_cell();
        let restarts = slot.restarts;
        let shared = self.shared.clone();
        let spawned = match &slot.spec {
            ChildSpec::Protocol(entry) => {
                let args = ProtocolArgs {
                    shared,
                    entry: entry.clone(),
                    restarts,
                };
                Actor::spawn_linked(None, ProtocolSupervisor, args, cell)
                    .await
                    .map(|(r, _)| r.get_cell())
            }
            ChildSpec::Router => {
                Actor::spawn_linked(None, Router, RouterArgs { shared, restarts }, cell)
                    .await
                    .map(|(r, _)| r.get_cell())
            }
            ChildSpec::Listener(kind) => {
                let args = ListenerArgs {
                    shared,
                    kind: *kind,
                    restarts,
                };
                Actor::spawn_linked(None, Listener, args, cell)
                    .await
                    .map(|(r, _)| r.get_cell())
            }
        }
        .map_err(|e| format!("{}: {e}", slot.spec.name()))?;
        self.by_id.insert(spawned.get_id(), index);
        self.slots[index].current = Some(spawned);
        Ok(())
    }
}

impl Actor for RootSupervisor {
    type Msg = RootMsg;
    type State = RootState;
    type Arguments = Arc<Shared>;

    async fn pre_start(
        &self,
        myself: ActorRef<Self::Msg>,
        shared: Self::Arguments,
    ) -> Result<Self::State, ActorProcessingErr> {
        let registration = shared.directory.register(
            myself.get_id(),
            ActorInfo::new("node", ActorKind::Supervisor, 0),
        );
        let supervision = &shared.config.supervision;
        let node_intensity = RestartIntensity {
            max_restarts: supervision.max_restarts,
            window: supervision.restart_window,
        };
        // Start order: protocols (the router's targets), router, then the
        // listeners, so nothing is accepted before it can be served.
        let mut specs: Vec<(ChildSpec, RestartIntensity)> = shared
            .unique_entries()
            .into_iter()
            .map(|entry| {
                let (max_restarts, window) = shared.config.restart_intensity_for(&entry.alpn);
                (
                    ChildSpec::Protocol(entry),
                    RestartIntensity {
                        max_restarts,
                        window,
                    },
                )
            })
            .collect();
        specs.push((ChildSpec::Router, node_intensity));
        specs.push((ChildSpec::Listener(ListenerKind::Quic), node_intensity));
        specs.push((ChildSpec::Listener(ListenerKind::Tcp), node_intensity));
        let slots = specs
            .into_iter()
            .map(|(spec, intensity)| ChildSlot {
                spec,
                restart: RestartType::Permanent,
                tracker: RestartTracker::new(intensity),
                restarts: 0,
                current: None,
            })
            .collect();
        Ok(RootState {
            shared,
            slots,
            by_id: HashMap::new(),
            start_error: None,
            _registration: registration,
        })
    }

    async fn post_start(
        &self,
        myself: ActorRef<Self::Msg>,
        state: &mut Self::State,
    ) -> Result<(), ActorProcessingErr> {
        for index in 0..state.slots.len() {
            if let Err(error) = state.start_child(&myself, index).await {
                state.start_error = Some(error);
                break;
            }
        }
        Ok(())
    }

    async fn handle(
        &self,
        myself: ActorRef<Self::Msg>,
        message: Self::Msg,
        state: &mut Self::State,
    ) -> Result<(), ActorProcessingErr> {
        match message {
            RootMsg::NotifyReady(reply) => {
                let _ = reply.send(state.start_error.clone().map_or(Ok(()), Err));
            }
            RootMsg::StopAccepting(reply) => {
                state.shared.shutting_down.store(true, Ordering::Release);
                if let Some(info) = state.shared.directory.get(&myself.get_id()) {
                    info.set_status(ActorStatus::Draining);
                }
                for slot in &state.slots {
                    if let (ChildSpec::Listener(_), Some(cell)) = (&slot.spec, &slot.current) {
                        let _ = cell.stop_and_wait(None, Some(Duration::from_secs(1))).await;
                    }
                }
                let _ = reply.send(());
            }
        }
        Ok(())
    }

    async fn handle_supervisor_evt(
        &self,
        myself: ActorRef<Self::Msg>,
        event: SupervisionEvent,
        state: &mut Self::State,
    ) -> Result<(), ActorProcessingErr> {
        let (cell, exit, detail) = match event {
            SupervisionEvent::ActorFailed(cell, error) => {
                (cell, ExitKind::Abnormal, error.to_string())
            }
            SupervisionEvent::ActorTerminated(cell, _, reason) => (
                cell,
                ExitKind::Normal,
                reason.unwrap_or_else(|| "stopped".into()),
            ),
            _ => return Ok(()),
        };
        let Some(index) = state.by_id.remove(&cell.get_id()) else {
            return Ok(());
        };
        state.slots[index].current = None;
        if state.shared.is_shutting_down() {
            return Ok(());
        }
        let name = state.slots[index].spec.name();
        if !state.slots[index].restart.restarts_after(exit) {
            return Ok(());
        }
        tracing::warn!(actor = %cell.get_id(), child = %name, ?exit, "child exited: {detail}; restarting");
        let slot = &mut state.slots[index];
        match slot.tracker.record(Instant::now()) {
            RestartDecision::Restart => {
                slot.restarts += 1;
                if let Err(error) = state.start_child(&myself, index).await {
                    tracing::error!(child = %name, "restart failed ({error}); shutting the node down");
                    state.shared.escalate(name);
                }
            }
            RestartDecision::Escalate => {
                let RestartIntensity {
                    max_restarts,
                    window,
                } = slot.tracker.intensity();
                tracing::error!(
                    child = %name,
                    "{name} exceeded its restart intensity ({max_restarts} restarts in {window:?}); shutting the node down"
                );
                state.shared.escalate(name);
            }
        }
        Ok(())
    }
}
