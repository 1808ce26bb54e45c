//! Never destroy before proof, with kill -9 of the real binary: a redone snapshot keeps what the
//! conflict policy keeps, a dead Ferry's lease keeps a second writer out until it lapses and then
//! decides who resumes (a `ferry migrate` run included), and a cutover's source pause lapses by
//! itself soon after a crash.

use std::time::{Duration, Instant};

use serde_json::{json, Value};

use crate::common::redis::RedisServer;
use crate::harness::{seed, Ferry, WAIT};

fn get(server: &RedisServer, db: u32, key: &str) -> Option<String> {
    let mut c = server.conn();
    let _: () = redis::cmd("SELECT").arg(db).query(&mut c).unwrap();
    redis::cmd("GET").arg(key).query(&mut c).unwrap()
}

async fn create(ferry: &Ferry, spec: Value) -> String {
    let (status, view) = ferry.post("/v1/migrations", Some(spec)).await;
    assert_eq!(status, 201, "create: {view:#}");
    let id = view["id"].as_str().expect("id").to_string();
    let (status, report) = ferry
        .post(&format!("/v1/migrations/{id}/validate"), None)
        .await;
    assert_eq!(status, 200, "validate: {report:#}");
    assert_ne!(report["status"], "failed", "validation: {report:#}");
    id
}

/// Finding 2: a redone snapshot (Ferry killed mid-snapshot) used to force `skip` to `replace`
/// and then delete every target key the new snapshot did not write. Now the keys the target
/// held before keep the policy, and only the migration's own copies are swept.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_redone_snapshot_keeps_what_skip_keeps_and_keys_it_did_not_write() {
    let source = RedisServer::start_with(
        "7.2",
        &[
            "--repl-diskless-sync-delay",
            "0",
            "--rdb-key-save-delay",
            "1000",
        ],
    );
    let target = RedisServer::start("7.2");
    seed(&source, 2000);
    let other = format!("ferry:offset:{}", uuid::Uuid::now_v7());
    target.cli(&["SET", "seed:5", "the target's own"]);
    target.cli(&["SET", "app:key", "written by an application"]);
    target.cli(&["SET", &other, "another migration's offset"]);
    let mut c = target.conn();
    let _: () = redis::cmd("SELECT").arg(3).query(&mut c).unwrap();
    let _: () = redis::cmd("SET")
        .arg("app:db3")
        .arg("in db 3")
        .query(&mut c)
        .unwrap();

    let mut ferry = Ferry::start().await;
    let id = create(
        &ferry,
        json!({"source": {"url": source.url()}, "target": {"url": target.url()},
            "mode": "snapshot", "options": {"on_conflict": "skip", "backup": false, "verify": "none"}}),
    )
    .await;
    let (status, body) = ferry
        .post(&format!("/v1/migrations/{id}/start"), None)
        .await;
    assert_eq!(status, 202, "start: {body:#}");
    ferry
        .wait_for(&id, "keys written by the snapshot", |v| {
            v["phase"] == "snapshot" && v["progress"]["keys_written"].as_u64().unwrap_or(0) > 0
        })
        .await;
    ferry.kill9();
    ferry.restart().await;
    let done = ferry
        .wait_for(&id, "completed", |v| v["state"] == "completed")
        .await;
    let events = ferry.events(&id).await;
    assert!(
        events
            .iter()
            .any(|e| e["type"] == "SnapshotStarted" && e["data"]["redo"].is_string()),
        "the snapshot was redone: {events:#?}"
    );
    assert_eq!(
        get(&target, 0, "seed:5").as_deref(),
        Some("the target's own"),
        "on_conflict skip keeps the target's value, also in a redo: {done:#}"
    );
    assert_eq!(
        get(&target, 0, "app:key").as_deref(),
        Some("written by an application"),
        "a key the migration did not write survives the redo's sweep"
    );
    assert_eq!(
        get(&target, 0, &other).as_deref(),
        Some("another migration's offset"),
        "another migration's ferry:* key is never swept"
    );
    assert_eq!(get(&target, 3, "app:db3").as_deref(), Some("in db 3"));
    assert_eq!(get(&target, 0, "seed:1999").as_deref(), Some("1999"));
}

/// Finding 3: nothing stopped two writers on one target. A Ferry killed while migrating leaves
/// its lease; a second Ferry is refused (409 naming the holder) until the lease lapses by itself;
/// when the first Ferry comes back, the lease decides: its migration is not resumed into a
/// target someone else now writes, and its view says so.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_dead_ferrys_lease_keeps_a_second_writer_out_until_it_lapses_and_decides_who_resumes() {
    let source = RedisServer::start_with("7.2", &["--repl-diskless-sync-delay", "0"]);
    let target = RedisServer::start("7.2");
    seed(&source, 200);
    let mut first = Ferry::start().await;
    let one = first.start_live(&source, &target).await;
    first.wait_streaming(&one).await;
    first.kill9();
    let killed = Instant::now();

    let second = Ferry::start().await;
    let two = create(
        &second,
        json!({"source": {"url": source.url()}, "target": {"url": target.url()},
            "mode": "live", "options": {"on_conflict": "replace", "verify": "none"}}),
    )
    .await;
    let report = second.view(&two).await["validation"].clone();
    let in_use = report["checks"]
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["id"] == "target.in_use")
        .cloned()
        .expect("a target.in_use check");
    assert_eq!(in_use["status"], "warn", "{in_use:#}");
    assert!(
        in_use["message"].as_str().unwrap().contains(&one),
        "{in_use:#}"
    );
    let (status, problem) = second
        .post(&format!("/v1/migrations/{two}/start"), None)
        .await;
    assert_eq!(status, 409, "a second writer is refused: {problem:#}");
    let detail = problem["detail"].as_str().unwrap();
    assert!(detail.contains(&one), "the 409 names the holder: {detail}");
    assert_eq!(problem["field"], "target.url");
    // The dead Ferry's lease lapses by itself (15 s); then the second writer may start.
    let started = loop {
        let (status, body) = second
            .post(&format!("/v1/migrations/{two}/start"), None)
            .await;
        if status == 202 {
            break Instant::now();
        }
        assert_eq!(status, 409, "{body:#}");
        assert!(
            killed.elapsed() < Duration::from_secs(30),
            "the dead Ferry's lease did not lapse: {body:#}"
        );
        tokio::time::sleep(Duration::from_millis(500)).await;
    };
    assert!(
        started - killed > Duration::from_secs(5),
        "the lease held for a while after the crash"
    );
    second.wait_streaming(&two).await;

    // The first Ferry comes back: its migration finds the target in use and is not resumed.
    first.restart().await;
    let view = first
        .wait_for(&one, "the lease to decide", |v| v["state"] != "migrating")
        .await;
    assert_eq!(view["state"], "failed", "{view:#}");
    assert_eq!(view["error"]["code"], "target_in_use", "{view:#}");
    let message = view["error"]["message"].as_str().unwrap();
    assert!(
        message.contains(&two) && message.contains("not resumed"),
        "{message}"
    );
    let (status, _) = second
        .post(&format!("/v1/migrations/{two}/cancel"), None)
        .await;
    assert_eq!(status, 202);
}

/// Finding 5: the cutover's `CLIENT PAUSE` lasted 30 s whatever happened to Ferry. Now it is a
/// short window renewed while Ferry lives: killed mid-cutover, the source takes writes again
/// within one window (10 s), not after 30.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_ferry_killed_during_cutover_leaves_a_pause_that_lapses_within_its_window() {
    let source = RedisServer::start_with("7.2", &["--repl-diskless-sync-delay", "0"]);
    let target = RedisServer::start_with("7.2", &["--enable-debug-command", "yes"]);
    seed(&source, 100);
    let mut ferry = Ferry::start().await;
    // Defaults: the cutover pauses the source's writes.
    let id = create(
        &ferry,
        json!({"source": {"url": source.url()}, "target": {"url": target.url()},
            "mode": "live", "options": {"verify": "none"}}),
    )
    .await;
    let (status, body) = ferry
        .post(&format!("/v1/migrations/{id}/start"), None)
        .await;
    assert_eq!(status, 202, "{body:#}");
    ferry.wait_streaming(&id).await;
    assert_eq!(
        ferry.view(&id).await["options"]["pause_source_writes_on_cutover"],
        true
    );
    // The target stalls, so the cutover cannot catch up: it waits, paused.
    let stalled = target.client();
    let sleeper = std::thread::spawn(move || {
        let mut c = stalled.get_connection().unwrap();
        let _: redis::RedisResult<()> = redis::cmd("DEBUG").arg("SLEEP").arg(25).query(&mut c);
    });
    tokio::time::sleep(Duration::from_millis(300)).await;
    source.cli(&["SET", "before:cutover", "1"]);
    let (status, body) = ferry
        .post(&format!("/v1/migrations/{id}/cutover"), None)
        .await;
    assert_eq!(status, 202, "{body:#}");
    // Wait until the pause is in force: a write then does not answer.
    let deadline = Instant::now() + WAIT;
    loop {
        let mut probe = source.conn();
        probe
            .set_read_timeout(Some(Duration::from_millis(500)))
            .unwrap();
        let answered: redis::RedisResult<()> =
            redis::cmd("SET").arg("probe").arg(1).query(&mut probe);
        if answered.is_err() {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "the cutover never paused the source"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    ferry.kill9();
    let killed = Instant::now();
    source.cli(&["SET", "after:kill", "1"]);
    let waited = killed.elapsed();
    assert!(
        waited < Duration::from_secs(12),
        "the source stayed paused {waited:?} after Ferry died; the pause window is 10 s"
    );
    drop(sleeper);
}

/// "Leave nothing behind": a migration started by `ferry migrate` and killed is recorded in its
/// data dir like any other. When `ferry serve` later opens that data dir while another Ferry now
/// writes the target, the lease decides: the CLI's migration is not resumed into that target, and
/// its view names the migration that holds it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_killed_ferry_migrate_is_not_resumed_by_ferry_serve_into_a_target_someone_else_writes() {
    let source = RedisServer::start_with("7.2", &["--repl-diskless-sync-delay", "0"]);
    let target = RedisServer::start("7.2");
    seed(&source, 200);
    // The data dir `ferry serve` will open later; the CLI records into it first (one process at a
    // time: sled locks it).
    let mut first = Ferry::start().await;
    first.kill9();
    let mut cli = std::process::Command::new(env!("CARGO_BIN_EXE_ferry"))
        .args([
            "migrate",
            "--mode",
            "live",
            "--verify",
            "none",
            "--no-backup",
            // The lease guards the restore path; a relay's target is guarded by its replica role.
            "--transfer",
            "restore",
        ])
        .args(["--source", &source.url(), "--target", &target.url()])
        .arg("--data-dir")
        .arg(first.data())
        .env("FERRY_CONFIG", "/dev/null")
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .expect("spawn `ferry migrate` (built by cargo for this test)");
    let deadline = Instant::now() + WAIT;
    while get(&target, 0, "seed:199").as_deref() != Some("199") {
        if let Ok(Some(status)) = cli.try_wait() {
            panic!("ferry migrate exited with {status} before its snapshot reached the target");
        }
        assert!(Instant::now() < deadline, "ferry migrate wrote nothing");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let _ = cli.kill();
    let _ = cli.wait();

    // Another Ferry takes the target once the dead CLI's lease has lapsed.
    let second = Ferry::start().await;
    let two = create(
        &second,
        json!({"source": {"url": source.url()}, "target": {"url": target.url()},
            "mode": "live", "options": {"on_conflict": "replace", "verify": "none"}}),
    )
    .await;
    let deadline = Instant::now() + Duration::from_secs(45);
    loop {
        let (status, body) = second
            .post(&format!("/v1/migrations/{two}/start"), None)
            .await;
        if status == 202 {
            break;
        }
        assert_eq!(status, 409, "{body:#}");
        assert!(
            Instant::now() < deadline,
            "the CLI's lease did not lapse: {body:#}"
        );
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    second.wait_streaming(&two).await;

    // `ferry serve` on the CLI's data dir finds the CLI's migration and does not resume it.
    first.restart().await;
    let (status, list) = first.get("/v1/migrations").await;
    assert_eq!(status, 200, "{list:#}");
    let migrations = list["migrations"].as_array().expect("a list");
    assert_eq!(migrations.len(), 1, "the CLI's migration: {list:#}");
    assert_eq!(migrations[0]["name"], "ferry migrate", "{list:#}");
    let one = migrations[0]["id"].as_str().unwrap().to_string();
    let view = first
        .wait_for(&one, "the lease to decide", |v| v["state"] != "migrating")
        .await;
    assert_eq!(view["state"], "failed", "{view:#}");
    assert_eq!(view["error"]["code"], "target_in_use", "{view:#}");
    let message = view["error"]["message"].as_str().unwrap();
    assert!(
        message.contains(&two) && message.contains("not resumed"),
        "{message}"
    );
    let (status, _) = second
        .post(&format!("/v1/migrations/{two}/cancel"), None)
        .await;
    assert_eq!(status, 202);
}

/// A redone snapshot of a filtered, renamed migration (Ferry killed mid-snapshot) sweeps only
/// target keys a key passing the filter would have become: a key an application writes to the
/// target meanwhile, outside that image, survives; the renamed copies are complete and nothing
/// outside the filter lands.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_redone_filtered_snapshot_sweeps_only_what_the_filter_could_have_written() {
    let source = RedisServer::start_with(
        "7.2",
        &[
            "--repl-diskless-sync-delay",
            "0",
            "--rdb-key-save-delay",
            "1000",
        ],
    );
    let target = RedisServer::start("7.2");
    seed(&source, 2000);
    source.cli(&["SET", "other:1", "left behind"]);
    target.cli(&["SET", "s:5", "the target's own"]);

    let mut ferry = Ferry::start().await;
    let id = create(
        &ferry,
        json!({"source": {"url": source.url()}, "target": {"url": target.url()},
            "mode": "snapshot", "options": {"on_conflict": "skip", "backup": false, "verify": "none",
            "filter": {"include": ["seed:*"]}, "rename": [{"from_prefix": "seed:", "to_prefix": "s:"}]}}),
    )
    .await;
    let (status, body) = ferry
        .post(&format!("/v1/migrations/{id}/start"), None)
        .await;
    assert_eq!(status, 202, "start: {body:#}");
    ferry
        .wait_for(&id, "keys written by the snapshot", |v| {
            v["phase"] == "snapshot" && v["progress"]["keys_written"].as_u64().unwrap_or(0) > 0
        })
        .await;
    // Written by an application while the migration runs (after its inventory).
    target.cli(&["SET", "app:during", "outside the filter's image"]);
    ferry.kill9();
    ferry.restart().await;
    let done = ferry
        .wait_for(&id, "completed", |v| v["state"] == "completed")
        .await;
    let events = ferry.events(&id).await;
    assert!(
        events
            .iter()
            .any(|e| e["type"] == "SnapshotStarted" && e["data"]["redo"].is_string()),
        "the snapshot was redone: {events:#?}"
    );
    assert_eq!(
        get(&target, 0, "app:during").as_deref(),
        Some("outside the filter's image"),
        "the redo's sweep left a key no filtered key becomes: {done:#}"
    );
    assert_eq!(get(&target, 0, "s:5").as_deref(), Some("the target's own"));
    assert_eq!(get(&target, 0, "s:1999").as_deref(), Some("1999"));
    assert_eq!(get(&target, 0, "other:1"), None);
    assert_eq!(
        get(&target, 0, "seed:1"),
        None,
        "renamed, never under the source's name"
    );
    assert_eq!(
        target.cli(&["DBSIZE"]).trim(),
        "2001",
        "s:0–s:1999 and app:during"
    );
}
