//! kill -9 of Ferry itself: during the snapshot, during streaming, at random points, and while
//! the source's backlog moves past the applied offset.

use std::time::Duration;

use crate::common::redis::RedisServer;
use crate::harness::{assert_converged, seed, Ferry, Load, Rng, WAIT};

fn has_event(
    events: &[serde_json::Value],
    kind: &str,
    pred: impl Fn(&serde_json::Value) -> bool,
) -> bool {
    events.iter().any(|e| e["type"] == kind && pred(&e["data"]))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kill9_during_snapshot_and_during_streaming_then_the_job_completes() {
    // 1 ms per key while the source saves: a snapshot of ~3000 keys takes seconds, so the kill
    // lands inside it.
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
    seed(&source, 3000);
    let mut ferry = Ferry::start().await;
    let load = Load::start(&source);
    let id = ferry.start_live(&source, &target).await;
    ferry
        .wait_for(&id, "keys written by the snapshot", |v| {
            v["phase"] == "snapshot" && v["progress"]["keys_written"].as_u64().unwrap_or(0) > 0
        })
        .await;
    ferry.kill9();
    let mut kills = 1;
    ferry.restart().await;
    ferry.wait_streaming(&id).await;
    let events = ferry.events(&id).await;
    assert!(
        has_event(&events, "SnapshotStarted", |d| d["redo"].is_string()),
        "the restarted snapshot says what it redoes: {events:#?}"
    );

    load.wait_more(300).await;
    ferry.kill9();
    kills += 1;
    load.wait_more(200).await;
    ferry.restart().await;
    let deadline = std::time::Instant::now() + WAIT;
    while !ferry
        .link_events(&id)
        .await
        .iter()
        .any(|e| e == "LinkResumed:source:partial")
    {
        let events = ferry.events(&id).await;
        let links: Vec<_> = events
            .iter()
            .filter(|e| e["type"] == "LinkResumed" || e["type"] == "SnapshotStarted")
            .collect();
        assert!(
            std::time::Instant::now() < deadline,
            "no partial resume: {links:#?}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    load.wait_more(200).await;
    let ops = load.stop();
    let report = ferry.cut_over(&id).await;
    assert_converged(&report, &source, &target);
    // Every kill -9 left a log whose hash chain holds, and the events after each restart link on.
    let (status, chain) = ferry.get("/v1/audit/verify").await;
    assert_eq!(status, 200, "{chain}");
    assert_eq!(chain["status"], "intact", "after {kills} kills: {chain}");
    assert_eq!(chain["head_seq"], chain["events"], "{chain}");
    eprintln!("kill -9 during snapshot and streaming: {kills} kills survived, {ops} load rounds, 0 differences, audit chain intact over {} events", chain["events"]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ten_kills_at_random_points_still_converge() {
    let source = RedisServer::start_with("7.2", &["--repl-diskless-sync-delay", "0"]);
    let target = RedisServer::start("7.2");
    seed(&source, 500);
    let mut ferry = Ferry::start().await;
    let load = Load::start(&source);
    let id = ferry.start_live(&source, &target).await;
    let mut rng = Rng::from_time();
    let mut kills = 0;
    for _ in 0..10 {
        tokio::time::sleep(Duration::from_millis(100 + rng.below(2000))).await;
        ferry.kill9();
        kills += 1;
        tokio::time::sleep(Duration::from_millis(rng.below(300))).await;
        ferry.restart().await;
    }
    ferry.wait_streaming(&id).await;
    load.wait_more(200).await;
    let ops = load.stop();
    let report = ferry.cut_over(&id).await;
    assert_converged(&report, &source, &target);
    let (_, chain) = ferry.get("/v1/audit/verify").await;
    assert_eq!(
        chain["status"], "intact",
        "after {kills} kills at random points: {chain}"
    );
    eprintln!(
        "random restarts: {kills} kills survived ({} starts), {ops} load rounds, links {:?}, 0 differences",
        ferry.starts,
        ferry.link_events(&id).await
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_backlog_that_moved_on_forces_a_full_resync_and_deleted_keys_do_not_survive() {
    // The smallest backlog Redis allows: a few hundred load rounds overflow it.
    let source = RedisServer::start_with(
        "7.2",
        &[
            "--repl-diskless-sync-delay",
            "0",
            "--repl-backlog-size",
            "16384",
        ],
    );
    let target = RedisServer::start("7.2");
    seed(&source, 500);
    let mut ferry = Ferry::start().await;
    let load = Load::start(&source);
    let id = ferry.start_live(&source, &target).await;
    ferry.wait_streaming(&id).await;
    load.wait_more(100).await;
    let mut t = target.conn();
    let deadline = std::time::Instant::now() + WAIT;
    while redis::cmd("EXISTS")
        .arg("seed:1")
        .query::<i64>(&mut t)
        .unwrap()
        == 0
    {
        assert!(
            std::time::Instant::now() < deadline,
            "seed:1 never reached the target"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    ferry.kill9();
    // While Ferry is down: far more than 16 kB of writes, and a delete.
    load.wait_more(800).await;
    let _: () = redis::cmd("DEL")
        .arg("seed:1")
        .query(&mut source.conn())
        .unwrap();
    load.wait_more(800).await;
    ferry.restart().await;
    let deadline = std::time::Instant::now() + WAIT;
    while !ferry
        .link_events(&id)
        .await
        .iter()
        .any(|e| e == "LinkResumed:source:full")
    {
        assert!(
            std::time::Instant::now() < deadline,
            "no full resync: {:?}\n{}",
            ferry.link_events(&id).await,
            ferry.log()
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    // The view still reads `streaming` from before the crash until the redo's SnapshotStarted:
    // wait for the redo's own SnapshotCompleted (the sweep runs before it), not for the phase.
    let deadline = std::time::Instant::now() + WAIT;
    while ferry
        .events(&id)
        .await
        .iter()
        .filter(|e| e["type"] == "SnapshotCompleted")
        .count()
        < 2
    {
        assert!(
            std::time::Instant::now() < deadline,
            "the redone snapshot never completed\n{}",
            ferry.log()
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    ferry.wait_streaming(&id).await;
    let gone = redis::cmd("EXISTS")
        .arg("seed:1")
        .query::<i64>(&mut t)
        .unwrap();
    assert_eq!(
        gone, 0,
        "a key deleted on the source survived the full resync on the target"
    );
    load.wait_more(100).await;
    let ops = load.stop();
    let report = ferry.cut_over(&id).await;
    assert_converged(&report, &source, &target);
    eprintln!("backlog overflow: 1 kill survived by full resync, {ops} load rounds, 0 differences");
}

/// Every key of every db as `db/key=DUMP`, for an exact before/after comparison.
fn contents(server: &RedisServer) -> Vec<String> {
    let mut conn = server.conn();
    let mut out = vec![];
    for db in 0..16 {
        let _: () = redis::cmd("SELECT").arg(db).query(&mut conn).unwrap();
        let keys: Vec<Vec<u8>> = redis::cmd("KEYS").arg("*").query(&mut conn).unwrap();
        for key in keys {
            let dump: Vec<u8> = redis::cmd("DUMP").arg(&key).query(&mut conn).unwrap();
            out.push(format!("{db}/{}={dump:?}", String::from_utf8_lossy(&key)));
        }
    }
    out.sort();
    out
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_restore_point_is_taken_once_even_when_ferry_dies_mid_snapshot() {
    // A restarted job must not take a second "restore point" of the target it already half
    // wrote: rollback would then bring back the half-written state instead of the original.
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
    let mut t = target.conn();
    for i in 0..5 {
        let _: () = redis::cmd("SET")
            .arg(format!("before:{i}"))
            .arg(i)
            .query(&mut t)
            .unwrap();
    }
    let _: () = redis::cmd("RPUSH")
        .arg("before:list")
        .arg(&["a", "b"])
        .query(&mut t)
        .unwrap();
    let original = contents(&target);

    let mut ferry = Ferry::start().await;
    let spec = serde_json::json!({
        "source": {"url": source.url()},
        "target": {"url": target.url()},
        "mode": "snapshot",
        // No verification: the target's own keys (`before:*`) stay through the redo now, and a
        // full verification counts them as extra.
        "options": {"verify": "none", "on_conflict": "replace", "backup": true}
    });
    let (status, view) = ferry.post("/v1/migrations", Some(spec)).await;
    assert_eq!(status, 201, "create: {view:#}");
    let id = view["id"].as_str().expect("id").to_string();
    let (_, report) = ferry
        .post(&format!("/v1/migrations/{id}/validate"), None)
        .await;
    assert_ne!(report["status"], "failed", "validation: {report:#}");
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
    let restore_points = events
        .iter()
        .filter(|e| e["type"] == "BackupCompleted")
        .count();
    assert_eq!(
        restore_points, 1,
        "one restore point, before the first write: {events:#?}"
    );
    assert_eq!(
        done["backup_id"],
        events
            .iter()
            .find(|e| e["type"] == "BackupCompleted")
            .unwrap()["data"]["backup_id"]
    );

    let (status, body) = ferry
        .post(&format!("/v1/migrations/{id}/rollback"), None)
        .await;
    assert!(
        status == 200 || status == 202,
        "rollback: {status} {body:#}"
    );
    ferry
        .wait_for(&id, "rolled back", |v| v["rolled_back"] == true)
        .await;
    assert_eq!(
        contents(&target),
        original,
        "rollback restores the target exactly as it was before the migration"
    );
}
