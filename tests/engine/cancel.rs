//! Cancel in each phase: prompt, and the source is never left paused.

use std::time::{Duration, Instant};

use ferry::model::EventKind;
use ferry::spec::{Mode, OnConflict, Verify};

use crate::common::redis::RedisServer;
use crate::helpers::*;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cancel_during_the_snapshot_stops_promptly_and_leaves_the_source_usable() {
    let source = RedisServer::start_with(
        "7.2",
        &[
            "--repl-diskless-sync-delay",
            "0",
            "--rdb-key-save-delay",
            "50000",
        ],
    );
    let target = RedisServer::start("7.2");
    populate(&source, 1);
    let run = start(
        spec(
            &source,
            &target,
            Mode::Live,
            options(OnConflict::Fail, Verify::Full),
        ),
        quick(),
    );
    run.wait_for("SnapshotStarted", |e| {
        matches!(e, EventKind::SnapshotStarted { .. })
    })
    .await;
    let events = wait_until_cancelled(run).await;
    assert!(!names(&events).contains(&"SnapshotCompleted"));
    source_writes_succeed_promptly(&source);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cancel_during_streaming_stops_promptly() {
    let source = RedisServer::start_with("7.2", &["--repl-diskless-sync-delay", "0"]);
    let target = RedisServer::start("7.2");
    let run = start(
        spec(
            &source,
            &target,
            Mode::Live,
            options(OnConflict::Fail, Verify::Full),
        ),
        quick(),
    );
    run.wait_for("StreamingStarted", |e| {
        matches!(e, EventKind::StreamingStarted { .. })
    })
    .await;
    wait_until_cancelled(run).await;
    source_writes_succeed_promptly(&source);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cancel_during_a_paused_cutover_releases_the_source_pause() {
    let source = RedisServer::start_with("7.2", &["--repl-diskless-sync-delay", "0"]);
    let target = RedisServer::start("7.2");
    let mut opts = options(OnConflict::Fail, Verify::Full);
    opts.pause_source_writes_on_cutover = true;
    let run = start(spec(&source, &target, Mode::Live, opts), quick());
    run.wait_for("StreamingStarted", |e| {
        matches!(e, EventKind::StreamingStarted { .. })
    })
    .await;
    // Hold the target so the engine cannot catch up: cutover stays in its paused wait.
    // (Long enough for the test; CLIENT UNPAUSE would itself be held by an ALL pause.)
    target.cli(&["CLIENT", "PAUSE", "15000", "ALL"]);
    let _: () = redis::cmd("SET")
        .arg("late")
        .arg("1")
        .query(&mut source.conn())
        .unwrap();
    run.controls.cutover.cancel();
    // Wait until the source is really paused: a write blocks.
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let mut c = source.conn();
        c.set_read_timeout(Some(Duration::from_millis(300)))
            .unwrap();
        if redis::cmd("SET")
            .arg("probe")
            .arg("1")
            .query::<()>(&mut c)
            .is_err()
        {
            break;
        }
        assert!(Instant::now() < deadline, "the source never got paused");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    wait_until_cancelled(run).await;
    source_writes_succeed_promptly(&source);
}
