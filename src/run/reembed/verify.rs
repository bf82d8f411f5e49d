//! After a re-embedding: --prune (target rows whose source rows are gone),
//! then verification (counts per tenant equal in source and target, a
//! sample of vectors of the right length and finite), before any switch.

use std::collections::{BTreeMap, HashMap};

use anyhow::Result;

use crate::records::RowReader;
use crate::report::reembed::{ReembedReport, TenantCount};
use crate::store::Sink;

/// Vectors read back per tenant to check length and finiteness.
const SAMPLE: usize = 32;

/// The ids read from the source, per tenant, as 64-bit hashes (8 bytes an
/// id instead of the id: a million rows cost a few MB), for --prune.
#[derive(Default)]
pub struct Seen {
    hasher: std::hash::RandomState,
    by_tenant: HashMap<String, std::collections::HashSet<u64>>,
}

impl Seen {
    fn hash(&self, id: &str) -> u64 {
        use std::hash::BuildHasher;
        self.hasher.hash_one(id)
    }

    pub(in crate::run) fn add(&mut self, tenant: &str, ids: &[String]) {
        let hashes: Vec<u64> = ids.iter().map(|id| self.hash(id)).collect();
        self.by_tenant
            .entry(tenant.to_string())
            .or_default()
            .extend(hashes);
    }

    fn has(&self, tenant: &str, id: &str) -> bool {
        self.by_tenant
            .get(tenant)
            .is_some_and(|s| s.contains(&self.hash(id)))
    }
}

/// --prune: deletes each tenant's target rows that the source no longer
/// has; with `all_tenants` (no --tenant), also every row of a tenant the
/// source has none of any more.
pub(in crate::run) async fn prune(sink: &dyn Sink, seen: &Seen, all_tenants: bool) -> Result<u64> {
    let mut pruned = 0;
    if all_tenants {
        for tenant in sink.tenants().await?.keys() {
            if !seen.by_tenant.contains_key(tenant) {
                let ids = sink.ids(tenant).await?;
                for part in ids.chunks(1000) {
                    pruned += sink.delete(tenant, part).await?;
                }
            }
        }
    }
    for (tenant, ids) in &seen.by_tenant {
        if sink.count(tenant).await? <= ids.len() as u64 {
            continue;
        }
        let gone: Vec<String> = sink
            .ids(tenant)
            .await?
            .into_iter()
            .filter(|id| !seen.has(tenant, id))
            .collect();
        for part in gone.chunks(1000) {
            pruned += sink.delete(tenant, part).await?;
        }
    }
    Ok(pruned)
}

/// Rows per tenant equal in the source (`counts`, keyed by the tenant the
/// target holds them as) and the target, each recorded in the report;
/// reading `all_tenants`, also no target tenant the source lacks (it would
/// ride along in a switch). Problems go to the report; true when none.
/// `again` says what a rerun would do with rows added meanwhile.
pub(in crate::run) async fn counts_match(
    counts: &BTreeMap<String, u64>,
    sink: &dyn Sink,
    all_tenants: bool,
    again: &str,
    report: &mut ReembedReport,
) -> Result<bool> {
    let mut ok = true;
    if all_tenants {
        for (tenant, rows) in sink.tenants().await? {
            if !counts.contains_key(&tenant) {
                ok = false;
                report.problems.push(format!(
                    "tenant {tenant:?}: {rows} rows in the target but none in the source \
                     (--prune deletes them)"
                ));
            }
        }
    }
    for (tenant, &want) in counts {
        let got = sink.count(tenant).await?;
        if got != want {
            ok = false;
            report.problems.push(format!(
                "tenant {tenant:?}: the source has {want} rows, the target {got}{}",
                if got < want {
                    format!(" (rows were added to the source during the run? run again: only they are {again})")
                } else {
                    " (rows were deleted from the source, or the target held other rows before: \
                     --prune deletes the target rows the source no longer has)"
                        .to_string()
                }
            ));
        }
        report.tenants.insert(
            tenant.clone(),
            TenantCount {
                source_rows: want,
                target_rows: got,
            },
        );
    }
    Ok(ok)
}

/// Counts per tenant equal in source and target, and a sample of each
/// tenant's vectors of the right length and finite.
pub(super) async fn verify(
    source: &mut dyn RowReader,
    sink: &dyn Sink,
    dim: usize,
    all_tenants: bool,
    report: &mut ReembedReport,
) -> Result<()> {
    let counts = source.counts().await?;
    let mut ok = counts_match(&counts, sink, all_tenants, "embedded", report).await?;
    for tenant in counts.keys() {
        let sample = sink.sample(tenant, SAMPLE).await?;
        let bad = sample
            .iter()
            .filter(|(_, v)| v.len() != dim || v.iter().any(|x| !x.is_finite()))
            .count();
        if bad > 0 {
            ok = false;
            report.problems.push(format!(
                "tenant {tenant:?}: {bad} of {} sampled vectors are not {dim} finite numbers",
                sample.len()
            ));
        }
        report.sampled += sample.len() as u64;
    }
    report.verified = ok;
    Ok(())
}
