//! Client-side rate limits (`--rpm`, `--tpm`): requests are spaced so that
//! no minute ever holds more than the allowance, whatever the concurrency.
//! Smooth pacing (no burst) stays under a provider's per-minute window even
//! when its window does not line up with ours.

use std::time::{Duration, Instant};

use tokio::sync::Mutex;

pub struct Pace {
    rpm: Option<u32>,
    tpm: Option<u32>,
    next: Mutex<Option<Instant>>,
}

impl Pace {
    pub fn new(rpm: Option<u32>, tpm: Option<u32>) -> Pace {
        Pace {
            rpm: rpm.filter(|&r| r > 0),
            tpm: tpm.filter(|&t| t > 0),
            next: Mutex::new(None),
        }
    }

    /// The time one request of `tokens` tokens uses up of the allowance.
    fn cost(&self, tokens: u64) -> Duration {
        let per_request = self.rpm.map_or(0.0, |r| 60.0 / r as f64);
        let per_tokens = self.tpm.map_or(0.0, |t| 60.0 * tokens as f64 / t as f64);
        Duration::from_secs_f64(per_request.max(per_tokens))
    }

    /// Waits until a request of `tokens` tokens may start.
    pub async fn wait(&self, tokens: u64) {
        if self.rpm.is_none() && self.tpm.is_none() {
            return;
        }
        let start = {
            let mut next = self.next.lock().await;
            let now = Instant::now();
            let start = next.map_or(now, |n| n.max(now));
            *next = Some(start + self.cost(tokens));
            start
        };
        tokio::time::sleep_until(start.into()).await;
    }

    /// Seconds the limits alone need for `requests` requests of `tokens` in all.
    pub fn min_seconds(&self, requests: u64, tokens: u64) -> f64 {
        let r = self.rpm.map_or(0.0, |r| requests as f64 * 60.0 / r as f64);
        let t = self.tpm.map_or(0.0, |l| tokens as f64 * 60.0 / l as f64);
        r.max(t)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn requests_are_spaced_by_the_tighter_limit() {
        let pace = Pace::new(Some(6000), Some(600_000));
        let t0 = Instant::now();
        pace.wait(100).await; // the first goes at once
        pace.wait(100).await; // 6000 rpm: 10 ms apart; 100 of 600k tpm: 10 ms
        pace.wait(30_000).await; // 30k tokens of 600k a minute: 3 s, paid after it
        let before_last = t0.elapsed().as_secs_f64();
        pace.wait(1).await;
        let elapsed = t0.elapsed().as_secs_f64();
        assert!((0.019..0.5).contains(&before_last), "{before_last}");
        assert!((3.0..3.5).contains(&elapsed), "{elapsed}");
        assert_eq!(pace.min_seconds(6000, 0), 60.0);
    }

    #[tokio::test]
    async fn no_limits_no_waiting() {
        let pace = Pace::new(None, None);
        let t0 = Instant::now();
        for _ in 0..1000 {
            pace.wait(10_000).await;
        }
        assert!(t0.elapsed() < Duration::from_millis(50));
    }
}
