//! How many embedding requests may be in flight: at most `--concurrency`,
//! cut by a quarter when the endpoint says 429 (multiplicative decrease) and
//! grown back by about one per round of successful requests (additive
//! increase), as TCP does. The endpoint's real capacity is usually unknown
//! and shared with other clients; this finds it and follows it.

use std::sync::{Arc, Mutex};

use tokio::sync::Notify;

pub struct Limiter {
    max: f64,
    state: Mutex<State>,
    freed: Notify,
}

struct State {
    limit: f64,
    in_flight: usize,
    /// Requests started since the last decrease. A burst of 429s from
    /// requests sent before that decrease is one signal, not many.
    started_since_cut: usize,
    /// The limit at the last 429: climbing back towards it is quick, going
    /// past it is probed four times slower, so a small capacity is not hit
    /// every other round.
    last_throttled_at: f64,
}

/// One request slot; frees itself when dropped.
pub struct Permit {
    limiter: Arc<Limiter>,
}

impl Limiter {
    pub fn new(max: usize) -> Limiter {
        let max = max.max(1) as f64;
        Limiter {
            max,
            state: Mutex::new(State {
                limit: max,
                in_flight: 0,
                started_since_cut: 0,
                last_throttled_at: f64::INFINITY,
            }),
            freed: Notify::new(),
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    pub async fn acquire(self: &Arc<Self>) -> Permit {
        loop {
            let notified = self.freed.notified();
            {
                let mut s = self.lock();
                if (s.in_flight as f64) < s.limit.floor().max(1.0) {
                    s.in_flight += 1;
                    s.started_since_cut += 1;
                    return Permit {
                        limiter: self.clone(),
                    };
                }
            }
            notified.await;
        }
    }

    pub fn succeeded(&self) {
        let mut s = self.lock();
        let step = if s.limit + 1.0 > s.last_throttled_at {
            0.25
        } else {
            1.0
        };
        s.limit = (s.limit + step / s.limit).min(self.max);
        drop(s);
        self.freed.notify_waiters();
    }

    pub fn throttled(&self) {
        let mut s = self.lock();
        if s.started_since_cut >= s.limit.floor() as usize || s.limit >= self.max {
            s.last_throttled_at = s.limit;
            // A quarter, not half: halving from just over the capacity
            // leaves the endpoint idle for most of the climb back.
            s.limit = (s.limit * 0.75).max(1.0);
            s.started_since_cut = 0;
            tracing::info!(
                "endpoint is rate limiting: at most {} requests in flight now",
                s.limit.floor()
            );
        }
    }

    pub fn limit(&self) -> usize {
        self.lock().limit.floor() as usize
    }
}

impl Drop for Permit {
    fn drop(&mut self) {
        self.limiter.lock().in_flight -= 1;
        self.limiter.freed.notify_waiters();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn cuts_on_429_and_grows_back_one_per_round() {
        let l = Arc::new(Limiter::new(16));
        let permits: Vec<_> = futures::future::join_all((0..16).map(|_| l.acquire())).await;
        assert_eq!(l.limit(), 16);
        l.throttled();
        assert_eq!(l.limit(), 12);
        // More 429s from requests sent before the cut count once.
        l.throttled();
        l.throttled();
        assert_eq!(l.limit(), 12);
        drop(permits);
        for _ in 0..13 {
            l.succeeded();
        }
        assert_eq!(l.limit(), 13, "about one more per round of successes");
        for _ in 0..14 * 3 {
            l.succeeded();
        }
        assert_eq!(
            l.limit(),
            15,
            "slower past the limit where the last 429 came"
        );
        for _ in 0..500 {
            l.succeeded();
        }
        assert_eq!(l.limit(), 16, "never above --concurrency");
    }

    #[tokio::test]
    async fn never_more_in_flight_than_the_limit() {
        let l = Arc::new(Limiter::new(2));
        let a = l.acquire().await;
        let _b = l.acquire().await;
        let third = tokio::time::timeout(std::time::Duration::from_millis(50), l.acquire()).await;
        assert!(third.is_err(), "a third request waits");
        drop(a);
        let third = tokio::time::timeout(std::time::Duration::from_millis(50), l.acquire()).await;
        assert!(third.is_ok());
    }
}
