//! The supervisor: runs the long work as tasks, and does every bit of I/O the service asks for.
//!
//! It implements [`Worker`], the port of [`crate::jobs`]: the service decides and records, then
//! hands the supervisor what to run (an engine per migration, a capture per backup, a restore) or
//! what to look at (a server before a backup or a restore, the free disk). Tasks report only by
//! calling the service's commands (`report_*`, `end_*`), which decide and record like any other
//! command, so progress reaches the views only through events and survives a restart.
//!
//! The arrows: `supervisor → jobs` (commands), `supervisor → engine · backup · validate · client`
//! (I/O). `jobs` holds the supervisor only as `Arc<dyn Worker>`, so nothing points back.
//!
//! Shutting Ferry down is not cancelling anything. [`Worker::shutdown`] drops the tasks without
//! recording anything, exactly as a crash would; at the next start the service resumes running
//! migrations from their last checkpoint and records interrupted captures and restores as failed.
//! The engine has to be crash-safe anyway; this way a graceful stop takes the same, tested path.

mod dry_run;
mod lease;
mod migration;
mod tasks;
#[cfg(test)]
mod tests;

pub use migration::{real_engine, real_engine_with, EngineFn};

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use futures::future::BoxFuture;
use futures::FutureExt;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;
use uuid::Uuid;

use crate::engine::Controls;
use crate::jobs::{
    FoldStats, JobError, Jobs, LeaseGrant, RestoreWork, UploadError, UploadSink, Worker,
};
use crate::model::{
    AggregateType, CheckResult, CheckStatus, ResumePoint, ServerSummary, StoredBackup,
    ValidationReport,
};
use crate::spec::{Endpoint, MigrationSpec};
use crate::store::{Store, StoreError};
use crate::transport::Peer;

/// A validation that takes longer than this is reported as failed (validate bounds its own
/// checks far below this; this is the backstop).
const VALIDATION_TIMEOUT: Duration = Duration::from_secs(120);

/// How long a look at a server (before a backup or a restore) may take.
const INSPECT_TIMEOUT: Duration = Duration::from_secs(10);

/// Size limits from the configuration.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BackupLimits {
    /// The largest backup Ferry stores (free disk space applies too).
    pub max_bytes: u64,
    /// The largest uploaded RDB accepted.
    pub upload_max_bytes: u64,
    /// How many uploads may run at once.
    pub upload_concurrency: usize,
    /// The free space kept in the data dir: below it no new work starts, and captures and
    /// uploads never go below it.
    pub min_free_bytes: u64,
    /// The longest string an uploaded RDB may decompress to.
    pub max_decompressed_bytes: u64,
}

impl Default for BackupLimits {
    fn default() -> Self {
        BackupLimits {
            max_bytes: u64::MAX,
            upload_max_bytes: 1 << 30,
            upload_concurrency: 2,
            min_free_bytes: 256 << 20,
            max_decompressed_bytes: crate::rdb::DEFAULT_MAX_DECOMPRESSED_BYTES,
        }
    }
}

/// What the supervisor needs to know.
#[derive(Clone)]
pub struct SupervisorConfig {
    /// Ferry's data directory: backups live in `backups/` under it; validation measures it.
    pub data_dir: PathBuf,
    /// The transfer engine ([`real_engine`] in production).
    pub engine: EngineFn,
    pub limits: BackupLimits,
    /// Where the relay listener is (`[relay]`): validation judges a relay's reachability by it.
    /// The engine gets the same settings through its tuning ([`real_engine_with`]).
    pub relay: crate::relay::RelaySettings,
}

/// The supervisor. Cheap to clone.
#[derive(Clone)]
pub struct Supervisor {
    inner: Arc<Inner>,
}

struct Inner {
    config: SupervisorConfig,
    /// This Ferry's id (`data_dir/instance-id`): the owner of its leases, across restarts.
    instance: Uuid,
    running: Mutex<HashMap<Uuid, Arc<Running>>>,
    /// Leases taken by a command, kept alive until their writer's task takes them over.
    leases: Mutex<HashMap<Uuid, crate::client::lease::LeaseKeeper>>,
    /// One permit per upload that may run at once.
    uploads: Arc<tokio::sync::Semaphore>,
    tasks: TaskTracker,
    shutdown: CancellationToken,
}

/// Waits until `at`, then starts migration `id` as the scheduler. A refusal (cancelled, changed,
/// started by hand meanwhile) records nothing and is only logged.
async fn scheduled_start(jobs: Jobs, id: Uuid, at: chrono::DateTime<chrono::Utc>) {
    // Slept in slices against the wall clock, which is what `start_at` is about (a suspended
    // host or a stepped clock does not shift the start).
    loop {
        let left = (at - chrono::Utc::now()).num_milliseconds();
        if left <= 0 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(left.min(1000) as u64)).await;
    }
    match jobs.start_scheduled(id, at).await {
        Ok(_) => tracing::info!(migration = %id, start_at = %at, "started as scheduled"),
        Err(e) => tracing::info!(migration = %id, error = %e, "scheduled start not made"),
    }
}

/// A running engine and how to reach it.
struct Running {
    controls: Controls,
    /// Who asked to cancel; the actor of `MigrationCancelled`.
    cancelled_by: Mutex<Option<String>>,
}

/// Opens the store in `config.data_dir`, folds it, sweeps what a crash left half-written, and
/// deals with interrupted work (see [`Jobs::recover`]). The service is ready when this returns.
pub async fn open(config: SupervisorConfig) -> Result<(Jobs, FoldStats), JobError> {
    let supervisor = Supervisor::new(config).map_err(|e| {
        JobError::Io(format!(
            "cannot prepare the data directory (instance id): {e}"
        ))
    })?;
    let dir = supervisor.inner.config.data_dir.clone();
    let worker: Arc<dyn Worker> = Arc::new(supervisor.clone());
    let (jobs, stats) = tokio::task::spawn_blocking(move || {
        let store = Store::open(&dir)?;
        Jobs::open(store, worker)
    })
    .await
    .map_err(|e| StoreError::Join(e.to_string()))??;
    let swept = crate::backup::file::sweep_partials(&supervisor.backups_dir());
    if swept > 0 {
        tracing::warn!(
            files = swept,
            "removed partial backup files left by a crash"
        );
    }
    jobs.recover().await?;
    Ok((jobs, stats))
}

impl Supervisor {
    /// A supervisor for `config`; creates the data dir (0700) and this Ferry's instance id.
    pub fn new(config: SupervisorConfig) -> std::io::Result<Self> {
        let instance = lease::instance_id(&config.data_dir)?;
        crate::disk::private_dir(&backups_dir(&config.data_dir))?;
        let uploads = Arc::new(tokio::sync::Semaphore::new(
            config.limits.upload_concurrency.max(1),
        ));
        Ok(Supervisor {
            inner: Arc::new(Inner {
                config,
                instance,
                running: Mutex::default(),
                leases: Mutex::default(),
                uploads,
                tasks: TaskTracker::new(),
                shutdown: CancellationToken::new(),
            }),
        })
    }

    /// Why the data dir cannot take new work now: below its free-space floor. `None`: it can.
    fn disk_trouble(&self) -> Option<String> {
        let dir = &self.inner.config.data_dir;
        let floor = self.limits().min_free_bytes;
        match crate::disk::free_bytes(dir) {
            Ok(free) if free < floor => Some(format!(
                "only {free} bytes are free in {}, below the floor of min_free_bytes = {floor}: \
                 free disk space (Ferry takes new work again by itself once there is enough)",
                dir.display()
            )),
            Ok(_) => None,
            Err(e) => Some(format!(
                "cannot measure the free space of {}: {e}",
                dir.display()
            )),
        }
    }

    fn backups_dir(&self) -> PathBuf {
        self.inner.config.data_dir.join("backups")
    }

    fn limits(&self) -> BackupLimits {
        self.inner.config.limits
    }

    fn running(&self, id: Uuid) -> Option<Arc<Running>> {
        self.inner
            .running
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .get(&id)
            .cloned()
    }

    /// Spawns a supervised task: dropped at shutdown, waited for by [`Worker::shutdown`].
    fn spawn(
        &self,
        what: &'static str,
        work: impl std::future::Future<Output = ()> + Send + 'static,
    ) {
        if self.inner.shutdown.is_cancelled() {
            return;
        }
        let shutdown = self.inner.shutdown.clone();
        self.inner.tasks.spawn(async move {
            tokio::select! {
                () = work => {}
                () = shutdown.cancelled() => {
                    tracing::info!(task = what, "stopped for shutdown");
                }
            }
        });
    }
}

impl Worker for Supervisor {
    fn run_migration(&self, jobs: Jobs, id: Uuid, resume: Option<ResumePoint>, cutover_now: bool) {
        self.launch(jobs, id, resume, cutover_now);
    }

    fn signal_cutover(&self, id: Uuid) -> bool {
        self.running(id)
            .map(|r| r.controls.cutover.cancel())
            .is_some()
    }

    fn signal_limits(&self, id: Uuid, limits: crate::spec::Limits) -> bool {
        self.running(id)
            .map(|r| r.controls.limits.send_replace(Some(limits)))
            .is_some()
    }

    fn schedule_start(&self, jobs: Jobs, id: Uuid, at: chrono::DateTime<chrono::Utc>) {
        self.spawn("scheduled start", scheduled_start(jobs, id, at));
    }

    fn signal_cancel(&self, id: Uuid, actor: &str) -> bool {
        match self.running(id) {
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

    fn validate(
        &self,
        spec: MigrationSpec,
        file: Option<Result<StoredBackup, String>>,
    ) -> BoxFuture<'static, ValidationReport> {
        let mut ctx = crate::validate::ValidateContext::new(&self.inner.config.data_dir);
        ctx.relay = self.inner.config.relay.clone();
        async move {
            let checks = async {
                match file {
                    Some(backup) => crate::validate::from_file::run(&spec, backup, &ctx).await,
                    None => crate::validate::run_with(&spec, &ctx).await,
                }
            };
            match tokio::time::timeout(VALIDATION_TIMEOUT, checks).await {
                Ok(report) => report,
                Err(_) => ValidationReport::from_checks(vec![CheckResult {
                    id: "validation.timeout".into(),
                    status: CheckStatus::Fail,
                    message: format!(
                        "the checks did not finish within {}s; check that both servers answer",
                        VALIDATION_TIMEOUT.as_secs()
                    ),
                    details: None,
                }]),
            }
        }
        .boxed()
    }

    fn inspect(&self, server: Endpoint) -> BoxFuture<'static, Result<ServerSummary, String>> {
        async move {
            let url = &server.url;
            let addr = url.addr();
            let asked = async {
                let peer = Peer::new(&server).map_err(crate::client::ClientError::from)?;
                crate::backup::capture::server_summary(&peer).await
            };
            match tokio::time::timeout(INSPECT_TIMEOUT, asked).await {
                Ok(Ok(summary)) => Ok(summary),
                Ok(Err(e)) => Err(crate::client::scrub(&e.to_string(), url)),
                Err(_) => Err(format!(
                    "no answer from {addr} within {}s; check the host, the port and the firewall",
                    INSPECT_TIMEOUT.as_secs()
                )),
            }
        }
        .boxed()
    }

    fn check_space(&self, estimate: u64) -> Result<(), String> {
        if let Some(trouble) = self.disk_trouble() {
            return Err(trouble);
        }
        let limits = self.limits();
        crate::backup::capture::check_space(
            &self.backups_dir(),
            limits.max_bytes,
            limits.min_free_bytes,
            estimate,
        )
        .map_err(|e| e.to_string())
    }

    fn capture(
        &self,
        jobs: Jobs,
        backup_id: Uuid,
        server: Endpoint,
        wait: bool,
    ) -> BoxFuture<'static, ()> {
        let work = tasks::capture(self.clone(), jobs, backup_id, server);
        if wait {
            work.boxed()
        } else {
            self.spawn("capture", work);
            async {}.boxed()
        }
    }

    fn restore(&self, jobs: Jobs, work: RestoreWork) {
        let path = work.backup_id.map(|b| self.backup_path(b));
        self.spawn("restore", tasks::restore(self.clone(), jobs, path, work));
    }

    fn upload(
        &self,
        id: Uuid,
        declared: Option<u64>,
    ) -> BoxFuture<'static, Result<Box<dyn UploadSink>, UploadError>> {
        let dir = self.backups_dir();
        let limits = self.limits();
        let permit = self.inner.uploads.clone().try_acquire_owned();
        let trouble = self.disk_trouble();
        async move {
            let Ok(permit) = permit else {
                return Err(UploadError::Busy {
                    running: limits.upload_concurrency,
                });
            };
            if let Some(trouble) = trouble {
                return Err(UploadError::NoSpace(trouble));
            }
            // An upload is a backup: it counts against the quota and the free-space floor.
            let room = crate::backup::capture::available_bytes(
                &dir,
                limits.max_bytes,
                limits.min_free_bytes,
            )
            .map_err(|e| UploadError::Io(e.to_string()))?;
            let limit = limits.upload_max_bytes.min(room);
            if declared.is_some_and(|n| n > limit) {
                return Err(if limit < limits.upload_max_bytes {
                    UploadError::NoSpace(format!(
                        "the upload of {} bytes does not fit: {room} bytes may be used for \
                         backups (free space above min_free_bytes, and backup_max_bytes)",
                        declared.unwrap_or_default()
                    ))
                } else {
                    UploadError::TooLarge { limit }
                });
            }
            tasks::upload_sink(&dir, id, limit, limits.max_decompressed_bytes, permit).await
        }
        .boxed()
    }

    fn acquire_lease(
        &self,
        target: Endpoint,
        kind: AggregateType,
        id: Uuid,
        actor: String,
        force: bool,
    ) -> BoxFuture<'static, Result<LeaseGrant, String>> {
        let this = self.clone();
        async move {
            let owner = this.lease_owner(kind, id, &actor);
            // TLS files are read here, for the first connection of this writer.
            let peer = Peer::new(&target).map_err(|e| e.to_string())?;
            let (keeper, granted) = this.take_lease(&peer, owner, force).await?;
            this.hold_lease(id, keeper);
            Ok(lease::grant(&granted))
        }
        .boxed()
    }

    fn release_lease(&self, id: Uuid) -> BoxFuture<'static, ()> {
        let keeper = self.held_lease(id);
        async move {
            if let Some(keeper) = keeper {
                keeper.release().await;
            }
        }
        .boxed()
    }

    fn disk_ready(&self) -> Result<(), String> {
        match self.disk_trouble() {
            Some(trouble) => Err(trouble),
            None => Ok(()),
        }
    }

    fn remove_file(&self, id: Uuid) -> BoxFuture<'static, Result<(), String>> {
        let path = self.backup_path(id);
        async move {
            match tokio::fs::remove_file(&path).await {
                Ok(()) => Ok(()),
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
                Err(e) => Err(format!("cannot remove {}: {e}", path.display())),
            }
        }
        .boxed()
    }

    fn backup_path(&self, id: Uuid) -> PathBuf {
        crate::backup::file::final_path(&self.backups_dir(), id)
    }

    fn shutdown(&self) -> BoxFuture<'static, ()> {
        let inner = self.inner.clone();
        async move {
            inner.shutdown.cancel();
            inner.tasks.close();
            inner.tasks.wait().await;
        }
        .boxed()
    }
}

/// The data directory's backup folder (for tests and tools).
pub fn backups_dir(data_dir: &Path) -> PathBuf {
    data_dir.join("backups")
}
