//! A backup that would not fit is refused before the server is asked to fork.

use serde_json::{json, Value};

use crate::common::app::{assert_problem, settings_for, spawn_with};
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

/// A 1 MiB tmpfs mounted on the backup directory; unmounted when dropped.
struct Tmpfs(std::path::PathBuf);

impl Tmpfs {
    /// `None` when this process may not mount (not root, or in a container without the right).
    fn mount(at: &std::path::Path) -> Option<Tmpfs> {
        Self::mount_sized(at, "1m")
    }

    /// A tmpfs of `size` (`mount -o size=…`) on `at`.
    fn mount_sized(at: &std::path::Path, size: &str) -> Option<Tmpfs> {
        std::fs::create_dir_all(at).unwrap();
        let status = std::process::Command::new("mount")
            .args(["-t", "tmpfs", "-o", &format!("size={size}"), "tmpfs"])
            .arg(at)
            .stderr(std::process::Stdio::null())
            .status()
            .ok()?;
        status.success().then(|| Tmpfs(at.to_path_buf()))
    }
}

impl Drop for Tmpfs {
    /// Unmounts; lazily (`umount -l`) when a file on it is still open, e.g. by the event log's
    /// background threads, so that no mount outlives the test.
    fn drop(&mut self) {
        let unmounted = std::process::Command::new("umount")
            .arg(&self.0)
            .stderr(std::process::Stdio::null())
            .status()
            .is_ok_and(|status| status.success());
        if !unmounted {
            let _ = std::process::Command::new("umount")
                .arg("-l")
                .arg(&self.0)
                .status();
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_backup_larger_than_the_free_disk_is_refused() {
    let server = RedisServer::start("7.2");
    let mut c = server.conn();
    let mut p = redis::pipe();
    for i in 0..3000 {
        p.cmd("SET")
            .arg(format!("k{i}"))
            .arg(format!("{i:01000}"))
            .ignore();
    }
    p.query::<()>(&mut c).unwrap();
    let dir = std::sync::Arc::new(tempfile::tempdir().unwrap());
    let mut settings = settings_for(dir.path());
    // A real small filesystem where the machine allows mounting one; else the same limit as a
    // configured quota, so that the refusal is tested either way.
    let tmpfs = Tmpfs::mount(&dir.path().join("backups"));
    if tmpfs.is_none() {
        eprintln!("mount -t tmpfs is not permitted here: testing with backup_max_bytes instead");
        settings.backup_max_bytes = Some(1 << 20);
    }
    let app = spawn_with(settings, dir.clone()).await;
    let response = app
        .post_json("/v1/backups", &json!({"server": {"url": server.url()}}))
        .await;
    let problem = assert_problem(response, 507).await;
    let detail = problem["detail"].as_str().unwrap();
    assert!(
        detail.contains("free disk space or raise backup_max_bytes"),
        "{detail}"
    );
    if tmpfs.is_some() {
        let free = ferry::disk::free_bytes(&backups_dir(&app)).unwrap();
        assert!(free <= 1 << 20, "the tmpfs is mounted: {free} bytes free");
        assert!(detail.contains(&format!("{free} bytes free")), "{detail}");
    }
    assert!(files_in(&backups_dir(&app)).is_empty());
    let list: Value = app.get("/v1/backups").await.json().await.unwrap();
    assert_eq!(list["backups"], json!([]));
    drop(app);
    drop(tmpfs);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_restore_point_that_does_not_fit_fails_the_migration_before_it_writes() {
    let source = RedisServer::start_with("7.2", &["--repl-diskless-sync-delay", "0"]);
    let target = RedisServer::start("7.2");
    source.cli(&["SET", "from:source", "x"]);
    for i in 0..100 {
        target.cli(&["SET", &format!("t{i}"), &"v".repeat(1000)]);
    }
    let dir = std::sync::Arc::new(tempfile::tempdir().unwrap());
    let mut settings = settings_for(dir.path());
    settings.backup_max_bytes = Some(10_000);
    let app = spawn_with(settings, dir).await;
    let response = app
        .post_json(
            "/v1/migrations",
            &json!({"source": {"url": source.url()}, "target": {"url": target.url()},
                "options": {"on_conflict": "replace"}}),
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
        .wait_for(&id, crate::helpers::WAIT, |v| {
            v["state"] == "failed" || v["state"] == "completed"
        })
        .await;
    assert_eq!(view["state"], "failed", "{view:#}");
    assert_eq!(view["error"]["code"], "backup_failed", "{view:#}");
    let message = view["error"]["message"].as_str().unwrap();
    assert!(
        message.contains("nothing was written") && message.contains("backup_max_bytes"),
        "{message}"
    );
    assert_eq!(
        target.cli(&["EXISTS", "from:source"]).trim(),
        "0",
        "the target was not written"
    );
    assert_eq!(target.cli(&["DBSIZE"]).trim(), "100");
    let events = app.event_types(&id).await;
    assert!(
        !events.contains(&"SnapshotStarted".to_string()),
        "{events:?}"
    );
}

/// Finding 7: a full disk poisoned the event log while `/readyz` said ready. Ferry now keeps a
/// free-space floor: below it `/readyz` is 503 with the reason and new work gets 507, and both
/// come back by themselves once space is freed, without a restart.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn below_the_free_space_floor_ferry_is_not_ready_refuses_new_work_and_recovers() {
    let server = RedisServer::start("7.2");
    server.cli(&["SET", "k", "v"]);
    let dir = std::sync::Arc::new(tempfile::tempdir().unwrap());
    let disk = dir.path().join("disk");
    let tmpfs = Tmpfs::mount_sized(&disk, "64m").unwrap_or_else(|| {
        panic!(
            "mount -t tmpfs is not permitted here; this test needs a small real filesystem \
             (run the suite as root, as scripts/test.sh does in CI)"
        )
    });
    let mut settings = settings_for(&disk.join("data"));
    settings.min_free_bytes = 32 << 20;
    let app = spawn_with(settings, dir.clone()).await;
    assert_eq!(app.get("/readyz").await.status(), 200);

    // Something else fills the disk below the floor.
    let filler = disk.join("filler");
    std::fs::write(&filler, vec![0u8; 40 << 20]).unwrap();
    let problem = assert_problem(app.get("/readyz").await, 503).await;
    let detail = problem["detail"].as_str().unwrap();
    assert!(detail.contains("min_free_bytes"), "{detail}");
    let response = app
        .post_json("/v1/backups", &json!({"server": {"url": server.url()}}))
        .await;
    assert_problem(response, 507).await;
    let upload = app
        .post_bytes("/v1/backups/upload", b"REDIS0009".to_vec())
        .await;
    assert_problem(upload, 507).await;

    // Space comes back: so does Ferry, on its own.
    std::fs::remove_file(&filler).unwrap();
    assert_eq!(app.get("/readyz").await.status(), 200);
    let response = app
        .post_json("/v1/backups", &json!({"server": {"url": server.url()}}))
        .await;
    assert_eq!(response.status(), 202);
    let backup: Value = response.json().await.unwrap();
    crate::helpers::wait_backup(&app, backup["id"].as_str().unwrap(), |v| {
        v["status"] != "running"
    })
    .await;
    // The log lives on the tmpfs: close it before unmounting.
    let _ = app.stop().await;
    drop(tmpfs);
}
