//! Running a dry run (`mode: dry_run`): the engine reads and reports like any run, but the task
//! takes no lease, no restore point and no inventory, and has no offset key to clear: a dry run
//! writes nothing to the target (see `engine::dry_run`).

use std::sync::Arc;

use tokio::sync::mpsc;
use uuid::Uuid;

use super::migration::{cancelled_actor, EVENT_CHANNEL};
use super::{Running, Supervisor};
use crate::engine::{EngineError, EngineJob};
use crate::jobs::{JobError, Jobs, ENGINE_ACTOR};
use crate::model::EventKind;
use crate::spec::MigrationSpec;

impl Supervisor {
    /// A dry run: no lease, no restore point, no inventory, no offset key to clear; the engine
    /// reads and reports, and the run ends like any other.
    pub(super) async fn supervise_dry_run(
        &self,
        jobs: &Jobs,
        id: Uuid,
        spec: MigrationSpec,
        running: &Arc<Running>,
    ) -> Result<(), JobError> {
        let job = EngineJob::new(id, spec);
        let (tx, mut rx) = mpsc::channel(EVENT_CHANNEL);
        let engine = self.engine_for(jobs, job, tx, running.controls.clone());
        tokio::pin!(engine);
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
            }
        };
        let mut rest = Vec::new();
        while let Ok(next) = rx.try_recv() {
            rest.push(next);
        }
        if !rest.is_empty() {
            jobs.report_migration(id, rest).await?;
        }
        let (actor, end) = match outcome {
            Ok(()) => (ENGINE_ACTOR.to_string(), EventKind::MigrationCompleted {}),
            Err(EngineError::Cancelled) => {
                let actor = cancelled_actor(running);
                let reason = Some(format!("cancelled by {actor}"));
                (actor, EventKind::MigrationCancelled { reason })
            }
            Err(e) => (
                ENGINE_ACTOR.to_string(),
                EventKind::MigrationFailed {
                    code: e.code().to_string(),
                    message: e.to_string(),
                },
            ),
        };
        jobs.end_migration(id, &actor, end).await
    }
}
