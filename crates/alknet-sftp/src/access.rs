//! What an identity may do over SFTP, from its scopes:
//!
//! - `sftp:read` — read files, list directories, read attributes;
//! - `sftp:write` — create, write, rename, remove and change attributes
//!   (and read attributes);
//! - either with a path, `sftp:write:/incoming`: only inside that
//!   directory, which is then that grant's `/` (links inside it cannot
//!   lead out of it);
//! - `admin` — both, everywhere.

use alknet_core::Identity;

/// What a request needs.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Need {
    /// File contents or listings.
    Read,
    /// A change.
    Write,
    /// Attributes only: either grant gives them.
    Metadata,
}

/// An identity's SFTP grants.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Access {
    /// Normalised path prefixes readable.
    read: Vec<String>,
    /// Normalised path prefixes writable.
    write: Vec<String>,
}

impl Access {
    /// The grants in `identity`'s scopes.
    pub fn of(identity: &Identity) -> Self {
        let mut access = Self::default();
        for scope in &identity.scopes {
            if scope == "admin" {
                access.read.push("/".to_owned());
                access.write.push("/".to_owned());
                continue;
            }
            let Some(rest) = scope.strip_prefix("sftp:") else {
                continue;
            };
            let (kind, prefix) = rest.split_once(':').unwrap_or((rest, "/"));
            let prefix = crate::path::normalize(prefix);
            match kind {
                "read" => access.read.push(prefix),
                "write" => access.write.push(prefix),
                _ => {}
            }
        }
        // The widest grant first: a path under two grants is seen from the
        // one nearest the root.
        access.read.sort_by_key(String::len);
        access.write.sort_by_key(String::len);
        access
    }

    /// Whether the identity may use SFTP at all.
    pub fn is_empty(&self) -> bool {
        self.read.is_empty() && self.write.is_empty()
    }

    /// Whether the identity may change anything.
    pub fn can_write(&self) -> bool {
        !self.write.is_empty()
    }

    /// The prefix of the grant that allows `need` on the normalised
    /// `path`, if one does.
    pub fn grant(&self, need: Need, path: &str) -> Option<&str> {
        fn under<'a>(prefixes: &'a [String], path: &str) -> Option<&'a str> {
            prefixes
                .iter()
                .find(|prefix| crate::path::inside(prefix, path).is_some())
                .map(String::as_str)
        }
        match need {
            Need::Read => under(&self.read, path),
            Need::Write => under(&self.write, path),
            Need::Metadata => under(&self.read, path).or_else(|| under(&self.write, path)),
        }
    }

    /// A one-line summary for the tree: `read /, write /incoming`.
    pub fn summary(&self) -> String {
        let mut parts = Vec::new();
        if !self.read.is_empty() {
            parts.push(format!("read {}", self.read.join(" ")));
        }
        if !self.write.is_empty() {
            parts.push(format!("write {}", self.write.join(" ")));
        }
        parts.join(", ")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn access(scopes: &[&str]) -> Access {
        Access::of(&Identity::new("test", scopes.iter().copied()))
    }

    #[test]
    fn a_prefix_limits_the_grant_to_its_directory() {
        let access = access(&["sftp:read", "sftp:write:/incoming"]);
        assert_eq!(access.grant(Need::Read, "/etc/passwd"), Some("/"));
        assert_eq!(access.grant(Need::Write, "/incoming/a"), Some("/incoming"));
        assert_eq!(access.grant(Need::Write, "/incoming"), Some("/incoming"));
        assert_eq!(access.grant(Need::Write, "/incomingx"), None);
        assert_eq!(access.grant(Need::Write, "/a"), None);
    }

    #[test]
    fn a_prefix_is_normalised_before_it_is_compared() {
        let access = access(&["sftp:write:incoming/../up/"]);
        assert_eq!(access.grant(Need::Write, "/up/x"), Some("/up"));
        assert_eq!(access.grant(Need::Metadata, "/up/x"), Some("/up"));
        assert_eq!(access.grant(Need::Read, "/up/x"), None);
    }

    #[test]
    fn admin_grants_everything_and_other_scopes_nothing() {
        assert_eq!(access(&["admin"]).grant(Need::Write, "/x"), Some("/"));
        assert!(access(&["ssh:shell", "sftp:delete"]).is_empty());
    }
}
