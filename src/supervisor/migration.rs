//! Running the engine of a migration: one task per running migration.
//!
//! The engine reports facts on a channel; the task records them through the service in order (as
//! actor `engine`, batching whatever has queued up into one durable append) and, when the engine
//! returns, records how the run ended: `MigrationCompleted`, `MigrationCancelled` (by whoever
//! asked) or `MigrationFailed` with the error's stable code.
//!
//! Before the engine's first write (phase `backup`) the task takes the restore point of the target
//! when `options.backup` is set and the target holds data: a backup like any other (its own
//! aggregate and events), recorded in the migration's history as `BackupCompleted`. An empty target
//! needs none: rolling back to empty is a flush, which the rollback does anyway.

use std::future::Future;
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::sync::mpsc;
use uuid::Uuid;

use super::{Running, Supervisor};
use crate::aggregate::migration::Phase;
use crate::engine::{self, Controls, EngineError, EngineJob, EventSender};
use crate::jobs::{JobError, Jobs, ENGINE_ACTOR};
use crate::model::{EventKind, ResumePoint};
use crate::spec::MigrationSpec;
use crate::transport::Peer;

/// Capacity of the engine's event channel; a full channel slows the engine down rather than
/// letting reports pile up in memory.
const EVENT_CHANNEL: usize = 1024;

/// How long an engine may take to honour a cancel before its task is dropped.
const CANCEL_GRACE: Duration = Duration::from_secs(30);

/// How long the task waits to learn whether the target holds data; if it cannot tell, the
/// engine's own connection reports the problem.
const PROBE_TIMEOUT: Duration = Duration::from_secs(10);

/// A running engine, as the task awaits it.
type EngineFuture = Pin<Box<dyn Future<Output = Result<(), EngineError>> + Send>>;

/// What the supervisor runs for a job: [`engine::run`] in production. The store-side unit tests
/// pass an idle engine through [`super::SupervisorConfig`] (they run without servers);
/// everything else runs the real one.
pub type EngineFn = Arc<
    dyn Fn(
            EngineJob,
            EventSender,
            Controls,
        ) -> Pin<Box<dyn Future<Output = Result<(), EngineError>> + Send>>
        + Send
        + Sync,
>;

/// The real transfer engine.
pub fn real_engine() -> EngineFn {
    Arc::new(|job, events, controls| Box::pin(engine::run(job, events, controls)))
}

impl Supervisor {
    /// Starts the engine for `id` in a task of its own.
    pub(super) fn launch(
        &self,
        jobs: Jobs,
        id: Uuid,
        resume: Option<ResumePoint>,
        cutover_now: bool,
    ) {
        let supervisor = &self.inner;
        if supervisor.shutdown.is_cancelled() {
            return;
        }
        let running = Arc::new(Running {
            controls: Controls::default(),
            cancelled_by: Mutex::new(None),
        });
        if cutover_now {
            // Resuming a job that was cutting over: it carries on with the cutover.
            running.controls.cutover.cancel();
        }
        supervisor
            .running
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .insert(id, running.clone());
        let this = self.clone();
        let shutdown = supervisor.shutdown.clone();
        supervisor.tasks.spawn(async move {
            tokio::select! {
                outcome = this.supervise(&jobs, id, resume, running.clone()) => {
                    if let Err(e) = outcome {
                        tracing::error!(migration = %id, error = %e, "supervising the engine failed");
                    }
                }
                _ = shutdown.cancelled() => {
                    tracing::info!(migration = %id, "engine stopped for shutdown; it resumes on the next start");
                }
            }
            this.inner
                .running
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .remove(&id);
        });
    }

    async fn supervise(
        &self,
        jobs: &Jobs,
        id: Uuid,
        resume: Option<ResumePoint>,
        running: Arc<Running>,
    ) -> Result<(), JobError> {
        let spec = match jobs.real_spec(id).await {
            Ok(spec) => spec,
            Err(e) => {
                let failed = EventKind::MigrationFailed {
                    code: "credentials_unavailable".into(),
                    message: e.to_string(),
                };
                return jobs.end_migration(id, ENGINE_ACTOR, failed).await;
            }
        };
        // The restore point comes before the engine's first write (phase `backup`), once: a job
        // restarted after it began writing must not take a "restore point" of a half-written target.
        let before_first_write = jobs
            .get(id)
            .map(|v| v.phase == Some(Phase::Backup) && v.backup_id.is_none())
            .unwrap_or(false);
        if resume.is_none() && before_first_write {
            let taken = tokio::select! {
                taken = self.take_restore_point(jobs, id, &spec) => taken,
                _ = running.controls.cancel.cancelled() => {
                    let actor = running
                        .cancelled_by
                        .lock()
                        .unwrap_or_else(|p| p.into_inner())
                        .clone()
                        .unwrap_or_else(|| ENGINE_ACTOR.to_string());
                    let reason = Some(format!("cancelled by {actor} before the first write"));
                    return jobs.end_migration(id, &actor, EventKind::MigrationCancelled { reason }).await;
                }
            };
            match taken {
                Ok(Some(backup_id)) => jobs.record_restore_point(id, backup_id).await?,
                Ok(None) => {}
                Err(e) => {
                    let failed = EventKind::MigrationFailed {
                        code: "backup_failed".into(),
                        message: format!("the restore point of the target could not be taken, so nothing was written: {e}"),
                    };
                    return jobs.end_migration(id, ENGINE_ACTOR, failed).await;
                }
            }
        }
        let job = EngineJob {
            migration_id: id,
            spec,
            resume,
        };
        let (tx, mut rx) = mpsc::channel(EVENT_CHANNEL);
        let cancel = running.controls.cancel.clone();
        let engine = self.engine_for(jobs, job, tx, running.controls.clone());
        tokio::pin!(engine);
        // An engine that ignores a cancel for too long is dropped, and the job cancelled anyway.
        let overdue = async {
            cancel.cancelled().await;
            tokio::time::sleep(CANCEL_GRACE).await;
        };
        tokio::pin!(overdue);
        let outcome = loop {
            tokio::select! {
                biased;
                Some(first) = rx.recv() => {
                    let mut batch = vec![first];
                    while let Ok(next) = rx.try_recv() {
                        batch.push(next);
                    }
                    jobs.report_migration(id, batch).await?;
                }
                outcome = &mut engine => break outcome,
                _ = &mut overdue => {
                    tracing::warn!(migration = %id, "engine ignored the cancel; dropping it");
                    break Err(EngineError::Cancelled);
                }
            }
        };
        // Whatever the engine said before it returned comes before the final event.
        let mut rest = Vec::new();
        while let Ok(next) = rx.try_recv() {
            rest.push(next);
        }
        if !rest.is_empty() {
            jobs.report_migration(id, rest).await?;
        }
        let cancelled_by = running
            .cancelled_by
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone();
        let (actor, end) = match outcome {
            Ok(()) => (ENGINE_ACTOR.to_string(), EventKind::MigrationCompleted {}),
            Err(EngineError::Cancelled) => {
                let actor = cancelled_by.unwrap_or_else(|| ENGINE_ACTOR.to_string());
                let reason = Some(format!("cancelled by {actor}"));
                (actor, EventKind::MigrationCancelled { reason })
            }
            Err(e) => {
                tracing::warn!(migration = %id, code = e.code(), error = %e, "migration failed");
                (
                    ENGINE_ACTOR.to_string(),
                    EventKind::MigrationFailed {
                        code: e.code().to_string(),
                        message: e.to_string(),
                    },
                )
            }
        };
        jobs.end_migration(id, &actor, end).await
    }

    /// Takes the restore point, if one is needed. `Ok(None)`: none was needed (or the target
    /// could not be asked, which the engine will report). `Err`: the migration must not write.
    async fn take_restore_point(
        &self,
        jobs: &Jobs,
        id: Uuid,
        spec: &MigrationSpec,
    ) -> Result<Option<Uuid>, String> {
        if !spec.options.backup {
            return Ok(None);
        }
        let Ok(target) = Peer::new(&spec.target) else {
            // Unusable TLS files: the engine fails on them in plain words.
            return Ok(None);
        };
        let summary = match tokio::time::timeout(
            PROBE_TIMEOUT,
            crate::backup::capture::server_summary(&target),
        )
        .await
        {
            Ok(Ok(summary)) => summary,
            _ => return Ok(None),
        };
        if summary.total_keys() == 0 {
            return Ok(None);
        }
        // The engine marks the target (its offset key) before the first key lands. If the mark is
        // there, this job wrote before a crash that came ahead of its `SnapshotStarted` event: the
        // target's earlier state is gone, and a backup now would capture a half-written target.
        // Unknown counts as not written: the restore point is then taken, the safe side.
        if engine::resume::target_marked(&target, id, PROBE_TIMEOUT).await == Some(true) {
            return Ok(None);
        }
        let label = Some(format!("restore point of migration {id}"));
        let backup_id = jobs
            .begin_backup(&spec.target.url, label, Some(id), ENGINE_ACTOR)
            .await
            .map_err(|e| e.to_string())?;
        use crate::jobs::Worker;
        self.capture(jobs.clone(), backup_id, spec.target.clone(), true)
            .await;
        match jobs.backup(backup_id) {
            Ok(b) if b.status == crate::aggregate::backup::BackupStatus::Completed => {
                Ok(Some(backup_id))
            }
            Ok(b) => Err(b
                .error
                .unwrap_or_else(|| "the capture did not complete".into())),
            Err(e) => Err(e.to_string()),
        }
    }

    /// The engine for `job`: the file loader for a file source, the configured engine otherwise.
    fn engine_for(
        &self,
        jobs: &Jobs,
        job: EngineJob,
        events: EventSender,
        controls: Controls,
    ) -> EngineFuture {
        let Some(backup_id) = job.spec.source.backup_id() else {
            return (self.inner.config.engine)(job, events, controls);
        };
        match jobs.stored_backup(backup_id) {
            Ok(_) => {
                use crate::jobs::Worker;
                let path = self.backup_path(backup_id);
                Box::pin(engine::run_from_file(job, path, events, controls))
            }
            Err(e) => {
                let message = match e {
                    JobError::NotFound { .. } => format!(
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
