//! The pass over every stored row: broken vectors, rows without text,
//! duplicate ids, and the sample a probe embeds again.

use std::collections::{BTreeMap, HashSet};
use std::hash::{Hash, Hasher};

use serde::Serialize;

use super::ProbeCheck;
use crate::embed::Embedder;
use crate::records::StoredRow;
use crate::space::{SAME_SPACE_COSINE, cosine, norm};
use crate::store::Target;

/// Rows listed by id in a report, per kind of fault.
const EXAMPLES: usize = 20;
/// A unit-length vector's length, within float32 and float16 rounding.
const UNIT_TOLERANCE: f64 = 1e-2;

/// What a row's vector should be.
pub struct Expect {
    pub dim: usize,
    /// Some(true): the record says vectors are unit length.
    pub unit_length: Option<bool>,
}

#[derive(Debug, Default, Serialize)]
pub struct VectorFaults {
    pub wrong_length: u64,
    pub non_finite: u64,
    pub zero: u64,
    pub not_unit_length: u64,
    pub no_vector: u64,
    pub no_text: u64,
    pub duplicate_ids: u64,
    /// The first rows of each kind.
    pub examples: Vec<Fault>,
}

#[derive(Debug, Clone, Serialize)]
pub struct Fault {
    pub tenant: String,
    pub id: String,
    pub what: String,
}

impl VectorFaults {
    /// One problem line per kind found.
    pub fn lines(&self) -> Vec<String> {
        [
            (self.wrong_length, "vectors of the wrong length"),
            (self.non_finite, "vectors with NaN or infinite values"),
            (self.zero, "zero vectors (nothing is near them)"),
            (
                self.not_unit_length,
                "vectors not of unit length where the record says they are",
            ),
            (self.no_vector, "rows without a vector"),
            (self.no_text, "rows without text"),
            (self.duplicate_ids, "duplicate ids"),
        ]
        .into_iter()
        .filter(|(n, _)| *n > 0)
        .map(|(n, what)| format!("{n} {what}"))
        .collect()
    }

    fn note(&mut self, row: &StoredRow, what: &str, count: fn(&mut VectorFaults) -> &mut u64) {
        *count(self) += 1;
        if self.examples.iter().filter(|f| f.what == what).count() < EXAMPLES {
            self.examples.push(Fault {
                tenant: row.tenant.clone(),
                id: row.id.clone(),
                what: what.to_string(),
            });
        }
    }
}

/// One row the probe embeds again.
pub struct Sampled {
    pub tenant: String,
    pub id: String,
    pub text: String,
    pub vector: Vec<f32>,
}

pub struct Scanned {
    pub tenants: BTreeMap<String, u64>,
    pub rows: u64,
    pub faults: VectorFaults,
    /// Ids of `tenant`'s broken rows (what --repair deletes).
    pub broken_of_tenant: Vec<String>,
    pub sample: Vec<Sampled>,
}

/// Reads every row once; keeps `sample` rows spread over the store.
pub async fn scan(
    target: &dyn Target,
    expect: Expect,
    tenant: &str,
    sample: usize,
) -> anyhow::Result<Scanned> {
    let mut reader = target.reader(None, 1000, true).await?;
    let tenants = reader.counts().await?;
    let total: u64 = tenants.values().sum();
    let stride = if sample == 0 {
        u64::MAX
    } else {
        (total / sample as u64).max(1)
    };
    let mut out = Scanned {
        tenants,
        rows: 0,
        faults: VectorFaults::default(),
        broken_of_tenant: Vec::new(),
        sample: Vec::new(),
    };
    let mut seen = HashSet::new();
    while let Some(page) = reader.next_page().await? {
        for row in page {
            let i = out.rows;
            out.rows += 1;
            let mut h = std::collections::hash_map::DefaultHasher::new();
            (&row.tenant, &row.id).hash(&mut h);
            if !seen.insert(h.finish()) {
                out.faults
                    .note(&row, "duplicate id", |f| &mut f.duplicate_ids);
            }
            let broken = judge(&row, &expect, &mut out.faults);
            if broken && row.tenant == tenant {
                out.broken_of_tenant.push(row.id.clone());
            }
            if !broken
                && i.is_multiple_of(stride)
                && out.sample.len() < sample
                && let Some(v) = &row.vector
            {
                out.sample.push(Sampled {
                    tenant: row.tenant.clone(),
                    id: row.id.clone(),
                    text: row.content.clone(),
                    vector: v.clone(),
                });
            }
        }
    }
    Ok(out)
}

/// Notes what is wrong with `row`; true when it needs a new vector.
fn judge(row: &StoredRow, expect: &Expect, f: &mut VectorFaults) -> bool {
    if row.content.trim().is_empty() {
        f.note(row, "no text", |f| &mut f.no_text);
        return true;
    }
    let Some(v) = &row.vector else {
        f.note(row, "no vector", |f| &mut f.no_vector);
        return true;
    };
    if v.len() != expect.dim {
        f.note(
            row,
            &format!("length {} (not {})", v.len(), expect.dim),
            |f| &mut f.wrong_length,
        );
        return true;
    }
    if v.iter().any(|x| !x.is_finite()) {
        f.note(row, "NaN or infinite", |f| &mut f.non_finite);
        return true;
    }
    let n = norm(v);
    if n == 0.0 {
        f.note(row, "zero vector", |f| &mut f.zero);
        return true;
    }
    if expect.unit_length == Some(true) && (n - 1.0).abs() > UNIT_TOLERANCE {
        f.note(row, &format!("length {n:.4}, not 1"), |f| {
            &mut f.not_unit_length
        });
        return true;
    }
    false
}

/// Embeds the sample again; returns what it found and the ids of
/// `tenant`'s rows of another space.
pub async fn probe(
    embedder: &dyn Embedder,
    sample: &[Sampled],
    tenant: &str,
) -> anyhow::Result<(ProbeCheck, Vec<String>)> {
    let mut p = ProbeCheck {
        min_cosine: f64::INFINITY,
        ..Default::default()
    };
    let mut foreign = Vec::new();
    for part in sample.chunks(32) {
        let texts: Vec<&str> = part.iter().map(|s| s.text.as_str()).collect();
        let (vectors, requests) = crate::run::space::embed_with_budget(
            embedder,
            &texts,
            std::time::Duration::from_secs(120),
        )
        .await?;
        p.requests += requests;
        for (s, v) in part.iter().zip(&vectors) {
            p.rows += 1;
            let c = cosine(&s.vector, v);
            p.min_cosine = p.min_cosine.min(c);
            if c < SAME_SPACE_COSINE {
                p.other_space += 1;
                if s.tenant == tenant {
                    foreign.push(s.id.clone());
                }
            }
        }
    }
    if p.rows == 0 {
        p.min_cosine = 0.0;
    }
    Ok((p, foreign))
}
