//! vecload's S3 client as Bedrock batch inference needs it: the request
//! files put, the output keys listed, an output file read line by line.

use std::path::PathBuf;
use std::sync::Arc;

use anyhow::Result;

use crate::embed::batch_api::Objects;
use crate::source::s3::S3;

/// vecload's S3 client as a Bedrock batch needs it.
pub(super) struct S3Objects(pub(super) Arc<S3>);

#[async_trait::async_trait]
impl Objects for S3Objects {
    async fn put(&self, bucket: &str, key: &str, body: Vec<u8>) -> Result<()> {
        Ok(self.0.put(bucket, key, body, "application/jsonl").await?)
    }

    async fn keys(&self, bucket: &str, prefix: &str) -> Result<Vec<String>> {
        let mut keys = Vec::new();
        let mut token = None;
        loop {
            let page = self.0.list(bucket, prefix, token.as_deref(), 1000).await?;
            keys.extend(page.objects.into_iter().map(|o| o.key));
            match page.next {
                Some(t) => token = Some(t),
                None => return Ok(keys),
            }
        }
    }

    async fn lines(
        &self,
        bucket: &str,
        key: &str,
        each: &mut (dyn for<'l> FnMut(&'l [u8]) -> Result<()> + Send),
    ) -> Result<()> {
        use tokio::io::AsyncBufReadExt;
        // Spooled to disk, then read a line at a time: memory stays flat.
        let spool = Spool(std::env::temp_dir().join(format!(
            "vecload-batch-{}-{:016x}.jsonl",
            std::process::id(),
            rand::random::<u64>()
        )));
        self.0.download(bucket, key, &spool.0, u64::MAX).await?;
        let file = tokio::fs::File::open(&spool.0).await?;
        let mut reader = tokio::io::BufReader::new(file);
        let mut line = Vec::new();
        loop {
            line.clear();
            if reader.read_until(b'\n', &mut line).await? == 0 {
                return Ok(());
            }
            if !line.iter().all(u8::is_ascii_whitespace) {
                each(line.trim_ascii_end())?;
            }
        }
    }
}

/// A downloaded output file, removed when dropped.
struct Spool(PathBuf);

impl Drop for Spool {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.0);
    }
}
