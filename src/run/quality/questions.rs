//! `--questions FILE`: the team's real questions as the measure's queries.
//! Each is embedded with the run's model and asked of the new store; with
//! `reembed`, also embedded with the old model and asked of the old store
//! (those question vectors are the measure's one cost, counted). Where a
//! question names its expected answer, hit@k and MRR say which store
//! answers better; overlap@k says how much the two agree either way.

use std::path::Path;
use std::time::Duration;

use anyhow::{Result, anyhow};

use super::QualitySettings;
use crate::embed::settings::{EmbedSettings, Purpose};
use crate::records::Hit;
use crate::report::quality::{Answers, Scores};
use crate::settings::{ConfigError, bad};
use crate::store::Sink;

/// A question, and where its answer is (a source path, the end of one, or
/// a row id), if the file says.
#[derive(Debug, Clone, PartialEq)]
pub struct Question {
    pub text: String,
    pub expected: Option<String>,
}

/// Questions per request at most (fewer if the run's batch is smaller).
const PER_REQUEST: usize = 64;
/// Each request's retries, in time.
const BUDGET: Duration = Duration::from_secs(120);

/// Reads `question[<TAB>expected]` lines; blank lines and `#` comments
/// are skipped.
pub fn read(path: &Path) -> Result<Vec<Question>, ConfigError> {
    let bytes =
        std::fs::read(path).map_err(|e| bad(format!("--questions {}: {e}", path.display())))?;
    let text = String::from_utf8(bytes)
        .map_err(|_| bad(format!("--questions {}: not UTF-8 text", path.display())))?;
    let mut out = Vec::new();
    for (n, line) in text.lines().enumerate() {
        let line = line.trim_end_matches('\r');
        if line.trim().is_empty() || line.trim_start().starts_with('#') {
            continue;
        }
        let (q, expected) = match line.split_once('\t') {
            Some((q, e)) => (q.trim(), Some(e.trim()).filter(|e| !e.is_empty())),
            None => (line.trim(), None),
        };
        if q.is_empty() {
            return Err(bad(format!(
                "--questions {} line {}: an expected answer without a question",
                path.display(),
                n + 1
            )));
        }
        out.push(Question {
            text: q.to_string(),
            expected: expected.map(str::to_string),
        });
    }
    if out.is_empty() {
        return Err(bad(format!(
            "--questions {}: no questions in it (one a line)",
            path.display()
        )));
    }
    Ok(out)
}

/// Asks the questions of `sink` (and of the old store): the answers
/// compared, and the new model's question vectors (the recall queries).
pub async fn ask(
    sink: &dyn Sink,
    tenant: &str,
    questions: &[Question],
    embed: &EmbedSettings,
    s: &QualitySettings,
) -> Result<(Answers, Vec<Vec<f32>>)> {
    let (vectors, requests) = embed_all(embed, questions)
        .await
        .map_err(|e| anyhow!("embedding --questions with {}: {e:#}", embed.model))?;
    let mut new = Vec::with_capacity(questions.len());
    for v in &vectors {
        new.push(sink.search(tenant, v, s.k).await?);
    }
    let mut a = Answers {
        questions: questions.len() as u64,
        with_expected: questions.iter().filter(|q| q.expected.is_some()).count() as u64,
        new: scores(questions, &new),
        requests,
        min_hit_ratio: s.min_hit_ratio,
        ..Default::default()
    };
    if let Some(old) = &s.old {
        let (old_vectors, old_requests) = embed_all(&old.embed, questions).await.map_err(|e| {
            anyhow!(
                "embedding --questions with the old model {}: {e:#}",
                old.embed.model
            )
        })?;
        let old_sink = old.target.sink(old.embed.dim);
        let mut answered = Vec::with_capacity(questions.len());
        for v in &old_vectors {
            answered.push(old_sink.search(tenant, v, s.k).await?);
        }
        a.old = Some(scores(questions, &answered));
        a.old_requests = old_requests;
        a.old_store = Some(format!("{} ({})", old.target.describe(), old.embed.model));
        a.overlap = Some(overlap(&answered, &new, s.k));
    }
    if let (Some(n), Some(o)) = (a.new.hit_at_k, a.old.as_ref().and_then(|o| o.hit_at_k)) {
        a.hit_ratio = (o > 0.0).then(|| n / o);
    }
    a.passed = s.min_hit_ratio.map(|min| match (&a.old, a.hit_ratio) {
        (_, Some(r)) => r >= min,
        // The old store found none of the expected answers: nothing to lose.
        (Some(_), None) => true,
        (None, _) => false,
    });
    Ok((a, vectors))
}

/// The questions embedded as questions (an asymmetric model's query
/// prefix), in requests of up to 64, each retried within its time budget.
async fn embed_all(embed: &EmbedSettings, questions: &[Question]) -> Result<(Vec<Vec<f32>>, u64)> {
    let mut settings = embed.clone();
    settings.purpose = Purpose::Query;
    // Counted as paid: the cache is for documents.
    settings.cache = None;
    settings.batch_results = None;
    let (embedder, settings) = crate::embed::connect(&settings).await?;
    let per = settings.batch_size.clamp(1, PER_REQUEST);
    let (mut out, mut requests) = (Vec::with_capacity(questions.len()), 0);
    for part in questions.chunks(per) {
        let texts: Vec<&str> = part.iter().map(|q| q.text.as_str()).collect();
        let (vectors, attempts) =
            crate::run::space::embed_with_budget(embedder.as_ref(), &texts, BUDGET).await?;
        requests += attempts;
        for v in vectors {
            if v.len() != settings.dim || v.iter().any(|x| !x.is_finite()) {
                anyhow::bail!(
                    "the model answered a vector of length {} (want {} finite numbers)",
                    v.len(),
                    settings.dim
                );
            }
            out.push(v);
        }
    }
    Ok((out, requests))
}

/// hit@k and MRR over the questions with an expected answer.
fn scores(questions: &[Question], answers: &[Vec<Hit>]) -> Scores {
    let (mut hits, mut rr, mut n) = (0.0, 0.0, 0u64);
    for (q, found) in questions.iter().zip(answers) {
        let Some(e) = &q.expected else { continue };
        n += 1;
        if let Some(rank) = found.iter().position(|h| is_answer(h, e)) {
            hits += 1.0;
            rr += 1.0 / (rank + 1) as f64;
        }
    }
    if n == 0 {
        return Scores::default();
    }
    Scores {
        hit_at_k: Some(hits / n as f64),
        mrr: Some(rr / n as f64),
    }
}

/// The hit is the expected answer: its source path, the end of it (a
/// file name), or its id.
fn is_answer(hit: &Hit, expected: &str) -> bool {
    let e = expected.trim_start_matches("./");
    hit.source == e
        || hit.id == e
        || hit
            .source
            .strip_suffix(e)
            .is_some_and(|rest| rest.ends_with('/') || rest.ends_with('#'))
}

/// Mean share of the old top k also in the new (a row is its source and
/// chunk index: ids may differ between layouts).
fn overlap(old: &[Vec<Hit>], new: &[Vec<Hit>], k: usize) -> f64 {
    let per: Vec<f64> = old
        .iter()
        .zip(new)
        .map(|(o, n)| {
            let keys: std::collections::HashSet<(&str, i64)> = n
                .iter()
                .map(|h| (h.source.as_str(), h.chunk_index))
                .collect();
            let shared = o
                .iter()
                .filter(|h| keys.contains(&(h.source.as_str(), h.chunk_index)))
                .count();
            shared as f64 / k.min(o.len().max(n.len())).max(1) as f64
        })
        .collect();
    super::mean(&per)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn hit(source: &str, index: i64) -> Hit {
        Hit {
            id: format!("{source}#{index}"),
            score: 0.0,
            source: source.into(),
            chunk_index: index,
            content: String::new(),
        }
    }

    #[test]
    fn questions_are_read_with_their_expected_answers() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("q.tsv");
        std::fs::write(
            &path,
            "# a comment\nHow do I resume?\tguides/resume.md\r\n\nWhat is a tenant?\n",
        )
        .unwrap();
        let q = read(&path).unwrap();
        assert_eq!(q.len(), 2);
        assert_eq!(q[0].expected.as_deref(), Some("guides/resume.md"));
        assert_eq!(q[1].expected, None);
        std::fs::write(&path, "\tguides/resume.md\n").unwrap();
        assert!(read(&path).unwrap_err().to_string().contains("line 1"));
        std::fs::write(&path, "\n# nothing\n").unwrap();
        assert!(read(&path).is_err());
    }

    #[test]
    fn hit_at_k_and_mrr_count_the_expected_answer_by_its_rank() {
        let q = |e: &str| Question {
            text: "q".into(),
            expected: Some(e.into()),
        };
        let questions = [q("resume.md"), q("b.md"), q("nowhere.md")];
        let answers = vec![
            vec![hit("guides/resume.md", 0)],
            vec![hit("a.md", 0), hit("docs/b.md", 2)],
            vec![hit("a.md", 0)],
        ];
        let s = scores(&questions, &answers);
        assert_eq!(s.hit_at_k, Some(2.0 / 3.0));
        assert_eq!(s.mrr, Some((1.0 + 0.5) / 3.0));
        // A file name matches the end of a path, not the middle of a name.
        assert!(!is_answer(&hit("guides/notresume.md", 0), "resume.md"));
    }

    #[test]
    fn overlap_is_the_share_of_the_old_top_k_the_new_keeps() {
        let old = vec![vec![hit("a", 0), hit("b", 0)]];
        let new = vec![vec![hit("b", 0), hit("c", 0)]];
        assert_eq!(overlap(&old, &new, 2), 0.5);
    }
}
