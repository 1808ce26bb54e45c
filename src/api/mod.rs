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

pub mod audit;
pub mod auth;
pub mod backups;
pub mod dashboard;
pub mod guard;
pub mod input;
pub mod metrics;
pub mod migrations;
pub mod problem;
pub mod restores;
pub mod roles;
pub mod stream;
pub mod system;

use std::net::TcpListener;
use std::time::Duration;

use actix_web::dev::Server;
use actix_web::middleware::from_fn;
use actix_web::{web, App, HttpResponse, HttpServer};
use tokio_util::sync::CancellationToken;
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
            API tokens configured, every `/v1` request needs `Authorization: Bearer <token>`, \
            and each operation needs a role (`x-required-role`): `viewer` reads (every GET but \
            backup downloads), `operator` runs migrations and takes backups, `admin` rolls back, \
            restores, deletes and downloads. 401 means no valid token, 403 a role too small.",
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
    components(schemas(system::EventTypeName)),
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
            // The last `wrap` runs first: the token is checked, then its role.
            scope::scope("/v1")
                .wrap(from_fn(roles::require_role))
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
                .service(stream::migration)
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
                .service(stream::all)
                .service(audit::export)
                .service(audit::verify)
                .service(system::guide_redis),
        )
        .service(
            scope::scope("/metrics")
                .wrap(from_fn(auth::require_token))
                .service(metrics::scrape),
        );
}

/// The OpenAPI document, collected from the routes.
pub fn openapi() -> OpenApiDoc {
    let (_, doc) = App::new()
        .into_utoipa_app()
        .openapi(ApiDoc::openapi())
        .configure(routes)
        .split_for_parts();
    roles::document(exact(doc))
}

/// States the rules between fields that the derived schemas cannot: a source is *either* a
/// server (`{url}`) or a stored backup (`{rdb}`), and a migration from a backup runs in `snapshot`
/// mode only. Done on the document's JSON, since the derive has no `oneOf` for one struct.
fn exact(doc: OpenApiDoc) -> OpenApiDoc {
    use serde_json::{json, Value};
    let Ok(mut value) = serde_json::to_value(&doc) else {
        return doc;
    };
    let schemas = &mut value["components"]["schemas"];
    let url = schemas["Endpoint"]["properties"]["url"].clone();
    let tls = schemas["Endpoint"]["properties"]["tls"].clone();
    // `null` reads as the default, as serde takes it: the schema says so.
    let read = json!({"oneOf": [{"$ref": "#/components/schemas/SourceRead"}, {"type": "null"}],
        "default": "replication",
        "description": "How the server is read: `replication` (PSYNC) or `scan` (SCAN + DUMP and \
                        keyspace notifications, for servers that refuse SYNC/PSYNC; weaker)."});
    let server_source = json!({"type": "object", "required": ["url"],
        "properties": {"url": url, "tls": tls, "read": read}, "additionalProperties": false,
        "description": "A running server, read over the replication link (or by SCAN: `read`)."});
    let file_source = json!({"type": "object", "required": ["rdb"],
        "properties": {"rdb": {"$ref": "#/components/schemas/RdbSource"}},
        "additionalProperties": false,
        "description": "A stored backup's RDB file (`snapshot` mode only)."});
    // A type filter names a type as TYPE does: a built-in one, or a module type's 9-character
    // name (what `shape` accepts, said in the schema so that nothing schema-valid is refused).
    if let Some(items) = schemas["KeyFilter"]["properties"]["types"]["items"].as_object_mut() {
        items.insert(
            "pattern".into(),
            json!("^(string|list|set|zset|hash|stream|[A-Za-z0-9_-]{9})$"),
        );
    }
    // A database map's keys are source database numbers, written as JSON object keys.
    for holder in ["Options", "OptionsPatch"] {
        if let Some(map) = schemas[holder]["properties"]["db_map"].as_object_mut() {
            map.insert(
                "propertyNames".into(),
                json!({"type": "string", "pattern": "^(0|[1-9][0-9]{0,8})$"}),
            );
        }
    }
    schemas["SourceBody"] = json!({
        "description": schemas["SourceBody"]["description"].clone(),
        "oneOf": [server_source.clone(), file_source.clone()],
        "example": schemas["SourceBody"]["example"].clone(),
    });
    let spec = schemas["MigrationSpec"].clone();
    if let Value::Object(_) = spec {
        let mut from_server = spec.clone();
        from_server["properties"]["source"] = server_source;
        from_server.as_object_mut().map(|o| o.remove("description"));
        let mut from_file = spec.clone();
        from_file["properties"]["source"] = file_source;
        from_file["properties"]["mode"] = json!({"type": "string", "enum": ["snapshot"],
            "description": "A file has no stream of writes to follow: `snapshot` only."});
        from_file.as_object_mut().map(|o| o.remove("description"));
        schemas["MigrationSpec"] = json!({
            "description": spec["description"].clone(),
            "oneOf": [from_server, from_file],
        });
    }
    // A JSON edit the document type cannot read back would silently drop every rule above;
    // tests/api/spec.rs checks that they are all in the served document.
    serde_json::from_value(value).unwrap_or(doc)
}

/// The document as committed in `openapi/openapi.json` (pretty, with a final newline).
pub fn openapi_json() -> String {
    let mut text = openapi()
        .to_pretty_json()
        .unwrap_or_else(|e| format!("{{\"error\": \"{e}\"}}"));
    text.push('\n');
    text
}

/// The methods served on each documented path (`/v1/migrations/{id}` style), from the document
/// itself, so a 405's `Allow` cannot drift from the routes.
static ALLOWED_METHODS: std::sync::LazyLock<Vec<(Vec<String>, Vec<&'static str>)>> =
    std::sync::LazyLock::new(|| {
        openapi()
            .paths
            .paths
            .iter()
            .map(|(path, item)| {
                let methods = [
                    ("GET", item.get.is_some()),
                    ("HEAD", item.get.is_some()),
                    ("POST", item.post.is_some()),
                    ("PUT", item.put.is_some()),
                    ("PATCH", item.patch.is_some()),
                    ("DELETE", item.delete.is_some()),
                ]
                .into_iter()
                .filter_map(|(m, served)| served.then_some(m))
                .collect();
                let segments = path.split('/').map(str::to_string).collect();
                (segments, methods)
            })
            .collect()
    });

/// The methods served on `path`, if it is a documented path. With `literal_only`, only paths
/// without parameters count (`/v1/backups/upload`, which `/v1/backups/{id}` would also match).
fn allowed_methods(path: &str, literal_only: bool) -> Option<Vec<&'static str>> {
    let asked: Vec<&str> = path.split('/').collect();
    ALLOWED_METHODS.iter().find_map(|(segments, methods)| {
        let same = segments.len() == asked.len()
            && segments
                .iter()
                .zip(&asked)
                .all(|(s, a)| s == a || (!literal_only && s.starts_with('{') && !a.is_empty()));
        same.then(|| methods.clone())
    })
}

/// The 405 for `method` on a documented `path` that does not serve it, if that is the case.
pub(crate) fn method_not_allowed(method: &str, path: &str, literal_only: bool) -> Option<ApiError> {
    let allow = allowed_methods(path, literal_only)?.join(", ");
    Some(ApiError::MethodNotAllowed {
        detail: format!("{method} is not served on {path}; it allows {allow}"),
        allow,
    })
}

/// Every response for a route nobody serves: 405 with `Allow` when the path exists with other
/// methods, 404 otherwise.
async fn not_found(req: actix_web::HttpRequest) -> Result<HttpResponse, ApiError> {
    let method = req.method().to_string();
    if let Some(refusal) = method_not_allowed(&method, req.path(), false) {
        return Err(refusal);
    }
    Err(ApiError::NotFound(format!(
        "no such endpoint: {method} {}; see /docs",
        req.path()
    )))
}

/// What the HTTP server needs besides the service.
pub struct ServeConfig {
    pub tokens: Vec<Token>,
    /// The largest request body accepted.
    pub max_body: usize,
    /// Serve HTTPS with this configuration instead of plain HTTP.
    pub https: Option<std::sync::Arc<rustls::ServerConfig>>,
    /// How often an idle event stream sends a heartbeat comment.
    pub heartbeat: Duration,
    /// How long the start-up fold took (a metric).
    pub fold_seconds: f64,
    /// Cancelled when the server stops: ends the open event streams (a stream would otherwise
    /// keep the graceful stop waiting, and the store open).
    pub shutdown: CancellationToken,
}

/// Builds the HTTP server on `listener`, serving `jobs` (over HTTPS when `config.https` is
/// given); it runs once awaited.
pub fn serve(listener: TcpListener, jobs: Jobs, config: ServeConfig) -> std::io::Result<Server> {
    let max_body = config.max_body;
    let https = config.https;
    let data = web::Data::new(jobs);
    let tokens = web::Data::new(Tokens(std::sync::Arc::new(config.tokens)));
    let limit = web::Data::new(BodyLimit(max_body));
    let streams = web::Data::new(stream::StreamSettings {
        heartbeat: config.heartbeat,
        shutdown: config.shutdown,
    });
    let metrics = web::Data::new(metrics::Metrics::new(config.fold_seconds));
    // The document with the rules between fields stated (see `exact`), served as committed.
    let document = openapi();
    let server = HttpServer::new(move || {
        let (app, _) = App::new()
            .into_utoipa_app()
            .openapi(ApiDoc::openapi())
            .app_data(data.clone())
            .app_data(tokens.clone())
            .app_data(limit.clone())
            .app_data(streams.clone())
            .app_data(metrics.clone())
            .app_data(
                web::JsonConfig::default()
                    .limit(max_body)
                    .error_handler(move |e, req| input::json_error(e, req, max_body)),
            )
            .app_data(web::QueryConfig::default().error_handler(input::query_error))
            .app_data(web::PathConfig::default().error_handler(input::path_error))
            .configure(routes)
            .split_for_parts();
        app.wrap(from_fn(guard::browser_guard))
            .wrap(from_fn(log_request))
            .service(SwaggerUi::new("/docs/{_:.*}").url("/openapi.json", document.clone()))
            .route(
                "/docs",
                web::get().to(|| async {
                    HttpResponse::PermanentRedirect()
                        .insert_header(("Location", "/docs/"))
                        .finish()
                }),
            )
            .configure(dashboard::routes)
            .default_service(web::to(not_found))
    })
    .workers(2)
    .disable_signals();
    let server = match https {
        Some(config) => server.listen_rustls_0_23(listener, (*config).clone())?,
        None => server.listen(listener)?,
    };
    Ok(server.run())
}

/// Request logging and counting: method, path, status and latency. Never headers (tokens), query
/// strings or bodies (URLs with passwords). The count goes by route pattern (see [`metrics`]).
async fn log_request(
    req: actix_web::dev::ServiceRequest,
    next: actix_web::middleware::Next<impl actix_web::body::MessageBody + 'static>,
) -> Result<actix_web::dev::ServiceResponse<impl actix_web::body::MessageBody>, actix_web::Error> {
    let started = std::time::Instant::now();
    let method = req.method().clone();
    let path = req.path().to_string();
    let route = req
        .match_pattern()
        .unwrap_or_else(|| "unmatched".to_string());
    let counter = req.app_data::<web::Data<metrics::Metrics>>().cloned();
    let response = next.call(req).await;
    let status = match &response {
        Ok(r) => r.status().as_u16(),
        Err(e) => e.as_response_error().status_code().as_u16(),
    };
    if let Some(counter) = counter {
        metrics::count_request(&counter, &route, method.as_str(), status);
    }
    tracing::info!(
        target: "ferry::http",
        %method, %path, status, elapsed_ms = started.elapsed().as_millis() as u64,
        "request"
    );
    response
}
