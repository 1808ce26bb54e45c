//! A migration whose source is a stored backup: `{"source": {"rdb": {"backup_id": …}}}`.

use std::time::Duration;

use serde_json::{json, Value};

use crate::common::app::{assert_problem, spawn_app, TestApp};
use crate::common::data::{assert_same, function_names, populate};
use crate::common::redis::RedisServer;
use crate::helpers::{saved_rdb, take_backup};

/// Generous: a loaded 2-core machine.
const DONE: Duration = Duration::from_secs(120);

async fn create(app: &TestApp, body: &Value) -> reqwest::Response {
    app.post_json("/v1/migrations", body).await
}

/// Creates, validates and starts a migration from `backup_id` into `target` with full
/// verification, waits for its end and returns the view and the events. `versions` is the
/// expected status of that check (`warn` when the file is newer than the target).
async fn migrate(
    app: &TestApp,
    backup_id: &str,
    target: &RedisServer,
    versions: &str,
) -> (Value, Vec<String>) {
    let body = json!({
        "source": {"rdb": {"backup_id": backup_id}},
        "target": {"url": target.url()},
        "options": {"verify": "full"},
    });
    let response = create(app, &body).await;
    assert_eq!(response.status(), 201, "create");
    let view: Value = response.json().await.unwrap();
    assert_eq!(view["source"], json!({"rdb": {"backup_id": backup_id}}));
    let id = view["id"].as_str().unwrap().to_string();

    let response = app.action(&id, "validate").await;
    assert_eq!(response.status(), 200, "validate");
    let report: Value = response.json().await.unwrap();
    let checks = report["checks"].as_array().unwrap();
    let ids: Vec<&str> = checks.iter().map(|c| c["id"].as_str().unwrap()).collect();
    assert!(
        !ids.iter()
            .any(|i| i.starts_with("source.") && *i != "source.rdb"),
        "no source-server checks for a file: {ids:?}"
    );
    let rdb = checks.iter().find(|c| c["id"] == "source.rdb").unwrap();
    assert_eq!(rdb["status"], "pass", "{rdb:#}");
    assert!(rdb["details"]["rdb_version"].is_u64(), "{rdb:#}");
    assert!(
        rdb["message"].as_str().unwrap().contains("skipped"),
        "{rdb:#}"
    );
    for id in [
        "target.connect",
        "target.conflicts",
        "versions",
        "capacity.memory",
    ] {
        assert!(ids.contains(&id), "{id} in {ids:?}");
    }
    assert_ne!(report["status"], "failed", "{report:#}");
    let check = checks.iter().find(|c| c["id"] == "versions").unwrap();
    assert_eq!(check["status"], versions, "{check:#}");

    let response = app.action(&id, "start").await;
    assert_eq!(response.status(), 202, "start");
    let view = app
        .wait_for(&id, DONE, |v| {
            ["completed", "failed", "cancelled"].contains(&v["state"].as_str().unwrap_or(""))
        })
        .await;
    let events = app.event_types(&id).await;
    assert_eq!(view["state"], "completed", "{view:#}\n{events:?}");
    (view, events)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_backup_migrates_into_the_same_and_an_older_version_and_verifies_against_the_file() {
    let source = RedisServer::start_with(
        "7.4",
        &["--databases", "4", "--repl-diskless-sync-delay", "0"],
    );
    let keys = populate(&source, 2);
    let app = spawn_app().await;
    let backup = take_backup(&app, &source.url()).await;
    let backup_id = backup["id"].as_str().unwrap();

    // Same version: RESTORE of every payload.
    let same = RedisServer::start_with("7.4", &["--databases", "4"]);
    let (view, events) = migrate(&app, backup_id, &same, "pass").await;
    assert_same(&source, &same, 4);
    assert_eq!(function_names(&same), ["ferrylib"]);
    assert_eq!(view["progress"]["keys_written"], keys, "{view:#}");
    let order: Vec<&str> = events
        .iter()
        .map(String::as_str)
        .filter(|t| {
            [
                "MigrationStarted",
                "SnapshotStarted",
                "SnapshotCompleted",
                "VerificationCompleted",
                "MigrationCompleted",
            ]
            .contains(t)
        })
        .collect();
    assert_eq!(
        order,
        [
            "MigrationStarted",
            "SnapshotStarted",
            "SnapshotCompleted",
            "VerificationCompleted",
            "MigrationCompleted"
        ],
        "{events:?}"
    );
    assert!(
        !events.iter().any(|e| e == "StreamingStarted"),
        "{events:?}"
    );
    let report: Value = app
        .get(&format!(
            "/v1/migrations/{}/verification",
            view["id"].as_str().unwrap()
        ))
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(
        report["checked"], keys,
        "full verification checks every key: {report:#}"
    );

    // Older target: values the 7.0 server cannot take as RDB 12 payloads are rewritten.
    let older = RedisServer::start_with("7.0", &["--databases", "4"]);
    let (view, _) = migrate(&app, backup_id, &older, "warn").await;
    assert_same(&source, &older, 4);
    let completed = snapshot_completed(&app, view["id"].as_str().unwrap()).await;
    assert!(
        completed["keys_rewritten"].as_u64().unwrap() > 0,
        "the 7.0 target took the rewrite path: {completed:#}"
    );
}

/// The `SnapshotCompleted` payload of migration `id`.
async fn snapshot_completed(app: &TestApp, id: &str) -> Value {
    let page: Value = app
        .get(&format!("/v1/migrations/{id}/events?limit=1000"))
        .await
        .json()
        .await
        .unwrap();
    page["events"]
        .as_array()
        .unwrap()
        .iter()
        .find(|e| e["type"] == "SnapshotCompleted")
        .map(|e| e["data"].clone())
        .unwrap_or_else(|| panic!("no SnapshotCompleted in {page:#}"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn verification_against_the_file_finds_a_value_the_target_kept_and_a_key_it_had() {
    let source = RedisServer::start_with("7.4", &["--repl-diskless-sync-delay", "0"]);
    for i in 0..50 {
        source.cli(&["SET", &format!("k{i}"), &format!("v{i}")]);
    }
    source.cli(&["RPUSH", "list", "a", "b", "c"]);
    let app = spawn_app().await;
    let backup = take_backup(&app, &source.url()).await;
    let backup_id = backup["id"].as_str().unwrap();

    // `skip` keeps the target's own `k7` and `list`; its `only:target` is not in the file.
    let target = RedisServer::start("7.4");
    target.cli(&["SET", "k7", "the target's"]);
    target.cli(&["RPUSH", "list", "a", "b"]);
    target.cli(&["SET", "only:target", "x"]);
    let body = json!({
        "source": {"rdb": {"backup_id": backup_id}},
        "target": {"url": target.url()},
        "options": {"verify": "full", "on_conflict": "skip", "backup": false},
    });
    let response = create(&app, &body).await;
    assert_eq!(response.status(), 201);
    let id = response.json::<Value>().await.unwrap()["id"]
        .as_str()
        .unwrap()
        .to_string();
    let report: Value = app.action(&id, "validate").await.json().await.unwrap();
    assert_ne!(report["status"], "failed", "{report:#}");
    assert_eq!(app.action(&id, "start").await.status(), 202);
    let view = app
        .wait_for(&id, DONE, |v| {
            ["completed", "failed", "cancelled"].contains(&v["state"].as_str().unwrap_or(""))
        })
        .await;
    assert_eq!(view["state"], "failed", "{view:#}");
    assert_eq!(view["error"]["code"], "verification_failed", "{view:#}");
    let report: Value = app
        .get(&format!("/v1/migrations/{id}/verification"))
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(report["checked"], 51, "{report:#}");
    assert_eq!(report["different"], 2, "{report:#}");
    assert_eq!(report["missing"], 0, "{report:#}");
    assert_eq!(report["extra"], 1, "{report:#}");
    let problems: Vec<(&str, &str)> = report["problems"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| {
            (
                p["key"].as_str().unwrap(),
                p["difference"].as_str().unwrap(),
            )
        })
        .collect();
    assert!(problems.contains(&("k7", "value")), "{problems:?}");
    assert!(problems.contains(&("list", "value")), "{problems:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_file_source_is_refused_when_the_backup_is_unknown_or_the_mode_is_live() {
    let source = RedisServer::start_with("7.2", &["--repl-diskless-sync-delay", "0"]);
    source.cli(&["SET", "k", "v"]);
    let target = RedisServer::start("7.2");
    let app = spawn_app().await;

    let unknown = "0192f3a4-5b6c-7d8e-9f00-112233445566";
    let body = json!({"source": {"rdb": {"backup_id": unknown}}, "target": {"url": target.url()}});
    let problem = assert_problem(create(&app, &body).await, 404).await;
    assert!(
        problem["detail"].as_str().unwrap().contains(unknown),
        "{problem:#}"
    );

    let body =
        json!({"source": {"rdb": {"backup_id": "not-a-uuid"}}, "target": {"url": target.url()}});
    assert_problem(create(&app, &body).await, 400).await;

    let both = json!({"source": {"url": source.url(), "rdb": {"backup_id": unknown}}, "target": {"url": target.url()}});
    let problem = assert_problem(create(&app, &both).await, 400).await;
    assert!(
        problem["detail"].as_str().unwrap().contains("not both"),
        "{problem:#}"
    );

    let backup = take_backup(&app, &source.url()).await;
    let backup_id = backup["id"].as_str().unwrap();
    let live = json!({
        "source": {"rdb": {"backup_id": backup_id}},
        "target": {"url": target.url()},
        "mode": "live",
    });
    let problem = assert_problem(create(&app, &live).await, 400).await;
    assert_eq!(problem["field"], "mode", "{problem:#}");

    // PATCH turns a server-source migration into a file-source one, under the same rules.
    let id = app.create(&source.url(), &target.url()).await["id"]
        .as_str()
        .unwrap()
        .to_string();
    let to_live = json!({"source": {"rdb": {"backup_id": backup_id}}, "mode": "live"});
    // (A PATCH's result depends on what the migration holds: a conflict, not a malformed body.)
    let problem = assert_problem(
        app.patch_json(&format!("/v1/migrations/{id}"), &to_live)
            .await,
        409,
    )
    .await;
    assert_eq!(problem["field"], "mode", "{problem:#}");
    let to_file = json!({"source": {"rdb": {"backup_id": backup_id}}});
    let response = app
        .patch_json(&format!("/v1/migrations/{id}"), &to_file)
        .await;
    assert_eq!(response.status(), 200);
    let view: Value = response.json().await.unwrap();
    assert_eq!(view["source"], to_file["source"], "{view:#}");

    // A backup deleted after the migration was created: validation names it, nothing is written.
    let body =
        json!({"source": {"rdb": {"backup_id": backup_id}}, "target": {"url": target.url()}});
    let response = create(&app, &body).await;
    assert_eq!(response.status(), 201);
    let id = response.json::<Value>().await.unwrap()["id"]
        .as_str()
        .unwrap()
        .to_string();
    let deleted = app
        .client
        .delete(format!("{}/v1/backups/{backup_id}", app.address))
        .send()
        .await
        .unwrap();
    assert_eq!(deleted.status(), 200);
    let report: Value = app.action(&id, "validate").await.json().await.unwrap();
    assert_eq!(report["status"], "failed", "{report:#}");
    let rdb = report["checks"]
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["id"] == "source.rdb")
        .unwrap();
    assert_eq!(rdb["status"], "fail", "{rdb:#}");
    assert_eq!(target.cli(&["DBSIZE"]).trim(), "0");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_uploaded_dump_migrates_like_a_backup() {
    // A dump as a cloud service exports it: a file redis-server wrote with SAVE.
    let server = RedisServer::start("7.2");
    server.cli(&["HSET", "h", "a", "1", "b", "2"]);
    server.cli(&["ZADD", "z", "1.5", "x", "-2", "y"]);
    server.cli(&["RPUSH", "l", "1", "2", "3"]);
    server.cli(&["SET", "ttl", "v", "PX", "600000"]);
    server.cli(&["SADD", "s", "1", "2", "three"]);
    let rdb = saved_rdb(&server);
    let app = spawn_app().await;
    let response = app.post_bytes("/v1/backups/upload?label=export", rdb).await;
    assert_eq!(response.status(), 201);
    let uploaded: Value = response.json().await.unwrap();
    let backup_id = uploaded["id"].as_str().unwrap();

    let target = RedisServer::start("7.2");
    let (view, _) = migrate(&app, backup_id, &target, "pass").await;
    assert_eq!(view["progress"]["keys_written"], 5, "{view:#}");
    assert_same(&server, &target, 1);
}

/// A backup as the source goes through the same filter, map and rename as a server (the file
/// loads through the snapshot path), and its verification against the file compares exactly the
/// keys that pass, under their new names.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_backup_migrates_through_a_filter_map_and_rename() {
    let source = RedisServer::start_with("7.2", &["--repl-diskless-sync-delay", "0"]);
    source.cli(&["SET", "user:1", "one", "PX", "100000"]);
    source.cli(&["HSET", "user:2", "f", "v"]);
    source.cli(&["SET", "cache:1", "left behind"]);
    source.cli(&["-n", "2", "SET", "user:3", "three"]);
    source.cli(&["-n", "4", "SET", "user:4", "db 4 is not in the filter"]);
    let app = spawn_app().await;
    let backup = take_backup(&app, &source.url()).await;
    let backup_id = backup["id"].as_str().unwrap();
    let target = RedisServer::start("7.2");
    // In a database the migration does not write to: not in the way of `on_conflict: fail`.
    target.cli(&["-n", "5", "SET", "theirs", "kept"]);
    let body = json!({
        "source": {"rdb": {"backup_id": backup_id}},
        "target": {"url": target.url()},
        "options": {"verify": "full", "backup": false,
                    "filter": {"dbs": [0, 2], "include": ["user:*"]}, "db_map": {"2": 1},
                    "rename": [{"from_prefix": "user:", "to_prefix": "u:"}]},
    });
    let response = create(&app, &body).await;
    assert_eq!(response.status(), 201, "create");
    let id = response.json::<Value>().await.unwrap()["id"]
        .as_str()
        .unwrap()
        .to_string();
    let report: Value = app.action(&id, "validate").await.json().await.unwrap();
    assert_ne!(report["status"], "failed", "{report:#}");
    assert_eq!(app.action(&id, "start").await.status(), 202);
    let view = app
        .wait_for(&id, DONE, |v| {
            ["completed", "failed", "cancelled"].contains(&v["state"].as_str().unwrap_or(""))
        })
        .await;
    assert_eq!(view["state"], "completed", "{view:#}");
    assert_eq!(
        view["filtered"]["snapshot_keys"], 2,
        "cache:1 and db 4's user:4"
    );
    let mut keys: Vec<String> = (0..6)
        .flat_map(|db| {
            let listed = target.cli(&["-n", &db.to_string(), "KEYS", "*"]);
            listed
                .lines()
                .filter(|l| !l.is_empty())
                .map(|k| format!("{db}/{k}"))
                .collect::<Vec<_>>()
        })
        .collect();
    keys.sort();
    assert_eq!(keys, ["0/u:1", "0/u:2", "1/u:3", "5/theirs"]);
    assert_eq!(target.cli(&["GET", "u:1"]).trim(), "one");
    let ttl: i64 = target.cli(&["PTTL", "u:1"]).trim().parse().unwrap();
    assert!(ttl > 90_000, "the TTL came along: {ttl}");
    assert_eq!(target.cli(&["-n", "1", "GET", "u:3"]).trim(), "three");
    let verification: Value = app
        .get(&format!("/v1/migrations/{id}/verification"))
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(verification["checked"], 3, "{verification}");
    assert_eq!(verification["missing"], 0, "{verification}");
    assert_eq!(verification["different"], 0, "{verification}");
    assert_eq!(verification["extra"], 0, "{verification}");
}
