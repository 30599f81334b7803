//! A small circuit breaker (closed, open, half-open), generic over what it guards.
//!
//! Closed: calls go through; `failure_threshold` consecutive failures open it. Open: no
//! call goes through until `open_for` has passed. Half-open: exactly one probe goes
//! through; its success closes the breaker, its failure opens it again. Time is passed
//! in, so the transitions are tested without sleeping.

use std::{
    sync::{Mutex, PoisonError},
    time::{Duration, Instant},
};

/// The breaker's state, as metrics and logs show it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum BreakerState {
    /// Calls go through.
    Closed,
    /// Calls are refused until the open time has passed.
    Open,
    /// One probe call decides.
    HalfOpen,
}

impl BreakerState {
    /// Lowercase name for logs and metrics.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Closed => "closed",
            Self::Open => "open",
            Self::HalfOpen => "half_open",
        }
    }
}

/// The breaker's answer to "may I call now?".
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Admission {
    /// Closed: go ahead.
    Call,
    /// Half-open: go ahead with this one probe, and report its outcome.
    Probe,
    /// Open (or a probe is already out): ask again after this long.
    Wait(Duration),
}

#[derive(Clone, Copy, Debug)]
enum Inner {
    Closed { failures: u32 },
    Open { until: Instant },
    HalfOpen { probing: bool },
}

/// A thread-safe circuit breaker.
#[derive(Debug)]
pub struct CircuitBreaker {
    failure_threshold: u32,
    open_for: Duration,
    inner: Mutex<Inner>,
}

impl CircuitBreaker {
    /// A closed breaker that opens after `failure_threshold` consecutive failures (at
    /// least one) and stays open for `open_for`.
    pub fn new(failure_threshold: u32, open_for: Duration) -> Self {
        Self {
            failure_threshold: failure_threshold.max(1),
            open_for,
            inner: Mutex::new(Inner::Closed { failures: 0 }),
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Inner> {
        // The state is a plain value, valid whatever panicked while holding the lock.
        self.inner.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Asks for permission to call at `now`. An open breaker whose time is up turns
    /// half-open and hands out exactly one probe.
    pub fn admit(&self, now: Instant) -> Admission {
        let mut inner = self.lock();
        match *inner {
            Inner::Closed { .. } => Admission::Call,
            Inner::Open { until } if now < until => Admission::Wait(until - now),
            Inner::Open { .. } | Inner::HalfOpen { probing: false } => {
                *inner = Inner::HalfOpen { probing: true };
                Admission::Probe
            }
            Inner::HalfOpen { probing: true } => Admission::Wait(self.open_for),
        }
    }

    /// Reports a successful call: the breaker closes and forgets earlier failures.
    /// Answers true when this closed a breaker that was not closed (a successful probe).
    pub fn succeeded(&self) -> bool {
        let mut inner = self.lock();
        let was_closed = matches!(*inner, Inner::Closed { .. });
        *inner = Inner::Closed { failures: 0 };
        !was_closed
    }

    /// Reports a failed call at `now`: a failed probe, or the last failure allowed while
    /// closed, opens the breaker. Answers true when this failure opened a closed breaker.
    pub fn failed(&self, now: Instant) -> bool {
        let mut inner = self.lock();
        let was_closed = matches!(*inner, Inner::Closed { .. });
        *inner = match *inner {
            Inner::Closed { failures } if failures + 1 < self.failure_threshold => Inner::Closed {
                failures: failures + 1,
            },
            _ => Inner::Open {
                until: now + self.open_for,
            },
        };
        was_closed && matches!(*inner, Inner::Open { .. })
    }

    /// Gives a probe back unused (there was nothing to call with): the next caller may
    /// probe instead.
    pub fn probe_unused(&self) {
        let mut inner = self.lock();
        if let Inner::HalfOpen { probing: true } = *inner {
            *inner = Inner::HalfOpen { probing: false };
        }
    }

    /// The state at `now` (an open breaker whose time is up reads as half-open).
    pub fn state(&self, now: Instant) -> BreakerState {
        match *self.lock() {
            Inner::Closed { .. } => BreakerState::Closed,
            Inner::Open { until } if now < until => BreakerState::Open,
            Inner::Open { .. } | Inner::HalfOpen { .. } => BreakerState::HalfOpen,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const OPEN: Duration = Duration::from_secs(30);

    #[test]
    fn stays_closed_below_the_threshold_and_successes_reset_the_count() {
        let b = CircuitBreaker::new(3, OPEN);
        let t = Instant::now();
        assert!(!b.failed(t));
        assert!(!b.failed(t));
        assert_eq!(b.admit(t), Admission::Call);
        assert!(!b.succeeded(), "it was closed already");
        b.failed(t);
        b.failed(t);
        assert_eq!(b.state(t), BreakerState::Closed);
        assert!(b.failed(t), "the third failure opens it");
        assert_eq!(b.state(t), BreakerState::Open);
    }

    #[test]
    fn opens_at_the_threshold_and_refuses_until_the_open_time_is_up() {
        let b = CircuitBreaker::new(2, OPEN);
        let t = Instant::now();
        b.failed(t);
        b.failed(t);
        assert_eq!(b.admit(t), Admission::Wait(OPEN));
        let later = t + Duration::from_secs(10);
        assert_eq!(b.admit(later), Admission::Wait(Duration::from_secs(20)));
        assert_eq!(b.state(later), BreakerState::Open);
    }

    #[test]
    fn half_open_hands_out_exactly_one_probe() {
        let b = CircuitBreaker::new(1, OPEN);
        let t = Instant::now();
        b.failed(t);
        let due = t + OPEN;
        assert_eq!(b.state(due), BreakerState::HalfOpen);
        assert_eq!(b.admit(due), Admission::Probe);
        assert_eq!(b.admit(due), Admission::Wait(OPEN));
        assert_eq!(b.state(due), BreakerState::HalfOpen);
    }

    #[test]
    fn a_successful_probe_closes_the_breaker() {
        let b = CircuitBreaker::new(2, OPEN);
        let t = Instant::now();
        b.failed(t);
        b.failed(t);
        assert_eq!(b.admit(t + OPEN), Admission::Probe);
        assert!(b.succeeded(), "the probe closed it");
        assert_eq!(b.state(t + OPEN), BreakerState::Closed);
        // The failure count starts over: one failure does not reopen it.
        b.failed(t + OPEN);
        assert_eq!(b.admit(t + OPEN), Admission::Call);
    }

    #[test]
    fn a_failed_probe_opens_the_breaker_again_for_the_full_time() {
        let b = CircuitBreaker::new(3, OPEN);
        let t = Instant::now();
        for _ in 0..3 {
            b.failed(t);
        }
        let probe_at = t + OPEN + Duration::from_secs(5);
        assert_eq!(b.admit(probe_at), Admission::Probe);
        assert!(!b.failed(probe_at), "it was not closed: no new opening");
        assert_eq!(b.state(probe_at), BreakerState::Open);
        assert_eq!(b.admit(probe_at), Admission::Wait(OPEN));
        assert_eq!(b.admit(probe_at + OPEN), Admission::Probe);
    }

    #[test]
    fn an_unused_probe_is_handed_to_the_next_caller() {
        let b = CircuitBreaker::new(1, OPEN);
        let t = Instant::now();
        b.failed(t);
        assert_eq!(b.admit(t + OPEN), Admission::Probe);
        b.probe_unused();
        assert_eq!(b.admit(t + OPEN), Admission::Probe);
        // Giving back a probe never closes the breaker.
        b.probe_unused();
        assert_eq!(b.state(t + OPEN), BreakerState::HalfOpen);
    }

    #[test]
    fn a_threshold_of_zero_acts_as_one() {
        let b = CircuitBreaker::new(0, OPEN);
        let t = Instant::now();
        assert_eq!(b.admit(t), Admission::Call);
        b.failed(t);
        assert_eq!(b.state(t), BreakerState::Open);
    }
}
