//! `/v1/backups`: RDB copies of servers, restore, download, upload; and migration rollback.
//!
//! A backup is taken in the background (202, then poll `GET /v1/backups/{id}`: `status` and
//! `bytes`); refusals that can be known at once (the server cannot be reached, the file would
//! not fit) come back synchronously, before anything is recorded. An upload is stored and checked
//! (parsed to its end, checksum included) in the request itself: it is accepted whole or not at
//! all.

use actix_web::http::header;
use actix_web::{delete, get, post, web, HttpResponse};
use futures::StreamExt;
use serde::{Deserialize, Serialize};
use tokio::io::AsyncReadExt;
use utoipa::{IntoParams, ToSchema};
use uuid::Uuid;

use super::auth::Actor;
use super::input;
use super::migrations::read_body;
use super::problem::{redact_urls, ApiError, Problem};
use crate::backup::file::RdbFileWriter;
use crate::backup::{BackupError, BackupView};
use crate::jobs::{Jobs, MigrationView};
use crate::spec::{Endpoint, OnConflict};

/// Body of `POST /v1/backups`.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct BackupRequest {
    /// The server to back up (over the replication link: the user needs `+psync +replconf`).
    pub server: Endpoint,
    pub label: Option<String>,
}

/// Body of `POST /v1/backups/{id}/restore`.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct RestoreRequest {
    pub target: Endpoint,
    /// What to do with keys the target already has (default `fail`).
    #[serde(default)]
    pub on_conflict: OnConflict,
}

/// All backups, oldest first.
#[derive(Debug, Serialize, ToSchema)]
pub struct BackupList {
    pub backups: Vec<BackupView>,
}

#[derive(Debug, Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct UploadQuery {
    /// A name for the uploaded backup.
    pub label: Option<String>,
}

fn json<T: serde::de::DeserializeOwned>(body: &[u8]) -> Result<T, ApiError> {
    serde_json::from_slice(body)
        .map_err(|e| ApiError::invalid(None, format!("invalid request body: {e}")))
}

/// Back up a server.
///
/// Copies the server's RDB over the replication link into `data_dir/backups/` (written to a
/// temporary file, checked, fsynced, renamed). Refused with 507 when it would not fit.
#[utoipa::path(
    tag = "backups",
    request_body(content = BackupRequest, example = json!({"server": {"url": "redis://10.0.0.2:6379"}, "label": "before upgrade"})),
    responses(
        (status = 202, description = "Started; poll `Location`", body = BackupView,
            headers(("Location" = String, description = "/v1/backups/{id}"))),
        (status = 400, description = "Bad body, or the server cannot be reached or refuses replication", body = Problem, content_type = "application/problem+json"),
        (status = 401, body = Problem, content_type = "application/problem+json"),
        (status = 507, description = "The backup would not fit on disk or under `backup_max_bytes`", body = Problem, content_type = "application/problem+json"),
    ),
)]
#[post("/backups")]
pub async fn create(
    jobs: web::Data<Jobs>,
    actor: Actor,
    req: actix_web::HttpRequest,
    payload: web::Payload,
) -> Result<HttpResponse, ApiError> {
    let body = read_body(&req, payload).await?;
    let request: BackupRequest = json(&body)?;
    let view = jobs
        .backups()
        .start(request.server.url, request.label, &actor.0)
        .await?;
    Ok(HttpResponse::Accepted()
        .insert_header((header::LOCATION, format!("/v1/backups/{}", view.id)))
        .json(view))
}

/// List backups, oldest first (deleted ones too: the history stays).
#[utoipa::path(
    tag = "backups",
    responses(
        (status = 200, body = BackupList),
        (status = 401, body = Problem, content_type = "application/problem+json"),
    ),
)]
#[get("/backups")]
pub async fn list(jobs: web::Data<Jobs>) -> web::Json<BackupList> {
    web::Json(BackupList {
        backups: jobs.backups().list(),
    })
}

/// Read one backup: status, bytes, checksums, key counts, server and RDB version, last restore.
#[utoipa::path(
    tag = "backups",
    params(("id" = Uuid, Path, description = "Backup id")),
    responses(
        (status = 200, body = BackupView),
        (status = 401, body = Problem, content_type = "application/problem+json"),
        (status = 404, body = Problem, content_type = "application/problem+json"),
    ),
)]
#[get("/backups/{id}")]
pub async fn get(
    jobs: web::Data<Jobs>,
    id: web::Path<Uuid>,
) -> Result<web::Json<BackupView>, ApiError> {
    Ok(web::Json(jobs.backups().get(*id)?))
}

/// Download a completed backup as an `.rdb` file.
#[utoipa::path(
    tag = "backups",
    params(("id" = Uuid, Path, description = "Backup id")),
    responses(
        (status = 200, description = "The RDB file", content_type = "application/octet-stream"),
        (status = 401, body = Problem, content_type = "application/problem+json"),
        (status = 404, body = Problem, content_type = "application/problem+json"),
        (status = 409, description = "Not completed (running, failed or deleted)", body = Problem, content_type = "application/problem+json"),
    ),
)]
#[get("/backups/{id}/download")]
pub async fn download(
    jobs: web::Data<Jobs>,
    id: web::Path<Uuid>,
) -> Result<HttpResponse, ApiError> {
    let path = jobs.backups().file(*id)?;
    let file = tokio::fs::File::open(&path)
        .await
        .map_err(|e| ApiError::Internal(format!("cannot open backup {id}: {e}")))?;
    let length = file
        .metadata()
        .await
        .map_err(|e| ApiError::Internal(format!("cannot read backup {id}: {e}")))?
        .len();
    let chunks = futures::stream::unfold(Some(file), |file| async move {
        let mut file = file?;
        let mut buf = vec![0u8; 256 * 1024];
        match file.read(&mut buf).await {
            Ok(0) => None,
            Ok(n) => {
                buf.truncate(n);
                Some((Ok::<_, std::io::Error>(web::Bytes::from(buf)), Some(file)))
            }
            Err(e) => Some((Err(e), None)),
        }
    });
    Ok(HttpResponse::Ok()
        .content_type("application/octet-stream")
        .insert_header((
            header::CONTENT_DISPOSITION,
            format!("attachment; filename=\"{id}.rdb\""),
        ))
        .no_chunking(length)
        .streaming(chunks))
}

/// Restore a backup into a server.
///
/// Loads the file with the migration's own writer (RESTORE, or plain commands for an older
/// target). Runs in the background: poll the backup's `last_restore`.
#[utoipa::path(
    tag = "backups",
    params(("id" = Uuid, Path, description = "Backup id")),
    request_body(content = RestoreRequest, example = json!({"target": {"url": "redis://10.0.0.3:6379"}, "on_conflict": "replace"})),
    responses(
        (status = 202, description = "Started", body = BackupView),
        (status = 400, body = Problem, content_type = "application/problem+json"),
        (status = 401, body = Problem, content_type = "application/problem+json"),
        (status = 404, body = Problem, content_type = "application/problem+json"),
        (status = 409, description = "Not completed, or a restore is running", body = Problem, content_type = "application/problem+json"),
    ),
)]
#[post("/backups/{id}/restore")]
pub async fn restore(
    jobs: web::Data<Jobs>,
    actor: Actor,
    id: web::Path<Uuid>,
    req: actix_web::HttpRequest,
    payload: web::Payload,
) -> Result<HttpResponse, ApiError> {
    let body = read_body(&req, payload).await?;
    let request: RestoreRequest = json(&body)?;
    let backups = jobs.backups().clone();
    let id = *id;
    let target = request.target.url;
    let path = backups
        .begin_restore(id, &target, request.on_conflict, &actor.0)
        .await?;
    let view = backups.get(id)?;
    tokio::spawn(async move {
        if let Err(e) = backups
            .run_restore(id, &path, &target, request.on_conflict, &actor.0)
            .await
        {
            tracing::error!(backup = %id, error = %e, "could not record the restore's outcome");
        }
    });
    Ok(HttpResponse::Accepted().json(view))
}

/// Delete a backup's file. The event is recorded; the history stays.
#[utoipa::path(
    tag = "backups",
    params(("id" = Uuid, Path, description = "Backup id")),
    responses(
        (status = 200, body = BackupView),
        (status = 401, body = Problem, content_type = "application/problem+json"),
        (status = 404, body = Problem, content_type = "application/problem+json"),
        (status = 409, description = "Still running", body = Problem, content_type = "application/problem+json"),
    ),
)]
#[delete("/backups/{id}")]
pub async fn remove(
    jobs: web::Data<Jobs>,
    actor: Actor,
    id: web::Path<Uuid>,
) -> Result<web::Json<BackupView>, ApiError> {
    Ok(web::Json(jobs.backups().delete(*id, &actor.0).await?))
}

/// Upload an RDB file (the body, `application/octet-stream`) as a backup.
///
/// Streamed to disk, capped by `upload_max_bytes`, and parsed to its end (checksum included)
/// before it is accepted. A corrupt or truncated file gets 400 with the `offset` where it stops
/// being valid, and nothing is stored.
#[utoipa::path(
    tag = "backups",
    params(UploadQuery),
    request_body(content = Vec<u8>, content_type = "application/octet-stream"),
    responses(
        (status = 201, description = "Stored and checked", body = BackupView),
        (status = 400, description = "Not a valid RDB; `offset` says where", body = Problem, content_type = "application/problem+json"),
        (status = 401, body = Problem, content_type = "application/problem+json"),
        (status = 413, description = "Larger than `upload_max_bytes`", body = Problem, content_type = "application/problem+json"),
    ),
)]
#[post("/backups/upload")]
pub async fn upload(
    jobs: web::Data<Jobs>,
    actor: Actor,
    query: web::Query<UploadQuery>,
    req: actix_web::HttpRequest,
    mut payload: web::Payload,
) -> Result<HttpResponse, ApiError> {
    let backups = jobs.backups();
    let limit = backups.limits().upload_max_bytes;
    let too_large = || ApiError::TooLarge {
        limit: usize::try_from(limit).unwrap_or(usize::MAX),
    };
    let declared = req
        .headers()
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok());
    if declared.is_some_and(|n| n > limit) {
        return Err(too_large());
    }
    let id = Uuid::now_v7();
    // Dropped on any early return, which removes the partial file.
    let mut writer = RdbFileWriter::create(backups.dir(), id, limit).await?;
    while let Some(chunk) = payload.next().await {
        let chunk = chunk.map_err(|e| input::payload_error(e, usize::MAX))?;
        writer.write(&chunk).await.map_err(|e| match e {
            BackupError::TooLarge { .. } => too_large(),
            other => other.into(),
        })?;
    }
    let facts = writer.finish().await?;
    let label = query.into_inner().label.map(|l| redact_urls(&l));
    let view = backups.record_upload(id, label, &facts, &actor.0).await?;
    Ok(HttpResponse::Created()
        .insert_header((header::LOCATION, format!("/v1/backups/{id}")))
        .json(view))
}

/// Roll a migration back: restore the target to its restore point.
///
/// Allowed in `failed`, `cancelled` or `completed`. Flushes the target (what the migration wrote)
/// and loads the restore point taken before the first write; waits until done. The outcome is
/// recorded (`RestoreCompleted` or `RestoreFailed`) and shown as `rolled_back`.
#[utoipa::path(
    tag = "migrations",
    params(("id" = Uuid, Path, description = "Migration id")),
    responses(
        (status = 200, description = "Rolled back (or the failure recorded: see `rolled_back`)", body = MigrationView),
        (status = 401, body = Problem, content_type = "application/problem+json"),
        (status = 404, body = Problem, content_type = "application/problem+json"),
        (status = 409, description = "Not in a final state, or no restore point", body = Problem, content_type = "application/problem+json"),
    ),
)]
#[post("/migrations/{id}/rollback")]
pub async fn rollback(
    jobs: web::Data<Jobs>,
    actor: Actor,
    id: web::Path<Uuid>,
) -> Result<web::Json<MigrationView>, ApiError> {
    Ok(web::Json(jobs.rollback(*id, &actor.0).await?))
}
