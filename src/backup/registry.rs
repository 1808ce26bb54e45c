//! Backups as resources: commands that record events, and views folded from them.
//!
//! The events sit in the migrations' log, under the backup's own id, so the audit trail is one
//! log and `GET /v1/events` shows both. The views live in memory and are rebuilt from the log at
//! start; a capture that was running when the process died is recorded as failed
//! (`interrupted`) then, and its `.partial` file swept away.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, RwLock};

use chrono::{DateTime, Utc};
use serde::Serialize;
use tokio::sync::mpsc;
use utoipa::ToSchema;
use uuid::Uuid;

use super::capture::{self, Captured};
use super::file::{self, FileFacts};
use super::BackupError;
use crate::engine::{self, Tuning};
use crate::redis_url::RedisUrl;
use crate::spec::OnConflict;
use crate::store::event::BackupDetails;
use crate::store::{Event, EventKind, NewEvent, Store, StoreError};

/// Size limits from the configuration.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BackupLimits {
    /// The largest backup Ferry stores (free disk space applies too).
    pub max_bytes: u64,
    /// The largest uploaded RDB accepted.
    pub upload_max_bytes: u64,
}

impl Default for BackupLimits {
    fn default() -> Self {
        BackupLimits {
            max_bytes: u64::MAX,
            upload_max_bytes: 1 << 30,
        }
    }
}

/// Where a backup is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum BackupStatus {
    Running,
    Completed,
    Failed,
    Deleted,
}

/// How the last restore of a backup went.
#[derive(Debug, Clone, PartialEq, Serialize, ToSchema)]
pub struct RestoreView {
    /// `running`, `completed` or `failed`.
    pub status: String,
    /// The server restored into, password redacted.
    pub target: String,
    pub keys_written: Option<u64>,
    pub error: Option<String>,
    #[schema(value_type = String, format = DateTime)]
    pub started_at: DateTime<Utc>,
}

/// A backup, as `GET /v1/backups/{id}` shows it.
#[derive(Debug, Clone, PartialEq, Serialize, ToSchema)]
pub struct BackupView {
    pub id: Uuid,
    pub label: Option<String>,
    /// The server backed up (password redacted), or `upload`.
    pub server: String,
    /// The migration this is the restore point of.
    pub for_migration: Option<Uuid>,
    pub status: BackupStatus,
    /// Bytes stored (so far, while running).
    pub bytes: u64,
    /// Version, RDB version, checksums and keys per database, once completed.
    pub details: Option<BackupDetails>,
    pub error: Option<String>,
    pub last_restore: Option<RestoreView>,
    #[schema(value_type = String, format = DateTime)]
    pub created_at: DateTime<Utc>,
    #[schema(value_type = Option<String>, format = DateTime)]
    pub completed_at: Option<DateTime<Utc>>,
}

/// The backups, their commands and views. Cheap to clone.
#[derive(Clone)]
pub struct Backups {
    inner: Arc<Inner>,
}

struct Inner {
    store: Store,
    dir: PathBuf,
    limits: RwLock<BackupLimits>,
    views: RwLock<BTreeMap<Uuid, BackupView>>,
}

impl Backups {
    /// Folds the backup events of `store`; files live in `data_dir/backups`.
    pub fn open(store: Store, data_dir: &Path) -> Result<Backups, StoreError> {
        let mut views = BTreeMap::new();
        store.for_each_event(|event| fold(&mut views, &event))?;
        Ok(Backups {
            inner: Arc::new(Inner {
                store,
                dir: data_dir.join("backups"),
                limits: RwLock::new(BackupLimits::default()),
                views: RwLock::new(views),
            }),
        })
    }

    /// Records captures and restores that a crash interrupted as failed, and removes the partial
    /// files.
    pub async fn recover(&self) -> Result<(), BackupError> {
        let swept = file::sweep_partials(&self.inner.dir);
        if swept > 0 {
            tracing::warn!(
                files = swept,
                "removed partial backup files left by a crash"
            );
        }
        let running: Vec<Uuid> = self
            .read()
            .values()
            .filter(|v| v.status == BackupStatus::Running)
            .map(|v| v.id)
            .collect();
        let restoring: Vec<Uuid> = self
            .read()
            .values()
            .filter(|v| {
                v.last_restore
                    .as_ref()
                    .is_some_and(|r| r.status == "running")
            })
            .map(|v| v.id)
            .collect();
        for id in restoring {
            self.record(
                id,
                "ferry",
                EventKind::RestoreFailed {
                    backup_id: id,
                    code: "interrupted".into(),
                    message: "Ferry stopped while the backup was being restored; the target may \
                              hold part of it: restore again (on_conflict replace)"
                        .into(),
                },
            )
            .await?;
        }
        for id in running {
            self.record(
                id,
                "ferry",
                EventKind::BackupFailed {
                    backup_id: id,
                    code: "interrupted".into(),
                    message: "Ferry stopped while the backup was being taken; take a new one"
                        .into(),
                },
            )
            .await?;
        }
        Ok(())
    }

    pub fn set_limits(&self, limits: BackupLimits) {
        *self.inner.limits.write().unwrap_or_else(|p| p.into_inner()) = limits;
    }

    pub fn limits(&self) -> BackupLimits {
        *self.inner.limits.read().unwrap_or_else(|p| p.into_inner())
    }

    /// The directory holding the files.
    pub fn dir(&self) -> &Path {
        &self.inner.dir
    }

    fn read(&self) -> std::sync::RwLockReadGuard<'_, BTreeMap<Uuid, BackupView>> {
        self.inner.views.read().unwrap_or_else(|p| p.into_inner())
    }

    fn write(&self) -> std::sync::RwLockWriteGuard<'_, BTreeMap<Uuid, BackupView>> {
        self.inner.views.write().unwrap_or_else(|p| p.into_inner())
    }

    pub fn list(&self) -> Vec<BackupView> {
        self.read().values().cloned().collect()
    }

    pub fn get(&self, id: Uuid) -> Result<BackupView, BackupError> {
        self.read()
            .get(&id)
            .cloned()
            .ok_or(BackupError::NotFound(id))
    }

    /// The file of a completed backup.
    pub fn file(&self, id: Uuid) -> Result<PathBuf, BackupError> {
        let view = self.get(id)?;
        if view.status != BackupStatus::Completed {
            return Err(BackupError::Conflict(format!(
                "backup {id} is {:?}, not completed: it has no file",
                view.status
            )));
        }
        Ok(file::final_path(&self.inner.dir, id))
    }

    async fn record(&self, id: Uuid, actor: &str, kind: EventKind) -> Result<(), BackupError> {
        let event = self
            .inner
            .store
            .append_one(NewEvent::new(id, actor, kind))
            .await?;
        fold(&mut self.write(), &event);
        Ok(())
    }

    /// Checks the server and the space, records `BackupStarted`, and takes the backup in the
    /// background. Refusals (unreachable server, no space) come back before anything is recorded.
    pub async fn start(
        &self,
        url: RedisUrl,
        label: Option<String>,
        actor: &str,
    ) -> Result<BackupView, BackupError> {
        let facts = capture::server_facts(&url).await?;
        capture::check_space(self.dir(), self.limits().max_bytes, facts.estimate)?;
        let id = self.begin(&url, label, None, actor).await?;
        let this = self.clone();
        let actor = actor.to_string();
        tokio::spawn(async move {
            // The outcome is recorded as an event; nothing else waits for it.
            let _ = this.run_capture(id, &url, &actor).await;
        });
        self.get(id)
    }

    /// Takes a backup and waits for it (a migration's restore point).
    pub async fn take(
        &self,
        url: &RedisUrl,
        for_migration: Option<Uuid>,
        actor: &str,
    ) -> Result<(Uuid, FileFacts), BackupError> {
        let label = for_migration.map(|m| format!("restore point of migration {m}"));
        let id = self.begin(url, label, for_migration, actor).await?;
        let captured = self.run_capture(id, url, actor).await?;
        Ok((id, captured.facts))
    }

    async fn begin(
        &self,
        url: &RedisUrl,
        label: Option<String>,
        for_migration: Option<Uuid>,
        actor: &str,
    ) -> Result<Uuid, BackupError> {
        let id = Uuid::now_v7();
        self.record(
            id,
            actor,
            EventKind::BackupStarted {
                backup_id: id,
                server: url.to_string(),
                label,
                for_migration,
            },
        )
        .await?;
        Ok(id)
    }

    async fn run_capture(
        &self,
        id: Uuid,
        url: &RedisUrl,
        actor: &str,
    ) -> Result<Captured, BackupError> {
        let progress = |bytes: u64| {
            if let Some(v) = self.write().get_mut(&id) {
                v.bytes = bytes;
            }
        };
        let max = self.limits().max_bytes;
        match capture::capture(url, self.dir(), id, max, progress).await {
            Ok(captured) => {
                let details = details(&captured.facts, &captured.server_version);
                self.record(
                    id,
                    actor,
                    EventKind::BackupCompleted {
                        backup_id: id,
                        bytes: captured.facts.bytes,
                        details: Some(details),
                    },
                )
                .await?;
                tracing::info!(backup = %id, bytes = captured.facts.bytes, "backup completed");
                Ok(captured)
            }
            Err(e) => {
                tracing::warn!(backup = %id, error = %e, "backup failed");
                self.record(
                    id,
                    actor,
                    EventKind::BackupFailed {
                        backup_id: id,
                        code: e.code().into(),
                        message: e.to_string(),
                    },
                )
                .await?;
                Err(e)
            }
        }
    }

    /// Records an uploaded file that [`file::RdbFileWriter`] has stored and checked.
    pub async fn record_upload(
        &self,
        id: Uuid,
        label: Option<String>,
        facts: &FileFacts,
        actor: &str,
    ) -> Result<BackupView, BackupError> {
        self.record(
            id,
            actor,
            EventKind::BackupStarted {
                backup_id: id,
                server: "upload".into(),
                label,
                for_migration: None,
            },
        )
        .await?;
        self.record(
            id,
            actor,
            EventKind::BackupCompleted {
                backup_id: id,
                bytes: facts.bytes,
                details: Some(details(facts, "")),
            },
        )
        .await?;
        self.get(id)
    }

    /// Checks that `id` can be restored and records `RestoreStarted`.
    pub async fn begin_restore(
        &self,
        id: Uuid,
        target: &RedisUrl,
        on_conflict: OnConflict,
        actor: &str,
    ) -> Result<PathBuf, BackupError> {
        let path = self.file(id)?;
        if self
            .get(id)?
            .last_restore
            .is_some_and(|r| r.status == "running")
        {
            return Err(BackupError::Conflict(format!(
                "backup {id} is being restored already; wait for that restore to end"
            )));
        }
        self.record(
            id,
            actor,
            EventKind::RestoreStarted {
                backup_id: id,
                target: target.to_string(),
                on_conflict,
            },
        )
        .await?;
        Ok(path)
    }

    /// Loads backup `id` into `target` (after [`Backups::begin_restore`]) and records the outcome.
    /// Returns the `RestoreCompleted`/`RestoreFailed` event it recorded.
    pub async fn run_restore(
        &self,
        id: Uuid,
        path: &Path,
        target: &RedisUrl,
        on_conflict: OnConflict,
        actor: &str,
    ) -> Result<EventKind, BackupError> {
        let (tx, mut rx) = mpsc::channel(16);
        // Progress events of the load are not recorded: a restore reports its outcome only.
        let drain = tokio::spawn(async move { while rx.recv().await.is_some() {} });
        let loaded = engine::load_rdb_file(path, target, on_conflict, tx, Tuning::default()).await;
        let _ = drain.await;
        let outcome = match loaded {
            Ok(s) => EventKind::RestoreCompleted {
                backup_id: id,
                keys_written: s.keys_written,
                keys_skipped: s.keys_skipped,
                keys_expired: s.keys_expired,
                duration_ms: s.duration_ms,
            },
            Err(e) => EventKind::RestoreFailed {
                backup_id: id,
                code: e.code().into(),
                message: e.to_string(),
            },
        };
        self.record(id, actor, outcome.clone()).await?;
        Ok(outcome)
    }

    /// Records the outcome of a restore that ended before [`Backups::run_restore`] could run.
    pub async fn record_outcome(
        &self,
        id: Uuid,
        actor: &str,
        outcome: EventKind,
    ) -> Result<(), BackupError> {
        self.record(id, actor, outcome).await
    }

    /// Deletes the file of a backup that is not running; the history stays.
    pub async fn delete(&self, id: Uuid, actor: &str) -> Result<BackupView, BackupError> {
        let view = self.get(id)?;
        match view.status {
            BackupStatus::Running => {
                return Err(BackupError::Conflict(format!(
                    "backup {id} is still running; delete it when it has ended"
                )))
            }
            BackupStatus::Deleted => return Ok(view),
            BackupStatus::Completed | BackupStatus::Failed => {}
        }
        let path = file::final_path(self.dir(), id);
        match tokio::fs::remove_file(&path).await {
            Ok(()) => {}
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => return Err(BackupError::io(format!("remove {}", path.display()), e)),
        }
        self.record(id, actor, EventKind::BackupDeleted { backup_id: id })
            .await?;
        self.get(id)
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

/// Folds one event into the views. Only events under the backup's own id count: a migration's
/// copy of `BackupCompleted` is its own history.
fn fold(views: &mut BTreeMap<Uuid, BackupView>, event: &Event) {
    let Some(id) = event.kind.backup_id() else {
        return;
    };
    if event.migration_id != id {
        return;
    }
    if let EventKind::BackupStarted {
        server,
        label,
        for_migration,
        ..
    } = &event.kind
    {
        views.insert(
            id,
            BackupView {
                id,
                label: label.clone(),
                server: server.clone(),
                for_migration: *for_migration,
                status: BackupStatus::Running,
                bytes: 0,
                details: None,
                error: None,
                last_restore: None,
                created_at: event.at,
                completed_at: None,
            },
        );
        return;
    }
    let Some(v) = views.get_mut(&id) else {
        return;
    };
    match &event.kind {
        EventKind::BackupCompleted { bytes, details, .. } => {
            v.status = BackupStatus::Completed;
            v.bytes = *bytes;
            v.details = details.clone();
            v.completed_at = Some(event.at);
        }
        EventKind::BackupFailed { message, .. } => {
            v.status = BackupStatus::Failed;
            v.error = Some(message.clone());
            v.completed_at = Some(event.at);
        }
        EventKind::BackupDeleted { .. } => v.status = BackupStatus::Deleted,
        EventKind::RestoreStarted { target, .. } => {
            v.last_restore = Some(RestoreView {
                status: "running".into(),
                target: target.clone(),
                keys_written: None,
                error: None,
                started_at: event.at,
            })
        }
        EventKind::RestoreCompleted { keys_written, .. } => {
            if let Some(r) = v.last_restore.as_mut() {
                r.status = "completed".into();
                r.keys_written = Some(*keys_written);
            }
        }
        EventKind::RestoreFailed { message, .. } => {
            if let Some(r) = v.last_restore.as_mut() {
                r.status = "failed".into();
                r.error = Some(message.clone());
            }
        }
        _ => {}
    }
}
