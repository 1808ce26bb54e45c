//! `/v1/restores`: loads of backups into servers, as resources; and migration rollback, which is
//! a restore of the migration's restore point.
//!
//! Both ways in answer 202 with `Location: /v1/restores/{id}` and the restore, once the target has
//! been looked at (it answers, the conflict policy suits what it holds, the file fits its memory):
//! what would only fail later is refused at once, with a 4xx naming the field to change. The load
//! runs in the background; `GET /v1/restores/{id}` shows its state, progress and outcome.

use actix_web::http::header;
use actix_web::{get, post, web, HttpResponse};
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;
use uuid::Uuid;

use super::auth::Actor;
use super::backups::{json, PageQuery};
use super::migrations::{limit, next_after, read_body, ForceQuery};
use super::problem::{ApiError, Problem};
use crate::aggregate::restore::Restore;
use crate::jobs::Jobs;
use crate::spec::{Endpoint, OnConflict};

/// Body of `POST /v1/backups/{id}/restore`.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct RestoreRequest {
    pub target: Endpoint,
    /// What to do with keys the target already has (default `fail`).
    #[serde(default)]
    pub on_conflict: OnConflict,
    /// Take the target's lease over from whoever holds it (recorded as `LeaseAcquired` with
    /// `took_over`).
    #[serde(default)]
    pub force: bool,
}

/// A page of restores, oldest first. When `next_after` is set, more may follow.
#[derive(Debug, Serialize, ToSchema)]
pub struct RestoreList {
    pub restores: Vec<Restore>,
    /// The id of the last restore in this page when the page is full, else `null`.
    pub next_after: Option<Uuid>,
}

fn accepted(restore: Restore) -> HttpResponse {
    HttpResponse::Accepted()
        .insert_header((header::LOCATION, format!("/v1/restores/{}", restore.id)))
        .json(restore)
}

/// Restore a backup into a server.
///
/// Loads the file with the migration's own writer (RESTORE, or plain commands for an older
/// target), after reading it whole and proving it (CRC-64 and SHA-256 as recorded) before the
/// first write or flush. Checked before it is accepted: the target's lease is free, the backup
/// is completed and not being restored, the target answers, with `on_conflict: fail` the target
/// holds no keys in the databases the backup writes, and the file fits under the target's
/// `maxmemory`. Runs in the background: follow `Location`.
#[utoipa::path(
    tag = "restores",
    params(("id" = Uuid, Path, description = "Backup id")),
    request_body(content = RestoreRequest, example = json!({"target": {"url": "redis://10.0.0.3:6379"}, "on_conflict": "replace"})),
    responses(
        (status = 202, description = "Started; poll `Location`", body = Restore,
            headers(("Location" = String, description = "/v1/restores/{id}"))),
        (status = 400, description = "Bad body or id; `field` names it", body = Problem, content_type = "application/problem+json"),
        (status = 401, body = Problem, content_type = "application/problem+json"),
        (status = 404, body = Problem, content_type = "application/problem+json"),
        (status = 409, description = "The backup is not completed or is being restored (`allowed_actions` says what it allows), or the target cannot take it: it does not answer, is in use by another writer, holds conflicting keys, or is too small (`field` says what to change)", body = Problem, content_type = "application/problem+json"),
        (status = 413, body = Problem, content_type = "application/problem+json"),
        (status = 415, description = "The body is not sent as `application/json`", body = Problem, content_type = "application/problem+json"),
    ),
)]
#[post("/backups/{id}/restore")]
pub async fn create(
    jobs: web::Data<Jobs>,
    actor: Actor,
    id: web::Path<Uuid>,
    req: actix_web::HttpRequest,
    payload: web::Payload,
) -> Result<HttpResponse, ApiError> {
    let body = read_body(&req, payload).await?;
    let request: RestoreRequest = json(&body)?;
    let restore = jobs
        .start_restore(
            *id,
            request.target,
            request.on_conflict,
            &actor.0,
            request.force,
        )
        .await?;
    Ok(accepted(restore))
}

/// Roll a migration back: restore the target to its restore point.
///
/// An action of the migration (in `allowed_actions` when allowed): once the migration is
/// `failed`, `cancelled` or `completed`, has a restore point (or its target held no keys when it
/// started: that restore point is "empty"), and is not being rolled back. The restore point's
/// file is read whole and proven (CRC-64 and SHA-256) before anything is flushed; then the target
/// is flushed (what the migration wrote) and the restore point loaded, in the background: follow
/// `Location`. The rollback holds the target's lease (409 naming the holder when someone else
/// has it; `force=true` takes it over). The migration records `RollbackRequested` and
/// `RollbackEnded`, and shows the outcome as `rolled_back`.
#[utoipa::path(
    tag = "migrations",
    params(("id" = Uuid, Path, description = "Migration id"), ForceQuery),
    responses(
        (status = 202, description = "Rollback started; poll `Location`", body = Restore,
            headers(("Location" = String, description = "/v1/restores/{id}"))),
        (status = 400, description = "The id is not a UUID", body = Problem, content_type = "application/problem+json"),
        (status = 401, body = Problem, content_type = "application/problem+json"),
        (status = 404, body = Problem, content_type = "application/problem+json"),
        (status = 409, description = "Not allowed now (not final, no restore point, or rolling back; `allowed_actions` says what is), or the target does not answer or is in use by another writer (`field`)", body = Problem, content_type = "application/problem+json"),
    ),
)]
#[post("/migrations/{id}/rollback")]
pub async fn rollback(
    jobs: web::Data<Jobs>,
    actor: Actor,
    id: web::Path<Uuid>,
    query: web::Query<ForceQuery>,
) -> Result<HttpResponse, ApiError> {
    let force = query.force.unwrap_or(false);
    Ok(accepted(jobs.rollback(*id, &actor.0, force).await?))
}

/// List restores, oldest first, a page at a time.
///
/// `limit` defaults to 100 and may be 1 to 1000; pass the page's `next_after` as `after`.
#[utoipa::path(
    tag = "restores",
    params(PageQuery),
    responses(
        (status = 200, body = RestoreList),
        (status = 400, description = "Bad `after` or `limit`", body = Problem, content_type = "application/problem+json"),
        (status = 401, body = Problem, content_type = "application/problem+json"),
    ),
)]
#[get("/restores")]
pub async fn list(
    jobs: web::Data<Jobs>,
    query: web::Query<PageQuery>,
) -> Result<web::Json<RestoreList>, ApiError> {
    let limit = limit(query.limit)?;
    let restores = jobs.restores(query.after, limit);
    let next_after = next_after(restores.iter().map(|r| r.id), limit);
    Ok(web::Json(RestoreList {
        restores,
        next_after,
    }))
}

/// Read one restore: state, progress, outcome or error, backup, target (redacted), conflict
/// policy, and the migration it rolls back, if any.
#[utoipa::path(
    tag = "restores",
    params(("id" = Uuid, Path, description = "Restore id")),
    responses(
        (status = 200, body = Restore),
        (status = 400, description = "The id is not a UUID", body = Problem, content_type = "application/problem+json"),
        (status = 401, body = Problem, content_type = "application/problem+json"),
        (status = 404, body = Problem, content_type = "application/problem+json"),
    ),
)]
#[get("/restores/{id}")]
pub async fn get(
    jobs: web::Data<Jobs>,
    id: web::Path<Uuid>,
) -> Result<web::Json<Restore>, ApiError> {
    Ok(web::Json(jobs.restore(*id)?))
}
