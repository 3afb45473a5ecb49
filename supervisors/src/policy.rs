//! Restart policy: which children are restarted, and when restarting stops
//! helping.
//!
//! Erlang/OTP semantics, reduced to what the node needs: each child has a
//! restart type; a supervisor restarts a child one-for-one; if one child needs
//! more than `max_restarts` restarts within `window`, restarting is not fixing
//! anything and the failure escalates. Pure data, tested without actors.

use std::collections::VecDeque;
use std::time::{Duration, Instant};

/// Whether a child is restarted when it exits.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum RestartType {
    /// Always restarted (supervisors, listeners, the router, services).
    Permanent,
    /// Restarted only after an abnormal exit.
    Transient,
    /// Never restarted (connections: the client reconnects).
    Temporary,
}

/// How a child ended.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ExitKind {
    /// It stopped on its own or was stopped.
    Normal,
    /// It panicked or returned an error.
    Abnormal,
}

impl RestartType {
    /// Whether a child of this type is restarted after `exit`.
    pub fn restarts_after(self, exit: ExitKind) -> bool {
        match self {
            Self::Permanent => true,
            Self::Transient => exit == ExitKind::Abnormal,
            Self::Temporary => false,
        }
    }
}

/// At most `max_restarts` restarts within `window`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct RestartIntensity {
    /// Restarts allowed within the window.
    pub max_restarts: u32,
    /// The sliding window.
    pub window: Duration,
}

impl Default for RestartIntensity {
    fn default() -> Self {
        Self {
            max_restarts: 5,
            window: Duration::from_secs(10),
        }
    }
}

/// What to do about a child that needs restarting.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum RestartDecision {
    /// Restart it.
    Restart,
    /// The intensity is exceeded: give up and escalate.
    Escalate,
}

/// Remembers one child's recent restarts.
#[derive(Clone, Debug)]
pub struct RestartTracker {
    intensity: RestartIntensity,
    recent: VecDeque<Instant>,
}

impl RestartTracker {
    /// A tracker with no restarts yet.
    pub fn new(intensity: RestartIntensity) -> Self {
        Self {
            intensity,
            recent: VecDeque::new(),
        }
    }

    /// The intensity this tracker enforces.
    pub fn intensity(&self) -> RestartIntensity {
        self.intensity
    }

    /// Records that the child needs a restart at `now` and decides.
    pub fn record(&mut self, now: Instant) -> RestartDecision {
        while let Some(&oldest) = self.recent.front() {
            if now.duration_since(oldest) >= self.intensity.window {
                self.recent.pop_front();
            } else {
                break;
            }
        }
        self.recent.push_back(now);
        if self.recent.len() > self.intensity.max_restarts as usize {
            RestartDecision::Escalate
        } else {
            RestartDecision::Restart
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn restart_types_follow_otp() {
        use ExitKind::*;
        assert!(RestartType::Permanent.restarts_after(Normal));
        assert!(RestartType::Permanent.restarts_after(Abnormal));
        assert!(!RestartType::Transient.restarts_after(Normal));
        assert!(RestartType::Transient.restarts_after(Abnormal));
        assert!(!RestartType::Temporary.restarts_after(Normal));
        assert!(!RestartType::Temporary.restarts_after(Abnormal));
    }

    #[test]
    fn the_sixth_restart_within_the_window_escalates() {
        let mut tracker = RestartTracker::new(RestartIntensity::default());
        let t0 = Instant::now();
        for i in 0..5 {
            assert_eq!(
                tracker.record(t0 + Duration::from_secs(i)),
                RestartDecision::Restart
            );
        }
        assert_eq!(
            tracker.record(t0 + Duration::from_secs(5)),
            RestartDecision::Escalate
        );
    }

    #[test]
    fn restarts_outside_the_window_are_forgotten() {
        let mut tracker = RestartTracker::new(RestartIntensity {
            max_restarts: 2,
            window: Duration::from_secs(10),
        });
        let t0 = Instant::now();
        assert_eq!(tracker.record(t0), RestartDecision::Restart);
        assert_eq!(
            tracker.record(t0 + Duration::from_secs(1)),
            RestartDecision::Restart
        );
        // The first restart left the window exactly 10 s later.
        assert_eq!(
            tracker.record(t0 + Duration::from_secs(10)),
            RestartDecision::Restart
        );
        assert_eq!(
            tracker.record(t0 + Duration::from_secs(10)),
            RestartDecision::Escalate
        );
    }

    #[test]
    fn zero_restarts_allowed_escalates_at_once() {
        let mut tracker = RestartTracker::new(RestartIntensity {
            max_restarts: 0,
            window: Duration::from_secs(1),
        });
        assert_eq!(tracker.record(Instant::now()), RestartDecision::Escalate);
    }
}
