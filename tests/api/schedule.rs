//! Maintenance windows through the API, with real servers and the real engine: a scheduled start
//! (by itself, and across a restart of Ferry), the automatic cutover waiting for its window, a
//! manual cutover outside it refused unless forced (and then recorded), and windows that cannot
//! work refused at creation.

use std::time::Duration;

use chrono::{DateTime, SecondsFormat, Utc};
use serde_json::{json, Value};

use crate::common::redis::RedisServer;
use crate::helpers::{assert_problem, spawn_app, TestApp};

const WAIT: Duration = Duration::from_secs(60);

fn at(from_now_ms: i64) -> String {
    (Utc::now() + chrono::Duration::milliseconds(from_now_ms))
        .to_rfc3339_opts(SecondsFormat::Millis, true)
}

fn parse(text: &Value) -> DateTime<Utc> {
    text.as_str()
        .unwrap_or_else(|| panic!("not a time: {text}"))
        .parse()
        .unwrap()
}

async fn events(app: &TestApp, id: &str) -> Vec<Value> {
    let page: Value = app
        .get(&format!("/v1/migrations/{id}/events?limit=1000"))
        .await
        .json()
        .await
        .unwrap();
    page["events"].as_array().unwrap().clone()
}

async fn event(app: &TestApp, id: &str, kind: &str) -> Value {
    events(app, id)
        .await
        .into_iter()
        .find(|e| e["type"] == kind)
        .unwrap_or_else(|| panic!("no {kind}"))
}

/// Creates and validates a migration with `extra` merged into the spec; returns its id.
async fn validated(
    app: &TestApp,
    source: &RedisServer,
    target: &RedisServer,
    extra: Value,
) -> String {
    let mut body = json!({"source": {"url": source.url()}, "target": {"url": target.url()},
        "options": {"transfer": "restore", "backup": false}});
    for (k, v) in extra.as_object().unwrap() {
        if k == "options" {
            for (o, ov) in v.as_object().unwrap() {
                body["options"][o] = ov.clone();
            }
        } else {
            body[k] = v.clone();
        }
    }
    let response = app.post_json("/v1/migrations", &body).await;
    assert_eq!(response.status(), 201);
    let id = response.json::<Value>().await.unwrap()["id"]
        .as_str()
        .unwrap()
        .to_string();
    let report: Value = app.action(&id, "validate").await.json().await.unwrap();
    assert_ne!(report["status"], "failed", "{report:#}");
    id
}

fn seeded() -> (RedisServer, RedisServer) {
    let source = RedisServer::start_with("7.2", &["--repl-diskless-sync-delay", "0"]);
    let _: () = redis::cmd("SET")
        .arg("k")
        .arg("v")
        .query(&mut source.conn())
        .unwrap();
    (source, RedisServer::start("7.2"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_validated_migration_starts_by_itself_at_start_at() {
    let (source, target) = seeded();
    let app = spawn_app().await;
    let start_at = at(3000);
    let id = validated(
        &app,
        &source,
        &target,
        json!({"schedule": {"start_at": start_at}}),
    )
    .await;
    let view = app.view(&id).await;
    assert_eq!(view["state"], "validated");
    assert_eq!(parse(&view["scheduled_start"]), parse(&json!(start_at)));
    assert_eq!(
        parse(&view["schedule"]["start_at"]),
        parse(&json!(start_at))
    );
    let done = app.wait_for(&id, WAIT, |v| v["state"] == "completed").await;
    assert!(done["scheduled_start"].is_null());
    let started = event(&app, &id, "MigrationStarted").await;
    assert_eq!(started["actor"], "scheduler");
    assert!(
        parse(&started["at"]) >= parse(&json!(start_at)),
        "started at {} before {start_at}",
        started["at"]
    );
    let scheduled = event(&app, &id, "ScheduledStart").await;
    assert_eq!(scheduled["actor"], "scheduler");
    assert_eq!(scheduled["data"]["late_secs"], 0);
    assert_eq!(target.cli(&["GET", "k"]).trim(), "v");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_restart_before_start_at_still_starts_it() {
    let (source, target) = seeded();
    let app = spawn_app().await;
    let start_at = at(4000);
    let id = validated(
        &app,
        &source,
        &target,
        json!({"schedule": {"start_at": start_at}}),
    )
    .await;
    let app = app.restart().await;
    assert_eq!(app.view(&id).await["state"], "validated");
    app.wait_for(&id, WAIT, |v| v["state"] == "completed").await;
    let started = event(&app, &id, "MigrationStarted").await;
    assert_eq!(started["actor"], "scheduler");
    assert!(parse(&started["at"]) >= parse(&json!(start_at)));
    assert_eq!(
        event(&app, &id, "ScheduledStart").await["data"]["late_secs"],
        0
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_automatic_cutover_waits_for_the_window() {
    let (source, target) = seeded();
    let app = spawn_app().await;
    let (from, to) = (at(6000), at(3_600_000));
    let id = validated(
        &app,
        &source,
        &target,
        json!({"mode": "live", "options": {"auto_cutover": true},
               "schedule": {"cutover_window": {"from": from, "to": to}}}),
    )
    .await;
    assert_eq!(app.action(&id, "start").await.status(), 202);
    let waiting = app
        .wait_for(&id, WAIT, |v| !v["cutover_waits_until"].is_null())
        .await;
    assert_eq!(waiting["state"], "migrating", "{waiting:#}");
    assert_eq!(parse(&waiting["cutover_waits_until"]), parse(&json!(from)));
    assert!(
        waiting["phase_detail"]
            .as_str()
            .unwrap()
            .contains("waits for the cutover window"),
        "{waiting:#}"
    );
    assert!(
        Utc::now() < parse(&json!(from)),
        "the test itself was too slow"
    );
    app.wait_for(&id, WAIT, |v| v["state"] == "completed").await;
    let cutover = event(&app, &id, "CutoverStarted").await;
    assert_eq!(cutover["actor"], "engine");
    assert!(
        parse(&cutover["at"]) >= parse(&json!(from)),
        "cut over at {} before the window opened at {from}",
        cutover["at"]
    );
    let deferred = event(&app, &id, "CutoverDeferred").await;
    assert_eq!(parse(&deferred["data"]["opens_at"]), parse(&json!(from)));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_manual_cutover_outside_the_window_needs_force_and_is_recorded() {
    let (source, target) = seeded();
    let app = spawn_app().await;
    let (from, to) = (at(3_600_000), at(7_200_000));
    let id = validated(
        &app,
        &source,
        &target,
        json!({"mode": "live", "schedule": {"cutover_window": {"from": from, "to": to}}}),
    )
    .await;
    assert_eq!(app.action(&id, "start").await.status(), 202);
    app.wait_for(&id, WAIT, |v| v["phase"] == "streaming").await;
    let path = format!("/v1/migrations/{id}/cutover");
    let problem = assert_problem(app.action(&id, "cutover").await, 409).await;
    let detail = problem["detail"].as_str().unwrap();
    assert!(
        detail.contains("outside the cutover window") && detail.contains("force"),
        "{problem}"
    );
    assert_eq!(problem["allowed_actions"], json!(["cutover", "cancel"]));
    let problem = assert_problem(app.post_json(&path, &json!({"force": false})).await, 409).await;
    assert!(problem["detail"].as_str().unwrap().contains("outside"));
    assert_problem(app.post_json(&path, &json!({"force": "yes"})).await, 400).await;
    assert!(!events(&app, &id)
        .await
        .iter()
        .any(|e| e["type"] == "CutoverStarted"));

    assert_eq!(
        app.post_json(&path, &json!({"force": true})).await.status(),
        202
    );
    app.wait_for(&id, WAIT, |v| v["state"] == "completed").await;
    let forced = event(&app, &id, "CutoverForced").await;
    assert_eq!(forced["actor"], "api");
    assert_eq!(
        parse(&forced["data"]["window"]["from"]),
        parse(&json!(from))
    );
    assert_eq!(event(&app, &id, "CutoverStarted").await["actor"], "api");
    assert_eq!(target.cli(&["GET", "k"]).trim(), "v");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn windows_that_cannot_work_are_refused_by_name() {
    let app = spawn_app().await;
    let spec = |schedule: Value| {
        json!({"source": {"url": "redis://127.0.0.1:1"}, "target": {"url": "redis://127.0.0.1:2"},
               "schedule": schedule})
    };
    // A schema-valid request is accepted; a window that cannot work is refused when the
    // migration is asked to validate (409, naming the field and the fix).
    let refused_at_validation = |body: Value, words: &'static str| {
        let app = &app;
        async move {
            let created = app.post_json("/v1/migrations", &body).await;
            assert_eq!(created.status(), 201);
            let id = created.json::<Value>().await.unwrap()["id"]
                .as_str()
                .unwrap()
                .to_string();
            let problem = assert_problem(app.action(&id, "validate").await, 409).await;
            let detail = problem["detail"].as_str().unwrap().to_string();
            assert!(detail.contains("schedule.cutover_window.to"), "{problem}");
            assert!(detail.contains(words), "{problem}");
            assert!(detail.contains("PATCH"), "{problem}");
        }
    };
    let ended = spec(json!({"cutover_window": {"from": at(-7_200_000), "to": at(-3_600_000)}}));
    refused_at_validation(ended, "ended").await;
    let backwards = spec(json!({"cutover_window": {"from": at(7_200_000), "to": at(3_600_000)}}));
    refused_at_validation(backwards, "must be after").await;
    let no_offset = spec(json!({"start_at": "2030-01-01T00:00:00"}));
    let problem = assert_problem(app.post_json("/v1/migrations", &no_offset).await, 400).await;
    assert_eq!(problem["field"], "schedule.start_at", "{problem}");
    let unknown = spec(json!({"cutover_window": {"from": at(0), "until": at(1000)}}));
    let problem = assert_problem(app.post_json("/v1/migrations", &unknown).await, 400).await;
    assert_eq!(
        problem["field"], "schedule.cutover_window.until",
        "{problem}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_start_at_already_past_at_validation_starts_at_once_and_says_how_late() {
    let (source, target) = seeded();
    let app = spawn_app().await;
    let start_at = at(-5000);
    let id = validated(
        &app,
        &source,
        &target,
        json!({"schedule": {"start_at": start_at}}),
    )
    .await;
    app.wait_for(&id, WAIT, |v| v["state"] == "completed").await;
    let scheduled = event(&app, &id, "ScheduledStart").await;
    assert_eq!(scheduled["actor"], "scheduler");
    assert!(
        scheduled["data"]["late_secs"].as_u64().unwrap() >= 5,
        "{scheduled}"
    );
    assert_eq!(target.cli(&["GET", "k"]).trim(), "v");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_ferry_that_was_down_at_start_at_starts_it_when_back_and_records_it_late() {
    let (source, target) = seeded();
    let app = spawn_app().await;
    let start_at = at(1500);
    let id = validated(
        &app,
        &source,
        &target,
        json!({"schedule": {"start_at": start_at}}),
    )
    .await;
    let (settings, dir) = app.stop().await;
    tokio::time::sleep(Duration::from_secs(4)).await;
    let app = crate::helpers::spawn_with(settings, dir).await;
    app.wait_for(&id, WAIT, |v| v["state"] == "completed").await;
    let scheduled = event(&app, &id, "ScheduledStart").await;
    assert_eq!(scheduled["actor"], "scheduler");
    assert!(
        scheduled["data"]["late_secs"].as_u64().unwrap() >= 2,
        "{scheduled}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_window_that_closes_without_a_cutover_is_recorded_and_streaming_goes_on() {
    let (source, target) = seeded();
    let app = spawn_app().await;
    let (from, to) = (at(-60_000), at(4000));
    let id = validated(
        &app,
        &source,
        &target,
        json!({"mode": "live", "schedule": {"cutover_window": {"from": from, "to": to}}}),
    )
    .await;
    assert_eq!(app.action(&id, "start").await.status(), 202);
    let missed = app
        .wait_for(&id, WAIT, |v| {
            v["phase_detail"]
                .as_str()
                .is_some_and(|d| d.contains("closed"))
        })
        .await;
    assert_eq!(missed["state"], "migrating", "{missed:#}");
    let event = event(&app, &id, "CutoverWindowMissed").await;
    assert_eq!(parse(&event["data"]["closed_at"]), parse(&json!(to)));
    assert!(parse(&event["at"]) >= parse(&json!(to)));
    // It still streams: a write made now reaches the target.
    let _: () = redis::cmd("SET")
        .arg("after")
        .arg("1")
        .query(&mut source.conn())
        .unwrap();
    let deadline = std::time::Instant::now() + WAIT;
    while target.cli(&["GET", "after"]).trim() != "1" {
        assert!(
            std::time::Instant::now() < deadline,
            "the write never arrived"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let problem = assert_problem(app.action(&id, "cutover").await, 409).await;
    assert!(problem["detail"].as_str().unwrap().contains("outside"));
    assert_eq!(app.action(&id, "cancel").await.status(), 202);
    app.wait_for(&id, WAIT, |v| v["state"] == "cancelled").await;
    let kinds: Vec<String> = events(&app, &id)
        .await
        .iter()
        .map(|e| e["type"].as_str().unwrap().to_string())
        .collect();
    assert_eq!(
        kinds.iter().filter(|k| *k == "CutoverWindowMissed").count(),
        1,
        "{kinds:?}"
    );
    assert!(!kinds.contains(&"CutoverStarted".to_string()), "{kinds:?}");
}
