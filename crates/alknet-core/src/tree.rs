//! Actors a handler runs inside one connection.
//!
//! Most handlers are one actor per connection, which the node spawns and
//! lists in the tree itself. Some connections carry sessions of their own — an
//! HTTP connection carries WebSocket sessions — and an operator must see and
//! stop those one by one. The node hands each connection a [`ConnectionTree`]
//! through which the handler links such actors under the connection actor and
//! lists them, without this crate knowing how the tree is kept.

use std::sync::Arc;

use crate::connection::ConnectionInfo;

/// What a handler says about an actor it runs inside a connection.
pub struct ChildActor {
    /// Tree name, e.g. `ws-session`.
    pub name: String,
    /// Its own details: identity and counters (see [`ConnectionInfo::carried`]).
    pub info: Arc<ConnectionInfo>,
    /// What `admin/kill` does to it: close it towards its peer and stop it.
    /// The node then waits for the actor to stop.
    pub kill: Box<dyn Fn() + Send + Sync>,
}

/// A connection's place in the node's actor tree.
pub trait ConnectionTree: Send + Sync {
    /// The connection actor, which children are linked to: they show under
    /// it, and its supervision sees their failures.
    fn parent(&self) -> ractor::ActorCell;

    /// Lists `actor` as a session in the tree until the returned guard is
    /// dropped.
    fn register(&self, actor: &ractor::ActorCell, child: ChildActor) -> Box<dyn Send + Sync>;
}
