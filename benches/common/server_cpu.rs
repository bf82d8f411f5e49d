//! CPU time of a local server, by thread kind, read from /proc: where a
//! store spends the work a client's variant asks of it. Thread names are
//! all a stripped server binary (the prebuilt Qdrant) gives a profile.

use std::collections::BTreeMap;

/// Clock ticks per second of /proc's CPU times (USER_HZ: 100 on Linux).
const TICKS: f64 = 100.0;

/// CPU seconds by thread kind ("update", "general", "grpc", ...: the name
/// without its number), plus "(all)" from the process itself, which also
/// counts threads that ended (optimizers come and go).
#[derive(Default, Clone)]
pub struct Cpu(BTreeMap<String, f64>);

/// utime + stime of a /proc stat line, in seconds.
fn seconds(stat: &str) -> Option<f64> {
    // The name in parentheses may hold spaces; the fields after it do not.
    let rest = &stat[stat.rfind(')')? + 1..];
    let f: Vec<&str> = rest.split_whitespace().collect();
    let (u, s): (f64, f64) = (f.get(11)?.parse().ok()?, f.get(12)?.parse().ok()?);
    Some((u + s) / TICKS)
}

impl Cpu {
    /// Now, for `pid`; empty when it cannot be read (not Linux, gone).
    pub fn of(pid: u32) -> Cpu {
        let mut m = BTreeMap::new();
        let base = format!("/proc/{pid}");
        if let Some(all) = std::fs::read_to_string(format!("{base}/stat"))
            .ok()
            .and_then(|s| seconds(&s))
        {
            m.insert("(all)".to_string(), all);
        }
        for task in std::fs::read_dir(format!("{base}/task"))
            .into_iter()
            .flatten()
            .flatten()
        {
            let p = task.path();
            let (Ok(name), Ok(stat)) = (
                std::fs::read_to_string(p.join("comm")),
                std::fs::read_to_string(p.join("stat")),
            ) else {
                continue;
            };
            let kind = name
                .trim()
                .trim_end_matches(|c: char| c.is_ascii_digit() || c == '-');
            if let Some(s) = seconds(&stat) {
                *m.entry(kind.to_string()).or_default() += s;
            }
        }
        Cpu(m)
    }

    /// What was used from `before` to `self`.
    pub fn since(&self, before: &Cpu) -> Cpu {
        Cpu(self
            .0
            .iter()
            .map(|(k, v)| (k.clone(), v - before.0.get(k).copied().unwrap_or(0.0)))
            .filter(|(_, v)| *v > 0.0)
            .collect())
    }

    pub fn total(&self) -> f64 {
        self.0.get("(all)").copied().unwrap_or(0.0)
    }

    /// "1.2 s: update 0.8, general 0.3, ..." (largest first, ended threads
    /// as "ended").
    pub fn describe(&self) -> String {
        let total = self.total();
        let mut parts: Vec<(&str, f64)> = self
            .0
            .iter()
            .filter(|(k, _)| k.as_str() != "(all)")
            .map(|(k, v)| (k.as_str(), *v))
            .collect();
        let live: f64 = parts.iter().map(|(_, v)| v).sum();
        if total - live > 0.05 {
            parts.push(("ended threads", total - live));
        }
        parts.sort_by(|a, b| b.1.total_cmp(&a.1));
        let list: Vec<String> = parts
            .iter()
            .filter(|(_, v)| *v >= 0.05)
            .map(|(k, v)| format!("{k} {v:.1}"))
            .collect();
        format!("{total:.1} s ({})", list.join(", "))
    }
}
