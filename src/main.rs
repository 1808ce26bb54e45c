//! The `ferry` command: the service (`serve`, the default), the OpenAPI document, one-shot
//! migrations (and the cutover or cancel of one), the audit chain's check, RDB inspection. The
//! commands themselves live in [`ferry::cli`]; this file parses arguments and sets exit codes.

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Context;
use clap::{Parser, Subcommand};
use ferry::app::Application;
use ferry::cli::{self, MigrateArgs, Outcome};
use ferry::config::Settings;
use ferry::telemetry::{get_subscriber, init_subscriber};
use uuid::Uuid;

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
    /// Run the service (the default): the API, the dashboard at /, Swagger UI at /docs.
    Serve {
        /// The config file (default: $FERRY_CONFIG, else ./config.toml if present).
        #[arg(long)]
        config: Option<PathBuf>,
    },
    /// Print the OpenAPI document (what `openapi/openapi.json` must contain).
    Openapi,
    /// Run one migration in this process, recording it in the local store, and show it until
    /// its end (a progress bar on a terminal; Ctrl-C cancels it).
    Migrate(Box<MigrateArgs>),
    /// Cut a live migration over; it may run in another process on the same data dir.
    Cutover(Target),
    /// Cancel a migration; it may run in another process on the same data dir.
    Cancel(Target),
    /// The audit trail.
    Audit {
        #[command(subcommand)]
        command: AuditCommand,
    },
    /// RDB file tools.
    Rdb {
        #[command(subcommand)]
        command: RdbCommand,
    },
}

#[derive(clap::Args)]
struct Target {
    /// The migration's id.
    id: Uuid,
    /// The data dir of the process that runs it (default: the config's data_dir).
    #[arg(long)]
    data_dir: Option<PathBuf>,
    #[arg(long)]
    config: Option<PathBuf>,
}

#[derive(Subcommand)]
enum AuditCommand {
    /// Walk the hash chain of the event log: prints the head hash and `intact`, or the first
    /// broken seq (exit code 1).
    Verify {
        #[arg(long)]
        data_dir: Option<PathBuf>,
        #[arg(long)]
        config: Option<PathBuf>,
        /// Print the report as JSON.
        #[arg(long)]
        json: bool,
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

fn main() -> ExitCode {
    // Everything Ferry writes (the event log, credentials, backups, inventories) is the owner's
    // alone: files 0600 and directories 0700 whatever the shell's umask, including the files
    // sled creates, which take no mode of ours.
    rustix::process::umask(rustix::fs::Mode::from_raw_mode(0o077));
    let cli = Cli::parse();
    let outcome = match cli.command.unwrap_or(Command::Serve { config: None }) {
        Command::Serve { config } => run_async(serve(config)).map(|()| ExitCode::SUCCESS),
        Command::Openapi => {
            print!("{}", ferry::api::openapi_json());
            Ok(ExitCode::SUCCESS)
        }
        Command::Migrate(args) => run_async(cli::migrate(*args)).map(|outcome| match outcome {
            Outcome::Completed => ExitCode::SUCCESS,
            Outcome::Cancelled => ExitCode::from(130),
        }),
        Command::Cutover(t) => run_async(cli::command("cutover", t.id, t.data_dir, t.config))
            .map(|()| ExitCode::SUCCESS),
        Command::Cancel(t) => run_async(cli::command("cancel", t.id, t.data_dir, t.config))
            .map(|()| ExitCode::SUCCESS),
        Command::Audit {
            command:
                AuditCommand::Verify {
                    data_dir,
                    config,
                    json,
                },
        } => run_async(cli::audit_verify(data_dir, config, json)).map(|intact| {
            if intact {
                ExitCode::SUCCESS
            } else {
                ExitCode::FAILURE
            }
        }),
        Command::Rdb {
            command: RdbCommand::Inspect { file, json },
        } => ferry::rdb::inspect::run(&file, json)
            .map(|text| println!("{text}"))
            .map(|()| ExitCode::SUCCESS)
            .with_context(|| format!("cannot inspect {}", file.display())),
    };
    match outcome {
        Ok(code) => code,
        Err(e) => {
            // The one place an error is printed.
            eprintln!("ferry: {}", cli::with_cli_flags(&format!("{e:#}")));
            ExitCode::FAILURE
        }
    }
}

fn run_async<T>(f: impl std::future::Future<Output = anyhow::Result<T>>) -> anyhow::Result<T> {
    tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .context("cannot start the async runtime")?
        .block_on(f)
}

async fn serve(config: Option<PathBuf>) -> anyhow::Result<()> {
    use std::io::IsTerminal;
    let settings = Settings::load(config.as_deref())?;
    init_subscriber(get_subscriber(
        &settings.log.filter,
        settings.log.format,
        std::io::stdout().is_terminal(),
        std::io::stdout,
    ));
    let app = Application::build(&settings).await?;
    tracing::info!(listen = %settings.listen, port = app.port(), "serving: the dashboard at /, Swagger UI at /docs");
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
