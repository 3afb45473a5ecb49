//! Accepted pushes, as events: one per updated reference.
//!
//! `git receive-pack` runs the node's `post-receive` hook after it has
//! updated the references; the hook writes git's own list of updates
//! (`<old> <new> <ref>` per line) to a file named by the environment, and
//! the node turns that list into events once the process has exited. So an
//! event is sent only for an update git made, never for one it refused.

use serde::{Deserialize, Serialize};
use tokio::sync::broadcast;

use crate::name::RepoName;

/// Events kept for a subscriber that is behind; an older one is dropped
/// (the subscriber is told how many it missed).
const BACKLOG: usize = 1024;

/// The hook git runs after a push updated references.
pub(crate) const POST_RECEIVE_HOOK: &str = "#!/bin/sh\n\
# Written by alknet at start-up: hands git's list of updated references to the node.\n\
[ -n \"$ALKNET_PUSH_LOG\" ] && exec cat > \"$ALKNET_PUSH_LOG\"\n\
exit 0\n";

/// The environment variable naming the file the hook writes.
pub(crate) const PUSH_LOG_ENV: &str = "ALKNET_PUSH_LOG";

/// One reference a push changed.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct PushEvent {
    /// The repository (`team/app`).
    pub repo: String,
    /// The full reference name (`refs/heads/main`).
    #[serde(rename = "ref")]
    pub reference: String,
    /// The id before (all zeros: created).
    pub old: String,
    /// The id after (all zeros: deleted).
    pub new: String,
    /// Who pushed (`None`: anonymous, which only a misconfiguration allows).
    pub identity: Option<String>,
    /// When the node saw the push end, RFC 3339.
    pub at: String,
}

/// Where push events are published.
#[derive(Clone, Debug)]
pub struct PushEvents {
    sender: broadcast::Sender<PushEvent>,
}

impl Default for PushEvents {
    fn default() -> Self {
        Self {
            sender: broadcast::channel(BACKLOG).0,
        }
    }
}

impl PushEvents {
    /// A receiver of every event published from now on.
    pub fn subscribe(&self) -> broadcast::Receiver<PushEvent> {
        self.sender.subscribe()
    }

    pub(crate) fn publish(&self, event: PushEvent) {
        // No subscriber is not an error.
        let _ = self.sender.send(event);
    }
}

/// The events of one push, from the hook's list.
pub(crate) fn parse_updates(
    list: &str,
    repo: &RepoName,
    identity: Option<&str>,
    at: &str,
) -> Vec<PushEvent> {
    list.lines()
        .filter_map(|line| {
            let mut words = line.split(' ');
            let (old, new, reference) = (words.next()?, words.next()?, words.next()?);
            let hex = |s: &str| s.len() >= 40 && s.bytes().all(|b| b.is_ascii_hexdigit());
            (hex(old) && hex(new) && words.next().is_none()).then(|| PushEvent {
                repo: repo.to_string(),
                reference: reference.to_owned(),
                old: old.to_owned(),
                new: new.to_owned(),
                identity: identity.map(str::to_owned),
                at: at.to_owned(),
            })
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_hook_list_becomes_one_event_per_reference() {
        let zero = "0".repeat(40);
        let a = "a".repeat(40);
        let list = format!("{zero} {a} refs/heads/main\n{a} {zero} refs/tags/v1\ngarbage\n");
        let repo = RepoName::parse("team/app").unwrap();
        let events = parse_updates(&list, &repo, Some("alice"), "t");
        assert_eq!(events.len(), 2);
        assert_eq!(events[0].reference, "refs/heads/main");
        assert_eq!(events[0].old, zero);
        assert_eq!(events[1].new, zero);
        assert_eq!(events[1].identity.as_deref(), Some("alice"));
    }
}
