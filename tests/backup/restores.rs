//! Restores as resources: one at a time per backup, and checked against the target before they
//! are accepted (a well-formed request the target cannot take is a 409 naming the field).

use serde_json::{json, Value};

use crate::common::app::{assert_problem, spawn_app};
use crate::common::redis::RedisServer;
use crate::helpers::{backup_view, take_backup, wait_restore};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_concurrent_restores_of_one_backup_one_is_refused_with_allowed_actions() {
    let source = RedisServer::start_with("7.2", &["--repl-diskless-sync-delay", "0"]);
    for i in 0..50 {
        source.cli(&["SET", &format!("k{i}"), "v"]);
    }
    let app = spawn_app().await;
    let backup = take_backup(&app, &source.url()).await;
    let id = backup["id"].as_str().unwrap().to_string();
    assert_eq!(
        backup["allowed_actions"],
        json!(["restore", "download", "delete"])
    );

    // The target holds its writes for a while, so the first restore is still loading when the
    // second asks (INFO, which the check before a restore reads, is not a write).
    let target = RedisServer::start("7.2");
    assert_eq!(
        target.cli(&["CLIENT", "PAUSE", "4000", "WRITE"]).trim(),
        "OK"
    );
    let path = format!("/v1/backups/{id}/restore");
    let body = json!({"target": {"url": target.url()}, "on_conflict": "replace"});
    let (first, second) = tokio::join!(app.post_json(&path, &body), app.post_json(&path, &body));
    let (accepted, refused) = if first.status() == 202 {
        (first, second)
    } else {
        (second, first)
    };
    assert_eq!(accepted.status(), 202);
    let restore: Value = accepted.json().await.unwrap();
    let problem = assert_problem(refused, 409).await;
    assert_eq!(
        problem["allowed_actions"],
        json!(["download"]),
        "{problem:#}"
    );
    assert_eq!(problem["state"], "completed", "{problem:#}");
    assert!(
        problem["detail"]
            .as_str()
            .unwrap()
            .contains("being restored"),
        "{problem:#}"
    );
    let view = backup_view(&app, &id).await;
    assert_eq!(view["restoring"], restore["id"], "{view:#}");

    // Once the first has ended, the backup may be restored again.
    let done = wait_restore(
        &app,
        &format!("/v1/restores/{}", restore["id"].as_str().unwrap()),
    )
    .await;
    assert_eq!(done["state"], "completed", "{done:#}");
    assert_eq!(done["outcome"]["keys_written"], 50, "{done:#}");
    let view = backup_view(&app, &id).await;
    assert_eq!(view["restoring"], Value::Null, "{view:#}");
    assert_eq!(view["last_restore_id"], restore["id"], "{view:#}");
    let again = app.post_json(&path, &body).await;
    assert_eq!(again.status(), 202);
    let listed: Value = app.get("/v1/restores").await.json().await.unwrap();
    assert_eq!(
        listed["restores"].as_array().unwrap().len(),
        2,
        "{listed:#}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_restore_is_checked_before_it_is_accepted() {
    let source = RedisServer::start_with("7.2", &["--repl-diskless-sync-delay", "0"]);
    source.cli(&["SET", "shared", "from the backup"]);
    let app = spawn_app().await;
    let id = take_backup(&app, &source.url()).await["id"]
        .as_str()
        .unwrap()
        .to_string();
    let path = format!("/v1/backups/{id}/restore");

    // A target holding keys in the backup's database, with `fail`: refused, nothing recorded.
    let target = RedisServer::start("7.2");
    target.cli(&["SET", "other", "x"]);
    let response = app
        .post_json(&path, &json!({"target": {"url": target.url()}}))
        .await;
    let problem = assert_problem(response, 409).await;
    assert_eq!(problem["field"], "on_conflict", "{problem:#}");
    assert!(
        problem["detail"]
            .as_str()
            .unwrap()
            .contains("1 keys in database 0"),
        "{problem:#}"
    );
    let listed: Value = app.get("/v1/restores").await.json().await.unwrap();
    assert_eq!(listed["restores"], json!([]), "a refusal records nothing");

    // A target that cannot be reached: refused at once, naming the field.
    let closed = format!("redis://127.0.0.1:{}", crate::common::redis::free_port());
    let response = app
        .post_json(
            &path,
            &json!({"target": {"url": closed}, "on_conflict": "replace"}),
        )
        .await;
    let problem = assert_problem(response, 409).await;
    assert_eq!(problem["field"], "target.url", "{problem:#}");
    assert!(
        problem["detail"].as_str().unwrap().contains("refused"),
        "{problem:#}"
    );

    // Too small for the backup: maxmemory below the file's size.
    let tiny = RedisServer::start("7.2");
    tiny.cli(&["CONFIG", "SET", "maxmemory", "1"]);
    let response = app
        .post_json(
            &path,
            &json!({"target": {"url": tiny.url()}, "on_conflict": "replace"}),
        )
        .await;
    let problem = assert_problem(response, 409).await;
    assert!(
        problem["detail"].as_str().unwrap().contains("maxmemory"),
        "{problem:#}"
    );
}
