//! The port through which the service hands out work that needs I/O.
//!
//! The service decides; the [`Worker`] does. It is implemented by [`crate::supervisor`] (which
//! runs engines, captures and restores as supervised tasks, and asks servers and disks about
//! themselves), and given to [`super::Jobs::open`] as a trait object, so `jobs` never imports the
//! code that does I/O and the dependency points one way. Long work (`run_migration`, `capture`,
//! `restore`) is started and returns at once; its outcome comes back as commands on the
//! [`super::Jobs`] handle it was given.

use std::path::PathBuf;

use futures::future::BoxFuture;
use thiserror::Error;
use uuid::Uuid;

use super::Jobs;
use crate::model::{
    AggregateType, BackupDetails, LeaseOwner, ResumePoint, ServerSummary, StoredBackup,
    ValidationReport,
};
use crate::spec::{Endpoint, MigrationSpec, OnConflict};

/// A restore to run: what to load, where, and how.
#[derive(Debug, Clone)]
pub struct RestoreWork {
    pub restore_id: Uuid,
    /// `None`: the "empty" restore point of a target that held no keys (flush, load nothing).
    pub backup_id: Option<Uuid>,
    /// The real URL (with its password), kept in memory only, and its TLS settings.
    pub target: Endpoint,
    pub on_conflict: OnConflict,
    /// Empty the target first (a rollback: what the migration wrote goes).
    pub flush_first: bool,
}

/// A lease the worker took for a writer: what the service records about it.
#[derive(Debug, Clone, PartialEq)]
pub struct LeaseGrant {
    pub owner: LeaseOwner,
    /// Who held it before `force` took it over.
    pub took_over: Option<String>,
    /// The same writer held it already (a restarted Ferry).
    pub kept: bool,
}

/// Why an upload was not stored.
#[derive(Debug, Clone, Error, PartialEq)]
pub enum UploadError {
    #[error("the file is larger than the limit of {limit} bytes; raise upload_max_bytes in the configuration")]
    TooLarge { limit: u64 },
    #[error("not a valid RDB file (byte {offset}): {message}")]
    Corrupt { offset: u64, message: String },
    #[error("{0}")]
    Io(String),
    /// As many uploads as allowed are running; the client should retry later.
    #[error("{running} uploads are running already (the limit is upload_concurrency = {running}); retry when one has finished")]
    Busy { running: usize },
    /// The disk is below its free-space floor, or the upload would not fit the backup quota.
    #[error("{0}")]
    NoSpace(String),
}

/// A stored, checked upload.
#[derive(Debug, Clone, PartialEq)]
pub struct UploadedFile {
    pub bytes: u64,
    pub details: BackupDetails,
}

/// Where an upload's bytes go while they arrive (parsed and checked as they do).
pub trait UploadSink: Send {
    fn write<'a>(&'a mut self, chunk: &'a [u8]) -> BoxFuture<'a, Result<(), UploadError>>;
    /// Checks that the file is whole, makes it durable and gives its facts.
    fn finish(self: Box<Self>) -> BoxFuture<'static, Result<UploadedFile, UploadError>>;
}

/// Everything the service needs done that involves a server, a file or a task.
pub trait Worker: Send + Sync + 'static {
    /// Runs the engine of migration `id` (or resumes it from `resume`); `cutover_now` resumes a
    /// migration that was cutting over.
    fn run_migration(&self, jobs: Jobs, id: Uuid, resume: Option<ResumePoint>, cutover_now: bool);
    /// Asks a running engine to cut over. Whether one was running.
    fn signal_cutover(&self, id: Uuid) -> bool;
    /// Hands a running engine new rate limits (already recorded). Whether one was running.
    fn signal_limits(&self, id: Uuid, limits: crate::spec::Limits) -> bool;
    /// Starts validated migration `id` at `at` (at once when it has passed) through
    /// [`Jobs::start_scheduled`], unless Ferry stops first (the next start arms it again).
    fn schedule_start(&self, jobs: Jobs, id: Uuid, at: chrono::DateTime<chrono::Utc>);
    /// Asks a running engine to stop; its end is then recorded as cancelled by `actor`. Whether
    /// one was running.
    fn signal_cancel(&self, id: Uuid, actor: &str) -> bool;
    /// Runs the pre-flight checks. `file` is the source backup's record for a file source.
    fn validate(
        &self,
        spec: MigrationSpec,
        file: Option<Result<StoredBackup, String>>,
    ) -> BoxFuture<'static, ValidationReport>;
    /// Asks a server about itself; the error says in plain words why it could not.
    fn inspect(&self, server: Endpoint) -> BoxFuture<'static, Result<ServerSummary, String>>;
    /// Whether a backup of about `estimate` bytes fits; the error says what is needed and free.
    fn check_space(&self, estimate: u64) -> Result<(), String>;
    /// Takes backup `backup_id` of `server` in a supervised task; waits for it when `wait`.
    fn capture(
        &self,
        jobs: Jobs,
        backup_id: Uuid,
        server: Endpoint,
        wait: bool,
    ) -> BoxFuture<'static, ()>;
    /// Runs a restore in a supervised task.
    fn restore(&self, jobs: Jobs, work: RestoreWork);
    /// Opens the sink of an upload that becomes backup `id`; refuses a `declared` size over the
    /// limit before anything is written.
    fn upload(
        &self,
        id: Uuid,
        declared: Option<u64>,
    ) -> BoxFuture<'static, Result<Box<dyn UploadSink>, UploadError>>;
    /// Removes the file of backup `id` (gone already is fine).
    fn remove_file(&self, id: Uuid) -> BoxFuture<'static, Result<(), String>>;
    /// Where the file of completed backup `id` is.
    fn backup_path(&self, id: Uuid) -> PathBuf;
    /// Takes the lease of `target` for writer `kind` `id` (started by `actor`), taking it over
    /// from another writer when `force`; the worker then keeps it alive until the writer ends
    /// (or [`Worker::release_lease`]). The error names who holds it, or why it could not be asked.
    fn acquire_lease(
        &self,
        target: Endpoint,
        kind: AggregateType,
        id: Uuid,
        actor: String,
        force: bool,
    ) -> BoxFuture<'static, Result<LeaseGrant, String>>;
    /// Gives up the lease taken for `id` (the command that took it was not recorded).
    fn release_lease(&self, id: Uuid) -> BoxFuture<'static, ()>;
    /// Whether new work may write to Ferry's disk: the error says why not (below the free-space
    /// floor, or the event log refuses writes).
    fn disk_ready(&self) -> Result<(), String>;
    /// Stops every task without recording anything, and waits for them.
    fn shutdown(&self) -> BoxFuture<'static, ()>;
}
