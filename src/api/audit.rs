//! The audit trail for auditors: a walk of the hash chain, and the whole log as NDJSON with the
//! hashes, to check offline (the README has the script).

use actix_web::http::header;
use actix_web::{get, web, HttpResponse};
use bytes::Bytes;
use futures::stream;

use super::problem::{ApiError, Problem};
use crate::jobs::Jobs;
use crate::model::audit::{link_after, AuditReport};
use crate::model::{Digest32, EventWire};
use crate::store::Store;

/// Events read from the store per step of an export.
const EXPORT_PAGE: usize = 1000;

/// Walk the audit chain.
///
/// Checks every event from the first: each must carry the hash of the one before it and a hash
/// of its own content. Answers with the head (the last event whose link holds, and its hash) and
/// either `intact` or the first broken `seq` and what is wrong there. Reads the whole log, so it
/// takes seconds on a log of a million events.
#[utoipa::path(
    tag = "events",
    responses(
        (status = 200, body = AuditReport),
        (status = 401, body = Problem, content_type = "application/problem+json"),
    ),
)]
#[get("/audit/verify")]
pub async fn verify(jobs: web::Data<Jobs>) -> Result<web::Json<AuditReport>, ApiError> {
    Ok(web::Json(jobs.store().verify_chain().await?))
}

/// Export the whole event log as NDJSON, with the hashes.
///
/// One event per line, oldest first, each as in `GET /v1/events` plus `prev_hash` and `hash`
/// (events from before the log had a chain get theirs computed now, as their genesis covers
/// them). Streamed, so it starts at once and any size fits.
#[utoipa::path(
    tag = "events",
    responses(
        (status = 200, description = "One JSON event per line", content_type = "application/x-ndjson", body = String),
        (status = 401, body = Problem, content_type = "application/problem+json"),
    ),
)]
#[get("/events/export")]
pub async fn export(jobs: web::Data<Jobs>) -> HttpResponse {
    let lines = export_lines(jobs.store().clone());
    HttpResponse::Ok()
        .insert_header((header::CONTENT_TYPE, "application/x-ndjson"))
        .insert_header((
            header::CONTENT_DISPOSITION,
            "attachment; filename=\"ferry-events.ndjson\"",
        ))
        .streaming(lines)
}

/// The export as a stream of pages of lines. An error mid-way ends the body early (the status
/// is sent already); the line count then falls short, and the chain check of the copy fails.
fn export_lines(
    store: Store,
) -> impl futures::Stream<Item = Result<Bytes, actix_web::Error>> + 'static {
    struct Cursor {
        store: Store,
        after: u64,
        head: Digest32,
        done: bool,
    }
    let start = Cursor {
        store,
        after: 0,
        head: Digest32::ZERO,
        done: false,
    };
    stream::unfold(start, |mut cursor| async move {
        if cursor.done {
            return None;
        }
        let page = match cursor
            .store
            .events_after(cursor.after, EXPORT_PAGE, None)
            .await
        {
            Ok(page) => page,
            Err(e) => {
                tracing::error!(error = %e, after = cursor.after, "the export stopped");
                return None;
            }
        };
        let last = page.last()?.seq;
        let mut body = Vec::with_capacity(page.len() * 400);
        for mut event in page {
            let link = event
                .chain
                .unwrap_or_else(|| link_after(cursor.head, &event));
            cursor.head = link.hash;
            event.chain = Some(link);
            if serde_json::to_writer(&mut body, &EventWire::from(&event)).is_err() {
                cursor.done = true;
                break;
            }
            body.push(b'\n');
        }
        cursor.after = last;
        Some((Ok(Bytes::from(body)), cursor))
    })
}
