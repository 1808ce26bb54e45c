//! `GET /metrics`: Prometheus/OpenMetrics text, from the `prometheus-client` crate (the
//! Prometheus project's own Rust client; typed label sets, OpenMetrics output, no global state).
//!
//! Three kinds of series:
//! - **per migration**, read from the folded states at scrape time (so they are exactly what
//!   the API shows, and survive restarts): state, bytes and keys done and total, commands
//!   applied, lag in bytes and seconds, apply rate, link reconnects;
//! - **store**: events appended, group commits, flush (fsync) latency, the start-up fold's
//!   duration, the size on disk;
//! - **HTTP**: requests by route pattern (`/v1/migrations/{id}`, never the raw path, so ids do
//!   not multiply series), method and status, counted by [`count_request`].
//!
//! The metric names are listed in the README; `deploy/grafana-dashboard.json` charts them.

use std::sync::atomic::AtomicU64;

use actix_web::{get, web, HttpResponse};
use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::registry::{Registry, Unit};

use super::problem::{ApiError, Problem};
use crate::aggregate::migration::MigrationView;
use crate::jobs::Jobs;

/// The content type of the OpenMetrics text format.
pub const OPENMETRICS: &str = "application/openmetrics-text; version=1.0.0; charset=utf-8";

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct HttpLabels {
    pub route: String,
    pub method: String,
    pub status: u16,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct MigrationLabels {
    migration: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct StateLabels {
    migration: String,
    state: String,
}

/// The series that live as long as the process (the rest are read from states at scrape time).
#[derive(Debug, Clone)]
pub struct Metrics {
    pub http_requests: Family<HttpLabels, Counter>,
    /// How long the start-up fold of the event log took, in seconds.
    pub fold_seconds: f64,
}

impl Metrics {
    pub fn new(fold_seconds: f64) -> Metrics {
        Metrics {
            http_requests: Family::default(),
            fold_seconds,
        }
    }
}

/// Counts one answered request (called by the request-logging middleware).
pub fn count_request(metrics: &Metrics, route: &str, method: &str, status: u16) {
    metrics
        .http_requests
        .get_or_create(&HttpLabels {
            route: route.to_string(),
            method: method.to_string(),
            status,
        })
        .inc();
}

/// Prometheus metrics.
///
/// OpenMetrics text: per-migration progress, the event store, HTTP requests. With API tokens
/// configured it needs the bearer token like `/v1` (Prometheus: `authorization` in the scrape
/// config).
#[utoipa::path(
    tag = "health",
    responses(
        (status = 200, description = "OpenMetrics text", content_type = "application/openmetrics-text", body = String),
        (status = 401, body = Problem, content_type = "application/problem+json"),
    ),
)]
#[get("")]
pub async fn scrape(
    jobs: web::Data<Jobs>,
    metrics: web::Data<Metrics>,
) -> Result<HttpResponse, ApiError> {
    let store = jobs.store().clone();
    let size = web::block(move || store.size_on_disk())
        .await
        .map_err(|e| ApiError::Internal(e.to_string()))??;
    let mut registry = Registry::default();
    register_migrations(&mut registry, &jobs.list(None, None, usize::MAX));
    register_store(&mut registry, &jobs, &metrics, size);
    registry.register(
        "ferry_http_requests",
        "HTTP requests answered, by route pattern, method and status",
        metrics.http_requests.clone(),
    );
    let mut text = String::new();
    prometheus_client::encoding::text::encode(&mut text, &registry)
        .map_err(|e| ApiError::Internal(format!("encoding the metrics failed: {e}")))?;
    Ok(HttpResponse::Ok().content_type(OPENMETRICS).body(text))
}

type FloatGauge = Gauge<f64, AtomicU64>;

/// A per-migration gauge family, registered, to fill.
fn gauge_family(
    registry: &mut Registry,
    name: &str,
    help: &str,
    unit: Option<Unit>,
) -> Family<MigrationLabels, FloatGauge> {
    let family = Family::<MigrationLabels, FloatGauge>::default();
    match unit {
        Some(unit) => registry.register_with_unit(name, help, unit, family.clone()),
        None => registry.register(name, help, family.clone()),
    }
    family
}

fn register_migrations(registry: &mut Registry, views: &[MigrationView]) {
    let state = Family::<StateLabels, Gauge>::default();
    registry.register(
        "ferry_migration_state",
        "1 for the migration's current state (configured, validated, migrating, completed, ...)",
        state.clone(),
    );
    let bytes_done = gauge_family(
        registry,
        "ferry_migration_snapshot_done",
        "RDB bytes of the snapshot transferred",
        Some(Unit::Bytes),
    );
    let bytes_total = gauge_family(
        registry,
        "ferry_migration_snapshot_total",
        "RDB bytes of the whole snapshot (estimated while the source streams it diskless)",
        Some(Unit::Bytes),
    );
    let keys_done = gauge_family(
        registry,
        "ferry_migration_keys_done",
        "Keys written to the target by the snapshot",
        None,
    );
    let keys_total = gauge_family(
        registry,
        "ferry_migration_keys_total_estimate",
        "Keys the source held when the snapshot began (from INFO keyspace)",
        None,
    );
    let percent = gauge_family(
        registry,
        "ferry_migration_snapshot_percent",
        "Share of the snapshot transferred, 0-100",
        None,
    );
    let commands = Family::<MigrationLabels, Counter>::default();
    registry.register(
        "ferry_migration_commands_applied",
        "Commands of the source's replication stream applied to the target",
        commands.clone(),
    );
    let lag_bytes = gauge_family(
        registry,
        "ferry_migration_lag",
        "The source's replication offset minus the offset the target has applied",
        Some(Unit::Bytes),
    );
    let lag_seconds = gauge_family(
        registry,
        "ferry_migration_lag",
        "How long ago the source was where the target is now",
        Some(Unit::Seconds),
    );
    let rate = gauge_family(
        registry,
        "ferry_migration_apply_rate",
        "Commands applied per second, over the last 10 s of checkpoints",
        None,
    );
    let reconnects = Family::<MigrationLabels, Counter>::default();
    registry.register(
        "ferry_migration_link_reconnects",
        "Source or target links lost and resumed",
        reconnects.clone(),
    );
    for view in views {
        let labels = MigrationLabels {
            migration: view.id.to_string(),
        };
        state
            .get_or_create(&StateLabels {
                migration: labels.migration.clone(),
                state: view.state.as_str().to_string(),
            })
            .set(1);
        if !view.state.is_running() {
            continue;
        }
        let p = &view.progress;
        let set = |family: &Family<MigrationLabels, FloatGauge>, value: Option<f64>| {
            if let Some(value) = value {
                family.get_or_create(&labels).set(value);
            }
        };
        set(&bytes_done, p.rdb_bytes_read.map(|v| v as f64));
        set(&bytes_total, p.rdb_bytes_total.map(|v| v as f64));
        set(&keys_done, p.keys_written.map(|v| v as f64));
        set(&keys_total, p.keys_total.map(|v| v as f64));
        set(&percent, p.percent);
        set(&lag_bytes, p.lag_bytes.map(|v| v as f64));
        set(&lag_seconds, p.lag_seconds);
        set(&rate, p.apply_rate);
        if let Some(applied) = p.commands_streamed {
            commands.get_or_create(&labels).inc_by(applied);
        }
        reconnects
            .get_or_create(&labels)
            .inc_by(p.link_reconnects.unwrap_or(0));
    }
}

fn register_store(registry: &mut Registry, jobs: &Jobs, metrics: &Metrics, size: u64) {
    let store = jobs.store().metrics();
    registry.register(
        "ferry_store_events_appended",
        "Events appended to the log since Ferry started",
        store.events_appended.clone(),
    );
    registry.register(
        "ferry_store_commits",
        "Durable group commits (one fsync each) since Ferry started",
        store.commits.clone(),
    );
    registry.register_with_unit(
        "ferry_store_flush",
        "How long each fsync of the event log took",
        Unit::Seconds,
        store.flush_seconds.clone(),
    );
    let fold = FloatGauge::default();
    fold.set(metrics.fold_seconds);
    registry.register_with_unit(
        "ferry_store_fold",
        "How long folding the event log took at start-up",
        Unit::Seconds,
        fold,
    );
    let bytes = Gauge::<i64>::default();
    bytes.set(i64::try_from(size).unwrap_or(i64::MAX));
    registry.register_with_unit(
        "ferry_store_size",
        "The event log's size on disk",
        Unit::Bytes,
        bytes,
    );
}
