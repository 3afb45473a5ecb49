//! The ordered shutdown: stop accepting, drain, close, let the protocols
//! release what they hold, stop the tree, close the endpoint.

use std::sync::Arc;
use std::time::Duration;

use alknet_core::close::{self, SHUTDOWN_REASON};
use ractor::ActorRef;
use tokio::sync::{mpsc, watch};

use crate::messages::{ProtocolMsg, RootMsg, ShutdownReason};
use crate::state::NodeState;
use crate::tree::{self, TreeNode};

/// How long the protocols' [`alknet_core::ProtocolHandler::shutdown`] hooks
/// may take, together.
const PROTOCOL_SHUTDOWN_TIMEOUT: Duration = Duration::from_secs(2);

/// Shutdown in order: stop accepting, drain, close, release, stop the tree,
/// close the endpoint. Runs once, for the first reason that arrives.
pub(crate) async fn run_shutdown(
    node: Arc<NodeState>,
    root: ActorRef<RootMsg>,
    mut requests: mpsc::UnboundedReceiver<ShutdownReason>,
    done: watch::Sender<Option<ShutdownReason>>,
) {
    let reason = requests.recv().await.unwrap_or(ShutdownReason::Requested);
    node.begin_shutdown();
    let drain_timeout = node.config.supervision.drain_timeout;
    tracing::info!(?reason, drain_timeout = ?drain_timeout, "shutting down");

    // 1. Stop accepting: listeners stop; the root restarts nothing from now on.
    let _ = ractor::call!(root, RootMsg::StopAccepting);
    // 2. Ask every connection to finish, and wait for them up to the deadline.
    let entries = node.protocols();
    for entry in entries {
        let sent = entry
            .supervisor()
            .map(|sup| sup.send_message(ProtocolMsg::Drain).is_ok());
        tracing::debug!(protocol = %entry.alpn, ?sent, "drain requested");
    }
    let drained = tokio::time::timeout(drain_timeout, node.admission.idle())
        .await
        .is_ok();
    // 3. Close what is left.
    if !drained {
        tracing::info!(
            open = node.admission.open(),
            "drain deadline reached; closing connections"
        );
        if let Some(tree) = tree::snapshot(&root.get_cell(), &node.directory) {
            log_open_connections(&tree);
        }
        for entry in entries {
            if let Some(sup) = entry.supervisor() {
                let _ = sup.send_message(ProtocolMsg::CloseAll(close::NO_ERROR, SHUTDOWN_REASON));
            }
        }
        let _ = tokio::time::timeout(Duration::from_secs(1), node.admission.idle()).await;
    }
    // 4. Let each protocol release what it holds beyond its connections.
    let releases = entries.iter().map(|entry| entry.handler.shutdown());
    if tokio::time::timeout(
        PROTOCOL_SHUTDOWN_TIMEOUT,
        futures::future::join_all(releases),
    )
    .await
    .is_err()
    {
        tracing::warn!("protocol shutdown hooks did not finish in {PROTOCOL_SHUTDOWN_TIMEOUT:?}");
    }
    // 5. Stop the tree (children first: ractor stops an actor's children with it).
    let _ = root
        .get_cell()
        .stop_and_wait(Some(SHUTDOWN_REASON.into()), Some(Duration::from_secs(2)))
        .await;
    // 6. Close the endpoint, giving peers a moment to receive the close.
    node.endpoint
        .close(close::NO_ERROR.into(), SHUTDOWN_REASON.as_bytes());
    let _ = tokio::time::timeout(Duration::from_millis(500), node.endpoint.wait_idle()).await;
    tracing::info!("shutdown complete");
    let _ = done.send(Some(reason));
}

fn log_open_connections(actor: &TreeNode) {
    if let Some(details) = &actor.connection {
        tracing::info!(
            actor = %actor.id,
            alpn = %details.alpn,
            remote = %details.remote,
            "closing {} that did not finish draining",
            actor.name
        );
    }
    actor.children.iter().for_each(log_open_connections);
}
