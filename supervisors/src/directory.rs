//! What each live actor says about itself.
//!
//! ractor knows every actor's id and its parent/child links; it does not know
//! what the actor is for. Each of our actors registers an [`ActorInfo`] (name,
//! kind, start time, restart count, and for connections the live
//! [`ConnectionInfo`] with its counters) for exactly as long as it lives: the
//! registration is a guard held in the actor's state, so a stopped, killed or
//! panicked actor is gone from the directory as soon as its state is dropped.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU8, Ordering};
use std::sync::{Arc, Mutex, PoisonError};

use alknet_core::ConnectionInfo;
use ractor::ActorId;
use serde::{Deserialize, Serialize};
use time::OffsetDateTime;

/// What role an actor plays (docs/protocol.md §10.3).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ActorKind {
    /// Supervises children.
    Supervisor,
    /// Accepts connections.
    Listener,
    /// Routes connections to protocol supervisors.
    Router,
    /// Serves one connection.
    Connection,
    /// A call-protocol session.
    Session,
    /// Long-lived shared state.
    Service,
}

/// Lifecycle status as reported in the tree.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
#[repr(u8)]
pub enum ActorStatus {
    /// Starting up.
    Starting = 0,
    /// Serving.
    Running = 1,
    /// Finishing its work before stopping.
    Draining = 2,
    /// Stopping.
    Stopping = 3,
}

impl ActorStatus {
    fn from_u8(value: u8) -> Self {
        match value {
            0 => Self::Starting,
            1 => Self::Running,
            2 => Self::Draining,
            _ => Self::Stopping,
        }
    }
}

/// What one actor reports about itself.
pub struct ActorInfo {
    /// Tree name, e.g. `proto/alknet/echo`, `echo-conn`.
    pub name: String,
    /// Role.
    pub kind: ActorKind,
    /// When this incarnation started.
    pub started_at: OffsetDateTime,
    /// How many times its supervisor restarted it before this incarnation.
    pub restarts: u32,
    /// For connections and sessions: the connection's live details.
    pub connection: Option<Arc<ConnectionInfo>>,
    /// How `admin/kill` stops it (closing its connection or session towards
    /// the peer); `None` for actors an operator cannot kill.
    pub kill: Option<Box<dyn Fn() + Send + Sync>>,
    status: AtomicU8,
}

impl std::fmt::Debug for ActorInfo {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ActorInfo")
            .field("name", &self.name)
            .field("kind", &self.kind)
            .field("started_at", &self.started_at)
            .field("restarts", &self.restarts)
            .field("connection", &self.connection)
            .field("status", &self.status())
            .finish_non_exhaustive()
    }
}

impl ActorInfo {
    /// A running actor's info.
    pub fn new(name: impl Into<String>, kind: ActorKind, restarts: u32) -> Self {
        Self {
            name: name.into(),
            kind,
            started_at: OffsetDateTime::now_utc(),
            restarts,
            connection: None,
            kill: None,
            status: AtomicU8::new(ActorStatus::Running as u8),
        }
    }

    /// Attaches a connection's details.
    pub fn with_connection(mut self, connection: Arc<ConnectionInfo>) -> Self {
        self.connection = Some(connection);
        self
    }

    /// Sets what `admin/kill` does to this actor.
    pub fn with_kill(mut self, kill: Box<dyn Fn() + Send + Sync>) -> Self {
        self.kill = Some(kill);
        self
    }

    /// The current status.
    pub fn status(&self) -> ActorStatus {
        ActorStatus::from_u8(self.status.load(Ordering::Relaxed))
    }

    /// Updates the status.
    pub fn set_status(&self, status: ActorStatus) {
        self.status.store(status as u8, Ordering::Relaxed);
    }
}

/// All live actors' self-descriptions, by ractor actor id.
#[derive(Debug, Default)]
pub struct ActorDirectory {
    entries: Mutex<HashMap<ActorId, Arc<ActorInfo>>>,
}

impl ActorDirectory {
    /// Registers an actor until the returned guard is dropped.
    pub fn register(self: &Arc<Self>, id: ActorId, info: ActorInfo) -> DirectoryEntry {
        let info = Arc::new(info);
        self.lock().insert(id, info.clone());
        DirectoryEntry {
            directory: self.clone(),
            id,
            info,
        }
    }

    /// The info of a live actor.
    pub fn get(&self, id: &ActorId) -> Option<Arc<ActorInfo>> {
        self.lock().get(id).cloned()
    }

    /// Number of registered actors.
    pub fn len(&self) -> usize {
        self.lock().len()
    }

    /// Whether no actor is registered.
    pub fn is_empty(&self) -> bool {
        self.lock().is_empty()
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<ActorId, Arc<ActorInfo>>> {
        self.entries.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

/// Keeps an actor registered; dropping it removes the registration.
#[derive(Debug)]
pub struct DirectoryEntry {
    directory: Arc<ActorDirectory>,
    id: ActorId,
    info: Arc<ActorInfo>,
}

impl DirectoryEntry {
    /// The registered info.
    pub fn info(&self) -> &Arc<ActorInfo> {
        &self.info
    }
}

impl Drop for DirectoryEntry {
    fn drop(&mut self) {
        let mut entries = self.directory.lock();
        // Only remove our own registration, never a successor's.
        if entries
            .get(&self.id)
            .is_some_and(|i| Arc::ptr_eq(i, &self.info))
        {
            entries.remove(&self.id);
        }
    }
}
