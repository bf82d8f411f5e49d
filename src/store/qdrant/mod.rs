//! Qdrant over gRPC: collection checked or created before any request to
//! the embedding endpoint, points upserted by deterministic id, HNSW building
//! off during the load and restored at the end, an exact count per tenant.
//!
//! Every read and delete is filtered by `tenant_id`, so a per-tenant run
//! never touches another tenant's points in a shared collection.

pub mod collection;
pub mod connect;
mod measure;
pub mod reader;
pub mod settings;
pub mod space;
mod switch;
mod workers;
mod writer;

use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use anyhow::{Result, anyhow};
use async_trait::async_trait;
use qdrant_client::Qdrant;
use qdrant_client::qdrant::{
    Condition, CountPointsBuilder, DeletePointsBuilder, Filter, GetPointsBuilder,
    PayloadIncludeSelector, PointId, point_id::PointIdOptions, value::Kind,
};

pub use connect::QdrantTarget;
pub use settings::{Flags, QDRANT, QdrantSettings};

use crate::layout::Layout;
use crate::records::Hit;
use crate::store::{Sink, SinkSummary, SinkWriter};
use connect::message;

/// A point's single unnamed dense vector.
pub fn dense(v: Option<qdrant_client::qdrant::VectorsOutput>) -> Option<Vec<f32>> {
    use qdrant_client::qdrant::{vector_output, vectors_output::VectorsOptions};
    match v?.vectors_options? {
        VectorsOptions::Vector(v) => match v.into_vector() {
            vector_output::Vector::Dense(d) => Some(d.data),
            _ => None,
        },
        _ => None,
    }
}

/// A payload field's string value.
fn text(v: Option<&qdrant_client::qdrant::Value>) -> Option<String> {
    match v.and_then(|v| v.kind.as_ref()) {
        Some(Kind::StringValue(s)) => Some(s.clone()),
        _ => None,
    }
}

pub struct QdrantSink {
    cfg: QdrantSettings,
    dim: usize,
    client: Option<Arc<Qdrant>>,
    /// Set by `begin` when this run switched HNSW building off.
    bulk: AtomicBool,
    /// `Sink::sole_writer`: indexes no write needs may wait for `finish`.
    sole_writer: bool,
    /// Set by `prepare` when it made the collection without them.
    deferred_indexes: AtomicBool,
    /// Recorded with the collection when `prepare` creates it.
    space: Option<crate::space::Space>,
}

impl QdrantSink {
    pub fn new(cfg: QdrantSettings, dim: usize) -> QdrantSink {
        QdrantSink {
            cfg,
            dim,
            client: None,
            bulk: AtomicBool::new(false),
            sole_writer: false,
            deferred_indexes: AtomicBool::new(false),
            space: None,
        }
    }

    fn client(&self) -> Result<Arc<Qdrant>> {
        match &self.client {
            Some(c) => Ok(c.clone()),
            None => Ok(Arc::new(self.cfg.target.connect()?)),
        }
    }

    fn name(&self) -> &str {
        &self.cfg.collection
    }

    fn tenant_field(&self) -> &'static str {
        collection::tenant_field(self.cfg.layout)
    }

    fn tenant_filter(&self, tenant: &str) -> Filter {
        Filter::must([Condition::matches(self.tenant_field(), tenant.to_string())])
    }

    /// The point id a row's id is stored under.
    /// The points of these row ids of `tenant` that the collection holds,
    /// keyed by row id (LightRAG's point id is derived; its own id is in the
    /// payload), with `fields` of the payload and, if asked, the vector.
    async fn points_of(
        &self,
        tenant: &str,
        ids: &[String],
        fields: &[&str],
        with_vectors: bool,
    ) -> Result<Vec<(String, qdrant_client::qdrant::RetrievedPoint)>> {
        let client = self.client()?;
        let points: Vec<PointId> = ids
            .iter()
            .map(|id| PointId::from(self.point_id(tenant, id)))
            .collect();
        let lightrag = self.cfg.layout.is_lightrag();
        let mut include: Vec<String> = vec![self.tenant_field().into()];
        if lightrag {
            include.push("id".into());
        }
        include.extend(fields.iter().map(|f| f.to_string()));
        let got = client
            .get_points(
                GetPointsBuilder::new(self.name(), points)
                    .with_payload(PayloadIncludeSelector::new(include))
                    .with_vectors(with_vectors),
            )
            .await
            .map_err(|e| anyhow!("looking up {} points: {}", ids.len(), message(&e)))?;
        Ok(got
            .result
            .into_iter()
            .filter(|p| text(p.payload.get(self.tenant_field())).as_deref() == Some(tenant))
            .filter_map(|p| {
                let id = if lightrag {
                    text(p.payload.get("id"))
                } else {
                    match p.id.as_ref().and_then(|id| id.point_id_options.as_ref()) {
                        Some(PointIdOptions::Uuid(u)) => Some(u.clone()),
                        Some(PointIdOptions::Num(n)) => Some(n.to_string()),
                        None => None,
                    }
                };
                Some((id?, p))
            })
            .collect())
    }

    fn point_id(&self, tenant: &str, id: &str) -> String {
        match self.cfg.layout {
            Layout::Vecload => id.to_string(),
            Layout::Lightrag(_) => crate::layout::qdrant_point_id(tenant, id),
        }
    }

    fn tenant_and_ids(&self, tenant: &str, ids: &[String]) -> Filter {
        Filter::must([
            Condition::matches(self.tenant_field(), tenant.to_string()),
            Condition::has_id(
                ids.iter()
                    .map(|id| PointId::from(self.point_id(tenant, id))),
            ),
        ])
    }

    /// The server's version, which also proves the address and the key.
    async fn server_version(&self, client: &Qdrant) -> Result<String> {
        let health = client.health_check().await.map_err(|e| {
            anyhow!(
                "cannot reach Qdrant at {}: {}",
                self.cfg.target.describe(),
                message(&e)
            )
        })?;
        Ok(health.version)
    }
}

#[async_trait]
impl Sink for QdrantSink {
    fn describe(&self) -> String {
        format!(
            "Qdrant collection {} at {}",
            self.name(),
            self.cfg.target.describe()
        )
    }

    fn write_batch(&self) -> usize {
        self.cfg.write_batch
    }

    fn write_concurrency(&self) -> usize {
        self.cfg.write_concurrency
    }

    fn outage_budget(&self) -> std::time::Duration {
        self.cfg.outage_budget
    }

    async fn prepare(&mut self) -> Result<()> {
        let client = Arc::new(self.cfg.target.connect()?);
        let version = self.server_version(&client).await?;
        let name = self.name().to_string();
        let mut info = collection::info(&client, &name).await?;
        let mut made_here = false;
        if info.is_none() {
            let created =
                collection::create(&client, &self.cfg, self.dim, self.space.as_ref()).await?;
            made_here = created;
            tracing::info!(
                "Qdrant {version}: collection {name} {}",
                if created {
                    "created"
                } else {
                    "created by another process meanwhile"
                }
            );
            info = collection::info(&client, &name).await?;
        } else {
            tracing::info!("Qdrant {version}: collection {name} exists");
        }
        let info = info.ok_or_else(|| anyhow!("collection {name} disappeared after creation"))?;
        collection::check_layout(&name, &info, self.dim, self.cfg.distance)
            .map_err(|m| anyhow!(m))?;
        if self.cfg.ack == settings::Ack::Wal {
            collection::check_one_replica(&name, &info)?;
        }
        if !made_here {
            // Writes a killed run left queued are applied before this run
            // reads the collection as the record of what it holds.
            collection::barrier(&client, &name).await?;
        }
        // A collection this run made and writes alone gets its document and
        // bucket indexes at the finish, over all points at once, instead of
        // per point during the load (nothing vecload writes or reads during
        // a load filters on them). The tenant index comes first, always:
        // Qdrant keeps each tenant's points together only when it exists
        // before they arrive. A run killed before its finish leaves them to
        // the next run's prepare, which makes whatever is missing.
        let defer = self.sole_writer && made_here;
        collection::ensure_payload_indexes(&client, &name, &info, self.cfg.layout, !defer).await?;
        self.deferred_indexes.store(defer, Ordering::SeqCst);
        self.client = Some(client);
        Ok(())
    }

    fn record_on_create(&mut self, space: crate::space::Space) {
        self.space = Some(space);
    }

    async fn check(&self) -> Result<Vec<String>> {
        let client = self.client()?;
        let mut problems = Vec::new();
        if let Err(e) = self.server_version(&client).await {
            problems.push(format!("{e:#}"));
            return Ok(problems);
        }
        match collection::info(&client, self.name()).await {
            Ok(Some(info)) => {
                if let Err(m) =
                    collection::check_layout(self.name(), &info, self.dim, self.cfg.distance)
                {
                    problems.push(m);
                }
            }
            // Created by the load, with its payload indexes.
            Ok(None) => {}
            Err(e) => problems.push(format!("{e:#}")),
        }
        Ok(problems)
    }

    fn sole_writer(&mut self) {
        self.sole_writer = true;
    }

    async fn begin(&self) -> Result<()> {
        if self.cfg.keep_indexing {
            return Ok(());
        }
        // Set first: a failure half-way still gets the restore attempt.
        self.bulk.store(true, Ordering::SeqCst);
        collection::bulk_on(&*self.client()?, self.name()).await
    }

    async fn delete(&self, tenant: &str, ids: &[String]) -> Result<u64> {
        let client = self.client()?;
        let filter = self.tenant_and_ids(tenant, ids);
        let n = client
            .count(
                CountPointsBuilder::new(self.name())
                    .filter(filter.clone())
                    .exact(true),
            )
            .await
            .map_err(|e| anyhow!("counting {} points to delete: {}", ids.len(), message(&e)))?
            .result
            .map_or(0, |r| r.count);
        if n > 0 {
            client
                .delete_points(
                    DeletePointsBuilder::new(self.name())
                        .points(filter)
                        .wait(true),
                )
                .await
                .map_err(|e| anyhow!("deleting {} points: {}", ids.len(), message(&e)))?;
        }
        Ok(n)
    }

    async fn existing(&self, tenant: &str, ids: &[String]) -> Result<HashMap<String, String>> {
        // LightRAG keeps no hash: its text is read and hashed instead.
        let (field, lightrag) = match self.cfg.layout.is_lightrag() {
            true => ("content", true),
            false => ("content_hash", false),
        };
        let got = self.points_of(tenant, ids, &[field], false).await?;
        Ok(got
            .into_iter()
            .filter_map(|(id, p)| {
                let v = text(p.payload.get(field));
                match lightrag {
                    true => Some((id, crate::records::content_hash(&v?))),
                    false => Some((id, v.unwrap_or_default())),
                }
            })
            .collect())
    }

    async fn vectors(&self, tenant: &str, ids: &[String]) -> Result<HashMap<String, Vec<f32>>> {
        let got = self.points_of(tenant, ids, &[], true).await?;
        Ok(got
            .into_iter()
            .filter_map(|(id, p)| Some((id, dense(p.vectors)?)))
            .collect())
    }

    async fn search(&self, tenant: &str, vector: &[f32], k: usize) -> Result<Vec<Hit>> {
        use qdrant_client::qdrant::{Query, QueryPointsBuilder};
        let client = self.client()?;
        let filter = self.tenant_filter(tenant);
        let lightrag = self.cfg.layout.is_lightrag();
        let found = client
            .query(
                QueryPointsBuilder::new(self.name())
                    .query(Query::new_nearest(vector.to_vec()))
                    .filter(filter)
                    .limit(k as u64)
                    .with_payload(true),
            )
            .await
            .map_err(|e| anyhow!("searching collection {}: {}", self.name(), message(&e)))?;
        let text = |p: &HashMap<String, qdrant_client::qdrant::Value>, key: &str| match p
            .get(key)
            .and_then(|v| v.kind.as_ref())
        {
            Some(Kind::StringValue(s)) => s.clone(),
            _ => String::new(),
        };
        Ok(found
            .result
            .into_iter()
            .map(|p| Hit {
                id: match p.id.and_then(|id| id.point_id_options) {
                    _ if lightrag => text(&p.payload, "id"),
                    Some(PointIdOptions::Uuid(u)) => u,
                    Some(PointIdOptions::Num(n)) => n.to_string(),
                    None => String::new(),
                },
                score: p.score,
                source: text(&p.payload, if lightrag { "file_path" } else { "source" }),
                chunk_index: match p.payload.get("chunk_index").and_then(|v| v.kind.as_ref()) {
                    Some(Kind::IntegerValue(i)) => *i,
                    // LightRAG's payload has no order; its chunk ids carry it.
                    _ => crate::layout::chunk_order(&text(&p.payload, "id")).map_or(-1, i64::from),
                },
                content: text(&p.payload, "content"),
            })
            .collect())
    }

    async fn searcher(&self) -> Result<Box<dyn crate::store::measure::Searcher>> {
        let field = self.tenant_field();
        Ok(Box::new(measure::QdrantSearcher {
            client: self.client()?,
            collection: self.name().to_string(),
            filter: Box::new(move |t: &str| {
                Filter::must([Condition::matches(field, t.to_string())])
            }),
            lightrag: self.cfg.layout.is_lightrag(),
        }))
    }

    async fn writer(&self) -> Result<Box<dyn SinkWriter>> {
        Ok(Box::new(writer::QdrantWriter {
            points: self.cfg.target.points_client().await?,
            collection: self.name().to_string(),
            layout: self.cfg.layout,
            wait: self.cfg.ack == settings::Ack::Applied,
        }))
    }

    async fn shards(&self) -> Result<Option<u32>> {
        workers::shards(&*self.client()?, self.name()).await
    }

    async fn set_shards(&self, n: Option<u32>) -> Result<bool> {
        workers::set_shards(&*self.client()?, self.name(), n).await?;
        Ok(true)
    }

    async fn put_shard_report(&self, tenant: &str, r: &crate::shard::ShardReport) -> Result<bool> {
        workers::put_report(&*self.client()?, self.name(), tenant, r).await?;
        Ok(true)
    }

    async fn shard_reports(&self, tenant: &str) -> Result<Option<Vec<crate::shard::ShardReport>>> {
        Ok(Some(
            workers::reports(&*self.client()?, self.name(), tenant).await?,
        ))
    }

    async fn clear_shard_reports(&self, tenant: &str) -> Result<()> {
        workers::clear_reports(&*self.client()?, self.name(), tenant).await
    }

    async fn claim_shard(
        &self,
        tenant: &str,
        shard: crate::shard::Shard,
        run: &str,
    ) -> Result<Option<String>> {
        workers::claim(&*self.client()?, self.name(), tenant, shard, run).await
    }

    async fn release_shard(
        &self,
        tenant: &str,
        shard: crate::shard::Shard,
        run: &str,
    ) -> Result<()> {
        workers::release(&*self.client()?, self.name(), tenant, shard, run).await
    }

    fn adopt(&self) {
        self.bulk.store(true, Ordering::SeqCst);
    }

    async fn held(
        &self,
        tenant: &str,
        scope: crate::store::Held,
        each: &mut (dyn for<'r> FnMut(&'r str, &'r str) + Send),
    ) -> Result<bool> {
        use qdrant_client::qdrant::{Range, ScrollPointsBuilder};
        let lightrag = self.cfg.layout.is_lightrag();
        let mut filter = self.tenant_filter(tenant);
        if let Some(b) = scope.buckets() {
            if lightrag {
                return Ok(false);
            }
            let range = Condition::range(
                collection::BUCKET_FIELD,
                Range {
                    gte: Some(f64::from(b.start)),
                    lt: Some(f64::from(b.end)),
                    ..Default::default()
                },
            );
            if let crate::store::Held::ShardOrUnknown(_) = scope {
                // Points written before buckets have none.
                filter.must.push(Condition::from(Filter::should([
                    range,
                    Condition::is_empty(collection::BUCKET_FIELD),
                ])));
            } else {
                filter.must.push(range);
            }
        }
        // LightRAG keeps no hash: its text is read and hashed instead.
        let fields: Vec<String> = if lightrag {
            vec!["id".into(), "content".into()]
        } else {
            vec!["content_hash".into()]
        };
        let client = self.client()?;
        let mut offset: Option<PointId> = None;
        let text = |p: &qdrant_client::qdrant::RetrievedPoint, f: &str| match p
            .payload
            .get(f)
            .and_then(|v| v.kind.as_ref())
        {
            Some(Kind::StringValue(s)) => Some(s.clone()),
            _ => None,
        };
        loop {
            let mut req = ScrollPointsBuilder::new(self.name())
                .filter(filter.clone())
                .limit(2000)
                .with_payload(PayloadIncludeSelector::new(fields.clone()))
                .with_vectors(false);
            if let Some(o) = offset.take() {
                req = req.offset(o);
            }
            let got = client
                .scroll(req)
                .await
                .map_err(|e| anyhow!("reading the points of tenant {tenant:?}: {}", message(&e)))?;
            for p in &got.result {
                if lightrag {
                    if let (Some(id), Some(content)) = (text(p, "id"), text(p, "content")) {
                        each(&id, &crate::records::content_hash(&content));
                    }
                    continue;
                }
                let id = match p.id.clone().and_then(|id| id.point_id_options) {
                    Some(PointIdOptions::Uuid(u)) => u,
                    Some(PointIdOptions::Num(n)) => n.to_string(),
                    None => continue,
                };
                each(&id, &text(p, "content_hash").unwrap_or_default());
            }
            match got.next_page_offset {
                Some(o) => offset = Some(o),
                None => return Ok(true),
            }
        }
    }

    async fn ids(&self, tenant: &str) -> Result<Vec<String>> {
        use qdrant_client::qdrant::ScrollPointsBuilder;
        let client = self.client()?;
        let lightrag = self.cfg.layout.is_lightrag();
        let mut out = Vec::new();
        let mut offset: Option<PointId> = None;
        loop {
            let mut req = ScrollPointsBuilder::new(self.name())
                .filter(self.tenant_filter(tenant))
                .limit(1000)
                .with_vectors(false);
            // LightRAG's rows are known by the id in their payload.
            req = if lightrag {
                req.with_payload(PayloadIncludeSelector::new(vec!["id".to_string()]))
            } else {
                req.with_payload(false)
            };
            if let Some(o) = offset.take() {
                req = req.offset(o);
            }
            let got = client
                .scroll(req)
                .await
                .map_err(|e| anyhow!("listing points of tenant {tenant:?}: {}", message(&e)))?;
            for p in got.result {
                let id = if lightrag {
                    match p.payload.get("id").and_then(|v| v.kind.as_ref()) {
                        Some(Kind::StringValue(s)) => s.clone(),
                        _ => continue,
                    }
                } else {
                    match p.id.and_then(|id| id.point_id_options) {
                        Some(PointIdOptions::Uuid(u)) => u,
                        Some(PointIdOptions::Num(n)) => n.to_string(),
                        None => continue,
                    }
                };
                out.push(id);
            }
            match got.next_page_offset {
                Some(o) => offset = Some(o),
                None => break,
            }
        }
        Ok(out)
    }

    async fn tenants(&self) -> Result<std::collections::BTreeMap<String, u64>> {
        use qdrant_client::qdrant::{FacetCountsBuilder, facet_value};
        let client = self.client()?;
        let got = client
            .facet(
                FacetCountsBuilder::new(self.name(), self.tenant_field())
                    .limit(1_000_000)
                    .exact(true),
            )
            .await
            .map_err(|e| anyhow!("counting the points of each tenant: {}", message(&e)))?;
        Ok(got
            .hits
            .into_iter()
            .filter_map(|h| match h.value?.variant? {
                facet_value::Variant::StringValue(s) => Some((s, h.count)),
                _ => None,
            })
            .collect())
    }

    async fn count(&self, tenant: &str) -> Result<u64> {
        let client = self.client()?;
        Ok(client
            .count(
                CountPointsBuilder::new(self.name())
                    .filter(self.tenant_filter(tenant))
                    .exact(true),
            )
            .await
            .map_err(|e| anyhow!("counting points of tenant {tenant:?}: {}", message(&e)))?
            .result
            .map_or(0, |r| r.count))
    }

    async fn sample(&self, tenant: &str, n: usize) -> Result<Vec<(String, Vec<f32>)>> {
        use qdrant_client::qdrant::ScrollPointsBuilder;
        let client = self.client()?;
        let got = client
            .scroll(
                ScrollPointsBuilder::new(self.name())
                    .filter(self.tenant_filter(tenant))
                    .limit(n as u32)
                    .with_payload(false)
                    .with_vectors(true),
            )
            .await
            .map_err(|e| anyhow!("sampling vectors of tenant {tenant:?}: {}", message(&e)))?;
        Ok(got
            .result
            .into_iter()
            .map(|p| {
                let id = match p.id.and_then(|id| id.point_id_options) {
                    Some(PointIdOptions::Uuid(u)) => u,
                    Some(PointIdOptions::Num(n)) => n.to_string(),
                    None => String::new(),
                };
                let vector = dense(p.vectors).unwrap_or_default();
                (id, vector)
            })
            .collect())
    }

    async fn finish(&self, tenant: &str, build_index: bool) -> Result<SinkSummary> {
        let client = self.client()?;
        let name = self.name();
        // Everything written is applied before anything is built or counted.
        collection::barrier(&client, name).await?;
        // Before HNSW comes back, so its rebuild sees every payload index;
        // an interrupted run leaves them to the next run's prepare.
        if build_index && self.deferred_indexes.load(Ordering::SeqCst) {
            let info = collection::info(&client, name)
                .await?
                .ok_or_else(|| anyhow!("collection {name} is gone"))?;
            collection::ensure_payload_indexes(&client, name, &info, self.cfg.layout, true).await?;
            self.deferred_indexes.store(false, Ordering::SeqCst);
        }
        // Restored after an error or Ctrl-C too: a collection left without
        // HNSW answers every search by full scan.
        let restored = if self.bulk.load(Ordering::SeqCst) {
            collection::bulk_off(&client, name).await?
        } else {
            None
        };
        let count = client
            .count(
                CountPointsBuilder::new(name)
                    .filter(self.tenant_filter(tenant))
                    .exact(true),
            )
            .await
            .map_err(|e| anyhow!("counting points of tenant {tenant:?}: {}", message(&e)))?
            .result
            .map_or(0, |r| r.count);
        let status = collection::status(&client, name).await;
        let index = match (restored, status) {
            (Some(r), Some(s)) => Some(format!("{r}; {s}")),
            (Some(r), None) => Some(r),
            (None, s) => s,
        };
        Ok(SinkSummary {
            tenant_rows: count,
            index,
        })
    }
}
