//! `GET /metrics`, parsed as Prometheus would.

use std::collections::HashMap;

use serde_json::json;

use crate::helpers::app;

/// `name{labels} value` lines into a map from the whole series text to its value.
pub fn parse(text: &str) -> HashMap<String, f64> {
    text.lines()
        .filter(|l| !l.starts_with('#') && !l.trim().is_empty())
        .map(|line| {
            let (series, value) = line.rsplit_once(' ').expect("series and value");
            (series.to_string(), value.parse::<f64>().expect("a number"))
        })
        .collect()
}

/// The value of the one series whose text starts with `name` and contains every `label`.
pub fn value(metrics: &HashMap<String, f64>, name: &str, labels: &[&str]) -> Option<f64> {
    metrics
        .iter()
        .find(|(series, _)| {
            (series.as_str() == name || series.starts_with(&format!("{name}{{")))
                && labels.iter().all(|l| series.contains(l))
        })
        .map(|(_, v)| *v)
}

#[tokio::test]
async fn metrics_cover_migrations_the_store_and_http_in_openmetrics_text() {
    let app = app().await;
    let response = app
        .post_json(
            "/v1/migrations",
            &json!({"source": {"url": "redis://127.0.0.1:1"}, "target": {"url": "redis://127.0.0.1:2"}}),
        )
        .await;
    let view: serde_json::Value = response.json().await.unwrap();
    let id = view["id"].as_str().unwrap();
    assert_eq!(app.get(&format!("/v1/migrations/{id}")).await.status(), 200);
    assert_eq!(app.get("/v1/nothing-here").await.status(), 404);

    let response = app.get("/metrics").await;
    assert_eq!(response.status(), 200);
    let content_type = response.headers()["content-type"]
        .to_str()
        .unwrap()
        .to_string();
    assert!(
        content_type.starts_with("application/openmetrics-text"),
        "{content_type}"
    );
    let text = response.text().await.unwrap();
    assert!(
        text.trim_end().ends_with("# EOF"),
        "OpenMetrics ends with # EOF"
    );
    let m = parse(&text);

    let migration = format!("migration=\"{id}\"");
    assert_eq!(
        value(
            &m,
            "ferry_migration_state",
            &[&migration, "state=\"configured\""]
        ),
        Some(1.0),
        "{text}"
    );
    assert_eq!(
        value(
            &m,
            "ferry_http_requests_total",
            &[
                "route=\"/v1/migrations/{id}\"",
                "method=\"GET\"",
                "status=\"200\""
            ]
        ),
        Some(1.0),
        "requests count by route pattern, not by path: {text}"
    );
    assert_eq!(
        value(
            &m,
            "ferry_http_requests_total",
            &["route=\"unmatched\"", "status=\"404\""]
        ),
        Some(1.0),
        "{text}"
    );
    assert!(value(&m, "ferry_store_events_appended_total", &[]).unwrap() >= 1.0);
    assert!(value(&m, "ferry_store_commits_total", &[]).unwrap() >= 1.0);
    assert!(value(&m, "ferry_store_flush_seconds_count", &[]).unwrap() >= 1.0);
    assert!(value(&m, "ferry_store_flush_seconds_bucket", &["le=\"+Inf\""]).unwrap() >= 1.0);
    assert!(
        value(&m, "ferry_store_fold_seconds", &[]).is_some(),
        "{text}"
    );
    assert!(
        value(&m, "ferry_store_size_bytes", &[]).unwrap() > 0.0,
        "{text}"
    );
    for help in [
        "ferry_migration_snapshot_done_bytes",
        "ferry_migration_lag_bytes",
        "ferry_migration_lag_seconds",
        "ferry_migration_apply_rate",
        "ferry_migration_commands_applied",
        "ferry_migration_link_reconnects",
    ] {
        assert!(
            text.contains(&format!("# HELP {help}")),
            "{help} is described: {text}"
        );
    }
}

/// Every metric the committed Grafana dashboard queries is one Ferry serves.
#[tokio::test]
async fn the_grafana_dashboard_queries_only_metrics_that_exist() {
    let app = app().await;
    let text = app.get("/metrics").await.text().await.unwrap();
    let dashboard = std::fs::read_to_string(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/deploy/grafana-dashboard.json"
    ))
    .unwrap();
    let parsed: serde_json::Value = serde_json::from_str(&dashboard).expect("valid JSON");
    let mut names = Vec::new();
    for panel in parsed["panels"].as_array().unwrap() {
        for target in panel["targets"].as_array().unwrap() {
            let expr = target["expr"].as_str().unwrap();
            let mut rest = expr;
            while let Some(at) = rest.find("ferry_") {
                let name: String = rest[at..]
                    .chars()
                    .take_while(|c| c.is_ascii_alphanumeric() || *c == '_')
                    .collect();
                rest = &rest[at + name.len()..];
                names.push(name);
            }
        }
    }
    assert!(names.len() > 10, "{names:?}");
    for name in names {
        let family = ["_total", "_bucket", "_count", "_sum"]
            .iter()
            .find_map(|suffix| name.strip_suffix(suffix))
            .unwrap_or(&name);
        assert!(
            text.contains(&format!("# TYPE {family} ")),
            "the Grafana dashboard queries {name}, which /metrics does not serve"
        );
    }
}
