//! The supervisor: one engine task per running migration.
//!
//! The engine reports facts on a channel; the supervisor appends them to the log in order (as
//! actor `engine`, batching whatever has queued up into one durable append) and, when the engine
//! returns, records how the run ended: `MigrationCompleted`, `MigrationCancelled` (by whoever
//! asked) or `MigrationFailed` with the error's stable code.
//!
//! Shutting Ferry down is not cancelling a migration. [`Supervisor::shutdown`] drops the engine
//! tasks without recording anything, exactly as a crash would, and the next start resumes them
//! from their last checkpoint. The engine has to be crash-safe anyway; this way a graceful stop
//! takes the same, tested path.

use std::collections::HashMap;
use std::future::Future;
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;
use uuid::Uuid;

use super::{JobError, Jobs};
use crate::engine::{
    self, Controls, EngineError, EngineJob, EventSender, PriorTransfer, ResumePoint, Tuning,
};
use crate::store::event::EventKind;

/// The actor of the events the engine reports.
pub const ENGINE_ACTOR: &str = "engine";

/// Capacity of the engine's event channel; a full channel slows the engine down rather than
/// letting reports pile up in memory.
const EVENT_CHANNEL: usize = 1024;

/// How long an engine may take to honour a cancel before its task is dropped.
const CANCEL_GRACE: Duration = Duration::from_secs(30);

/// What the supervisor runs for a job: [`engine::run`] in production. The store-side unit tests
/// pass an idle engine through [`super::Jobs::open_with_engine`] (they run without servers);
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

/// A running engine and how to reach it.
struct Running {
    controls: Controls,
    /// Who asked to cancel; the actor of `MigrationCancelled`.
    cancelled_by: Mutex<Option<String>>,
}

pub(super) struct Supervisor {
    pub(super) engine: EngineFn,
    running: Mutex<HashMap<Uuid, Arc<Running>>>,
    tasks: TaskTracker,
    shutdown: CancellationToken,
}

impl Supervisor {
    pub fn new(engine: EngineFn) -> Self {
        Supervisor {
            engine,
            running: Mutex::default(),
            tasks: TaskTracker::new(),
            shutdown: CancellationToken::new(),
        }
    }

    fn get(&self, id: Uuid) -> Option<Arc<Running>> {
        self.running
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .get(&id)
            .cloned()
    }

    /// Signals a running engine to cut over. Returns whether one was running.
    pub fn cutover(&self, id: Uuid) -> bool {
        self.get(id).map(|r| r.controls.cutover.cancel()).is_some()
    }

    /// Signals a running engine to stop. Returns whether one was running.
    pub fn cancel(&self, id: Uuid, actor: &str) -> bool {
        match self.get(id) {
            Some(running) => {
                running
                    .cancelled_by
                    .lock()
                    .unwrap_or_else(|p| p.into_inner())
                    .get_or_insert_with(|| actor.to_string());
                running.controls.cancel.cancel();
                true
            }
            None => false,
        }
    }

    pub async fn shutdown(&self) {
        self.shutdown.cancel();
        self.tasks.close();
        self.tasks.wait().await;
    }
}

impl Jobs {
    /// Starts the engine for `id` in a task of its own.
    pub(super) fn launch(
        &self,
        id: Uuid,
        resume: Option<ResumePoint>,
        transfer: Option<PriorTransfer>,
        cutover_now: bool,
    ) {
        let supervisor = &self.inner.supervisor;
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
        let jobs = self.clone();
        let shutdown = supervisor.shutdown.clone();
        supervisor.tasks.spawn(async move {
            tokio::select! {
                outcome = jobs.supervise(id, resume, transfer, running.clone()) => {
                    if let Err(e) = outcome {
                        tracing::error!(migration = %id, error = %e, "supervising the engine failed");
                    }
                }
                _ = shutdown.cancelled() => {
                    tracing::info!(migration = %id, "engine stopped for shutdown; it resumes on the next start");
                }
            }
            jobs.inner
                .supervisor
                .running
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .remove(&id);
        });
    }

    async fn supervise(
        &self,
        id: Uuid,
        resume: Option<ResumePoint>,
        transfer: Option<PriorTransfer>,
        running: Arc<Running>,
    ) -> Result<(), JobError> {
        let spec = match self.real_spec(id).await {
            Ok(spec) => spec,
            Err(e) => {
                let failed = EventKind::MigrationFailed {
                    code: "credentials_unavailable".into(),
                    message: e.to_string(),
                };
                return self.record_end(id, ENGINE_ACTOR, failed).await;
            }
        };
        // The restore point comes before the engine's first write (phase `backup`), once: a job
        // restarted after it began writing must not take a "restore point" of a half-written target.
        let before_first_write = self
            .get(id)
            .map(|v| v.phase == Some(super::Phase::Backup) && v.backup_id.is_none())
            .unwrap_or(false);
        if resume.is_none() && before_first_write {
            let taken = tokio::select! {
                taken = self.take_restore_point(id, &spec) => taken,
                _ = running.controls.cancel.cancelled() => {
                    let actor = running
                        .cancelled_by
                        .lock()
                        .unwrap_or_else(|p| p.into_inner())
                        .clone()
                        .unwrap_or_else(|| ENGINE_ACTOR.to_string());
                    let reason = Some(format!("cancelled by {actor} before the first write"));
                    return self.record_end(id, &actor, EventKind::MigrationCancelled { reason }).await;
                }
            };
            match taken {
                Ok(Some(kind)) => self.record_engine_events(id, vec![kind]).await?,
                Ok(None) => {}
                Err(e) => {
                    let failed = EventKind::MigrationFailed {
                        code: "backup_failed".into(),
                        message: format!("the restore point of the target could not be taken, so nothing was written: {e}"),
                    };
                    return self.record_end(id, ENGINE_ACTOR, failed).await;
                }
            }
        }
        let job = EngineJob {
            migration_id: id,
            spec,
            resume,
            transfer,
        };
        let (tx, mut rx) = mpsc::channel(EVENT_CHANNEL);
        let cancel = running.controls.cancel.clone();
        let engine = self.engine_for(job, tx, running.controls.clone());
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
                    self.record_engine_events(id, batch).await?;
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
            self.record_engine_events(id, rest).await?;
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
        self.record_end(id, &actor, end).await
    }
}
