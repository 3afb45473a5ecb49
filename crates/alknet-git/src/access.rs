//! Who may read or push which repository.
//!
//! Scopes name repositories by pattern: `git:read:<pattern>` and
//! `git:write:<pattern>` (which includes reading); `admin` grants
//! everything. In a pattern `*` stands for any run of characters, `/`
//! included, so `team/*` is every repository under `team/` and `*` is all
//! of them. A `.git` suffix on a pattern is ignored. Repositories the
//! configuration marks `public` are readable by anyone, anonymous clients
//! included.

use alknet_core::Identity;
use alknet_core::pattern::matches;

use crate::name::RepoName;

/// What a request may do to one repository.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub enum Grant {
    /// Nothing: it may not even learn whether the repository exists.
    None,
    /// Clone and fetch.
    Read,
    /// Clone, fetch and push.
    Write,
}

/// The git scopes of one identity (or of an anonymous client).
#[derive(Clone, Debug, Default)]
pub struct Access {
    all: bool,
    read: Vec<String>,
    write: Vec<String>,
}

impl Access {
    /// An anonymous client's: public repositories only.
    pub fn anonymous() -> Self {
        Self::default()
    }

    /// The access `identity`'s scopes give.
    pub fn of(identity: &Identity) -> Self {
        let mut access = Self::default();
        for scope in &identity.scopes {
            if scope == "admin" {
                access.all = true;
            } else if let Some(pattern) = scope.strip_prefix("git:read:") {
                access.read.push(normalise(pattern));
            } else if let Some(pattern) = scope.strip_prefix("git:write:") {
                access.write.push(normalise(pattern));
            }
        }
        access
    }

    /// The access of an identity, if any.
    pub fn of_optional(identity: Option<&Identity>) -> Self {
        identity.map(Self::of).unwrap_or_default()
    }

    /// Whether any git scope is held at all.
    pub fn is_empty(&self) -> bool {
        !self.all && self.read.is_empty() && self.write.is_empty()
    }

    /// What this access allows on `repo`, which is `public` or not.
    pub fn grant(&self, repo: &RepoName, public: bool) -> Grant {
        let name = repo.as_str();
        if self.all || self.write.iter().any(|p| matches(p, name)) {
            Grant::Write
        } else if public || self.read.iter().any(|p| matches(p, name)) {
            Grant::Read
        } else {
            Grant::None
        }
    }
}

fn normalise(pattern: &str) -> String {
    let pattern = pattern.trim_matches('/');
    pattern.strip_suffix(".git").unwrap_or(pattern).to_owned()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn identity(scopes: &[&str]) -> Identity {
        Identity::new("someone", scopes.iter().copied())
    }

    fn repo(name: &str) -> RepoName {
        RepoName::parse(name).unwrap()
    }

    #[test]
    fn write_includes_read_and_admin_includes_all() {
        let access = Access::of(&identity(&["git:write:team/*", "git:read:docs.git"]));
        assert_eq!(access.grant(&repo("team/app"), false), Grant::Write);
        assert_eq!(access.grant(&repo("docs"), false), Grant::Read);
        assert_eq!(access.grant(&repo("other"), false), Grant::None);
        assert_eq!(access.grant(&repo("other"), true), Grant::Read);
        let admin = Access::of(&identity(&["admin"]));
        assert_eq!(admin.grant(&repo("x/y"), false), Grant::Write);
        assert!(Access::of(&identity(&["sftp:read"])).is_empty());
    }

    #[test]
    fn anonymous_clients_read_public_repositories_only() {
        let anonymous = Access::anonymous();
        assert_eq!(anonymous.grant(&repo("a"), true), Grant::Read);
        assert_eq!(anonymous.grant(&repo("a"), false), Grant::None);
    }
}
