//! Exponential backoff with full jitter, bounded, and never shorter than the
//! server's own Retry-After.

use std::time::{Duration, Instant};

const BASE: Duration = Duration::from_millis(500);
const CAP: Duration = Duration::from_secs(60);

pub fn delay(attempt: u32, retry_after: Option<Duration>) -> Duration {
    let ceiling = BASE.saturating_mul(1u32 << attempt.min(16)).min(CAP);
    let jittered = ceiling.mul_f64(rand::random::<f64>());
    match retry_after {
        Some(ra) => ra.max(jittered),
        None => jittered,
    }
}

/// Retries within a budget in time, not a count: `next` is the pause before
/// the next try, or None when that try would start past the budget.
pub struct Budget {
    started: Instant,
    limit: Duration,
    attempt: u32,
}

impl Budget {
    pub fn new(limit: Duration) -> Budget {
        Budget {
            started: Instant::now(),
            limit,
            attempt: 0,
        }
    }

    pub fn next(&mut self, retry_after: Option<Duration>) -> Option<Duration> {
        let pause = delay(self.attempt, retry_after);
        self.attempt += 1;
        (self.started.elapsed() + pause <= self.limit).then_some(pause)
    }

    /// Tries so far, for messages.
    pub fn tries(&self) -> u32 {
        self.attempt + 1
    }

    pub fn limit(&self) -> Duration {
        self.limit
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn delays_grow_but_stay_capped_and_respect_retry_after() {
        for attempt in 0..40 {
            assert!(delay(attempt, None) <= CAP);
        }
        assert!(delay(0, Some(Duration::from_secs(3))) >= Duration::from_secs(3));
    }

    #[test]
    fn a_budget_ends_in_time_not_in_tries() {
        let mut b = Budget::new(Duration::from_secs(10));
        assert!(b.next(None).is_some());
        // A server asking for a pause past the budget ends it.
        assert!(b.next(Some(Duration::from_secs(11))).is_none());
        let mut none = Budget::new(Duration::ZERO);
        assert!(none.next(Some(Duration::from_millis(1))).is_none());
    }
}
