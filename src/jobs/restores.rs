//! Restores: of a backup into any server, and of a migration's restore point into its target (a
//! rollback). See [`crate::aggregate::restore`] for the rules.
//!
//! Beginning a restore takes the backup's command lock (so two restores of one backup cannot both
//! pass the check) and, for a rollback, the migration's first. The target is looked at before the
//! decision, under those locks; the restore then runs as a supervised task and reports through
//! [`Jobs::report_restore`]. A rollback's end is also recorded in the migration's history
//! (`RollbackEnded`), in the same append as the restore's own end.

use uuid::Uuid;

use super::worker::RestoreWork;
use super::{JobError, Jobs};
use crate::aggregate::migration::{self, Command as MigrationCommand};
use crate::aggregate::restore::{self, Begin, BeginError, Command, Restore, RestoreState};
use crate::model::{AggregateType, EventKind};
use crate::spec::{Endpoint, OnConflict};
use crate::store::NewEvent;

impl Jobs {
    pub fn restore(&self, id: Uuid) -> Result<Restore, JobError> {
        self.inner
            .restores
            .get(id)
            .map(|slot| slot.snapshot())
            .ok_or(JobError::NotFound {
                aggregate: AggregateType::Restore,
                id,
            })
    }

    /// Up to `limit` restores after `after` (an id), oldest first.
    pub fn restores(&self, after: Option<Uuid>, limit: usize) -> Vec<Restore> {
        self.inner.restores.page(after, limit, |_| true)
    }

    /// Restores backup `backup_id` into `target`. Validated before it is accepted: the backup
    /// allows it, the target's lease is free (or `force` takes it over), the target answers,
    /// `on_conflict` suits what it holds, and the file fits.
    pub async fn start_restore(
        &self,
        backup_id: Uuid,
        target: Endpoint,
        on_conflict: OnConflict,
        actor: &str,
        force: bool,
    ) -> Result<Restore, JobError> {
        crate::spec::check_no_db(&target.url, "target.url").map_err(|e| JobError::Invalid {
            field: e.field.into(),
            detail: e.detail,
        })?;
        let backup_slot = self.backup_slot_for_restore(backup_id)?;
        let _backup_guard = backup_slot.commands.lock().await;
        crate::aggregate::backup::decide(
            &backup_slot.snapshot(),
            crate::aggregate::backup::Command::Restore,
        )?;
        let request = Begin {
            target: target.url.to_string(),
            on_conflict,
            for_migration: None,
            flush_first: false,
        };
        let restore_id = Uuid::now_v7();
        let lease = self
            .lease_for_restore(&target, restore_id, actor, force)
            .await?;
        let begun = async {
            let started = self
                .decide_restore(&backup_slot.snapshot(), &request, &target, "target.url")
                .await?;
            let events = vec![
                NewEvent::new(AggregateType::Restore, restore_id, actor, started),
                NewEvent::new(AggregateType::Restore, restore_id, actor, lease),
            ];
            self.commit(events).await
        };
        if let Err(e) = begun.await {
            self.inner.worker.release_lease(restore_id).await;
            return Err(e);
        }
        self.inner.worker.restore(
            self.clone(),
            RestoreWork {
                restore_id,
                backup_id: Some(backup_id),
                target,
                on_conflict,
                flush_first: false,
            },
        );
        self.restore(restore_id)
    }

    /// Puts the target of migration `id` back as it was before the migration: flushes it (what
    /// the migration wrote) and loads the restore point with `REPLACE`. A target that held no
    /// keys at the start has the "empty" restore point: it is flushed and nothing is loaded.
    /// Refused without a restore point: flushing a target whose earlier contents are unknown
    /// could only destroy data.
    pub async fn rollback(&self, id: Uuid, actor: &str, force: bool) -> Result<Restore, JobError> {
        let migration_slot = self.inner.migrations.get(id).ok_or(JobError::NotFound {
            aggregate: AggregateType::Migration,
            id,
        })?;
        let _migration_guard = migration_slot.commands.lock().await;
        let restore_id = Uuid::now_v7();
        let requested = migration::decide(
            &migration_slot.snapshot(),
            MigrationCommand::Rollback { restore_id },
        )?;
        let backup_id = migration_slot.snapshot().view.backup_id;
        // The real URL, and the TLS settings the migration reached the target with.
        let target = self.real_spec(id).await?.target;
        let request = Begin {
            target: target.url.to_string(),
            on_conflict: OnConflict::Replace,
            for_migration: Some(id),
            flush_first: true,
        };
        let backup_slot = match backup_id {
            Some(b) => Some(self.backup_slot_for_restore(b)?),
            None => None,
        };
        let _backup_guard = match &backup_slot {
            Some(slot) => Some(slot.commands.lock().await),
            None => None,
        };
        if let Some(slot) = &backup_slot {
            crate::aggregate::backup::decide(
                &slot.snapshot(),
                crate::aggregate::backup::Command::Restore,
            )?;
        }
        let lease = self
            .lease_for_restore(&target, restore_id, actor, force)
            .await?;
        let begun = async {
            let started = match &backup_slot {
                Some(slot) => {
                    self.decide_restore(&slot.snapshot(), &request, &target, "target.url")
                        .await?
                }
                None => restore::begin_empty(&request).remove(0),
            };
            let mut events: Vec<NewEvent> = requested
                .into_iter()
                .map(|kind| NewEvent::migration(id, actor, kind))
                .collect();
            events.push(NewEvent::new(
                AggregateType::Restore,
                restore_id,
                actor,
                started,
            ));
            events.push(NewEvent::new(
                AggregateType::Restore,
                restore_id,
                actor,
                lease,
            ));
            self.commit(events).await
        };
        if let Err(e) = begun.await {
            self.inner.worker.release_lease(restore_id).await;
            return Err(e);
        }
        self.inner.worker.restore(
            self.clone(),
            RestoreWork {
                restore_id,
                backup_id,
                target,
                on_conflict: OnConflict::Replace,
                flush_first: true,
            },
        );
        self.restore(restore_id)
    }

    /// Takes the target's lease for restore `restore_id`; the event that records it.
    async fn lease_for_restore(
        &self,
        target: &Endpoint,
        restore_id: Uuid,
        actor: &str,
        force: bool,
    ) -> Result<EventKind, JobError> {
        let grant = self
            .inner
            .worker
            .acquire_lease(
                target.clone(),
                AggregateType::Restore,
                restore_id,
                actor.to_string(),
                force,
            )
            .await
            .map_err(|detail| JobError::Unusable {
                field: "target.url",
                detail,
            })?;
        Ok(super::lease_event(&target.url, grant, false))
    }

    fn backup_slot_for_restore(
        &self,
        backup_id: Uuid,
    ) -> Result<std::sync::Arc<super::table::Slot<crate::aggregate::backup::Backup>>, JobError>
    {
        self.inner.backups.get(backup_id).ok_or(JobError::NotFound {
            aggregate: AggregateType::Backup,
            id: backup_id,
        })
    }

    /// Looks at the target and decides; refuses at once what the backup's state refuses, before
    /// any connection is made.
    async fn decide_restore(
        &self,
        backup: &crate::aggregate::backup::Backup,
        request: &Begin,
        target: &Endpoint,
        field: &'static str,
    ) -> Result<EventKind, JobError> {
        crate::aggregate::backup::decide(backup, crate::aggregate::backup::Command::Restore)?;
        let summary = self
            .inner
            .worker
            .inspect(target.clone())
            .await
            .map_err(|detail| JobError::Unusable { field, detail })?;
        let mut events = restore::begin(backup, request, &summary).map_err(|e| match e {
            BeginError::Refused(refusal) => JobError::Refused(refusal),
            BeginError::Unsuitable { field, detail } => JobError::Unusable { field, detail },
        })?;
        Ok(events.remove(0))
    }

    /// Records what a restore reported (dropped once it has ended). Its end also ends the
    /// migration's rollback, in the same append.
    pub async fn report_restore(
        &self,
        id: Uuid,
        actor: &str,
        command: Command,
    ) -> Result<(), JobError> {
        let slot = self.inner.restores.get(id).ok_or(JobError::NotFound {
            aggregate: AggregateType::Restore,
            id,
        })?;
        let _guard = slot.commands.lock().await;
        let current = slot.snapshot();
        let facts = restore::decide(&current, command);
        let ended = facts.iter().find_map(|f| match f {
            EventKind::RestoreCompleted { .. } => Some(true),
            EventKind::RestoreFailed { .. } => Some(false),
            _ => None,
        });
        let mut events: Vec<NewEvent> = facts
            .into_iter()
            .map(|kind| NewEvent::new(AggregateType::Restore, id, actor, kind))
            .collect();
        if let (Some(restored), Some(migration_id)) = (ended, current.for_migration) {
            if let Some(m) = self.inner.migrations.get(migration_id) {
                let end = MigrationCommand::EndRollback {
                    restore_id: id,
                    restored,
                };
                for kind in migration::decide(&m.snapshot(), end)? {
                    events.push(NewEvent::migration(migration_id, actor, kind));
                }
            }
        }
        self.commit(events).await?;
        Ok(())
    }

    /// Whether restore `id` is still running.
    pub fn restore_running(&self, id: Uuid) -> bool {
        self.restore(id)
            .is_ok_and(|r| r.state == RestoreState::Running)
    }
}
