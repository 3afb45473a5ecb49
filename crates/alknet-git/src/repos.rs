//! The repositories on disk, managed and read with gix.
//!
//! A repository is a bare directory `<root>/<name>.git`. Creating one
//! builds it in a scratch directory and renames it into place, and
//! deleting one renames it out of the way before removing it, so another
//! request sees a whole repository or none. Everything here blocks: async
//! callers run it on the blocking pool.

use std::io;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::name::{InvalidName, RepoName};

/// The branch a new repository's `HEAD` names.
pub const DEFAULT_BRANCH: &str = "main";

/// Scratch space under the root, for repositories being created or
/// deleted and for push logs; its name is no valid repository name.
const SCRATCH: &str = ".alknet";

/// Where the time and identity of the last accepted push are kept, inside
/// the repository directory (git ignores files it does not know).
const LAST_PUSH: &str = "alknet-last-push.json";

/// Why a repository operation failed.
#[derive(Debug, thiserror::Error)]
pub enum RepoError {
    /// No such repository.
    #[error("repository {0} not found")]
    NotFound(RepoName),
    /// The name is taken.
    #[error("repository {0} already exists")]
    AlreadyExists(RepoName),
    /// The name is not a valid repository name.
    #[error(transparent)]
    InvalidName(#[from] InvalidName),
    /// The branch name is not one git accepts.
    #[error("invalid branch name {0:?}")]
    InvalidBranch(String),
    /// The filesystem refused.
    #[error("{0}")]
    Io(#[from] io::Error),
    /// gix could not read the repository.
    #[error("cannot read repository {name}: {message}")]
    Read {
        /// The repository.
        name: RepoName,
        /// gix's error.
        message: String,
    },
}

/// A reference and the object it names.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct RefEntry {
    /// The full name (`refs/heads/main`).
    pub name: String,
    /// The object id, hex.
    pub id: String,
    /// For an annotated tag: the object it peels to (`git ls-remote`'s
    /// `^{}` line).
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub peeled: Option<String>,
}

/// A repository's references, as `git ls-remote` lists them.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Refs {
    /// The branch `HEAD` names (`refs/heads/main`); `None` when detached.
    pub head: Option<String>,
    /// The object `HEAD` resolves to; `None` while its branch is unborn.
    pub head_id: Option<String>,
    /// Every reference, sorted by name.
    pub refs: Vec<RefEntry>,
}

/// What `git/describe` tells about a repository.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Description {
    /// Its name (`team/app`).
    pub name: String,
    /// The branch `HEAD` names, short (`main`).
    pub default_branch: Option<String>,
    /// Bytes on disk.
    pub size: u64,
    /// References held.
    pub refs: usize,
    /// The last push the node accepted, if any.
    pub last_push: Option<LastPush>,
}

/// When a repository was last pushed to, and by whom.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct LastPush {
    /// RFC 3339.
    pub at: String,
    /// The identity that pushed (`None`: anonymous).
    pub identity: Option<String>,
}

/// The repositories under one root.
#[derive(Clone, Debug)]
pub struct Repositories {
    root: PathBuf,
}

impl Repositories {
    /// The repositories under `root`, which is created (mode 0700) if
    /// missing; leftovers of an interrupted create or delete are removed.
    pub fn open_or_create(root: &Path) -> io::Result<Self> {
        create_private_dir(root)?;
        let scratch = root.join(SCRATCH);
        if scratch.exists() {
            std::fs::remove_dir_all(&scratch)?;
        }
        create_private_dir(&scratch)?;
        Ok(Self {
            root: root.to_owned(),
        })
    }

    /// The repositories under `root` as another process (the CLI) sees
    /// them while a node may be serving them: nothing of the node's is
    /// removed.
    pub fn open_existing(root: &Path) -> io::Result<Self> {
        create_private_dir(&root.join(SCRATCH))?;
        Ok(Self {
            root: root.to_owned(),
        })
    }

    /// The root directory.
    pub fn root(&self) -> &Path {
        &self.root
    }

    /// A fresh path in the scratch directory.
    pub(crate) fn scratch_path(&self, what: &str) -> PathBuf {
        self.root
            .join(SCRATCH)
            .join(format!("{what}-{}", uuid::Uuid::new_v4().simple()))
    }

    /// The directory of `name`, if it holds a repository.
    pub fn directory(&self, name: &RepoName) -> Result<PathBuf, RepoError> {
        let dir = name.directory(&self.root);
        // The repository itself must not be a link: a name resolves only
        // to directories the node made.
        match std::fs::symlink_metadata(dir.join("HEAD")) {
            Ok(meta) if meta.is_file() && !is_link(&dir) => Ok(dir),
            _ => Err(RepoError::NotFound(name.clone())),
        }
    }

    /// Creates an empty bare repository whose `HEAD` names `branch`
    /// (default [`DEFAULT_BRANCH`]).
    pub fn create(&self, name: &RepoName, branch: Option<&str>) -> Result<PathBuf, RepoError> {
        let branch = branch.unwrap_or(DEFAULT_BRANCH);
        let full = format!("refs/heads/{branch}");
        if gix::validate::reference::name(full.as_str().into()).is_err() {
            return Err(RepoError::InvalidBranch(branch.to_owned()));
        }
        let target = name.directory(&self.root);
        if target.exists() {
            return Err(RepoError::AlreadyExists(name.clone()));
        }
        let scratch = self.scratch_path("create");
        gix::init_bare(&scratch).map_err(|error| RepoError::Read {
            name: name.clone(),
            message: error.to_string(),
        })?;
        std::fs::write(scratch.join("HEAD"), format!("ref: {full}\n"))?;
        if let Some(parent) = target.parent() {
            std::fs::create_dir_all(parent)?;
        }
        // rename(2) onto an existing non-empty directory fails: two creates
        // of one name cannot both succeed.
        match std::fs::rename(&scratch, &target) {
            Ok(()) => Ok(target),
            Err(error) => {
                let _ = std::fs::remove_dir_all(&scratch);
                if target.exists() {
                    Err(RepoError::AlreadyExists(name.clone()))
                } else {
                    Err(error.into())
                }
            }
        }
    }

    /// Deletes a repository and everything in it.
    pub fn delete(&self, name: &RepoName) -> Result<(), RepoError> {
        let dir = self.directory(name)?;
        let doomed = self.scratch_path("delete");
        std::fs::rename(&dir, &doomed)?;
        std::fs::remove_dir_all(&doomed)?;
        // Leave no empty namespace directories behind (`team/`).
        let mut parent = dir.parent();
        while let Some(p) = parent.filter(|p| *p != self.root) {
            if std::fs::remove_dir(p).is_err() {
                break;
            }
            parent = p.parent();
        }
        Ok(())
    }

    /// Every repository, sorted by name.
    pub fn list(&self) -> io::Result<Vec<RepoName>> {
        let mut names = Vec::new();
        self.walk(&self.root, 0, &mut names)?;
        names.sort();
        Ok(names)
    }

    fn walk(&self, dir: &Path, depth: usize, names: &mut Vec<RepoName>) -> io::Result<()> {
        if depth >= 8 {
            return Ok(());
        }
        for entry in std::fs::read_dir(dir)? {
            let entry = entry?;
            if !entry.file_type()?.is_dir() {
                continue;
            }
            let path = entry.path();
            let Ok(relative) = path.strip_prefix(&self.root) else {
                continue;
            };
            if entry.file_name().to_string_lossy().ends_with(".git") {
                if let Some(name) = RepoName::from_directory(relative) {
                    names.push(name);
                }
            } else if !entry.file_name().to_string_lossy().starts_with('.') {
                self.walk(&path, depth + 1, names)?;
            }
        }
        Ok(())
    }

    /// The references of `name`, read with gix.
    pub fn refs(&self, name: &RepoName) -> Result<Refs, RepoError> {
        let dir = self.directory(name)?;
        let read = |error: &dyn std::fmt::Display| RepoError::Read {
            name: name.clone(),
            message: error.to_string(),
        };
        let repo = gix::open(dir).map_err(|e| read(&e))?;
        let head = repo.head_name().map_err(|e| read(&e))?;
        let head_id = repo.head_id().ok().map(|id| id.to_string());
        let mut refs = Vec::new();
        let platform = repo.references().map_err(|e| read(&e))?;
        for reference in platform.all().map_err(|e| read(&e))? {
            let mut reference = reference.map_err(|e| read(&e))?;
            let name = reference.name().as_bstr().to_string();
            let direct = reference.target().try_id().map(ToOwned::to_owned);
            let peeled = reference.peel_to_id().map_err(|e| read(&e))?.detach();
            let id = direct.unwrap_or(peeled);
            refs.push(RefEntry {
                name,
                id: id.to_string(),
                peeled: (id != peeled).then(|| peeled.to_string()),
            });
        }
        refs.sort_by(|a, b| a.name.cmp(&b.name));
        Ok(Refs {
            head: head.map(|h| h.as_bstr().to_string()),
            head_id,
            refs,
        })
    }

    /// What `git/describe` reports about `name`.
    pub fn describe(&self, name: &RepoName) -> Result<Description, RepoError> {
        let refs = self.refs(name)?;
        let dir = self.directory(name)?;
        let last_push = std::fs::read(dir.join(LAST_PUSH))
            .ok()
            .and_then(|bytes| serde_json::from_slice(&bytes).ok());
        Ok(Description {
            name: name.to_string(),
            default_branch: refs
                .head
                .as_deref()
                .map(|h| h.strip_prefix("refs/heads/").unwrap_or(h).to_owned()),
            size: size_of(&dir)?,
            refs: refs.refs.len(),
            last_push,
        })
    }

    /// Records an accepted push (for [`Description::last_push`]).
    pub fn record_push(&self, name: &RepoName, push: &LastPush) -> Result<(), RepoError> {
        let dir = self.directory(name)?;
        let scratch = self.scratch_path("last-push");
        std::fs::write(
            &scratch,
            serde_json::to_vec(push).map_err(io::Error::other)?,
        )?;
        std::fs::rename(&scratch, dir.join(LAST_PUSH))?;
        Ok(())
    }
}

fn is_link(path: &Path) -> bool {
    std::fs::symlink_metadata(path).is_ok_and(|m| m.file_type().is_symlink())
}

fn create_private_dir(path: &Path) -> io::Result<()> {
    use std::os::unix::fs::DirBuilderExt;
    match std::fs::DirBuilder::new()
        .recursive(true)
        .mode(0o700)
        .create(path)
    {
        Ok(()) => Ok(()),
        Err(error) => Err(io::Error::new(
            error.kind(),
            format!("{}: {error}", path.display()),
        )),
    }
}

/// Bytes of the files under `dir` (links not followed).
fn size_of(dir: &Path) -> io::Result<u64> {
    let mut total = 0;
    let mut pending = vec![dir.to_owned()];
    while let Some(dir) = pending.pop() {
        for entry in std::fs::read_dir(&dir)? {
            let entry = entry?;
            let kind = entry.file_type()?;
            if kind.is_dir() {
                pending.push(entry.path());
            } else if kind.is_file() {
                total += entry.metadata()?.len();
            }
        }
    }
    Ok(total)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn name(n: &str) -> RepoName {
        RepoName::parse(n).unwrap()
    }

    #[test]
    fn create_list_describe_delete() {
        let root = tempfile::tempdir().unwrap();
        let repos = Repositories::open_or_create(&root.path().join("git")).unwrap();
        repos.create(&name("team/app"), None).unwrap();
        repos.create(&name("solo"), Some("trunk")).unwrap();
        assert!(matches!(
            repos.create(&name("solo"), None),
            Err(RepoError::AlreadyExists(_))
        ));
        assert!(matches!(
            repos.create(&name("x"), Some("bad..branch")),
            Err(RepoError::InvalidBranch(_))
        ));
        assert_eq!(repos.list().unwrap(), vec![name("solo"), name("team/app")]);

        let refs = repos.refs(&name("solo")).unwrap();
        assert_eq!(refs.head.as_deref(), Some("refs/heads/trunk"));
        assert_eq!(refs.head_id, None);
        assert!(refs.refs.is_empty());
        let described = repos.describe(&name("team/app")).unwrap();
        assert_eq!(described.default_branch.as_deref(), Some("main"));
        assert!(described.size > 0);
        assert_eq!(described.last_push, None);

        let push = LastPush {
            at: "2026-12-03T00:00:00Z".into(),
            identity: Some("alice".into()),
        };
        repos.record_push(&name("team/app"), &push).unwrap();
        assert_eq!(
            repos.describe(&name("team/app")).unwrap().last_push,
            Some(push)
        );

        repos.delete(&name("team/app")).unwrap();
        assert!(!root.path().join("git/team").exists());
        assert!(matches!(
            repos.refs(&name("team/app")),
            Err(RepoError::NotFound(_))
        ));
        assert_eq!(repos.list().unwrap(), vec![name("solo")]);
    }

    #[test]
    fn a_link_in_place_of_a_repository_is_not_one() {
        let root = tempfile::tempdir().unwrap();
        let repos = Repositories::open_or_create(&root.path().join("git")).unwrap();
        let elsewhere = root.path().join("elsewhere.git");
        gix::init_bare(&elsewhere).unwrap();
        std::os::unix::fs::symlink(&elsewhere, root.path().join("git/linked.git")).unwrap();
        assert!(matches!(
            repos.directory(&name("linked")),
            Err(RepoError::NotFound(_))
        ));
    }
}
