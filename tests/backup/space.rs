//! A backup that would not fit is refused before the server is asked to fork.

use serde_json::{json, Value};

use crate::app::{assert_problem, settings_for, spawn_with};
use crate::common::redis::RedisServer;
use crate::helpers::{backups_dir, files_in};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_backup_over_the_quota_is_refused_with_what_it_needs_and_what_is_available() {
    let server = RedisServer::start("7.2");
    for i in 0..100 {
        server.cli(&["SET", &format!("k{i}"), &"v".repeat(1000)]);
    }
    let dir = std::sync::Arc::new(tempfile::tempdir().unwrap());
    let mut settings = settings_for(dir.path());
    settings.backup_max_bytes = Some(10_000);
    let app = spawn_with(settings, dir).await;
    let response = app
        .post_json("/v1/backups", &json!({"server": {"url": server.url()}}))
        .await;
    let problem = assert_problem(response, 507).await;
    let detail = problem["detail"].as_str().unwrap();
    assert!(detail.contains("backup_max_bytes = 10000"), "{detail}");
    assert!(detail.contains("needs about"), "{detail}");
    assert!(files_in(&backups_dir(&app)).is_empty());
    let list: Value = app.get("/v1/backups").await.json().await.unwrap();
    assert_eq!(list["backups"], json!([]), "a refusal records nothing");
    // The server was not asked for a full sync.
    let info = server.cli(&["INFO", "stats"]);
    assert!(info.contains("sync_full:0"), "{info}");
}
