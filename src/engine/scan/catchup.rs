//! Following the source after the scan: the dirty keys are copied again as they come, a lost
//! notification stream means scanning again, and live mode waits here for its cutover.

use std::time::{Duration, Instant};

use bytes::Bytes;

use super::copy::Policy;
use super::notify::{Dirty, Listener, Taken};
use super::{Reading, ScanReader};
use crate::engine::error::EngineError;
use crate::engine::resume::{self, KeySet};
use crate::model::{EventKind, LEASE_KEY};

impl ScanReader<'_> {
    pub(super) async fn checkpoint(
        &self,
        state: &mut Reading,
        force: bool,
    ) -> Result<(), EngineError> {
        if !force && state.last_report.elapsed() < self.run.tuning.report_interval {
            return Ok(());
        }
        state.last_report = Instant::now();
        self.run
            .reporter
            .emit(EventKind::ScanCheckpoint {
                dirty_keys: state.dirty.len() as u64,
                keys_recopied: state.counts.recopied,
                keys_deleted: state.counts.deleted,
            })
            .await
    }

    /// Copies the dirty keys once; `Ok(false)` when there were none.
    pub(super) async fn catch_up_once(
        &mut self,
        state: &mut Reading,
        preexisting: Option<&KeySet>,
    ) -> Result<bool, EngineError> {
        match state.dirty.take(self.run.tuning.scan.batch.max(1)) {
            Taken::Lost(reason) => {
                self.rescan(state, reason, preexisting).await?;
                Ok(true)
            }
            Taken::Keys(keys) if keys.is_empty() => Ok(false),
            Taken::Keys(mut keys) => {
                keys.sort_unstable_by_key(|(db, _)| *db);
                for chunk in keys.chunk_by(|a, b| a.0 == b.0) {
                    let db = chunk[0].0;
                    // Another writer's lease on the source is not data, and never overwrites
                    // the target's.
                    let keys: Vec<Bytes> = chunk
                        .iter()
                        .map(|(_, k)| k.clone())
                        .filter(|k| !(db == 0 && &k[..] == LEASE_KEY.as_bytes()))
                        .collect();
                    self.copier(state).copy(db, &keys, Policy::CatchUp).await?;
                }
                state.writer.check()?;
                Ok(true)
            }
        }
    }

    /// Changes may have been missed: subscribe again (before scanning) and copy every key again.
    async fn rescan(
        &mut self,
        state: &mut Reading,
        reason: String,
        preexisting: Option<&KeySet>,
    ) -> Result<(), EngineError> {
        let run = self.run;
        tracing::warn!(%reason, "scan reader: copying every key again");
        run.reporter
            .emit(EventKind::ScanRedone {
                reason: reason.clone(),
            })
            .await?;
        state.dirty.clear();
        state.listener = self.resubscribe(state.dirty.clone(), &reason).await?;
        // The keys the target held before the migration tell its own keys from the earlier
        // copies; with them, the copies of keys deleted while notifications were lost are swept.
        let loaded;
        let before = match preexisting {
            Some(before) => Some(before),
            None => {
                loaded = run
                    .job
                    .before
                    .keys(&reason, run.job.migration_id)
                    .await
                    .ok();
                loaded.as_ref()
            }
        };
        let policy = match before {
            Some(before) => Policy::Scan {
                on_conflict: run.job.spec.options.on_conflict,
                preexisting: Some(before),
            },
            // Not recorded: every source key on the target was checked by the first pass, so
            // it is ours; deleted keys may stay behind, and the full verification names them.
            None => Policy::CatchUp,
        };
        let mut written = before.map(|_| KeySet::default());
        self.scan_pass(state, policy, written.as_mut(), false)
            .await?;
        if let (Some(written), Some(before)) = (&written, before) {
            let removed = resume::sweep(self.target, written, before)
                .await
                .map_err(EngineError::target)?;
            tracing::info!(
                removed,
                "scan again: copies of keys the source no longer has deleted"
            );
        }
        Ok(())
    }

    async fn resubscribe(&mut self, dirty: Dirty, reason: &str) -> Result<Listener, EngineError> {
        let run = self.run;
        let deadline = Instant::now() + run.tuning.reconnect_timeout;
        let mut wait = Duration::from_millis(100);
        loop {
            match Listener::start(&run.source, dirty.clone()).await {
                Ok(listener) => return Ok(listener),
                Err(e) if Instant::now() + wait > deadline => {
                    return Err(EngineError::SourceLinkLost(format!(
                        "{reason}; subscribing again failed: {e}"
                    )))
                }
                Err(_) => {
                    tokio::time::sleep(wait).await;
                    wait = (wait * 2).min(Duration::from_secs(2));
                }
            }
        }
    }

    /// Live mode: copies dirty keys as they come, until the cutover (manual, or automatic once
    /// no dirty key waits).
    pub(super) async fn follow(
        &mut self,
        state: &mut Reading,
        preexisting: Option<&KeySet>,
    ) -> Result<(), EngineError> {
        let run = self.run;
        let options = &run.job.spec.options;
        self.checkpoint(state, true).await?;
        loop {
            if run.controls.cutover.is_cancelled() {
                return Ok(());
            }
            let busy = self.catch_up_once(state, preexisting).await?;
            if !busy {
                state.writer.drain().await?;
                if options.auto_cutover && state.dirty.len() == 0 {
                    self.checkpoint(state, true).await?;
                    run.reporter
                        .emit(EventKind::CutoverStarted {
                            pause_source_writes: options.pause_source_writes_on_cutover,
                        })
                        .await?;
                    return Ok(());
                }
                tokio::select! {
                    _ = run.controls.cutover.cancelled() => {}
                    _ = tokio::time::sleep(Duration::from_millis(20)) => {}
                }
            }
            self.checkpoint(state, false).await?;
        }
    }
}
