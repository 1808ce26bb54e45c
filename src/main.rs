//! The `ferry` command: the service (`serve`, the default), the OpenAPI document, one-shot
//! migrations and RDB inspection.

use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use anyhow::{bail, Context};
use clap::{Parser, Subcommand};
use ferry::aggregate::migration::State;
use ferry::app::Application;
use ferry::config::Settings;
use ferry::jobs::Jobs;
use ferry::model::AggregateType;
use ferry::model::{CheckStatus, EventKind, ReportStatus};
use ferry::redis_url::RedisUrl;
use ferry::spec::{
    Endpoint, MigrationSpec, Mode, OnConflict, Options, TlsSettings, Transfer, Verify,
};
use ferry::supervisor::{BackupLimits, SupervisorConfig};
use ferry::telemetry::{get_subscriber, init_subscriber};

#[derive(Parser)]
#[command(
    name = "ferry",
    version,
    about = "Online Redis migrations with an audited history"
)]
struct Cli {
    #[command(subcommand)]
    command: Option<Command>,
}

#[derive(Subcommand)]
enum Command {
    /// Run the service (the default).
    Serve {
        /// The config file (default: $FERRY_CONFIG, else ./config.toml if present).
        #[arg(long)]
        config: Option<PathBuf>,
    },
    /// Print the OpenAPI document (what `openapi/openapi.json` must contain).
    Openapi,
    /// Run one migration in this process, recording it in the local store, and wait for its end.
    Migrate(Box<MigrateArgs>),
    /// RDB file tools.
    Rdb {
        #[command(subcommand)]
        command: RdbCommand,
    },
}

#[derive(Subcommand)]
enum RdbCommand {
    /// Print an RDB file's header, aux fields, and per-db and per-type counts and bytes.
    Inspect {
        file: PathBuf,
        #[arg(long)]
        json: bool,
    },
}

#[derive(clap::Args)]
struct MigrateArgs {
    /// redis://[user[:password]@]host:port (a /db is refused for now)
    #[arg(long)]
    source: String,
    #[arg(long)]
    target: String,
    #[arg(long, value_enum, default_value = "snapshot")]
    mode: ModeArg,
    #[arg(long, value_enum, default_value = "fail")]
    on_conflict: ConflictArg,
    #[arg(long, value_enum, default_value = "sample")]
    verify: VerifyArg,
    /// Do not take a restore point of the target first.
    #[arg(long)]
    no_backup: bool,
    /// Do not pause the source's writes during cutover (live mode; writes made during the
    /// switch may then be lost).
    #[arg(long)]
    no_pause: bool,
    /// Cut over by itself once the target has caught up (live mode).
    #[arg(long)]
    auto_cutover: bool,
    /// relay: the target replicates through Ferry (fastest; needs REPLICAOF and CONFIG on the
    /// target, which must be empty or flushed); restore: RESTORE every key; auto: relay when possible.
    #[arg(long, value_enum, default_value = "auto")]
    transfer: TransferArg,
    /// Migrate hashes with field TTLs into a target without them, dropping the TTLs.
    #[arg(long)]
    drop_field_ttls: bool,
    /// Where to record the migration (default: the config's data_dir).
    #[arg(long)]
    data_dir: Option<PathBuf>,
    #[arg(long)]
    config: Option<PathBuf>,
    /// TLS for a rediss:// source: PEM file of the CA that signed its certificate.
    #[arg(long)]
    source_ca_file: Option<PathBuf>,
    /// TLS client certificate (mutual TLS) for the source; needs --source-key-file.
    #[arg(long)]
    source_cert_file: Option<PathBuf>,
    #[arg(long)]
    source_key_file: Option<PathBuf>,
    /// The name the source's certificate must carry, when not the URL's host.
    #[arg(long)]
    source_server_name: Option<String>,
    /// Do not check the source's certificate (unsafe: tests and emergencies only).
    #[arg(long)]
    source_insecure_skip_verify: bool,
    /// TLS for a rediss:// target: PEM file of the CA that signed its certificate.
    #[arg(long)]
    target_ca_file: Option<PathBuf>,
    /// TLS client certificate (mutual TLS) for the target; needs --target-key-file.
    #[arg(long)]
    target_cert_file: Option<PathBuf>,
    #[arg(long)]
    target_key_file: Option<PathBuf>,
    /// The name the target's certificate must carry, when not the URL's host.
    #[arg(long)]
    target_server_name: Option<String>,
    /// Do not check the target's certificate (unsafe: tests and emergencies only).
    #[arg(long)]
    target_insecure_skip_verify: bool,
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

#[derive(Clone, Copy, clap::ValueEnum)]
enum TransferArg {
    Auto,
    Relay,
    Restore,
}

#[derive(Clone, Copy, clap::ValueEnum)]
enum ModeArg {
    Snapshot,
    Live,
}

#[derive(Clone, Copy, clap::ValueEnum)]
enum ConflictArg {
    Fail,
    Replace,
    Skip,
    Flush,
}

#[derive(Clone, Copy, clap::ValueEnum)]
enum VerifyArg {
    None,
    Sample,
    Full,
}

fn main() -> ExitCode {
    // Everything Ferry writes (the event log, credentials, backups, inventories) is the owner's
    // alone: files 0600 and directories 0700 whatever the shell's umask, including the files
    // sled creates, which take no mode of ours.
    rustix::process::umask(rustix::fs::Mode::from_raw_mode(0o077));
    let cli = Cli::parse();
    let outcome = match cli.command.unwrap_or(Command::Serve { config: None }) {
        Command::Serve { config } => run_async(serve(config)),
        Command::Openapi => {
            print!("{}", ferry::api::openapi_json());
            Ok(())
        }
        Command::Migrate(args) => run_async(migrate(*args)),
        Command::Rdb {
            command: RdbCommand::Inspect { file, json },
        } => ferry::rdb::inspect::run(&file, json)
            .map(|text| println!("{text}"))
            .with_context(|| format!("cannot inspect {}", file.display())),
    };
    match outcome {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("ferry: {e:#}");
            ExitCode::FAILURE
        }
    }
}

fn run_async(f: impl std::future::Future<Output = anyhow::Result<()>>) -> anyhow::Result<()> {
    tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .context("cannot start the async runtime")?
        .block_on(f)
}

async fn serve(config: Option<PathBuf>) -> anyhow::Result<()> {
    let settings = Settings::load(config.as_deref())?;
    init_subscriber(get_subscriber(
        &settings.log.filter,
        settings.log.format,
        std::io::stdout,
    ));
    let app = Application::build(&settings).await?;
    tracing::info!(listen = %settings.listen, port = app.port(), "serving; Swagger UI at /docs");
    let handle = app.handle();
    tokio::spawn(async move {
        shutdown_signal().await;
        tracing::info!("shutting down");
        handle.stop(true).await;
    });
    app.run_until_stopped().await?;
    Ok(())
}

async fn shutdown_signal() {
    let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()).ok();
    tokio::select! {
        _ = tokio::signal::ctrl_c() => {}
        _ = async { match term.as_mut() { Some(t) => { t.recv().await; } None => std::future::pending().await } } => {}
    }
}

/// `ferry migrate`: create, validate, start, and follow one migration to its end.
async fn migrate(args: MigrateArgs) -> anyhow::Result<()> {
    let settings = Settings::load(args.config.as_deref())?;
    init_subscriber(get_subscriber("warn", settings.log.format, std::io::stderr));
    let data_dir = args.data_dir.clone().unwrap_or(settings.data_dir);
    let url = |s: &str, what: &str| {
        RedisUrl::parse(s).with_context(|| format!("--{what} is not a valid Redis URL"))
    };
    let spec = MigrationSpec {
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
            ModeArg::Snapshot => Mode::Snapshot,
            ModeArg::Live => Mode::Live,
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
            transfer: match args.transfer {
                TransferArg::Auto => Transfer::Auto,
                TransferArg::Relay => Transfer::Relay,
                TransferArg::Restore => Transfer::Restore,
            },
            drop_field_ttls: args.drop_field_ttls,
        },
    };
    ferry::rdb::set_max_decompressed_bytes(settings.max_decompressed_bytes);
    let tuning = ferry::engine::Tuning::from_settings(settings.relay.clone(), &settings.transfer);
    let (jobs, _) = ferry::supervisor::open(SupervisorConfig {
        data_dir: data_dir.clone(),
        engine: ferry::supervisor::real_engine_with(tuning),
        limits: BackupLimits {
            min_free_bytes: settings.min_free_bytes,
            ..BackupLimits::default()
        },
        relay: settings.relay.clone(),
    })
    .await
    .with_context(|| format!("cannot open the store in {}", data_dir.display()))?;
    let result = follow(&jobs, spec).await;
    jobs.shutdown().await;
    result
}

async fn follow(jobs: &Jobs, spec: MigrationSpec) -> anyhow::Result<()> {
    const ACTOR: &str = "cli";
    let view = jobs.create(spec, ACTOR).await?;
    let id = view.id;
    println!("migration {id}: {} → {}", view.source, view.target.url);
    let report = jobs.validate(id, ACTOR).await?;
    for check in &report.checks {
        let mark = match check.status {
            CheckStatus::Pass => "pass",
            CheckStatus::Warn => "WARN",
            CheckStatus::Skipped => "skip",
            CheckStatus::Fail => "FAIL",
        };
        println!("  [{mark}] {}: {}", check.id, check.message);
    }
    if report.status == ReportStatus::Failed {
        bail!("validation failed; fix the checks marked FAIL and run again");
    }
    // Woken by each durable event rather than a fixed poll: the wall time of `ferry migrate` is
    // what users (and scripts/bench_e2e.py) measure, and a 250 ms poll added up to that much to
    // it. Subscribed before the start, so no event is missed; the short timeout covers the
    // moment between an event's broadcast and its fold into the view `jobs.get` reads.
    let mut live = jobs.store().subscribe();
    jobs.start(id, ACTOR, false).await?;
    let mut after = 0;
    loop {
        for event in jobs
            .events(AggregateType::Migration, id, after, 1000)
            .await?
        {
            after = event.seq;
            println!("{} {}", event.at.format("%H:%M:%S"), describe(&event.kind));
        }
        let view = jobs.get(id)?;
        if view.state.is_final()
            && jobs
                .events(AggregateType::Migration, id, after, 1)
                .await?
                .is_empty()
        {
            return match view.state {
                State::Completed => Ok(()),
                _ => {
                    let reason = view.error.map(|e| format!("{} ({})", e.message, e.code));
                    bail!("migration {}: {}", view.state, reason.unwrap_or_default())
                }
            };
        }
        // A lagged feed only means: read the store again. A closed one answers at once, so it
        // falls back to the plain poll.
        let woken = tokio::time::timeout(Duration::from_millis(50), live.recv()).await;
        if let Ok(Err(tokio::sync::broadcast::error::RecvError::Closed)) = woken {
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }
}

/// One progress line per event.
fn describe(kind: &EventKind) -> String {
    match kind {
        EventKind::SnapshotProgress {
            rdb_bytes_read,
            rdb_bytes_total,
            keys_written,
            ..
        } => match rdb_bytes_total {
            Some(total) if *total > 0 => format!(
                "snapshot {:.1}% ({rdb_bytes_read}/{total} bytes, {keys_written} keys)",
                *rdb_bytes_read as f64 * 100.0 / *total as f64
            ),
            _ => format!("snapshot {rdb_bytes_read} bytes, {keys_written} keys"),
        },
        EventKind::Checkpoint {
            applied_offset,
            commands_streamed,
            lag_bytes,
            ..
        } => format!(
            "streaming: offset {applied_offset}, {commands_streamed} commands, lag {} bytes",
            lag_bytes.map_or("?".to_string(), |l| l.to_string())
        ),
        EventKind::SnapshotCompleted {
            rdb_bytes,
            keys_written,
            keys_skipped,
            keys_expired,
            duration_ms,
            ..
        } => format!(
            "snapshot completed: {keys_written} keys written, {keys_skipped} skipped, \
             {keys_expired} expired ({rdb_bytes} bytes in {duration_ms} ms)"
        ),
        EventKind::VerificationCompleted { report } => format!(
            "verification: {} keys checked, {} missing, {} different, {} extra",
            report.checked, report.missing, report.different, report.extra
        ),
        EventKind::MigrationFailed { code, message } => format!("failed ({code}): {message}"),
        EventKind::TransferChosen {
            transfer, reason, ..
        } => format!("transfer {}: {reason}", transfer.as_str()),
        EventKind::TargetReleased { reason, restored } => {
            format!("target released ({reason}): {}", restored.join(", "))
        }
        other => other.type_name().to_string(),
    }
}
