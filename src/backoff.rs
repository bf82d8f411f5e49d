//! Exponential backoff with full jitter, bounded, and never shorter than the
//! server's own Retry-After.

use std::time::Duration;

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
}
