//! `--state s3://BUCKET/KEY`: the state file fetched to a local copy at
//! the start, put back while the run goes (checkpoints) and at its end.

use std::sync::Arc;

use super::*;

/// A state file kept in S3: fetched to a local file of this process at the
/// start (none there yet: a new one), put back at the end of the run.
pub(crate) struct RemoteState {
    s3: Arc<S3>,
    bucket: String,
    key: String,
    local: PathBuf,
}

impl RemoteState {
    pub(crate) async fn fetch(
        job: &LoadJob,
        remote: Option<&Remote>,
        bucket: &str,
        key: &str,
    ) -> Result<RemoteState, SetupError> {
        let local = job
            .state
            .clone()
            .ok_or_else(|| SetupError(anyhow::anyhow!("internal error: no local state path")))?;
        let s3 = match remote {
            Some(r) => r.s3.clone(),
            None => Arc::new(S3::from_settings(&job.source.s3)?),
        };
        let this = RemoteState {
            s3,
            bucket: bucket.to_string(),
            key: key.to_string(),
            local,
        };
        let _ = std::fs::remove_file(&this.local);
        match this.s3.download(bucket, key, &this.local, u64::MAX).await {
            Ok(n) => tracing::info!("--state {}: {n} bytes fetched", this.url()),
            Err(crate::source::s3::S3Error::NoSuchKey(_)) => {
                let _ = std::fs::remove_file(&this.local);
                tracing::info!("--state {}: not there yet, starting a new one", this.url());
            }
            Err(e) => {
                let _ = std::fs::remove_file(&this.local);
                return Err(SetupError(anyhow::anyhow!(
                    "--state {}: cannot fetch it: {e}",
                    this.url()
                )));
            }
        }
        Ok(this)
    }

    pub(crate) fn url(&self) -> String {
        format!("s3://{}/{}", self.bucket, self.key)
    }

    /// The whole file in one PUT (a state is a few hundred bytes a document).
    pub(crate) async fn put(&self) -> anyhow::Result<()> {
        self.put_file(&self.local).await?;
        tracing::info!("--state {}: put back", self.url());
        Ok(())
    }

    async fn put_file(&self, file: &std::path::Path) -> anyhow::Result<()> {
        let body = tokio::fs::read(file).await?;
        self.s3
            .put(&self.bucket, &self.key, body, "application/octet-stream")
            .await?;
        Ok(())
    }

    /// Puts a snapshot of the state back every `every` while the run goes:
    /// a task killed after hours (Fargate, a spot node) then leaves most of
    /// what it did recorded. A failed checkpoint is only said; the end of
    /// the run puts the state back again.
    pub(crate) fn checkpoints(
        self: &Arc<Self>,
        ledger: Arc<Ledger>,
        every: std::time::Duration,
    ) -> tokio::task::JoinHandle<()> {
        let this = self.clone();
        tokio::spawn(async move {
            loop {
                tokio::time::sleep(every).await;
                this.checkpoint_now(&ledger).await;
            }
        })
    }

    /// Puts a snapshot of the state back now; a failure is only said.
    pub(crate) async fn checkpoint_now(&self, ledger: &Arc<Ledger>) {
        let copy = self.local.with_extension("checkpoint");
        let (ledger, to) = (ledger.clone(), copy.clone());
        let snap = tokio::task::spawn_blocking(move || ledger.snapshot(&to)).await;
        let put = match snap {
            Ok(Ok(true)) => self.put_file(&copy).await,
            Ok(Ok(false)) => return,
            Ok(Err(e)) => Err(e),
            Err(e) => Err(anyhow::anyhow!("{e}")),
        };
        let _ = std::fs::remove_file(&copy);
        match put {
            Ok(()) => tracing::info!("--state {}: checkpoint put", self.url()),
            Err(e) => tracing::warn!("--state {}: checkpoint not put: {e:#}", self.url()),
        }
    }
}

impl Drop for RemoteState {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.local);
        let _ = std::fs::remove_file(self.local.with_extension("checkpoint"));
    }
}
