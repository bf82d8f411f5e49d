//! How many embedding requests may be in flight: at most `--concurrency`,
//! cut when the endpoint says 429 to just under what it refused (by at most
//! a quarter per signal: multiplicative decrease) and grown back by a
//! quarter of a request per round of successes (additive increase), as TCP
//! does. The endpoint's real capacity is usually unknown and shared with
//! other clients; this finds it and follows it.

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
    /// Counts the cuts. A 429 answering a request sent before the last cut
    /// is old news: a burst of them is one signal, not many.
    epoch: u64,
}

/// One request slot; frees itself when dropped.
pub struct Permit {
    limiter: Arc<Limiter>,
    sent: Sent,
}

/// What a request's slot knew when it was taken: how many were in flight
/// with it, and the cut it came after.
#[derive(Debug, Clone, Copy)]
pub struct Sent {
    in_flight: usize,
    epoch: u64,
}

impl Permit {
    pub fn sent(&self) -> Sent {
        self.sent
    }
}

impl Limiter {
    pub fn new(max: usize) -> Limiter {
        let max = max.max(1) as f64;
        Limiter {
            max,
            state: Mutex::new(State {
                limit: max,
                in_flight: 0,
                epoch: 0,
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
                    return Permit {
                        limiter: self.clone(),
                        sent: Sent {
                            in_flight: s.in_flight,
                            epoch: s.epoch,
                        },
                    };
                }
            }
            notified.await;
        }
    }

    /// After a cut the limit sits just under what the endpoint refused, so
    /// going past it is probed slowly: a quarter of a request more per round
    /// of successes, so a small capacity is not hit every other round.
    pub fn succeeded(&self) {
        let mut s = self.lock();
        s.limit = (s.limit + 0.25 / s.limit).min(self.max);
        drop(s);
        self.freed.notify_waiters();
    }

    /// A 429 for the request sent with `sent`. The endpoint refused it with
    /// `sent.in_flight` of ours in flight, so (as far as ours go) it takes
    /// fewer: the limit drops to one below that, but by at most a quarter
    /// per signal, so that clients sharing an endpoint still converge.
    /// Cutting only to the evidence instead of by a fixed fraction keeps a
    /// lone client at the capacity instead of oscillating far below it.
    pub fn throttled(&self, sent: Sent) {
        let mut s = self.lock();
        if sent.epoch != s.epoch {
            return;
        }
        let evidence = (sent.in_flight as f64 - 1.0).max(1.0);
        s.limit = evidence.min(s.limit).max(s.limit * 0.75).max(1.0);
        s.epoch += 1;
        tracing::info!(
            "endpoint is rate limiting: at most {} requests in flight now",
            s.limit.floor()
        );
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
    async fn cuts_to_the_evidence_by_at_most_a_quarter() {
        let l = Arc::new(Limiter::new(32));
        let permits: Vec<_> = futures::future::join_all((0..32).map(|_| l.acquire())).await;
        // The 20th request was refused: capacity under 20, but one signal
        // cuts a quarter at most.
        l.throttled(permits[19].sent());
        assert_eq!(l.limit(), 24);
        // More 429s from requests sent before the cut count once.
        l.throttled(permits[17].sent());
        l.throttled(permits[30].sent());
        assert_eq!(l.limit(), 24);
        drop(permits);
        // After the cut: a refusal at 20 in flight puts the limit at 19.
        let permits: Vec<_> = futures::future::join_all((0..20).map(|_| l.acquire())).await;
        l.throttled(permits[19].sent());
        assert_eq!(l.limit(), 19);
    }

    #[tokio::test]
    async fn cuts_on_429_and_grows_back_a_quarter_per_round() {
        let l = Arc::new(Limiter::new(16));
        let permits: Vec<_> = futures::future::join_all((0..16).map(|_| l.acquire())).await;
        assert_eq!(l.limit(), 16);
        // Refused with 16 in flight, but by at most a quarter: 12.
        l.throttled(permits[15].sent());
        assert_eq!(l.limit(), 15);
        let sent = permits[0].sent();
        drop(permits);
        l.throttled(sent);
        assert_eq!(l.limit(), 15, "a request from before the cut is no signal");
        // Another client took most of the capacity: a refusal at 4 in
        // flight still cuts a quarter at a time.
        let permits: Vec<_> = futures::future::join_all((0..4).map(|_| l.acquire())).await;
        l.throttled(permits[3].sent());
        assert_eq!(l.limit(), 11);
        drop(permits);
        let l = Arc::new(Limiter::new(16));
        let permits: Vec<_> = futures::future::join_all((0..16).map(|_| l.acquire())).await;
        l.throttled(permits[12].sent());
        assert_eq!(l.limit(), 12);
        drop(permits);
        // Past the point of the last 429, probed four times slower than one
        // more per round of successes.
        for _ in 0..12 * 3 {
            l.succeeded();
        }
        assert_eq!(l.limit(), 12);
        for _ in 0..12 * 2 {
            l.succeeded();
        }
        assert_eq!(l.limit(), 13, "about a quarter more per round");
        for _ in 0..2000 {
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
