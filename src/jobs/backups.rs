//! Backup commands and queries (see [`crate::aggregate::backup`] for the rules).
//!
//! The events sit in the one log, under the backup's own id, so the audit trail is one log and
//! `GET /v1/events` shows both. A capture reports through [`Jobs::report_backup`]: checkpoints of
//! its bytes, then its end.

use std::path::PathBuf;
use std::sync::Arc;

use uuid::Uuid;

use super::table::Slot;
use super::worker::{UploadError, UploadSink};
use super::{JobError, Jobs};
use crate::aggregate::backup::{self, Backup, Command};
use crate::model::{AggregateType, BackupDetails, EventKind};
use crate::redis_url::RedisUrl;
use crate::spec::Endpoint;
use crate::store::NewEvent;

/// An upload being received: write its chunks, then [`Upload::finish`]. Dropping it before
/// `finish` discards what was written.
pub struct Upload {
    jobs: Jobs,
    id: Uuid,
    label: Option<String>,
    actor: String,
    sink: Box<dyn UploadSink>,
}

impl Upload {
    pub async fn write(&mut self, chunk: &[u8]) -> Result<(), UploadError> {
        self.sink.write(chunk).await
    }

    /// Checks the whole file, makes it durable and records the backup.
    pub async fn finish(self) -> Result<Backup, JobError> {
        let file = self.sink.finish().await?;
        let events = backup::uploaded(self.id, self.label, file.bytes, file.details)
            .into_iter()
            .map(|kind| NewEvent::new(AggregateType::Backup, self.id, &self.actor, kind))
            .collect();
        self.jobs.commit(events).await?;
        self.jobs.backup(self.id)
    }
}

impl Jobs {
    fn backup_slot(&self, id: Uuid) -> Result<Arc<Slot<Backup>>, JobError> {
        self.inner.backups.get(id).ok_or(JobError::NotFound {
            aggregate: AggregateType::Backup,
            id,
        })
    }

    pub(super) fn backup_state(&self, id: Uuid) -> Result<Backup, JobError> {
        Ok(self.backup_slot(id)?.snapshot())
    }

    pub fn backup(&self, id: Uuid) -> Result<Backup, JobError> {
        self.backup_state(id)
    }

    /// Up to `limit` backups after `after` (an id), oldest first.
    pub fn backups(&self, after: Option<Uuid>, limit: usize) -> Vec<Backup> {
        self.inner.backups.page(after, limit, |_| true)
    }

    /// Starts a backup of `server`: checks that the server answers and that the file would fit, then
    /// records `BackupStarted` and hands the capture to the worker. Refusals come back before
    /// anything is recorded.
    pub async fn start_backup(
        &self,
        server: Endpoint,
        label: Option<String>,
        actor: &str,
    ) -> Result<Backup, JobError> {
        crate::spec::check_no_db(&server.url, "server.url").map_err(|e| JobError::Invalid {
            field: e.field.into(),
            detail: e.detail,
        })?;
        self.inner.worker.disk_ready().map_err(JobError::NoSpace)?;
        let summary = self
            .inner
            .worker
            .inspect(server.clone())
            .await
            .map_err(|detail| JobError::Unusable {
                field: "server.url",
                detail,
            })?;
        self.inner
            .worker
            .check_space(summary.dataset_bytes)
            .map_err(JobError::NoSpace)?;
        let id = self.begin_backup(&server.url, label, None, actor).await?;
        self.inner
            .worker
            .capture(self.clone(), id, server, false)
            .await;
        self.backup(id)
    }

    /// Records `BackupStarted` for a new backup of `url` and returns its id (the capture is the
    /// caller's to start).
    pub async fn begin_backup(
        &self,
        url: &RedisUrl,
        label: Option<String>,
        for_migration: Option<Uuid>,
        actor: &str,
    ) -> Result<Uuid, JobError> {
        let id = Uuid::now_v7();
        let events = backup::begin(id, url.to_string(), label, for_migration)
            .into_iter()
            .map(|kind| NewEvent::new(AggregateType::Backup, id, actor, kind))
            .collect();
        self.commit(events).await?;
        Ok(id)
    }

    /// Records what a capture reported: a checkpoint or its end (dropped once it has ended).
    pub async fn report_backup(
        &self,
        id: Uuid,
        actor: &str,
        command: Command,
    ) -> Result<(), JobError> {
        let slot = self.backup_slot(id)?;
        let _guard = slot.commands.lock().await;
        self.backup_commit(&slot, id, actor, command).await
    }

    pub(super) async fn fail_backup(
        &self,
        id: Uuid,
        actor: &str,
        code: &str,
        message: &str,
    ) -> Result<(), JobError> {
        let fail = Command::Fail {
            code: code.into(),
            message: message.into(),
        };
        self.report_backup(id, actor, fail).await
    }

    async fn backup_commit(
        &self,
        slot: &Slot<Backup>,
        id: Uuid,
        actor: &str,
        command: Command,
    ) -> Result<(), JobError> {
        let events: Vec<NewEvent> = backup::decide(&slot.snapshot(), command)?
            .into_iter()
            .map(|kind| NewEvent::new(AggregateType::Backup, id, actor, kind))
            .collect();
        self.commit(events).await?;
        Ok(())
    }

    /// Records a completed capture.
    pub async fn complete_backup(
        &self,
        id: Uuid,
        actor: &str,
        bytes: u64,
        details: BackupDetails,
    ) -> Result<(), JobError> {
        self.report_backup(id, actor, Command::Complete { bytes, details })
            .await
    }

    /// Opens an upload that becomes a new backup when finished; `declared` is the size the client
    /// announced, refused at once when it is over the limit.
    pub async fn upload(
        &self,
        label: Option<String>,
        declared: Option<u64>,
        actor: &str,
    ) -> Result<Upload, JobError> {
        let id = Uuid::now_v7();
        let sink = self.inner.worker.upload(id, declared).await?;
        Ok(Upload {
            jobs: self.clone(),
            id,
            label,
            actor: actor.to_string(),
            sink,
        })
    }

    /// The file of a completed backup, for a download.
    pub fn backup_file(&self, id: Uuid) -> Result<PathBuf, JobError> {
        backup::decide(&self.backup_state(id)?, Command::Download)?;
        Ok(self.inner.worker.backup_path(id))
    }

    /// Deletes the file of a backup that is not running; the history stays.
    pub async fn delete_backup(&self, id: Uuid, actor: &str) -> Result<Backup, JobError> {
        let slot = self.backup_slot(id)?;
        let _guard = slot.commands.lock().await;
        let events = backup::decide(&slot.snapshot(), Command::Delete)?;
        if events.is_empty() {
            return Ok(slot.snapshot());
        }
        self.inner
            .worker
            .remove_file(id)
            .await
            .map_err(JobError::Io)?;
        let events = events
            .into_iter()
            .map(|kind| NewEvent::new(AggregateType::Backup, id, actor, kind))
            .collect();
        self.commit(events).await?;
        Ok(slot.snapshot())
    }

    /// Records the restore point of migration `migration_id` in its history.
    pub async fn record_restore_point(
        &self,
        migration_id: Uuid,
        backup_id: Uuid,
    ) -> Result<(), JobError> {
        let b = self.backup_state(backup_id)?;
        let fact = EventKind::BackupCompleted {
            backup_id,
            bytes: b.bytes,
            details: None,
        };
        self.report_migration(migration_id, vec![fact]).await
    }
}
