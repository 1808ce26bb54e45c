//! kill -9 in the middle of a backup: no file claims to be complete, and the bytes the capture had
//! reported (as checkpoint events) are still there after the restart.

use std::time::{Duration, Instant};

use serde_json::{json, Value};

use crate::common::ferry::Ferry;
use crate::common::redis::RedisServer;
use crate::helpers::{files_in, WAIT};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kill_9_during_a_backup_keeps_its_progress_and_leaves_no_file_that_claims_to_be_complete() {
    // Each key costs the server's fork 1 ms, so the RDB trickles in over about 20 s.
    let source = RedisServer::start_with(
        "7.2",
        &[
            "--repl-diskless-sync-delay",
            "0",
            "--rdb-key-save-delay",
            "1000",
        ],
    );
    let mut c = source.conn();
    for chunk in 0..20 {
        let mut p = redis::pipe();
        for i in 0..1000 {
            p.cmd("SET")
                .arg(format!("k:{chunk}:{i}"))
                .arg("v".repeat(200))
                .ignore();
        }
        p.query::<()>(&mut c).unwrap();
    }
    let mut ferry = Ferry::start().await;
    let (status, body) = ferry
        .post(
            "/v1/backups",
            Some(json!({"server": {"url": source.url()}})),
        )
        .await;
    assert_eq!(status, 202, "{body:#}");
    let id = body["id"].as_str().unwrap().to_string();
    // Wait until a checkpoint has recorded part of the file, then kill -9.
    let deadline = Instant::now() + WAIT;
    let seen = loop {
        let (_, view) = ferry.get(&format!("/v1/backups/{id}")).await;
        assert_eq!(
            view["status"], "running",
            "the backup must still run: {view:#}"
        );
        let bytes = view["bytes"].as_u64().unwrap();
        if bytes > 0 {
            break bytes;
        }
        assert!(Instant::now() < deadline, "no bytes arrived: {view:#}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    };
    ferry.kill9();

    let left = files_in(&ferry.data().join("backups"));
    assert!(
        left.iter().all(|f| f.ends_with(".rdb.partial")),
        "only a partial file may remain: {left:?}"
    );
    assert!(
        !left.is_empty(),
        "the partial file was being written: {left:?}"
    );

    // The next start records the backup as interrupted, keeps the bytes its checkpoints recorded,
    // and sweeps the partial file.
    ferry.restart().await;
    let (_, view) = ferry.get(&format!("/v1/backups/{id}")).await;
    assert_eq!(view["status"], "failed", "{view:#}");
    assert!(
        view["error"].as_str().unwrap().contains("stopped"),
        "{view:#}"
    );
    assert!(
        view["bytes"].as_u64().unwrap() >= seen,
        "the progress seen before the crash ({seen} bytes) survives it: {view:#}"
    );
    let (_, page) = ferry.get("/v1/events?type=BackupFailed").await;
    assert_eq!(page["events"][0]["data"]["code"], "interrupted", "{page:#}");
    assert_eq!(page["events"][0]["actor"], "ferry", "{page:#}");
    assert!(files_in(&ferry.data().join("backups")).is_empty());
    let (status, problem) = ferry.get(&format!("/v1/backups/{id}/download")).await;
    assert_eq!(status, 409, "{problem:#}");
    assert_eq!(problem["allowed_actions"], json!(["delete"]), "{problem:#}");
    let _: Value = problem;
}
