//! Admission control: global and per-protocol connection caps.
//!
//! A connection holds a [`Permit`] for its whole life (inside its actor's
//! state), so the counts can never drift from the live connections: however
//! the actor ends, dropping its state releases the permit.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};

use serde::Serialize;
use tokio::sync::Notify;

/// Counters of one cap.
#[derive(Debug)]
pub(crate) struct Gauge {
    /// Changed live by a reload (`NodeHandle::set_connection_caps`).
    limit: AtomicUsize,
    open: AtomicUsize,
    refused: AtomicU64,
}

impl Gauge {
    pub(crate) fn new(limit: usize) -> Self {
        Self {
            limit: AtomicUsize::new(limit),
            open: AtomicUsize::new(0),
            refused: AtomicU64::new(0),
        }
    }

    fn try_acquire(&self) -> bool {
        self.open
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |n| {
                (n < self.limit.load(Ordering::Relaxed)).then_some(n + 1)
            })
            .is_ok()
    }

    fn release(&self) -> usize {
        self.open.fetch_sub(1, Ordering::AcqRel) - 1
    }

    pub(crate) fn open(&self) -> usize {
        self.open.load(Ordering::Acquire)
    }

    /// A new cap for connections admitted from now on; connections open over
    /// it stay (they end on their own), as nginx keeps them on a reload.
    pub(crate) fn set_limit(&self, limit: usize) {
        self.limit.store(limit, Ordering::Relaxed);
    }

    pub(crate) fn limit(&self) -> usize {
        self.limit.load(Ordering::Relaxed)
    }

    pub(crate) fn refused(&self) -> u64 {
        self.refused.load(Ordering::Relaxed)
    }
}

/// The node-wide cap and the notification that it drained to zero.
#[derive(Debug)]
pub(crate) struct Admission {
    global: Gauge,
    idle: Notify,
}

/// Which cap refused a connection.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Refusal {
    Node,
    Protocol,
}

impl Admission {
    pub(crate) fn new(limit: usize) -> Arc<Self> {
        Arc::new(Self {
            global: Gauge::new(limit),
            idle: Notify::new(),
        })
    }

    /// Takes a slot under both caps, or counts a refusal on the cap that was full.
    pub(crate) fn try_admit(self: &Arc<Self>, protocol: &Arc<Gauge>) -> Result<Permit, Refusal> {
        if !self.global.try_acquire() {
            self.global.refused.fetch_add(1, Ordering::Relaxed);
            return Err(Refusal::Node);
        }
        if !protocol.try_acquire() {
            self.release_global();
            self.global.refused.fetch_add(1, Ordering::Relaxed);
            protocol.refused.fetch_add(1, Ordering::Relaxed);
            return Err(Refusal::Protocol);
        }
        Ok(Permit {
            admission: self.clone(),
            protocol: protocol.clone(),
        })
    }

    fn release_global(&self) {
        if self.global.release() == 0 {
            self.idle.notify_waiters();
        }
    }

    pub(crate) fn open(&self) -> usize {
        self.global.open()
    }

    pub(crate) fn global(&self) -> &Gauge {
        &self.global
    }

    pub(crate) fn refused(&self) -> u64 {
        self.global.refused()
    }

    /// Waits until no connection is open.
    pub(crate) async fn idle(&self) {
        loop {
            let notified = self.idle.notified();
            if self.open() == 0 {
                return;
            }
            notified.await;
        }
    }
}

/// One admitted connection's slot; released on drop.
#[derive(Debug)]
pub(crate) struct Permit {
    admission: Arc<Admission>,
    protocol: Arc<Gauge>,
}

impl Drop for Permit {
    fn drop(&mut self) {
        self.protocol.release();
        self.admission.release_global();
    }
}

/// Admission counters as reported by [`crate::NodeHandle::admission_stats`].
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize)]
pub struct AdmissionStats {
    /// Connections open now.
    pub open: usize,
    /// Connections refused since start (any cap).
    pub refused: u64,
    /// Per ALPN: (open, refused by the protocol cap).
    pub protocols: std::collections::BTreeMap<String, (usize, u64)>,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn caps_refuse_and_permits_release() {
        let admission = Admission::new(3);
        let proto = Arc::new(Gauge::new(2));
        let a = admission.try_admit(&proto).unwrap();
        let _b = admission.try_admit(&proto).unwrap();
        assert_eq!(admission.try_admit(&proto).unwrap_err(), Refusal::Protocol);
        assert_eq!(
            admission.open(),
            2,
            "a protocol refusal must not leak a node slot"
        );
        let other = Arc::new(Gauge::new(10));
        let _c = admission.try_admit(&other).unwrap();
        assert_eq!(admission.try_admit(&other).unwrap_err(), Refusal::Node);
        drop(a);
        assert_eq!(proto.open(), 1);
        assert!(admission.try_admit(&proto).is_ok());
        assert_eq!(admission.refused(), 2);
        assert_eq!(proto.refused(), 1);
    }

    #[tokio::test]
    async fn idle_completes_when_the_last_permit_drops() {
        let admission = Admission::new(5);
        let proto = Arc::new(Gauge::new(5));
        let permit = admission.try_admit(&proto).unwrap();
        let waiter = tokio::spawn({
            let admission = admission.clone();
            async move { admission.idle().await }
        });
        tokio::task::yield_now().await;
        assert!(!waiter.is_finished());
        drop(permit);
        tokio::time::timeout(std::time::Duration::from_secs(5), waiter)
            .await
            .expect("idle() must complete once nothing is open")
            .unwrap();
    }
}
