//! Migration commands and queries (see [`crate::aggregate::migration`] for the rules).

use std::sync::atomic::Ordering;
use std::sync::Arc;

use serde::Deserialize;
use utoipa::ToSchema;
use uuid::Uuid;

use super::table::Slot;
use super::{JobError, Jobs, ENGINE_ACTOR};
use crate::aggregate::migration::{self, Command, Migration, MigrationView, State};
use crate::aggregate::{backup, Action};
use crate::model::{AggregateType, EventKind, StoredBackup, ValidationReport, VerificationReport};
use crate::redis_url::RedisUrl;
use crate::spec::{Endpoint, MigrationSpec, Mode, OnConflict, Options, Source, Verify};
use crate::store::{Credentials, NewEvent};

/// Body of `PATCH /v1/migrations/{id}`: the fields to change; the rest stays.
#[derive(Debug, Clone, Default, PartialEq, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
#[schema(example = json!({"name": "renamed", "options": {"verify": "full"}}))]
pub struct MigrationPatch {
    pub name: Option<String>,
    /// `{url}` or `{rdb: {backup_id}}`.
    #[schema(value_type = Option<crate::spec::SourceBody>)]
    pub source: Option<Source>,
    #[serde(default, deserialize_with = "crate::spec::object_or_null")]
    pub target: Option<Endpoint>,
    pub mode: Option<Mode>,
    #[serde(default, deserialize_with = "crate::spec::object_or_null")]
    pub options: Option<OptionsPatch>,
    /// Replaces the whole schedule (before start only).
    #[serde(default, deserialize_with = "crate::spec::object_or_null")]
    pub schedule: Option<crate::spec::Schedule>,
}

/// The options to change; absent fields keep their value.
#[derive(Debug, Clone, Default, PartialEq, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct OptionsPatch {
    pub on_conflict: Option<OnConflict>,
    pub backup: Option<bool>,
    pub verify: Option<Verify>,
    pub pause_source_writes_on_cutover: Option<bool>,
    pub pause_during_verification: Option<bool>,
    pub auto_cutover: Option<bool>,
    pub transfer: Option<crate::spec::Transfer>,
    // ---- shaping (issue #19): each replaces the whole option ----
    #[serde(default, deserialize_with = "crate::spec::object_or_null")]
    pub filter: Option<crate::shape::KeyFilter>,
    #[schema(value_type = Option<std::collections::BTreeMap<String, u32>>)]
    pub db_map: Option<crate::shape::DbMap>,
    pub rename: Option<Vec<crate::shape::Rename>>,
    pub flush_passthrough: Option<bool>,
    /// Replaces both limits (an absent one becomes `null`, unlimited). The only field a PATCH
    /// may change while the migration runs.
    #[serde(default, deserialize_with = "crate::spec::object_or_null")]
    pub limits: Option<crate::spec::Limits>,
    pub write_probe: Option<bool>,
    pub acl: Option<crate::spec::AclMode>,
}

impl OptionsPatch {
    fn apply(&self, o: &mut Options) {
        o.on_conflict = self.on_conflict.unwrap_or(o.on_conflict);
        o.backup = self.backup.unwrap_or(o.backup);
        o.verify = self.verify.unwrap_or(o.verify);
        o.pause_source_writes_on_cutover = self
            .pause_source_writes_on_cutover
            .unwrap_or(o.pause_source_writes_on_cutover);
        o.pause_during_verification = self
            .pause_during_verification
            .unwrap_or(o.pause_during_verification);
        o.auto_cutover = self.auto_cutover.unwrap_or(o.auto_cutover);
        o.transfer = self.transfer.unwrap_or(o.transfer);
        if let Some(filter) = &self.filter {
            o.filter = filter.clone();
        }
        if let Some(db_map) = &self.db_map {
            o.db_map = db_map.clone();
        }
        if let Some(rename) = &self.rename {
            o.rename = rename.clone();
        }
        o.flush_passthrough = self.flush_passthrough.unwrap_or(o.flush_passthrough);
        o.limits = self.limits.unwrap_or(o.limits);
        o.write_probe = self.write_probe.unwrap_or(o.write_probe);
        o.acl = self.acl.unwrap_or(o.acl);
    }
}

mod shaping;
use shaping::{check_for_validation, check_shape};

impl Jobs {
    fn migration_slot(&self, id: Uuid) -> Result<Arc<Slot<Migration>>, JobError> {
        self.inner.migrations.get(id).ok_or(JobError::NotFound {
            aggregate: AggregateType::Migration,
            id,
        })
    }

    /// The migration's whole state (for the supervisor).
    pub fn migration(&self, id: Uuid) -> Result<Migration, JobError> {
        Ok(self.migration_slot(id)?.snapshot())
    }

    // ---- queries ----

    pub fn get(&self, id: Uuid) -> Result<MigrationView, JobError> {
        Ok(self.migration(id)?.view)
    }

    /// Up to `limit` migrations after `after` (an id), oldest first, optionally only those in
    /// `state`.
    pub fn list(
        &self,
        state: Option<State>,
        after: Option<Uuid>,
        limit: usize,
    ) -> Vec<MigrationView> {
        self.inner
            .migrations
            .page(after, limit, |m| state.is_none_or(|s| m.view.state == s))
            .into_iter()
            .map(|m| m.view)
            .collect()
    }

    /// The verification report of a migration, once the engine has verified it.
    pub fn verification(&self, id: Uuid) -> Result<Option<VerificationReport>, JobError> {
        Ok(self.migration(id)?.verification)
    }

    // ---- commands ----

    /// Records a new migration. Its credentials go to the encrypted store first, so a recorded
    /// migration can always run.
    pub async fn create(
        &self,
        spec: MigrationSpec,
        actor: &str,
    ) -> Result<MigrationView, JobError> {
        check_addresses(&spec)?;
        check_shape(&spec)?;
        self.check_source(&spec, false)?;
        let id = Uuid::now_v7();
        // A file source has no secret; the sealed record needs a source URL all the same, so it
        // holds the target's again (never read back: `real_spec` keeps the `rdb` source).
        let creds = Credentials {
            source: spec.source.url().unwrap_or(&spec.target.url).clone(),
            target: spec.target.url.clone(),
        };
        self.inner.store.put_credentials(id, creds).await?;
        let created = NewEvent::migration(
            id,
            actor,
            EventKind::MigrationCreated {
                spec: Box::new(spec),
            },
        );
        self.commit(vec![created]).await?;
        self.get(id)
    }

    /// Runs `command` on migration `id` under its lock: decide, append, fold.
    async fn run(
        &self,
        id: Uuid,
        actor: &str,
        command: Command,
    ) -> Result<MigrationView, JobError> {
        let slot = self.migration_slot(id)?;
        let _guard = slot.commands.lock().await;
        self.decide_and_commit(&slot, id, actor, command).await?;
        Ok(slot.snapshot().view)
    }

    /// Decides and records; the caller holds the slot's lock.
    async fn decide_and_commit(
        &self,
        slot: &Slot<Migration>,
        id: Uuid,
        actor: &str,
        command: Command,
    ) -> Result<(), JobError> {
        let events = migration::decide(&slot.snapshot(), command)?;
        let events = events
            .into_iter()
            .map(|kind| NewEvent::migration(id, actor, kind))
            .collect();
        self.commit(events).await?;
        Ok(())
    }

    /// Changes the spec before start; the migration must be validated again.
    pub async fn update(
        &self,
        id: Uuid,
        patch: MigrationPatch,
        actor: &str,
    ) -> Result<MigrationView, JobError> {
        let slot = self.migration_slot(id)?;
        let _guard = slot.commands.lock().await;
        let current = slot.snapshot();
        if current.view.state.is_running() {
            return self.change_limits(&slot, &current, patch, actor).await;
        }
        if !migration::allowed(current.view.state, current.view.mode).contains(&Action::Update) {
            return Err(migration::refusal(&current, Action::Update, None).into());
        }
        let creds = self.credentials(id).await?;
        let mut spec = current.spec();
        if let Source::Server(endpoint, ..) = &mut spec.source {
            endpoint.url = creds.source.clone();
        }
        spec.target.url = creds.target.clone();
        if let Some(name) = patch.name {
            spec.name = Some(name);
        }
        let stored_source = current.view.source.url().map(|_| &creds.source);
        let mut source_moved = false;
        let mut source_resent = false;
        match patch.source {
            Some(Source::Server(endpoint, read, prefer)) => {
                source_moved =
                    stored_source.is_none_or(|stored| !same_place(&endpoint.url, stored));
                source_resent = !is_redacted(&endpoint.url);
                let url = keep_password(endpoint.url, &creds.source, "source.url")?;
                spec.source = Source::Server(
                    Endpoint {
                        url,
                        tls: endpoint.tls,
                    },
                    read,
                    prefer,
                );
            }
            Some(file) => {
                source_moved = true;
                source_resent = true;
                spec.source = file;
            }
            None => {}
        }
        let mut target_moved = false;
        let mut target_resent = false;
        if let Some(target) = patch.target {
            target_moved = !same_place(&target.url, &creds.target);
            target_resent = !is_redacted(&target.url);
            spec.target = Endpoint {
                url: keep_password(target.url, &creds.target, "target.url")?,
                tls: target.tls,
            };
        }
        // Stored passwords are never reused for a new pairing: a caller who moves one end must
        // show they know the other end's password, or they could copy a source they were never
        // given into a server of theirs (or write into a target they cannot reach).
        if target_moved && !source_resent {
            if let Some(stored) = stored_source.filter(|u| u.password.is_some()) {
                return Err(JobError::Unusable {
                    field: "source.url",
                    detail: format!(
                        "changing the target to another server needs the source's password again \
                         (the stored password of {} is not reused for a new destination): send \
                         `source.url` with its password in the same PATCH",
                        stored.addr()
                    ),
                });
            }
        }
        if source_moved && !target_resent && creds.target.password.is_some() {
            return Err(JobError::Unusable {
                field: "target.url",
                detail: format!(
                    "changing the source needs the target's password again (the stored password \
                     of {} is not reused for data from another server): send `target.url` with \
                     its password in the same PATCH",
                    creds.target.addr()
                ),
            });
        }
        if let Some(mode) = patch.mode {
            spec.mode = mode;
        }
        if let Some(options) = &patch.options {
            options.apply(&mut spec.options);
        }
        if let Some(schedule) = patch.schedule {
            spec.schedule = schedule;
        }
        check_addresses(&spec)?;
        check_shape(&spec)?;
        self.check_source(&spec, true)?;
        let new_creds = Credentials {
            source: spec.source.url().unwrap_or(&spec.target.url).clone(),
            target: spec.target.url.clone(),
        };
        if new_creds != creds {
            self.inner.store.put_credentials(id, new_creds).await?;
        }
        self.decide_and_commit(
            &slot,
            id,
            actor,
            Command::Update {
                spec: Box::new(spec),
            },
        )
        .await?;
        Ok(slot.snapshot().view)
    }

    /// Runs the pre-flight checks (through the worker) and records their report. The command lock
    /// is not held while the checks run (they take seconds); if the migration changes meanwhile
    /// (PATCH, cancel), the stale report is refused rather than recorded.
    pub async fn validate(&self, id: Uuid, actor: &str) -> Result<ValidationReport, JobError> {
        let slot = self.migration_slot(id)?;
        let since_version = {
            let _guard = slot.commands.lock().await;
            let current = slot.snapshot();
            migration::decide(&current, Command::StartValidation)?;
            // A cutover window that has ended since the migration was created can never be used.
            check_for_validation(&current)?;
            if slot.busy.swap(true, Ordering::SeqCst) {
                let why = "it is being validated already; wait for that report".to_string();
                return Err(migration::refusal(&current, Action::Validate, Some(why)).into());
            }
            let started = self
                .decide_and_commit(&slot, id, actor, Command::StartValidation)
                .await;
            if let Err(e) = started {
                slot.busy.store(false, Ordering::SeqCst);
                return Err(e);
            }
            slot.snapshot().version
        };
        let report = match self.real_spec(id).await {
            Ok(spec) => {
                let file = spec
                    .source
                    .backup_id()
                    .map(|b| self.stored_backup(b).map_err(|e| e.to_string()));
                Ok(self.inner.worker.validate(spec, file).await)
            }
            Err(e) => Err(e),
        };
        let _guard = slot.commands.lock().await;
        slot.busy.store(false, Ordering::SeqCst);
        let report = report?;
        let command = Command::CompleteValidation {
            report: report.clone(),
            since_version,
        };
        self.decide_and_commit(&slot, id, actor, command).await?;
        let validated = slot.snapshot();
        if let (State::Validated, Some(at)) =
            (validated.view.state, validated.view.schedule.start_at)
        {
            // The timer starts it at `at` (at once when `at` has passed).
            self.inner.worker.schedule_start(self.clone(), id, at);
        }
        Ok(report)
    }

    /// Starts a validated migration: takes the target's lease (refused, naming the holder, when
    /// another writer has it, unless `force` takes it over), records `MigrationStarted` and
    /// `LeaseAcquired`, and hands the migration to the worker.
    pub async fn start(
        &self,
        id: Uuid,
        actor: &str,
        force: bool,
    ) -> Result<MigrationView, JobError> {
        self.start_with(id, actor, force, Command::Start).await
    }

    /// The scheduler's start of migration `id`, whose timer was set for `armed_for`: refused
    /// (and nothing recorded) when the migration is no longer validated with that start time.
    pub async fn start_scheduled(
        &self,
        id: Uuid,
        armed_for: chrono::DateTime<chrono::Utc>,
    ) -> Result<MigrationView, JobError> {
        let command = Command::StartScheduled {
            armed_for,
            now: chrono::Utc::now(),
        };
        self.start_with(id, super::SCHEDULER_ACTOR, false, command)
            .await
    }

    async fn start_with(
        &self,
        id: Uuid,
        actor: &str,
        force: bool,
        command: Command,
    ) -> Result<MigrationView, JobError> {
        let slot = self.migration_slot(id)?;
        let _guard = slot.commands.lock().await;
        let started = migration::decide(&slot.snapshot(), command)?;
        if slot.snapshot().view.mode == Mode::DryRun {
            // A dry run writes nothing: it takes no lease (and needs no disk for a restore point).
            let events = started
                .into_iter()
                .map(|kind| NewEvent::migration(id, actor, kind))
                .collect();
            self.commit(events).await?;
            self.inner
                .worker
                .run_migration(self.clone(), id, None, false);
            return Ok(slot.snapshot().view);
        }
        self.inner.worker.disk_ready().map_err(JobError::NoSpace)?;
        // The real URL and the target's TLS settings: the lease is taken over the same link.
        let target = self.real_spec(id).await?.target;
        let grant = self
            .inner
            .worker
            .acquire_lease(
                target.clone(),
                AggregateType::Migration,
                id,
                actor.to_string(),
                force,
            )
            .await
            .map_err(|detail| JobError::Unusable {
                field: "target.url",
                detail,
            })?;
        let mut events: Vec<NewEvent> = started
            .into_iter()
            .map(|kind| NewEvent::migration(id, actor, kind))
            .collect();
        events.push(NewEvent::migration(
            id,
            actor,
            super::lease_event(&target.url, grant, false),
        ));
        if let Err(e) = self.commit(events).await {
            self.inner.worker.release_lease(id).await;
            return Err(e);
        }
        self.inner
            .worker
            .run_migration(self.clone(), id, None, false);
        Ok(slot.snapshot().view)
    }

    /// Begins the cutover of a live migration.
    pub async fn cutover(&self, id: Uuid, actor: &str) -> Result<MigrationView, JobError> {
        self.cutover_with(id, actor, false).await
    }

    /// Begins the cutover; outside the cutover window only with `force` (recorded).
    pub async fn cutover_with(
        &self,
        id: Uuid,
        actor: &str,
        force: bool,
    ) -> Result<MigrationView, JobError> {
        let command = Command::Cutover {
            force,
            now: chrono::Utc::now(),
        };
        let view = self.run(id, actor, command).await?;
        self.inner.worker.signal_cutover(id);
        Ok(view)
    }

    /// Cancels a migration. A running engine is asked to stop (its end records
    /// `MigrationCancelled`); anything else is cancelled at once.
    pub async fn cancel(&self, id: Uuid, actor: &str) -> Result<MigrationView, JobError> {
        let slot = self.migration_slot(id)?;
        let _guard = slot.commands.lock().await;
        let probe = Command::Cancel {
            actor: actor.to_string(),
            engine_running: false,
        };
        migration::decide(&slot.snapshot(), probe)?;
        let engine_running = self.inner.worker.signal_cancel(id, actor);
        let command = Command::Cancel {
            actor: actor.to_string(),
            engine_running,
        };
        self.decide_and_commit(&slot, id, actor, command).await?;
        Ok(slot.snapshot().view)
    }

    // ---- what the supervisor reports ----

    /// Records facts the engine reported (dropped when the migration has ended meanwhile).
    pub async fn report_migration(&self, id: Uuid, facts: Vec<EventKind>) -> Result<(), JobError> {
        self.run(id, ENGINE_ACTOR, Command::Report { facts })
            .await
            .map(drop)
    }

    /// Records the final fact of an engine run, unless the migration has ended already.
    pub async fn end_migration(
        &self,
        id: Uuid,
        actor: &str,
        fact: EventKind,
    ) -> Result<(), JobError> {
        self.run(id, actor, Command::End { fact }).await.map(drop)
    }

    /// The spec with the real URLs, for the engine and validation.
    pub async fn real_spec(&self, id: Uuid) -> Result<MigrationSpec, JobError> {
        let mut spec = self.migration(id)?.spec();
        let creds = self.credentials(id).await?;
        if let Source::Server(endpoint, ..) = &mut spec.source {
            endpoint.url = creds.source;
        }
        spec.target.url = creds.target;
        Ok(spec)
    }

    pub(super) async fn credentials(&self, id: Uuid) -> Result<Credentials, JobError> {
        self.inner
            .store
            .credentials(id)
            .await?
            .ok_or(JobError::CredentialsMissing(id))
    }

    /// The record of completed backup `id`, for a migration that reads it.
    pub fn stored_backup(&self, id: Uuid) -> Result<StoredBackup, JobError> {
        Ok(backup::stored(&self.backup_state(id)?)?)
    }

    /// Refuses a file source that cannot run: a backup that does not exist (404), one that is not
    /// complete (409 with the backup's state), or `live` mode. A new spec that asks for both is
    /// malformed (400: the documented schema says so); a PATCH whose result would be both
    /// conflicts with what the migration holds (409). A server source passes unchanged.
    fn check_source(&self, spec: &MigrationSpec, patched: bool) -> Result<(), JobError> {
        if spec.mode == Mode::DryRun && spec.source.read() == crate::spec::SourceRead::Scan {
            let detail = "a dry run reads the source's snapshot over the replication link, which \
                          a `source.read: scan` source does not offer; a dry run cannot read by \
                          SCAN yet: leave `source.read` out for the dry run (if the source allows \
                          PSYNC), or use mode `snapshot`"
                .to_string();
            return Err(source_refusal("mode", detail, patched));
        }
        let Some(backup_id) = spec.source.backup_id() else {
            return Ok(());
        };
        if spec.options.acl != crate::spec::AclMode::Ignore {
            let detail = "an RDB file holds no ACL users, so `options.acl` cannot copy any: set \
                          it to `ignore` (or migrate from the server itself)"
                .to_string();
            return Err(source_refusal("options.acl", detail, patched));
        }
        if spec.mode != Mode::Snapshot {
            let detail = "a migration from an RDB file can only run in `snapshot` mode: a file \
                          has no stream of writes to follow; set `mode` to `snapshot`"
                .to_string();
            return Err(source_refusal("mode", detail, patched));
        }
        let b = self.backup_state(backup_id)?;
        if b.status != backup::BackupStatus::Completed {
            let why = format!(
                "it is {}, not completed: choose a completed backup (GET /v1/backups) as \
                 source.rdb.backup_id",
                b.status.as_str()
            );
            return Err(backup::refusal(&b, Action::Download, Some(why)).into());
        }
        Ok(())
    }
}

/// A source that cannot run as the spec asks: malformed in a new spec (400), a conflict with
/// what the migration holds in a PATCH (409).
fn source_refusal(field: &'static str, detail: String, patched: bool) -> JobError {
    if patched {
        JobError::Unusable { field, detail }
    } else {
        JobError::Invalid {
            field: field.into(),
            detail,
        }
    }
}

/// Whether `url` carries the redacted password a GET shows (`***`).
fn is_redacted(url: &RedisUrl) -> bool {
    url.password.as_ref().is_some_and(|p| p.expose() == "***")
}

/// The same server and user (the password aside).
fn same_place(new: &RedisUrl, stored: &RedisUrl) -> bool {
    new.host == stored.host
        && new.port == stored.port
        && new.username == stored.username
        && new.tls == stored.tls
}

/// A PATCH that sends back the redacted URL it got from a GET (`***` as the password) means
/// "keep the password": restore it from the stored URL when the rest of the address is the same.
/// For another server it means nothing (a stored password is never sent to a new host), and
/// is refused rather than tried as the password `***`.
fn keep_password(
    mut new: RedisUrl,
    stored: &RedisUrl,
    field: &'static str,
) -> Result<RedisUrl, JobError> {
    if !is_redacted(&new) {
        return Ok(new);
    }
    if !same_place(&new, stored) {
        return Err(JobError::Unusable {
            field,
            detail: format!(
                "`{field}` names another server with the redacted password `***`: the stored \
                 password belongs to {} and is not sent anywhere else; give the new server's \
                 password (or none)",
                stored.addr()
            ),
        });
    }
    new.password = stored.password.clone();
    Ok(new)
}

/// A URL naming a database is refused by name (see [`crate::spec::check_no_db`]), and so are
/// type names and database numbers the schema does not allow ([`crate::shape::check_form`]);
/// the rest of the shape's rules are validation's (`filter.matches`).
fn check_addresses(spec: &MigrationSpec) -> Result<(), JobError> {
    spec.check_addresses().map_err(|e| JobError::Invalid {
        field: e.field.into(),
        detail: e.detail,
    })?;
    let o = &spec.options;
    crate::shape::check_form(&o.filter, &o.db_map).map_err(|e| JobError::Invalid {
        field: e.field.into(),
        detail: e.detail,
    })
}
