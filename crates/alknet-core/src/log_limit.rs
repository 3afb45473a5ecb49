//! Per-cause log rate limits.
//!
//! Some lines can be caused by anyone who reaches the port: a malformed
//! handshake, a framing error, a connection refused over a cap. Written once
//! per event, an anonymous client fills the disk as fast as it can send. A
//! [`LogLimit`] lets such a line through [`LINES_PER_WINDOW`] times per
//! [`WINDOW`] and counts the rest; the count is written as one
//! "… suppressed" line per window, when the next line of that cause comes or,
//! if the attack has stopped, when [`report_suppressed`] next runs.
//!
//! ```
//! use alknet_core::log_limit::LogLimit;
//!
//! static FRAMING: LogLimit = LogLimit::warn("closing a stream after a protocol error");
//!
//! if FRAMING.admit() {
//!     tracing::warn!("closing a stream after a protocol error: bad length");
//! }
//! ```

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Mutex, PoisonError};
use std::time::{Duration, Instant};

/// The period a cause's line budget covers.
pub const WINDOW: Duration = Duration::from_secs(10);

/// Lines of one cause written per [`WINDOW`]; the rest are counted.
pub const LINES_PER_WINDOW: u32 = 3;

/// How often the binary should call [`report_suppressed`]: summaries of a
/// window that ended reach the log at most this late.
pub const REPORT_PERIOD: Duration = Duration::from_secs(1);

/// The level a limited line and its summary are written at.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Level {
    /// Routine refusals (connection caps, handshake pressure).
    Info,
    /// Bad input and failures.
    Warn,
    /// Bugs a peer can trigger again and again (a handler that panics).
    Error,
}

/// One cause's limit; meant to live in a `static` next to its log line.
#[derive(Debug)]
pub struct LogLimit {
    cause: &'static str,
    level: Level,
    budget: Mutex<Budget>,
    registered: AtomicBool,
}

impl LogLimit {
    /// A limit for a cause logged at `warn`.
    pub const fn warn(cause: &'static str) -> Self {
        Self::new(cause, Level::Warn)
    }

    /// A limit for a cause logged at `info`.
    pub const fn info(cause: &'static str) -> Self {
        Self::new(cause, Level::Info)
    }

    /// A limit for a cause logged at `error`.
    pub const fn error(cause: &'static str) -> Self {
        Self::new(cause, Level::Error)
    }

    const fn new(cause: &'static str, level: Level) -> Self {
        Self {
            cause,
            level,
            budget: Mutex::new(Budget::new(WINDOW, LINES_PER_WINDOW)),
            registered: AtomicBool::new(false),
        }
    }

    /// Whether to write this occurrence; `false` means it was counted. Writes
    /// the summary of the previous window first when it suppressed anything.
    pub fn admit(&'static self) -> bool {
        self.register();
        let verdict = self
            .budget
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .admit(Instant::now());
        match verdict {
            Verdict::Write { summary } => {
                if let Some(summary) = summary {
                    self.write_summary(summary);
                }
                true
            }
            Verdict::Suppress => {
                metrics::counter!("alknet_log_lines_suppressed_total", "cause" => self.cause)
                    .increment(1);
                false
            }
        }
    }

    /// Writes the summary of a window that ended, if it suppressed anything.
    fn report(&self, now: Instant) {
        let summary = self
            .budget
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .close_ended_window(now);
        if let Some(summary) = summary {
            self.write_summary(summary);
        }
    }

    fn write_summary(&self, summary: Summary) {
        let Summary { suppressed, over } = summary;
        let cause = self.cause;
        let seconds = over.as_secs();
        match self.level {
            Level::Info => {
                tracing::info!(
                    cause,
                    suppressed,
                    "{suppressed} lines suppressed in the last {seconds}s: {cause}"
                );
            }
            Level::Warn => {
                tracing::warn!(
                    cause,
                    suppressed,
                    "{suppressed} lines suppressed in the last {seconds}s: {cause}"
                );
            }
            Level::Error => {
                tracing::error!(
                    cause,
                    suppressed,
                    "{suppressed} lines suppressed in the last {seconds}s: {cause}"
                );
            }
        }
    }

    fn register(&'static self) {
        if !self.registered.load(Ordering::Acquire) && !self.registered.swap(true, Ordering::AcqRel)
        {
            REGISTRY
                .lock()
                .unwrap_or_else(PoisonError::into_inner)
                .push(self);
        }
    }
}

/// Every limit that has been used: one entry per `static`, so it stays small.
static REGISTRY: Mutex<Vec<&'static LogLimit>> = Mutex::new(Vec::new());

/// Writes the summary of every window that ended with lines suppressed. The
/// binary calls it every [`REPORT_PERIOD`], so an attack that stopped is
/// still accounted for.
pub fn report_suppressed() {
    let now = Instant::now();
    let limits = REGISTRY
        .lock()
        .unwrap_or_else(PoisonError::into_inner)
        .clone();
    for limit in limits {
        limit.report(now);
    }
}

/// Runs [`report_suppressed`] every [`REPORT_PERIOD`], forever.
pub async fn report_suppressed_periodically() {
    let mut ticks = tokio::time::interval(REPORT_PERIOD);
    ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        ticks.tick().await;
        report_suppressed();
    }
}

/// What happens to one occurrence.
#[derive(Debug, PartialEq, Eq)]
enum Verdict {
    /// Write it, after the summary of the window that just ended, if any.
    Write { summary: Option<Summary> },
    /// Count it.
    Suppress,
}

/// Lines suppressed in a window, and how long the window ran.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct Summary {
    suppressed: u64,
    over: Duration,
}

/// One cause's accounting, with the time passed in so tests control it.
#[derive(Debug)]
struct Budget {
    window: Duration,
    lines: u32,
    /// Start of the current window; `None` before the first line and after a
    /// summary closed a window.
    started: Option<Instant>,
    written: u32,
    suppressed: u64,
}

impl Budget {
    const fn new(window: Duration, lines: u32) -> Self {
        Self {
            window,
            lines,
            started: None,
            written: 0,
            suppressed: 0,
        }
    }

    fn admit(&mut self, now: Instant) -> Verdict {
        let summary = match self.started {
            Some(started) if now.duration_since(started) < self.window => {
                if self.written < self.lines {
                    self.written += 1;
                    return Verdict::Write { summary: None };
                }
                self.suppressed += 1;
                return Verdict::Suppress;
            }
            Some(_) => self.close(now),
            None => None,
        };
        self.started = Some(now);
        self.written = 1;
        Verdict::Write { summary }
    }

    fn close_ended_window(&mut self, now: Instant) -> Option<Summary> {
        match self.started {
            Some(started) if now.duration_since(started) >= self.window => self.close(now),
            _ => None,
        }
    }

    /// Ends the current window; its summary if it suppressed anything.
    fn close(&mut self, now: Instant) -> Option<Summary> {
        let started = self.started.take()?;
        self.written = 0;
        let suppressed = std::mem::take(&mut self.suppressed);
        (suppressed > 0).then(|| Summary {
            suppressed,
            over: now.duration_since(started),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const WINDOW: Duration = Duration::from_secs(10);

    fn budget() -> (Budget, Instant) {
        (Budget::new(WINDOW, 3), Instant::now())
    }

    #[test]
    fn a_burst_writes_the_budget_and_counts_the_rest() {
        let (mut budget, t0) = budget();
        let verdicts: Vec<Verdict> = (0..10).map(|_| budget.admit(t0)).collect();
        assert_eq!(
            verdicts[..3],
            [const { Verdict::Write { summary: None } }; 3]
        );
        assert!(verdicts[3..].iter().all(|v| *v == Verdict::Suppress));
        assert_eq!(budget.suppressed, 7);
    }

    #[test]
    fn the_next_window_starts_with_the_summary_of_the_last() {
        let (mut budget, t0) = budget();
        for _ in 0..5 {
            budget.admit(t0);
        }
        let t1 = t0 + WINDOW + Duration::from_secs(2);
        assert_eq!(
            budget.admit(t1),
            Verdict::Write {
                summary: Some(Summary {
                    suppressed: 2,
                    over: WINDOW + Duration::from_secs(2),
                })
            }
        );
        // The new window has its own budget, minus the line just written.
        assert_eq!(budget.admit(t1), Verdict::Write { summary: None });
        assert_eq!(budget.admit(t1), Verdict::Write { summary: None });
        assert_eq!(budget.admit(t1), Verdict::Suppress);
    }

    #[test]
    fn a_quiet_window_ends_without_a_summary() {
        let (mut budget, t0) = budget();
        budget.admit(t0);
        assert_eq!(budget.close_ended_window(t0 + WINDOW), None);
        assert_eq!(
            budget.admit(t0 + WINDOW * 3),
            Verdict::Write { summary: None }
        );
    }

    #[test]
    fn an_attack_that_stopped_is_summarised_once_its_window_ends() {
        let (mut budget, t0) = budget();
        for _ in 0..100 {
            budget.admit(t0);
        }
        assert_eq!(
            budget.close_ended_window(t0 + WINDOW - Duration::from_millis(1)),
            None,
            "the window is still open"
        );
        assert_eq!(
            budget.close_ended_window(t0 + WINDOW),
            Some(Summary {
                suppressed: 97,
                over: WINDOW
            })
        );
        assert_eq!(
            budget.close_ended_window(t0 + WINDOW * 2),
            None,
            "reported once"
        );
        // The next occurrence opens a fresh window with nothing to report.
        assert_eq!(
            budget.admit(t0 + WINDOW * 2),
            Verdict::Write { summary: None }
        );
    }

    #[test]
    fn a_sustained_attack_writes_a_bounded_number_of_lines_per_window() {
        let (mut budget, t0) = budget();
        let mut written = 0;
        let mut summaries = 0;
        // 1,000 events a second for a minute.
        for ms in 0..60_000u64 {
            let now = t0 + Duration::from_millis(ms);
            if let Verdict::Write { summary } = budget.admit(now) {
                written += 1;
                summaries += u32::from(summary.is_some());
            }
            if let Some(_summary) = budget.close_ended_window(now) {
                summaries += 1;
            }
        }
        let windows = 6;
        assert!(written <= 3 * windows, "{written} lines written");
        assert!(summaries <= windows, "{summaries} summaries written");
    }

    #[test]
    fn a_static_limit_admits_its_budget() {
        static LIMIT: LogLimit = LogLimit::warn("test cause");
        let admitted = (0..10).filter(|_| LIMIT.admit()).count();
        assert_eq!(admitted, LINES_PER_WINDOW as usize);
        assert!(
            REGISTRY
                .lock()
                .unwrap()
                .iter()
                .any(|limit| std::ptr::eq(*limit, &LIMIT))
        );
    }
}
