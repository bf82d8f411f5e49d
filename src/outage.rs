//! An outage of something every worker of a run depends on (the embedding
//! endpoint, the vector store), seen by all of them at once: a circuit
//! breaker with a budget in time.
//!
//! While it answers, everyone goes. After `open_after` failures in a row
//! it is taken as down: one caller at a time probes it, at growing
//! intervals (capped), while the others wait instead of each burning its
//! own retries; said once at WARN when it goes down and once when it is
//! back, with how long it was down. Past the budget, counted from the
//! first failure of the streak, the same for every caller, callers are
//! told to give up.
//!
//! It knows nothing of what it guards: callers say what happened.

use std::sync::Mutex;
use std::time::{Duration, Instant};

/// Between probes of something down: 1 s, doubling, at most this.
const PROBE_CAP: Duration = Duration::from_secs(15);

pub struct Outage {
    what: &'static str,
    /// The flag that sets the budget, for the give-up message.
    flag: &'static str,
    budget: Duration,
    open_after: u32,
    inner: Mutex<Inner>,
    changed: tokio::sync::Notify,
}

#[derive(Default)]
struct Inner {
    /// Failures in a row.
    failures: u32,
    /// When the streak began.
    since: Option<Instant>,
    open: bool,
    probing: bool,
    probes: u32,
    next_probe: Option<Instant>,
    last_error: String,
}

/// Leave to try once. A probe that is dropped unreported (its caller was
/// cancelled) frees the probe for another caller.
pub struct Pass<'a> {
    outage: &'a Outage,
    probe: bool,
}

impl Drop for Pass<'_> {
    fn drop(&mut self) {
        if self.probe {
            self.outage.lock().probing = false;
            self.outage.changed.notify_waiters();
        }
    }
}

impl Outage {
    /// `what` names it in messages ("the embedding endpoint").
    pub fn new(
        what: &'static str,
        flag: &'static str,
        budget: Duration,
        open_after: u32,
    ) -> Outage {
        Outage {
            what,
            flag,
            budget,
            open_after: open_after.max(1),
            inner: Mutex::new(Inner::default()),
            changed: tokio::sync::Notify::new(),
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Inner> {
        self.inner.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Waits until this caller may try: at once while up; while down, when
    /// it is this caller's turn to probe. Err: down for longer than the
    /// budget (the message says so). Callers race it with their cancel.
    pub async fn pass(&self) -> Result<Pass<'_>, String> {
        loop {
            let notified = self.changed.notified();
            let wait = {
                let mut s = self.lock();
                if !s.open {
                    return Ok(Pass {
                        outage: self,
                        probe: false,
                    });
                }
                if let Some(msg) = self.expired(&s) {
                    return Err(msg);
                }
                let now = Instant::now();
                match s.next_probe {
                    Some(t) if !s.probing && now >= t => {
                        s.probing = true;
                        return Ok(Pass {
                            outage: self,
                            probe: true,
                        });
                    }
                    Some(t) if !s.probing => t - now,
                    _ => Duration::from_secs(1),
                }
            };
            // Woken when it comes back or a probe ends; the budget is
            // looked at again at least every second.
            let _ = tokio::time::timeout(wait.min(Duration::from_secs(1)), notified).await;
        }
    }

    fn expired(&self, s: &Inner) -> Option<String> {
        let since = s.since?;
        (since.elapsed() > self.budget).then(|| {
            format!(
                "{} has not answered for {:.0} s ({} {}): {}",
                self.what,
                since.elapsed().as_secs_f64(),
                self.flag,
                self.budget.as_secs(),
                s.last_error
            )
        })
    }

    /// The try succeeded: up again, said if it was down.
    pub fn succeeded(&self, pass: Pass<'_>) {
        drop(pass);
        let mut s = self.lock();
        if s.open
            && let Some(since) = s.since
        {
            tracing::warn!(
                "{} answers again after {:.0} s down ({} failed tries); going on",
                self.what,
                since.elapsed().as_secs_f64(),
                s.failures
            );
        }
        *s = Inner::default();
        drop(s);
        self.changed.notify_waiters();
    }

    /// The try failed in a way that says it is down (refused, timed out,
    /// 5xx). Err: down for longer than the budget.
    pub fn failed(&self, pass: Pass<'_>, error: &str) -> Result<(), String> {
        let was_probe = pass.probe;
        drop(pass);
        let mut s = self.lock();
        let now = Instant::now();
        s.failures += 1;
        s.since.get_or_insert(now);
        s.last_error = error.to_string();
        if was_probe {
            s.probes += 1;
            let next = Duration::from_secs(1)
                .saturating_mul(1u32 << s.probes.min(8))
                .min(PROBE_CAP);
            s.next_probe = Some(now + next);
        } else if !s.open && s.failures >= self.open_after {
            s.open = true;
            s.next_probe = Some(now + Duration::from_secs(1));
            tracing::warn!(
                "{} is not answering ({error}): pausing, one probe at a time, for up to {} s \
                 ({}) before the run gives up",
                self.what,
                self.budget.as_secs(),
                self.flag
            );
        }
        match self.expired(&s) {
            Some(msg) => Err(msg),
            None => Ok(()),
        }
    }

    /// How long it has been down (None: up, or failing but not yet taken
    /// as down).
    pub fn down_for(&self) -> Option<Duration> {
        let s = self.lock();
        if s.open {
            s.since.map(|t| t.elapsed())
        } else {
            None
        }
    }

    pub fn what(&self) -> &'static str {
        self.what
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn it_opens_after_failures_in_a_row_lets_one_probe_and_closes_on_success() {
        let o = Outage::new("the thing", "--budget", Duration::from_secs(60), 2);
        o.failed(o.pass().await.unwrap(), "refused").unwrap();
        assert!(o.down_for().is_none(), "one failure is not an outage");
        o.failed(o.pass().await.unwrap(), "refused").unwrap();
        assert!(o.down_for().is_some(), "two in a row are");
        // The first probe comes after a second; meanwhile nobody passes.
        let waited = tokio::time::timeout(Duration::from_millis(300), o.pass()).await;
        assert!(waited.is_err(), "nobody passes before the probe time");
        let probe = o.pass().await.unwrap();
        assert!(probe.probe);
        let other = tokio::time::timeout(Duration::from_millis(1200), o.pass()).await;
        assert!(other.is_err(), "one probe at a time");
        o.succeeded(probe);
        assert!(o.down_for().is_none());
        assert!(!o.pass().await.unwrap().probe, "up: everyone goes");
    }

    #[tokio::test]
    async fn past_the_budget_everyone_is_told_to_give_up() {
        let o = Outage::new("the thing", "--budget", Duration::from_millis(100), 1);
        o.failed(o.pass().await.unwrap(), "refused").unwrap();
        tokio::time::sleep(Duration::from_millis(150)).await;
        let err = match o.pass().await {
            Err(e) => e,
            Ok(_) => panic!("past the budget"),
        };
        assert!(
            err.contains("--budget 0") && err.contains("refused"),
            "{err}"
        );
    }

    #[tokio::test]
    async fn a_probe_dropped_unreported_frees_the_turn() {
        let o = Outage::new("the thing", "--budget", Duration::from_secs(60), 1);
        o.failed(o.pass().await.unwrap(), "refused").unwrap();
        let probe = o.pass().await.unwrap();
        drop(probe);
        let again = tokio::time::timeout(Duration::from_millis(1500), o.pass()).await;
        assert!(again.is_ok_and(|p| p.is_ok_and(|p| p.probe)));
    }
}
