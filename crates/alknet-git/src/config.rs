//! `[git]`: where repositories live, which are public, and the bounds on
//! packs.

use std::collections::BTreeMap;
use std::path::PathBuf;

use alknet_core::config::{ConfigSection, InvalidKey, NodeConfig};
use serde::{Deserialize, Serialize};

use crate::name::RepoName;

/// `[git]`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct GitSection {
    /// Serve git: smart HTTP under `/git/`, `git-upload-pack` and
    /// `git-receive-pack` over SSH, and the ALPN `alknet/git`.
    pub enabled: bool,
    /// Where repositories live. Unset: `<data-dir>/git`. A relative path is
    /// relative to the data directory.
    pub root: Option<PathBuf>,
    /// The `git` program packs are negotiated with.
    pub program: PathBuf,
    /// Uploads and receives (clones, fetches, pushes) the node runs at
    /// once; more are refused with a message the client prints.
    pub max_concurrent: usize,
    /// The largest pack a push may send, in bytes.
    pub max_push_size: u64,
    /// Settings per repository, by name (`"team/app"`).
    pub repositories: BTreeMap<String, RepositorySettings>,
}

/// `[git.repositories."<name>"]`.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct RepositorySettings {
    /// Anyone may clone and fetch it, without a token.
    pub public: bool,
}

impl Default for GitSection {
    fn default() -> Self {
        Self {
            enabled: true,
            root: None,
            program: PathBuf::from("git"),
            max_concurrent: 8,
            max_push_size: 1 << 30,
            repositories: BTreeMap::new(),
        }
    }
}

impl GitSection {
    /// Whether `name` is marked public.
    pub fn is_public(&self, name: &RepoName) -> bool {
        self.repositories.iter().any(|(key, settings)| {
            settings.public && RepoName::parse(key).is_ok_and(|k| &k == name)
        })
    }
}

impl ConfigSection for GitSection {
    const KEY: &'static str = "git";
    const TEMPLATE: &'static str = r#"[git]
# Host git repositories: smart HTTP at https://<node>/git/<name>.git, the SSH
# commands git-upload-pack and git-receive-pack, and the ALPN alknet/git.
# Access is by the scopes git:read:<name> and git:write:<name> (`*` patterns);
# see docs/git.md. Packs are negotiated by the system `git`.
enabled = true
# Where repositories live (<name>.git, nested names allowed). Unset:
# <data-dir>/git. A relative path is relative to the data directory.
# root = "/srv/alknet/git"
# The git program that serves packs.
program = "git"
# Clones, fetches and pushes served at once, node-wide.
max_concurrent = 8
# The largest pack one push may send, in bytes.
max_push_size = 1073741824
# A repository anyone may clone without a token:
# [git.repositories."team/docs"]
# public = true
"#;

    fn validate(&self, _node: &NodeConfig) -> Result<(), InvalidKey> {
        if !(1..=1024).contains(&self.max_concurrent) {
            return Err(InvalidKey::new(
                "git.max_concurrent",
                "a number from 1 to 1024",
            ));
        }
        if self.max_push_size < 1024 {
            return Err(InvalidKey::new(
                "git.max_push_size",
                "a number of bytes, at least 1024",
            ));
        }
        if self.program.as_os_str().is_empty() {
            return Err(InvalidKey::new("git.program", "a program name or path"));
        }
        for name in self.repositories.keys() {
            if let Err(error) = RepoName::parse(name) {
                return Err(InvalidKey::new(
                    format!("git.repositories.{name:?}"),
                    format!("a repository name ({})", error.reason),
                ));
            }
        }
        Ok(())
    }
}
