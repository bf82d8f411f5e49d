//! Progress while a run goes: indicatif bars on a terminal, a plain log line
//! every few seconds otherwise (CI logs, ECS tasks), nothing with --quiet.
//! Log lines are printed through the bars so they do not tear them.

use std::io::{IsTerminal, Write};
use std::sync::{Arc, OnceLock};
use std::time::{Duration, Instant};

use indicatif::{MultiProgress, ProgressBar, ProgressDrawTarget, ProgressStyle};
use tokio_util::sync::CancellationToken;

use crate::report::Stats;
use crate::settings::ProgressMode;

static BARS: OnceLock<MultiProgress> = OnceLock::new();

const LOG_EVERY: Duration = Duration::from_secs(10);

pub fn resolve(mode: ProgressMode, quiet: bool) -> ProgressMode {
    match mode {
        _ if quiet => ProgressMode::None,
        // Bars are not lines: JSON logs get progress as log lines.
        ProgressMode::Auto | ProgressMode::Bar if super::output::json() => ProgressMode::Log,
        ProgressMode::Auto if std::io::stderr().is_terminal() => ProgressMode::Bar,
        ProgressMode::Auto => ProgressMode::Log,
        m => m,
    }
}

/// Writer for tracing: goes around the bars when they are shown.
pub struct LogWriter;

impl Write for LogWriter {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        match BARS.get() {
            Some(mp) => mp.suspend(|| std::io::stderr().write_all(buf))?,
            None => std::io::stderr().write_all(buf)?,
        }
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        std::io::stderr().flush()
    }
}

/// Starts showing progress until `done` is cancelled.
pub fn spawn(
    mode: ProgressMode,
    stats: Arc<Stats>,
    done: CancellationToken,
) -> tokio::task::JoinHandle<()> {
    tokio::spawn(async move {
        match mode {
            ProgressMode::Bar => bars(stats, done).await,
            ProgressMode::Log => lines(stats, done).await,
            _ => done.cancelled().await,
        }
    })
}

async fn bars(stats: Arc<Stats>, done: CancellationToken) {
    let mp =
        BARS.get_or_init(|| MultiProgress::with_draw_target(ProgressDrawTarget::stderr_with_hz(8)));
    let style =
        |t: &str| ProgressStyle::with_template(t).unwrap_or_else(|_| ProgressStyle::default_bar());
    let files = mp.add(ProgressBar::new(0));
    // Until chunking ends the chunk total is still growing, so the ETA is the
    // files bar's; the other two show their own rates.
    files.set_style(style("{prefix:>9} [{bar:30}] {pos}/{len} eta {eta} {msg}"));
    files.set_prefix("files");
    let embedded = mp.add(ProgressBar::new(0));
    embedded.set_style(style("{prefix:>9} [{bar:30}] {pos}/{len} {msg}"));
    embedded.set_prefix("embedded");
    let written = mp.add(ProgressBar::new(0));
    written.set_style(style("{prefix:>9} [{bar:30}] {pos}/{len} {msg}"));
    written.set_prefix("written");
    let start = Instant::now();
    let mut tick = tokio::time::interval(Duration::from_millis(200));
    loop {
        tokio::select! {
            _ = done.cancelled() => break,
            _ = tick.tick() => {}
        }
        let chunks = Stats::get(&stats.chunks);
        files.set_length(Stats::get(&stats.files_to_read));
        files.set_position(Stats::get(&stats.files_read));
        if !stats.walk_done.load(std::sync::atomic::Ordering::Relaxed) {
            files.set_message("(walking)");
        } else {
            files.set_message("");
        }
        let secs = start.elapsed().as_secs_f64().max(1e-3);
        let (e, w) = (
            Stats::get(&stats.chunks_embedded),
            Stats::get(&stats.vectors_written),
        );
        embedded.set_length(chunks);
        embedded.set_position(e);
        embedded.set_message(format!(
            "{:.0} vectors/s, {} requests, {} retries",
            e as f64 / secs,
            Stats::get(&stats.embed_requests),
            Stats::get(&stats.embed_retries)
        ));
        written.set_length(chunks);
        written.set_position(w);
        written.set_message(format!("{:.0} rows/s", w as f64 / secs));
    }
    for b in [&files, &embedded, &written] {
        b.finish_and_clear();
    }
    let _ = mp.clear();
}

/// "waiting for the embedding endpoint since 23:05:12 (40 s)" while
/// something the run needs is down.
fn waiting_for(stats: &Stats) -> Option<String> {
    let down: Vec<String> = stats
        .down()
        .into_iter()
        .map(|(what, d)| {
            let since = std::time::SystemTime::now() - d;
            format!(
                "waiting for {what} since {} ({:.0} s)",
                crate::space::rfc3339(since),
                d.as_secs_f64()
            )
        })
        .collect();
    (!down.is_empty()).then(|| down.join(", "))
}

async fn lines(stats: Arc<Stats>, done: CancellationToken) {
    let start = Instant::now();
    // VECLOAD_PROGRESS_SECS: fewer lines for a long task's log bill, or more.
    let every = std::env::var("VECLOAD_PROGRESS_SECS")
        .ok()
        .and_then(|s| s.parse::<u64>().ok())
        .filter(|&s| s > 0)
        .map_or(LOG_EVERY, Duration::from_secs);
    let mut tick = tokio::time::interval(every);
    tick.tick().await;
    loop {
        tokio::select! {
            _ = done.cancelled() => return,
            _ = tick.tick() => {}
        }
        let written = Stats::get(&stats.vectors_written);
        let (files, files_total, chunks, embedded, requests, retries) = (
            Stats::get(&stats.files_read),
            Stats::get(&stats.files_to_read),
            Stats::get(&stats.chunks),
            Stats::get(&stats.chunks_embedded),
            Stats::get(&stats.embed_requests),
            Stats::get(&stats.embed_retries),
        );
        let rate = (written as f64 / start.elapsed().as_secs_f64().max(1e-9)).round();
        let waiting = waiting_for(&stats);
        if super::output::json() {
            // Fields a log query can filter and chart on.
            tracing::info!(
                files,
                files_total,
                chunks,
                embedded,
                written,
                written_per_s = rate,
                requests,
                retries,
                waiting_for = waiting.as_deref().unwrap_or(""),
                "progress"
            );
        } else {
            tracing::info!(
                "progress: files {files}/{files_total}, chunks {chunks}, embedded {embedded}, \
                 written {written} ({rate:.0}/s), requests {requests}, retries {retries}{}",
                waiting.map(|w| format!("; {w}")).unwrap_or_default()
            );
        }
    }
}
