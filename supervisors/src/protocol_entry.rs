//! A registered protocol as the node keeps it: its handler, its names in the
//! tree, its connection gauge and its live supervisor.

use std::sync::{Arc, PoisonError, RwLock};

use alknet_core::ErasedHandler;
use ractor::ActorCell;

use crate::admission::Gauge;

/// Everything the node knows about one registered protocol.
pub(crate) struct ProtocolEntry {
    /// `proto/<name>`.
    pub(crate) supervisor_name: String,
    /// Name of its connection actors.
    pub(crate) connection_name: String,
    /// The first ALPN: the key for configuration overrides and logs.
    pub(crate) alpn: String,
    pub(crate) handler: ErasedHandler,
    pub(crate) gauge: Arc<Gauge>,
    supervisor: RwLock<Option<ActorCell>>,
}

impl ProtocolEntry {
    /// `cap`: the most connections it may hold at once.
    pub(crate) fn new(handler: ErasedHandler, cap: usize) -> Self {
        let protocol = handler.protocol();
        Self {
            supervisor_name: protocol.tree_name(),
            connection_name: protocol.connection_actor_name(),
            alpn: protocol.primary_alpn().to_owned(),
            handler,
            gauge: Arc::new(Gauge::new(cap)),
            supervisor: RwLock::new(None),
        }
    }

    /// The live supervisor, if it is up.
    pub(crate) fn supervisor(&self) -> Option<ActorCell> {
        self.supervisor
            .read()
            .unwrap_or_else(PoisonError::into_inner)
            .clone()
            .filter(|cell| {
                matches!(
                    cell.get_status(),
                    ractor::ActorStatus::Starting | ractor::ActorStatus::Running
                )
            })
    }

    /// Publishes `cell` as the live supervisor.
    pub(crate) fn set_supervisor(&self, cell: ActorCell) {
        *self
            .supervisor
            .write()
            .unwrap_or_else(PoisonError::into_inner) = Some(cell);
    }

    /// Withdraws the supervisor `stopped`, unless a newer one replaced it.
    pub(crate) fn clear_supervisor(&self, stopped: &ActorCell) {
        let mut slot = self
            .supervisor
            .write()
            .unwrap_or_else(PoisonError::into_inner);
        if slot
            .as_ref()
            .is_some_and(|c| c.get_id() == stopped.get_id())
        {
            *slot = None;
        }
    }
}
