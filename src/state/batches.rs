//! The batches a `--batch-api` load submitted, so that a load run again
//! after a kill, a reboot or on another machine (with `--state s3://`)
//! waits for them instead of paying for them a second time.
//!
//! A batch is recorded before its request file is uploaded, under a
//! submission id of its own (which the batch carries in its metadata, so
//! it is found again after a kill), then with its file and batch ids, each
//! step synced to disk. Two submissions of byte-identical files (a
//! resubmission of what a failed batch left undone) are two records: each
//! is polled and read on its own. Its requests' vector keys (the embedding
//! cache's keys of each input, in order) are kept beside it: an output
//! line names its request by `custom_id`, never by position.

use anyhow::Result;
use redb::{ReadableDatabase, ReadableTable, TableDefinition};
use serde::{Deserialize, Serialize};

use super::State;

/// submission id -> BatchRec as JSON.
const BATCHES: TableDefinition<&str, &str> = TableDefinition::new("batches");
/// (submission id, request number) -> the 32-byte keys of its inputs, in order.
const BATCH_KEYS: TableDefinition<(&str, u32), &[u8]> = TableDefinition::new("batch_keys");

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct BatchRec {
    /// This submission's own id (32 hex digits), made before its file is
    /// uploaded: the batch's name here and in its metadata. Records
    /// written by earlier versions have none; their digest is their id.
    #[serde(default)]
    pub id: String,
    /// SHA-256 (hex) of the request file.
    pub digest: String,
    pub tenant: String,
    /// Which vectors (the embedding cache's settings part of the keys, hex):
    /// a batch of another model is not this run's.
    pub namespace: String,
    pub file_id: Option<String>,
    pub batch_id: Option<String>,
    pub requests: u32,
    pub inputs: u64,
    pub tokens: u64,
    /// Unix seconds when it was submitted.
    pub submitted: u64,
    /// 1 for a first submission, 2 for the resubmission of what a batch
    /// that expired or was cancelled left undone.
    pub round: u32,
}

impl State {
    /// Records (or updates) a batch, synced to disk before returning.
    pub fn put_batch(&self, rec: &BatchRec) -> Result<()> {
        let txn = self.db.begin_write()?;
        txn.open_table(BATCHES)?
            .insert(rec.id.as_str(), serde_json::to_string(rec)?.as_str())?;
        txn.commit()?;
        Ok(())
    }

    /// Records a batch with the keys of its requests, synced to disk.
    pub fn put_batch_with_keys(&self, rec: &BatchRec, requests: &[Vec<[u8; 32]>]) -> Result<()> {
        let txn = self.db.begin_write()?;
        {
            let mut keys = txn.open_table(BATCH_KEYS)?;
            for (i, r) in requests.iter().enumerate() {
                let bytes: Vec<u8> = r.iter().flatten().copied().collect();
                keys.insert((rec.id.as_str(), i as u32), bytes.as_slice())?;
            }
            txn.open_table(BATCHES)?
                .insert(rec.id.as_str(), serde_json::to_string(rec)?.as_str())?;
        }
        txn.commit()?;
        Ok(())
    }

    /// Every recorded batch.
    pub fn batches(&self) -> Result<Vec<BatchRec>> {
        let txn = self.db.begin_read()?;
        let t = match txn.open_table(BATCHES) {
            Ok(t) => t,
            Err(redb::TableError::TableDoesNotExist(_)) => return Ok(Vec::new()),
            Err(e) => return Err(e.into()),
        };
        let mut out = Vec::new();
        for item in t.iter()? {
            let (_, v) = item?;
            if let Ok(mut rec) = serde_json::from_str::<BatchRec>(v.value()) {
                if rec.id.is_empty() {
                    rec.id = rec.digest.clone();
                }
                out.push(rec);
            }
        }
        Ok(out)
    }

    /// The keys of each request of a batch, by request number.
    pub fn batch_keys(&self, id: &str) -> Result<Vec<Vec<[u8; 32]>>> {
        let txn = self.db.begin_read()?;
        let t = match txn.open_table(BATCH_KEYS) {
            Ok(t) => t,
            Err(redb::TableError::TableDoesNotExist(_)) => return Ok(Vec::new()),
            Err(e) => return Err(e.into()),
        };
        let mut out = Vec::new();
        for item in t.range((id, 0)..=(id, u32::MAX))? {
            let (_, v) = item?;
            out.push(
                v.value()
                    .chunks_exact(32)
                    .filter_map(|k| k.try_into().ok())
                    .collect(),
            );
        }
        Ok(out)
    }

    /// Forgets a batch (its results are in the store, or it was never made).
    pub fn forget_batch(&self, id: &str) -> Result<()> {
        let txn = self.db.begin_write()?;
        {
            let mut keys = txn.open_table(BATCH_KEYS)?;
            keys.retain_in((id, 0)..=(id, u32::MAX), |_, _| false)?;
            txn.open_table(BATCHES)?.remove(id)?;
        }
        txn.commit()?;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn batches_and_their_keys_survive_reopening_and_are_forgotten_whole() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("s.redb");
        let rec = BatchRec {
            id: "s1".into(),
            digest: "d1".into(),
            tenant: "t".into(),
            namespace: "n".into(),
            file_id: Some("file-1".into()),
            batch_id: None,
            requests: 2,
            inputs: 3,
            tokens: 30,
            submitted: 1,
            round: 1,
        };
        {
            let s = State::open(&path).expect("state");
            s.put_batch_with_keys(&rec, &[vec![[1; 32], [2; 32]], vec![[3; 32]]])
                .expect("put");
            // The same file submitted again is a record of its own.
            let other = BatchRec {
                id: "s2".into(),
                ..rec.clone()
            };
            s.put_batch_with_keys(&other, &[vec![[9; 32]]])
                .expect("put");
        }
        let s = State::open(&path).expect("state");
        assert_eq!(s.batches().expect("batches").len(), 2);
        assert_eq!(
            s.batch_keys("s1").expect("keys"),
            vec![vec![[1; 32], [2; 32]], vec![[3; 32]]]
        );
        s.forget_batch("s1").expect("forget");
        assert_eq!(s.batches().expect("batches")[0].id, "s2");
        assert!(s.batch_keys("s1").expect("keys").is_empty());
        assert_eq!(s.batch_keys("s2").expect("keys"), vec![vec![[9; 32]]]);
    }

    #[test]
    fn a_record_of_an_earlier_version_is_named_by_its_digest() {
        let dir = tempfile::tempdir().expect("tempdir");
        let s = State::open(&dir.path().join("s.redb")).expect("state");
        let old = r#"{"digest":"d0","tenant":"t","namespace":"n","file_id":null,"batch_id":"b","requests":1,"inputs":1,"tokens":1,"submitted":1,"round":1}"#;
        let txn = s.db.begin_write().expect("txn");
        txn.open_table(BATCHES)
            .expect("table")
            .insert("d0", old)
            .expect("insert");
        txn.commit().expect("commit");
        let recs = s.batches().expect("batches");
        assert_eq!((recs[0].id.as_str(), recs[0].digest.as_str()), ("d0", "d0"));
        s.forget_batch(&recs[0].id).expect("forget");
        assert!(s.batches().expect("batches").is_empty());
    }
}
