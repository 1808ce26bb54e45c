//! Live mode: streaming under concurrent writes, cutover (manual and automatic), progress and lag,
//! resuming a broken link and a restarted job by partial resync.

use std::time::{Duration, Instant};

use ferry::model::EventKind;
use ferry::spec::{Mode, OnConflict, Verify};

use crate::common::redis::RedisServer;
use crate::helpers::*;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn live_mode_streams_writes_made_after_the_snapshot_and_cuts_over_with_a_pause() {
    let source = RedisServer::start_with("7.2", &["--repl-diskless-sync-delay", "0"]);
    let target = RedisServer::start("7.2");
    let mut opts = options(OnConflict::Fail, Verify::Full);
    opts.pause_source_writes_on_cutover = true;
    let run = start(spec(&source, &target, Mode::Live, opts), quick());
    run.wait_for("StreamingStarted", |e| {
        matches!(e, EventKind::StreamingStarted { .. })
    })
    .await;

    let mut c = source.conn();
    for i in 0..200 {
        let _: () = redis::cmd("SET")
            .arg(format!("k{i}"))
            .arg(i)
            .query(&mut c)
            .unwrap();
    }
    let _: () = redis::cmd("SELECT").arg(1).query(&mut c).unwrap();
    let _: () = redis::cmd("RPUSH")
        .arg("list")
        .arg(&[1, 2, 3])
        .query(&mut c)
        .unwrap();
    let _: () = redis::pipe()
        .atomic()
        .cmd("INCR")
        .arg("n")
        .cmd("HSET")
        .arg("h")
        .arg("f")
        .arg("v")
        .query(&mut c)
        .unwrap();
    let _: () = redis::cmd("SELECT").arg(0).query(&mut c).unwrap();
    let _: () = redis::cmd("PEXPIRE")
        .arg("k1")
        .arg(100_000)
        .query(&mut c)
        .unwrap();

    run.wait_for("a checkpoint with zero lag", |e| {
        matches!(e, EventKind::Checkpoint { lag_bytes: Some(0), commands_streamed, .. } if *commands_streamed > 200)
    })
    .await;
    run.controls.cutover.cancel();
    let (result, events) = run.finish().await;
    result.unwrap();
    let names = names(&events);
    assert_eq!(
        names
            .iter()
            .copied()
            .filter(|n| !matches!(*n, "Checkpoint" | "SnapshotProgress"))
            .collect::<Vec<_>>(),
        [
            "TransferChosen",
            "SnapshotRequested",
            "SnapshotStarted",
            "SnapshotCompleted",
            "StreamingStarted",
            "VerificationCompleted",
            "CutoverCompleted"
        ]
    );
    assert_same(&source, &target, 2);
    source_writes_succeed_promptly(&source);
}

async fn live_with_concurrent_writes(from: &str, to: &str, diskless: bool) {
    let source = RedisServer::start_with(
        from,
        &[
            "--databases",
            "4",
            "--repl-diskless-sync",
            if diskless { "yes" } else { "no" },
            "--repl-diskless-sync-delay",
            "0",
            // Slow the snapshot down so that writes land while it is being taken and applied.
            "--rdb-key-save-delay",
            "2000",
        ],
    );
    let target = RedisServer::start_with(to, &["--databases", "4"]);
    populate(&source, 2);
    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let writer = spawn_writer(&source, stop.clone());
    let mut opts = options(OnConflict::Fail, Verify::Full);
    opts.pause_source_writes_on_cutover = true;
    let run = start(spec(&source, &target, Mode::Live, opts), quick());
    run.wait_for("StreamingStarted", |e| {
        matches!(e, EventKind::StreamingStarted { .. })
    })
    .await;
    // Let the stream carry a while of writes, with lag reported.
    run.wait_for("a checkpoint with lag", |e| {
        matches!(e, EventKind::Checkpoint { commands_streamed, .. } if *commands_streamed > 500)
    })
    .await;
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    let written = writer.join().unwrap();
    assert!(written > 100, "the writer made progress: {written}");
    run.controls.cutover.cancel();
    let (result, events) = run.finish().await;
    result.unwrap_or_else(|e| panic!("{from} -> {to}: {e}"));
    assert_same(&source, &target, 4);
    source_writes_succeed_promptly(&source);
    let kinds = names(&events);
    let pos = |n: &str| {
        kinds
            .iter()
            .position(|k| *k == n)
            .unwrap_or_else(|| panic!("no {n} in {kinds:?}"))
    };
    assert!(pos("SnapshotStarted") < pos("SnapshotCompleted"));
    assert!(pos("SnapshotCompleted") < pos("StreamingStarted"));
    assert!(pos("StreamingStarted") < pos("VerificationCompleted"));
    assert!(pos("VerificationCompleted") < pos("CutoverCompleted"));
    assert_eq!(kinds.last(), Some(&"CutoverCompleted"));
    // Applied offsets only move forward, and the final one is the cutover's.
    let offsets: Vec<i64> = events
        .iter()
        .filter_map(|e| match e {
            EventKind::Checkpoint { applied_offset, .. } => Some(*applied_offset),
            _ => None,
        })
        .collect();
    assert!(offsets.windows(2).all(|w| w[0] <= w[1]), "{offsets:?}");
    let EventKind::CutoverCompleted { final_offset } = events.last().unwrap() else {
        unreachable!()
    };
    assert_eq!(Some(final_offset), offsets.last());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn live_mode_with_concurrent_writes_ends_with_an_identical_target_diskless() {
    live_with_concurrent_writes("7.2", "7.2", true).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn live_mode_with_concurrent_writes_from_a_disk_based_7_0_into_7_4() {
    live_with_concurrent_writes("7.0", "7.4", false).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn auto_cutover_starts_by_itself_once_lag_is_zero() {
    let source = RedisServer::start_with("7.4", &["--repl-diskless-sync-delay", "0"]);
    let target = RedisServer::start("7.4");
    populate(&source, 1);
    let mut opts = options(OnConflict::Fail, Verify::Sample);
    opts.auto_cutover = true;
    let run = start(spec(&source, &target, Mode::Live, opts), quick());
    let (result, events) = run.finish().await;
    result.unwrap();
    let kinds = names(&events);
    let tail: Vec<_> = kinds
        .iter()
        .copied()
        .filter(|k| *k != "Checkpoint")
        .collect();
    assert_eq!(
        &tail[tail.len() - 3..],
        [
            "CutoverStarted",
            "VerificationCompleted",
            "CutoverCompleted"
        ]
    );
    assert_same(&source, &target, 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn progress_moves_during_a_slow_snapshot_and_lag_rises_then_falls() {
    let source = RedisServer::start_with(
        "7.4",
        &[
            "--repl-diskless-sync-delay",
            "0",
            "--rdb-key-save-delay",
            "20000",
        ],
    );
    let target = RedisServer::start("7.4");
    populate(&source, 2);
    let tuning = ferry::engine::Tuning {
        report_interval: Duration::from_millis(100),
        ..quick()
    };
    let run = start(
        spec(
            &source,
            &target,
            Mode::Live,
            options(OnConflict::Fail, Verify::Sample),
        ),
        tuning,
    );
    run.wait_for("StreamingStarted", |e| {
        matches!(e, EventKind::StreamingStarted { .. })
    })
    .await;
    let progress: Vec<u64> = run
        .events()
        .iter()
        .filter_map(|e| match e {
            EventKind::SnapshotProgress { rdb_bytes_read, .. } => Some(*rdb_bytes_read),
            _ => None,
        })
        .collect();
    assert!(progress.len() >= 3, "{progress:?}");
    assert!(
        progress.windows(2).all(|w| w[0] <= w[1]) && progress[0] < *progress.last().unwrap(),
        "{progress:?}"
    );

    // Stall the target: the source moves on, and lag shows it.
    target.cli(&["CLIENT", "PAUSE", "1500", "WRITE"]);
    let mut c = source.conn();
    for i in 0..100 {
        let _: () = redis::cmd("SET")
            .arg(format!("lag:{i}"))
            .arg(i)
            .query(&mut c)
            .unwrap();
    }
    run.wait_for(
        "a checkpoint with lag",
        |e| matches!(e, EventKind::Checkpoint { lag_bytes: Some(l), .. } if *l > 0),
    )
    .await;
    let seen = run.events().len();
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let caught_up = run.events()[seen..].iter().any(|e| {
            matches!(
                e,
                EventKind::Checkpoint {
                    lag_bytes: Some(0),
                    ..
                }
            )
        });
        if caught_up {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "lag never returned to 0: {:?}",
            run.names()
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    run.controls.cutover.cancel();
    let (result, _) = run.finish().await;
    result.unwrap();
    assert_same(&source, &target, 2);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_restarted_job_continues_from_its_checkpoint_with_a_partial_resync() {
    let source = RedisServer::start_with("7.2", &["--repl-diskless-sync-delay", "0"]);
    let target = RedisServer::start("7.2");
    populate(&source, 1);
    let s = spec(
        &source,
        &target,
        Mode::Live,
        options(OnConflict::Fail, Verify::Full),
    );
    let run = start(s.clone(), quick());
    run.wait_for("StreamingStarted", |e| {
        matches!(e, EventKind::StreamingStarted { .. })
    })
    .await;
    let mut c = source.conn();
    let _: () = redis::cmd("SET")
        .arg("before-restart")
        .arg("1")
        .query(&mut c)
        .unwrap();
    run.wait_for("a checkpoint at zero lag", |e| matches!(e, EventKind::Checkpoint { lag_bytes: Some(0), commands_streamed, .. } if *commands_streamed >= 1)).await;
    let (replid, applied) = run
        .events()
        .iter()
        .rev()
        .find_map(|e| match e {
            EventKind::Checkpoint {
                replid,
                applied_offset,
                ..
            } => Some((replid.clone(), *applied_offset)),
            _ => None,
        })
        .unwrap();
    // The same job resumes: its offset key on the target is named after it. Stopped as a crash
    // would stop it (a cancel is final: it removes that key).
    let migration_id = run.migration_id;
    run.task.abort();
    let _ = run.task.await;

    let _: () = redis::cmd("SET")
        .arg("while-down")
        .arg("2")
        .query(&mut c)
        .unwrap();
    let (tx, mut rx) = tokio::sync::mpsc::channel(64);
    let controls = ferry::engine::Controls::default();
    let job = ferry::engine::EngineJob {
        resume: Some(ferry::model::ResumePoint {
            replid,
            applied_offset: applied,
        }),
        // What the log of a job that ran on the restore path says.
        transfer: Some(ferry::engine::PriorTransfer {
            kind: ferry::spec::TransferKind::Restore,
            relay_target: None,
        }),
        ..ferry::engine::EngineJob::new(migration_id, s)
    };
    let task = tokio::spawn(ferry::engine::run_with(job, tx, controls.clone(), quick()));
    let first = rx.recv().await.unwrap();
    assert!(
        matches!(
            first,
            EventKind::LinkResumed {
                kind: ferry::model::ResumeKind::Partial,
                ..
            }
        ),
        "{first:?}"
    );
    let deadline = Instant::now() + Duration::from_secs(30);
    while get(&target, 0, "while-down").is_none() {
        assert!(
            Instant::now() < deadline,
            "the write made while down never arrived"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    controls.cutover.cancel();
    let drain = tokio::spawn(async move { while rx.recv().await.is_some() {} });
    task.await.unwrap().unwrap();
    drain.await.unwrap();
    assert_same(&source, &target, 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_killed_replication_link_is_resumed_with_a_partial_resync_and_loses_nothing() {
    let source = RedisServer::start_with("7.4", &["--repl-diskless-sync-delay", "0"]);
    let target = RedisServer::start("7.4");
    populate(&source, 1);
    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
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
    let writer = spawn_writer(&source, stop.clone());
    tokio::time::sleep(Duration::from_millis(300)).await;
    source.cli(&["CLIENT", "KILL", "TYPE", "replica"]);
    run.wait_for("LinkResumed", |e| {
        matches!(e, EventKind::LinkResumed { .. })
    })
    .await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    writer.join().unwrap();
    run.controls.cutover.cancel();
    let (result, events) = run.finish().await;
    result.unwrap();
    let kinds = names(&events);
    let lost = kinds
        .iter()
        .position(|k| *k == "LinkLost")
        .expect("LinkLost");
    let resumed = kinds.iter().position(|k| *k == "LinkResumed").unwrap();
    assert!(lost < resumed);
    assert!(events.iter().any(|e| matches!(
        e,
        EventKind::LinkResumed {
            kind: ferry::model::ResumeKind::Partial,
            ..
        }
    )));
    assert_same(&source, &target, 1);
}
