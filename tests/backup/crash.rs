//! kill -9 in the middle of a backup leaves no file that claims to be complete.

use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::{json, Value};

use crate::app::{settings_for, spawn_with};
use crate::common::redis::{free_port, RedisServer};
use crate::helpers::{backup_view, backups_dir, files_in, WAIT};

/// Ferry as a child process; killed (SIGKILL) when dropped.
struct Ferry {
    child: Child,
    address: String,
}

impl Drop for Ferry {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

async fn start_ferry(data_dir: &std::path::Path) -> Ferry {
    let port = free_port();
    let config = data_dir.join("ferry.toml");
    std::fs::write(
        &config,
        format!(
            "listen = \"127.0.0.1:{port}\"\ndata_dir = \"{}\"\n",
            data_dir.join("data").display()
        ),
    )
    .unwrap();
    let child = Command::new(env!("CARGO_BIN_EXE_ferry"))
        .args(["serve", "--config"])
        .arg(&config)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("start the ferry binary");
    let ferry = Ferry {
        child,
        address: format!("http://127.0.0.1:{port}"),
    };
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        if let Ok(r) = reqwest::get(format!("{}/healthz", ferry.address)).await {
            if r.status().is_success() {
                return ferry;
            }
        }
        assert!(
            Instant::now() < deadline,
            "ferry serve did not answer /healthz within 30s"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kill_9_during_a_backup_leaves_no_file_that_claims_to_be_complete() {
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
    let dir = tempfile::tempdir().unwrap();
    let mut ferry = start_ferry(dir.path()).await;
    let client = reqwest::Client::new();
    let response = client
        .post(format!("{}/v1/backups", ferry.address))
        .json(&json!({"server": {"url": source.url()}}))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 202);
    let id = response.json::<Value>().await.unwrap()["id"]
        .as_str()
        .unwrap()
        .to_string();
    // Wait until part of the file is on disk, then kill -9.
    let deadline = Instant::now() + WAIT;
    loop {
        let view: Value = client
            .get(format!("{}/v1/backups/{id}", ferry.address))
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        assert_eq!(
            view["status"], "running",
            "the backup must still run: {view:#}"
        );
        if view["bytes"].as_u64().unwrap() > 0 {
            break;
        }
        assert!(Instant::now() < deadline, "no bytes arrived: {view:#}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    ferry.child.kill().unwrap();
    ferry.child.wait().unwrap();

    let data = dir.path().join("data");
    let left = files_in(&data.join("backups"));
    assert!(
        left.iter().all(|f| f.ends_with(".rdb.partial")),
        "only a partial file may remain: {left:?}"
    );
    assert!(
        !left.is_empty(),
        "the partial file was being written: {left:?}"
    );

    // The next start records the backup as interrupted and sweeps the partial file.
    let data = std::sync::Arc::new(tempfile::TempDir::new_in(dir.path()).unwrap());
    std::fs::remove_dir(data.path()).unwrap();
    std::fs::rename(dir.path().join("data"), data.path()).unwrap();
    let app = spawn_with(settings_for(data.path()), data).await;
    let view = backup_view(&app, &id).await;
    assert_eq!(view["status"], "failed", "{view:#}");
    assert!(
        view["error"].as_str().unwrap().contains("stopped"),
        "{view:#}"
    );
    assert!(files_in(&backups_dir(&app)).is_empty());
    let download = app.get(&format!("/v1/backups/{id}/download")).await;
    crate::app::assert_problem(download, 409).await;
}
