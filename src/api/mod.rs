//! HTTP API: routes, handlers, the OpenAPI document and problem+json errors.
//!
//! The API only translates: HTTP requests into `jobs` commands and queries, states and errors
//! into JSON. It makes no Redis calls, does no I/O of its own (a download streams the file the
//! service points it at) and holds no rules.
//!
//! Routes are registered through `utoipa-actix-web`, so the OpenAPI document is collected from
//! the very `service(...)` calls that serve the routes, and cannot drift from them. The same
//! [`routes`] function builds the server and [`openapi`], and a test compares the result with
//! the committed `openapi/openapi.json`.
//!
//! [`serve`] builds the HTTP server on a bound listener; start-up (configuration, store, fold,
//! supervisor, then this) is [`crate::app`]'s.

pub mod auth;
pub mod backups;
pub mod input;
pub mod migrations;
pub mod problem;
pub mod restores;
pub mod system;

use std::net::TcpListener;

use actix_web::dev::Server;
use actix_web::middleware::from_fn;
use actix_web::{web, App, HttpResponse, HttpServer};
use utoipa::openapi::security::{Http, HttpAuthScheme, SecurityScheme};
use utoipa::openapi::OpenApi as OpenApiDoc;
use utoipa::{Modify, OpenApi};
use utoipa_actix_web::{scope, AppExt};
use utoipa_swagger_ui::SwaggerUi;

use crate::config::Token;
use crate::jobs::Jobs;
use auth::Tokens;
use migrations::BodyLimit;
use problem::ApiError;

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
        (name = "backups", description = "Backups (RDB copies of a server), import and export"),
        (name = "restores", description = "Restores of backups into servers, rollbacks included"),
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
                .service(restores::rollback)
                .service(backups::upload)
                .service(backups::create)
                .service(backups::list)
                .service(backups::get)
                .service(backups::download)
                .service(backups::remove)
                .service(restores::create)
                .service(restores::list)
                .service(restores::get)
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

/// Builds the HTTP server on `listener`, serving `jobs`; it runs once awaited.
pub fn serve(
    listener: TcpListener,
    jobs: Jobs,
    tokens: Vec<Token>,
    max_body: usize,
) -> std::io::Result<Server> {
    let data = web::Data::new(jobs);
    let tokens = web::Data::new(Tokens(std::sync::Arc::new(tokens)));
    let limit = web::Data::new(BodyLimit(max_body));
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
    .listen(listener)?
    .run();
    Ok(server)
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
