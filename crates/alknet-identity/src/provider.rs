//! [`StoreIdentities`]: the node's view of `identities.redb`.
//!
//! One `stat` per lookup decides whether the in-memory snapshot still matches
//! the file; only a change reloads it (see the crate documentation for why the
//! reload copies the file under a shared lock instead of opening it with redb).

use std::io::{self, Read};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant, SystemTime};

use alknet_core::{Fingerprint, Identity, IdentityProvider};

use crate::snapshot::Snapshot;
use crate::store::{OPEN_RETRY_LIMIT, StoreError, unix_now};

/// A snapshot loaded less than this long after the file's last modification is
/// reloaded on the next lookup: a write in the same timestamp tick as our copy
/// would otherwise go unnoticed. Covers the coarse kernel clock (≤ 10 ms) with
/// a wide margin.
pub const RACY_WINDOW: Duration = Duration::from_millis(50);

/// Resolves tokens and client certificates from an identity store file,
/// following changes made by other processes (the CLI) without a restart.
///
/// Lookups answer from an in-memory snapshot; each one `stat`s the file and
/// reloads the snapshot first if the file's `(mtime, size, inode)` changed. A
/// reload never waits for another process: if a writer holds the file, the
/// current snapshot answers and the next lookup tries again.
#[derive(Debug)]
pub struct StoreIdentities {
    path: PathBuf,
    state: Mutex<State>,
}

#[derive(Debug)]
struct State {
    /// The file as it was when `snapshot` was loaded (or a reload last failed).
    seen: Seen,
    snapshot: Arc<Snapshot>,
}

#[derive(Debug, Clone, Copy)]
struct Seen {
    file: FileState,
    /// Whether `file` can be trusted to change with the next write (see
    /// [`RACY_WINDOW`]).
    settled: bool,
}

/// What one `stat` of the file says.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum FileState {
    Missing,
    Unreadable(io::ErrorKind),
    Present(Stamp),
}

/// The file's identity and version as `stat` reports it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Stamp {
    modified: SystemTime,
    len: u64,
    inode: u64,
}

impl Stamp {
    fn of(metadata: &std::fs::Metadata) -> io::Result<Self> {
        #[cfg(unix)]
        let inode = std::os::unix::fs::MetadataExt::ino(metadata);
        #[cfg(not(unix))]
        let inode = 0;
        Ok(Self {
            modified: metadata.modified()?,
            len: metadata.len(),
            inode,
        })
    }

    /// Whether any later write must show a later mtime than this one.
    fn settled_at(&self, now: SystemTime) -> bool {
        now.duration_since(self.modified)
            .is_ok_and(|age| age >= RACY_WINDOW)
    }
}

/// The outcome of one reload attempt.
enum Load {
    Loaded(Stamp, Snapshot),
    /// Another process holds the file; try again on the next lookup.
    Busy,
    Missing,
}

impl StoreIdentities {
    /// Loads the store at `path`. A missing file is an empty store (it may be
    /// created later); a file that cannot be read or parsed is an error here,
    /// so that a node does not start with a broken store. While another
    /// process holds the file, waits up to [`OPEN_RETRY_LIMIT`].
    pub fn open(path: impl Into<PathBuf>) -> Result<Self, StoreError> {
        let path = path.into();
        let started = Instant::now();
        loop {
            let (seen, snapshot) = match load(&path)? {
                Load::Loaded(stamp, snapshot) => (
                    Seen {
                        file: FileState::Present(stamp),
                        settled: stamp.settled_at(SystemTime::now()),
                    },
                    snapshot,
                ),
                Load::Missing => (
                    Seen {
                        file: FileState::Missing,
                        settled: true,
                    },
                    Snapshot::default(),
                ),
                Load::Busy => {
                    let waited = started.elapsed();
                    if waited >= OPEN_RETRY_LIMIT {
                        return Err(StoreError::Busy { path, waited });
                    }
                    std::thread::sleep(Duration::from_millis(10));
                    continue;
                }
            };
            return Ok(Self {
                path,
                state: Mutex::new(State {
                    seen,
                    snapshot: Arc::new(snapshot),
                }),
            });
        }
    }

    /// The file this provider follows.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Whether the last load is trusted to match the file until its stamp changes.
    #[cfg(test)]
    pub(crate) fn is_settled(&self) -> bool {
        let state = self.state.lock().unwrap_or_else(PoisonError::into_inner);
        state.seen.settled
    }

    /// The current snapshot, reloaded first if the file changed.
    fn current(&self) -> Arc<Snapshot> {
        let observed = observe(&self.path);
        let mut state = self.state.lock().unwrap_or_else(PoisonError::into_inner);
        let unchanged = state.seen.settled && state.seen.file == observed;
        if !unchanged {
            self.reload(&mut state, observed);
        }
        state.snapshot.clone()
    }

    fn reload(&self, state: &mut State, observed: FileState) {
        match load(&self.path) {
            Ok(Load::Loaded(stamp, snapshot)) => {
                tracing::debug!(path = %self.path.display(), "identity store reloaded");
                state.snapshot = Arc::new(snapshot);
                state.seen = Seen {
                    file: FileState::Present(stamp),
                    settled: stamp.settled_at(SystemTime::now()),
                };
            }
            Ok(Load::Busy) => {
                tracing::debug!(path = %self.path.display(), "identity store busy; reloading later");
            }
            Ok(Load::Missing) => {
                if state.seen.file != FileState::Missing {
                    tracing::warn!(
                        path = %self.path.display(),
                        "identity store is gone; no tokens or peers resolve until it is back"
                    );
                }
                state.snapshot = Arc::new(Snapshot::default());
                state.seen = Seen {
                    file: FileState::Missing,
                    settled: true,
                };
            }
            Err(error) => {
                tracing::warn!(
                    path = %self.path.display(),
                    %error,
                    "cannot reload the identity store; keeping the last good entries"
                );
                // Not retried (nor logged again) until the file changes.
                state.seen = Seen {
                    file: observed,
                    settled: true,
                };
            }
        }
    }
}

impl IdentityProvider for StoreIdentities {
    fn resolve_fingerprint(&self, fingerprint: &Fingerprint) -> Option<Identity> {
        self.current().resolve_fingerprint(fingerprint)
    }

    fn resolve_token(&self, token: &str) -> Option<Identity> {
        self.current().resolve_token_at(token, unix_now())
    }
}

fn observe(path: &Path) -> FileState {
    match std::fs::metadata(path).and_then(|m| Stamp::of(&m)) {
        Ok(stamp) => FileState::Present(stamp),
        Err(e) if e.kind() == io::ErrorKind::NotFound => FileState::Missing,
        Err(e) => FileState::Unreadable(e.kind()),
    }
}

/// Copies the file under a shared lock and parses the copy.
fn load(path: &Path) -> Result<Load, StoreError> {
    let io_error = |source| StoreError::Io {
        path: path.to_owned(),
        source,
    };
    let file = match std::fs::File::open(path) {
        Ok(file) => file,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(Load::Missing),
        Err(e) => return Err(io_error(e)),
    };
    let Some(mut file) = lock_shared(file).map_err(io_error)? else {
        return Ok(Load::Busy);
    };
    // Under the lock no writer can change the file, so the stamp describes
    // exactly the bytes copied.
    let stamp = file
        .metadata()
        .and_then(|m| Stamp::of(&m))
        .map_err(io_error)?;
    let mut bytes = Vec::with_capacity(usize::try_from(stamp.len).unwrap_or(0));
    file.read_to_end(&mut bytes).map_err(io_error)?;
    drop(file);
    Ok(Load::Loaded(stamp, Snapshot::from_bytes(bytes, path)?))
}

#[cfg(unix)]
type Locked = nix::fcntl::Flock<std::fs::File>;
#[cfg(not(unix))]
type Locked = std::fs::File;

/// Takes a shared `flock` without waiting; `None` while a writer (redb's
/// exclusive lock) holds the file. The lock is released when the result drops.
#[cfg(unix)]
fn lock_shared(file: std::fs::File) -> io::Result<Option<Locked>> {
    use nix::errno::Errno;
    use nix::fcntl::{Flock, FlockArg};
    match Flock::lock(file, FlockArg::LockSharedNonblock) {
        Ok(locked) => Ok(Some(locked)),
        Err((_, Errno::EWOULDBLOCK)) => Ok(None),
        Err((_, errno)) => Err(io::Error::from(errno)),
    }
}

/// Without `flock` the copy is not synchronised with writers: a copy torn by a
/// concurrent write fails to parse (keeping the last good snapshot) or is
/// replaced when the writer's change is noticed.
#[cfg(not(unix))]
fn lock_shared(file: std::fs::File) -> io::Result<Option<Locked>> {
    Ok(Some(file))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_stamp_is_settled_only_a_racy_window_after_its_mtime() {
        let modified = SystemTime::now();
        let stamp = Stamp {
            modified,
            len: 1,
            inode: 1,
        };
        assert!(!stamp.settled_at(modified));
        assert!(!stamp.settled_at(modified + RACY_WINDOW / 2));
        assert!(stamp.settled_at(modified + RACY_WINDOW));
        // An mtime in the future (clock skew) is never trusted.
        assert!(!stamp.settled_at(modified - Duration::from_secs(1)));
    }
}
