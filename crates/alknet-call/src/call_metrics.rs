//! What every dispatched call adds to the node's metrics (the `metrics`
//! facade; the binary installs the Prometheus recorder, and without one
//! these are no-ops):
//!
//! - `alknet_calls_total{operation, code}`: finished calls, `code` the error
//!   code or `OK`;
//! - `alknet_call_duration_seconds{operation}`: a query's or mutation's time
//!   from dispatch to its answer (subscriptions run as long as their caller
//!   wants, so they have no duration here).
//!
//! `operation` is a registered name or `(unknown)`: a caller chooses the
//! names it sends, and must not be able to create series.
//!
//! Counting is off until [`enable`]: labels are allocated and the reply
//! wrapped per call, which costs about a fifth of an answered request in the
//! session benchmark (docs/benchmarks.md), so a node without a metrics
//! endpoint does not pay it.

use std::sync::atomic::{AtomicBool, Ordering};

use tokio::time::Instant;

static ENABLED: AtomicBool = AtomicBool::new(false);

/// Counts every call from now on; the binary calls it when it installs a
/// metrics recorder.
pub fn enable() {
    ENABLED.store(true, Ordering::Relaxed);
}

pub(crate) fn enabled() -> bool {
    ENABLED.load(Ordering::Relaxed)
}

use crate::error::CallError;

/// The label of names the registry does not hold.
pub(crate) const UNKNOWN_OPERATION: &str = "(unknown)";

/// One call, from dispatch to its end; counted once, by [`Self::finish`] or,
/// when the caller stopped waiting (a timeout, a cancel, a closed session),
/// on drop.
pub(crate) struct CallRecord {
    operation: String,
    started: Instant,
    deadline: Option<Instant>,
    timed: bool,
    finished: bool,
}

impl CallRecord {
    /// A query or mutation (timed) or a subscription (not timed).
    pub(crate) fn start(operation: String, timed: bool, deadline: Option<Instant>) -> Self {
        Self {
            operation,
            started: Instant::now(),
            deadline,
            timed,
            finished: false,
        }
    }

    /// Counts a call refused before its handler ran.
    pub(crate) fn refused(operation: &str, error: &CallError) {
        count(operation, error.code.as_str());
    }

    /// Counts the outcome.
    pub(crate) fn finish<T>(mut self, outcome: &Result<T, CallError>) {
        self.finished = true;
        let code = match outcome {
            Ok(_) => "OK",
            Err(error) => error.code.as_str(),
        };
        self.record(code);
    }

    fn record(&self, code: &str) {
        count(&self.operation, code);
        if self.timed {
            metrics::histogram!("alknet_call_duration_seconds", "operation" => self.operation.clone())
                .record(self.started.elapsed().as_secs_f64());
        }
    }
}

impl Drop for CallRecord {
    fn drop(&mut self) {
        if !self.finished {
            // Dropped unanswered: the deadline passed (the entry point answers
            // TIMEOUT), or the caller went away.
            let timed_out = self.deadline.is_some_and(|d| Instant::now() >= d);
            if timed_out {
                self.record(CallError::timeout().code.as_str());
            } else {
                self.record("CANCELLED");
            }
        }
    }
}

fn count(operation: &str, code: &str) {
    metrics::counter!(
        "alknet_calls_total",
        "operation" => operation.to_owned(),
        "code" => code.to_owned()
    )
    .increment(1);
}
