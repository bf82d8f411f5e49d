//! Text out of binary documents: PDF, Word and OpenDocument text, slide
//! decks and spreadsheets.
//!
//! Their parsers are large and see untrusted input, so the vecload binary
//! runs each file through itself in a child process (`vecload extract
//! --json FILE`): a parser that loops is killed at `--extract-timeout`, and
//! one that panics, overflows its stack or aborts takes only that child down.
//! Either way the file is skipped with its reason and the run goes on. The
//! child costs a few milliseconds per file, nothing next to an embedding
//! call. Library users (benches, unit tests) that never call `isolate_in`
//! extract in-process, with panics caught but no time limit.

mod office;
mod pdf;
mod table;

use std::io::Read;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::OnceLock;
use std::time::{Duration, Instant};

use serde::{Deserialize, Serialize};

pub use table::csv_parts;

/// Which parser a file needs.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Kind {
    Pdf,
    Docx,
    Odt,
    Pptx,
    Odp,
    /// xlsx and xlsm.
    Xlsx,
    Xlsb,
    Xls,
    Ods,
}

/// One piece of a document's text: a PDF page, a sheet, or the whole text.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Part {
    /// Appended to the file's path as `#label` to name the part; None when
    /// the part is the whole file.
    pub label: Option<String>,
    /// The 1-based page it came from, stored with each chunk for citing.
    pub page: Option<u32>,
    pub text: String,
    /// One record per line (spreadsheet and CSV rows): chunks hold whole
    /// lines and never overlap.
    pub records: bool,
}

/// Why a file gave no text. The reason is a fixed label for counting.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Failure {
    pub reason: Reason,
    pub detail: String,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Reason {
    Empty,
    Encrypted,
    NoTextLayer,
    Unparsable,
    ParserPanicked,
    ParserCrashed,
    TimedOut,
}

impl Reason {
    pub fn label(self) -> &'static str {
        match self {
            Reason::Empty => "empty",
            Reason::Encrypted => "encrypted",
            Reason::NoTextLayer => "no text layer",
            Reason::Unparsable => "unparsable",
            Reason::ParserPanicked => "parser panicked",
            Reason::ParserCrashed => "parser crashed",
            Reason::TimedOut => "timed out",
        }
    }
}

impl Failure {
    pub fn new(reason: Reason, detail: impl Into<String>) -> Failure {
        Failure {
            reason,
            detail: detail.into(),
        }
    }
}

pub type Extracted = Result<Vec<Part>, Failure>;

static CHILD_EXE: OnceLock<PathBuf> = OnceLock::new();

/// From now on extract in child processes of `exe` (the vecload binary).
pub fn isolate_in(exe: PathBuf) {
    let _ = CHILD_EXE.set(exe);
}

/// The text of `path`, isolated when `isolate_in` was called.
pub fn extract(path: &Path, kind: Kind, timeout: Duration) -> Extracted {
    match CHILD_EXE.get() {
        Some(exe) => in_child(exe, path, kind, timeout),
        None => {
            let bytes = std::fs::read(path)
                .map_err(|e| Failure::new(Reason::Unparsable, format!("reading: {e}")))?;
            in_process(&bytes, kind)
        }
    }
}

/// Runs the parser, turning a panic into a failure.
pub fn in_process(bytes: &[u8], kind: Kind) -> Extracted {
    let run = std::panic::AssertUnwindSafe(|| match kind {
        Kind::Pdf => pdf::pages(bytes),
        Kind::Docx => office::docx(bytes),
        Kind::Odt => office::odt(bytes),
        Kind::Pptx => office::pptx(bytes),
        Kind::Odp => office::odp(bytes),
        Kind::Xlsx | Kind::Xlsb | Kind::Xls | Kind::Ods => table::sheets(bytes, kind),
    });
    match std::panic::catch_unwind(run) {
        Ok(r) => r,
        Err(panic) => Err(Failure::new(Reason::ParserPanicked, panic_message(&panic))),
    }
}

pub fn panic_message(panic: &Box<dyn std::any::Any + Send>) -> String {
    panic
        .downcast_ref::<&str>()
        .map(|s| s.to_string())
        .or_else(|| panic.downcast_ref::<String>().cloned())
        .unwrap_or_else(|| "panic without a message".into())
}

/// What `vecload extract --json` prints: the outcome for the parent.
pub fn child_main(path: &Path, kind: Kind) -> String {
    // The parent reports panics with the file's path; the default hook would
    // only add noise to its stderr.
    std::panic::set_hook(Box::new(|_| {}));
    let out: Extracted = std::fs::read(path)
        .map_err(|e| Failure::new(Reason::Unparsable, format!("reading: {e}")))
        .and_then(|bytes| in_process(&bytes, kind));
    serde_json::to_string(&out).unwrap_or_else(|e| {
        format!(r#"{{"Err":{{"reason":"unparsable","detail":"encoding the result: {e}"}}}}"#)
    })
}

fn in_child(exe: &Path, path: &Path, kind: Kind, timeout: Duration) -> Extracted {
    let kind_arg = serde_json::to_value(kind)
        .ok()
        .and_then(|v| v.as_str().map(str::to_string))
        .unwrap_or_default();
    let mut cmd = Command::new(exe);
    cmd.args(["extract", "--json", "--kind", &kind_arg, "--"])
        .arg(path)
        // The parser sees untrusted input: it gets none of the keys and
        // passwords in this process's environment.
        .env_clear()
        .env("VECLOAD_LOG", "off")
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    limit_memory(&mut cmd);
    let mut child = cmd
        .spawn()
        .map_err(|e| Failure::new(Reason::ParserCrashed, format!("starting {exe:?}: {e}")))?;
    // Drained on threads of their own so a full pipe never blocks the child.
    let drain = |r: Option<Box<dyn Read + Send>>| {
        std::thread::spawn(move || {
            let mut buf = Vec::new();
            if let Some(mut r) = r {
                let _ = r.read_to_end(&mut buf);
            }
            buf
        })
    };
    let stdout = drain(child.stdout.take().map(|s| Box::new(s) as _));
    let stderr = drain(child.stderr.take().map(|s| Box::new(s) as _));
    let deadline = Instant::now() + timeout;
    let mut pause = Duration::from_millis(1);
    let status = loop {
        match child.try_wait() {
            Ok(Some(status)) => break Ok(status),
            Ok(None) if Instant::now() >= deadline => {
                let _ = child.kill();
                let _ = child.wait();
                break Err(Failure::new(
                    Reason::TimedOut,
                    format!(
                        "extraction took longer than --extract-timeout {}s; the parser was stopped",
                        timeout.as_secs_f64()
                    ),
                ));
            }
            Ok(None) => {
                std::thread::sleep(pause);
                pause = (pause * 2).min(Duration::from_millis(25));
            }
            Err(e) => break Err(Failure::new(Reason::ParserCrashed, format!("waiting: {e}"))),
        }
    };
    let out = stdout.join().unwrap_or_default();
    let err = stderr.join().unwrap_or_default();
    let status = status?;
    if status.success()
        && let Ok(result) = serde_json::from_slice::<Extracted>(&out)
    {
        return result;
    }
    let last = String::from_utf8_lossy(&err);
    let last = last
        .lines()
        .rev()
        .find(|l| !l.trim().is_empty())
        .unwrap_or("");
    Err(Failure::new(
        Reason::ParserCrashed,
        format!("the parser process ended with {status}{}", {
            if last.is_empty() {
                String::new()
            } else {
                format!(": {}", last.chars().take(300).collect::<String>())
            }
        }),
    ))
}

/// Address space a parser child may use: a document that makes its parser
/// allocate without end fails alone ("parser crashed: memory allocation of
/// N bytes failed") instead of taking the machine's memory.
const CHILD_MEMORY: u64 = 4 << 30;

#[cfg(target_os = "linux")]
fn limit_memory(cmd: &mut Command) {
    use std::os::unix::process::CommandExt;
    // SAFETY: runs in the forked child before exec; setrlimit is a plain
    // system call (async-signal-safe) and touches no memory of the parent.
    unsafe {
        cmd.pre_exec(|| {
            let lim = libc::rlimit {
                rlim_cur: CHILD_MEMORY,
                rlim_max: CHILD_MEMORY,
            };
            if libc::setrlimit(libc::RLIMIT_AS, &lim) != 0 {
                return Err(std::io::Error::last_os_error());
            }
            Ok(())
        });
    }
}

#[cfg(not(target_os = "linux"))]
fn limit_memory(_cmd: &mut Command) {}

/// Text cleanup shared by the parsers: NULs out (PostgreSQL text cannot
/// hold them), trailing spaces cut, runs of blank lines folded.
pub(crate) fn tidy(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    let mut blank = 0;
    for line in text.lines() {
        let line = line.trim_end();
        if line.trim().is_empty() {
            blank += 1;
            if blank > 1 || out.is_empty() {
                continue;
            }
            out.push('\n');
            continue;
        }
        blank = 0;
        out.extend(line.chars().filter(|&c| c != '\0'));
        out.push('\n');
    }
    while out.ends_with("\n\n") {
        out.pop();
    }
    out
}

/// One part holding a whole document's text, or the failure for none.
pub(crate) fn whole(text: String, empty: &str) -> Extracted {
    let text = tidy(&text);
    if text.trim().is_empty() {
        return Err(Failure::new(Reason::Empty, empty));
    }
    Ok(vec![Part {
        label: None,
        page: None,
        text,
        records: false,
    }])
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::PermissionsExt;

    /// A stand-in for the vecload binary: a real process that behaves badly.
    fn script(dir: &Path, name: &str, body: &str) -> PathBuf {
        let p = dir.join(name);
        std::fs::write(&p, format!("#!/bin/sh\n{body}\n")).unwrap();
        std::fs::set_permissions(&p, std::fs::Permissions::from_mode(0o755)).unwrap();
        p
    }

    #[test]
    fn a_child_that_hangs_is_stopped_at_the_timeout() {
        let dir = tempfile::tempdir().unwrap();
        let exe = script(dir.path(), "hang", "exec sleep 30");
        let t = Instant::now();
        let e = in_child(
            &exe,
            Path::new("x.pdf"),
            Kind::Pdf,
            Duration::from_millis(300),
        )
        .unwrap_err();
        assert_eq!(e.reason, Reason::TimedOut, "{e:?}");
        assert!(e.detail.contains("--extract-timeout 0.3s"), "{}", e.detail);
        assert!(t.elapsed() < Duration::from_secs(20), "{:?}", t.elapsed());
    }

    #[test]
    fn a_child_that_crashes_is_reported_with_its_last_words() {
        let dir = tempfile::tempdir().unwrap();
        let exe = script(
            dir.path(),
            "crash",
            "echo 'thread main has overflowed its stack' >&2; kill -SEGV $$",
        );
        let e = in_child(&exe, Path::new("x.pdf"), Kind::Pdf, Duration::from_secs(10)).unwrap_err();
        assert_eq!(e.reason, Reason::ParserCrashed, "{e:?}");
        assert!(e.detail.contains("overflowed its stack"), "{}", e.detail);
        assert!(
            e.detail.contains("SIGSEGV") || e.detail.contains("signal"),
            "{}",
            e.detail
        );
    }

    #[test]
    fn a_child_gets_no_environment_and_bounded_memory() {
        let dir = tempfile::tempdir().unwrap();
        let exe = script(
            dir.path(),
            "env",
            "echo \"HOME=${HOME:-unset} limit=$(ulimit -v)\" >&2; exit 3",
        );
        let e = in_child(&exe, Path::new("x.pdf"), Kind::Pdf, Duration::from_secs(10)).unwrap_err();
        assert_eq!(e.reason, Reason::ParserCrashed, "{e:?}");
        assert!(e.detail.contains("HOME=unset"), "{}", e.detail);
        assert!(
            e.detail.contains(&format!("limit={}", CHILD_MEMORY / 1024)),
            "{}",
            e.detail
        );
    }

    #[test]
    fn the_childs_answer_comes_back_whole() {
        let dir = tempfile::tempdir().unwrap();
        let ok: Extracted = Ok(vec![Part {
            label: Some("page=2".into()),
            page: Some(2),
            text: "x".repeat(200_000),
            records: false,
        }]);
        let file = dir.path().join("answer.json");
        std::fs::write(&file, serde_json::to_string(&ok).unwrap()).unwrap();
        let exe = script(dir.path(), "answer", &format!("cat {}", file.display()));
        assert_eq!(
            in_child(&exe, Path::new("x.pdf"), Kind::Pdf, Duration::from_secs(10)),
            ok
        );
    }
}
