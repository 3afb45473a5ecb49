//! The HTTP connection a request arrived on, as its handlers see it: the
//! WebSocket sessions running inside it, its activity, and the shares of the
//! connection's budgets its requests draw on.

use std::sync::Arc;

use alknet_core::Connection;
use tokio::sync::Semaphore;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use crate::limits::ConnectionLimits;
use crate::watchdog::Activity;

/// Attached to every request served by [`crate::HttpHandler`]; absent when
/// the router is served some other way (then no per-connection bound
/// applies).
#[derive(Clone)]
pub(crate) struct ConnectionScope {
    pub(crate) connection: Connection,
    /// WebSocket sessions: the connection's handler waits for them before it
    /// returns, so a session never outlives the actor it is listed under.
    pub(crate) sessions: TaskTracker,
    /// Requests in flight, for the watchdog.
    pub(crate) activity: Activity,
    /// Request-body bytes the connection's requests may still buffer.
    pub(crate) body_budget: Arc<Semaphore>,
    /// Subscriptions the connection may still open.
    pub(crate) subscriptions: Arc<Semaphore>,
    /// Cancelled when the peer has read nothing while output waited for
    /// `write_stall`: the connection is closed.
    pub(crate) stalled: CancellationToken,
}

impl ConnectionScope {
    pub(crate) fn new(connection: Connection, limits: &ConnectionLimits) -> Self {
        Self {
            activity: Activity::new(connection.info().clone()),
            connection,
            sessions: TaskTracker::new(),
            body_budget: Arc::new(Semaphore::new(limits.body_budget)),
            subscriptions: Arc::new(Semaphore::new(limits.max_subscriptions)),
            stalled: CancellationToken::new(),
        }
    }
}

/// The connection `request` arrived on, when [`crate::HttpHandler`] serves
/// it: an extra route that runs actors of its own lists them under it
/// ([`Connection::tree`]).
pub fn connection_of<B>(request: &axum::http::Request<B>) -> Option<&Connection> {
    request
        .extensions()
        .get::<ConnectionScope>()
        .map(|scope| &scope.connection)
}
