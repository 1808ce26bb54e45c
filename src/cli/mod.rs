//! The `ferry` commands a person drives from a terminal: `migrate` (one migration, in this
//! process, shown as it happens), `cutover` and `cancel` (of a migration that another process
//! runs), and `audit verify`.
//!
//! `ferry migrate` is the service in miniature: it opens the data directory's store like
//! `ferry serve`, serves its control socket (see [`crate::control`]), and drives one migration
//! through the same commands the API sends, as actor `cli`. What it promises a person:
//! - progress as a bar on a terminal, plain lines in a pipe, JSON lines with `--json`;
//! - in live mode without `--auto-cutover`, how to cut over: Enter on this terminal, `SIGUSR1`,
//!   or `ferry cutover ID --data-dir …` from another shell;
//! - Ctrl-C (or SIGTERM) cancels the migration cleanly (recorded as cancelled, the target's
//!   offset key removed) and says so; a second Ctrl-C leaves at once;
//! - every error is printed once, with the CLI's own flag names in the advice.

mod display;
mod dry_run;

use std::io::IsTerminal;
use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::{anyhow, bail, Context};
use tokio::signal::unix::{signal, SignalKind};
use tokio_util::sync::CancellationToken;
use uuid::Uuid;

use crate::aggregate::migration::{MigrationView, State};
use crate::config::Settings;
use crate::control::{self, CLI_ACTOR};
use crate::jobs::{JobError, Jobs};
use crate::model::audit::AuditStatus;
use crate::model::{AggregateType, CheckStatus, EventKind, ReportStatus};
use crate::spec::{
    Endpoint, MigrationSpec, Mode, OnConflict, Options, TlsSettings, Transfer, Verify,
};
use crate::store::StoreError;
use crate::supervisor::{BackupLimits, SupervisorConfig};
use display::Display;

/// `ferry migrate`'s arguments.
#[derive(clap::Args, Debug)]
pub struct MigrateArgs {
    /// redis://[user[:password]@]host:port (a /db is refused for now)
    #[arg(long)]
    pub source: String,
    #[arg(long)]
    pub target: String,
    /// `snapshot` copies once and completes; `live` keeps applying writes until you cut over.
    #[arg(long, value_enum, default_value = "snapshot")]
    pub mode: ModeArg,
    /// What to do with a key the target already has.
    #[arg(long, value_enum, default_value = "fail")]
    pub on_conflict: ConflictArg,
    /// How much to compare after the copy.
    #[arg(long, value_enum, default_value = "sample")]
    pub verify: VerifyArg,
    /// Do not take a restore point of the target first.
    #[arg(long)]
    pub no_backup: bool,
    /// Cut over by itself once the target has caught up (live mode).
    #[arg(long)]
    pub auto_cutover: bool,
    /// Do not pause the source's writes during cutover (live mode; writes made during the
    /// switch may then be lost).
    #[arg(long)]
    pub no_pause: bool,
    /// Migrate hashes with field TTLs into a target without them, dropping the TTLs.
    #[arg(long)]
    pub drop_field_ttls: bool,
    /// Most commands a second written to the target (options.limits.max_ops_per_sec).
    #[arg(long, value_parser = clap::value_parser!(u64).range(1..))]
    pub max_ops_per_sec: Option<u64>,
    /// Most bytes a second written to the target (options.limits.max_bytes_per_sec, >= 1024).
    #[arg(long, value_parser = clap::value_parser!(u64).range(1024..))]
    pub max_bytes_per_sec: Option<u64>,
    /// relay: the target replicates through Ferry (fastest; needs REPLICAOF and CONFIG on the
    /// target, which must be empty or flushed); restore: RESTORE every key; auto: relay when possible.
    #[arg(long, value_enum, default_value = "auto")]
    pub transfer: TransferArg,
    /// Print every event as a JSON line instead of a progress display.
    #[arg(long)]
    pub json: bool,
    /// Rehearse: read the whole source and write nothing to the target (but a short write
    /// probe, removed at once), then print what the migration would meet. Same as
    /// `--mode dry-run`.
    #[arg(long)]
    pub dry_run: bool,
    /// With a dry run: skip the write probe, so that not one write reaches the target.
    #[arg(long)]
    pub no_write_probe: bool,
    /// The source's ACL users: ignore, copy (re-create them on the target), or replace (copy,
    /// and overwrite differing ones). `default` and Ferry's own user are never changed.
    #[arg(long, value_enum, default_value = "ignore")]
    pub acl: AclArg,
    /// Where to record the migration (default: the config's data_dir).
    #[arg(long)]
    pub data_dir: Option<PathBuf>,
    #[arg(long)]
    pub config: Option<PathBuf>,
    /// TLS for a rediss:// source: PEM file of the CA that signed its certificate.
    #[arg(long)]
    pub source_ca_file: Option<PathBuf>,
    /// TLS client certificate (mutual TLS) for the source; needs --source-key-file.
    #[arg(long)]
    pub source_cert_file: Option<PathBuf>,
    #[arg(long)]
    pub source_key_file: Option<PathBuf>,
    /// The name the source's certificate must carry, when not the URL's host.
    #[arg(long)]
    pub source_server_name: Option<String>,
    /// Do not check the source's certificate (unsafe: tests and emergencies only).
    #[arg(long)]
    pub source_insecure_skip_verify: bool,
    /// TLS for a rediss:// target: PEM file of the CA that signed its certificate.
    #[arg(long)]
    pub target_ca_file: Option<PathBuf>,
    /// TLS client certificate (mutual TLS) for the target; needs --target-key-file.
    #[arg(long)]
    pub target_cert_file: Option<PathBuf>,
    #[arg(long)]
    pub target_key_file: Option<PathBuf>,
    /// The name the target's certificate must carry, when not the URL's host.
    #[arg(long)]
    pub target_server_name: Option<String>,
    /// Do not check the target's certificate (unsafe: tests and emergencies only).
    #[arg(long)]
    pub target_insecure_skip_verify: bool,
}

impl MigrateArgs {
    /// The `tls` settings of one side, `None` when no TLS flag was given for it.
    fn tls(&self, source: bool) -> Option<TlsSettings> {
        let settings = if source {
            TlsSettings {
                ca_file: self.source_ca_file.clone(),
                cert_file: self.source_cert_file.clone(),
                key_file: self.source_key_file.clone(),
                server_name: self.source_server_name.clone(),
                insecure_skip_verify: self.source_insecure_skip_verify,
            }
        } else {
            TlsSettings {
                ca_file: self.target_ca_file.clone(),
                cert_file: self.target_cert_file.clone(),
                key_file: self.target_key_file.clone(),
                server_name: self.target_server_name.clone(),
                insecure_skip_verify: self.target_insecure_skip_verify,
            }
        };
        (settings != TlsSettings::default()).then_some(settings)
    }
}

#[derive(Clone, Copy, Debug, clap::ValueEnum)]
pub enum TransferArg {
    Auto,
    Relay,
    Restore,
}

#[derive(Clone, Copy, Debug, clap::ValueEnum)]
pub enum ModeArg {
    Snapshot,
    Live,
    DryRun,
}

#[derive(Clone, Copy, Debug, clap::ValueEnum)]
pub enum AclArg {
    Ignore,
    Copy,
    Replace,
}

#[derive(Clone, Copy, Debug, clap::ValueEnum)]
pub enum ConflictArg {
    Fail,
    Replace,
    Skip,
    Flush,
}

#[derive(Clone, Copy, Debug, clap::ValueEnum)]
pub enum VerifyArg {
    None,
    Sample,
    Full,
}

/// How a `ferry migrate` run ended, for the exit code.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    Completed,
    /// Cancelled by Ctrl-C or SIGTERM (exit code 130).
    Cancelled,
}

/// The tracing subscriber of the CLI commands: stderr, errors only unless `RUST_LOG` says more
/// (what goes wrong is told once, by the command itself), colours only on a terminal.
pub fn init_logs(settings: &Settings) {
    let ansi = std::io::stderr().is_terminal();
    crate::telemetry::init_subscriber(crate::telemetry::get_subscriber(
        "error",
        settings.log.format,
        ansi,
        std::io::stderr,
    ));
}

/// Rewrites the API's option names in advice into this command's flags.
pub fn with_cli_flags(text: &str) -> String {
    text.replace("options.on_conflict", "--on-conflict")
        .replace("on_conflict", "--on-conflict")
        .replace("auto_cutover", "--auto-cutover")
        .replace("(backup is off)", "(--no-backup)")
        .replace("options.verify", "--verify")
        .replace("options.drop_field_ttls", "--drop-field-ttls")
        .replace("drop_field_ttls", "--drop-field-ttls")
}

fn data_dir(settings: &Settings, given: &Option<PathBuf>) -> PathBuf {
    given.clone().unwrap_or_else(|| settings.data_dir.clone())
}

/// Opens the store of `dir`: an error that says what to do, once (a directory in use included).
async fn open(dir: &Path, settings: &Settings) -> anyhow::Result<Jobs> {
    crate::rdb::set_max_decompressed_bytes(settings.max_decompressed_bytes);
    let tuning = crate::engine::Tuning::from_settings(settings.relay.clone(), &settings.transfer);
    let opened = crate::supervisor::open(SupervisorConfig {
        data_dir: dir.to_path_buf(),
        engine: crate::supervisor::real_engine_with(tuning),
        limits: BackupLimits {
            min_free_bytes: settings.min_free_bytes,
            ..BackupLimits::default()
        },
        relay: settings.relay.clone(),
    })
    .await;
    match opened {
        Ok((jobs, _)) => Ok(jobs),
        Err(JobError::Store(e @ StoreError::InUse { .. })) => Err(anyhow!(e)),
        Err(e) => Err(anyhow!(e)).with_context(|| format!("cannot open {}", dir.display())),
    }
}

/// `ferry migrate`.
pub async fn migrate(args: MigrateArgs) -> anyhow::Result<Outcome> {
    let settings = Settings::load(args.config.as_deref())?;
    init_logs(&settings);
    let dir = data_dir(&settings, &args.data_dir);
    let spec = spec(&args)?;
    let jobs = open(&dir, &settings).await?;
    let stop = CancellationToken::new();
    let control = match control::serve(&dir, jobs.clone(), stop.clone()).await {
        Ok(task) => Some(task),
        Err(e) => {
            eprintln!("note: `ferry cutover` will not reach this process: {e}");
            None
        }
    };
    let display = Display::new(args.json);
    let result = run(&jobs, spec, &display, &dir, &args).await;
    display.finish();
    stop.cancel();
    if let Some(task) = control {
        let _ = task.await;
    }
    jobs.shutdown().await;
    result
}

fn spec(args: &MigrateArgs) -> anyhow::Result<MigrationSpec> {
    let url = |s: &str, what: &str| {
        crate::redis_url::RedisUrl::parse(s)
            .with_context(|| format!("--{what} is not a valid Redis URL"))
    };
    Ok(MigrationSpec {
        name: Some("ferry migrate".into()),
        source: Endpoint {
            url: url(&args.source, "source")?,
            tls: args.tls(true),
        }
        .into(),
        target: Endpoint {
            url: url(&args.target, "target")?,
            tls: args.tls(false),
        },
        mode: match args.mode {
            _ if args.dry_run => Mode::DryRun,
            ModeArg::Snapshot => Mode::Snapshot,
            ModeArg::Live => Mode::Live,
            ModeArg::DryRun => Mode::DryRun,
        },
        options: Options {
            on_conflict: match args.on_conflict {
                ConflictArg::Fail => OnConflict::Fail,
                ConflictArg::Replace => OnConflict::Replace,
                ConflictArg::Skip => OnConflict::Skip,
                ConflictArg::Flush => OnConflict::Flush,
            },
            backup: !args.no_backup,
            verify: match args.verify {
                VerifyArg::None => Verify::None,
                VerifyArg::Sample => Verify::Sample,
                VerifyArg::Full => Verify::Full,
            },
            pause_source_writes_on_cutover: !args.no_pause,
            pause_during_verification: false,
            auto_cutover: args.auto_cutover,
            drop_field_ttls: args.drop_field_ttls,
            transfer: match args.transfer {
                TransferArg::Auto => Transfer::Auto,
                TransferArg::Relay => Transfer::Relay,
                TransferArg::Restore => Transfer::Restore,
            },
            limits: crate::spec::Limits {
                max_ops_per_sec: args.max_ops_per_sec,
                max_bytes_per_sec: args.max_bytes_per_sec,
            },
            set_keyspace_notifications: false,
            write_probe: !args.no_write_probe,
            acl: match args.acl {
                AclArg::Ignore => crate::spec::AclMode::Ignore,
                AclArg::Copy => crate::spec::AclMode::Copy,
                AclArg::Replace => crate::spec::AclMode::Replace,
            },
        },
        schedule: crate::spec::Schedule::default(),
    })
}

/// Signals a person can send a running `ferry migrate`.
enum Request {
    Cancel,
    Cutover,
}

/// Ctrl-C / SIGTERM (cancel), SIGUSR1 and Enter on a terminal (cutover), as one stream.
fn requests(live_manual: bool) -> anyhow::Result<tokio::sync::mpsc::Receiver<Request>> {
    let (tx, rx) = tokio::sync::mpsc::channel(8);
    let mut term = signal(SignalKind::terminate()).context("cannot watch SIGTERM")?;
    let mut int = signal(SignalKind::interrupt()).context("cannot watch SIGINT")?;
    let mut usr1 = signal(SignalKind::user_defined1()).context("cannot watch SIGUSR1")?;
    let signals = tx.clone();
    tokio::spawn(async move {
        loop {
            let request = tokio::select! {
                _ = int.recv() => Request::Cancel,
                _ = term.recv() => Request::Cancel,
                _ = usr1.recv() => Request::Cutover,
            };
            if signals.send(request).await.is_err() {
                return;
            }
        }
    });
    if live_manual && std::io::stdin().is_terminal() {
        // A blocking read on its own thread: the line itself does not matter, Enter does.
        std::thread::spawn(move || {
            let mut line = String::new();
            while std::io::stdin().read_line(&mut line).is_ok_and(|n| n > 0) {
                if tx.blocking_send(Request::Cutover).is_err() {
                    return;
                }
                line.clear();
            }
        });
    }
    Ok(rx)
}

async fn run(
    jobs: &Jobs,
    spec: MigrationSpec,
    display: &Display,
    dir: &Path,
    args: &MigrateArgs,
) -> anyhow::Result<Outcome> {
    let live_manual = spec.mode == Mode::Live && !spec.options.auto_cutover;
    let mut requests = requests(live_manual)?;
    let view = jobs.create(spec, CLI_ACTOR).await?;
    let id = view.id;
    display.say(&format!(
        "migration {id}: {} → {}",
        view.source, view.target.url
    ));
    let report = tokio::select! {
        report = jobs.validate(id, CLI_ACTOR) => report?,
        Some(Request::Cancel) = requests.recv() => {
            jobs.cancel(id, CLI_ACTOR).await?;
            display.say(&format!("cancelled migration {id} during validation; nothing was written"));
            return Ok(Outcome::Cancelled);
        }
    };
    for check in &report.checks {
        let mark = match check.status {
            CheckStatus::Pass => "pass",
            CheckStatus::Warn => "WARN",
            CheckStatus::Skipped => "skip",
            CheckStatus::Fail => "FAIL",
        };
        display.say(&format!(
            "  [{mark}] {}: {}",
            check.id,
            with_cli_flags(&check.message)
        ));
    }
    if report.status == ReportStatus::Failed {
        bail!("validation failed: fix the checks marked FAIL and run again (migration {id} is recorded as validation_failed)");
    }
    // Woken by each durable event rather than a fixed poll: the wall time of `ferry migrate` is
    // what users (and scripts/bench_e2e.py) measure. Subscribed before the start, so no event is
    // missed; the short timeout covers the moment between an event's broadcast and its fold.
    let mut live = jobs.store().subscribe();
    jobs.start(id, CLI_ACTOR, false).await?;
    let mut after = 0;
    let mut told_cutover = false;
    let mut cancelling = false;
    loop {
        for event in jobs
            .events(AggregateType::Migration, id, after, 1000)
            .await?
        {
            after = event.seq;
            let view = jobs.get(id)?;
            display.event(&event, &view);
            if matches!(event.kind, EventKind::StreamingStarted { .. })
                && live_manual
                && !told_cutover
            {
                told_cutover = true;
                display.say(&cutover_help(id, dir, std::io::stdin().is_terminal()));
            }
        }
        let view = jobs.get(id)?;
        if view.state.is_final()
            && jobs
                .events(AggregateType::Migration, id, after, 1)
                .await?
                .is_empty()
        {
            return outcome(&view, cancelling, args);
        }
        tokio::select! {
            woken = live.recv() => {
                // A lagged feed only means: read the store again. A closed one falls back to a poll.
                if let Err(tokio::sync::broadcast::error::RecvError::Closed) = woken {
                    tokio::time::sleep(Duration::from_millis(50)).await;
                }
            }
            _ = tokio::time::sleep(Duration::from_millis(50)) => {}
            Some(request) = requests.recv() => match request {
                Request::Cancel if cancelling => {
                    eprintln!("ferry: interrupted again; leaving now. Migration {id} is recorded as cancelling; it ends on the next start.");
                    std::process::exit(130);
                }
                Request::Cancel => {
                    cancelling = true;
                    display.say(&format!("cancelling migration {id} (Ctrl-C again to leave at once)…"));
                    if let Err(e) = jobs.cancel(id, CLI_ACTOR).await {
                        display.say(&format!("cannot cancel: {e}"));
                    }
                }
                Request::Cutover => match jobs.cutover(id, CLI_ACTOR).await {
                    Ok(_) => display.say("cutting over: waiting for the target to apply the source's last writes, then verifying…"),
                    Err(e) => display.say(&format!("cannot cut over now: {e}")),
                },
            },
        }
    }
}

fn cutover_help(id: Uuid, dir: &Path, terminal: bool) -> String {
    let enter = if terminal {
        "press Enter here, or "
    } else {
        ""
    };
    format!(
        "streaming the source's writes live. To cut over: {enter}run `kill -USR1 {}`, or \
         `ferry cutover {id} --data-dir {}` from another shell. Ctrl-C cancels.",
        std::process::id(),
        dir.display()
    )
}

/// The end of the run, said once.
fn outcome(view: &MigrationView, cancelling: bool, args: &MigrateArgs) -> anyhow::Result<Outcome> {
    let id = view.id;
    let rollback = view.backup_id.map_or(String::new(), |b| {
        format!(" The target's restore point is backup {b} (POST /v1/migrations/{id}/rollback restores it).")
    });
    match view.state {
        State::Completed => {
            let say = format!("migration {id} completed.");
            if args.json {
                eprintln!("{say}");
            } else {
                println!("{say}");
            }
            Ok(Outcome::Completed)
        }
        State::Cancelled if cancelling => {
            eprintln!(
                "ferry: migration {id} cancelled; the target keeps what was written.{rollback}"
            );
            Ok(Outcome::Cancelled)
        }
        State::Cancelled => bail!("migration {id} was cancelled (by another command).{rollback}"),
        _ => {
            let reason = view.error.as_ref().map_or(String::new(), |e| {
                format!(" ({}): {}", e.code, with_cli_flags(&e.message))
            });
            bail!("migration {id} failed{reason}.{rollback}")
        }
    }
}

/// `ferry cutover ID` / `ferry cancel ID`: through the control socket of the process holding the
/// data directory; when none does, recorded directly in the store (a cutover then completes when
/// `ferry serve` resumes the migration).
pub async fn command(
    verb: &str,
    id: Uuid,
    data_dir: Option<PathBuf>,
    config: Option<PathBuf>,
) -> anyhow::Result<()> {
    let settings = Settings::load(config.as_deref())?;
    init_logs(&settings);
    let dir = data_dir.unwrap_or_else(|| settings.data_dir.clone());
    match control::request(&dir, &format!("{verb} {id}")).await {
        Ok(reply) => {
            println!("{}", reply.message);
            return Ok(());
        }
        Err(control::ControlError::NotServed(_)) => {}
        Err(e) => bail!("{}", with_cli_flags(&e.to_string())),
    }
    let jobs = open(&dir, &settings).await?;
    let done = match verb {
        "cutover" => jobs.cutover(id, CLI_ACTOR).await,
        _ => jobs.cancel(id, CLI_ACTOR).await,
    };
    jobs.shutdown().await;
    let view = done?;
    println!(
        "migration {id} is {} (no Ferry process runs on {}: it carries on when `ferry serve` starts there)",
        view.state,
        dir.display()
    );
    Ok(())
}

/// `ferry audit verify`: walks the chain (through the running process when there is one).
pub async fn audit_verify(
    data_dir: Option<PathBuf>,
    config: Option<PathBuf>,
    json: bool,
) -> anyhow::Result<bool> {
    let settings = Settings::load(config.as_deref())?;
    init_logs(&settings);
    let dir = data_dir.unwrap_or(settings.data_dir);
    let report = match control::request(&dir, "audit-verify").await {
        Ok(reply) => reply
            .report
            .ok_or_else(|| anyhow!("the running Ferry answered without a report"))?,
        Err(control::ControlError::NotServed(_)) => {
            let store = tokio::task::spawn_blocking({
                let dir = dir.clone();
                move || crate::store::Store::open(&dir)
            })
            .await??;
            store.verify_chain().await?
        }
        Err(e) => return Err(e.into()),
    };
    if json {
        println!("{}", serde_json::to_string_pretty(&report)?);
    } else {
        match report.status {
            AuditStatus::Intact => println!(
                "intact: {} events; head seq {} hash {} (genesis seq {})",
                report.events, report.head_seq, report.head_hash, report.genesis_seq
            ),
            AuditStatus::Broken => println!(
                "BROKEN at seq {}: {}\nthe chain holds up to seq {} (hash {})",
                report.first_broken_seq.unwrap_or_default(),
                report.problem.as_deref().unwrap_or(""),
                report.head_seq,
                report.head_hash
            ),
        }
    }
    Ok(report.status == AuditStatus::Intact)
}
