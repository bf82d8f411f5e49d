//! Documents in S3: `vecload load s3://BUCKET/PREFIX`. The listing is read
//! a page (1,000 keys) at a time and streamed into the load, never held
//! whole; objects are fetched a bounded number at a time into a spool
//! folder and then read exactly as files on disk are (same formats, filters
//! on keys relative to the prefix, same ids and rows). An object the state
//! knows unchanged (same ETag and size, every document of it written) is
//! not even downloaded.

mod client;
mod feed;

pub use client::{Object, S3, S3Error};
pub use feed::{FeedCtx, Fetched, Known, KnownObject, Spool, Taken, feed};

use crate::settings::{ConfigError, bad};

/// `s3://bucket/prefix`, as given.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct S3Root {
    pub bucket: String,
    /// The key prefix, with a trailing `/` unless empty (`s3://b/docs` and
    /// `s3://b/docs/` both mean the folder `docs/`).
    pub prefix: String,
}

impl S3Root {
    /// `Some` for an `s3://` PATH, checked.
    pub fn parse(path: &str) -> Option<Result<S3Root, ConfigError>> {
        let rest = path.strip_prefix("s3://")?;
        let (bucket, prefix) = rest.split_once('/').unwrap_or((rest, ""));
        let valid = (3..=63).contains(&bucket.len())
            && bucket
                .chars()
                .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-' || c == '.');
        if !valid {
            return Some(Err(bad(format!(
                "PATH {path}: {bucket:?} is not an S3 bucket name (3-63 lower-case letters, \
                 digits, dots and hyphens)"
            ))));
        }
        let prefix = prefix.trim_start_matches('/');
        let prefix = if prefix.is_empty() || prefix.ends_with('/') {
            prefix.to_string()
        } else {
            format!("{prefix}/")
        };
        Some(Ok(S3Root {
            bucket: bucket.to_string(),
            prefix,
        }))
    }

    pub fn url(&self) -> String {
        format!("s3://{}/{}", self.bucket, self.prefix)
    }

    /// A listed key's path relative to the prefix: the stored `source`, as a
    /// file's path is relative to its folder.
    pub fn relative<'a>(&self, key: &'a str) -> &'a str {
        key.strip_prefix(&self.prefix).unwrap_or(key)
    }

    /// Listed, then denied, missing or elsewhere: the first page, asked
    /// before anything is sent, so a wrong bucket or permission stops the
    /// run with exit 2.
    pub async fn check(&self, s3: &S3) -> anyhow::Result<()> {
        match s3.list(&self.bucket, &self.prefix, None, 1).await {
            Ok(_) => Ok(()),
            Err(S3Error::Denied(m)) => anyhow::bail!(
                "cannot list {}: access denied ({m}); the role needs s3:ListBucket on the bucket \
                 and s3:GetObject on its keys",
                self.url()
            ),
            Err(S3Error::NoSuchBucket(b)) => {
                anyhow::bail!("cannot list {}: there is no bucket {b:?}", self.url())
            }
            Err(e) => anyhow::bail!("cannot list {}: {e}", self.url()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn s3_paths() {
        let r = S3Root::parse("s3://my-bucket/docs/2024").unwrap().unwrap();
        assert_eq!(r.bucket, "my-bucket");
        assert_eq!(r.prefix, "docs/2024/");
        assert_eq!(r.relative("docs/2024/a/b.md"), "a/b.md");
        assert_eq!(S3Root::parse("s3://b.c.d").unwrap().unwrap().prefix, "");
        assert!(S3Root::parse("s3://Bad_Bucket/x").unwrap().is_err());
        assert!(S3Root::parse("/local/path").is_none());
    }
}
