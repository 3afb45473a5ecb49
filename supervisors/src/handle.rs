//! [`NodeHandle`]: a running node, as its owner and the admin operations
//! reach it.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use alknet_core::Alpn;
#[cfg(feature = "fault-injection")]
use alknet_core::control::CrashError;
use alknet_core::control::{KillError, NodeControl};
use futures::future::BoxFuture;
use ractor::{ActorCell, ActorRef};
use tokio::sync::{mpsc, watch};

use crate::admission::AdmissionStats;
use crate::directory::ActorDirectory;
#[cfg(feature = "fault-injection")]
use crate::messages::ProtocolMsg;
use crate::messages::{RootMsg, ShutdownReason};
use crate::state::NodeState;
use crate::tree::{self, TreeNode};

/// A running node.
#[derive(Clone)]
pub struct NodeHandle {
    pub(crate) node: Arc<NodeState>,
    pub(crate) root: ActorRef<RootMsg>,
    pub(crate) local_addr: SocketAddr,
    pub(crate) alpns: Vec<Alpn>,
    pub(crate) shutdown_tx: mpsc::UnboundedSender<ShutdownReason>,
    pub(crate) done: watch::Receiver<Option<ShutdownReason>>,
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
        tree::snapshot(&self.root.get_cell(), &self.node.directory)
    }

    /// Every live actor's self-description, for protocols that add actors.
    pub fn directory(&self) -> &Arc<ActorDirectory> {
        &self.node.directory
    }

    /// Admission counters.
    pub fn admission_stats(&self) -> AdmissionStats {
        let mut stats = AdmissionStats {
            open: self.node.admission.open(),
            refused: self.node.admission.refused(),
            ..Default::default()
        };
        for entry in self.node.protocols() {
            stats.protocols.insert(
                entry.alpn.clone(),
                (entry.gauge.open(), entry.gauge.refused()),
            );
        }
        stats
    }

    /// Applies the connection caps of `config` (`limits.max_connections`,
    /// `limits.max_connections_per_protocol`, `[protocols."…"]
    /// max_connections`) to connections admitted from now on; returns
    /// whether any cap changed. Open connections are never closed for it.
    pub fn set_connection_caps(&self, config: &alknet_core::NodeConfig) -> bool {
        let mut changed = false;
        let mut set = |gauge: &crate::admission::Gauge, limit: usize| {
            changed |= gauge.limit() != limit;
            gauge.set_limit(limit);
        };
        set(self.node.admission.global(), config.limits.max_connections);
        for entry in self.node.protocols() {
            set(&entry.gauge, config.max_connections_for(&entry.alpn));
        }
        changed
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
            .node
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
        self.node
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
            .node
            .protocol(&Alpn::from_wire(alpn.as_bytes()).ok_or(CrashError::UnknownProtocol)?)
            .ok_or(CrashError::UnknownProtocol)?;
        let supervisor = entry.supervisor().ok_or(CrashError::Restarting)?;
        supervisor
            .send_message(ProtocolMsg::InjectPanic)
            .map_err(|_| CrashError::Restarting)?;
        let _ = supervisor.wait(Some(KILL_WAIT)).await;
        Ok(entry.supervisor_name.clone())
    }
}

/// How long [`NodeHandle::kill`] waits for its target to stop.
const KILL_WAIT: Duration = Duration::from_secs(5);

fn find_actor(cell: &ActorCell, id: &str) -> Option<ActorCell> {
    if cell.get_id().to_string() == id {
        return Some(cell.clone());
    }
    cell.get_children()
        .iter()
        .find_map(|child| find_actor(child, id))
}

impl NodeControl for NodeHandle {
    fn tree(&self) -> Option<serde_json::Value> {
        NodeHandle::tree(self).and_then(|root| serde_json::to_value(root).ok())
    }

    fn kill<'a>(&'a self, id: &'a str) -> BoxFuture<'a, Result<(), KillError>> {
        Box::pin(NodeHandle::kill(self, id))
    }

    #[cfg(feature = "fault-injection")]
    fn crash_supervisor<'a>(&'a self, alpn: &'a str) -> BoxFuture<'a, Result<String, CrashError>> {
        Box::pin(NodeHandle::crash_supervisor(self, alpn))
    }
}
