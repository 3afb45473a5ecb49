//! A snapshot of the live actor tree (`admin/tree`, docs/protocol.md §10.3).
//!
//! The shape comes from ractor's parent/child links, walked from the root at
//! the moment of the call; each node's details come from the
//! [`ActorDirectory`]. An actor that has stopped but is not yet unlinked has no
//! directory entry and is left out, so the snapshot never shows a stale child.

use ractor::{ActorCell, ActorStatus as RactorStatus};
use serde::{Deserialize, Serialize};
use time::macros::format_description;

use crate::directory::{ActorDirectory, ActorKind, ActorStatus};

/// One actor in the tree.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct TreeNode {
    /// Unique among live actors; stable for the actor's life.
    pub id: String,
    /// Tree name.
    pub name: String,
    /// Role.
    pub kind: ActorKind,
    /// Lifecycle status.
    pub status: ActorStatus,
    /// RFC 3339 UTC with milliseconds.
    pub started_at: String,
    /// Times its supervisor restarted it.
    pub restarts: u32,
    /// Live children, ordered by id.
    pub children: Vec<TreeNode>,
    /// Connection details (kinds `connection` and `session`).
    #[serde(flatten)]
    pub connection: Option<ConnectionDetails>,
}

/// Per-connection fields of a [`TreeNode`].
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ConnectionDetails {
    /// Negotiated ALPN.
    pub alpn: String,
    /// Peer address, `ip:port` (IPv6 in brackets).
    pub remote: String,
    /// The identity's id, or `null`: the connection's own identity, else
    /// that of the latest bearer token it presented.
    pub identity: Option<String>,
    /// Application bytes received.
    pub bytes_in: u64,
    /// Application bytes sent.
    pub bytes_out: u64,
    /// Requests received, as the protocol counts them.
    pub requests: u64,
    /// Bytes of state the peer made the node keep beyond buffers (a call
    /// session: the JSON of the operations it registered).
    #[serde(default)]
    pub held_bytes: u64,
    /// What it is doing, when its protocol says (an SSH channel's kind and
    /// command or target).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub detail: Option<String>,
}

impl TreeNode {
    /// Depth-first search by name.
    pub fn find(&self, name: &str) -> Option<&TreeNode> {
        if self.name == name {
            return Some(self);
        }
        self.children.iter().find_map(|c| c.find(name))
    }

    /// Depth-first search by id.
    pub fn find_id(&self, id: &str) -> Option<&TreeNode> {
        if self.id == id {
            return Some(self);
        }
        self.children.iter().find_map(|c| c.find_id(id))
    }

    /// Number of actors in this subtree, this one included.
    pub fn count(&self) -> usize {
        1 + self.children.iter().map(TreeNode::count).sum::<usize>()
    }
}

/// Walks the live tree below `root`. `None` if `root` itself is not registered
/// (it has stopped).
pub fn snapshot(root: &ActorCell, directory: &ActorDirectory) -> Option<TreeNode> {
    let info = directory.get(&root.get_id())?;
    let mut children: Vec<ActorCell> = root.get_children();
    children.sort_by_key(|c| c.get_id().pid());
    let children = children
        .iter()
        .filter_map(|child| snapshot(child, directory))
        .collect();
    let status = match root.get_status() {
        RactorStatus::Stopping | RactorStatus::Stopped => ActorStatus::Stopping,
        _ => info.status(),
    };
    let format =
        format_description!("[year]-[month]-[day]T[hour]:[minute]:[second].[subsecond digits:3]Z");
    Some(TreeNode {
        id: root.get_id().to_string(),
        name: info.name.clone(),
        kind: info.kind,
        status,
        started_at: info
            .started_at
            .format(&format)
            .unwrap_or_else(|_| "1970-01-01T00:00:00.000Z".to_owned()),
        restarts: info.restarts,
        children,
        connection: info.connection.as_ref().map(|c| ConnectionDetails {
            alpn: c.alpn().to_string(),
            remote: c.remote().to_string(),
            identity: c.display_identity(),
            bytes_in: c.stats().bytes_in(),
            bytes_out: c.stats().bytes_out(),
            requests: c.stats().requests(),
            held_bytes: c.stats().held(),
            detail: c.detail(),
        }),
    })
}
