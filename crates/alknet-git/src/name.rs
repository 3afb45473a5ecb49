//! Repository names: `app`, `team/app`, written with or without `.git`.
//!
//! A name is checked as text before it comes near the filesystem, so that
//! no spelling of one (`..`, an absolute path, a hidden component, a name
//! nested inside another repository's directory) can reach outside the
//! root: every component is plain, and only the last one becomes a
//! `<component>.git` directory.

use std::fmt;
use std::path::{Path, PathBuf};

/// The longest name, in bytes.
const MAX_LEN: usize = 200;
/// The deepest nesting, in components.
const MAX_DEPTH: usize = 8;

/// A valid repository name in its canonical form: components joined by
/// `/`, without the `.git` suffix (`team/app`).
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct RepoName(String);

/// Why a name is refused.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("invalid repository name {name:?}: {reason}")]
pub struct InvalidName {
    /// The name as given (shortened).
    pub name: String,
    /// What is wrong with it.
    pub reason: &'static str,
}

impl RepoName {
    /// Parses `name`: leading and trailing `/` and one `.git` suffix are
    /// dropped (`/team/app.git/` is `team/app`).
    pub fn parse(name: &str) -> Result<Self, InvalidName> {
        let refuse = |reason| InvalidName {
            name: name.chars().take(80).collect(),
            reason,
        };
        let trimmed = name.trim_matches('/');
        let trimmed = trimmed.strip_suffix(".git").unwrap_or(trimmed);
        if trimmed.is_empty() {
            return Err(refuse("it is empty"));
        }
        if trimmed.len() > MAX_LEN {
            return Err(refuse("it is longer than 200 bytes"));
        }
        let components: Vec<&str> = trimmed.split('/').collect();
        if components.len() > MAX_DEPTH {
            return Err(refuse("it nests deeper than 8 components"));
        }
        for component in &components {
            if component.is_empty() {
                return Err(refuse("it has an empty component (`//`)"));
            }
            if component.starts_with('.') {
                return Err(refuse("a component starts with `.`"));
            }
            if !component
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.'))
            {
                return Err(refuse(
                    "a component holds something other than letters, digits, `-`, `_` and `.`",
                ));
            }
            // `a.git/b` would live inside repository `a`'s directory, and
            // `a.git.git` would be spelled two ways.
            if component.ends_with(".git") || component.ends_with(".lock") {
                return Err(refuse("a component ends with `.git` or `.lock`"));
            }
        }
        Ok(Self(trimmed.to_owned()))
    }

    /// The canonical name (`team/app`).
    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// The repository's directory under `root` (`root/team/app.git`).
    pub fn directory(&self, root: &Path) -> PathBuf {
        root.join(format!("{}.git", self.0))
    }

    /// The name of the repository at `relative` (`team/app.git`) under a
    /// root, if that is a repository directory's path.
    pub fn from_directory(relative: &Path) -> Option<Self> {
        let text = relative.to_str()?;
        text.strip_suffix(".git")?;
        Self::parse(text).ok()
    }
}

impl fmt::Display for RepoName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

#[cfg(test)]
mod tests {
    use std::path::Component;

    use proptest::prelude::*;

    use super::*;

    fn canonical(name: &str) -> Result<String, &'static str> {
        RepoName::parse(name)
            .map(|n| n.0)
            .map_err(|error| error.reason)
    }

    #[test]
    fn spellings_of_one_name_are_one_name() {
        for spelling in [
            "team/app",
            "team/app.git",
            "/team/app.git",
            "team/app/",
            "/team/app",
        ] {
            assert_eq!(canonical(spelling).unwrap(), "team/app", "{spelling}");
        }
        assert_eq!(canonical("a").unwrap(), "a");
        assert_eq!(canonical("v1.2_x-y").unwrap(), "v1.2_x-y");
    }

    #[test]
    fn names_that_could_leave_the_root_are_refused() {
        for name in [
            "",
            "/",
            ".git",
            "..",
            "../x",
            "a/../b",
            "a/./b",
            ".hidden",
            "a/.b",
            "a//b",
            "a\\b",
            "a b",
            "a\0b",
            "%2e%2e",
            "a.git/b",
            "a.git.git",
            "x.lock",
            "é",
        ] {
            assert!(canonical(name).is_err(), "{name:?} was accepted");
        }
        assert!(canonical(&"a/".repeat(9)).is_err());
        assert!(canonical(&"a".repeat(201)).is_err());
    }

    /// Names put together from the pieces that make a path mean something
    /// else, with or without a leading `/`, a `.git` suffix and a trailing
    /// `/`.
    fn hostile_name() -> impl Strategy<Value = String> {
        let piece = prop::sample::select(vec![
            "a", "app", "", ".", "..", ".git", "a.git", "git", "x.lock", ".hidden", "a\\b", "a b",
            "%2e%2e", "~", "a-b_c.d",
        ]);
        let pieces = prop::collection::vec(piece, 1..10);
        (pieces, any::<[bool; 3]>()).prop_map(|(pieces, [lead, suffix, trail])| {
            let mut name = String::from(if lead { "/" } else { "" });
            name.push_str(&pieces.join("/"));
            name.push_str(if suffix { ".git" } else { "" });
            name.push_str(if trail { "/" } else { "" });
            name
        })
    }

    proptest! {
        // Whatever is accepted lands in a directory of its own under the
        // root, and is named one way only.
        #[test]
        fn an_accepted_name_stays_under_the_root_and_is_spelled_one_way(name in hostile_name()) {
            let Ok(parsed) = RepoName::parse(&name) else {
                return Ok(());
            };
            let root = Path::new("/srv/git");
            let directory = parsed.directory(root);
            let relative = directory.strip_prefix(root).expect("under the root");
            let components: Vec<Component> = relative.components().collect();
            prop_assert!(!components.is_empty());
            for (i, component) in components.iter().enumerate() {
                let Component::Normal(part) = component else {
                    return Err(TestCaseError::fail(format!("{name:?}: {component:?}")));
                };
                let part = part.to_str().expect("ASCII");
                prop_assert!(!part.starts_with('.'), "{name:?}: {part:?}");
                // Only the last is a repository's directory: no name
                // nests inside another repository.
                prop_assert_eq!(part.ends_with(".git"), i == components.len() - 1);
            }
            let again = RepoName::parse(parsed.as_str());
            prop_assert_eq!(again.as_ref(), Ok(&parsed));
            prop_assert_eq!(RepoName::from_directory(relative), Some(parsed.clone()));
        }
    }

    #[test]
    fn the_directory_is_the_last_component_with_git() {
        let name = RepoName::parse("team/app").unwrap();
        assert_eq!(
            name.directory(Path::new("/r")),
            Path::new("/r/team/app.git")
        );
        assert_eq!(
            RepoName::from_directory(Path::new("team/app.git")),
            Some(name)
        );
        assert_eq!(RepoName::from_directory(Path::new("team")), None);
    }
}
