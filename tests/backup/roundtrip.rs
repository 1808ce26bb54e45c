//! A backup holds every type and comes back equal, into the same version and an older one.

use crate::common::app::spawn_app;
use crate::common::data::{assert_same, function_names, populate};
use crate::common::redis::RedisServer;
use crate::helpers::{backups_dir, files_in, restore, sha256_hex, take_backup};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_backup_of_every_type_restores_equal_into_the_same_and_an_older_version() {
    let source = RedisServer::start_with(
        "7.4",
        &["--databases", "4", "--repl-diskless-sync-delay", "0"],
    );
    let keys = populate(&source, 2);
    let app = spawn_app().await;

    let view = take_backup(&app, &source.url()).await;
    let id = view["id"].as_str().unwrap().to_string();
    let details = &view["details"];
    let version = details["server_version"].as_str().unwrap();
    assert!(version.starts_with("7.4."), "{version}");
    assert_eq!(details["rdb_version"], 12, "Redis 7.4 writes RDB 12");
    let per_db: u64 = details["databases"]
        .as_array()
        .unwrap()
        .iter()
        .map(|d| d["keys"].as_u64().unwrap())
        .sum();
    assert_eq!(per_db, keys, "key counts per db add up to what was written");
    assert_eq!(details["databases"].as_array().unwrap().len(), 2);

    // The file on disk, the download and the recorded checksums agree.
    assert_eq!(files_in(&backups_dir(&app)), [format!("{id}.rdb")]);
    let stored = std::fs::read(backups_dir(&app).join(format!("{id}.rdb"))).unwrap();
    let response = app.get(&format!("/v1/backups/{id}/download")).await;
    assert_eq!(response.status(), 200);
    let downloaded = response.bytes().await.unwrap();
    assert_eq!(&downloaded[..], &stored[..]);
    assert_eq!(view["bytes"].as_u64().unwrap(), stored.len() as u64);
    assert_eq!(details["sha256"].as_str().unwrap(), sha256_hex(&stored));
    let crc = u64::from_str_radix(details["crc64"].as_str().unwrap(), 16).unwrap();
    let (content, trailer) = stored.split_at(stored.len() - 8);
    assert_eq!(crc, ferry::rdb::crc64::checksum(content));
    assert_eq!(
        crc.to_le_bytes(),
        trailer,
        "the checksum Redis stored in the file"
    );
    assert_eq!(&stored[..5], b"REDIS");

    // Same version, empty target: every key, type, value, TTL and the function library.
    let same = RedisServer::start_with("7.4", &["--databases", "4"]);
    let restored = restore(&app, &id, &same.url(), "fail").await;
    assert_eq!(restored["outcome"]["keys_written"], keys);
    assert_same(&source, &same, 4);
    assert_eq!(function_names(&same), ["ferrylib"]);

    // An older server cannot hold functions: the same data without them, from a second backup.
    source.cli(&["FUNCTION", "FLUSH"]);
    let view = take_backup(&app, &source.url()).await;
    let older = RedisServer::start_with("6.2", &["--databases", "4"]);
    restore(&app, view["id"].as_str().unwrap(), &older.url(), "fail").await;
    assert_same(&source, &older, 4);

    // Both restores and both backups are in the audit log.
    let page: serde_json::Value = app.get("/v1/events?limit=1000").await.json().await.unwrap();
    let types: Vec<&str> = page["events"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["type"].as_str().unwrap())
        .collect();
    for t in [
        "BackupStarted",
        "BackupCompleted",
        "RestoreStarted",
        "RestoreCompleted",
    ] {
        assert_eq!(
            types.iter().filter(|x| **x == t).count(),
            2,
            "{t} in {types:?}"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn deleting_a_backup_removes_the_file_and_keeps_the_history() {
    let source = RedisServer::start_with("7.2", &["--repl-diskless-sync-delay", "0"]);
    source.cli(&["SET", "k", "v"]);
    let app = spawn_app().await;
    let view = take_backup(&app, &source.url()).await;
    let id = view["id"].as_str().unwrap();
    let response = app
        .client
        .delete(format!("{}/v1/backups/{id}", app.address))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    let body: serde_json::Value = response.json().await.unwrap();
    assert_eq!(body["status"], "deleted");
    assert!(files_in(&backups_dir(&app)).is_empty());
    let download = app.get(&format!("/v1/backups/{id}/download")).await;
    crate::common::app::assert_problem(download, 409).await;
    // The history survives a restart, folded from the log.
    let app = app.restart().await;
    let view = crate::helpers::backup_view(&app, id).await;
    assert_eq!(view["status"], "deleted");
    assert_eq!(view["details"]["databases"][0]["keys"], 1);
}
