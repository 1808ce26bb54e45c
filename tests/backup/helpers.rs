//! Polling backups through the API, and reading the files Ferry stored.

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use serde_json::{json, Value};
use sha2::{Digest, Sha256};

use crate::common::app::TestApp;

/// Generous: servers fork and transfer on a loaded 2-core machine.
pub const WAIT: Duration = Duration::from_secs(90);

pub async fn backup_view(app: &TestApp, id: &str) -> Value {
    let response = app.get(&format!("/v1/backups/{id}")).await;
    assert_eq!(response.status(), 200, "GET /v1/backups/{id}");
    response.json().await.expect("backup JSON")
}

/// Polls backup `id` until `done` holds, or fails after [`WAIT`].
pub async fn wait_backup(app: &TestApp, id: &str, done: impl Fn(&Value) -> bool) -> Value {
    let deadline = Instant::now() + WAIT;
    loop {
        let view = backup_view(app, id).await;
        if done(&view) {
            return view;
        }
        assert!(
            Instant::now() < deadline,
            "backup condition not reached within {WAIT:?}; last view: {view:#}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// Takes a backup of `url` through the API and waits until it is completed.
pub async fn take_backup(app: &TestApp, url: &str) -> Value {
    let response = app
        .post_json(
            "/v1/backups",
            &json!({"server": {"url": url}, "label": "test"}),
        )
        .await;
    let status = response.status();
    let body: Value = response.json().await.expect("JSON");
    assert_eq!(status, 202, "{body:#}");
    let id = body["id"].as_str().expect("id").to_string();
    let view = wait_backup(app, &id, |v| v["status"] != "running").await;
    assert_eq!(view["status"], "completed", "{view:#}");
    view
}

/// Restores backup `id` into `url`, follows the restore's `Location` until it has ended, and
/// returns the completed restore.
pub async fn restore(app: &TestApp, id: &str, url: &str, on_conflict: &str) -> Value {
    let response = app
        .post_json(
            &format!("/v1/backups/{id}/restore"),
            &json!({"target": {"url": url}, "on_conflict": on_conflict}),
        )
        .await;
    let location = response
        .headers()
        .get("location")
        .and_then(|l| l.to_str().ok())
        .map(str::to_string);
    let status = response.status();
    let body: Value = response.json().await.expect("restore JSON");
    assert_eq!(status, 202, "restore accepted: {body:#}");
    let location = location.expect("a Location header");
    assert_eq!(
        location,
        format!("/v1/restores/{}", body["id"].as_str().unwrap())
    );
    let view = wait_restore(app, &location).await;
    assert_eq!(view["state"], "completed", "{view:#}");
    assert_eq!(view["backup_id"], id);
    view
}

/// Polls a restore (by its path) until it is no longer running.
pub async fn wait_restore(app: &TestApp, path: &str) -> Value {
    let deadline = Instant::now() + WAIT;
    loop {
        let response = app.get(path).await;
        assert_eq!(response.status(), 200, "GET {path}");
        let view: Value = response.json().await.expect("restore JSON");
        if view["state"] != "running" {
            return view;
        }
        assert!(
            Instant::now() < deadline,
            "restore still running after {WAIT:?}: {view:#}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

pub fn backups_dir(app: &TestApp) -> PathBuf {
    app.path().join("backups")
}

/// Names of the files in `dir` (none if it does not exist).
pub fn files_in(dir: &Path) -> Vec<String> {
    match std::fs::read_dir(dir) {
        Ok(entries) => entries
            .flatten()
            .map(|e| e.file_name().to_string_lossy().into_owned())
            .collect(),
        Err(_) => vec![],
    }
}

pub fn sha256_hex(bytes: &[u8]) -> String {
    Sha256::digest(bytes)
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

/// An RDB written by redis-server itself (`SAVE`), to upload.
pub fn saved_rdb(server: &crate::common::redis::RedisServer) -> Vec<u8> {
    assert_eq!(server.cli(&["SAVE"]).trim(), "OK");
    std::fs::read(server.dir().join("dump.rdb")).expect("dump.rdb after SAVE")
}
