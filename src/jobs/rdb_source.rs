//! Migrations whose source is a stored backup (`source: {rdb: {backup_id}}`).
//!
//! The file replaces the source server everywhere a server source needs one: creating checks
//! that the backup exists and is complete and that the mode is `snapshot` (a file has no stream
//! to follow); validation runs [`crate::validate::from_file`] with the backup's record; starting
//! hands the engine the backup's path ([`crate::engine::run_from_file`]). The restore point of
//! the target is taken before, by the supervisor, exactly as for a server source.

use std::future::Future;
use std::pin::Pin;

use uuid::Uuid;

use super::{JobError, Jobs};
use crate::backup::{BackupError, BackupStatus};
use crate::engine::{self, Controls, EngineError, EngineJob, EventSender};
use crate::spec::{MigrationSpec, Mode};
use crate::store::event::ValidationReport;
use crate::validate::{from_file, ValidateContext};

/// A running engine, as the supervisor awaits it.
pub(super) type EngineFuture = Pin<Box<dyn Future<Output = Result<(), EngineError>> + Send>>;

impl Jobs {
    /// Refuses a file source that cannot run: a backup that does not exist (404), one that is not
    /// complete, or `live` mode (400, naming the field). A server source passes unchanged.
    pub(super) fn check_source(&self, spec: &MigrationSpec) -> Result<(), JobError> {
        let Some(backup_id) = spec.source.backup_id() else {
            return Ok(());
        };
        if spec.mode != Mode::Snapshot {
            return Err(JobError::Invalid {
                field: "mode",
                detail: "a migration from an RDB file can only run in `snapshot` mode: a file has \
                         no stream of writes to follow; omit `mode` or set it to `snapshot`"
                    .into(),
            });
        }
        let view = self.backups().get(backup_id)?;
        if view.status != BackupStatus::Completed {
            return Err(JobError::Invalid {
                field: "source.rdb.backup_id",
                detail: format!(
                    "backup {backup_id} is {}, not completed: choose a completed backup \
                     (GET /v1/backups)",
                    serde_json::to_value(view.status)
                        .ok()
                        .and_then(|v| v.as_str().map(str::to_string))
                        .unwrap_or_default()
                ),
            });
        }
        Ok(())
    }

    /// The pre-flight checks of a file source.
    pub(super) async fn validate_file_source(
        &self,
        spec: &MigrationSpec,
        backup_id: Uuid,
        ctx: &ValidateContext,
    ) -> ValidationReport {
        let backup = self.backups().get(backup_id).map_err(|e| e.to_string());
        from_file::run(spec, backup, ctx).await
    }

    /// The engine for `job`: the file loader for a file source, the configured engine otherwise.
    pub(super) fn engine_for(
        &self,
        job: EngineJob,
        events: EventSender,
        controls: Controls,
    ) -> EngineFuture {
        let Some(backup_id) = job.spec.source.backup_id() else {
            return (self.inner.supervisor.engine)(job, events, controls);
        };
        match self.backups().file(backup_id) {
            Ok(path) => Box::pin(engine::run_from_file(job, path, events, controls)),
            Err(e) => {
                let message = match e {
                    BackupError::NotFound(_) => format!(
                        "the source backup {backup_id} no longer exists (it was deleted after the \
                         migration was created)"
                    ),
                    other => other.to_string(),
                };
                Box::pin(async move { Err(EngineError::Rdb(message)) })
            }
        }
    }
}
