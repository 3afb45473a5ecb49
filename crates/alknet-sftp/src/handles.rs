//! A session's open handles, and the order their requests run in.
//!
//! Requests on one handle run one after another in the order they arrived
//! (a write then a read of the same bytes must see the write); requests on
//! different handles, and path requests, run side by side. Each handle
//! keeps the completion signal of its latest request: the next request
//! waits on it, then leaves its own.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError};

use tokio::sync::oneshot;

use crate::storage::Storage;

/// What a handle holds open.
pub(crate) enum Opened<S: Storage> {
    /// A file, and whether it was opened under a write grant (which
    /// `fsetstat` needs).
    File { file: S::File, writable: bool },
    /// A directory being listed, with the storage it was opened from.
    Dir { dir: Mutex<S::Dir>, storage: S },
}

/// One open handle.
pub(crate) struct Handle<S: Storage> {
    pub(crate) opened: Opened<S>,
    /// Completes when the latest request queued on this handle finishes.
    tail: Mutex<Option<oneshot::Receiver<()>>>,
}

/// A request's place in its handle's queue: wait for [`Turn::wait`], and
/// the next request runs once this is dropped.
pub(crate) struct Turn {
    previous: Option<oneshot::Receiver<()>>,
    _done: oneshot::Sender<()>,
}

impl Turn {
    /// Returns when every earlier request on the handle has finished.
    pub(crate) async fn wait(&mut self) {
        if let Some(previous) = self.previous.take() {
            // An error means the earlier request finished (or was dropped).
            let _ = previous.await;
        }
    }
}

/// The open handles of a session, at most `max`.
pub(crate) struct Handles<S: Storage> {
    open: Mutex<HashMap<String, Arc<Handle<S>>>>,
    next: AtomicU64,
    max: usize,
}

impl<S: Storage> Handles<S> {
    pub(crate) fn new(max: usize) -> Self {
        Self {
            open: Mutex::new(HashMap::new()),
            next: AtomicU64::new(0),
            max,
        }
    }

    fn open(&self) -> std::sync::MutexGuard<'_, HashMap<String, Arc<Handle<S>>>> {
        self.open.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Adds a handle; `None` when the session holds `max` already.
    pub(crate) fn insert(&self, opened: Opened<S>) -> Option<String> {
        let mut open = self.open();
        if open.len() >= self.max {
            return None;
        }
        let name = self.next.fetch_add(1, Ordering::Relaxed).to_string();
        let handle = Handle {
            opened,
            tail: Mutex::new(None),
        };
        open.insert(name.clone(), Arc::new(handle));
        Some(name)
    }

    /// The handle called `name` and the request's turn on it; `None` if
    /// no such handle is open.
    pub(crate) fn queue(&self, name: &str) -> Option<(Arc<Handle<S>>, Turn)> {
        let handle = self.open().get(name).cloned()?;
        let (done, finished) = oneshot::channel();
        let previous = handle
            .tail
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .replace(finished);
        Some((
            handle,
            Turn {
                previous,
                _done: done,
            },
        ))
    }

    /// Whether `name` is still open (a close queued earlier may have run).
    pub(crate) fn contains(&self, name: &str) -> bool {
        self.open().contains_key(name)
    }

    /// Closes `name`; false if it was not open.
    pub(crate) fn remove(&self, name: &str) -> bool {
        self.open().remove(name).is_some()
    }

    /// How many are open.
    pub(crate) fn len(&self) -> usize {
        self.open().len()
    }
}
