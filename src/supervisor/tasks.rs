//! Backup captures, restores and uploads as supervised work.
//!
//! Each reports only through the service: progress as checkpoint events at a bounded rate (at
//! most one a second), then its end. A task that a restart interrupts records nothing more; the
//! service fails it explicitly at the next start (see [`crate::jobs::Jobs::recover`]).

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use futures::future::BoxFuture;
use futures::FutureExt;
use tokio::sync::mpsc;
use uuid::Uuid;

use super::Supervisor;
use crate::aggregate::backup::Command as BackupCommand;
use crate::aggregate::restore::{Command as RestoreCommand, RestoreOutcome};
use crate::backup::capture::{self, Captured};
use crate::backup::file::{Expected, FileFacts, RdbFileWriter};
use crate::backup::BackupError;
use crate::client::lease::LeaseToken;
use crate::engine::{self, Tuning};
use crate::jobs::{Jobs, RestoreWork, UploadError, UploadSink, UploadedFile, ENGINE_ACTOR};
use crate::model::{AggregateType, BackupDetails, EventKind};
use crate::spec::Endpoint;
use crate::transport::Peer;

/// How often a running capture records its bytes.
const CHECKPOINT_EVERY: Duration = Duration::from_secs(1);

/// Takes backup `id` of `server` and records its checkpoints and its end.
pub(super) async fn capture(sup: Supervisor, jobs: Jobs, id: Uuid, server: Endpoint) {
    let url = server.url.clone();
    let dir = sup.backups_dir();
    let max = sup.limits().max_bytes;
    let floor = sup.limits().min_free_bytes;
    // Holds only the latest figure: a slow log append skips checkpoints rather than queueing them.
    let (tx, mut rx) = mpsc::channel::<u64>(1);
    let mut last = Instant::now();
    let progress = move |bytes: u64| {
        if last.elapsed() >= CHECKPOINT_EVERY {
            last = Instant::now();
            let _ = tx.try_send(bytes);
        }
    };
    let recorder = async {
        while let Some(bytes) = rx.recv().await {
            let checkpoint = BackupCommand::Progress { bytes };
            if let Err(e) = jobs.report_backup(id, ENGINE_ACTOR, checkpoint).await {
                tracing::error!(backup = %id, error = %e, "could not record a capture checkpoint");
            }
        }
    };
    // The capture owns the sender, so the recorder ends when the capture does.
    let captured = async {
        // TLS files are read here, at the start of the capture.
        let peer = Peer::new(&server).map_err(crate::client::ClientError::from)?;
        capture::capture(&peer, &dir, id, max, floor, progress).await
    };
    let (captured, ()) = tokio::join!(captured, recorder);
    let end = match captured {
        Ok(Captured {
            facts,
            server_version,
        }) => {
            tracing::info!(backup = %id, bytes = facts.bytes, "backup completed");
            BackupCommand::Complete {
                bytes: facts.bytes,
                details: details(&facts, &server_version),
            }
        }
        Err(e) => {
            tracing::warn!(backup = %id, error = %e, "backup failed");
            BackupCommand::Fail {
                code: e.code().into(),
                message: crate::client::scrub(&e.to_string(), &url),
            }
        }
    };
    if let Err(e) = jobs.report_backup(id, ENGINE_ACTOR, end).await {
        tracing::error!(backup = %id, error = %e, "could not record the end of a capture");
    }
}

fn details(facts: &FileFacts, server_version: &str) -> BackupDetails {
    BackupDetails {
        server_version: server_version.to_string(),
        rdb_version: facts.rdb_version,
        crc64: facts.crc64.clone(),
        sha256: facts.sha256.clone(),
        databases: facts.databases.clone(),
    }
}

/// Runs a restore (flushing the target first for a rollback) under the target's lease, and
/// records its checkpoints and end. `path` is the backup's file (`None`: the "empty" restore
/// point, which only flushes).
pub(super) async fn restore(sup: Supervisor, jobs: Jobs, path: Option<PathBuf>, work: RestoreWork) {
    let id = work.restore_id;
    let keeper = match sup.held_lease(id) {
        Some(keeper) => Ok(keeper),
        None => {
            let owner = sup.lease_owner(AggregateType::Restore, id, ENGINE_ACTOR);
            match Peer::new(&work.target) {
                Ok(peer) => sup
                    .take_lease(&peer, owner, false)
                    .await
                    .map(|(keeper, _)| keeper),
                Err(e) => Err(e.to_string()),
            }
        }
    };
    let outcome = match &keeper {
        Ok(keeper) => tokio::select! {
            loaded = load(&jobs, path.as_deref(), &work, keeper.token()) => loaded,
            why = keeper.lost() => Err(engine::EngineError::LeaseLost(why)),
        },
        Err(why) => Err(engine::EngineError::LeaseLost(why.clone())),
    };
    if let Ok(keeper) = keeper {
        keeper.release().await;
    }
    let end = match outcome {
        Ok(outcome) => RestoreCommand::Complete(outcome),
        Err(e) => RestoreCommand::Fail {
            code: e.code().into(),
            message: crate::client::scrub(&e.to_string(), &work.target.url),
        },
    };
    if let Err(e) = jobs.report_restore(id, ENGINE_ACTOR, end).await {
        tracing::error!(restore = %id, error = %e, "could not record the end of a restore");
    }
}

/// Proof before destruction: the file is read whole and proven (parsed to its end, size,
/// CRC-64 and SHA-256 as recorded) before the flush and the first write; a file that cannot be
/// proven (damaged, truncated, replaced, deleted) leaves the target untouched.
async fn load(
    jobs: &Jobs,
    path: Option<&Path>,
    work: &RestoreWork,
    lease: &LeaseToken,
) -> Result<RestoreOutcome, engine::EngineError> {
    let target = Peer::new(&work.target)
        .map_err(|e| engine::EngineError::TargetUnreachable(e.to_string()))?;
    let proven = match (path, work.backup_id) {
        (Some(path), Some(backup_id)) => {
            let unproven = |why: String| {
                engine::EngineError::Unproven(format!(
                    "backup {backup_id} cannot be proven, so nothing was flushed or written: {why}"
                ))
            };
            let stored = jobs
                .stored_backup(backup_id)
                .map_err(|e| unproven(e.to_string()))?;
            let expected = Expected {
                bytes: stored.bytes,
                crc64: stored.details.crc64,
                sha256: stored.details.sha256,
            };
            let file = crate::backup::file::prove(path, &expected)
                .await
                .map_err(|e| unproven(e.to_string()))?;
            Some(file)
        }
        _ => None,
    };
    if work.flush_first {
        engine::flush_target(&target, Some(lease))
            .await
            .map_err(|e| {
                engine::EngineError::TargetLinkLost(format!("flushing the target failed: {e}"))
            })?;
    }
    let Some(file) = proven else {
        // The "empty" restore point: the flush was all of it.
        return Ok(RestoreOutcome {
            keys_written: 0,
            keys_skipped: 0,
            keys_expired: 0,
            duration_ms: 0,
            keys_empty: 0,
        });
    };
    // The load reports `SnapshotProgress` once per report interval (a second): each becomes a
    // checkpoint of the restore.
    let (tx, mut rx) = mpsc::channel(16);
    let recorder = async {
        while let Some(fact) = rx.recv().await {
            if let EventKind::SnapshotProgress {
                rdb_bytes_read,
                rdb_bytes_total,
                keys_written,
                keys_skipped,
                ..
            } = fact
            {
                let checkpoint = RestoreCommand::Progress {
                    rdb_bytes_read,
                    rdb_bytes_total,
                    keys_written,
                    keys_skipped,
                };
                if let Err(e) = jobs
                    .report_restore(work.restore_id, ENGINE_ACTOR, checkpoint)
                    .await
                {
                    tracing::error!(restore = %work.restore_id, error = %e, "could not record a restore checkpoint");
                }
            }
        }
    };
    let loading = engine::load_rdb_file(
        file,
        &target,
        work.on_conflict,
        Some(lease),
        tx,
        Tuning::default(),
        None,
    );
    let (loaded, ()) = tokio::join!(loading, recorder);
    let summary = loaded?;
    Ok(RestoreOutcome {
        keys_written: summary.keys_written,
        keys_skipped: summary.keys_skipped,
        keys_expired: summary.keys_expired,
        duration_ms: summary.duration_ms,
        keys_empty: summary.keys_empty,
    })
}

/// An upload written through [`RdbFileWriter`]: parsed and hashed as it arrives.
struct FileSink {
    writer: RdbFileWriter,
    limit: u64,
    /// Held while the upload runs (`upload_concurrency`).
    _permit: tokio::sync::OwnedSemaphorePermit,
}

pub(super) async fn upload_sink(
    dir: &Path,
    id: Uuid,
    limit: u64,
    max_decompressed: u64,
    permit: tokio::sync::OwnedSemaphorePermit,
) -> Result<Box<dyn UploadSink>, UploadError> {
    let writer = RdbFileWriter::create(dir, id, limit)
        .await
        .map_err(|e| upload_error(e, limit))?
        .deep()
        .with_max_decompressed(max_decompressed);
    Ok(Box::new(FileSink {
        writer,
        limit,
        _permit: permit,
    }))
}

fn upload_error(e: BackupError, limit: u64) -> UploadError {
    match e {
        BackupError::TooLarge { .. } => UploadError::TooLarge { limit },
        BackupError::Corrupt { offset, message } => UploadError::Corrupt { offset, message },
        other => UploadError::Io(other.to_string()),
    }
}

impl UploadSink for FileSink {
    fn write<'a>(&'a mut self, chunk: &'a [u8]) -> BoxFuture<'a, Result<(), UploadError>> {
        let limit = self.limit;
        async move {
            self.writer
                .write(chunk)
                .await
                .map_err(|e| upload_error(e, limit))
        }
        .boxed()
    }

    fn finish(self: Box<Self>) -> BoxFuture<'static, Result<UploadedFile, UploadError>> {
        let limit = self.limit;
        async move {
            let facts = self
                .writer
                .finish()
                .await
                .map_err(|e| upload_error(e, limit))?;
            Ok(UploadedFile {
                bytes: facts.bytes,
                details: details(&facts, ""),
            })
        }
        .boxed()
    }
}
