//! Never destroy before proof: a restore or a rollback reads its file whole and proves it
//! (parsed to its end, size, CRC-64 and SHA-256 as recorded) before it flushes or writes
//! anything. A damaged, truncated or deleted file leaves the target exactly as it was.

use serde_json::{json, Value};

use crate::common::app::{spawn_app, TestApp};
use crate::common::data::exact_contents;
use crate::common::redis::RedisServer;
use crate::helpers::{backups_dir, take_backup, wait_restore, WAIT};
use crate::stall::InfoStall;

/// Flips one byte two thirds into the file: same size, another content.
fn damage(path: &std::path::Path) {
    let mut bytes = std::fs::read(path).unwrap();
    let at = bytes.len() * 2 / 3;
    bytes[at] ^= 0x5A;
    std::fs::write(path, bytes).unwrap();
}

fn truncate(path: &std::path::Path) {
    let bytes = std::fs::read(path).unwrap();
    std::fs::write(path, &bytes[..bytes.len() / 2]).unwrap();
}

/// A migration with a restore point into a target holding keys, run to completion; returns the
/// migration id and its restore point's id.
async fn migrated_with_restore_point(
    app: &TestApp,
    source: &RedisServer,
    target: &RedisServer,
) -> (String, String) {
    let response = app
        .post_json(
            "/v1/migrations",
            &json!({"source": {"url": source.url()}, "target": {"url": target.url()},
                "options": {"on_conflict": "replace", "verify": "none", "backup": true}}),
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
            v["state"] == "completed" || v["state"] == "failed"
        })
        .await;
    assert_eq!(view["state"], "completed", "{view:#}");
    let backup = view["backup_id"]
        .as_str()
        .expect("a restore point")
        .to_string();
    (id, backup)
}

fn servers() -> (RedisServer, RedisServer) {
    let source = RedisServer::start_with("7.2", &["--repl-diskless-sync-delay", "0"]);
    let target = RedisServer::start_with("7.2", &["--repl-diskless-sync-delay", "0"]);
    let mut s = source.conn();
    let mut t = target.conn();
    for i in 0..300 {
        let _: () = redis::cmd("SET")
            .arg(format!("src:{i}"))
            .arg(format!("{i:0200}"))
            .query(&mut s)
            .unwrap();
        let _: () = redis::cmd("RPUSH")
            .arg(format!("before:{}", i % 30))
            .arg(format!("{i:0100}"))
            .query(&mut t)
            .unwrap();
    }
    (source, target)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_damaged_or_truncated_restore_point_leaves_the_target_byte_for_byte_as_it_was() {
    let (source, target) = servers();
    let app = spawn_app().await;
    let (id, backup) = migrated_with_restore_point(&app, &source, &target).await;
    let file = backups_dir(&app).join(format!("{backup}.rdb"));
    for (what, spoil) in [
        ("damaged", damage as fn(&std::path::Path)),
        ("truncated", truncate),
    ] {
        spoil(&file);
        let before = exact_contents(&target);
        let response = app.action(&id, "rollback").await;
        assert_eq!(response.status(), 202, "{what}");
        let location = response.headers()["location"].to_str().unwrap().to_string();
        let restore = wait_restore(&app, &location).await;
        assert_eq!(restore["state"], "failed", "{what}: {restore:#}");
        assert_eq!(
            restore["error"]["code"], "backup_unproven",
            "{what}: {restore:#}"
        );
        let message = restore["error"]["message"].as_str().unwrap();
        assert!(message.contains("nothing was flushed"), "{what}: {message}");
        assert_eq!(
            exact_contents(&target),
            before,
            "a {what} restore point must leave the target byte for byte as it was"
        );
        assert_eq!(app.view(&id).await["rolled_back"], false);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_restore_with_flush_of_a_damaged_or_deleted_backup_flushes_nothing() {
    let (source, target) = servers();
    let app = spawn_app().await;
    let backup = take_backup(&app, &source.url()).await;
    let id = backup["id"].as_str().unwrap();
    let file = backups_dir(&app).join(format!("{id}.rdb"));
    let before = exact_contents(&target);
    damage(&file);
    let failed = restore_failing(&app, id, &target).await;
    assert_eq!(failed["error"]["code"], "backup_unproven", "{failed:#}");
    assert_eq!(
        exact_contents(&target),
        before,
        "a damaged backup flushed the target"
    );
    std::fs::remove_file(&file).unwrap();
    let failed = restore_failing(&app, id, &target).await;
    assert_eq!(failed["error"]["code"], "backup_unproven", "{failed:#}");
    assert_eq!(
        exact_contents(&target),
        before,
        "a deleted backup flushed the target"
    );
}

async fn restore_failing(app: &TestApp, id: &str, target: &RedisServer) -> Value {
    let response = app
        .post_json(
            &format!("/v1/backups/{id}/restore"),
            &json!({"target": {"url": target.url()}, "on_conflict": "flush"}),
        )
        .await;
    assert_eq!(response.status(), 202);
    let location = response.headers()["location"].to_str().unwrap().to_string();
    let restore = wait_restore(app, &location).await;
    assert_eq!(restore["state"], "failed", "{restore:#}");
    restore
}

/// Finding 6: with `backup: true`, a target whose `INFO` failed or was slow got no restore point
/// and was written anyway. Now no restore point means no write: the target, slow to answer
/// `INFO` (only that: the lease is taken) just as the migration starts, ends exactly as it was.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_target_that_cannot_be_asked_gets_no_write_without_its_restore_point() {
    let source = RedisServer::start_with("7.2", &["--repl-diskless-sync-delay", "0"]);
    let target = RedisServer::start("7.2");
    source.cli(&["SET", "from:source", "x"]);
    target.cli(&["SET", "mine", "kept"]);
    // Longer than Ferry waits for the target's summary (10 s).
    let slow = InfoStall::start(target.port, std::time::Duration::from_secs(15)).await;
    let app = spawn_app().await;
    let response = app
        .post_json(
            "/v1/migrations",
            &json!({"source": {"url": source.url()}, "target": {"url": slow.url()},
                "options": {"on_conflict": "replace", "verify": "none", "backup": true}}),
        )
        .await;
    let id = response.json::<Value>().await.unwrap()["id"]
        .as_str()
        .unwrap()
        .to_string();
    assert_eq!(app.action(&id, "validate").await.status(), 200);
    let before = exact_contents(&target);
    slow.arm();
    assert_eq!(app.action(&id, "start").await.status(), 202);
    let view = app
        .wait_for(&id, WAIT, |v| {
            ["completed", "failed", "cancelled"].contains(&v["state"].as_str().unwrap_or_default())
        })
        .await;
    assert_eq!(view["state"], "failed", "{view:#}");
    assert_eq!(view["error"]["code"], "target_unreadable", "{view:#}");
    let message = view["error"]["message"].as_str().unwrap();
    assert!(
        message.contains("did not answer") && message.contains("nothing was written"),
        "{message}"
    );
    assert!(view.get("backup_id").is_none(), "{view:#}");
    assert_eq!(
        exact_contents(&target),
        before,
        "no restore point, so nothing may be written"
    );
}
