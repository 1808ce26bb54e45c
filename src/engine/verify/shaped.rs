//! Verification through a migration's filter, db map and renames.
//!
//! The source's key counts say nothing about a filtered copy, and the target may hold keys the
//! migration never touched (outside the filter, or there before), so neither side's totals can
//! be compared. Instead the source is walked with `SCAN` in each database the filter names, each
//! key is put through the same filter the copy used, and what passes is compared with the
//! target's key of the mapped name in the mapped database: a key outside the filter is never
//! "missing", a target key the migration did not write is never "extra". `full` compares every
//! key that passes; `sample` the first `sample_keys` (spread over the databases) that a bounded
//! walk finds, so a narrow filter over a big source costs at most [`SAMPLE_SCAN_CALLS`] `SCAN`s
//! per database. Problems name the source's key and database (the target's are derived from
//! them by the same shape).

use bytes::Bytes;

use super::{keyspace, src_err, tgt_err, Verifier};
use crate::engine::error::EngineError;
use crate::model::{VerificationReport, LEASE_KEY};
use crate::resp::Frame;
use crate::spec::Verify;

/// `SCAN` calls (of 1,000 keys each) a sample may take per database looking for keys that pass.
const SAMPLE_SCAN_CALLS: usize = 100;

impl Verifier<'_> {
    pub(super) async fn run_shaped(mut self) -> Result<VerificationReport, EngineError> {
        let mut report = VerificationReport {
            mode: self.mode,
            checked: 0,
            missing: 0,
            different: 0,
            extra: 0,
            problems: vec![],
        };
        let dbs: Vec<u32> = keyspace(self.source)
            .await
            .map_err(src_err)?
            .into_keys()
            .filter(|db| self.shape.db_in(*db))
            .collect();
        let per_db = match self.mode {
            Verify::Full => usize::MAX,
            _ => self.tuning.sample_keys.div_ceil(dbs.len().max(1)).max(1),
        };
        for db in dbs {
            self.source.select(db).await.map_err(src_err)?;
            self.target
                .select(self.shape.target_db(db))
                .await
                .map_err(tgt_err)?;
            let mut cursor = b"0".to_vec();
            let mut compared = 0usize;
            let mut calls = 0usize;
            let mut missing_here = 0u64;
            loop {
                let (next, batch) = self.scan_batch(&cursor).await?;
                calls += 1;
                let mut keys = self.through_filter(db, batch).await?;
                keys.truncate(per_db - compared);
                compared += keys.len();
                let renamed: Vec<Bytes> = keys.iter().map(|k| self.shape.target_key(k)).collect();
                self.check_batch(db, &keys, &renamed, &mut report, &mut missing_here)
                    .await?;
                let enough =
                    compared >= per_db || (self.mode != Verify::Full && calls >= SAMPLE_SCAN_CALLS);
                if next == b"0" || enough {
                    break;
                }
                cursor = next;
            }
        }
        Ok(report)
    }

    /// The keys of `batch` (source db `db`) that the migration's filter lets through.
    async fn through_filter(
        &mut self,
        db: u32,
        batch: Vec<Bytes>,
    ) -> Result<Vec<Bytes>, EngineError> {
        let mut keys: Vec<Bytes> = batch
            .into_iter()
            .filter(|k| self.shape.key_in(db, k) && !(db == 0 && k == LEASE_KEY.as_bytes()))
            .collect();
        if self.shape.filters_types() && !keys.is_empty() {
            let types: Vec<Vec<&[u8]>> = keys.iter().map(|k| vec![b"TYPE".as_slice(), k]).collect();
            let replies = self.source.call_many(&types).await.map_err(src_err)?;
            let mut kept = replies.iter().map(|r| match r {
                Frame::Simple(t) | Frame::Bulk(t) => {
                    self.shape.type_in(&String::from_utf8_lossy(t))
                }
                _ => false,
            });
            keys.retain(|_| kept.next().unwrap_or(false));
        }
        Ok(keys)
    }
}
