//! The embedding space a store's vectors belong to: which model made them,
//! how long and how compared. Every table or collection vecload creates or
//! writes carries a record of it (Qdrant: the collection's metadata;
//! PostgreSQL: the table's comment, as JSON), so a load with another model
//! is refused before anything is paid, instead of "unchanged" answering for
//! vectors of another space.
//!
//! Two spaces are the same when the model, the length, the distance and the
//! options that change a text's vector agree. The provider is recorded but
//! not compared: the same model served by OpenAI or Azure OpenAI, or moved
//! from one host to another, makes the same vectors.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

/// The key of the record: a Qdrant metadata key, and the JSON object of a
/// PostgreSQL table's comment.
pub const RECORD_KEY: &str = "vecload_embedding_space";
/// What LightRAG's next release reads beside a vector container
/// (`docs/design/VectorSpaceProvenance.md` of its main branch).
pub const LIGHTRAG_MODEL_KEY: &str = "lightrag_embedding_model";
pub const LIGHTRAG_DIM_KEY: &str = "lightrag_embedding_dim";

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Space {
    /// The provider (EMBEDDING_BINDING), for information.
    pub binding: String,
    pub model: String,
    pub dim: usize,
    /// cosine, dot or euclid.
    pub distance: String,
    /// What else changes a text's vector: the provider's task, the
    /// document prefix of an asymmetric model.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub options: BTreeMap<String, String>,
    /// Whether the stored vectors are unit length (None: not known).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub unit_length: Option<bool>,
    /// Who recorded it and when, and how it was known: `created` (with the
    /// target), `probed` (stored vectors compared with the model's), or
    /// `assumed` (the user said so).
    #[serde(default)]
    pub recorded_by: String,
    #[serde(default)]
    pub recorded_at: String,
    #[serde(default)]
    pub how: String,
}

/// What a target says of its space.
#[derive(Debug, Clone, PartialEq)]
pub enum Recorded {
    /// The table or collection does not exist yet.
    NoTarget,
    /// It exists without a record (written by LightRAG, the migration
    /// script, an earlier vecload).
    Unrecorded,
    Space(Space),
    /// A record that cannot be read: said as it is, never overwritten.
    Unreadable(String),
}

impl Space {
    /// The record's JSON.
    pub fn to_json(&self) -> String {
        serde_json::to_string(self).unwrap_or_default()
    }

    /// A record as a store keeps it; `what` names where it was read, for the error.
    pub fn from_json(text: &str, what: &str) -> Recorded {
        match serde_json::from_str::<Space>(text) {
            Ok(s) => Recorded::Space(s),
            Err(e) => Recorded::Unreadable(format!("the embedding-space record of {what}: {e}")),
        }
    }

    /// Stamps who records it, when and how.
    pub fn stamped(mut self, how: &str, now: String) -> Space {
        self.recorded_by = format!("vecload {}", env!("CARGO_PKG_VERSION"));
        self.recorded_at = now;
        self.how = how.to_string();
        self
    }

    /// One line: `text-embedding-3-small (openai), 1536 dimensions, cosine`.
    pub fn describe(&self) -> String {
        let mut s = format!(
            "{} ({}), {} dimensions, {}",
            if self.model.is_empty() {
                "(no model name)"
            } else {
                &self.model
            },
            self.binding,
            self.dim,
            self.distance
        );
        for (k, v) in &self.options {
            s.push_str(&format!(", {k}={v:?}"));
        }
        s
    }

    /// None when vectors of `self` and `other` can be compared; else what
    /// differs, in words.
    pub fn differs(&self, other: &Space) -> Option<String> {
        let mut d = Vec::new();
        if self.model.trim() != other.model.trim() {
            d.push(format!("model {:?} ≠ {:?}", self.model, other.model));
        }
        if self.dim != other.dim {
            d.push(format!("{} ≠ {} dimensions", self.dim, other.dim));
        }
        if self.distance != other.distance {
            d.push(format!("distance {} ≠ {}", self.distance, other.distance));
        }
        if self.options != other.options {
            d.push(format!("options {:?} ≠ {:?}", self.options, other.options));
        }
        (!d.is_empty()).then(|| d.join(", "))
    }

    /// The same space, as recorded in `recorded` (keeps what the record
    /// knows that a run's settings do not: how it was made, unit length).
    pub fn matches(&self, recorded: &Space) -> bool {
        self.differs(recorded).is_none()
    }
}

/// The check's outcome, for the report.
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct Verdict {
    /// `new target`, `matches`, `probed`, `assumed`, `empty`, `not recorded`.
    pub outcome: &'static str,
    /// The space the target records now, in words.
    pub space: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub probe: Option<Probe>,
}

/// What a probe measured.
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct Probe {
    pub texts: usize,
    pub requests: u64,
    /// The lowest cosine between a stored vector and the model's vector of
    /// the same text.
    pub min_cosine: f64,
}

impl Verdict {
    /// `  embedding space: probed (8 stored texts, cosine ≥ 0.9999): ...`
    pub fn line(&self) -> String {
        let mut s = format!("  embedding space: {}", self.outcome);
        if let Some(p) = &self.probe {
            s.push_str(&format!(
                " ({} stored texts embedded again, cosine ≥ {:.4})",
                p.texts, p.min_cosine
            ));
        }
        if let Some(space) = &self.space {
            s.push_str(": ");
            s.push_str(space);
        }
        s
    }
}

/// The cosine of two vectors (0 when either is zero).
pub fn cosine(a: &[f32], b: &[f32]) -> f64 {
    if a.len() != b.len() {
        return 0.0;
    }
    let (mut dot, mut na, mut nb) = (0f64, 0f64, 0f64);
    for (x, y) in a.iter().zip(b) {
        let (x, y) = (f64::from(*x), f64::from(*y));
        dot += x * y;
        na += x * x;
        nb += y * y;
    }
    if na == 0.0 || nb == 0.0 {
        return 0.0;
    }
    dot / (na.sqrt() * nb.sqrt())
}

/// The Euclidean length of a vector.
pub fn norm(v: &[f32]) -> f64 {
    v.iter()
        .map(|x| f64::from(*x) * f64::from(*x))
        .sum::<f64>()
        .sqrt()
}

/// A probe's verdict: stored vectors and the model's vectors of the same
/// texts agree this closely at the least (the model is the same, up to
/// float16 storage and a provider's rounding).
pub const SAME_SPACE_COSINE: f64 = 0.99;

/// `2026-11-25T22:42:46Z`, without a date crate.
pub fn rfc3339(t: std::time::SystemTime) -> String {
    let secs = t
        .duration_since(std::time::SystemTime::UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0);
    let (days, rem) = ((secs / 86_400) as i64, secs % 86_400);
    // Howard Hinnant's civil_from_days.
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    let y = yoe + era * 400 + i64::from(m <= 2);
    format!(
        "{y:04}-{m:02}-{d:02}T{:02}:{:02}:{:02}Z",
        rem / 3600,
        rem % 3600 / 60,
        rem % 60
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::{Duration, SystemTime};

    #[test]
    fn timestamps_are_rfc3339_utc() {
        let t = SystemTime::UNIX_EPOCH + Duration::from_secs(1_795_000_000);
        assert_eq!(rfc3339(t), "2026-11-18T11:06:40Z");
        assert_eq!(rfc3339(SystemTime::UNIX_EPOCH), "1970-01-01T00:00:00Z");
        let leap = SystemTime::UNIX_EPOCH + Duration::from_secs(951_782_400);
        assert_eq!(rfc3339(leap), "2000-02-29T00:00:00Z");
    }

    fn space(model: &str) -> Space {
        Space {
            binding: "openai".into(),
            model: model.into(),
            dim: 4,
            distance: "cosine".into(),
            options: BTreeMap::new(),
            unit_length: None,
            recorded_by: String::new(),
            recorded_at: String::new(),
            how: String::new(),
        }
    }

    #[test]
    fn records_round_trip_and_bad_ones_are_said() {
        let s = space("m").stamped("created", "2026-12-07T00:00:00Z".into());
        assert_eq!(Space::from_json(&s.to_json(), "t"), Recorded::Space(s));
        assert!(matches!(
            Space::from_json("{\"model\":", "table x"),
            Recorded::Unreadable(m) if m.contains("table x")
        ));
    }

    #[test]
    fn the_provider_is_not_compared_the_model_and_options_are() {
        let a = space("m");
        let mut b = space("m");
        b.binding = "azure_openai".into();
        assert!(a.matches(&b));
        let c = space("other");
        assert!(a.differs(&c).is_some_and(|d| d.contains("\"other\"")));
        let mut d = space("m");
        d.options.insert("task".into(), "retrieval".into());
        assert!(!a.matches(&d));
        let mut e = space("m");
        e.dim = 8;
        assert!(!a.matches(&e));
    }

    #[test]
    fn cosine_of_vectors() {
        assert!((cosine(&[1.0, 0.0], &[2.0, 0.0]) - 1.0).abs() < 1e-12);
        assert_eq!(cosine(&[1.0, 0.0], &[0.0, 1.0]), 0.0);
        assert_eq!(cosine(&[0.0, 0.0], &[0.0, 1.0]), 0.0);
        assert_eq!(cosine(&[1.0], &[1.0, 0.0]), 0.0);
    }
}
