//! The embed stage: chunks in, checked vectors out, with at most
//! `concurrency` requests in flight.
//!
//! A permit is taken before a batch is formed into a request, so when the
//! endpoint is slow the stage stops pulling chunks and the chunkers block
//! behind the bounded queue, instead of memory filling up.
//!
//! Each batch asks the embedding cache first (`cache.rs`): texts whose
//! vector was computed before with the same settings are not sent, and
//! what the endpoint answers is kept for the next run.

use std::sync::Arc;

use tokio::sync::{Semaphore, mpsc};
use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;

use super::batch::Batcher;
use super::limiter::Limiter;
use super::limits::Limits;
use super::{EmbedError, Embedder};
use crate::backoff;
use crate::embed::settings::EmbedSettings;
use crate::records::{Chunk, Embedded};
use crate::report::{Fatal, Gauges, InFlight, Stats};

pub struct EmbedStage {
    embedder: Arc<dyn Embedder>,
    cfg: EmbedSettings,
    stats: Arc<Stats>,
    cancel: CancellationToken,
    fatal: Fatal,
    limiter: Arc<Limiter>,
    pace: super::pace::Pace,
    /// Inputs per request and the longest input, as learned from refusals.
    limits: Arc<Limits>,
    cache: Option<super::cache::Cache>,
    /// The results of `--batch-api` batches, asked before the cache.
    results: Option<super::cache::Cache>,
    /// The endpoint down: the stage pauses, one request probes it.
    outage: Arc<crate::outage::Outage>,
}

impl EmbedStage {
    /// The stage for `embedder` with the limits of `cfg` (concurrency,
    /// --rpm/--tpm pacing, batch size), counting into `stats`.
    pub fn new(
        embedder: Arc<dyn Embedder>,
        cfg: EmbedSettings,
        stats: Arc<Stats>,
        cancel: CancellationToken,
        fatal: Fatal,
    ) -> EmbedStage {
        // Three failures in a row with nothing answered between them: one
        // 5xx or timeout among many answers is not an outage.
        let outage = Arc::new(crate::outage::Outage::new(
            "the embedding endpoint",
            "--endpoint-outage-budget",
            cfg.outage_budget,
            3,
        ));
        stats
            .outages
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .push(outage.clone());
        EmbedStage {
            outage,
            limiter: Arc::new(Limiter::new(cfg.concurrency)),
            pace: super::pace::Pace::new(cfg.rpm, cfg.tpm),
            limits: Arc::new(Limits::new(
                cfg.batch_size,
                cfg.provider.max_input_chars(&cfg.model),
            )),
            cache: cfg
                .cache
                .as_ref()
                .and_then(|at| super::cache::Cache::open(&cfg, at)),
            results: cfg.batch_results.as_ref().and_then(|file| {
                super::cache::Cache::pinned(&cfg, file)
                    .map_err(|e| {
                        fatal.set(
                            format!("the batch results {}: {e:#}", file.display()),
                            &cancel,
                        )
                    })
                    .ok()
            }),
            embedder,
            cfg,
            stats,
            cancel,
            fatal,
        }
    }

    pub async fn run(self, mut rx: mpsc::Receiver<Chunk>, tx: mpsc::Sender<Vec<Embedded>>) {
        let this = Arc::new(self);
        // Batches formed and waiting for a request slot (or backing off)
        // are bounded too, so a 429 storm cannot pile up chunks in memory.
        let permits = Arc::new(Semaphore::new(this.cfg.concurrency * 2));
        let mut tasks = JoinSet::new();
        let mut batcher = Batcher::new(this.cfg.batch_size, this.cfg.max_request_tokens)
            .with_cap(this.limits.inputs.clone());
        loop {
            let next = tokio::select! {
                biased;
                _ = this.cancel.cancelled() => None,
                c = rx.recv() => c,
            };
            let Some(chunk) = next else { break };
            Gauges::add(&this.stats.gauges.chunks_queued, -1);
            if let Some(batch) = batcher.push(chunk)
                && !this.dispatch(batch, &permits, &mut tasks, &tx).await
            {
                break;
            }
            while tasks.try_join_next().is_some() {}
        }
        if !this.cancel.is_cancelled()
            && let Some(batch) = batcher.take()
        {
            this.dispatch(batch, &permits, &mut tasks, &tx).await;
        }
        while let Some(res) = tasks.join_next().await {
            if let Err(e) = res {
                this.fatal.set(
                    format!("internal error in the embed stage: {e}"),
                    &this.cancel,
                );
            }
        }
    }

    /// Waits for room for one more batch, then starts it. False when cancelled.
    async fn dispatch(
        self: &Arc<Self>,
        batch: Vec<Chunk>,
        permits: &Arc<Semaphore>,
        tasks: &mut JoinSet<()>,
        tx: &mpsc::Sender<Vec<Embedded>>,
    ) -> bool {
        let permit = tokio::select! {
            biased;
            _ = self.cancel.cancelled() => return false,
            p = permits.clone().acquire_owned() => match p { Ok(p) => p, Err(_) => return false },
        };
        let this = self.clone();
        let tx = tx.clone();
        tasks.spawn(async move {
            let out = this.embed_cached(batch).await;
            if let Some(rows) = out {
                let n = rows.len() as i64;
                Gauges::add(&this.stats.gauges.rows_queued, n);
                // The sink drains until the end, so this only fails if it died.
                if tx.send(rows).await.is_err() {
                    Gauges::add(&this.stats.gauges.rows_queued, -n);
                }
            }
            // Held until the rows are handed over: when the sink is slower
            // than the endpoint, finished batches must not pile up here
            // (they did, at 4 KB a vector, until memory grew with the corpus).
            drop(permit);
        });
        true
    }

    /// The batch's cached vectors, and the rest from the endpoint (then
    /// kept in the cache). Cache reads and writes are file I/O: off the
    /// tokio workers.
    async fn embed_cached(&self, batch: Vec<Chunk>) -> Option<Vec<Embedded>> {
        if self.cache.is_none() && self.results.is_none() {
            return self.embed_with_retries(batch).await;
        }
        let (results, reader) = (self.results.clone(), self.cache.clone());
        let looked_up = tokio::task::spawn_blocking(move || {
            // Both are keyed alike (the same settings): one key per text.
            let keyer = results.as_ref().or(reader.as_ref())?;
            let keys: Vec<[u8; 32]> = batch.iter().map(|c| keyer.key(&c.text)).collect();
            let mut found: Vec<Option<(Vec<f32>, bool)>> = match &results {
                Some(r) => r
                    .get(&keys)
                    .into_iter()
                    .map(|v| v.map(|v| (v, true)))
                    .collect(),
                None => vec![None; keys.len()],
            };
            if let Some(c) = &reader {
                let missing: Vec<usize> = (0..keys.len()).filter(|&i| found[i].is_none()).collect();
                let asked: Vec<[u8; 32]> = missing.iter().map(|&i| keys[i]).collect();
                for (i, v) in missing.into_iter().zip(c.get(&asked)) {
                    found[i] = v.map(|v| (v, false));
                }
            }
            Some((batch, found))
        })
        .await;
        let Ok(Some((batch, found))) = looked_up else {
            return None;
        };
        let mut out = Vec::new();
        let mut misses = Vec::new();
        for (chunk, hit) in batch.into_iter().zip(found) {
            match hit {
                Some((vector, from_batch)) => {
                    if from_batch {
                        Stats::add(&self.stats.batch_vectors, 1);
                    } else {
                        Stats::add(&self.stats.cache_hits, 1);
                        Stats::add(&self.stats.tokens_saved, u64::from(chunk.tokens));
                    }
                    out.push(Embedded { chunk, vector })
                }
                None => misses.push(chunk),
            }
        }
        if !out.is_empty() {
            Stats::add(&self.stats.chunks_embedded, out.len() as u64);
        }
        if !misses.is_empty()
            && let Some(rows) = self.embed_with_retries(misses).await
        {
            let Some(cache) = self.cache.clone() else {
                out.extend(rows);
                return (!out.is_empty()).then_some(out);
            };
            // Keyed by each answered row's own text: a split or partly
            // failed batch comes back in another shape.
            let keep: Vec<(String, Vec<f32>)> = rows
                .iter()
                .map(|r| (r.chunk.text.clone(), r.vector.clone()))
                .collect();
            let _ = tokio::task::spawn_blocking(move || {
                let keys: Vec<[u8; 32]> = keep.iter().map(|(t, _)| cache.key(t)).collect();
                let entries: Vec<([u8; 32], &[f32])> = keys
                    .into_iter()
                    .zip(&keep)
                    .map(|(k, (_, v))| (k, v.as_slice()))
                    .collect();
                cache.put(&entries);
            })
            .await;
            out.extend(rows);
        }
        (!out.is_empty()).then_some(out)
    }

    async fn embed_with_retries(&self, batch: Vec<Chunk>) -> Option<Vec<Embedded>> {
        // What the endpoint is known to refuse is not sent: an input over its
        // limit goes in parts, a batch formed before a smaller limit was
        // learned goes in pieces.
        if batch.iter().any(|c| self.limits.too_long(&c.text)) {
            let (long, fits): (Vec<Chunk>, Vec<Chunk>) = batch
                .into_iter()
                .partition(|c| self.limits.too_long(&c.text));
            let mut out = Vec::new();
            for c in long {
                if let Some(e) =
                    Box::pin(self.in_parts(c, "longer than the endpoint takes".into())).await
                {
                    out.push(e);
                }
            }
            if !fits.is_empty() {
                out.extend(
                    Box::pin(self.embed_with_retries(fits))
                        .await
                        .unwrap_or_default(),
                );
            }
            return (!out.is_empty()).then_some(out);
        }
        if batch.len() > self.limits.max_inputs() {
            return Box::pin(self.in_pieces(batch)).await;
        }
        let mut attempt = 0u32;
        // When 429s began for this batch: throttling that never lets up is
        // bounded by the same budget as an outage.
        let mut throttled_since: Option<std::time::Instant> = None;
        loop {
            // While the endpoint is down, only its probe passes.
            let pass = tokio::select! {
                biased;
                _ = self.cancel.cancelled() => return None,
                p = self.outage.pass() => p,
            };
            let pass = match pass {
                Ok(p) => p,
                Err(msg) => return self.give_up(&batch, msg),
            };
            // Biased: once the run is stopping, a free slot or an open pace
            // must not win the race and send one more (paid) request.
            let slot = tokio::select! {
                biased;
                _ = self.cancel.cancelled() => return None,
                p = self.limiter.acquire() => p,
            };
            let tokens: u64 = batch.iter().map(|c| c.tokens as u64).sum();
            tokio::select! {
                biased;
                _ = self.cancel.cancelled() => return None,
                _ = self.pace.wait(tokens) => {}
            }
            Stats::add(&self.stats.embed_requests, 1);
            let inputs: Vec<&str> = batch.iter().map(|c| c.text.as_str()).collect();
            let in_flight = InFlight::new(&self.stats.gauges.requests_in_flight);
            let result = self
                .embedder
                .embed(&inputs)
                .await
                .and_then(|v| self.check(&batch, v));
            drop(in_flight);
            drop(inputs);
            // A refused key stops the run before its slot is freed: freed
            // first, a waiting batch took it and sent one more doomed request.
            if let Err(EmbedError::Fatal(msg)) = &result {
                self.fatal.set(msg.clone(), &self.cancel);
                return None;
            }
            let sent = slot.sent();
            // The slot is free while this batch backs off.
            drop(slot);
            let (message, retry_after) = match result {
                Ok(vectors) => {
                    self.outage.succeeded(pass);
                    self.limiter.succeeded();
                    let tokens: u64 = batch.iter().map(|c| c.tokens as u64).sum();
                    Stats::add(&self.stats.tokens, tokens);
                    Stats::add(&self.stats.chunks_embedded, batch.len() as u64);
                    return Some(
                        batch
                            .into_iter()
                            .zip(vectors)
                            .map(|(chunk, vector)| Embedded { chunk, vector })
                            .collect(),
                    );
                }
                Err(EmbedError::Fatal(_)) => return None,
                Err(EmbedError::Rejected(msg)) => {
                    self.outage.succeeded(pass);
                    tracing::warn!("batch of {} chunks rejected: {msg}", batch.len());
                    self.stats.fail(&batch, &msg);
                    return None;
                }
                Err(EmbedError::TooLarge(msg)) => {
                    self.outage.succeeded(pass);
                    return self.split(batch, msg).await;
                }
                Err(EmbedError::Throttled {
                    message,
                    retry_after,
                }) => {
                    // It answers: not down, only busy.
                    self.outage.succeeded(pass);
                    self.limiter.throttled(sent);
                    let since = *throttled_since.get_or_insert_with(std::time::Instant::now);
                    if since.elapsed() > self.cfg.outage_budget {
                        let msg = format!(
                            "throttled for {:.0} s (--endpoint-outage-budget {}): {message}",
                            since.elapsed().as_secs_f64(),
                            self.cfg.outage_budget.as_secs()
                        );
                        tracing::warn!("batch of {} chunks failed: {msg}", batch.len());
                        self.stats.fail(&batch, &msg);
                        return None;
                    }
                    (message, retry_after)
                }
                Err(EmbedError::Transient {
                    message,
                    retry_after,
                }) => {
                    if let Err(msg) = self.outage.failed(pass, &message) {
                        return self.give_up(&batch, msg);
                    }
                    (message, retry_after)
                }
            };
            attempt += 1;
            Stats::add(&self.stats.embed_retries, 1);
            // Down: the outage paces the probes. Otherwise this batch backs off.
            if self.outage.down_for().is_some() {
                continue;
            }
            let wait = backoff::delay(attempt, retry_after);
            tracing::debug!("{message}; retrying in {:.1}s", wait.as_secs_f64());
            tokio::select! {
                _ = self.cancel.cancelled() => return None,
                _ = tokio::time::sleep(wait) => {}
            }
        }
    }

    /// The endpoint was down past its budget: the batch is not embedded
    /// and the run stops (every other batch would wait the same way).
    fn give_up(&self, batch: &[Chunk], msg: String) -> Option<Vec<Embedded>> {
        tracing::warn!("batch of {} chunks failed: {msg}", batch.len());
        self.stats.fail(batch, &msg);
        self.fatal.set(msg, &self.cancel);
        None
    }

    /// The endpoint found the request too big. One input refused alone
    /// bounds the inputs it takes (`Limits`), and is embedded in parts. A
    /// batch refused for one long input sends its longest input alone and
    /// the rest together; one refused for its size lowers the inputs per
    /// request (to the number the refusal states, else by half) and goes
    /// again in pieces of that size.
    async fn split(&self, mut batch: Vec<Chunk>, msg: String) -> Option<Vec<Embedded>> {
        if batch.len() == 1 {
            let chunk = batch.pop()?;
            let bound = self.limits.refused_input(chunk.text.len(), &msg);
            tracing::debug!(
                "an input of {} bytes was refused: inputs of {bound} bytes or more go in parts",
                chunk.text.len()
            );
            return Box::pin(self.in_parts(chunk, msg)).await.map(|e| vec![e]);
        }
        if names_one_input(&msg) {
            let longest = (0..batch.len()).max_by_key(|&i| batch[i].text.len())?;
            let alone = batch.swap_remove(longest);
            let mut out = Box::pin(self.embed_with_retries(batch))
                .await
                .unwrap_or_default();
            out.extend(
                Box::pin(self.embed_with_retries(vec![alone]))
                    .await
                    .unwrap_or_default(),
            );
            return (!out.is_empty()).then_some(out);
        }
        if let Some(to) = self.limits.refused_batch(batch.len(), &msg) {
            tracing::warn!("{msg}: sending at most {to} inputs per request from now on");
        }
        if batch.len() <= self.limits.max_inputs() {
            // Refused for its size although within the limit another
            // refusal set: halve it.
            let second = batch.split_off(batch.len() / 2);
            let mut out = Box::pin(self.embed_with_retries(batch))
                .await
                .unwrap_or_default();
            out.extend(
                Box::pin(self.embed_with_retries(second))
                    .await
                    .unwrap_or_default(),
            );
            return (!out.is_empty()).then_some(out);
        }
        Box::pin(self.in_pieces(batch)).await
    }

    /// `batch` sent as pieces of at most the current inputs per request.
    async fn in_pieces(&self, mut batch: Vec<Chunk>) -> Option<Vec<Embedded>> {
        let size = self.limits.max_inputs();
        let mut out = Vec::new();
        while !batch.is_empty() {
            let rest = batch.split_off(batch.len().min(size));
            out.extend(
                Box::pin(self.embed_with_retries(batch))
                    .await
                    .unwrap_or_default(),
            );
            batch = rest;
        }
        (!out.is_empty()).then_some(out)
    }

    /// One chunk longer than the model takes: embedded as two halves (split
    /// at the break nearest the middle, halved again if still too long), its
    /// vector the length-weighted mean of theirs, scaled to unit length (the
    /// usual way to embed text past a model's limit). The chunk keeps its id,
    /// index and full content, so the document's other chunks and every
    /// rerun stay as they are; the summary counts these chunks and says to
    /// lower --chunk-tokens.
    async fn in_parts(&self, chunk: Chunk, msg: String) -> Option<Embedded> {
        let Some((a, b)) = super::parts::halves(&chunk.text) else {
            let msg = format!("{msg} (this input cannot be split further)");
            tracing::warn!("{msg}");
            self.stats.fail(std::slice::from_ref(&chunk), &msg);
            return None;
        };
        // Parts keep the chunk's hash; only the whole chunk's text matches it.
        let whole = crate::records::content_hash(&chunk.text) == chunk.content_hash;
        if whole {
            tracing::info!(
                "chunk {} of {} is too long for the model: embedding it in parts ({msg})",
                chunk.index,
                chunk.doc.source
            );
        }
        let part = |text: &str| Chunk {
            text: text.to_string(),
            tokens: (chunk.tokens as usize * text.len() / chunk.text.len().max(1)) as u32,
            ..chunk.clone()
        };
        let (pa, pb) = (part(a), part(b));
        let (wa, wb) = (a.len() as f32, b.len() as f32);
        let va = Box::pin(self.embed_with_retries(vec![pa])).await?.pop()?;
        let Some(vb) = Box::pin(self.embed_with_retries(vec![pb]))
            .await
            .and_then(|mut v| v.pop())
        else {
            // The chunk failed (recorded by the part); its first part no
            // longer counts as embedded.
            self.stats
                .chunks_embedded
                .fetch_sub(1, std::sync::atomic::Ordering::Relaxed);
            return None;
        };
        let mut v: Vec<f32> = va
            .vector
            .iter()
            .zip(&vb.vector)
            .map(|(x, y)| x * wa + y * wb)
            .collect();
        let norm = v.iter().map(|x| x * x).sum::<f32>().sqrt();
        if norm > 0.0 {
            v.iter_mut().for_each(|x| *x /= norm);
        }
        // Each part counted itself as an embedded chunk; the chunk is one.
        self.stats
            .chunks_embedded
            .fetch_sub(1, std::sync::atomic::Ordering::Relaxed);
        if whole {
            Stats::add(&self.stats.chunks_in_parts, 1);
        }
        Some(Embedded { chunk, vector: v })
    }

    /// Every vector must have the configured length and finite values before
    /// it may be written. A wrong length means the model or --embed-dim is
    /// wrong for every batch, so it ends the run rather than paying on.
    fn check(&self, batch: &[Chunk], vectors: Vec<Vec<f32>>) -> Result<Vec<Vec<f32>>, EmbedError> {
        if vectors.len() != batch.len() {
            return Err(EmbedError::Transient {
                message: format!(
                    "the endpoint returned {} vectors for {} inputs",
                    vectors.len(),
                    batch.len()
                ),
                retry_after: None,
            });
        }
        for (c, v) in batch.iter().zip(&vectors) {
            if v.len() != self.cfg.dim {
                return Err(EmbedError::Fatal(format!(
                    "the endpoint returned a vector of length {} but --embed-dim (EMBEDDING_DIM) is {}: \
                     set it to the model's dimension, or use --send-dimensions if the model can shorten vectors; \
                     nothing of this batch was written",
                    v.len(),
                    self.cfg.dim
                )));
            }
            if v.iter().any(|x| !x.is_finite()) {
                return Err(EmbedError::Rejected(format!(
                    "the endpoint returned a non-finite value (NaN or infinity) for chunk {} of {}",
                    c.index, c.doc.source
                )));
            }
        }
        Ok(vectors)
    }
}

/// Whether a "too large" answer is about one input's length (OpenAI's
/// "maximum context length", TEI's "input ... too long") rather than the
/// number of inputs or the request's size.
fn names_one_input(msg: &str) -> bool {
    let m = msg.to_ascii_lowercase();
    [
        "context length",
        "too long",
        "input length",
        "maximum input",
        "sequence length",
        "must have less than",
        // Voyage: "The example at index 3 in your batch has ... tokens".
        "example at index",
    ]
    .iter()
    .any(|k| m.contains(k))
        && !m.contains("too many")
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::records::DocMeta;
    use std::sync::atomic::{AtomicUsize, Ordering::SeqCst};
    use std::time::Duration;

    /// Answers at once: the sink, not the endpoint, is the slow side.
    struct Instant(AtomicUsize);

    #[async_trait::async_trait]
    impl Embedder for Instant {
        fn describe(&self) -> String {
            "instant".into()
        }
        async fn embed(&self, inputs: &[&str]) -> Result<Vec<Vec<f32>>, EmbedError> {
            self.0.fetch_add(1, SeqCst);
            Ok(inputs.iter().map(|_| vec![0.5; 4]).collect())
        }
    }

    fn chunk(i: usize) -> Chunk {
        let doc = Arc::new(DocMeta {
            page: None,
            tenant: Arc::from("t"),
            doc_id: format!("d{i}"),
            source: format!("s{i}"),
            file: Arc::from("s"),
            key: format!("s{i}"),
            hash: String::new(),
            chunk_count: 1,
            pending: Default::default(),
        });
        Chunk {
            id: format!("{i}"),
            doc,
            index: 0,
            text: format!("chunk {i}"),
            content_hash: String::new(),
            tokens: 2,
            extra: None,
        }
    }

    /// Refuses every request (a wrong key) a little after it arrives, so
    /// the refusals of the requests in flight come back one by one.
    struct Refuses(AtomicUsize);

    #[async_trait::async_trait]
    impl Embedder for Refuses {
        fn describe(&self) -> String {
            "refuses".into()
        }
        async fn embed(&self, _inputs: &[&str]) -> Result<Vec<Vec<f32>>, EmbedError> {
            let n = self.0.fetch_add(1, SeqCst);
            tokio::time::sleep(Duration::from_millis(5 * (n as u64 + 1))).await;
            Err(EmbedError::Fatal("401: wrong key".into()))
        }
    }

    fn settings() -> EmbedSettings {
        EmbedSettings {
            provider: &crate::embed::providers::openai::OPENAI,
            urls: vec![],
            model_dir: None,
            truncate: false,
            model: "m".into(),
            dim: 4,
            api_key: None,
            send_dimensions: false,
            batch_size: 4,
            max_request_tokens: 1000,
            concurrency: 2,
            rpm: None,
            tpm: None,
            request_timeout: Duration::from_secs(5),
            outage_budget: Duration::from_secs(1),
            ..EmbedSettings::default()
        }
    }

    #[tokio::test]
    async fn a_refused_key_sends_nothing_after_the_requests_in_flight() {
        let embedder = Arc::new(Refuses(AtomicUsize::new(0)));
        let fatal = Fatal::default();
        let stage = EmbedStage::new(
            embedder.clone(),
            settings(),
            Arc::new(Stats::default()),
            CancellationToken::new(),
            fatal.clone(),
        );
        // Every batch is formed and waiting for a slot before the first
        // refusal: a slot freed before the run stops would go to one of them.
        let (ctx, crx) = mpsc::channel(1000);
        for i in 0..400 {
            ctx.try_send(chunk(i)).expect("room for every chunk");
        }
        drop(ctx);
        let (etx, _erx) = mpsc::channel(16);
        tokio::time::timeout(Duration::from_secs(10), stage.run(crx, etx))
            .await
            .expect("the stage ends after a refusal");
        let calls = embedder.0.load(SeqCst);
        assert!(calls <= 2, "{calls} requests sent with 2 allowed in flight");
        assert!(fatal.get().is_some_and(|m| m.contains("401")));
    }

    #[tokio::test]
    async fn a_stalled_sink_stops_the_embedding_instead_of_filling_memory() {
        let embedder = Arc::new(Instant(AtomicUsize::new(0)));
        let stage = EmbedStage::new(
            embedder.clone(),
            settings(),
            Arc::new(Stats::default()),
            CancellationToken::new(),
            Fatal::default(),
        );
        let (ctx, crx) = mpsc::channel(16);
        // The sink's queue holds one batch and nobody reads it.
        let (etx, _erx) = mpsc::channel(1);
        let run = tokio::spawn(stage.run(crx, etx));
        let feed = tokio::spawn(async move {
            for i in 0..1000 {
                if ctx.send(chunk(i)).await.is_err() {
                    break;
                }
            }
        });
        tokio::time::sleep(Duration::from_millis(300)).await;
        // One batch in the queue, and at most 2 x concurrency formed: a
        // fixed bound, not the 250 batches of the input.
        let calls = embedder.0.load(SeqCst);
        assert!((1..=5).contains(&calls), "{calls} batches embedded");
        run.abort();
        feed.abort();
    }
}
