//! HTTP API: routes, handlers, the OpenAPI document and problem+json errors.
//!
//! The API only translates: HTTP requests into `jobs` commands and queries, projections and
//! errors into JSON. It makes no Redis calls and holds no rules.
//!
//! Routes are registered through `utoipa-actix-web`, so the OpenAPI document is collected from
//! the very `service(...)` calls that serve the routes, and cannot drift from them. The same
//! [`routes`] function builds the server and [`openapi`], and a test compares the result with
//! the committed `openapi/openapi.json`.
//!
//! [`Application::build`] binds the listener (port 0 works, for tests), opens and folds the
//! store, resumes running jobs, and returns before serving; [`Application::run_until_stopped`]
//! serves until the server is stopped, then stops the engine tasks so that the store closes.

pub mod auth;
pub mod backups;
pub mod input;
pub mod migrations;
pub mod problem;
pub mod system;

use std::net::TcpListener;

use actix_web::dev::{Server, ServerHandle};
use actix_web::middleware::from_fn;
use actix_web::{web, App, HttpResponse, HttpServer};
use thiserror::Error;
use utoipa::openapi::security::{Http, HttpAuthScheme, SecurityScheme};
use utoipa::openapi::OpenApi as OpenApiDoc;
use utoipa::{Modify, OpenApi};
use utoipa_actix_web::{scope, AppExt};
use utoipa_swagger_ui::SwaggerUi;

use crate::config::{ConfigError, Settings};
use crate::jobs::{JobError, Jobs};
use auth::Tokens;
use migrations::BodyLimit;
use problem::ApiError;

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
}

#[derive(OpenApi)]
#[openapi(
    info(
        title = "Ferry",
        description = "Online Redis migrations with an audited, event-sourced history.\n\n\
            Create a migration, validate it, start it, follow its progress and events, cut over \
            (live mode), or cancel. Errors are `application/problem+json`. When the server has \
            API tokens configured, every `/v1` request needs `Authorization: Bearer <token>`.",
        license(name = "Apache-2.0")
    ),
    tags(
        (name = "migrations", description = "Migrations and their lifecycle"),
        (name = "backups", description = "Backups (RDB copies of a server), restore, import and export"),
        (name = "events", description = "The audit trail: immutable, past-tense events"),
        (name = "guide", description = "What a migration needs"),
        (name = "health", description = "Liveness and readiness"),
    ),
    modifiers(&BearerAuth)
)]
struct ApiDoc;

struct BearerAuth;

impl Modify for BearerAuth {
    fn modify(&self, openapi: &mut OpenApiDoc) {
        let components = openapi.components.get_or_insert_with(Default::default);
        components.add_security_scheme(
            "bearer",
            SecurityScheme::Http(Http::new(HttpAuthScheme::Bearer)),
        );
        openapi.security = Some(vec![utoipa::openapi::security::SecurityRequirement::new(
            "bearer",
            Vec::<String>::new(),
        )]);
    }
}

/// Registers every documented route. Used by the server and by [`openapi`].
fn routes(cfg: &mut utoipa_actix_web::service_config::ServiceConfig) {
    cfg.service(system::healthz)
        .service(system::readyz)
        .service(
            scope::scope("/v1")
                .wrap(from_fn(auth::require_token))
                .service(migrations::create)
                .service(migrations::list)
                .service(migrations::get)
                .service(migrations::update)
                .service(migrations::validate)
                .service(migrations::start)
                .service(migrations::cutover)
                .service(migrations::cancel)
                .service(migrations::events)
                .service(migrations::verification)
                .service(backups::rollback)
                .service(backups::upload)
                .service(backups::create)
                .service(backups::list)
                .service(backups::get)
                .service(backups::download)
                .service(backups::restore)
                .service(backups::remove)
                .service(system::events)
                .service(system::guide_redis),
        );
}

/// The OpenAPI document, collected from the routes.
pub fn openapi() -> OpenApiDoc {
    let (_, doc) = App::new()
        .into_utoipa_app()
        .openapi(ApiDoc::openapi())
        .configure(routes)
        .split_for_parts();
    doc
}

/// The document as committed in `openapi/openapi.json` (pretty, with a final newline).
pub fn openapi_json() -> String {
    let mut text = openapi()
        .to_pretty_json()
        .unwrap_or_else(|e| format!("{{\"error\": \"{e}\"}}"));
    text.push('\n');
    text
}

/// Every response for a path nobody serves.
async fn not_found(req: actix_web::HttpRequest) -> Result<HttpResponse, ApiError> {
    Err(ApiError::NotFound(format!(
        "no such endpoint: {} {}; see /docs",
        req.method(),
        req.path()
    )))
}

/// A built, bound server, not yet serving.
pub struct Application {
    port: u16,
    server: Server,
    jobs: Jobs,
}

impl Application {
    /// Checks the settings, opens the store (folding the log and resuming running jobs) and binds.
    pub async fn build(settings: &Settings) -> Result<Application, StartupError> {
        let tuning =
            crate::engine::Tuning::from_settings(settings.relay.clone(), &settings.transfer);
        Self::build_with_engine(settings, crate::jobs::real_engine_with(tuning)).await
    }

    /// [`Application::build`] with another engine (tests script one).
    pub async fn build_with_engine(
        settings: &Settings,
        engine: crate::jobs::EngineFn,
    ) -> Result<Application, StartupError> {
        let tokens = settings.tokens()?;
        let addr = settings.check_exposure(&tokens)?;
        let listener = TcpListener::bind(addr).map_err(|source| StartupError::Bind {
            addr: settings.listen.clone(),
            source,
        })?;
        let port = listener
            .local_addr()
            .map_err(|source| StartupError::Bind {
                addr: settings.listen.clone(),
                source,
            })?
            .port();
        let started = std::time::Instant::now();
        let (jobs, stats) = Jobs::open_with_engine(&settings.data_dir, engine).await?;
        jobs.set_relay_settings(settings.relay.clone());
        jobs.backups().set_limits(crate::backup::BackupLimits {
            max_bytes: settings.backup_max_bytes.unwrap_or(u64::MAX),
            upload_max_bytes: settings.upload_max_bytes,
        });
        tracing::info!(
            events = stats.events,
            migrations = stats.migrations,
            skipped = stats.skipped,
            elapsed_ms = started.elapsed().as_millis() as u64,
            data_dir = %settings.data_dir.display(),
            "event log folded"
        );
        let data = web::Data::new(jobs.clone());
        let tokens = web::Data::new(Tokens(std::sync::Arc::new(tokens)));
        let limit = web::Data::new(BodyLimit(settings.max_body_bytes));
        let max_body = settings.max_body_bytes;
        let server = HttpServer::new(move || {
            let (app, doc) = App::new()
                .into_utoipa_app()
                .openapi(ApiDoc::openapi())
                .app_data(data.clone())
                .app_data(tokens.clone())
                .app_data(limit.clone())
                .app_data(
                    web::JsonConfig::default()
                        .limit(max_body)
                        .error_handler(move |e, req| input::json_error(e, req, max_body)),
                )
                .app_data(web::QueryConfig::default().error_handler(input::query_error))
                .app_data(web::PathConfig::default().error_handler(input::path_error))
                .configure(routes)
                .split_for_parts();
            app.wrap(from_fn(log_request))
                .service(SwaggerUi::new("/docs/{_:.*}").url("/openapi.json", doc))
                .route(
                    "/docs",
                    web::get().to(|| async {
                        HttpResponse::PermanentRedirect()
                            .insert_header(("Location", "/docs/"))
                            .finish()
                    }),
                )
                .default_service(web::to(not_found))
        })
        .workers(2)
        .disable_signals()
        .listen(listener)
        .map_err(|source| StartupError::Bind {
            addr: settings.listen.clone(),
            source,
        })?
        .run();
        Ok(Application { port, server, jobs })
    }

    pub fn port(&self) -> u16 {
        self.port
    }

    /// Stops the server (gracefully with `stop(true)`); `run_until_stopped` then returns.
    pub fn handle(&self) -> ServerHandle {
        self.server.handle()
    }

    pub fn jobs(&self) -> &Jobs {
        &self.jobs
    }

    /// Serves until stopped, then stops the engine tasks (they resume on the next start).
    pub async fn run_until_stopped(self) -> std::io::Result<()> {
        let served = self.server.await;
        self.jobs.shutdown().await;
        served
    }
}

/// Request logging: method, path, status and latency. Never headers (tokens), query strings or
/// bodies (URLs with passwords).
async fn log_request(
    req: actix_web::dev::ServiceRequest,
    next: actix_web::middleware::Next<impl actix_web::body::MessageBody + 'static>,
) -> Result<actix_web::dev::ServiceResponse<impl actix_web::body::MessageBody>, actix_web::Error> {
    let started = std::time::Instant::now();
    let method = req.method().clone();
    let path = req.path().to_string();
    let response = next.call(req).await;
    let status = match &response {
        Ok(r) => r.status().as_u16(),
        Err(e) => e.as_response_error().status_code().as_u16(),
    };
    tracing::info!(
        target: "ferry::http",
        %method, %path, status, elapsed_ms = started.elapsed().as_millis() as u64,
        "request"
    );
    response
}
