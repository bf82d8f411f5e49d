//! The run's supervisor: signals and stall warnings, on a thread and a
//! small runtime of their own, so that neither depends on the stages being
//! healthy. A stage that blocks every tokio worker or every rayon thread
//! can hang a run; it cannot stop this thread from seeing a second Ctrl-C or
//! from saying what the run is waiting on.
//!
//! - The first SIGINT or SIGTERM (Ctrl-C, `docker stop`, an ECS task stop,
//!   a Kubernetes pod deletion) cancels the run: no new requests, requests in
//!   flight finish, what is embedded is written. The state stays consistent
//!   however the process ends after that, SIGKILL included (ECS sends it 30 s
//!   after SIGTERM), because every write of the state file is a commit.
//! - A second signal exits at once with 130, whatever the stages are doing.
//! - When nothing was read, embedded or written for `VECLOAD_STALL_SECS`
//!   (default 60) while the stages run, it logs which stage holds the work,
//!   so a hang can be told from a slow endpoint; again every as many seconds
//!   while it lasts.

use std::sync::Arc;
use std::sync::atomic::AtomicBool;
use std::sync::atomic::Ordering::Relaxed;
use std::time::{Duration, Instant};

use tokio_util::sync::CancellationToken;

use crate::report::{Gauges, Stats};

/// What the stall warning describes, with the sizes it compares against.
pub struct Watch {
    pub stats: Arc<Stats>,
    /// Capacity of the queue of chunks to the embed stage.
    pub chunk_queue: usize,
    /// Most requests in flight.
    pub concurrency: usize,
    pub request_timeout: Duration,
}

/// Stops supervising when dropped (signals go back to nobody listening;
/// the run is over by then).
pub struct Supervisor {
    done: CancellationToken,
    stages_running: Arc<AtomicBool>,
}

impl Supervisor {
    /// The stages have stopped: from now on (index build, counts) no
    /// progress is expected from them, so stall warnings stop too.
    pub fn stages_done(&self) {
        self.stages_running.store(false, Relaxed);
    }
}

impl Drop for Supervisor {
    fn drop(&mut self) {
        self.done.cancel();
    }
}

/// Starts watching for signals and stalls.
pub fn start(
    cancel: CancellationToken,
    interrupted: Arc<AtomicBool>,
    watch: Watch,
) -> anyhow::Result<Supervisor> {
    start_with(
        cancel,
        interrupted,
        Some(watch),
        "finishing requests in flight and writing what is embedded",
    )
}

/// Starts watching for signals while the run waits on something that is
/// not a stage (the batches of `--batch-api`): no stall warnings; the
/// first signal cancels with `first` said, a second exits at once.
pub fn start_waiting(
    cancel: CancellationToken,
    interrupted: Arc<AtomicBool>,
    first: &'static str,
) -> anyhow::Result<Supervisor> {
    start_with(cancel, interrupted, None, first)
}

fn start_with(
    cancel: CancellationToken,
    interrupted: Arc<AtomicBool>,
    watch: Option<Watch>,
    first: &'static str,
) -> anyhow::Result<Supervisor> {
    let done = CancellationToken::new();
    let stages_running = Arc::new(AtomicBool::new(true));
    let stall_after = stall_after();
    let (d, running) = (done.clone(), stages_running.clone());
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    // Registered before this returns, so no signal between here and the
    // thread's start falls through to the default (instant death).
    let signals = {
        let _in = runtime.enter();
        Signals::new()?
    };
    std::thread::Builder::new()
        .name("vecload-supervise".into())
        .spawn(move || {
            runtime.block_on(supervise(
                signals,
                (cancel, interrupted, first),
                watch,
                stall_after,
                running,
                d,
            ))
        })?;
    Ok(Supervisor {
        done,
        stages_running,
    })
}

static DRAIN: std::sync::OnceLock<Duration> = std::sync::OnceLock::new();

/// `--drain-timeout`, set once by the command layer before any run.
pub fn set_drain_timeout(d: Duration) {
    let _ = DRAIN.set(d);
}

fn drain_timeout() -> Duration {
    DRAIN.get().copied().unwrap_or(Duration::from_secs(25))
}

fn stall_after() -> Duration {
    let secs = std::env::var("VECLOAD_STALL_SECS")
        .ok()
        .and_then(|v| v.trim().parse::<f64>().ok())
        .filter(|s| s.is_finite() && *s > 0.0)
        .unwrap_or(60.0);
    Duration::from_secs_f64(secs)
}

async fn supervise(
    mut signals: Signals,
    (cancel, interrupted, first): (CancellationToken, Arc<AtomicBool>, &'static str),
    watch: Option<Watch>,
    stall_after: Duration,
    stages_running: Arc<AtomicBool>,
    done: CancellationToken,
) {
    let mut stall = Stall::new(stall_after);
    let mut tick = tokio::time::interval(Duration::from_millis(500));
    let mut received = 0;
    // After the first signal: when the drain must be over.
    let mut deadline: Option<Instant> = None;
    loop {
        tokio::select! {
            _ = done.cancelled() => return,
            name = signals.next() => {
                received += 1;
                if received == 1 {
                    tracing::warn!(
                        "{name}: {first} (Ctrl-C or a second signal exits at once)"
                    );
                    interrupted.store(true, Relaxed);
                    cancel.cancel();
                    deadline = Some(Instant::now() + drain_timeout());
                } else {
                    tracing::error!("{name} again: exiting without waiting");
                    std::process::exit(i32::from(crate::EXIT_INTERRUPTED));
                }
            }
            _ = tick.tick() => {
                if deadline.is_some_and(|d| Instant::now() >= d) {
                    tracing::error!(
                        "the drain took longer than --drain-timeout ({} s): exiting now; \
                         the state is consistent and the rerun pays again only for what \
                         was not written",
                        drain_timeout().as_secs()
                    );
                    std::process::exit(i32::from(crate::EXIT_INTERRUPTED));
                }
                if stages_running.load(Relaxed)
                    && let Some(watch) = &watch
                    && let Some(msg) = stall.check(watch)
                {
                    tracing::warn!("{msg}");
                }
            }
        }
    }
}

/// SIGINT and SIGTERM as one stream.
struct Signals {
    #[cfg(unix)]
    term: tokio::signal::unix::Signal,
    #[cfg(unix)]
    int: tokio::signal::unix::Signal,
}

impl Signals {
    #[cfg(unix)]
    fn new() -> std::io::Result<Signals> {
        use tokio::signal::unix::{SignalKind, signal};
        Ok(Signals {
            term: signal(SignalKind::terminate())?,
            int: signal(SignalKind::interrupt())?,
        })
    }

    #[cfg(not(unix))]
    fn new() -> std::io::Result<Signals> {
        Ok(Signals {})
    }

    #[cfg(unix)]
    async fn next(&mut self) -> &'static str {
        tokio::select! {
            _ = self.term.recv() => "terminated (SIGTERM)",
            _ = self.int.recv() => "interrupted",
        }
    }

    #[cfg(not(unix))]
    async fn next(&mut self) -> &'static str {
        let _ = tokio::signal::ctrl_c().await;
        "interrupted"
    }
}

/// Notices when the run stops moving.
struct Stall {
    after: Duration,
    last: u64,
    since: Instant,
    warned: Option<Instant>,
}

impl Stall {
    fn new(after: Duration) -> Stall {
        Stall {
            after,
            last: u64::MAX,
            since: Instant::now(),
            warned: None,
        }
    }

    /// A warning when nothing moved for `after` (and again every `after`).
    /// Requests sent are not movement: retries into an endpoint that is
    /// down move nothing.
    fn check(&mut self, w: &Watch) -> Option<String> {
        let s = &w.stats;
        let moved = [
            &s.files_read,
            &s.chunks,
            &s.chunks_embedded,
            &s.vectors_written,
        ]
        .iter()
        .map(|c| Stats::get(c))
        .sum::<u64>()
            + s.failed_count();
        let now = Instant::now();
        if moved != self.last {
            self.last = moved;
            self.since = now;
            self.warned = None;
            return None;
        }
        if now - self.since < self.after || self.warned.is_some_and(|t| now - t < self.after) {
            return None;
        }
        self.warned = Some(now);
        Some(describe(w, now - self.since))
    }
}

/// Where the work is, and which stage it waits on.
fn describe(w: &Watch, quiet: Duration) -> String {
    let s = &w.stats;
    let g = &s.gauges;
    let reading = Gauges::get(&g.files_reading);
    let queued = Gauges::get(&g.chunks_queued);
    let requests = Gauges::get(&g.requests_in_flight);
    let rows = Gauges::get(&g.rows_queued);
    let writes = Gauges::get(&g.writes_in_flight);
    let down: Vec<String> = s
        .down()
        .into_iter()
        .map(|(what, d)| {
            format!(
                "{what}, down for {:.0} s (one probe at a time; the run goes on when it answers)",
                d.as_secs_f64()
            )
        })
        .collect();
    let waiting_on = if !down.is_empty() {
        down.join(" and ")
    } else if requests > 0 {
        format!(
            "the embedding endpoint or model: {requests} requests unanswered \
             (each gives up after --request-timeout {} s)",
            w.request_timeout.as_secs()
        )
    } else if writes > 0 {
        format!(
            "the vector store: {writes} writes not acknowledged \
             (a lock on the table, a full disk, an overloaded cluster?)"
        )
    } else if queued > 0 || rows > 0 {
        "the embed stage, which holds queued work but sends nothing \
         (backing off after errors, or paced by --rpm/--tpm?)"
            .to_string()
    } else if reading > 0 {
        format!(
            "reading files: {reading} being read or extracted \
             (a large PDF or Office file? --extract-timeout bounds each)"
        )
    } else {
        "no stage holds work (the state file or a store lookup between stages?)".to_string()
    };
    format!(
        "stalled: nothing read, embedded or written for {:.0} s; waiting on {waiting_on}. \
         files {}/{} read ({reading} in progress), chunk queue {queued}/{}, \
         requests in flight {requests} (at most {}), rows waiting for the store {rows}, \
         writes in flight {writes}",
        quiet.as_secs_f64(),
        Stats::get(&s.files_read),
        Stats::get(&s.files_to_read),
        w.chunk_queue,
        w.concurrency,
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn watch() -> Watch {
        Watch {
            stats: Arc::new(Stats::default()),
            chunk_queue: 128,
            concurrency: 2,
            request_timeout: Duration::from_secs(120),
        }
    }

    #[test]
    fn a_run_that_stops_moving_names_the_stage_it_waits_on() {
        let w = watch();
        Stats::add(&w.stats.chunks, 290);
        Gauges::add(&w.stats.gauges.chunks_queued, 128);
        Gauges::add(&w.stats.gauges.requests_in_flight, 2);
        let mut stall = Stall::new(Duration::from_millis(50));
        assert!(stall.check(&w).is_none(), "the first look is a baseline");
        std::thread::sleep(Duration::from_millis(80));
        let msg = stall.check(&w).expect("a warning after the quiet time");
        assert!(
            msg.contains("the embedding endpoint or model: 2 requests"),
            "{msg}"
        );
        assert!(msg.contains("chunk queue 128/128"), "{msg}");
        assert!(stall.check(&w).is_none(), "not repeated at once");
        Stats::add(&w.stats.chunks_embedded, 32);
        assert!(stall.check(&w).is_none(), "progress resets the watch");
    }

    #[test]
    fn a_stuck_store_is_named_as_such() {
        let w = watch();
        Gauges::add(&w.stats.gauges.writes_in_flight, 1);
        let msg = describe(&w, Duration::from_secs(61));
        assert!(
            msg.contains("waiting on the vector store: 1 writes"),
            "{msg}"
        );
    }
}
