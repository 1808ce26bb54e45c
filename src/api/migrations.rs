//! `/v1/migrations`: create, list, read, change, and drive migrations through their lifecycle.
//!
//! Each handler parses its input, calls one `jobs` command or query, and turns the answer into
//! JSON. The rules (what a state allows, what a command records) live in `jobs`, not here.

use actix_web::http::header;
use actix_web::{get, patch, post, web, HttpResponse};
use futures::StreamExt;
use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, ToSchema};
use uuid::Uuid;

use super::auth::Actor;
use super::input;
use super::problem::{ApiError, Problem};
use crate::aggregate::migration::{MigrationView, State};
use crate::jobs::{Jobs, MigrationPatch};
use crate::model::{AggregateType, Event, ValidationReport, VerificationReport};
use crate::spec::MigrationSpec;

/// The largest request body accepted, in bytes (from the config).
#[derive(Debug, Clone, Copy)]
pub struct BodyLimit(pub usize);

#[derive(Debug, Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct ListQuery {
    /// Only migrations in this state.
    pub state: Option<State>,
    /// Only migrations created after this one (its id): pass the previous page's `next_after`.
    pub after: Option<Uuid>,
    /// At most this many (1–1000, default 100).
    #[param(minimum = 1, maximum = 1000)]
    pub limit: Option<usize>,
}

/// A page of migrations (or of those in the requested state), oldest first. When `next_after` is
/// set, more may follow: ask again with `after=<next_after>`.
#[derive(Debug, Serialize, ToSchema)]
#[schema(example = json!({"migrations": [{"id": "01936f5e-8a4b-7c2d-9e1f-0a1b2c3d4e5f", "name": null,
    "state": "configured", "phase": null, "phase_detail": null, "mode": "snapshot",
    "source": {"url": "redis://10.0.0.1:6379"}, "target": {"url": "redis://10.0.0.2:6379"},
    "options": {"on_conflict": "fail", "backup": true, "verify": "sample",
        "pause_source_writes_on_cutover": true, "pause_during_verification": false, "auto_cutover": false,
        "transfer": "auto", "limits": {"max_bytes_per_sec": null, "max_ops_per_sec": null}},
    "schedule": {"start_at": null, "cutover_window": null}, "scheduled_start": null,
    "cutover_waits_until": null,
    "validation": null, "progress": {"rdb_bytes_total": null, "rdb_bytes_read": null, "keys_written": null,
        "keys_skipped": null, "keys_total": null, "estimated": false, "commands_streamed": null,
        "lag_bytes": null, "lag_seconds": null, "apply_rate": null, "link_reconnects": null,
        "percent": null, "eta_seconds": null, "throttled_by": null},
    "error": null, "allowed_actions": ["update", "validate", "cancel"],
    "created_at": "2026-01-01T12:00:00Z", "updated_at": "2026-01-01T12:00:00Z",
    "started_at": null, "finished_at": null}],
    "next_after": null}))]
pub struct MigrationList {
    pub migrations: Vec<MigrationView>,
    /// The id of the last migration in this page when the page is full (more may follow), else
    /// `null`.
    pub next_after: Option<Uuid>,
}

#[derive(Debug, Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct EventsQuery {
    /// Only events with a `seq` greater than this (default 0: from the start).
    #[param(minimum = 0)]
    pub after: Option<i64>,
    /// At most this many events (1–1000, default 100).
    #[param(minimum = 1, maximum = 1000)]
    pub limit: Option<usize>,
}

/// A page of events, oldest first. Pass `next_after` as `after` to read on.
#[derive(Debug, Serialize, ToSchema)]
#[schema(example = json!({"events": [
    {"seq": 41, "aggregate_type": "migration", "aggregate_id": "01936f5e-8a4b-7c2d-9e1f-0a1b2c3d4e5f",
        "migration_id": "01936f5e-8a4b-7c2d-9e1f-0a1b2c3d4e5f", "at": "2026-01-01T12:00:00.000001Z",
        "actor": "api", "type": "MigrationStarted", "data": {}},
    {"seq": 42, "aggregate_type": "migration", "aggregate_id": "01936f5e-8a4b-7c2d-9e1f-0a1b2c3d4e5f",
        "migration_id": "01936f5e-8a4b-7c2d-9e1f-0a1b2c3d4e5f", "at": "2026-01-01T12:00:01.5Z",
        "actor": "engine", "type": "Checkpoint",
        "data": {"replid": "8371b4fb1155b71f4a04d3e1bc3e18c4a990aeeb", "applied_offset": 1048576,
            "commands_streamed": 1200, "lag_bytes": 0}}],
    "next_after": 42}))]
pub struct EventPage {
    #[schema(value_type = Vec<crate::model::EventWire>)]
    pub events: Vec<Event>,
    /// The `seq` of the last event in this page (or the `after` given, when the page is empty).
    pub next_after: u64,
}

pub const DEFAULT_LIMIT: usize = 100;
pub const MAX_LIMIT: usize = 1000;

/// The id to pass as `after` for the next page: the last one, when the page is full.
pub fn next_after(
    ids: impl DoubleEndedIterator<Item = Uuid> + ExactSizeIterator,
    limit: usize,
) -> Option<Uuid> {
    let full = ids.len() >= limit;
    ids.last().filter(|_| full)
}

/// Checks `after` (a `seq`, 0 or more; default 0).
pub fn seq_after(after: Option<i64>) -> Result<u64, ApiError> {
    u64::try_from(after.unwrap_or(0)).map_err(|_| {
        ApiError::invalid(
            Some("after".to_string()),
            "after must be 0 or more (a seq from a previous page's next_after)",
        )
    })
}

/// Checks `limit` (1–1000).
pub fn limit(limit: Option<usize>) -> Result<usize, ApiError> {
    match limit.unwrap_or(DEFAULT_LIMIT) {
        n @ 1..=MAX_LIMIT => Ok(n),
        n => Err(ApiError::invalid(
            Some("limit".to_string()),
            format!("limit {n} is out of range; use 1 to {MAX_LIMIT}"),
        )),
    }
}

pub fn page(found: Vec<Event>, after: u64) -> EventPage {
    let next_after = found.last().map_or(after, |e| e.seq);
    EventPage {
        events: found,
        next_after,
    }
}

/// Reads the body up to the configured limit; larger bodies get 413 without being read whole.
pub async fn read_body(
    req: &actix_web::HttpRequest,
    mut payload: web::Payload,
) -> Result<web::Bytes, ApiError> {
    let limit = req
        .app_data::<web::Data<BodyLimit>>()
        .map_or(64 * 1024, |l| l.0);
    let declared = req
        .headers()
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<usize>().ok());
    if declared.is_some_and(|n| n > limit) {
        return Err(ApiError::TooLarge { limit });
    }
    let mut body = web::BytesMut::new();
    while let Some(chunk) = payload.next().await {
        let chunk = chunk.map_err(|e| input::payload_error(e, limit))?;
        if body.len() + chunk.len() > limit {
            return Err(ApiError::TooLarge { limit });
        }
        body.extend_from_slice(&chunk);
    }
    super::guard::require_content_type(req, super::guard::BodyType::Json, !body.is_empty())?;
    Ok(body.freeze())
}

/// Create a migration.
///
/// Records the spec (with passwords redacted) as `MigrationCreated`; the credentials are kept
/// encrypted, apart from the log. The migration starts in `configured`: validate it next.
#[utoipa::path(
    tag = "migrations",
    request_body(content = MigrationSpec, example = json!({"name": "cache to new host",
        "source": {"url": "redis://default:s3cret@10.0.0.1:6379"}, "target": {"url": "redis://10.0.0.2:6379"},
        "mode": "live", "options": {"on_conflict": "fail", "verify": "full"}})),
    responses(
        (status = 201, description = "Created; `Location` names the new migration", body = MigrationView,
            headers(("Location" = String, description = "/v1/migrations/{id}"))),
        (status = 400, description = "Malformed JSON, an unknown field, a bad URL or enum value; `field` names it", body = Problem, content_type = "application/problem+json"),
        (status = 401, description = "Missing or wrong bearer token", body = Problem, content_type = "application/problem+json"),
        (status = 404, description = "`source.rdb.backup_id` names no backup", body = Problem, content_type = "application/problem+json"),
        (status = 409, description = "The source backup is not completed; `allowed_actions` says what it allows", body = Problem, content_type = "application/problem+json"),
        (status = 413, description = "Body larger than the configured limit", body = Problem, content_type = "application/problem+json"),
        (status = 415, description = "The body is not sent as `application/json`", body = Problem, content_type = "application/problem+json"),
    ),
)]
#[post("/migrations")]
pub async fn create(
    jobs: web::Data<Jobs>,
    actor: Actor,
    req: actix_web::HttpRequest,
    payload: web::Payload,
) -> Result<HttpResponse, ApiError> {
    let body = read_body(&req, payload).await?;
    let spec = input::spec(&body)?;
    let view = jobs.create(spec, &actor.0).await?;
    Ok(HttpResponse::Created()
        .insert_header((header::LOCATION, format!("/v1/migrations/{}", view.id)))
        .json(view))
}

/// List migrations, oldest first, a page at a time.
///
/// `limit` defaults to 100 and may be 1 to 1000; pass the page's `next_after` as `after` to read
/// on. `state` filters before the page is cut.
#[utoipa::path(
    tag = "migrations",
    params(ListQuery),
    responses(
        (status = 200, body = MigrationList),
        (status = 400, description = "Unknown state or parameter", body = Problem, content_type = "application/problem+json"),
        (status = 401, body = Problem, content_type = "application/problem+json"),
    ),
)]
#[get("/migrations")]
pub async fn list(
    jobs: web::Data<Jobs>,
    query: web::Query<ListQuery>,
) -> Result<web::Json<MigrationList>, ApiError> {
    let limit = limit(query.limit)?;
    let migrations = jobs.list(query.state, query.after, limit);
    let next_after = next_after(migrations.iter().map(|m| m.id), limit);
    Ok(web::Json(MigrationList {
        migrations,
        next_after,
    }))
}

/// Read one migration: state, phase, progress, validation report and error.
#[utoipa::path(
    tag = "migrations",
    params(("id" = Uuid, Path, description = "Migration id")),
    responses(
        (status = 200, body = MigrationView),
        (status = 400, description = "The id is not a UUID", body = Problem, content_type = "application/problem+json"),
        (status = 401, body = Problem, content_type = "application/problem+json"),
        (status = 404, body = Problem, content_type = "application/problem+json"),
    ),
)]
#[get("/migrations/{id}")]
pub async fn get(
    jobs: web::Data<Jobs>,
    id: web::Path<Uuid>,
) -> Result<web::Json<MigrationView>, ApiError> {
    Ok(web::Json(jobs.get(*id)?))
}

/// Change a migration before it starts, or the rate limits of a running one.
///
/// Only the fields given change. Any change sends the migration back to `configured`, so it must
/// be validated again. While the migration runs, only `{"options": {"limits": {…}}}` is accepted
/// (the limits are replaced whole, recorded as `LimitsChanged`, and applied at once); anything
/// else is 409. A URL sent back with `***` as its password keeps the stored password, for
/// the same server only. Stored passwords never follow a new pairing: moving the source or the
/// target to another server needs the other end's password in the same PATCH (409 naming it).
#[utoipa::path(
    tag = "migrations",
    params(("id" = Uuid, Path, description = "Migration id")),
    request_body = MigrationPatch,
    responses(
        (status = 200, body = MigrationView),
        (status = 400, body = Problem, content_type = "application/problem+json"),
        (status = 401, body = Problem, content_type = "application/problem+json"),
        (status = 404, body = Problem, content_type = "application/problem+json"),
        (status = 409, description = "The migration has started and the PATCH changes more than `options.limits` (`allowed_actions` says what it allows), a running relay was given limits, or the PATCH moves one end to another server without the other end's password (`field` names it)", body = Problem, content_type = "application/problem+json"),
        (status = 413, body = Problem, content_type = "application/problem+json"),
        (status = 415, description = "The body is not sent as `application/json`", body = Problem, content_type = "application/problem+json"),
    ),
)]
#[patch("/migrations/{id}")]
pub async fn update(
    jobs: web::Data<Jobs>,
    actor: Actor,
    id: web::Path<Uuid>,
    req: actix_web::HttpRequest,
    payload: web::Payload,
) -> Result<web::Json<MigrationView>, ApiError> {
    let body = read_body(&req, payload).await?;
    let patch = input::patch(&body)?;
    Ok(web::Json(jobs.update(*id, patch, &actor.0).await?))
}

/// Validate a migration: connect to both servers and run the pre-flight checks.
///
/// The report is recorded (`ValidationStarted`, `ValidationCompleted`) and returned. A report that
/// passes, with or without warnings, moves the migration to `validated`; a failed one to
/// `validation_failed`.
#[utoipa::path(
    tag = "migrations",
    params(("id" = Uuid, Path, description = "Migration id")),
    responses(
        (status = 200, body = ValidationReport),
        (status = 400, description = "The id is not a UUID", body = Problem, content_type = "application/problem+json"),
        (status = 401, body = Problem, content_type = "application/problem+json"),
        (status = 404, body = Problem, content_type = "application/problem+json"),
        (status = 409, description = "Not allowed in this state, or a validation is already running", body = Problem, content_type = "application/problem+json"),
    ),
)]
#[post("/migrations/{id}/validate")]
pub async fn validate(
    jobs: web::Data<Jobs>,
    actor: Actor,
    id: web::Path<Uuid>,
) -> Result<web::Json<ValidationReport>, ApiError> {
    Ok(web::Json(jobs.validate(*id, &actor.0).await?))
}

/// Start a validated migration. The engine runs in the background; follow it with
/// `GET /v1/migrations/{id}` or its events.
///
/// Takes the target's lease (`ferry:lease` in its db 0) first: one writer per target. When
/// another migration or restore holds it, the answer is 409 naming the holder; `force=true`
/// takes it over (a lease of a Ferry that died also expires by itself within 15 s).
#[utoipa::path(
    tag = "migrations",
    params(("id" = Uuid, Path, description = "Migration id"), ForceQuery),
    responses(
        (status = 202, description = "Started", body = MigrationView),
        (status = 400, description = "The id is not a UUID, or a bad `force`", body = Problem, content_type = "application/problem+json"),
        (status = 401, body = Problem, content_type = "application/problem+json"),
        (status = 404, body = Problem, content_type = "application/problem+json"),
        (status = 409, description = "Not `validated`, or the target is in use by another writer (`field`: `target.url`, the detail names it) or does not answer", body = Problem, content_type = "application/problem+json"),
        (status = 507, description = "Ferry's disk is below its free-space floor", body = Problem, content_type = "application/problem+json"),
    ),
)]
#[post("/migrations/{id}/start")]
pub async fn start(
    jobs: web::Data<Jobs>,
    actor: Actor,
    id: web::Path<Uuid>,
    query: web::Query<ForceQuery>,
) -> Result<HttpResponse, ApiError> {
    let force = query.force.unwrap_or(false);
    Ok(HttpResponse::Accepted().json(jobs.start(*id, &actor.0, force).await?))
}

/// `?force=true`: take the target's lease over from another writer.
#[derive(Debug, Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct ForceQuery {
    /// Take over the target's lease from whoever holds it (a Ferry that died, or another
    /// writer you mean to stop): recorded as `LeaseAcquired` with `took_over`. The other
    /// writer stops at its next renewal.
    pub force: Option<bool>,
}

/// Cut a live migration over: stop at the source's current offset, verify, complete.
///
/// With a `schedule.cutover_window`, a cutover outside it is refused (409) unless the body is
/// `{"force": true}`, which is recorded (`CutoverForced`, with the actor). The body is optional.
#[utoipa::path(
    tag = "migrations",
    params(("id" = Uuid, Path, description = "Migration id")),
    request_body(content = Option<CutoverRequest>, description = "Optional; `{\"force\": true}` cuts over outside the cutover window"),
    responses(
        (status = 202, description = "Cutover started", body = MigrationView),
        (status = 400, description = "The id is not a UUID, or a bad body", body = Problem, content_type = "application/problem+json"),
        (status = 401, body = Problem, content_type = "application/problem+json"),
        (status = 404, body = Problem, content_type = "application/problem+json"),
        (status = 409, description = "Not a migrating live migration, or outside the cutover window without `force`", body = Problem, content_type = "application/problem+json"),
    ),
)]
#[post("/migrations/{id}/cutover")]
pub async fn cutover(
    jobs: web::Data<Jobs>,
    actor: Actor,
    id: web::Path<Uuid>,
    req: actix_web::HttpRequest,
    payload: web::Payload,
) -> Result<HttpResponse, ApiError> {
    let body = read_body(&req, payload).await?;
    let force = if body.iter().all(u8::is_ascii_whitespace) {
        false
    } else {
        serde_json::from_slice::<CutoverRequest>(&body)
            .map_err(|e| ApiError::invalid(Some("force".into()), format!("the body: {e}")))?
            .force
    };
    Ok(HttpResponse::Accepted().json(jobs.cutover_with(*id, &actor.0, force).await?))
}

/// Body of `POST /v1/migrations/{id}/cutover` (optional).
#[derive(Debug, Default, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CutoverRequest {
    /// Cut over even outside `schedule.cutover_window` (recorded as `CutoverForced`).
    #[serde(default)]
    #[schema(default = false)]
    pub force: bool,
}

/// Cancel a migration. A running engine stops at its next safe point and `MigrationCancelled`
/// is recorded then; a migration that is not running is cancelled at once.
#[utoipa::path(
    tag = "migrations",
    params(("id" = Uuid, Path, description = "Migration id")),
    responses(
        (status = 202, description = "Cancelled, or cancelling", body = MigrationView),
        (status = 400, description = "The id is not a UUID", body = Problem, content_type = "application/problem+json"),
        (status = 401, body = Problem, content_type = "application/problem+json"),
        (status = 404, body = Problem, content_type = "application/problem+json"),
        (status = 409, description = "Already final", body = Problem, content_type = "application/problem+json"),
    ),
)]
#[post("/migrations/{id}/cancel")]
pub async fn cancel(
    jobs: web::Data<Jobs>,
    actor: Actor,
    id: web::Path<Uuid>,
) -> Result<HttpResponse, ApiError> {
    Ok(HttpResponse::Accepted().json(jobs.cancel(*id, &actor.0).await?))
}

/// The migration's events, oldest first.
#[utoipa::path(
    tag = "events",
    params(("id" = Uuid, Path, description = "Migration id"), EventsQuery),
    responses(
        (status = 200, body = EventPage),
        (status = 400, body = Problem, content_type = "application/problem+json"),
        (status = 401, body = Problem, content_type = "application/problem+json"),
        (status = 404, body = Problem, content_type = "application/problem+json"),
    ),
)]
#[get("/migrations/{id}/events")]
pub async fn events(
    jobs: web::Data<Jobs>,
    id: web::Path<Uuid>,
    query: web::Query<EventsQuery>,
) -> Result<web::Json<EventPage>, ApiError> {
    let after = seq_after(query.after)?;
    let found = jobs
        .events(AggregateType::Migration, *id, after, limit(query.limit)?)
        .await?;
    Ok(web::Json(page(found, after)))
}

/// The verification report, once the engine has verified the copy.
#[utoipa::path(
    tag = "migrations",
    params(("id" = Uuid, Path, description = "Migration id")),
    responses(
        (status = 200, body = VerificationReport),
        (status = 400, description = "The id is not a UUID", body = Problem, content_type = "application/problem+json"),
        (status = 401, body = Problem, content_type = "application/problem+json"),
        (status = 404, description = "No such migration", body = Problem, content_type = "application/problem+json"),
        (status = 409, description = "Not verified yet", body = Problem, content_type = "application/problem+json"),
    ),
)]
#[get("/migrations/{id}/verification")]
pub async fn verification(
    jobs: web::Data<Jobs>,
    id: web::Path<Uuid>,
) -> Result<web::Json<VerificationReport>, ApiError> {
    let view = jobs.get(*id)?;
    jobs.verification(*id)?
        .map(web::Json)
        .ok_or_else(|| ApiError::Conflict {
            detail: format!(
                "migration {} has not been verified yet (it is {}); the report exists once the \
             engine has verified the copy",
                *id, view.state
            ),
            state: Some(view.state.to_string()),
            allowed: Some(view.allowed_actions),
            field: None,
        })
}
