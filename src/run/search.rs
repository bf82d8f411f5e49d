//! `vecload search`: the question is embedded by the same provider, model
//! and settings as the load (so the vectors are comparable), then the store
//! is asked for the tenant's nearest chunks.

use anyhow::{Result, bail};

use std::sync::Arc;

use crate::embed::settings::EmbedSettings;
use crate::records::Hit;
use crate::store::Target;

/// `vecload search`: a question, a tenant, the load's embedding settings
/// and store.
#[derive(Debug, Clone)]
pub struct SearchJob {
    pub query: String,
    pub tenant: String,
    pub k: usize,
    pub json: bool,
    pub embed: EmbedSettings,
    pub target: Arc<dyn Target>,
}

pub async fn search(cfg: &SearchJob) -> Result<Vec<Hit>> {
    // A question embedded by another model than the stored vectors' gets
    // scores that mean nothing: refused before the request.
    let want = super::space::space_of(&cfg.embed, cfg.target.as_ref());
    match cfg.target.space().await? {
        crate::space::Recorded::Space(r) => {
            if let Some(diff) = r.differs(&want) {
                return Err(super::space::Refused(format!(
                    "{} holds vectors of {}; this search embeds the question with {}: {diff}. \
                     Scores across two models mean nothing: search with the settings the \
                     store was loaded with",
                    cfg.target.describe(),
                    r.describe(),
                    want.describe()
                ))
                .into());
            }
        }
        crate::space::Recorded::Unrecorded => tracing::warn!(
            "{} records no embedding space: the answers assume its vectors are of {} \
             (a load or `vecload check --probe 8` finds out)",
            cfg.target.describe(),
            want.describe()
        ),
        crate::space::Recorded::Unreadable(m) => tracing::warn!("{m}"),
        crate::space::Recorded::NoTarget => {
            bail!("{} does not exist", cfg.target.describe())
        }
    }
    let (embedder, _) = crate::embed::connect(&cfg.embed).await?;
    // One request, retried on the transient kinds within a short budget.
    let (mut vectors, _) = super::space::embed_with_budget(
        embedder.as_ref(),
        &[cfg.query.as_str()],
        std::time::Duration::from_secs(30),
    )
    .await
    .map_err(|e| anyhow::anyhow!("embedding the query: {e:#}"))?;
    let vector = vectors.pop().unwrap_or_default();
    if vector.len() != cfg.embed.dim {
        bail!(
            "the model returned a vector of length {} but --embed-dim (EMBEDDING_DIM) is {}",
            vector.len(),
            cfg.embed.dim
        );
    }
    if vector.iter().any(|x| !x.is_finite()) {
        bail!("the model returned a non-finite value for the query");
    }
    let sink = cfg.target.sink(cfg.embed.dim);
    sink.search(&cfg.tenant, &vector, cfg.k).await
}

/// One block per hit: rank, score, where it came from, the start of the text.
pub fn human(cfg: &SearchJob, hits: &[Hit]) -> String {
    use std::fmt::Write;
    let mut s = String::new();
    if hits.is_empty() {
        let _ = writeln!(s, "no results for tenant {:?}", cfg.tenant);
        return s;
    }
    for (i, h) in hits.iter().enumerate() {
        let _ = writeln!(
            s,
            "{:>2}. {:.4}  {} #{}",
            i + 1,
            h.score,
            h.source,
            h.chunk_index
        );
        let text: String = h.content.split_whitespace().collect::<Vec<_>>().join(" ");
        let mut start: String = text.chars().take(200).collect();
        if text.chars().count() > 200 {
            start.push('…');
        }
        let _ = writeln!(s, "    {start}");
    }
    s
}
