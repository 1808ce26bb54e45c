//! The migration aggregate: commands become events; state is folded from events.
//!
//! [`Jobs`] is what the API and the CLI talk to. Each command (create, update, validate, start,
//! cutover, cancel) follows the same three steps, under that migration's command lock so that two
//! requests cannot both pass the check:
//!
//! 1. look at the current state (a fold of the events, kept in memory) and ask [`state::allowed`];
//! 2. refuse with [`JobError::Conflict`], which names what the state *does* allow, or append the
//!    new events durably;
//! 3. fold the stored events into the in-memory view ([`projection::apply`]).
//!
//! Reads never wait for a command: they clone the current view. At start-up, [`Jobs::open`] folds
//! the whole log and hands the jobs that were running to the [`supervisor`], which resumes them.

pub mod projection;
mod rdb_source;
mod restore_point;
pub mod state;
pub mod supervisor;

use std::collections::BTreeMap;
use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, RwLock};
use std::time::Duration;

use serde::Deserialize;
use thiserror::Error;
use utoipa::ToSchema;
use uuid::Uuid;

use crate::redis_url::RedisUrl;
use crate::spec::{Endpoint, MigrationSpec, Mode, OnConflict, Options, Source, Verify};
use crate::store::event::{Event, EventKind, ValidationReport, VerificationReport};
use crate::store::{Credentials, NewEvent, Store, StoreError};

pub use projection::{Migration, MigrationView};
pub use state::{Action, Phase, State};
pub use supervisor::{real_engine, real_engine_with, EngineFn};

/// A validation that takes longer than this is reported as failed (validate bounds its own
/// checks far below this; this is the backstop).
const VALIDATION_TIMEOUT: Duration = Duration::from_secs(120);

#[derive(Debug, Error)]
pub enum JobError {
    #[error("migration {0} does not exist")]
    NotFound(Uuid),
    #[error("cannot {action} a migration that is {state}{}", allowed_hint(.allowed))]
    Conflict {
        id: Uuid,
        state: State,
        action: &'static str,
        allowed: Vec<Action>,
    },
    #[error("{0}")]
    Busy(String),
    #[error("the credentials of migration {0} are missing; create the migration again")]
    CredentialsMissing(Uuid),
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error(transparent)]
    Backup(#[from] crate::backup::BackupError),
    /// The request cannot work as written; `field` names what to change.
    #[error("{detail}")]
    Invalid { field: &'static str, detail: String },
}

fn allowed_hint(allowed: &[Action]) -> String {
    if allowed.is_empty() {
        "; it is final and allows no further action".to_string()
    } else {
        let names: Vec<&str> = allowed.iter().map(|a| a.as_str()).collect();
        format!("; allowed now: {}", names.join(", "))
    }
}

/// Body of `PATCH /v1/migrations/{id}`: the fields to change; the rest stays.
#[derive(Debug, Clone, Default, PartialEq, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
#[schema(example = json!({"name": "renamed", "options": {"verify": "full"}}))]
pub struct MigrationPatch {
    pub name: Option<String>,
    /// `{url}` or `{rdb: {backup_id}}`.
    #[schema(value_type = Option<crate::spec::SourceBody>)]
    pub source: Option<Source>,
    pub target: Option<Endpoint>,
    pub mode: Option<Mode>,
    pub options: Option<OptionsPatch>,
}

/// The options to change; absent fields keep their value.
#[derive(Debug, Clone, Default, PartialEq, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct OptionsPatch {
    pub on_conflict: Option<OnConflict>,
    pub backup: Option<bool>,
    pub verify: Option<Verify>,
    pub pause_source_writes_on_cutover: Option<bool>,
    pub auto_cutover: Option<bool>,
    pub transfer: Option<crate::spec::Transfer>,
}

impl OptionsPatch {
    fn apply(&self, o: &mut Options) {
        o.on_conflict = self.on_conflict.unwrap_or(o.on_conflict);
        o.backup = self.backup.unwrap_or(o.backup);
        o.verify = self.verify.unwrap_or(o.verify);
        o.pause_source_writes_on_cutover = self
            .pause_source_writes_on_cutover
            .unwrap_or(o.pause_source_writes_on_cutover);
        o.auto_cutover = self.auto_cutover.unwrap_or(o.auto_cutover);
        o.transfer = self.transfer.unwrap_or(o.transfer);
    }
}

/// One migration in memory: its folded state and the lock its commands take.
struct Entry {
    /// Held by a command from its check to the fold of its events.
    commands: tokio::sync::Mutex<()>,
    state: RwLock<Migration>,
    /// A validation is running (not persisted: after a restart none is).
    validating: AtomicBool,
}

impl Entry {
    fn snapshot(&self) -> Migration {
        self.state.read().unwrap_or_else(|p| p.into_inner()).clone()
    }
}

/// The migrations, their commands and queries. Cheap to clone.
#[derive(Clone)]
pub struct Jobs {
    inner: Arc<Inner>,
}

struct Inner {
    store: Store,
    /// Validation measures the free space here (restore points and spool live in it).
    data_dir: std::path::PathBuf,
    migrations: RwLock<BTreeMap<Uuid, Arc<Entry>>>,
    supervisor: supervisor::Supervisor,
    backups: crate::backup::Backups,
    /// The relay listener's settings, which validation needs to judge a relay's reachability.
    relay: RwLock<crate::relay::RelaySettings>,
}

/// What the start-up fold found.
#[derive(Debug, Default, Clone, Copy)]
pub struct FoldStats {
    pub events: u64,
    pub migrations: usize,
    /// Events that could not be folded (logged and skipped).
    pub skipped: u64,
}

impl Jobs {
    /// Opens the store in `data_dir`, folds the log and resumes the jobs that were running.
    pub async fn open(data_dir: &Path) -> Result<(Jobs, FoldStats), JobError> {
        Self::open_with_engine(data_dir, supervisor::real_engine()).await
    }

    /// [`Jobs::open`] with another engine (tests script one).
    pub async fn open_with_engine(
        data_dir: &Path,
        engine: supervisor::EngineFn,
    ) -> Result<(Jobs, FoldStats), JobError> {
        let dir = data_dir.to_path_buf();
        let store = tokio::task::spawn_blocking(move || {
            let store = Store::open(&dir)?;
            let (migrations, stats) = fold_all(&store)?;
            let backups = crate::backup::Backups::open(store.clone(), &dir)?;
            Ok::<_, StoreError>((store, migrations, stats, backups))
        })
        .await
        .map_err(|e| StoreError::Join(e.to_string()))??;
        let (store, migrations, stats, backups) = (store.0, store.1, store.2, store.3);
        if let Err(e) = backups.recover().await {
            tracing::error!(error = %e, "could not record interrupted backups");
        }
        let entries = migrations
            .into_iter()
            .map(|(id, m)| {
                let entry = Entry {
                    commands: tokio::sync::Mutex::new(()),
                    state: RwLock::new(m),
                    validating: AtomicBool::new(false),
                };
                (id, Arc::new(entry))
            })
            .collect();
        let jobs = Jobs {
            inner: Arc::new(Inner {
                store,
                data_dir: data_dir.to_path_buf(),
                migrations: RwLock::new(entries),
                supervisor: supervisor::Supervisor::new(engine),
                backups,
                relay: RwLock::new(crate::relay::RelaySettings::default()),
            }),
        };
        jobs.resume_running();
        Ok((jobs, stats))
    }

    /// The underlying store (for event queries and subscriptions).
    pub fn store(&self) -> &Store {
        &self.inner.store
    }

    /// Backups and restore points, in the same log.
    /// Tells validation where the relay listener is (the engine gets it through its tuning).
    pub fn set_relay_settings(&self, settings: crate::relay::RelaySettings) {
        *self.inner.relay.write().unwrap_or_else(|p| p.into_inner()) = settings;
    }

    pub fn backups(&self) -> &crate::backup::Backups {
        &self.inner.backups
    }

    /// Stops the engine tasks without recording anything, so that the next start resumes them,
    /// and waits for them to finish.
    pub async fn shutdown(&self) {
        self.inner.supervisor.shutdown().await;
    }

    fn entry(&self, id: Uuid) -> Result<Arc<Entry>, JobError> {
        self.inner
            .migrations
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .get(&id)
            .cloned()
            .ok_or(JobError::NotFound(id))
    }

    // ---- queries ----

    pub fn get(&self, id: Uuid) -> Result<MigrationView, JobError> {
        Ok(self.entry(id)?.snapshot().view)
    }

    /// Every migration, oldest first, optionally only those in `state`.
    pub fn list(&self, state: Option<State>) -> Vec<MigrationView> {
        let entries: Vec<Arc<Entry>> = self
            .inner
            .migrations
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .values()
            .cloned()
            .collect();
        entries
            .iter()
            .map(|e| e.snapshot().view)
            .filter(|v| state.is_none_or(|s| v.state == s))
            .collect()
    }

    /// The verification report of a migration, once the engine has verified it.
    pub fn verification(&self, id: Uuid) -> Result<Option<VerificationReport>, JobError> {
        Ok(self.entry(id)?.snapshot().verification)
    }

    pub async fn events(&self, id: Uuid, after: u64, limit: usize) -> Result<Vec<Event>, JobError> {
        self.entry(id)?;
        Ok(self.inner.store.migration_events(id, after, limit).await?)
    }

    // ---- commands ----

    /// Records a new migration. Its credentials go to the encrypted store first, so a recorded
    /// migration can always run.
    pub async fn create(
        &self,
        spec: MigrationSpec,
        actor: &str,
    ) -> Result<MigrationView, JobError> {
        self.check_source(&spec)?;
        let id = Uuid::now_v7();
        // A file source has no secret; the sealed record needs a source URL all the same, so it
        // holds the target's again (never read back: `real_spec` keeps the `rdb` source).
        let creds = Credentials {
            source: spec.source.url().unwrap_or(&spec.target.url).clone(),
            target: spec.target.url.clone(),
        };
        self.inner.store.put_credentials(id, creds).await?;
        let event = self
            .inner
            .store
            .append_one(NewEvent::new(
                id,
                actor,
                EventKind::MigrationCreated { spec },
            ))
            .await?;
        let migration = projection::apply(None, &event).map_err(|e| StoreError::Decode {
            seq: event.seq,
            message: e.to_string(),
        })?;
        let view = migration.view.clone();
        let entry = Arc::new(Entry {
            commands: tokio::sync::Mutex::new(()),
            state: RwLock::new(migration),
            validating: AtomicBool::new(false),
        });
        self.inner
            .migrations
            .write()
            .unwrap_or_else(|p| p.into_inner())
            .insert(id, entry);
        Ok(view)
    }

    /// Changes the spec before start; the migration must be validated again.
    pub async fn update(
        &self,
        id: Uuid,
        patch: MigrationPatch,
        actor: &str,
    ) -> Result<MigrationView, JobError> {
        let entry = self.entry(id)?;
        let _guard = entry.commands.lock().await;
        let current = entry.snapshot();
        check(&current, Action::Update, "update")?;
        let creds = self.credentials(id).await?;
        let mut spec = current.spec();
        if let Source::Url(url) = &mut spec.source {
            *url = creds.source.clone();
        }
        spec.target.url = creds.target.clone();
        if let Some(name) = patch.name {
            spec.name = Some(name);
        }
        match patch.source {
            Some(Source::Url(url)) => spec.source = Source::Url(keep_password(url, &creds.source)),
            Some(file) => spec.source = file,
            None => {}
        }
        if let Some(target) = patch.target {
            spec.target.url = keep_password(target.url, &creds.target);
        }
        if let Some(mode) = patch.mode {
            spec.mode = mode;
        }
        if let Some(options) = &patch.options {
            options.apply(&mut spec.options);
        }
        self.check_source(&spec)?;
        let new_creds = Credentials {
            source: spec.source.url().unwrap_or(&spec.target.url).clone(),
            target: spec.target.url.clone(),
        };
        if new_creds != creds {
            self.inner.store.put_credentials(id, new_creds).await?;
        }
        self.commit(
            &entry,
            vec![NewEvent::new(
                id,
                actor,
                EventKind::MigrationUpdated { spec },
            )],
        )
        .await?;
        Ok(entry.snapshot().view)
    }

    /// Runs the pre-flight checks and records their report. The command lock is not held while
    /// the checks run (they can take seconds); if the migration changes meanwhile (PATCH,
    /// cancel), the stale report is not recorded.
    pub async fn validate(&self, id: Uuid, actor: &str) -> Result<ValidationReport, JobError> {
        let entry = self.entry(id)?;
        let started_version = {
            let _guard = entry.commands.lock().await;
            let current = entry.snapshot();
            check(&current, Action::Validate, "validate")?;
            if entry.validating.swap(true, Ordering::SeqCst) {
                return Err(JobError::Busy(format!(
                    "migration {id} is being validated already; wait for that report"
                )));
            }
            let started = self
                .commit(
                    &entry,
                    vec![NewEvent::new(id, actor, EventKind::ValidationStarted {})],
                )
                .await;
            if let Err(e) = started {
                entry.validating.store(false, Ordering::SeqCst);
                return Err(e);
            }
            entry.snapshot().version
        };
        let outcome = self.run_checks(id).await;
        let _guard = entry.commands.lock().await;
        entry.validating.store(false, Ordering::SeqCst);
        let report = outcome?;
        let current = entry.snapshot();
        if current.version != started_version {
            return Err(JobError::Busy(format!(
                "migration {id} changed while it was validated (it is {} now); validate it again",
                current.view.state.as_str()
            )));
        }
        let kind = EventKind::ValidationCompleted {
            report: report.clone(),
        };
        self.commit(&entry, vec![NewEvent::new(id, actor, kind)])
            .await?;
        Ok(report)
    }

    async fn run_checks(&self, id: Uuid) -> Result<ValidationReport, JobError> {
        let spec = self.real_spec(id).await?;
        let mut ctx = crate::validate::ValidateContext::new(&self.inner.data_dir);
        ctx.relay = self
            .inner
            .relay
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .clone();
        let checks = async {
            match spec.source.backup_id() {
                Some(backup_id) => self.validate_file_source(&spec, backup_id, &ctx).await,
                None => crate::validate::run_with(&spec, &ctx).await,
            }
        };
        match tokio::time::timeout(VALIDATION_TIMEOUT, checks).await {
            Ok(report) => Ok(report),
            Err(_) => Ok(ValidationReport::from_checks(vec![
                crate::store::event::CheckResult {
                    id: "validation.timeout".into(),
                    status: crate::store::event::CheckStatus::Fail,
                    message: format!(
                        "the checks did not finish within {}s; check that both servers answer",
                        VALIDATION_TIMEOUT.as_secs()
                    ),
                    details: None,
                },
            ])),
        }
    }

    /// Starts a validated migration: records `MigrationStarted` and hands it to the engine.
    pub async fn start(&self, id: Uuid, actor: &str) -> Result<MigrationView, JobError> {
        let entry = self.entry(id)?;
        let _guard = entry.commands.lock().await;
        check(&entry.snapshot(), Action::Start, "start")?;
        self.commit(
            &entry,
            vec![NewEvent::new(id, actor, EventKind::MigrationStarted {})],
        )
        .await?;
        self.launch(id, None, None, false);
        Ok(entry.snapshot().view)
    }

    /// Begins the cutover of a live migration.
    pub async fn cutover(&self, id: Uuid, actor: &str) -> Result<MigrationView, JobError> {
        let entry = self.entry(id)?;
        let _guard = entry.commands.lock().await;
        let current = entry.snapshot();
        check(&current, Action::Cutover, "cut over")?;
        let kind = EventKind::CutoverStarted {
            pause_source_writes: current.view.options.pause_source_writes_on_cutover,
        };
        self.commit(&entry, vec![NewEvent::new(id, actor, kind)])
            .await?;
        self.inner.supervisor.cutover(id);
        Ok(entry.snapshot().view)
    }

    /// Cancels a migration. A running engine is asked to stop (the supervisor records
    /// `MigrationCancelled` when it has); anything else is cancelled at once.
    pub async fn cancel(&self, id: Uuid, actor: &str) -> Result<MigrationView, JobError> {
        let entry = self.entry(id)?;
        let _guard = entry.commands.lock().await;
        check(&entry.snapshot(), Action::Cancel, "cancel")?;
        if !self.inner.supervisor.cancel(id, actor) {
            let kind = EventKind::MigrationCancelled {
                reason: Some(format!("cancelled by {actor}")),
            };
            self.commit(&entry, vec![NewEvent::new(id, actor, kind)])
                .await?;
        }
        Ok(entry.snapshot().view)
    }

    // ---- internals shared with the supervisor ----

    /// Appends `events` and folds them in. The caller holds the entry's command lock.
    async fn commit(&self, entry: &Entry, events: Vec<NewEvent>) -> Result<(), JobError> {
        let stored = self.inner.store.append(events).await?;
        let mut state = entry.state.write().unwrap_or_else(|p| p.into_inner());
        for event in &stored {
            projection::apply_to(&mut state, event);
        }
        Ok(())
    }

    /// Records what the engine reported, unless the job has ended meanwhile.
    async fn record_engine_events(&self, id: Uuid, kinds: Vec<EventKind>) -> Result<(), JobError> {
        let entry = self.entry(id)?;
        let _guard = entry.commands.lock().await;
        if entry.snapshot().view.state.is_final() {
            tracing::warn!(migration = %id, dropped = kinds.len(), "engine events after the job ended");
            return Ok(());
        }
        let events = kinds
            .into_iter()
            .map(|k| NewEvent::new(id, supervisor::ENGINE_ACTOR, k))
            .collect();
        self.commit(&entry, events).await
    }

    /// Records the final event of an engine run, unless the job has ended already.
    async fn record_end(&self, id: Uuid, actor: &str, kind: EventKind) -> Result<(), JobError> {
        let entry = self.entry(id)?;
        let _guard = entry.commands.lock().await;
        if entry.snapshot().view.state.is_final() {
            return Ok(());
        }
        self.commit(&entry, vec![NewEvent::new(id, actor, kind)])
            .await
    }

    async fn credentials(&self, id: Uuid) -> Result<Credentials, JobError> {
        self.inner
            .store
            .credentials(id)
            .await?
            .ok_or(JobError::CredentialsMissing(id))
    }

    /// The spec with the real URLs, for the engine and validation.
    async fn real_spec(&self, id: Uuid) -> Result<MigrationSpec, JobError> {
        let mut spec = self.entry(id)?.snapshot().spec();
        let creds = self.credentials(id).await?;
        if let Source::Url(url) = &mut spec.source {
            *url = creds.source;
        }
        spec.target.url = creds.target;
        Ok(spec)
    }

    fn resume_running(&self) {
        let running: Vec<(Uuid, Migration)> = self
            .inner
            .migrations
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .iter()
            .map(|(id, e)| (*id, e.snapshot()))
            .filter(|(_, m)| m.view.state.is_running())
            .collect();
        for (id, m) in running {
            tracing::info!(migration = %id, state = m.view.state.as_str(), resume = ?m.resume, "resuming");
            self.launch(
                id,
                m.resume.clone(),
                m.transfer.clone(),
                m.view.state == State::CuttingOver,
            );
        }
    }
}

/// Refuses `action` unless the state allows it.
fn check(m: &Migration, action: Action, verb: &'static str) -> Result<(), JobError> {
    let allowed = state::allowed(m.view.state, m.view.mode);
    if allowed.contains(&action) {
        Ok(())
    } else {
        Err(JobError::Conflict {
            id: m.view.id,
            state: m.view.state,
            action: verb,
            allowed,
        })
    }
}

/// A PATCH that sends back the redacted URL it got from a GET (`***` as the password) means
/// "keep the password": restore it from the stored URL when the rest of the address is the same.
fn keep_password(mut new: RedisUrl, stored: &RedisUrl) -> RedisUrl {
    let redacted = new.password.as_ref().is_some_and(|p| p.expose() == "***");
    let same_place = new.host == stored.host
        && new.port == stored.port
        && new.username == stored.username
        && new.tls == stored.tls;
    if redacted && same_place {
        new.password = stored.password.clone();
    }
    new
}

/// Folds the whole log into one [`Migration`] per id.
pub fn fold_all(store: &Store) -> Result<(BTreeMap<Uuid, Migration>, FoldStats), StoreError> {
    let mut migrations: BTreeMap<Uuid, Migration> = BTreeMap::new();
    let mut stats = FoldStats::default();
    store.for_each_event(|event| {
        stats.events += 1;
        let folded = match migrations.get_mut(&event.migration_id) {
            Some(m) => match event.kind {
                EventKind::MigrationCreated { .. } => Err(projection::FoldError::CreatedTwice {
                    seq: event.seq,
                    id: event.migration_id,
                }),
                _ => {
                    projection::apply_to(m, &event);
                    Ok(())
                }
            },
            // Backup events under a backup's own id belong to `backup`'s fold, not to a migration.
            None if event.kind.backup_id().is_some() => Ok(()),
            None => projection::apply(None, &event).map(|m| {
                migrations.insert(event.migration_id, m);
            }),
        };
        if let Err(e) = folded {
            stats.skipped += 1;
            tracing::error!(error = %e, "skipping an event that does not fold");
        }
    })?;
    stats.migrations = migrations.len();
    Ok((migrations, stats))
}

#[cfg(test)]
mod tests;
