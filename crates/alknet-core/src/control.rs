//! [`NodeControl`]: the operator's levers on a running node, as the admin
//! operations see them.
//!
//! The operations are call-protocol operations and the tree belongs to the
//! supervision crate; neither depends on the other. The supervision crate
//! implements this trait for its node handle, and the binary hands that handle
//! to the operations once the node runs.

use futures::future::BoxFuture;

/// What the admin operations may do to a running node.
pub trait NodeControl: Send + Sync + 'static {
    /// The live actor tree as `admin/tree` returns it (`None` once the node
    /// has stopped).
    fn tree(&self) -> Option<serde_json::Value>;

    /// Stops one connection or session actor by its tree id, closing its
    /// connection with `killed by operator`.
    fn kill<'a>(&'a self, id: &'a str) -> BoxFuture<'a, Result<(), KillError>>;

    /// Makes the protocol supervisor of `alpn` panic and waits until it has
    /// stopped; returns its tree name. Only fault-injection builds can.
    fn crash_supervisor<'a>(&'a self, alpn: &'a str) -> BoxFuture<'a, Result<String, CrashError>> {
        let _ = alpn;
        Box::pin(async { Err(CrashError::Unsupported) })
    }
}

/// Why [`NodeControl::kill`] refused.
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum KillError {
    /// No live actor has that id.
    #[error("actor not found")]
    NotFound,
    /// The actor is a supervisor, listener, router or service.
    #[error("not a connection or session")]
    NotAConnection,
}

/// Why [`NodeControl::crash_supervisor`] did nothing.
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum CrashError {
    /// No protocol of the node has that ALPN.
    #[error("no protocol serves this ALPN")]
    UnknownProtocol,
    /// Its supervisor is down (restarting, or the node is stopping).
    #[error("the supervisor is not running")]
    Restarting,
    /// This build has no fault injection.
    #[error("fault injection is not built in")]
    Unsupported,
}
