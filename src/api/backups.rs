//! `/v1/backups`: RDB copies of servers, download, upload, delete. (Restores: [`super::restores`].)
//!
//! A backup is taken in the background (202, then poll `GET /v1/backups/{id}`: `status` and
//! `bytes`, which come from the capture's checkpoint events); refusals that can be known at once
//! (the server cannot be reached, the file would not fit) come back synchronously, before anything
//! is recorded.
//!
//! An upload is parsed and checked as its bytes arrive, in the request itself, and answers 201:
//! the body *is* the input, so once it has arrived there is no work left to supervise (a 202 would
//! only add a spool of the body and a second pass over it). Its record still goes through the
//! backup aggregate, like a capture's.

use actix_web::http::header;
use actix_web::{delete, get, post, web, HttpResponse};
use futures::StreamExt;
use serde::{Deserialize, Serialize};
use tokio::io::AsyncReadExt;
use utoipa::{IntoParams, ToSchema};
use uuid::Uuid;

use super::auth::Actor;
use super::input;
use super::migrations::{limit, next_after, read_body};
use super::problem::{redact_urls, ApiError, Problem};
use crate::aggregate::backup::Backup;
use crate::jobs::{Jobs, UploadError};
use crate::spec::Endpoint;

/// Body of `POST /v1/backups`.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct BackupRequest {
    /// The server to back up (over the replication link: the user needs `+psync +replconf`).
    pub server: Endpoint,
    pub label: Option<String>,
}

/// A page of backups, oldest first. When `next_after` is set, more may follow.
#[derive(Debug, Serialize, ToSchema)]
pub struct BackupList {
    pub backups: Vec<Backup>,
    /// The id of the last backup in this page when the page is full, else `null`.
    pub next_after: Option<Uuid>,
}

#[derive(Debug, Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct PageQuery {
    /// Only those created after this one (its id): pass the previous page's `next_after`.
    pub after: Option<Uuid>,
    /// At most this many (1–1000, default 100).
    #[param(minimum = 1, maximum = 1000)]
    pub limit: Option<usize>,
}

#[derive(Debug, Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct UploadQuery {
    /// A name for the uploaded backup.
    pub label: Option<String>,
}

pub(super) fn json<T: serde::de::DeserializeOwned>(body: &[u8]) -> Result<T, ApiError> {
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
        (status = 202, description = "Started; poll `Location`", body = Backup,
            headers(("Location" = String, description = "/v1/backups/{id}"))),
        (status = 400, description = "Bad body: not JSON, an unknown field, a URL outside the documented pattern; `field` names it", body = Problem, content_type = "application/problem+json"),
        (status = 401, body = Problem, content_type = "application/problem+json"),
        (status = 409, description = "The server cannot be used now: it does not answer or refuses us (`field`: `server.url`)", body = Problem, content_type = "application/problem+json"),
        (status = 413, body = Problem, content_type = "application/problem+json"),
        (status = 415, description = "The body is not sent as `application/json`", body = Problem, content_type = "application/problem+json"),
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
        .start_backup(request.server, request.label, &actor.0)
        .await?;
    Ok(HttpResponse::Accepted()
        .insert_header((header::LOCATION, format!("/v1/backups/{}", view.id)))
        .json(view))
}

/// List backups, oldest first (deleted ones too: the history stays), a page at a time.
///
/// `limit` defaults to 100 and may be 1 to 1000; pass the page's `next_after` as `after`.
#[utoipa::path(
    tag = "backups",
    params(PageQuery),
    responses(
        (status = 200, body = BackupList),
        (status = 400, description = "Bad `after` or `limit`", body = Problem, content_type = "application/problem+json"),
        (status = 401, body = Problem, content_type = "application/problem+json"),
    ),
)]
#[get("/backups")]
pub async fn list(
    jobs: web::Data<Jobs>,
    query: web::Query<PageQuery>,
) -> Result<web::Json<BackupList>, ApiError> {
    let limit = limit(query.limit)?;
    let backups = jobs.backups(query.after, limit);
    let next_after = next_after(backups.iter().map(|b| b.id), limit);
    Ok(web::Json(BackupList {
        backups,
        next_after,
    }))
}

/// Read one backup: status, bytes, checksums, key counts, server and RDB version, restores.
#[utoipa::path(
    tag = "backups",
    params(("id" = Uuid, Path, description = "Backup id")),
    responses(
        (status = 200, body = Backup),
        (status = 400, description = "The id is not a UUID", body = Problem, content_type = "application/problem+json"),
        (status = 401, body = Problem, content_type = "application/problem+json"),
        (status = 404, body = Problem, content_type = "application/problem+json"),
    ),
)]
#[get("/backups/{id}")]
pub async fn get(
    jobs: web::Data<Jobs>,
    id: web::Path<Uuid>,
) -> Result<web::Json<Backup>, ApiError> {
    Ok(web::Json(jobs.backup(*id)?))
}

/// Download a completed backup as an `.rdb` file.
#[utoipa::path(
    tag = "backups",
    params(("id" = Uuid, Path, description = "Backup id")),
    responses(
        (status = 200, description = "The RDB file", content_type = "application/octet-stream"),
        (status = 400, description = "The id is not a UUID", body = Problem, content_type = "application/problem+json"),
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
    let path = jobs.backup_file(*id)?;
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

/// Delete a backup's file. The event is recorded; the history stays.
#[utoipa::path(
    tag = "backups",
    params(("id" = Uuid, Path, description = "Backup id")),
    responses(
        (status = 200, body = Backup),
        (status = 400, description = "The id is not a UUID", body = Problem, content_type = "application/problem+json"),
        (status = 401, body = Problem, content_type = "application/problem+json"),
        (status = 404, body = Problem, content_type = "application/problem+json"),
        (status = 409, description = "Still running, or being restored; `allowed_actions` says what it allows", body = Problem, content_type = "application/problem+json"),
    ),
)]
#[delete("/backups/{id}")]
pub async fn remove(
    jobs: web::Data<Jobs>,
    actor: Actor,
    id: web::Path<Uuid>,
) -> Result<web::Json<Backup>, ApiError> {
    Ok(web::Json(jobs.delete_backup(*id, &actor.0).await?))
}

/// Upload an RDB file (the body, `application/octet-stream`) as a backup.
///
/// Streamed to disk, capped by `upload_max_bytes` (and by the backup quota and free-space
/// floor), and parsed to its end (checksum included) before it is accepted; every value is
/// checked as deeply as Redis's `sanitize-dump-payload yes` would (ziplist, listpack and intset
/// integrity, counts against headers, duplicates, LZF strings within `max_decompressed_bytes`).
/// A corrupt or truncated file gets 400 with the `offset` where it stops being valid, and
/// nothing is stored.
#[utoipa::path(
    tag = "backups",
    params(UploadQuery),
    request_body(content = Vec<u8>, content_type = "application/octet-stream"),
    responses(
        (status = 201, description = "Stored and checked", body = Backup),
        (status = 400, description = "Not a valid RDB; `offset` says where", body = Problem, content_type = "application/problem+json"),
        (status = 401, body = Problem, content_type = "application/problem+json"),
        (status = 413, description = "Larger than `upload_max_bytes`", body = Problem, content_type = "application/problem+json"),
        (status = 415, description = "Not sent as `application/octet-stream`", body = Problem, content_type = "application/problem+json"),
        (status = 503, description = "`upload_concurrency` uploads are running already; retry later (`Retry-After`)", body = Problem, content_type = "application/problem+json"),
        (status = 507, description = "It would not fit: the free-space floor `min_free_bytes` or `backup_max_bytes`", body = Problem, content_type = "application/problem+json"),
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
    let label = query.into_inner().label.map(|l| redact_urls(&l));
    let declared = req
        .headers()
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok());
    super::guard::require_content_type(
        &req,
        super::guard::BodyType::OctetStream,
        declared != Some(0),
    )?;
    // Dropped on any early return, which removes the partial file.
    let mut upload = jobs.upload(label, declared, &actor.0).await?;
    let too_large = |limit: u64| ApiError::TooLarge {
        limit: usize::try_from(limit).unwrap_or(usize::MAX),
    };
    while let Some(chunk) = payload.next().await {
        let chunk = chunk.map_err(|e| input::payload_error(e, usize::MAX))?;
        upload.write(&chunk).await.map_err(|e| match e {
            UploadError::TooLarge { limit } => too_large(limit),
            other => crate::jobs::JobError::Upload(other).into(),
        })?;
    }
    let view = upload.finish().await?;
    Ok(HttpResponse::Created()
        .insert_header((header::LOCATION, format!("/v1/backups/{}", view.id)))
        .json(view))
}
