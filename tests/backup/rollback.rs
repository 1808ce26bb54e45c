//! A migration into a non-empty target takes a restore point; rollback puts every key back.

use serde_json::{json, Value};

use crate::common::app::spawn_app;
use crate::common::data::dump_all;
use crate::common::redis::RedisServer;
use crate::helpers::{backup_view, wait_restore, WAIT};

fn fill_target(target: &RedisServer) {
    let mut c = target.conn();
    let mut p = redis::pipe();
    p.cmd("SET")
        .arg("shared")
        .arg("the target's value")
        .ignore();
    p.cmd("SET").arg("only:target").arg("kept").ignore();
    p.cmd("SET")
        .arg("ttl:target")
        .arg("x")
        .arg("PX")
        .arg(600_000)
        .ignore();
    p.cmd("HSET").arg("h").arg(&["a", "1", "b", "2"]).ignore();
    p.cmd("RPUSH").arg("l").arg(&["x", "y", "z"]).ignore();
    p.cmd("ZADD")
        .arg("z")
        .arg(&["1", "one", "2.5", "two"])
        .ignore();
    p.cmd("SADD").arg("s").arg(&["m1", "m2"]).ignore();
    p.cmd("XADD").arg("st").arg("1-1").arg(&["f", "v"]).ignore();
    p.cmd("SELECT").arg(3).ignore();
    p.cmd("SET").arg("db3:key").arg("in db 3").ignore();
    p.query::<()>(&mut c).unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failed_migration_rolls_back_to_exactly_the_target_it_found() {
    let source = RedisServer::start_with("7.2", &["--repl-diskless-sync-delay", "0"]);
    let target = RedisServer::start_with("7.2", &["--repl-diskless-sync-delay", "0"]);
    let mut c = source.conn();
    for i in 0..200 {
        let _: () = redis::cmd("SET")
            .arg(format!("src:{i}"))
            .arg(i)
            .query(&mut c)
            .unwrap();
    }
    let _: () = redis::cmd("SET")
        .arg("shared")
        .arg("the source's value")
        .query(&mut c)
        .unwrap();
    fill_target(&target);
    let before = dump_all(&target, 16);
    assert_eq!(before.len(), 9);

    let app = spawn_app().await;
    // `replace` overwrites `shared`; full verification then finds the target's own keys as extra
    // and fails the migration: a deliberate failure after the target was written.
    let response = app
        .post_json(
            "/v1/migrations",
            &json!({"source": {"url": source.url()}, "target": {"url": target.url()},
                "options": {"on_conflict": "replace", "verify": "full", "backup": true}}),
        )
        .await;
    assert_eq!(response.status(), 201);
    let id = response.json::<Value>().await.unwrap()["id"]
        .as_str()
        .unwrap()
        .to_string();
    assert_eq!(app.action(&id, "validate").await.status(), 200);
    assert_eq!(app.action(&id, "start").await.status(), 202);
    let view = app
        .wait_for(&id, WAIT, |v| {
            ["completed", "failed", "cancelled"].contains(&v["state"].as_str().unwrap_or_default())
        })
        .await;
    assert_eq!(view["state"], "failed", "{view:#}");
    assert_eq!(view["error"]["code"], "verification_failed", "{view:#}");
    let events = app.event_types(&id).await;
    let started = events.iter().position(|e| e == "MigrationStarted").unwrap();
    assert_eq!(
        events[started + 1..started + 4],
        ["LeaseAcquired", "BackupCompleted", "TargetInventoried"],
        "{events:?}"
    );
    assert!(events.contains(&"SnapshotStarted".to_string()));

    // The restore point is a backup like any other, tied to the migration.
    let backup_id = view["backup_id"].as_str().expect("backup_id in the view");
    let backup = backup_view(&app, backup_id).await;
    assert_eq!(backup["status"], "completed");
    assert_eq!(backup["for_migration"], id.as_str());
    assert_ne!(
        dump_all(&target, 16),
        before,
        "the migration wrote to the target"
    );

    // Rollback is an action of the failed migration, answered 202 with the restore it started.
    assert!(
        view["allowed_actions"]
            .as_array()
            .unwrap()
            .contains(&json!("rollback")),
        "{view:#}"
    );
    let response = app.action(&id, "rollback").await;
    let status = response.status();
    let location = response.headers()["location"].to_str().unwrap().to_string();
    let restore: Value = response.json().await.unwrap();
    assert_eq!(status, 202, "{restore:#}");
    assert_eq!(
        location,
        format!("/v1/restores/{}", restore["id"].as_str().unwrap())
    );
    assert_eq!(restore["for_migration"], id.as_str());
    assert_eq!(restore["backup_id"], backup_id);
    assert_eq!(restore["on_conflict"], "replace");
    let restore = wait_restore(&app, &location).await;
    assert_eq!(restore["state"], "completed", "{restore:#}");
    let view = app.view(&id).await;
    assert_eq!(view["rolled_back"], true, "{view:#}");
    assert_eq!(view["rollback"]["restore_id"], restore["id"], "{view:#}");

    // Every key, type, value and TTL as before; nothing the migration wrote is left.
    let after = dump_all(&target, 16);
    let missing: Vec<_> = before.keys().filter(|k| !after.contains_key(*k)).collect();
    let extra: Vec<_> = after.keys().filter(|k| !before.contains_key(*k)).collect();
    assert!(
        missing.is_empty() && extra.is_empty(),
        "missing {missing:?}, extra {extra:?}"
    );
    for (key, (kind, value, ttl)) in &before {
        let (k2, v2, t2) = &after[key];
        assert_eq!(kind, k2, "type of {key:?}");
        assert_eq!(value, v2, "value of {key:?}");
        assert_eq!(*ttl == -1, *t2 == -1, "TTL presence of {key:?}");
        assert!((ttl - t2).abs() < 5000, "TTL of {key:?}: {ttl} vs {t2}");
    }
    let events = app.event_types(&id).await;
    assert_eq!(
        events[events.len() - 2..],
        ["RollbackRequested", "RollbackEnded"]
    );
    let restore_events: Value = app
        .get("/v1/events?type=RestoreCompleted")
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(
        restore_events["events"][0]["aggregate_id"], restore["id"],
        "the restore's own events are in the audit trail"
    );

    // Rollback is only for ended migrations: a 409 that names what is allowed instead.
    let running = app.create(&source.url(), &target.url()).await;
    let response = app
        .action(running["id"].as_str().unwrap(), "rollback")
        .await;
    let problem = crate::common::app::assert_problem(response, 409).await;
    assert_eq!(
        problem["allowed_actions"],
        json!(["update", "validate", "cancel"]),
        "{problem}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn without_a_restore_point_rollback_refuses_and_flushes_nothing() {
    let source = RedisServer::start_with("7.2", &["--repl-diskless-sync-delay", "0"]);
    let target = RedisServer::start("7.2");
    source.cli(&["SET", "k", "v"]);
    target.cli(&["SET", "mine", "kept"]);
    let app = spawn_app().await;
    // A target that holds keys, and no restore point asked for.
    let response = app
        .post_json(
            "/v1/migrations",
            &json!({"source": {"url": source.url()}, "target": {"url": target.url()},
                "options": {"on_conflict": "replace", "backup": false, "verify": "none"}}),
        )
        .await;
    let id = response.json::<Value>().await.unwrap()["id"]
        .as_str()
        .unwrap()
        .to_string();
    assert_eq!(app.action(&id, "validate").await.status(), 200);
    assert_eq!(app.action(&id, "start").await.status(), 202);
    let view = app
        .wait_for(&id, WAIT, |v| {
            v["state"] == "completed" || v["state"] == "failed"
        })
        .await;
    assert_eq!(view["state"], "completed", "{view:#}");
    assert!(view.get("backup_id").is_none(), "{view:#}");
    let problem = crate::common::app::assert_problem(app.action(&id, "rollback").await, 409).await;
    assert_eq!(problem["allowed_actions"], json!([]), "{problem}");
    assert!(
        problem["detail"]
            .as_str()
            .unwrap()
            .contains("no restore point"),
        "{problem}"
    );
    assert_eq!(target.cli(&["GET", "k"]).trim(), "v", "nothing was flushed");
    assert_eq!(target.cli(&["GET", "mine"]).trim(), "kept");
}

/// Leave nothing behind: a migration into an empty target that is cancelled half-way removes
/// its offset key, and can be rolled back although no restore point was taken (the restore
/// point of an empty target is "empty"). Before, rollback was refused and the keys stayed.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_half_written_empty_target_rolls_back_to_empty_and_keeps_no_offset_key() {
    // 2 ms per key while the source serializes: the snapshot takes seconds, the cancel lands
    // inside it.
    let source = RedisServer::start_with(
        "7.2",
        &[
            "--repl-diskless-sync-delay",
            "0",
            "--rdb-key-save-delay",
            "2000",
        ],
    );
    let target = RedisServer::start("7.2");
    let mut c = source.conn();
    let mut p = redis::pipe();
    for i in 0..3000 {
        p.cmd("SET").arg(format!("k{i}")).arg(i).ignore();
    }
    p.query::<()>(&mut c).unwrap();
    let app = spawn_app().await;
    let id = app.create(&source.url(), &target.url()).await["id"]
        .as_str()
        .unwrap()
        .to_string();
    assert_eq!(app.action(&id, "validate").await.status(), 200);
    assert_eq!(app.action(&id, "start").await.status(), 202);
    app.wait_for(&id, WAIT, |v| {
        v["progress"]["keys_written"].as_u64().unwrap_or(0) > 10
    })
    .await;
    assert_eq!(app.action(&id, "cancel").await.status(), 202);
    let view = app.wait_for(&id, WAIT, |v| v["state"] == "cancelled").await;
    let written: i64 = target.cli(&["DBSIZE"]).trim().parse().unwrap();
    assert!(
        written > 0,
        "the cancel left part of a copy: {written} keys"
    );
    let offset_keys = target.cli(&["KEYS", "ferry:*"]);
    assert!(
        offset_keys.trim().is_empty(),
        "a cancelled migration leaves no ferry:* key behind: {offset_keys}"
    );
    assert!(view.get("backup_id").is_none(), "{view:#}");
    assert!(
        view["allowed_actions"]
            .as_array()
            .unwrap()
            .contains(&json!("rollback")),
        "an empty target's restore point is empty, so rollback is offered: {view:#}"
    );
    let response = app.action(&id, "rollback").await;
    assert_eq!(response.status(), 202);
    let location = response.headers()["location"].to_str().unwrap().to_string();
    let restore: Value = response.json().await.unwrap();
    assert_eq!(restore["backup_id"], Value::Null, "{restore:#}");
    let restore = wait_restore(&app, &location).await;
    assert_eq!(restore["state"], "completed", "{restore:#}");
    assert_eq!(target.cli(&["DBSIZE"]).trim(), "0", "rolled back to empty");
    assert_eq!(app.view(&id).await["rolled_back"], true);
}
