//! The embedding-space check every run makes before anything is paid or
//! written (`lifecycle::run`, `search`): the space the run writes against
//! the one its target records.
//!
//! - No target yet: it is created with the record.
//! - A record that matches: go on. One that differs: refused (exit 2),
//!   naming both, unless `--probe-space` finds the stored vectors are this
//!   model's after all (one model under two names).
//! - No record (LightRAG, the migration script, an earlier vecload): a few
//!   stored texts are embedded again and compared with their stored
//!   vectors; the same space is recorded, another refused with the cosine
//!   measured. `--assume-space` records it without asking the endpoint.

use std::sync::Arc;
use std::time::{Duration, Instant};

use crate::embed::{EmbedError, Embedder};
use crate::report::Stats;
use crate::space::{Probe, Recorded, SAME_SPACE_COSINE, Space, Verdict, cosine};
use crate::store::{Sink, Target};
use anyhow::anyhow;

/// Texts a probe embeds again, at most.
pub const PROBE_TEXTS: usize = 8;

/// How an unrecorded or differing target is treated.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum Policy {
    /// Probe a target without a record; refuse one whose record differs.
    #[default]
    Probe,
    /// `--assume-space`: record this run's space on a target without one.
    Assume,
    /// `--probe-space`: probe even a target whose record differs, and
    /// record this run's space if the stored vectors agree.
    Reprobe,
}

impl Policy {
    /// `--assume-space` / `--probe-space`.
    pub fn of(flags: &crate::store::StoreFlags) -> Policy {
        match (flags.assume_space, flags.probe_space) {
            (true, _) => Policy::Assume,
            (_, true) => Policy::Reprobe,
            _ => Policy::Probe,
        }
    }
}

/// What a run brings to the check.
pub struct Wanted {
    /// The space of the vectors the run writes (None: it cannot know,
    /// a copy from a store without a record).
    pub space: Option<Space>,
    /// The endpoint, for a probe (None: the run embeds nothing).
    pub embedder: Option<Arc<dyn Embedder>>,
    pub policy: Policy,
}

/// Refused: the target's vectors are of another space. Exit 2.
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct Refused(pub String);

/// The space `embed` makes vectors in, as `target` stores them.
pub fn space_of(embed: &crate::embed::settings::EmbedSettings, target: &dyn Target) -> Space {
    let unit = (target.stores_as() == crate::store::Stored::Normalized).then_some(true);
    embed.space(target.distance(), unit)
}

/// The refusal of a run into `what`, whose record `r` names another space.
fn mismatch(what: &str, r: &Space, want: &Space, diff: &str) -> String {
    format!(
        "{what} holds vectors of {} (recorded by {} at {}, {}); this run makes vectors \
         of {}: {diff}. Vectors of two models in one index answer nonsense, so nothing \
         was sent or written. To change the model, `vecload reembed` into a new table \
         or collection and switch readers to it (--switch); if both name the same \
         model, --probe-space compares stored vectors with this model's and records \
         it when they agree",
        r.describe(),
        r.recorded_by,
        r.recorded_at,
        r.how,
        want.describe()
    )
}

/// What a run that embeds with `embed` into `target` brings.
pub fn wanted(
    embed: &crate::embed::settings::EmbedSettings,
    target: &dyn Target,
    embedder: Option<Arc<dyn Embedder>>,
    policy: Policy,
) -> Wanted {
    Wanted {
        space: Some(space_of(embed, target)),
        embedder,
        policy,
    }
}

/// What `compare` leaves for after `prepare`.
pub enum Pending {
    Done(Verdict),
    /// The target has no record: probe it (or take the user's word) once
    /// `prepare` has checked its layout and dimension.
    Unrecorded,
}

/// The first half of the check, before `prepare`: a record is compared (a
/// differing one refused), a new target is created with this run's.
/// Nothing is sent. `sink` is told what to record if `prepare` creates
/// the target.
pub async fn compare(
    target: &dyn Target,
    wanted: &Wanted,
    sink: &mut dyn Sink,
) -> anyhow::Result<Pending> {
    let recorded = target.space().await?;
    let what = target.describe();
    let Some(want) = &wanted.space else {
        return Ok(Pending::Done(match recorded {
            Recorded::Space(r) => {
                tracing::warn!(
                    "{what} records {}; the source records no embedding space, so this run \
                     cannot tell whether its vectors are alike",
                    r.describe()
                );
                Verdict {
                    outcome: "not compared",
                    space: Some(r.describe()),
                    probe: None,
                }
            }
            _ => Verdict {
                outcome: "not recorded",
                space: None,
                probe: None,
            },
        }));
    };
    match recorded {
        Recorded::NoTarget => {
            sink.record_on_create(want.clone().stamped("created", now()));
            Ok(Pending::Done(Verdict {
                outcome: "new target",
                space: Some(want.describe()),
                probe: None,
            }))
        }
        Recorded::Unreadable(msg) => Err(Refused(format!(
            "{msg}. vecload does not overwrite a record it cannot read: fix or remove it \
             (pgvector: the table's comment; Qdrant: the collection's metadata key \
             `{}`), then run again",
            crate::space::RECORD_KEY
        ))
        .into()),
        // Another length: `prepare` refuses it, in the store's own terms
        // (the column type, the collection's vector size).
        Recorded::Space(r) if r.dim != want.dim => Ok(Pending::Done(Verdict {
            outcome: "another dimension",
            space: Some(r.describe()),
            probe: None,
        })),
        Recorded::Space(r) => match r.differs(want) {
            None => Ok(Pending::Done(Verdict {
                outcome: "matches",
                space: Some(r.describe()),
                probe: None,
            })),
            Some(_) if wanted.policy == Policy::Reprobe && wanted.embedder.is_some() => {
                Ok(Pending::Unrecorded)
            }
            Some(diff) => Err(Refused(mismatch(&what, &r, want, &diff)).into()),
        },
        Recorded::Unrecorded => Ok(Pending::Unrecorded),
    }
}

/// The second half, after `prepare`: a target without a record (or one
/// `--probe-space` re-examines) is probed, or recorded on the user's word.
pub async fn conclude(
    target: &dyn Target,
    wanted: &Wanted,
    pending: Pending,
    stats: &Stats,
) -> anyhow::Result<Verdict> {
    let (Pending::Unrecorded, Some(want)) = (&pending, &wanted.space) else {
        return Ok(match pending {
            Pending::Done(v) => v,
            Pending::Unrecorded => Verdict {
                outcome: "not recorded",
                space: None,
                probe: None,
            },
        });
    };
    if wanted.policy == Policy::Assume {
        target
            .record_space(&want.clone().stamped("assumed", now()))
            .await?;
        tracing::info!(
            "{}: recorded {} without a probe (--assume-space)",
            target.describe(),
            want.describe()
        );
        return Ok(Verdict {
            outcome: "assumed",
            space: Some(want.describe()),
            probe: None,
        });
    }
    if wanted.embedder.is_none() {
        return Ok(Verdict {
            outcome: "not recorded",
            space: None,
            probe: None,
        });
    }
    let recorded = match target.space().await? {
        Recorded::Space(r) => r.differs(want),
        _ => None,
    };
    match probe_or_refuse(target, wanted, want, stats, recorded.as_deref()).await? {
        // Nothing stored yet: nothing to tell the spaces apart by.
        None => adopt(target, want, None, "empty").await,
        Some(p) => adopt(target, want, Some(p), "probed").await,
    }
}

/// Both halves at once, for a caller whose target is already prepared or
/// is prepared by `prepare` in between (`lifecycle::run` calls them apart).
pub async fn settle(
    target: &dyn Target,
    wanted: &Wanted,
    sink: &mut dyn Sink,
    stats: &Stats,
) -> anyhow::Result<Verdict> {
    let pending = compare(target, wanted, sink).await?;
    conclude(target, wanted, pending, stats).await
}

fn now() -> String {
    crate::space::rfc3339(std::time::SystemTime::now())
}

async fn adopt(
    target: &dyn Target,
    want: &Space,
    probe: Option<Probe>,
    how: &'static str,
) -> anyhow::Result<Verdict> {
    // The probe settled it; a record the run may not write (a table of
    // another owner: COMMENT needs ownership) costs the next run one more
    // probe, not this run.
    if let Err(e) = target.record_space(&want.clone().stamped(how, now())).await {
        tracing::warn!(
            "{}: the stored vectors are of {}, but the record could not be written ({e:#}); \
             the next run probes again",
            target.describe(),
            want.describe()
        );
        return Ok(Verdict {
            outcome: "probed, not recorded",
            space: Some(want.describe()),
            probe,
        });
    }
    match &probe {
        Some(p) => tracing::info!(
            "{}: {} stored texts embedded again agree with their vectors (cosine ≥ {:.4}): \
             recorded {}",
            target.describe(),
            p.texts,
            p.min_cosine,
            want.describe()
        ),
        None => tracing::info!(
            "{}: no vectors stored yet; recorded {}",
            target.describe(),
            want.describe()
        ),
    }
    Ok(Verdict {
        outcome: how,
        space: Some(want.describe()),
        probe,
    })
}

/// Embeds up to `PROBE_TEXTS` stored texts again and compares; refuses
/// when they disagree. None: the target stores no text to probe with.
async fn probe_or_refuse(
    target: &dyn Target,
    wanted: &Wanted,
    want: &Space,
    stats: &Stats,
    recorded_diff: Option<&str>,
) -> anyhow::Result<Option<Probe>> {
    let embedder = wanted
        .embedder
        .as_ref()
        .ok_or_else(|| anyhow!("no endpoint to probe with"))?;
    let Some(p) = probe(target, embedder.as_ref(), want.dim, PROBE_TEXTS, stats).await? else {
        return Ok(None);
    };
    if p.min_cosine < SAME_SPACE_COSINE {
        return Err(Refused(format!(
            "{} holds vectors of another embedding space than {}{}: {} stored texts embedded \
             again with this model agree with their stored vectors only to cosine {:.4} \
             (the same model gives ≥ {SAME_SPACE_COSINE}). Nothing was written. To change \
             the model, `vecload reembed` into a new table or collection; `vecload check` \
             shows what the store holds",
            target.describe(),
            want.describe(),
            recorded_diff
                .map(|d| format!(" (its record differs: {d})"))
                .unwrap_or_default(),
            p.texts,
            p.min_cosine
        ))
        .into());
    }
    Ok(Some(p))
}

/// The probe itself: the first `n` stored rows with a text and a vector,
/// embedded again in one request (counted in `stats`).
pub async fn probe(
    target: &dyn Target,
    embedder: &dyn Embedder,
    dim: usize,
    n: usize,
    stats: &Stats,
) -> anyhow::Result<Option<Probe>> {
    let mut reader = target.reader(None, n.max(1) * 4, true).await?;
    let mut rows = Vec::new();
    while rows.len() < n {
        let Some(page) = reader.next_page().await? else {
            break;
        };
        rows.extend(
            page.into_iter()
                .filter(|r| !r.content.trim().is_empty() && r.vector.is_some()),
        );
    }
    rows.truncate(n);
    if rows.is_empty() {
        return Ok(None);
    }
    if let Some(len) = rows
        .iter()
        .filter_map(|r| r.vector.as_ref().map(Vec::len))
        .find(|l| *l != dim)
    {
        return Err(Refused(format!(
            "{} stores vectors of {len} dimensions; this run makes {dim}. Give a new table or \
             collection, or --embed-dim {len} with the model that made them",
            target.describe()
        ))
        .into());
    }
    let texts: Vec<&str> = rows.iter().map(|r| r.content.as_str()).collect();
    let (vectors, requests) = embed_with_budget(embedder, &texts, Duration::from_secs(60)).await?;
    stats
        .embed_requests
        .fetch_add(requests, std::sync::atomic::Ordering::Relaxed);
    let min_cosine = rows
        .iter()
        .zip(&vectors)
        .map(|(r, v)| cosine(r.vector.as_deref().unwrap_or_default(), v))
        .fold(f64::INFINITY, f64::min);
    Ok(Some(Probe {
        texts: rows.len(),
        requests,
        min_cosine,
    }))
}

/// One request, retried on the transient kinds within `budget`; returns
/// the vectors and how many requests were sent.
pub async fn embed_with_budget(
    embedder: &dyn Embedder,
    texts: &[&str],
    budget: Duration,
) -> anyhow::Result<(Vec<Vec<f32>>, u64)> {
    let started = Instant::now();
    let mut attempt = 0u32;
    loop {
        attempt += 1;
        match embedder.embed(texts).await {
            Ok(v) if v.len() == texts.len() => return Ok((v, u64::from(attempt))),
            Ok(v) => {
                return Err(anyhow!(
                    "the endpoint answered {} vectors for {} texts",
                    v.len(),
                    texts.len()
                ));
            }
            Err(
                EmbedError::Transient {
                    message,
                    retry_after,
                }
                | EmbedError::Throttled {
                    message,
                    retry_after,
                },
            ) => {
                let pause = crate::backoff::delay(attempt, retry_after);
                if started.elapsed() + pause > budget {
                    return Err(anyhow!(
                        "the endpoint kept failing for {}s: {message}",
                        budget.as_secs()
                    ));
                }
                tracing::warn!("{message}; retrying in {:.1}s", pause.as_secs_f64());
                tokio::time::sleep(pause).await;
            }
            Err(e) => return Err(anyhow!("{e}")),
        }
    }
}

/// What the check will do, without doing it (`vecload plan`): Ok(what
/// happens) or Err(why the run would be refused).
pub async fn foresee(
    target: &dyn Target,
    wanted: &Wanted,
) -> anyhow::Result<Result<String, String>> {
    let Some(want) = &wanted.space else {
        return Ok(Ok(
            "not recorded: the source records no embedding space".into()
        ));
    };
    Ok(match target.space().await? {
        Recorded::NoTarget => Ok(format!("recorded with the new target: {}", want.describe())),
        Recorded::Unreadable(m) => Err(m),
        Recorded::Space(r) => match r.differs(want) {
            None => Ok(format!("matches the target's record: {}", r.describe())),
            Some(_) if wanted.policy == Policy::Reprobe => Ok(format!(
                "the target records {}; --probe-space embeds up to {PROBE_TEXTS} stored texts \
                 again and records {} if they agree",
                r.describe(),
                want.describe()
            )),
            Some(diff) => Err(mismatch(&target.describe(), &r, want, &diff)),
        },
        Recorded::Unrecorded => Ok(match wanted.policy {
            Policy::Assume => format!("not recorded; --assume-space records {}", want.describe()),
            _ => format!(
                "not recorded; the load first embeds up to {PROBE_TEXTS} stored texts again (one \
                 request) and records {} if they agree with their vectors",
                want.describe()
            ),
        }),
    })
}
