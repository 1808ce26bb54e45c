//! The scan reader (`source.read: scan`): for sources that refuse SYNC/PSYNC.
//!
//! It is weaker than replication, and says so everywhere (validation's `source.read`, the
//! README): there is no replication stream, so no order across keys and no transaction reaches
//! the target whole. What it guarantees instead:
//!
//! 1. **Nothing changed goes unseen.** The subscriber ([`notify`]) listens to the source's
//!    key-event notifications *before* the first `SCAN`, so a key written after its copy is
//!    marked dirty, whatever the command; expired and evicted keys too.
//! 2. **Every dirty key is copied again** from what the source holds then: `DUMP` → `RESTORE
//!    REPLACE` with its current TTL, or `UNLINK` on the target when it is gone. A key that
//!    changes while it is read in chunks is dirty again, and copied again.
//! 3. **Notifications are at-most-once**, so anything that may have lost one (a broken subscriber
//!    connection, a dirty set over its bound) starts a full scan again (`ScanRedone`, with why).
//! 4. **Cutover is checked whole.** Writes are paused on the source, the notifications are
//!    drained up to a barrier taken under the pause, the last dirty keys are copied, and every key
//!    is compared (`verify: full`, whatever `options.verify` says). The pause is released on
//!    every path.
//!
//! There is no replication offset: the target's offset key holds the `snapshot` mark from the
//! first write to the end, and a restarted job scans again from the start with `REPLACE` for its
//! own earlier copies (the inventory of the target before the migration tells those from the
//! keys it held; the keys the earlier run copied and the source no longer has are swept).
//!
//! Functions (7.0+) are copied first, with `FUNCTION DUMP` / `RESTORE` ([`functions`]); a
//! function changed later on the source is not followed (no key notification names it).
//!
//! Files: [`copy`] (a batch: `MEMORY USAGE`, `PTTL` + `DUMP`, `RESTORE`), [`chunked`] (big
//! keys), [`notify`] (the setting and the subscriber), [`catchup`] (dirty keys, re-scans, the
//! wait for cutover), [`cutover`].

mod catchup;
mod chunked;
mod copy;
mod cutover;
mod functions;
mod notify;

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use super::error::EngineError;
use super::resume::{self, KeySet, TargetMark, SNAPSHOT_MARK};
use super::writer::Writer;
use super::{Reporter, Run, Servers};
use crate::client::Conn;
use crate::model::{EventKind, LEASE_KEY};
use crate::spec::{keyspace_notifications_needed, Mode, OnConflict, Transfer, TransferKind};
use crate::transport::Peer;
use copy::{Copier, Counts, Policy};
use notify::{Dirty, Listener};

/// Knobs of the scan reader; tests shrink them.
#[derive(Debug, Clone, Copy)]
pub struct ScanTuning {
    /// `SCAN … COUNT`: keys asked per step (and the most dirty keys copied in one batch).
    pub batch: usize,
    /// The most dirty keys kept; more means a full scan again.
    pub max_dirty: usize,
}

impl Default for ScanTuning {
    fn default() -> Self {
        ScanTuning {
            batch: 500,
            max_dirty: 1_000_000,
        }
    }
}

/// The source's `notify-keyspace-events` to put back at the end (set by this run or an earlier
/// one); [`super::run_with`] puts it back on every path.
pub(super) type NotifySlot = Arc<Mutex<Option<String>>>;

/// Puts the source's keyspace notification setting back, if this job changed it, and records it.
pub(super) async fn put_back_notifications(source: &Peer, slot: &NotifySlot, reporter: &Reporter) {
    let value = slot.lock().unwrap_or_else(|p| p.into_inner()).take();
    let Some(value) = value else {
        return;
    };
    let attempt = async {
        let mut conn = Conn::connect(source).await?;
        notify::set(&mut conn, &value).await
    };
    match tokio::time::timeout(Duration::from_secs(10), attempt).await {
        Ok(Ok(())) => {
            let _ = reporter
                .emit(EventKind::KeyspaceNotificationsRestored { value })
                .await;
        }
        Ok(Err(e)) => {
            tracing::warn!(error = %e, "could not put notify-keyspace-events back on the source")
        }
        Err(_) => tracing::warn!("putting notify-keyspace-events back on the source timed out"),
    }
}

/// One run of the scan reader.
pub(super) struct ScanReader<'a> {
    pub run: &'a Run,
    /// Admin connections.
    pub source: &'a mut Conn,
    pub target: &'a mut Conn,
    pub servers: &'a Servers,
}

/// The state of a reader between its phases.
struct Reading {
    reader: Conn,
    reader_db: Option<u32>,
    writer: Writer,
    listener: Listener,
    dirty: Dirty,
    counts: Counts,
    last_report: Instant,
}

impl ScanReader<'_> {
    pub async fn run(mut self) -> Result<(), EngineError> {
        let run = self.run;
        let spec = &run.job.spec;
        if spec.options.transfer == Transfer::Relay {
            return Err(EngineError::Unsupported(
                "transfer relay needs the source's replication stream, which source.read scan \
                 does not use; use transfer auto or restore"
                    .into(),
            ));
        }
        if run.job.transfer.is_none() {
            run.reporter
                .emit(EventKind::TransferChosen {
                    transfer: TransferKind::Restore,
                    reason: "source.read scan: keys are copied with RESTORE (a relay needs the \
                             source's replication stream)"
                        .into(),
                    relay_target: None,
                })
                .await?;
        }
        let notify = self.notifications().await?;
        // A mark on the target means an earlier run wrote there: its copies are replaced.
        let mark = resume::read_mark(self.target, &run.offset_key)
            .await
            .map_err(EngineError::target)?;
        let redo = (mark != TargetMark::Absent).then(|| {
            "the job restarted; a scan reader has no offset to continue from, so every key is \
             copied again with REPLACE"
                .to_string()
        });
        let preexisting = match &redo {
            Some(reason) => Some(run.job.before.keys(reason, run.job.migration_id).await?),
            None => None,
        };
        let dirty = Dirty::new(run.tuning.scan.max_dirty);
        // Subscribed before the first SCAN: no change after this point goes unseen.
        let listener = Listener::start(&run.source, dirty.clone())
            .await
            .map_err(EngineError::source)?;
        resume::write_mark(self.target, &run.offset_key, SNAPSHOT_MARK)
            .await
            .map_err(EngineError::target)?;
        let mut writer_conn = Conn::connect(&run.target)
            .await
            .map_err(EngineError::target)?;
        self.servers.prepare_writer(&mut writer_conn).await?;
        let mut writer = Writer::new(writer_conn, run.tuning.writer, spec.options.on_conflict, 0);
        writer.set_throttle(run.throttle.clone());
        let reader = Conn::connect(&run.source)
            .await
            .map_err(EngineError::source)?;
        let keys_total = super::relay_target::total_keys(self.source).await.ok();
        // The phase is the snapshot's; then the view says how it is read.
        run.reporter
            .emit(EventKind::SnapshotStarted {
                replid: String::new(),
                offset: 0,
                diskless: false,
                rdb_bytes_total: None,
                redo: redo.clone(),
                keys_total,
            })
            .await?;
        run.reporter
            .emit(EventKind::ScanStarted {
                keys_total,
                notify: notify.clone(),
            })
            .await?;
        let mut state = Reading {
            reader,
            reader_db: None,
            writer,
            listener,
            dirty,
            counts: Counts::default(),
            last_report: Instant::now(),
        };
        let started = Instant::now();
        functions::copy(
            self.source,
            self.target,
            self.servers,
            spec.options.on_conflict,
            redo.is_some(),
        )
        .await?;
        let policy = Policy::Scan {
            on_conflict: spec.options.on_conflict,
            preexisting: preexisting.as_ref(),
        };
        let mut written = preexisting.as_ref().map(|_| KeySet::default());
        let flush = spec.options.on_conflict == OnConflict::Flush && redo.is_none();
        self.scan_pass(&mut state, policy, written.as_mut(), flush)
            .await?;
        if let (Some(written), Some(before)) = (&written, &preexisting) {
            let removed = resume::sweep(self.target, written, before)
                .await
                .map_err(EngineError::target)?;
            tracing::info!(
                removed,
                "scan redone: keys of the earlier copy the source no longer has deleted"
            );
        }
        let stats = state.writer.stats();
        let load = std::sync::atomic::Ordering::Relaxed;
        run.reporter
            .emit(EventKind::SnapshotCompleted {
                rdb_bytes: 0,
                keys_written: stats.keys_written.load(load),
                keys_skipped: stats.keys_skipped.load(load) + state.counts.skipped,
                keys_expired: state.counts.gone,
                keys_rewritten: state.counts.rewritten,
                duration_ms: started.elapsed().as_millis() as u64,
                keys_empty: 0,
            })
            .await?;
        if spec.mode == Mode::Live {
            run.reporter
                .emit(EventKind::StreamingStarted {
                    replid: String::new(),
                    offset: 0,
                })
                .await?;
            self.follow(&mut state, preexisting.as_ref()).await?;
        }
        cutover::Cutover {
            scan: &mut self,
            state: &mut state,
            preexisting: preexisting.as_ref(),
        }
        .run()
        .await
    }

    /// Makes sure the source publishes the notifications the reader needs; returns the setting.
    async fn notifications(&mut self) -> Result<String, EngineError> {
        let run = self.run;
        let current = notify::current_setting(self.source).await.map_err(|e| {
            EngineError::Unsupported(format!(
                "source.read scan needs to read the source's notify-keyspace-events \
                 (CONFIG GET): {e}"
            ))
        })?;
        if let Some(before) = &run.job.notifications_before {
            // An earlier run set it: that run's value is the one to put back.
            *run.notify_restore.lock().unwrap_or_else(|p| p.into_inner()) = Some(before.clone());
        }
        let Some(wanted) = keyspace_notifications_needed(&current) else {
            return Ok(current);
        };
        if !run.job.spec.options.set_keyspace_notifications {
            return Err(EngineError::Unsupported(format!(
                "source.read scan follows changes through keyspace notifications, and the \
                 source's notify-keyspace-events is `{current}`: run `CONFIG SET \
                 notify-keyspace-events {wanted}` on the source, or set \
                 options.set_keyspace_notifications"
            )));
        }
        // Recorded before it is changed: a crash right after the change still leaves the value
        // to put back in the log (putting back an unchanged value is harmless).
        if run.job.notifications_before.is_none() {
            run.reporter
                .emit(EventKind::KeyspaceNotificationsSet {
                    previous: current.clone(),
                    set: wanted.clone(),
                })
                .await?;
        }
        {
            let mut slot = run.notify_restore.lock().unwrap_or_else(|p| p.into_inner());
            if slot.is_none() {
                *slot = Some(current.clone());
            }
        }
        notify::set(self.source, &wanted).await.map_err(|e| {
            EngineError::Unsupported(format!(
                "setting the source's notify-keyspace-events to `{wanted}` (CONFIG SET): {e}"
            ))
        })?;
        Ok(wanted)
    }

    fn copier<'s>(&'s mut self, state: &'s mut Reading) -> Copier<'s> {
        Copier {
            source: &mut state.reader,
            writer: &mut state.writer,
            target: self.target,
            tuning: &self.run.tuning,
            servers: self.servers,
            counts: &mut state.counts,
            source_db: &mut state.reader_db,
        }
    }

    /// Copies every key of every db of the source once.
    async fn scan_pass(
        &mut self,
        state: &mut Reading,
        policy: Policy<'_>,
        mut written: Option<&mut KeySet>,
        flush: bool,
    ) -> Result<(), EngineError> {
        let info = self
            .source
            .info("keyspace")
            .await
            .map_err(EngineError::source)?;
        let dbs: Vec<u32> = info.keyspace.keys().copied().collect();
        let count = self.run.tuning.scan.batch.max(1).to_string();
        for db in dbs {
            if flush {
                self.flush_db(state, db).await?;
            }
            let mut cursor = b"0".to_vec();
            loop {
                if state.reader_db != Some(db) {
                    state.reader.select(db).await.map_err(EngineError::source)?;
                    state.reader_db = Some(db);
                }
                let reply = state
                    .reader
                    .call_ok(&[b"SCAN".as_slice(), &cursor, b"COUNT", count.as_bytes()])
                    .await
                    .map_err(EngineError::source)?;
                let (next, mut keys) = resume::scan_reply(reply).ok_or_else(|| {
                    EngineError::SourceError("SCAN returned an unexpected reply".into())
                })?;
                // Another writer's lease on the source is not data.
                keys.retain(|k| !(db == 0 && &k[..] == LEASE_KEY.as_bytes()));
                if let Some(written) = written.as_deref_mut() {
                    for k in &keys {
                        written.insert(db, k);
                    }
                }
                self.copier(state).copy(db, &keys, policy).await?;
                state.writer.check()?;
                self.report_progress(state).await?;
                if next == b"0" {
                    break;
                }
                cursor = next;
            }
        }
        state.writer.drain().await
    }

    /// `on_conflict: flush`: empties a db of the target before its first key (the lease and
    /// the mark of db 0 are set again right behind the flush).
    async fn flush_db(&mut self, state: &mut Reading, db: u32) -> Result<(), EngineError> {
        let run = self.run;
        state
            .writer
            .setup(db, &[b"FLUSHDB"], "FLUSHDB", None)
            .await?;
        if db == 0 {
            if let Some(lease) = &run.job.lease {
                let set = lease.set_command();
                let args: Vec<&[u8]> = set.iter().map(Vec::as_slice).collect();
                state.writer.setup(0, &args, "SET", None).await?;
            }
            let mark = [
                b"SET".as_slice(),
                &run.offset_key[..],
                SNAPSHOT_MARK.as_bytes(),
            ];
            state.writer.setup(0, &mark, "SET", None).await?;
        }
        Ok(())
    }

    async fn report_progress(&self, state: &mut Reading) -> Result<(), EngineError> {
        if state.last_report.elapsed() < self.run.tuning.report_interval {
            return Ok(());
        }
        state.last_report = Instant::now();
        let stats = state.writer.stats();
        let load = std::sync::atomic::Ordering::Relaxed;
        self.run
            .reporter
            .emit(EventKind::SnapshotProgress {
                rdb_bytes_read: 0,
                rdb_bytes_total: None,
                keys_written: stats.keys_written.load(load),
                keys_skipped: stats.keys_skipped.load(load) + state.counts.skipped,
                keys_expired: state.counts.gone,
            })
            .await
    }
}
