//! Uploads: checked to the end before they are accepted; a broken file leaves nothing behind.

use serde_json::Value;

use crate::common::app::{assert_problem, spawn_app, TestApp};
use crate::common::redis::RedisServer;
use crate::helpers::{backups_dir, files_in, restore, saved_rdb, sha256_hex};

async fn upload(app: &TestApp, body: Vec<u8>) -> reqwest::Response {
    app.post_bytes("/v1/backups/upload?label=from-the-cloud", body)
        .await
}

async fn assert_nothing_stored(app: &TestApp) {
    assert!(
        files_in(&backups_dir(app)).is_empty(),
        "files left: {:?}",
        files_in(&backups_dir(app))
    );
    let list: Value = app.get("/v1/backups").await.json().await.unwrap();
    assert_eq!(list["backups"], serde_json::json!([]));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_corrupt_or_truncated_upload_is_refused_with_the_offset_and_nothing_is_stored() {
    // Uncompressed, so that a value's bytes can be found and flipped in the file.
    let server = RedisServer::start_with("7.2", &["--rdbcompression", "no"]);
    for i in 0..50 {
        server.cli(&["SET", &format!("key:{i}"), &"v".repeat(i * 10)]);
    }
    let rdb = saved_rdb(&server);
    let app = spawn_app().await;

    // Cut in the middle of the keys.
    let cut = rdb.len() / 2;
    let problem = assert_problem(upload(&app, rdb[..cut].to_vec()).await, 400).await;
    assert_eq!(
        problem["type"], "urn:ferry:problem:corrupt-rdb",
        "{problem}"
    );
    let offset = problem["offset"].as_u64().expect("offset");
    assert!(
        offset <= cut as u64,
        "offset {offset} within the {cut} bytes sent"
    );
    assert!(
        problem["detail"].as_str().unwrap().contains("truncated"),
        "{problem}"
    );
    assert_nothing_stored(&app).await;

    // An unknown type byte where the first record starts (right after the 9-byte magic).
    let mut bad = rdb.clone();
    bad[9] = 0x42;
    let problem = assert_problem(upload(&app, bad).await, 400).await;
    assert_eq!(problem["offset"], 9, "{problem}");
    assert_nothing_stored(&app).await;

    // One flipped bit inside a value: only the trailing checksum can tell.
    let mut flipped = rdb.clone();
    let at = rdb
        .windows(6)
        .position(|w| w == b"vvvvvv")
        .expect("a value");
    flipped[at] = b'w';
    let problem = assert_problem(upload(&app, flipped).await, 400).await;
    assert!(
        problem["detail"].as_str().unwrap().contains("checksum"),
        "{problem}"
    );
    assert!(problem["offset"].is_u64(), "{problem}");
    assert_nothing_stored(&app).await;

    // Not an RDB at all.
    let problem = assert_problem(upload(&app, b"hello, world".to_vec()).await, 400).await;
    assert_eq!(problem["offset"], 0, "{problem}");
    assert_nothing_stored(&app).await;

    // The intact file is accepted, described, and loads into a server.
    let response = upload(&app, rdb.clone()).await;
    assert_eq!(response.status(), 201);
    let view: Value = response.json().await.unwrap();
    assert_eq!(view["status"], "completed");
    assert_eq!(view["label"], "from-the-cloud");
    assert_eq!(view["server"], "upload");
    assert_eq!(view["details"]["sha256"], sha256_hex(&rdb));
    assert_eq!(view["details"]["databases"][0]["keys"], 50);
    let target = RedisServer::start("7.0");
    restore(&app, view["id"].as_str().unwrap(), &target.url(), "fail").await;
    assert_eq!(target.cli(&["DBSIZE"]).trim(), "50");
    assert_eq!(target.cli(&["STRLEN", "key:49"]).trim(), "490");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_upload_over_the_configured_limit_is_refused_and_not_stored() {
    let server = RedisServer::start_with("7.2", &["--rdbcompression", "no"]);
    server.cli(&["SET", "big", &"x".repeat(10_000)]);
    let rdb = saved_rdb(&server);
    let dir = std::sync::Arc::new(tempfile::tempdir().unwrap());
    let mut settings = crate::common::app::settings_for(dir.path());
    settings.upload_max_bytes = 4096;
    let app = crate::common::app::spawn_with(settings, dir).await;
    let problem = assert_problem(upload(&app, rdb).await, 413).await;
    assert!(
        problem["detail"].as_str().unwrap().contains("4096"),
        "{problem}"
    );
    assert_nothing_stored(&app).await;
}
