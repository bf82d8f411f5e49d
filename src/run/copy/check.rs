//! What makes a copy safe to switch to: counts per tenant equal in both
//! stores, and a sample of the source's vectors found in the target as the
//! target stores them.

use std::collections::BinaryHeap;

use super::*;

/// Source vectors kept to compare with the target's at the end: the rows
/// with the smallest hashes of (tenant, id), a uniform sample of the whole
/// source whatever its order, in bounded memory (1 MB at 1024 dimensions).
const SAMPLE: usize = 256;

/// The source rows with the smallest hashes of (tenant, id) seen so far.
#[derive(Default)]
pub(super) struct Sample {
    hasher: std::hash::RandomState,
    kept: BinaryHeap<Kept>,
}

struct Kept {
    hash: u64,
    tenant: String,
    id: String,
    vector: Vec<f32>,
}

impl PartialEq for Kept {
    fn eq(&self, o: &Self) -> bool {
        self.hash == o.hash
    }
}
impl Eq for Kept {}
impl PartialOrd for Kept {
    fn partial_cmp(&self, o: &Self) -> Option<std::cmp::Ordering> {
        Some(self.cmp(o))
    }
}
impl Ord for Kept {
    fn cmp(&self, o: &Self) -> std::cmp::Ordering {
        self.hash.cmp(&o.hash)
    }
}

impl Sample {
    pub(super) fn offer(&mut self, row: &Row) {
        use std::hash::BuildHasher;
        let hash = self.hasher.hash_one((&row.tenant, &row.id));
        if self.kept.len() >= SAMPLE && self.kept.peek().is_some_and(|top| top.hash <= hash) {
            return;
        }
        self.kept.push(Kept {
            hash,
            tenant: row.tenant.clone(),
            id: row.id.clone(),
            vector: row.vector.clone().unwrap_or_default(),
        });
        if self.kept.len() > SAMPLE {
            self.kept.pop();
        }
    }
}

/// Counts per tenant equal in source and target (a tenant the target has
/// and the source lacks counts against a whole-store copy), and the sampled
/// vectors equal to the source's.
pub(super) async fn check(
    cfg: &CopyJob,
    source: &mut dyn RowReader,
    sink: &dyn Sink,
    sample: Sample,
    stored: Stored,
    report: &mut ReembedReport,
) -> anyhow::Result<()> {
    let counts: BTreeMap<String, u64> = source
        .counts()
        .await?
        .into_iter()
        .map(|(t, n)| (cfg.target_tenant(&t), n))
        .collect();
    let mut ok = verify::counts_match(&counts, sink, cfg.all_tenants(), "copied", report).await?;
    let mut by_tenant: BTreeMap<String, Vec<Kept>> = BTreeMap::new();
    for k in sample.kept {
        by_tenant.entry(k.tenant.clone()).or_default().push(k);
    }
    let (mut compared, mut differ) = (0u64, Vec::new());
    for (tenant, kept) in by_tenant {
        let ids: Vec<String> = kept.iter().map(|k| k.id.clone()).collect();
        let in_target = sink.vectors(&tenant, &ids).await?;
        for k in kept {
            compared += 1;
            match in_target.get(&k.id) {
                Some(v) if same(&k.vector, v, stored) => {}
                Some(_) => differ.push(format!("{tenant}/{}: vector differs", k.id)),
                None => differ.push(format!("{tenant}/{}: not in the target", k.id)),
            }
        }
    }
    if !differ.is_empty() {
        ok = false;
        report.problems.push(format!(
            "{} of {compared} sampled vectors are not the source's ({}{}){}",
            differ.len(),
            differ[..differ.len().min(5)].join(", "),
            if differ.len() > 5 { ", ..." } else { "" },
            if stored != Stored::AsGiven {
                ""
            } else {
                " (the target held these texts with other vectors: another model's? copy \
                 into a new table or collection)"
            }
        ));
    }
    report.sampled = compared;
    report.compared = Some(match stored {
        Stored::AsGiven => "bit for bit",
        Stored::Half => "within float16's rounding: halfvec keeps 11 significant bits",
        Stored::Normalized => "as unit vectors: Qdrant scales cosine vectors to length 1",
    });
    report.vectors_differing = differ.len() as u64;
    report.verified = ok;
    Ok(())
}

/// Whether `stored` is what the target keeps of `source`: the same bits;
/// float16's rounding (half a unit in the last of its 10 mantissa bits,
/// relative; absolute below its normal range); or the unit vector in the
/// source's direction, to float32's rounding of the scaling.
fn same(source: &[f32], stored: &[f32], how: Stored) -> bool {
    if source.len() != stored.len() {
        return false;
    }
    match how {
        Stored::AsGiven => source
            .iter()
            .zip(stored)
            .all(|(a, b)| a.to_bits() == b.to_bits()),
        Stored::Half => source
            .iter()
            .zip(stored)
            .all(|(a, b)| (a - b).abs() <= a.abs() * (1.0 / 2048.0) + 6.0e-8),
        Stored::Normalized => {
            let norm = crate::space::norm(source);
            if norm == 0.0 {
                return stored.iter().all(|b| *b == 0.0);
            }
            source
                .iter()
                .zip(stored)
                .all(|(a, b)| (f64::from(*a) / norm - f64::from(*b)).abs() <= 1e-6)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn float16_rounding_is_within_the_tolerance_and_a_real_difference_is_not() {
        let a: Vec<f32> = (0..1000).map(|i| (i as f32 - 500.0) / 317.0).collect();
        let rounded: Vec<f32> = a.iter().map(|x| half::f16::from_f32(*x).to_f32()).collect();
        assert!(same(&a, &rounded, Stored::Half));
        assert!(!same(&a, &rounded, Stored::AsGiven));
        let mut off = rounded.clone();
        off[7] += 0.01;
        assert!(!same(&a, &off, Stored::Half));
        assert!(same(&a, &a.clone(), Stored::AsGiven));
    }

    #[test]
    fn a_unit_vector_in_the_sources_direction_is_the_same_and_another_is_not() {
        let a: Vec<f32> = (0..1024).map(|i| ((i * 37) % 101) as f32 - 50.0).collect();
        let n = a.iter().map(|x| x * x).sum::<f32>().sqrt();
        let unit: Vec<f32> = a.iter().map(|x| x / n).collect();
        assert!(same(&a, &unit, Stored::Normalized));
        assert!(!same(&a, &unit, Stored::AsGiven));
        let mut other = unit.clone();
        other.swap(3, 4);
        assert!(!same(&a, &other, Stored::Normalized));
        assert!(same(&[0.0; 4], &[0.0; 4], Stored::Normalized));
        assert!(!same(&[0.0; 4], &[0.0, 1.0, 0.0, 0.0], Stored::Normalized));
    }

    #[test]
    fn the_sample_keeps_the_smallest_hashes_whatever_the_order() {
        let row = |i: usize| Row {
            id: format!("id{i}"),
            tenant: "t".into(),
            doc_id: String::new(),
            source: String::new(),
            chunk_index: 0,
            content: String::new(),
            tokens: None,
            extra: None,
            lightrag_id: false,
            page: None,
            vector: Some(vec![i as f32]),
        };
        let mut s = Sample::default();
        for i in 0..5000 {
            s.offer(&row(i));
        }
        let mut r = Sample {
            hasher: s.hasher.clone(),
            kept: BinaryHeap::new(),
        };
        for i in (0..5000).rev() {
            r.offer(&row(i));
        }
        let ids = |s: &Sample| {
            let mut v: Vec<String> = s.kept.iter().map(|k| k.id.clone()).collect();
            v.sort();
            v
        };
        assert_eq!(s.kept.len(), SAMPLE);
        assert_eq!(ids(&s), ids(&r));
    }
}
