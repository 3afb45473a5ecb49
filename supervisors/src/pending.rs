//! The handshakes in progress on one listener, at most
//! `limits.max_pending_handshakes` at once.
//!
//! A full table does not turn the newcomer away: that would let anyone who
//! opens sockets and stays silent lock every client out until the handshake
//! timeout. Instead the newcomer evicts the oldest handshake whose peer has
//! not spoken yet (TCP: sent no byte; QUIC: address not validated), and only
//! when every peer has spoken, the oldest of all. A silent socket then lives
//! only until `capacity` newer connections arrive, while a client that sends
//! its ClientHello at once — every real client — is never the one evicted
//! unless the table is full of peers that answered too.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError};

use tokio_util::sync::CancellationToken;

/// How far a pending handshake's peer has shown it is there.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Progress {
    /// Nothing received yet (TCP), or an address not validated (QUIC).
    Silent,
    /// Bytes received (TCP), or an address validated by a Retry (QUIC).
    Answered,
}

/// One listener's pending handshakes.
#[derive(Debug)]
pub(crate) struct PendingHandshakes {
    capacity: usize,
    table: Mutex<Table>,
    evicted: AtomicU64,
}

#[derive(Debug, Default)]
struct Table {
    next_id: u64,
    /// Oldest first (ids grow with arrival), per progress.
    silent: BTreeMap<u64, CancellationToken>,
    answered: BTreeMap<u64, CancellationToken>,
}

impl Table {
    fn len(&self) -> usize {
        self.silent.len() + self.answered.len()
    }

    fn remove(&mut self, id: u64) -> Option<CancellationToken> {
        self.silent
            .remove(&id)
            .or_else(|| self.answered.remove(&id))
    }

    fn pop_oldest(&mut self) -> Option<CancellationToken> {
        match self.silent.pop_first() {
            Some((_, evict)) => Some(evict),
            None => self.answered.pop_first().map(|(_, evict)| evict),
        }
    }
}

/// A new handshake's place in the table.
pub(crate) struct Admitted {
    pub(crate) slot: Slot,
    /// The table was full: the oldest handshake (silent ones first) was
    /// evicted to make room.
    pub(crate) evicted_one: bool,
}

impl PendingHandshakes {
    pub(crate) fn new(capacity: usize) -> Arc<Self> {
        Arc::new(Self {
            capacity: capacity.max(1),
            table: Mutex::new(Table::default()),
            evicted: AtomicU64::new(0),
        })
    }

    /// Takes a place for a new handshake, evicting the oldest if full.
    pub(crate) fn admit(self: &Arc<Self>, progress: Progress) -> Admitted {
        let evict = CancellationToken::new();
        let (id, evicted) = {
            let mut table = self.lock();
            let evicted = if table.len() >= self.capacity {
                table.pop_oldest()
            } else {
                None
            };
            let id = table.next_id;
            table.next_id += 1;
            match progress {
                Progress::Silent => table.silent.insert(id, evict.clone()),
                Progress::Answered => table.answered.insert(id, evict.clone()),
            };
            (id, evicted)
        };
        let evicted_one = evicted.is_some();
        if let Some(evicted) = evicted {
            self.evicted.fetch_add(1, Ordering::Relaxed);
            evicted.cancel();
        }
        Admitted {
            slot: Slot {
                table: self.clone(),
                id,
                evict,
            },
            evicted_one,
        }
    }

    /// Handshakes in progress now.
    pub(crate) fn len(&self) -> usize {
        self.lock().len()
    }

    pub(crate) fn capacity(&self) -> usize {
        self.capacity
    }

    /// Handshakes evicted since start.
    pub(crate) fn evicted(&self) -> u64 {
        self.evicted.load(Ordering::Relaxed)
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Table> {
        self.table.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

/// One pending handshake; leaves the table when dropped.
pub(crate) struct Slot {
    table: Arc<PendingHandshakes>,
    id: u64,
    evict: CancellationToken,
}

impl Slot {
    /// The peer has spoken: evict it only after every silent one.
    pub(crate) fn answered(&self) {
        let mut table = self.table.lock();
        if let Some(evict) = table.silent.remove(&self.id) {
            table.answered.insert(self.id, evict);
        }
    }

    /// Runs `work` until it completes or this handshake is evicted (`None`).
    pub(crate) async fn unless_evicted<F: Future>(&self, work: F) -> Option<F::Output> {
        tokio::select! {
            biased;
            () = self.evict.cancelled() => None,
            output = work => Some(output),
        }
    }
}

impl Drop for Slot {
    fn drop(&mut self) {
        self.table.lock().remove(self.id);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_full_table_evicts_the_oldest_silent_handshake_first() {
        let pending = PendingHandshakes::new(3);
        let talker = pending.admit(Progress::Silent);
        talker.slot.answered();
        let first_silent = pending.admit(Progress::Silent);
        let second_silent = pending.admit(Progress::Silent);
        assert!(!second_silent.evicted_one);
        assert_eq!(pending.len(), 3);

        let newcomer = pending.admit(Progress::Silent);
        assert!(newcomer.evicted_one);
        assert!(first_silent.slot.evict.is_cancelled());
        assert!(
            !talker.slot.evict.is_cancelled(),
            "the talker is older but answered"
        );
        assert!(!second_silent.slot.evict.is_cancelled());
        assert_eq!(pending.len(), 3, "never more than the capacity");
        assert_eq!(pending.evicted(), 1);
    }

    #[test]
    fn when_every_peer_answered_the_oldest_goes() {
        let pending = PendingHandshakes::new(2);
        let oldest = pending.admit(Progress::Answered);
        let younger = pending.admit(Progress::Answered);
        let newcomer = pending.admit(Progress::Answered);
        assert!(newcomer.evicted_one);
        assert!(oldest.slot.evict.is_cancelled());
        assert!(!younger.slot.evict.is_cancelled());
    }

    #[test]
    fn a_finished_handshake_frees_its_place() {
        let pending = PendingHandshakes::new(1);
        let done = pending.admit(Progress::Silent);
        drop(done);
        assert_eq!(pending.len(), 0);
        let next = pending.admit(Progress::Silent);
        assert!(!next.evicted_one);
        // An evicted slot dropped late must not remove anyone else's entry.
        let newcomer = pending.admit(Progress::Silent);
        assert!(newcomer.evicted_one);
        drop(next);
        assert_eq!(pending.len(), 1);
        assert_eq!(pending.capacity(), 1);
    }

    #[tokio::test]
    async fn eviction_interrupts_the_handshake() {
        let pending = PendingHandshakes::new(1);
        let victim = pending.admit(Progress::Silent);
        let waiting = tokio::spawn(async move {
            victim
                .slot
                .unless_evicted(std::future::pending::<()>())
                .await
        });
        let _newcomer = pending.admit(Progress::Silent);
        let outcome = tokio::time::timeout(std::time::Duration::from_secs(5), waiting)
            .await
            .expect("the evicted handshake stops at once")
            .unwrap();
        assert_eq!(outcome, None);
    }
}
