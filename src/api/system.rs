//! The global event log, the configure guide, and the health endpoints.

use actix_web::{get, web};
use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, ToSchema};

use utoipa::openapi::schema::{ObjectBuilder, Schema, Type};
use utoipa::openapi::RefOr;

use super::migrations::{limit, page, seq_after, EventPage};
use super::problem::{ApiError, Problem};
use crate::jobs::Jobs;
use crate::model::EventKind;
use crate::validate::guide::{self, GuideItem, GuideUser};

/// An event `type` name: exactly the variants of [`EventKind`] ([`EventKind::TYPE_NAMES`]), so
/// the accepted filter and the documented enum cannot drift from the events themselves.
pub struct EventTypeName;

impl utoipa::PartialSchema for EventTypeName {
    fn schema() -> RefOr<Schema> {
        ObjectBuilder::new()
            .schema_type(Type::String)
            .enum_values(Some(EventKind::TYPE_NAMES))
            .into()
    }
}

impl utoipa::ToSchema for EventTypeName {
    fn schemas(schemas: &mut Vec<(String, RefOr<Schema>)>) {
        schemas.push((
            "EventTypeName".to_string(),
            <Self as utoipa::PartialSchema>::schema(),
        ));
    }
}

#[derive(Debug, Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct GlobalEventsQuery {
    /// Only events with a `seq` greater than this (default 0).
    #[param(minimum = 0)]
    pub after: Option<i64>,
    /// At most this many events (1–1000, default 100).
    #[param(minimum = 1, maximum = 1000)]
    pub limit: Option<usize>,
    /// Only events of this type, e.g. `MigrationFailed`.
    #[serde(rename = "type")]
    #[param(rename = "type", value_type = Option<EventTypeName>)]
    pub kind: Option<String>,
}

/// The whole event log, across migrations, backups and restores, oldest first: the audit trail.
#[utoipa::path(
    tag = "events",
    params(GlobalEventsQuery),
    responses(
        (status = 200, body = EventPage),
        (status = 400, description = "Bad `after`, `limit` or `type`", body = Problem, content_type = "application/problem+json"),
        (status = 401, body = Problem, content_type = "application/problem+json"),
    ),
)]
#[get("/events")]
pub async fn events(
    jobs: web::Data<Jobs>,
    query: web::Query<GlobalEventsQuery>,
) -> Result<web::Json<EventPage>, ApiError> {
    let after = seq_after(query.after)?;
    let limit = limit(query.limit)?;
    if let Some(kind) = &query.kind {
        if !EventKind::TYPE_NAMES.contains(&kind.as_str()) {
            return Err(ApiError::invalid(
                Some("type".to_string()),
                format!(
                    "unknown event type `{kind}`; one of: {}",
                    EventKind::TYPE_NAMES.join(", ")
                ),
            ));
        }
    }
    let found = jobs
        .store()
        .events_after(after, limit, query.kind.clone())
        .await?;
    Ok(web::Json(page(found, after)))
}

/// The prerequisites of a Redis migration.
#[derive(Debug, Serialize, ToSchema)]
#[schema(example = json!({"prerequisites": [{"check_id": "source.connect", "title": "Ferry can reach the source",
    "why": "Ferry reads the data through a replication connection to the source.",
    "how_to_fix": "Check host, port, TLS (rediss://) and credentials; allow Ferry's address through firewalls."}],
    "users": [{"server": "source", "versions": "7.0 and later",
    "setuser": "ACL SETUSER ferry-source on >CHANGE-ME ~* resetchannels -@all +ping +info +select +config|get +module|list +command|info +@read +psync +sync +replconf +client|pause +client|unpause +acl|dryrun +function|list"}]}))]
pub struct Guide {
    pub prerequisites: Vec<GuideItem>,
    /// The exact `ACL SETUSER` lines of least-privileged users for Ferry: one for the source,
    /// one for the target, for Redis 7.0+ and for 6.2.
    pub users: Vec<GuideUser>,
}

/// The configure guide: what a migration needs from both servers and from you, why, and how to
/// fix each validation failure.
#[utoipa::path(tag = "guide", responses((status = 200, body = Guide), (status = 401, body = Problem, content_type = "application/problem+json")))]
#[get("/guide/redis")]
pub async fn guide_redis() -> web::Json<Guide> {
    web::Json(Guide {
        prerequisites: guide::prerequisites(),
        users: guide::users(),
    })
}

/// Liveness and readiness answer.
#[derive(Debug, Serialize, ToSchema)]
#[schema(example = json!({"status": "ok"}))]
pub struct Health {
    pub status: &'static str,
}

/// Liveness: the process serves HTTP.
#[utoipa::path(tag = "health", security(()), responses((status = 200, body = Health)))]
#[get("/healthz")]
pub async fn healthz() -> web::Json<Health> {
    web::Json(Health { status: "ok" })
}

/// Readiness: the event log is open, folded and takes appends, and the data dir is above its
/// free-space floor. Otherwise 503, with the reason; it turns ready again by itself once the
/// reason is gone (a log that failed a write needs a restart, and says so).
#[utoipa::path(tag = "health", security(()), responses((status = 200, body = Health),
    (status = 503, description = "Not ready: the detail says why", body = Problem, content_type = "application/problem+json")))]
#[get("/readyz")]
pub async fn readyz(jobs: web::Data<Jobs>) -> Result<web::Json<Health>, ApiError> {
    match jobs.readiness() {
        Ok(()) => Ok(web::Json(Health { status: "ready" })),
        Err(why) => Err(ApiError::Unavailable(why)),
    }
}
