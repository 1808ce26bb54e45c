//! The restore point of a migration, and rolling back to it.
//!
//! When `options.backup` is set and the target holds data, the supervisor takes a backup of the
//! target before the engine writes anything (phase `backup`) and records `BackupCompleted` with its
//! id in the migration's history. An empty target needs no restore point: rolling back to empty
//! is a flush, which the rollback does anyway.
//!
//! `POST /v1/migrations/{id}/rollback` (in `failed`, `cancelled` or `completed`) flushes the target
//! (every database: what the migration wrote) and loads the restore point with `REPLACE`, so the
//! target holds exactly what it held before. Without a restore point it refuses: flushing a
//! target whose earlier contents are unknown (the check for data may have failed, or the
//! migration may have ended before it) could only destroy data. The rollback's `RestoreStarted` and
//! `RestoreCompleted`/`RestoreFailed` are recorded under the backup and under the migration.

use std::time::Duration;

use uuid::Uuid;

use super::supervisor::ENGINE_ACTOR;
use super::{JobError, Jobs, MigrationView, State};
use crate::backup::capture::server_facts;
use crate::backup::BackupError;
use crate::engine::{Conn, EngineError};
use crate::spec::{MigrationSpec, OnConflict};
use crate::store::{EventKind, NewEvent};

/// How long the supervisor waits to learn whether the target holds data; if it cannot tell, the
/// engine's own connection reports the problem.
const PROBE_TIMEOUT: Duration = Duration::from_secs(10);

impl Jobs {
    /// Takes the restore point, if one is needed. `Ok(None)`: none was needed (or the target
    /// could not be asked, which the engine will report). `Err`: the migration must not write.
    pub(super) async fn take_restore_point(
        &self,
        id: Uuid,
        spec: &MigrationSpec,
    ) -> Result<Option<EventKind>, BackupError> {
        if !spec.options.backup {
            return Ok(None);
        }
        let facts = match tokio::time::timeout(PROBE_TIMEOUT, server_facts(&spec.target.url)).await
        {
            Ok(Ok(facts)) => facts,
            _ => return Ok(None),
        };
        if facts.keys == 0 {
            return Ok(None);
        }
        // The engine marks the target (its offset key) before the first key lands. If the mark is
        // there, this job wrote before a crash that came ahead of its `SnapshotStarted` event: the
        // target's earlier state is gone, and a backup now would capture a half-written target.
        if already_written(&spec.target.url, id).await {
            return Ok(None);
        }
        let (backup_id, file) = self
            .backups()
            .take(&spec.target.url, Some(id), ENGINE_ACTOR)
            .await?;
        Ok(Some(EventKind::BackupCompleted {
            backup_id,
            bytes: file.bytes,
            details: None,
        }))
    }

    /// Puts the target back as it was before the migration. See the module docs.
    pub async fn rollback(&self, id: Uuid, actor: &str) -> Result<MigrationView, JobError> {
        let entry = self.entry(id)?;
        let _guard = entry.commands.lock().await;
        let view = entry.snapshot().view;
        if !matches!(
            view.state,
            State::Failed | State::Cancelled | State::Completed
        ) {
            return Err(JobError::Busy(format!(
                "cannot roll back a migration that is {}; rollback is allowed in failed, \
                 cancelled or completed (cancel it first)",
                view.state
            )));
        }
        let spec = self.real_spec(id).await?;
        let target = spec.target.url.clone();
        let backups = self.backups();
        let Some(backup_id) = view.backup_id else {
            let why = if view.options.backup {
                "no restore point was taken (the target held no keys when the migration \
                 started, or the migration ended before the first write)"
            } else {
                "options.backup was false, so no restore point was taken"
            };
            return Err(JobError::Busy(format!(
                "cannot roll back migration {id}: {why}; nothing is flushed without a restore point"
            )));
        };
        let path = backups
            .begin_restore(backup_id, &target, OnConflict::Replace, actor)
            .await?;
        let started = EventKind::RestoreStarted {
            backup_id,
            target: target.to_string(),
            on_conflict: OnConflict::Replace,
        };
        self.commit(&entry, vec![NewEvent::new(id, actor, started)])
            .await?;
        let outcome = match flush(&target).await {
            Err(e) => {
                let failed = EventKind::RestoreFailed {
                    backup_id,
                    code: e.code().into(),
                    message: format!("flushing the target failed: {e}"),
                };
                // Recorded under the backup too, so that its `last_restore` does not stay running.
                backups
                    .record_outcome(backup_id, actor, failed.clone())
                    .await?;
                failed
            }
            Ok(()) => {
                backups
                    .run_restore(backup_id, &path, &target, OnConflict::Replace, actor)
                    .await?
            }
        };
        self.commit(&entry, vec![NewEvent::new(id, actor, outcome)])
            .await?;
        Ok(entry.snapshot().view)
    }
}

/// Empties the target: every database, and the function libraries where the server has them.
async fn flush(target: &crate::redis_url::RedisUrl) -> Result<(), EngineError> {
    let mut conn = Conn::connect(target).await.map_err(EngineError::target)?;
    conn.call_ok(&["FLUSHALL", "SYNC"])
        .await
        .map_err(EngineError::target)?;
    // Redis < 7.0 has no functions: its error reply to FUNCTION means there is nothing to flush.
    conn.call(&["FUNCTION", "FLUSH", "SYNC"])
        .await
        .map_err(EngineError::target)?;
    Ok(())
}

/// Whether the target carries this migration's offset key (see `engine::resume`). Unknown counts as
/// not written: the restore point is then taken, which is the safe side for a fresh start.
async fn already_written(target: &crate::redis_url::RedisUrl, id: Uuid) -> bool {
    let probe = async {
        let mut conn = Conn::connect(target).await.ok()?;
        let key = crate::engine::resume::offset_key(id);
        match conn.call(&[&b"EXISTS"[..], &key[..]]).await.ok()? {
            crate::resp::Frame::Integer(n) => Some(n > 0),
            _ => None,
        }
    };
    tokio::time::timeout(PROBE_TIMEOUT, probe)
        .await
        .ok()
        .flatten()
        .unwrap_or(false)
}
