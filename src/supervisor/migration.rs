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
use crate::client::lease::{LeaseKeeper, LeaseToken, LEASE_TTL};
use crate::engine::{self, Controls, EngineError, EngineJob, EventSender, TargetBefore, Tuning};
use crate::jobs::{JobError, Jobs, ENGINE_ACTOR, RECOVERY_ACTOR};
use crate::model::{AggregateType, EventKind, ResumePoint};
use crate::spec::MigrationSpec;
use crate::transport::Peer;

/// Capacity of the engine's event channel; a full channel slows the engine down rather than
/// letting reports pile up in memory.
pub(super) const EVENT_CHANNEL: usize = 1024;

/// How long an engine may take to honour a cancel before its task is dropped.
const CANCEL_GRACE: Duration = Duration::from_secs(30);

/// How long the task waits to learn whether the target holds data; if it cannot tell, nothing
/// is written (fail closed).
const PROBE_TIMEOUT: Duration = Duration::from_secs(10);

/// Who cancelled a run (the actor of `MigrationCancelled`).
pub(super) fn cancelled_actor(running: &Running) -> String {
    running
        .cancelled_by
        .lock()
        .unwrap_or_else(|p| p.into_inner())
        .clone()
        .unwrap_or_else(|| ENGINE_ACTOR.to_string())
}

/// The failure of a migration whose target could not be asked what it holds.
fn unreadable(why: &str) -> (&'static str, String) {
    (
        "target_unreadable",
        format!(
            "Ferry could not learn what the target holds ({why}), so nothing was written: \
             without that, neither a restore point nor the list of its keys can be taken, and a \
             write could destroy data no rollback brings back; check the target and start again"
        ),
    )
}

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

/// The real transfer engine with the operator's tuning (the relay listener above all: one
/// `Tuning`, so one listener, for every job of the process).
pub fn real_engine_with(tuning: Tuning) -> EngineFn {
    Arc::new(move |job, events, controls| {
        Box::pin(engine::run_with(job, events, controls, tuning.clone()))
    })
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
        if spec.mode == crate::spec::Mode::DryRun {
            return self.supervise_dry_run(jobs, id, spec, &running).await;
        }
        // The lease: taken by `start` and handed over here, or taken again by a restarted Ferry.
        // Another writer holding it means this migration does not resume: the lease decides.
        let keeper = match self.held_lease(id) {
            Some(keeper) => keeper,
            None => match self.retake_lease(jobs, id, &spec).await? {
                Some(keeper) => keeper,
                None => return Ok(()),
            },
        };
        let prepared = tokio::select! {
            prepared = self.prepare(jobs, id, &spec) => prepared,
            _ = running.controls.cancel.cancelled() => {
                keeper.release().await;
                let actor = cancelled_actor(&running);
                let reason = Some(format!("cancelled by {actor} before the first write"));
                return jobs.end_migration(id, &actor, EventKind::MigrationCancelled { reason }).await;
            }
        };
        if let Err((code, message)) = prepared {
            keeper.release().await;
            let failed = EventKind::MigrationFailed {
                code: code.into(),
                message,
            };
            return jobs.end_migration(id, ENGINE_ACTOR, failed).await;
        }
        let before = match jobs.migration(id)?.target_keys_before {
            Some(0) => TargetBefore::Empty,
            Some(_) => TargetBefore::Keys(engine::inventory::path(&self.inner.config.data_dir, id)),
            None => TargetBefore::Unknown,
        };
        // The link the engine uses: if its TLS files cannot be read, the engine fails on them
        // before writing anything, and there is no mark to clear.
        let target = Peer::new(&spec.target).ok();
        // A restarted job keeps the transfer its first run chose (a relay's target is a replica
        // of Ferry: it must be served again, or released).
        let (transfer, notifications_before, shard_resume) = match jobs.migration(id) {
            Ok(m) => (m.transfer, m.keyspace_notifications_before, m.shard_resume),
            Err(_) => (None, None, Default::default()),
        };
        let job = EngineJob {
            migration_id: id,
            spec,
            resume,
            transfer,
            before,
            lease: Some(keeper.token().clone()),
            filtered: jobs
                .migration(id)
                .ok()
                .and_then(|m| m.view.filtered)
                .map_or((0, 0), |f| (f.snapshot_keys, f.stream_commands)),
            notifications_before,
            shard_resume,
        };
        let outcome = self.run_engine(jobs, id, job, &running, &keeper).await?;
        let lease_lost = matches!(outcome, Err(EngineError::LeaseLost(_)));
        if outcome.is_err() && !lease_lost {
            // A failed or cancelled migration leaves nothing behind that nobody asked for: its
            // offset key goes (the data it wrote stays for the rollback to judge).
            if let Some(target) = &target {
                if engine::resume::clear_mark(target, id, PROBE_TIMEOUT)
                    .await
                    .is_none()
                {
                    tracing::warn!(migration = %id, "could not remove the offset key of the target");
                }
            }
        }
        if !lease_lost {
            keeper.release().await;
        }
        let (actor, end) = match outcome {
            Ok(()) => (ENGINE_ACTOR.to_string(), EventKind::MigrationCompleted {}),
            Err(EngineError::Cancelled) => {
                let actor = cancelled_actor(&running);
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

    /// A restarted Ferry takes its migration's lease again (keeping it when it is still its
    /// own). `None` when another writer holds it: the migration is failed, naming who, and not
    /// resumed.
    async fn retake_lease(
        &self,
        jobs: &Jobs,
        id: Uuid,
        spec: &MigrationSpec,
    ) -> Result<Option<LeaseKeeper>, JobError> {
        let target = &spec.target.url;
        let taken = |owner| async move {
            let peer = Peer::new(&spec.target).map_err(|e| e.to_string())?;
            self.take_lease(&peer, owner, false).await
        };
        let actor = jobs
            .get(id)
            .ok()
            .and_then(|v| v.lease.map(|l| l.owner.actor))
            .unwrap_or_else(|| RECOVERY_ACTOR.to_string());
        let owner = self.lease_owner(AggregateType::Migration, id, &actor);
        match taken(owner.clone()).await {
            Ok((keeper, granted)) => {
                let fact = crate::jobs::lease_event(target, super::lease::grant(&granted), true);
                jobs.report_migration(id, vec![fact]).await?;
                Ok(Some(keeper))
            }
            // A relay's target is Ferry's read-only replica until the job releases it: its sync
            // replaced the lease key and it refuses a new one, but it refuses every other writer
            // too. The job resumes (serving the target again, or releasing it) and keeps renewing
            // the lease, which is written back once the target is a standalone server again.
            Err(why) => {
                if let Some(peer) = still_relaying(jobs, id, spec).await {
                    tracing::info!(migration = %id, "the relay's target is still a replica; resuming it");
                    return Ok(Some(LeaseKeeper::spawn(
                        peer,
                        LeaseToken::new(owner, LEASE_TTL),
                    )));
                }
                let failed = EventKind::MigrationFailed {
                    code: "target_in_use".into(),
                    message: format!(
                        "Ferry instance {} restarted and would resume this migration, but {why}; \
                         it was not resumed and wrote nothing",
                        self.inner.instance
                    ),
                };
                jobs.end_migration(id, ENGINE_ACTOR, failed).await?;
                Ok(None)
            }
        }
    }

    /// Before the first write, once: learn what the target holds (fail closed: a target that
    /// cannot be asked gets no write), take the restore point when asked and the target holds
    /// keys, and list those keys (the inventory a redone snapshot needs). Recorded as
    /// `BackupCompleted` and `TargetInventoried`. The error is the failure's code and message.
    async fn prepare(
        &self,
        jobs: &Jobs,
        id: Uuid,
        spec: &MigrationSpec,
    ) -> Result<(), (&'static str, String)> {
        let m = jobs
            .migration(id)
            .map_err(|e| ("internal", e.to_string()))?;
        if m.target_keys_before.is_some() || m.resume.is_some() {
            return Ok(());
        }
        // TLS files are read here, at the first look at the target: unusable ones fail the
        // start in plain words, before anything is written.
        let peer = Peer::new(&spec.target).map_err(|e| unreadable(&e.to_string()))?;
        let target = &peer;
        // Every master of a cluster target is counted: each holds only its slots' keys.
        let (keys, cluster) =
            match tokio::time::timeout(PROBE_TIMEOUT, engine::inventory::count(&spec.target)).await
            {
                Ok(Ok(counted)) => counted,
                Ok(Err(e)) => {
                    return Err(unreadable(&crate::client::scrub(
                        &e.to_string(),
                        target.url(),
                    )))
                }
                Err(_) => {
                    let why = format!("it did not answer within {}s", PROBE_TIMEOUT.as_secs());
                    return Err(unreadable(&why));
                }
            };
        // The engine marks the target (its offset key) before the first key lands. A mark with
        // no inventory recorded is a migration that began writing before inventories existed:
        // the target's earlier state is gone, and neither a restore point nor an inventory
        // taken now would describe it.
        if engine::resume::target_marked(target, id, PROBE_TIMEOUT).await == Some(true) {
            return Ok(());
        }
        if keys > 0 && spec.options.backup && cluster {
            // A restore point captures one server; a cluster's keys are spread over its masters.
            // Validation (cluster.mode) refuses this too: the target may have filled since.
            return Err((
                "backup_failed",
                format!(
                    "the target is a cluster that holds {keys} keys, and this build of Ferry \
                     takes no restore point of a cluster, so nothing was written: set \
                     options.backup false to write into it without one, or empty it first"
                ),
            ));
        }
        if keys > 0 && spec.options.backup && m.view.backup_id.is_none() {
            let backup_id = self
                .take_restore_point(jobs, id, &spec.target)
                .await
                .map_err(|e| {
                    (
                        "backup_failed",
                        format!(
                            "the restore point of the target could not be taken, so nothing was \
                         written: {e}"
                        ),
                    )
                })?;
            jobs.record_restore_point(id, backup_id)
                .await
                .map_err(|e| ("backup_failed", e.to_string()))?;
        }
        if keys > 0 {
            let path = engine::inventory::path(&self.inner.config.data_dir, id);
            engine::inventory::take(&spec.target, &path)
                .await
                .map_err(|e| {
                    (
                        "inventory_failed",
                        crate::client::scrub(
                            &format!(
                                "the keys the target holds could not be listed before the first \
                             write, so nothing was written: {e}"
                            ),
                            target.url(),
                        ),
                    )
                })?;
        }
        jobs.report_migration(id, vec![EventKind::TargetInventoried { keys }])
            .await
            .map_err(|e| ("internal", e.to_string()))
    }

    /// Runs the engine, recording what it reports, until it ends, is cancelled past its grace,
    /// or the lease is lost. Returns how the run ended.
    async fn run_engine(
        &self,
        jobs: &Jobs,
        id: Uuid,
        job: EngineJob,
        running: &Arc<Running>,
        keeper: &LeaseKeeper,
    ) -> Result<Result<(), EngineError>, JobError> {
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
        let lost = keeper.lost();
        tokio::pin!(lost);
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
                why = &mut lost => {
                    tracing::warn!(migration = %id, %why, "lost the target's lease; stopping the engine");
                    break Err(EngineError::LeaseLost(why));
                }
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
        Ok(outcome)
    }

    /// Takes the restore point of `target` (which holds keys) and waits for it.
    async fn take_restore_point(
        &self,
        jobs: &Jobs,
        id: Uuid,
        target: &crate::spec::Endpoint,
    ) -> Result<Uuid, String> {
        let label = Some(format!("restore point of migration {id}"));
        let backup_id = jobs
            .begin_backup(&target.url, label, Some(id), ENGINE_ACTOR)
            .await
            .map_err(|e| e.to_string())?;
        use crate::jobs::Worker;
        self.capture(jobs.clone(), backup_id, target.clone(), true)
            .await;
        match jobs.backup(backup_id) {
            Ok(b) if b.status == crate::aggregate::backup::BackupStatus::Completed => Ok(backup_id),
            Ok(b) => Err(b
                .error
                .unwrap_or_else(|| "the capture did not complete".into())),
            Err(e) => Err(e.to_string()),
        }
    }

    /// The engine for `job`: the file loader for a file source, the configured engine otherwise.
    pub(super) fn engine_for(
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
            Ok(stored) => {
                use crate::jobs::Worker;
                let path = self.backup_path(backup_id);
                let expected = crate::backup::file::Expected {
                    bytes: stored.bytes,
                    crc64: stored.details.crc64,
                    sha256: stored.details.sha256,
                };
                Box::pin(engine::run_from_file(job, path, expected, events, controls))
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

/// The target's link when the migration chose the relay and its target is still a replica (of
/// this job's relay: nothing else points a Ferry relay job's target elsewhere).
async fn still_relaying(jobs: &Jobs, id: Uuid, spec: &MigrationSpec) -> Option<Peer> {
    let relayed = jobs
        .migration(id)
        .ok()
        .and_then(|m| m.transfer)
        .is_some_and(|t| t.kind == crate::spec::TransferKind::Relay);
    if !relayed {
        return None;
    }
    let target = Peer::new(&spec.target).ok()?;
    let probe = async {
        let mut conn = crate::client::Conn::connect(&target).await.ok()?;
        let info = conn.info("replication").await.ok()?;
        Some(info.get("role") == Some("slave"))
    };
    let replica = tokio::time::timeout(PROBE_TIMEOUT, probe)
        .await
        .ok()
        .flatten()
        .unwrap_or(false);
    replica.then_some(target)
}
