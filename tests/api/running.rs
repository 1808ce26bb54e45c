//! States only a running transfer reaches, driven by a scripted engine behind the real
//! supervisor: progress, cutover, cancel of a running job, and resume after a restart.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use ferry::engine::{Controls, EngineError, EngineJob, EventSender, ResumePoint};
use ferry::jobs::EngineFn;
use ferry::spec::Mode;
use ferry::store::event::{EventKind, VerificationReport};
use serde_json::{json, Value};

use crate::common::redis::RedisServer;
use crate::helpers::{assert_problem, settings_for, TestApp};

const WAIT: Duration = Duration::from_secs(30);

/// What the scripted engine was started with.
#[derive(Debug, Clone, PartialEq)]
struct Run {
    resume: Option<ResumePoint>,
    cutover_already: bool,
}

/// Reports a snapshot (and, in live mode, streaming with a checkpoint at offset 42), then waits:
/// a cancel ends it `Cancelled`, a cutover completes it after a clean verification.
fn scripted_engine(runs: Arc<Mutex<Vec<Run>>>) -> EngineFn {
    Arc::new(
        move |job: EngineJob, events: EventSender, controls: Controls| {
            let runs = runs.clone();
            Box::pin(async move {
                runs.lock().unwrap().push(Run {
                    resume: job.resume.clone(),
                    cutover_already: controls.cutover.is_cancelled(),
                });
                let send = |kind| {
                    let events = events.clone();
                    async move { events.send(kind).await.map_err(|_| EngineError::Cancelled) }
                };
                if job.resume.is_none() {
                    send(EventKind::SnapshotStarted {
                        replid: "r1".into(),
                        offset: 0,
                        diskless: false,
                        rdb_bytes_total: Some(1000),
                        redo: None,
                    })
                    .await?;
                    send(EventKind::SnapshotProgress {
                        rdb_bytes_read: 500,
                        rdb_bytes_total: Some(1000),
                        keys_written: 7,
                        keys_skipped: 1,
                        keys_expired: 0,
                    })
                    .await?;
                    if job.spec.mode == Mode::Live {
                        send(EventKind::SnapshotCompleted {
                            rdb_bytes: 1000,
                            keys_written: 14,
                            keys_skipped: 1,
                            keys_expired: 0,
                            keys_rewritten: 0,
                            duration_ms: 3,
                        })
                        .await?;
                        send(EventKind::StreamingStarted {
                            replid: "r1".into(),
                            offset: 0,
                        })
                        .await?;
                        send(EventKind::Checkpoint {
                            replid: "r1".into(),
                            applied_offset: 42,
                            commands_streamed: 5,
                            lag_bytes: Some(0),
                        })
                        .await?;
                    }
                }
                tokio::select! {
                    _ = controls.cancel.cancelled() => Err(EngineError::Cancelled),
                    _ = controls.cutover.cancelled() => {
                        send(EventKind::CutoverCompleted { final_offset: 42 }).await?;
                        send(EventKind::VerificationCompleted {
                            report: VerificationReport {
                                mode: ferry::spec::Verify::Sample,
                                checked: 14,
                                missing: 0,
                                different: 0,
                                extra: 0,
                                problems: vec![],
                            },
                        })
                        .await?;
                        Ok(())
                    }
                }
            })
        },
    )
}

async fn spawn_scripted() -> (TestApp, Arc<Mutex<Vec<Run>>>) {
    let runs = Arc::new(Mutex::new(Vec::new()));
    let dir = Arc::new(tempfile::tempdir().unwrap());
    let app = spawn_with_engine(settings_for(dir.path()), dir, scripted_engine(runs.clone())).await;
    (app, runs)
}

async fn spawn_with_engine(
    settings: ferry::config::Settings,
    dir: Arc<tempfile::TempDir>,
    engine: EngineFn,
) -> TestApp {
    crate::helpers::spawn_with_engine(settings, dir, engine).await
}

/// Creates, validates and starts a migration in `mode`; returns its id once it is migrating.
async fn started(app: &TestApp, source: &RedisServer, target: &RedisServer, mode: &str) -> String {
    let response = app
        .post_json(
            "/v1/migrations",
            &json!({"source": {"url": source.url()}, "target": {"url": target.url()}, "mode": mode}),
        )
        .await;
    let id = response.json::<Value>().await.unwrap()["id"]
        .as_str()
        .unwrap()
        .to_string();
    let report: Value = app.action(&id, "validate").await.json().await.unwrap();
    assert_ne!(report["status"], "failed", "{report:#}");
    assert_eq!(app.action(&id, "start").await.status(), 202);
    id
}

async fn assert_conflict(response: reqwest::Response, state: &str, allowed: &[&str]) {
    let problem = assert_problem(response, 409).await;
    assert_eq!(problem["state"], state, "{problem}");
    assert_eq!(problem["allowed_actions"], json!(allowed), "{problem}");
}

#[tokio::test]
async fn a_running_migration_shows_progress_and_refuses_what_its_state_does_not_allow() {
    let (source, target) = (RedisServer::start("7.2"), RedisServer::start("7.2"));
    let (app, _) = spawn_scripted().await;
    let id = started(&app, &source, &target, "snapshot").await;
    let view = app
        .wait_for(&id, WAIT, |v| v["progress"]["rdb_bytes_read"] == 500)
        .await;
    assert_eq!(view["state"], "migrating");
    assert_eq!(view["phase"], "snapshot");
    assert_eq!(view["progress"]["percent"], 50.0);
    assert_eq!(view["progress"]["keys_written"], 7);
    for action in ["validate", "start", "cutover"] {
        assert_conflict(app.action(&id, action).await, "migrating", &["cancel"]).await;
    }
    let patch = app
        .patch_json(&format!("/v1/migrations/{id}"), &json!({"name": "late"}))
        .await;
    assert_conflict(patch, "migrating", &["cancel"]).await;

    // Cancel: the engine is asked, stops, and the cancel is recorded with the requester as actor.
    assert_eq!(app.action(&id, "cancel").await.status(), 202);
    app.wait_for(&id, WAIT, |v| v["state"] == "cancelled").await;
    let page: Value = app
        .get(&format!("/v1/migrations/{id}/events"))
        .await
        .json()
        .await
        .unwrap();
    let last = page["events"].as_array().unwrap().last().unwrap().clone();
    assert_eq!(
        (last["type"].as_str(), last["actor"].as_str()),
        (Some("MigrationCancelled"), Some("api"))
    );
    let engine_events: Vec<&str> = page["events"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|e| e["actor"] == "engine")
        .map(|e| e["type"].as_str().unwrap())
        .collect();
    assert_eq!(
        engine_events,
        ["SnapshotStarted", "SnapshotProgress"],
        "engine events in order"
    );
}

#[tokio::test]
async fn cutover_of_a_live_migration_completes_it_with_a_verification() {
    let (source, target) = (RedisServer::start("7.2"), RedisServer::start("7.4"));
    let (app, _) = spawn_scripted().await;
    let id = started(&app, &source, &target, "live").await;
    let view = app
        .wait_for(&id, WAIT, |v| v["progress"]["lag_bytes"] == 0)
        .await;
    assert_eq!(view["phase"], "streaming");
    assert_eq!(view["progress"]["commands_streamed"], 5);
    assert_problem(
        app.get(&format!("/v1/migrations/{id}/verification")).await,
        404,
    )
    .await;
    assert_conflict(
        app.action(&id, "start").await,
        "migrating",
        &["cutover", "cancel"],
    )
    .await;

    let response = app.action(&id, "cutover").await;
    assert_eq!(response.status(), 202);
    app.wait_for(&id, WAIT, |v| v["state"] == "completed").await;
    let types = app.event_types(&id).await;
    let tail: Vec<&str> = types
        .iter()
        .rev()
        .take(4)
        .rev()
        .map(String::as_str)
        .collect();
    assert_eq!(
        tail,
        [
            "CutoverStarted",
            "CutoverCompleted",
            "VerificationCompleted",
            "MigrationCompleted"
        ]
    );
    let report: Value = app
        .get(&format!("/v1/migrations/{id}/verification"))
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(report["checked"], 14);
    assert_conflict(app.action(&id, "cutover").await, "completed", &[]).await;
}

#[tokio::test]
async fn a_restart_resumes_running_migrations_from_their_last_checkpoint() {
    let (source, target) = (RedisServer::start("7.0"), RedisServer::start("7.0"));
    let (app, runs) = spawn_scripted().await;
    let streaming = started(&app, &source, &target, "live").await;
    app.wait_for(&streaming, WAIT, |v| v["progress"]["lag_bytes"] == 0)
        .await;
    let cutting = started(&app, &source, &target, "live").await;
    app.wait_for(&cutting, WAIT, |v| v["progress"]["lag_bytes"] == 0)
        .await;
    let before = app.event_types(&streaming).await;

    // Stop in the middle of cutting over: shutting down records nothing, the job stays there.
    let (settings, dir) = app.stop().await;
    let runs_after = Arc::new(Mutex::new(Vec::new()));
    {
        // Put `cutting` into cutting_over while Ferry is down, as if it stopped right after.
        let store = ferry::store::Store::open(&settings.data_dir).unwrap();
        let id = cutting.parse().unwrap();
        let kind = EventKind::CutoverStarted {
            pause_source_writes: false,
        };
        store
            .append_one(ferry::store::NewEvent::new(id, "api", kind))
            .await
            .unwrap();
    }
    let app = spawn_with_engine(settings, dir, scripted_engine(runs_after.clone())).await;
    assert_eq!(runs.lock().unwrap().len(), 2);
    assert_eq!(
        app.event_types(&streaming).await,
        before,
        "a shutdown records nothing"
    );
    assert_eq!(app.view(&streaming).await["state"], "migrating");

    // The cutting-over job resumes straight into its cutover and completes.
    app.wait_for(&cutting, WAIT, |v| v["state"] == "completed")
        .await;
    let resumed = runs_after.lock().unwrap().clone();
    let checkpoint = Some(ResumePoint {
        replid: "r1".into(),
        applied_offset: 42,
    });
    assert_eq!(resumed.len(), 2, "{resumed:?}");
    assert!(
        resumed.iter().all(|r| r.resume == checkpoint),
        "{resumed:?}"
    );
    assert_eq!(
        resumed.iter().filter(|r| r.cutover_already).count(),
        1,
        "{resumed:?}"
    );
    assert_eq!(app.action(&streaming, "cancel").await.status(), 202);
    app.wait_for(&streaming, WAIT, |v| v["state"] == "cancelled")
        .await;
}
