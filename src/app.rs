//! Start-up: configuration → store → fold → services → supervisor → HTTP, and an orderly stop.
//!
//! [`Application::build`] binds the listener (port 0 works, for tests), opens and folds the
//! store, deals with interrupted work (resumes running migrations, fails interrupted captures and
//! restores explicitly), and returns before serving; [`Application::run_until_stopped`] serves
//! until the server is stopped, then stops the supervised tasks so that the store closes.

use std::net::TcpListener;

use std::time::Duration;

use actix_web::dev::{Server, ServerHandle};
use thiserror::Error;
use tokio_util::sync::CancellationToken;

use crate::config::{ConfigError, Settings};
use crate::jobs::{JobError, Jobs};
use crate::supervisor::{self, BackupLimits, EngineFn, SupervisorConfig};

#[derive(Debug, Error)]
pub enum StartupError {
    #[error(transparent)]
    Config(#[from] ConfigError),
    #[error("cannot listen on {addr}: {source}")]
    Bind {
        addr: String,
        source: std::io::Error,
    },
    #[error("cannot open the data directory: {0}")]
    Store(#[from] JobError),
    /// `[http.tls]` names files that cannot serve HTTPS.
    #[error("cannot serve HTTPS ([http.tls]): {0}")]
    HttpTls(crate::transport::ConnectError),
}

/// A built, bound server, not yet serving.
pub struct Application {
    port: u16,
    server: Server,
    jobs: Jobs,
    streams: CancellationToken,
}

/// Stops a running [`Application`]: ends its event streams and control socket, then stops the
/// HTTP server.
#[derive(Clone)]
pub struct StopHandle {
    server: ServerHandle,
    streams: CancellationToken,
}

impl StopHandle {
    /// Stops serving; `graceful` lets requests in flight finish first. Open event streams end
    /// at once either way (clients reconnect with `Last-Event-ID`).
    pub async fn stop(&self, graceful: bool) {
        self.streams.cancel();
        self.server.stop(graceful).await;
    }
}

impl Application {
    /// Checks the settings, opens the store (folding the log and resuming running jobs) and binds.
    pub async fn build(settings: &Settings) -> Result<Application, StartupError> {
        let tuning =
            crate::engine::Tuning::from_settings(settings.relay.clone(), &settings.transfer);
        Self::build_with_engine(settings, supervisor::real_engine_with(tuning)).await
    }

    /// [`Application::build`] with another engine (tests script one).
    pub async fn build_with_engine(
        settings: &Settings,
        engine: EngineFn,
    ) -> Result<Application, StartupError> {
        let tokens = settings.tokens()?;
        let addr = settings.check_exposure(&tokens)?;
        // Read before anything else starts, so that a bad file stops the start in plain words.
        let https = match &settings.http.tls {
            Some(tls) => Some(
                crate::transport::server_config(&tls.cert_file, &tls.key_file)
                    .map_err(StartupError::HttpTls)?,
            ),
            None => None,
        };
        let bind_error = |source| StartupError::Bind {
            addr: settings.listen.clone(),
            source,
        };
        let listener = TcpListener::bind(addr).map_err(bind_error)?;
        let port = listener.local_addr().map_err(bind_error)?.port();
        let started = std::time::Instant::now();
        crate::rdb::set_max_decompressed_bytes(settings.max_decompressed_bytes);
        let (jobs, stats) = supervisor::open(SupervisorConfig {
            data_dir: settings.data_dir.clone(),
            engine,
            limits: BackupLimits {
                max_bytes: settings.backup_max_bytes.unwrap_or(u64::MAX),
                upload_max_bytes: settings.upload_max_bytes,
                upload_concurrency: settings.upload_concurrency,
                min_free_bytes: settings.min_free_bytes,
                max_decompressed_bytes: settings.max_decompressed_bytes,
            },
            relay: settings.relay.clone(),
        })
        .await?;
        tracing::info!(
            events = stats.events,
            migrations = stats.migrations,
            backups = stats.backups,
            restores = stats.restores,
            skipped = stats.skipped,
            elapsed_ms = started.elapsed().as_millis() as u64,
            fold_ms = stats.elapsed.as_millis() as u64,
            data_dir = %settings.data_dir.display(),
            "event log folded"
        );
        let streams = CancellationToken::new();
        // `ferry cutover ID` / `ferry audit verify` from another shell reach this process here.
        if let Err(e) =
            crate::control::serve(&settings.data_dir, jobs.clone(), streams.clone()).await
        {
            tracing::warn!(error = %e, "no control socket: `ferry cutover` cannot reach this process");
        }
        let config = crate::api::ServeConfig {
            tokens,
            max_body: settings.max_body_bytes,
            https,
            heartbeat: Duration::from_secs(settings.sse_heartbeat_secs.max(1)),
            fold_seconds: stats.elapsed.as_secs_f64(),
            shutdown: streams.clone(),
        };
        let server = crate::api::serve(listener, jobs.clone(), config).map_err(bind_error)?;
        Ok(Application {
            port,
            server,
            jobs,
            streams,
        })
    }

    pub fn port(&self) -> u16 {
        self.port
    }

    /// Stops the server (gracefully with `stop(true)`); `run_until_stopped` then returns.
    pub fn handle(&self) -> StopHandle {
        StopHandle {
            server: self.server.handle(),
            streams: self.streams.clone(),
        }
    }

    pub fn jobs(&self) -> &Jobs {
        &self.jobs
    }

    /// Serves until stopped, then stops the supervised tasks (they resume on the next start).
    pub async fn run_until_stopped(self) -> std::io::Result<()> {
        let served = self.server.await;
        self.jobs.shutdown().await;
        served
    }
}
