//! The feed's chunks into request files, and each file into a batch:
//! recorded under a submission id of its own before it is uploaded.

use std::collections::HashSet;

use anyhow::{Result, anyhow};
use sha2::{Digest, Sha256};
use tokio::sync::mpsc;

use super::{Batches, refused, request_id, submission_id, tried, tries};
use crate::embed::batch::Batcher;
use crate::embed::batch_api::Submission;
use crate::embed::cache::Cache;
use crate::records::Chunk;
use crate::run::SetupError;
use crate::state::BatchRec;

impl Batches<'_> {
    /// Runs the run's feed and submits, in files, the requests for every
    /// chunk no batch has answered or is answering. Returns the batches made.
    pub(super) async fn feed(&mut self) -> Result<u64, SetupError> {
        let mut running: HashSet<[u8; 32]> = HashSet::new();
        for r in self.live()? {
            for request in self.run.state.batch_keys(&r.id)? {
                running.extend(request);
            }
        }
        let cache = self
            .run
            .embed
            .cache
            .as_ref()
            .and_then(|at| Cache::open(self.run.embed, at));
        let (tx, mut rx) = mpsc::channel::<Chunk>(4096);
        let producer = tokio::spawn((self.run.feed)(tx));
        let mut file = RequestFile::default();
        let mut batcher =
            Batcher::new(self.run.embed.batch_size, self.run.embed.max_request_tokens);
        let mut made = 0u64;
        let mut pending: Vec<Chunk> = Vec::new();
        let mut open = true;
        let outcome: Result<(), SetupError> = async {
            while open {
                match rx.recv().await {
                    Some(c) => pending.push(c),
                    None => open = false,
                }
                if pending.len() < 256 && open {
                    continue;
                }
                let group = std::mem::take(&mut pending);
                for chunk in self.to_submit(group, &mut running, cache.as_ref()).await? {
                    if let Some(request) = batcher.push(chunk) {
                        made += self.add(&mut file, request).await?;
                    }
                }
            }
            if let Some(request) = batcher.take() {
                made += self.add(&mut file, request).await?;
            }
            if file.requests as usize >= self.cfg.min_requests {
                self.submit(std::mem::take(&mut file)).await?;
                made += 1;
            } else if file.requests > 0 {
                tracing::info!(
                    "{} requests left, fewer than a batch takes ({}): they go synchronously",
                    file.requests,
                    self.cfg.min_requests
                );
                self.summary.inputs_too_few += file.inputs as u64;
            }
            Ok(())
        }
        .await;
        // Closing the channel stops the feed.
        drop(rx);
        let fed = producer.await;
        outcome?;
        match fed {
            Ok(Ok(())) => Ok(made),
            Ok(Err(e)) => Err(SetupError(anyhow!(e))),
            Err(e) => Err(SetupError(anyhow!("internal error: the feed: {e}"))),
        }
    }

    /// The chunks of `group` to put into a batch: not answered (results
    /// store, embedding cache), not in a running batch or already in this
    /// feed (`taken`, which the chosen ones join), not refused by one, and
    /// not tried twice (or once, with --batch-fallback sync).
    async fn to_submit(
        &self,
        group: Vec<Chunk>,
        taken: &mut HashSet<[u8; 32]>,
        cache: Option<&Cache>,
    ) -> Result<Vec<Chunk>, SetupError> {
        let (results, cache) = (self.results.clone(), cache.cloned());
        let keys: Vec<[u8; 32]> = group.iter().map(|c| self.results.key(&c.text)).collect();
        let running: Vec<bool> = keys.iter().map(|k| taken.contains(k)).collect();
        let most_tries = self.most_tries();
        let (keys, decided) = tokio::task::spawn_blocking(move || -> Result<_> {
            let have = results.get(&keys);
            let cached = match &cache {
                Some(c) => c.get(&keys),
                None => vec![None; keys.len()],
            };
            let names: Vec<String> = keys.iter().flat_map(|k| [refused(k), tried(k)]).collect();
            let marks = results.marks(&names)?;
            let decided: Vec<bool> = (0..keys.len())
                .map(|i| {
                    let skip = have[i].is_some()
                        || cached[i].is_some()
                        || running[i]
                        || marks[2 * i].is_some()
                        || tries(marks[2 * i + 1].as_deref()).0 >= most_tries;
                    !skip
                })
                .collect();
            Ok((keys, decided))
        })
        .await
        .map_err(|e| SetupError(anyhow!("internal error: the batch look-up: {e}")))??;
        // A text twice in one group (or in an earlier one) is taken once.
        Ok(group
            .into_iter()
            .zip(keys)
            .zip(decided)
            .filter_map(|((c, key), submit)| (submit && taken.insert(key)).then_some(c))
            .collect())
    }

    /// Adds one request to the file; submits the file when it is full.
    /// Returns the batches made (0 or 1).
    async fn add(
        &mut self,
        file: &mut RequestFile,
        request: Vec<Chunk>,
    ) -> Result<u64, SetupError> {
        let line = {
            let texts: Vec<&str> = request.iter().map(|c| c.text.as_str()).collect();
            self.api.request_line(&request_id(file.requests), &texts)
        };
        let mut made = 0;
        let api = self.api.limits();
        if file.requests > 0
            && (file.requests as usize >= self.cfg.max_requests.min(api.max_requests)
                || file.bytes.len() + line.len() > self.cfg.max_bytes.min(api.max_bytes)
                || file.inputs + request.len() > self.cfg.max_inputs.min(api.max_inputs))
        {
            self.submit(std::mem::take(file)).await?;
            made = 1;
            return Ok(made + Box::pin(self.add(file, request)).await?);
        }
        file.bytes.extend_from_slice(line.as_bytes());
        file.requests += 1;
        file.inputs += request.len();
        file.tokens += request.iter().map(|c| u64::from(c.tokens)).sum::<u64>();
        file.keys
            .push(request.iter().map(|c| self.results.key(&c.text)).collect());
        Ok(made)
    }

    /// Records, uploads and makes one batch; each step recorded before the
    /// next is taken.
    async fn submit(&mut self, file: RequestFile) -> Result<(), SetupError> {
        let digest = hex::encode(Sha256::digest(&file.bytes));
        let id = submission_id();
        let mut rec = BatchRec {
            id: id.clone(),
            digest: digest.clone(),
            tenant: self.run.tenant.to_string(),
            namespace: self.namespace.clone(),
            file_id: None,
            batch_id: None,
            requests: file.requests,
            inputs: file.keys.iter().map(|k| k.len() as u64).sum(),
            tokens: file.tokens,
            submitted: crate::shard::now(),
            round: 1,
        };
        self.run.state.put_batch_with_keys(&rec, &file.keys)?;
        let name = format!("vecload-{id}.jsonl");
        let file_id = self.api.upload(&name, &file.bytes).await?;
        rec.file_id = Some(file_id.clone());
        self.run.state.put_batch(&rec)?;
        let sub = Submission {
            id: &id,
            digest: &digest,
            tenant: self.run.tenant,
        };
        let made = self.api.create(&file_id, &sub).await?;
        // For the tests: the one moment a kill cannot be aimed at from
        // outside, the batch made and its id not yet recorded.
        if std::env::var_os("VECLOAD_CRASH_AFTER_BATCH_CREATE").is_some() {
            std::process::abort();
        }
        tracing::info!(
            "batch {} submitted: {} requests, {} inputs, {} tokens ({})",
            made.id,
            rec.requests,
            rec.inputs,
            rec.tokens,
            self.api.describe()
        );
        rec.batch_id = Some(made.id);
        self.run.state.put_batch(&rec)?;
        self.summary.submitted += 1;
        (self.run.on_recorded)().await;
        Ok(())
    }
}

/// One request file being written.
#[derive(Default)]
struct RequestFile {
    bytes: Vec<u8>,
    requests: u32,
    inputs: usize,
    tokens: u64,
    /// Per request, the results-store keys of its inputs.
    keys: Vec<Vec<[u8; 32]>>,
}
