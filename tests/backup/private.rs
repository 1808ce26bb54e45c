//! Full copies of customer data are the owner's alone (finding 7): the data dir and every
//! directory in it are 0700, backups, inventories and the instance id 0600, whatever the umask.

use std::os::unix::fs::PermissionsExt;

use serde_json::{json, Value};

use crate::common::app::{settings_for, spawn_with};
use crate::common::redis::RedisServer;
use crate::helpers::{take_backup, WAIT};

fn mode(path: &std::path::Path) -> u32 {
    std::fs::metadata(path)
        .unwrap_or_else(|e| panic!("{}: {e}", path.display()))
        .permissions()
        .mode()
        & 0o777
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn backups_inventories_and_the_data_dir_are_private() {
    let source = RedisServer::start_with("7.2", &["--repl-diskless-sync-delay", "0"]);
    let target = RedisServer::start("7.2");
    source.cli(&["SET", "k", "v"]);
    target.cli(&["SET", "mine", "kept"]);
    // A data dir Ferry creates itself (a temp dir would be 0700 already).
    let dir = std::sync::Arc::new(tempfile::tempdir().unwrap());
    let data = dir.path().join("data");
    let app = spawn_with(settings_for(&data), dir).await;
    let backup = take_backup(&app, &source.url()).await;
    let file = data
        .join("backups")
        .join(format!("{}.rdb", backup["id"].as_str().unwrap()));
    // A migration into a target holding keys lists them before its first write.
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
    app.wait_for(&id, WAIT, |v| v["state"] == "completed").await;
    let inventory = data.join("inventories").join(format!("{id}.keys"));

    assert_eq!(mode(&data), 0o700, "data dir");
    assert_eq!(mode(&data.join("backups")), 0o700, "backups dir");
    assert_eq!(mode(&file), 0o600, "backup file");
    assert_eq!(mode(&data.join("inventories")), 0o700, "inventories dir");
    assert_eq!(mode(&inventory), 0o600, "inventory file");
    assert_eq!(mode(&data.join("instance-id")), 0o600, "instance id");
}
