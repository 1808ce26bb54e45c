//! States only a running transfer reaches, driven by the real engine against real redis-servers
//! behind the real supervisor: progress, cutover, cancel of a running job, and resume after a
//! restart. (No scripted engine: every state here is reached by a real migration.)

use std::time::Duration;

use ferry::model::EventKind;
use serde_json::{json, Value};

use crate::common::redis::RedisServer;
use crate::helpers::{assert_problem, spawn_app, spawn_with, TestApp};

const WAIT: Duration = Duration::from_secs(60);

/// A source whose snapshot takes seconds (2 ms per key while it saves), so that a test can look
/// at a migration in its snapshot phase.
fn slow_source(version: &str, keys: usize) -> RedisServer {
    let source = RedisServer::start_with(
        version,
        &[
            "--repl-diskless-sync-delay",
            "0",
            "--rdb-key-save-delay",
            "2000",
        ],
    );
    seed(&source, keys);
    source
}

fn seed(source: &RedisServer, keys: usize) {
    let mut c = source.conn();
    let mut pipe = redis::pipe();
    for i in 0..keys {
        pipe.cmd("SET").arg(format!("key:{i}")).arg(i).ignore();
    }
    pipe.query::<()>(&mut c).expect("seed the source");
}

/// Creates, validates and starts a migration in `mode`; returns its id once it is migrating.
/// Creates, validates and starts a migration on the restore path, whose events these tests
/// follow step by step (tests/api/relay.rs follows the relay's).
async fn started(app: &TestApp, source: &RedisServer, target: &RedisServer, mode: &str) -> String {
    let response = app
        .post_json(
            "/v1/migrations",
            &json!({"source": {"url": source.url()}, "target": {"url": target.url()}, "mode": mode,
                    "options": {"transfer": "restore"}}),
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

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_running_migration_shows_progress_and_refuses_what_its_state_does_not_allow() {
    let (source, target) = (slow_source("7.2", 3000), RedisServer::start("7.2"));
    let app = spawn_app().await;
    let id = started(&app, &source, &target, "snapshot").await;
    let view = app
        .wait_for(&id, WAIT, |v| {
            v["phase"] == "snapshot" && v["progress"]["keys_written"].as_u64().unwrap_or(0) > 0
        })
        .await;
    assert_eq!(view["state"], "migrating");
    assert!(
        view["progress"]["rdb_bytes_read"].as_u64().unwrap_or(0) > 0,
        "{view:#}"
    );
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
        .get(&format!("/v1/migrations/{id}/events?limit=1000"))
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
        engine_events.get(..4),
        Some(
            &[
                "TargetInventoried",
                "TransferChosen",
                "SnapshotRequested",
                "SnapshotStarted"
            ][..]
        ),
        "{engine_events:?}"
    );
    assert!(
        engine_events[4..].iter().all(|t| *t == "SnapshotProgress"),
        "a cancelled snapshot reports nothing past its progress: {engine_events:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cutover_of_a_live_migration_completes_it_with_a_verification() {
    let source = RedisServer::start_with("7.2", &["--repl-diskless-sync-delay", "0"]);
    let target = RedisServer::start("7.4");
    seed(&source, 14);
    let app = spawn_app().await;
    let id = started(&app, &source, &target, "live").await;
    app.wait_for(&id, WAIT, |v| v["phase"] == "streaming").await;
    let mut c = source.conn();
    let _: () = redis::cmd("INCR").arg("streamed").query(&mut c).unwrap();
    let view = app
        .wait_for(&id, WAIT, |v| {
            v["phase"] == "streaming"
                && v["progress"]["lag_bytes"] == 0
                && v["progress"]["commands_streamed"].as_u64().unwrap_or(0) >= 1
        })
        .await;
    assert_eq!(view["state"], "migrating");
    assert_problem(
        app.get(&format!("/v1/migrations/{id}/verification")).await,
        409,
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
        .map(String::as_str)
        .filter(|t| *t != "Checkpoint")
        .collect();
    let tail = &tail[tail.len().saturating_sub(4)..];
    assert_eq!(
        tail,
        [
            "CutoverStarted",
            "VerificationCompleted",
            "CutoverCompleted",
            "MigrationCompleted"
        ]
    );
    let report: Value = app
        .get(&format!("/v1/migrations/{id}/verification"))
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(report["missing"], 0, "{report:#}");
    assert_eq!(report["different"], 0, "{report:#}");
    // Sample mode picks keys at random (RANDOMKEY may repeat one): some, not all 15, are checked.
    assert!(report["checked"].as_u64().unwrap_or(0) > 0, "{report:#}");
    assert_conflict(app.action(&id, "cutover").await, "completed", &["rollback"]).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_restart_resumes_running_migrations_from_their_last_checkpoint() {
    let source = RedisServer::start_with("7.0", &["--repl-diskless-sync-delay", "0"]);
    let (target_a, target_b) = (RedisServer::start("7.0"), RedisServer::start("7.0"));
    seed(&source, 50);
    let app = spawn_app().await;
    let streaming = started(&app, &source, &target_a, "live").await;
    let cutting = started(&app, &source, &target_b, "live").await;
    for id in [&streaming, &cutting] {
        app.wait_for(id, WAIT, |v| {
            v["phase"] == "streaming" && v["progress"]["lag_bytes"] == 0
        })
        .await;
    }
    let before = app.event_types(&streaming).await;

    // Stop: shutting down records nothing, the jobs stay where they were.
    let (settings, dir) = app.stop().await;
    let mut c = source.conn();
    let _: () = redis::cmd("SET")
        .arg("while-down")
        .arg("1")
        .query(&mut c)
        .unwrap();
    {
        // Put `cutting` into cutting_over while Ferry is down, as if it stopped right after.
        let store = ferry::store::Store::open(&settings.data_dir).unwrap();
        let id = cutting.parse().unwrap();
        let kind = EventKind::CutoverStarted {
            pause_source_writes: false,
        };
        store
            .append_one(ferry::store::NewEvent::migration(id, "api", kind))
            .await
            .unwrap();
    }
    let app = spawn_with(settings, dir).await;
    let after = app.event_types(&streaming).await;
    assert_eq!(
        after.get(..before.len()),
        Some(&before[..]),
        "a shutdown records nothing"
    );

    // The cutting-over job resumes straight into its cutover and completes, with the write
    // made while Ferry was down.
    app.wait_for(&cutting, WAIT, |v| v["state"] == "completed")
        .await;
    assert_eq!(
        target_b.cli(&["GET", "while-down"]).trim(),
        "1",
        "the write made while down reached the target"
    );
    // Both resumed from their checkpoints by partial resync: no snapshot was copied again.
    for id in [&streaming, &cutting] {
        let page: Value = app
            .get(&format!("/v1/migrations/{id}/events?limit=1000"))
            .await
            .json()
            .await
            .unwrap();
        let events = page["events"].as_array().unwrap();
        let snapshots = events
            .iter()
            .filter(|e| e["type"] == "SnapshotStarted")
            .count();
        assert_eq!(snapshots, 1, "{id}: the snapshot was not redone");
        assert!(
            events
                .iter()
                .any(|e| e["type"] == "LinkResumed" && e["data"]["kind"] == "partial"),
            "{id}: resumed by partial resync"
        );
    }
    assert_eq!(app.view(&streaming).await["state"], "migrating");
    assert_eq!(app.action(&streaming, "cancel").await.status(), 202);
    app.wait_for(&streaming, WAIT, |v| v["state"] == "cancelled")
        .await;
}
