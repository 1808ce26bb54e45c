//! The service layer: the folded states of every migration, backup and restore, one command lock
//! per aggregate, and the commands the API (and the CLI) send.
//!
//! A command is always the same four steps, under that aggregate's lock so that two requests
//! cannot both pass the check:
//!
//! 1. **lock** the aggregate's slot;
//! 2. **decide**: ask the pure rules in [`crate::aggregate`] for the events, or a [`Refusal`];
//! 3. **append** the events to the [`Store`] (durable before the reply);
//! 4. **fold** them into the in-memory states ([`Jobs::commit`]).
//!
//! This layer does no Redis and no file I/O. Whatever needs it (validation, a look at a target
//! before a restore, the free disk space, the capture, the restore, the engine itself) is asked of
//! the [`Worker`], a port that the [`crate::supervisor`] implements. The supervisor reports back
//! only through the commands here (`report_*`, `end_*`), which decide and record like any other.
//! So the arrows point one way: `supervisor → jobs`, never back; `jobs` knows the supervisor only
//! as the trait object it was given at [`Jobs::open`].
//!
//! Reads never wait for a command: they clone the current state.

mod backups;
mod migrations;
mod restores;
mod table;
mod worker;

pub use backups::Upload;
pub use migrations::{MigrationPatch, OptionsPatch};
pub use worker::{LeaseGrant, RestoreWork, UploadError, UploadSink, UploadedFile, Worker};

use std::collections::BTreeMap;
use std::sync::Arc;

use thiserror::Error;
use uuid::Uuid;

use crate::aggregate::backup::{self, Backup};
use crate::aggregate::migration::{self, Migration};
use crate::aggregate::restore::{self, Restore};
use crate::aggregate::Refusal;
use crate::model::{AggregateType, Event, EventKind};
use crate::redis_url::RedisUrl;
use crate::store::{NewEvent, Store, StoreError};
use table::Table;

/// The actor of what the supervisor reports (engine facts, captures, restores).
pub const ENGINE_ACTOR: &str = "engine";
/// The actor of what Ferry records at start-up about work a restart interrupted.
pub const RECOVERY_ACTOR: &str = "ferry";
/// The actor of a start at `schedule.start_at`.
pub const SCHEDULER_ACTOR: &str = "scheduler";

/// Why a command did not happen.
#[derive(Debug, Error)]
pub enum JobError {
    #[error("{aggregate} {id} does not exist")]
    NotFound { aggregate: AggregateType, id: Uuid },
    /// The aggregate's state does not allow the command; the refusal says what it allows.
    #[error(transparent)]
    Refused(#[from] Refusal),
    /// The request cannot work as written; `field` names what to change.
    #[error("{detail}")]
    Invalid { field: &'static str, detail: String },
    /// The request is well-formed, but what it names cannot take it now: a server that does not
    /// answer, a target holding conflicting keys or too small, a spec at odds with the
    /// migration's stored mode. `field` names what to change.
    #[error("{detail}")]
    Unusable { field: &'static str, detail: String },
    /// A backup would not fit; the message says how much is needed and what is available.
    #[error("{0}")]
    NoSpace(String),
    #[error(transparent)]
    Upload(#[from] UploadError),
    /// A file operation of the worker failed (removing a backup's file).
    #[error("{0}")]
    Io(String),
    #[error("the credentials of migration {0} are missing; create the migration again")]
    CredentialsMissing(Uuid),
    #[error(transparent)]
    Store(#[from] StoreError),
}

/// The event that records a lease taken for a writer of `target`.
pub(crate) fn lease_event(target: &RedisUrl, grant: LeaseGrant, resumed: bool) -> EventKind {
    EventKind::LeaseAcquired {
        target: target.to_string(),
        owner: grant.owner,
        took_over: grant.took_over,
        kept: grant.kept,
        resumed,
    }
}

/// What the start-up fold found.
#[derive(Debug, Default, Clone, Copy)]
pub struct FoldStats {
    pub events: u64,
    pub migrations: usize,
    pub backups: usize,
    pub restores: usize,
    /// Events that could not be folded (logged and skipped).
    pub skipped: u64,
    /// How long reading and folding the log took.
    pub elapsed: std::time::Duration,
}

/// Every aggregate's state, as the start-up fold builds it.
#[derive(Debug, Default)]
pub struct Folded {
    pub migrations: BTreeMap<Uuid, Migration>,
    pub backups: BTreeMap<Uuid, Backup>,
    pub restores: BTreeMap<Uuid, Restore>,
}

/// The service: commands and queries on every aggregate. Cheap to clone.
#[derive(Clone)]
pub struct Jobs {
    inner: Arc<Inner>,
}

struct Inner {
    store: Store,
    migrations: Table<Migration>,
    backups: Table<Backup>,
    restores: Table<Restore>,
    worker: Arc<dyn Worker>,
}

impl Jobs {
    /// Folds the whole log of `store` (blocking: call it from `spawn_blocking` or before serving)
    /// and serves commands, handing I/O to `worker`. Nothing runs yet: [`Jobs::recover`] resumes or
    /// fails the work a restart interrupted.
    pub fn open(store: Store, worker: Arc<dyn Worker>) -> Result<(Jobs, FoldStats), StoreError> {
        let (folded, stats) = fold_all(&store)?;
        let jobs = Jobs {
            inner: Arc::new(Inner {
                store,
                migrations: Table::new(folded.migrations),
                backups: Table::new(folded.backups),
                restores: Table::new(folded.restores),
                worker,
            }),
        };
        Ok((jobs, stats))
    }

    /// Deals with the work a restart interrupted, explicitly: a capture or a restore that was
    /// running is recorded as failed (`interrupted`: its connection is gone, and a half-loaded
    /// target or a partial file is no state to continue from); a migration that was running is
    /// handed to the worker, which resumes it from its last checkpoint.
    pub async fn recover(&self) -> Result<(), JobError> {
        for b in self.inner.backups.states() {
            if b.status == backup::BackupStatus::Running {
                let message = "Ferry stopped while the backup was being taken; take a new one";
                self.fail_backup(b.id, RECOVERY_ACTOR, "interrupted", message)
                    .await?;
            }
        }
        for r in self.inner.restores.states() {
            if r.state == restore::RestoreState::Running {
                let message = "Ferry stopped while the backup was being restored; the target may \
                               hold part of it: restore again (on_conflict replace)";
                let fail = restore::Command::Fail {
                    code: "interrupted".into(),
                    message: message.into(),
                };
                self.report_restore(r.id, RECOVERY_ACTOR, fail).await?;
            }
        }
        for m in self.inner.migrations.states() {
            if m.view.state.is_running() {
                tracing::info!(migration = %m.view.id, state = m.view.state.as_str(), resume = ?m.resume, "resuming");
                self.inner.worker.run_migration(
                    self.clone(),
                    m.view.id,
                    m.resume.clone(),
                    m.view.state == migration::State::CuttingOver,
                );
            }
            // A schedule lives in the log: a restart arms its timer again (a `start_at` passed
            // while Ferry was down starts at once, recorded as late).
            if let (migration::State::Validated, Some(at)) =
                (m.view.state, m.view.schedule.start_at)
            {
                self.inner
                    .worker
                    .schedule_start(self.clone(), m.view.id, at);
            }
        }
        Ok(())
    }

    /// Whether Ferry can take work: the event log takes appends and the data dir is above its
    /// free-space floor. The error says why not.
    pub fn readiness(&self) -> Result<(), String> {
        if let Some(why) = self.inner.store.unavailable() {
            return Err(format!(
                "the event log refuses writes after an I/O error ({why}); free disk space if it \
                 is full, then restart Ferry"
            ));
        }
        self.inner.worker.disk_ready()
    }

    /// The underlying store (for event queries and subscriptions).
    pub fn store(&self) -> &Store {
        &self.inner.store
    }

    /// Stops the supervised tasks without recording anything (they resume, or are failed as
    /// interrupted, on the next start), and waits for them.
    pub async fn shutdown(&self) {
        self.inner.worker.shutdown().await;
    }

    /// Events of aggregate `id` after `after`, at most `limit`.
    pub async fn events(
        &self,
        aggregate: AggregateType,
        id: Uuid,
        after: u64,
        limit: usize,
    ) -> Result<Vec<Event>, JobError> {
        let known = match aggregate {
            AggregateType::Migration => self.inner.migrations.contains(id),
            AggregateType::Backup => self.inner.backups.contains(id),
            AggregateType::Restore => self.inner.restores.contains(id),
        };
        if !known {
            return Err(JobError::NotFound { aggregate, id });
        }
        Ok(self.inner.store.aggregate_events(id, after, limit).await?)
    }

    /// Appends `events` (already decided, under the locks of the aggregates they concern) and
    /// folds them into the states.
    async fn commit(&self, events: Vec<NewEvent>) -> Result<Vec<Event>, JobError> {
        let stored = self.inner.store.append(events).await?;
        for event in &stored {
            self.fold(event);
        }
        Ok(stored)
    }

    /// Folds one stored event into whatever it concerns.
    fn fold(&self, event: &Event) {
        let inner = &self.inner;
        match event.aggregate_type {
            AggregateType::Migration => inner.migrations.fold(
                event,
                |e| migration::apply(None, e).ok(),
                migration::fold_into,
            ),
            AggregateType::Backup => inner.backups.fold(event, backup::create, backup::apply),
            AggregateType::Restore => {
                inner.restores.fold(event, restore::create, restore::apply);
                if let Some(backup_id) = event.kind.backup_id() {
                    inner.backups.update(backup_id, |b| backup::apply(b, event));
                }
            }
        }
    }
}

/// Folds the whole log into every aggregate's state. Blocking; this is the start-up fold.
pub fn fold_all(store: &Store) -> Result<(Folded, FoldStats), StoreError> {
    let started = std::time::Instant::now();
    let mut folded = Folded::default();
    let mut stats = FoldStats::default();
    store.for_each_event(|event| {
        stats.events += 1;
        if let Err(e) = fold_event(&mut folded, event) {
            stats.skipped += 1;
            tracing::error!(error = %e, "skipping an event that does not fold");
        }
    })?;
    stats.migrations = folded.migrations.len();
    stats.backups = folded.backups.len();
    stats.restores = folded.restores.len();
    stats.elapsed = started.elapsed();
    Ok((folded, stats))
}

/// Folds one event at start-up, into the aggregate it belongs to (and, for a restore's events,
/// into the backup restored as well).
fn fold_event(folded: &mut Folded, event: &Event) -> Result<(), migration::FoldError> {
    let id = event.aggregate_id;
    match event.aggregate_type {
        AggregateType::Migration => match folded.migrations.get_mut(&id) {
            Some(_) if matches!(event.kind, EventKind::MigrationCreated { .. }) => {
                return Err(migration::FoldError::CreatedTwice { seq: event.seq, id })
            }
            Some(m) => migration::fold_into(m, event),
            None => {
                folded.migrations.insert(id, migration::apply(None, event)?);
            }
        },
        AggregateType::Backup => match folded.backups.get_mut(&id) {
            Some(b) => backup::apply(b, event),
            None => {
                if let Some(b) = backup::create(event) {
                    folded.backups.insert(id, b);
                }
            }
        },
        AggregateType::Restore => {
            match folded.restores.get_mut(&id) {
                Some(r) => restore::apply(r, event),
                None => {
                    if let Some(r) = restore::create(event) {
                        folded.restores.insert(id, r);
                    }
                }
            }
            if let Some(b) = event
                .kind
                .backup_id()
                .and_then(|b| folded.backups.get_mut(&b))
            {
                backup::apply(b, event);
            }
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::spec::OnConflict;
    use chrono::Utc;

    fn legacy(seq: u64, id: Uuid, kind: EventKind) -> Event {
        Event {
            seq,
            aggregate_type: AggregateType::of_legacy(id, &kind),
            aggregate_id: id,
            at: Utc::now(),
            actor: "api".into(),
            kind,
            chain: None,
        }
    }

    /// A log of the first format: a backup and its restore, both under the backup's id. They fold
    /// into a completed backup and a (legacy) restore with the backup's id, which has ended.
    #[test]
    fn a_log_of_the_first_format_folds_into_backups_and_restores() {
        let b = Uuid::now_v7();
        let events = [
            EventKind::BackupStarted {
                backup_id: b,
                server: "redis://h:1".into(),
                label: None,
                for_migration: None,
            },
            EventKind::BackupCompleted {
                backup_id: b,
                bytes: 9,
                details: None,
            },
            EventKind::RestoreStarted {
                backup_id: b,
                target: "redis://t:1".into(),
                on_conflict: OnConflict::Fail,
                for_migration: None,
            },
            EventKind::RestoreCompleted {
                backup_id: b,
                keys_written: 3,
                keys_skipped: 0,
                keys_expired: 0,
                duration_ms: 1,
                keys_empty: 0,
            },
        ];
        let mut folded = Folded::default();
        for (i, kind) in events.into_iter().enumerate() {
            fold_event(&mut folded, &legacy(i as u64 + 1, b, kind)).unwrap();
        }
        let backup = &folded.backups[&b];
        assert_eq!(backup.status, backup::BackupStatus::Completed);
        assert_eq!((backup.restoring, backup.last_restore_id), (None, Some(b)));
        let restore = &folded.restores[&b];
        assert_eq!(restore.state, restore::RestoreState::Completed);
        assert!(folded.migrations.is_empty());
    }
}
