//! Pre-flight checks: catch, before anything is written, what would break the migration.
//!
//! Most failed migrations fail for reasons visible beforehand: a target too small, a source that
//! forbids PSYNC, an output buffer that makes the sync loop, a missing module, or a target that is
//! the source itself. Validation runs in two steps:
//!
//! 1. **Gather** ([`facts`]): connect to both servers *concurrently* and read every fact once (INFO,
//!    CONFIG GET, MODULE LIST, COMMAND INFO, ACL DRYRUN on ≥ 7.0), each call under a timeout. A dead
//!    server costs at most [`CONNECT_TIMEOUT`]; a live but stalled one at most [`GATHER_BUDGET`],
//!    however many rounds of calls remain. Then measure free disk on this host ([`disk`]), under
//!    [`DISK_TIMEOUT`]. So the endpoint answers within 9 s whatever the servers do.
//! 2. **Decide** ([`checks`]): one pure function per check id turns the facts into a
//!    [`CheckResult`](crate::model::CheckResult). A fact that could not be read (a renamed
//!    `CONFIG`, say) makes the checks that need it warn, naming the command.
//!
//! [`run`] never fails: every problem is a check result. The guide ([`guide`]) explains each id.

pub mod checks;
pub mod cluster_facts;
pub mod conn;
mod dry_run;

pub mod error;
pub mod facts;
pub mod filter_sample;
pub mod from_file;
pub mod guide;
pub mod permissions;
mod reply;

use std::path::PathBuf;
use std::time::Duration;

use crate::disk;
use crate::model::ValidationReport;
use crate::spec::MigrationSpec;
use checks::{Inputs, LocalFacts};
use conn::ConnectOptions;
use error::Side;
use facts::ServerFacts;

/// How long one connection attempt (TCP, TLS, AUTH, PING) may take.
pub const CONNECT_TIMEOUT: Duration = Duration::from_secs(3);
/// How long one admin command may take once connected.
pub const CALL_TIMEOUT: Duration = Duration::from_secs(3);
/// How long everything with one server may take, connecting included. Both servers are gathered
/// concurrently, so this plus [`DISK_TIMEOUT`] bounds the whole validation: 9 s.
pub const GATHER_BUDGET: Duration = Duration::from_secs(8);
/// How long measuring free disk space on this host may take.
pub const DISK_TIMEOUT: Duration = Duration::from_secs(1);

/// What validation needs besides the spec.
#[derive(Debug, Clone)]
pub struct ValidateContext {
    /// Ferry's own data directory: restore points and spool go there, so its free space is checked.
    pub data_dir: PathBuf,
    pub connect_timeout: Duration,
    pub call_timeout: Duration,
    /// Everything with one server, connecting included (see [`GATHER_BUDGET`]).
    pub budget: Duration,
    /// Where a relay would listen (`transfer: relay`): its advertised address must be one the
    /// target can reach.
    pub relay: crate::relay::RelaySettings,
}

impl ValidateContext {
    /// A context for `data_dir` with the default timeouts.
    pub fn new(data_dir: impl Into<PathBuf>) -> Self {
        ValidateContext {
            data_dir: data_dir.into(),
            connect_timeout: CONNECT_TIMEOUT,
            call_timeout: CALL_TIMEOUT,
            budget: GATHER_BUDGET,
            relay: crate::relay::RelaySettings::default(),
        }
    }
}

/// Runs every check for `spec`, measuring Ferry's disk at `./data`. Prefer [`run_with`], which
/// knows the configured `data_dir`.
pub async fn run(spec: &MigrationSpec) -> ValidationReport {
    run_with(spec, &ValidateContext::new("data")).await
}

/// Runs every check for `spec` and returns the report. Never fails: problems are checks that fail.
pub async fn run_with(spec: &MigrationSpec, ctx: &ValidateContext) -> ValidationReport {
    let Some(source_endpoint) = spec.source.endpoint() else {
        // A file source needs its backup's facts: `jobs` validates it with `from_file::run`.
        return from_file::missing_backup(
            "this source is an RDB file; validate the migration through the API",
        );
    };
    let options = connect_options(ctx);
    let (source, target) = tokio::join!(
        ServerFacts::gather(Side::Source, source_endpoint, &options),
        ServerFacts::gather(Side::Target, &spec.target, &options),
    );
    let local = measure_local(ctx, &target).await;
    let filter_sample = sample_filter(spec, source_endpoint, &source, &options).await;
    let inputs = Inputs {
        spec,
        source: &source,
        target: &target,
        local: &local,
        relay: &ctx.relay,
        filter_sample: filter_sample.as_ref(),
    };
    let mut results = checks::run_all(&inputs);
    if spec.mode == crate::spec::Mode::DryRun {
        dry_run::soften(&mut results);
    }
    ValidationReport::from_checks(results)
}

/// How many source keys the migration's filter selects (`filter.matches`), when it has one and
/// the source answered.
async fn sample_filter(
    spec: &MigrationSpec,
    endpoint: &crate::spec::Endpoint,
    source: &ServerFacts,
    options: &ConnectOptions,
) -> Option<Result<filter_sample::FilterSample, String>> {
    let shape = spec.shape().ok().filter(|s| s.filters())?;
    let dbs: Vec<u32> = source
        .info
        .as_ref()
        .ok()?
        .keyspace
        .keys()
        .copied()
        .collect();
    Some(filter_sample::gather(endpoint, options, &shape, &dbs).await)
}

/// Timeouts for the admin connections.
pub(crate) fn connect_options(ctx: &ValidateContext) -> ConnectOptions {
    ConnectOptions {
        connect_timeout: ctx.connect_timeout,
        call_timeout: ctx.call_timeout,
        budget: ctx.budget,
    }
}

/// Free space in Ferry's `data_dir` and, when the target runs here, under the target's `dir`.
pub(crate) async fn measure_local(ctx: &ValidateContext, target: &ServerFacts) -> LocalFacts {
    let target_dir = match &target.config {
        Ok(config) if disk::is_local_host(&target.url.host) => config.get("dir").map(PathBuf::from),
        _ => None,
    };
    let data_dir = ctx.data_dir.clone();
    // statvfs is a blocking syscall (fast, but a hung network mount would stall the runtime).
    let measured = tokio::task::spawn_blocking(move || {
        let data_dir_free = disk::free_bytes(&data_dir);
        let target_dir_free = target_dir.map(|dir| disk::free_bytes(&dir));
        (data_dir, data_dir_free, target_dir_free)
    });
    match tokio::time::timeout(DISK_TIMEOUT, measured).await {
        Ok(Ok((data_dir, data_dir_free, target_dir_free))) => LocalFacts {
            data_dir,
            data_dir_free,
            target_dir_free,
        },
        _ => LocalFacts {
            data_dir: ctx.data_dir.clone(),
            data_dir_free: Err("measuring free space timed out".into()),
            target_dir_free: Some(Err("measuring free space timed out".into())),
        },
    }
}
