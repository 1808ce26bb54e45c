//! The transfer engine against real servers: `engine::run_with` is called directly with an event
//! channel, and the target's data is compared with the source's by the test's own reader.

#[path = "../common/mod.rs"]
mod common;
#[allow(dead_code)]
mod helpers;

use std::time::{Duration, Instant};

use common::redis::RedisServer;
use ferry::spec::{Mode, OnConflict, Verify};
use ferry::store::EventKind;
use helpers::*;

fn source_writes_succeed_promptly(source: &RedisServer) {
    let mut c = source.conn();
    c.set_read_timeout(Some(Duration::from_secs(2))).unwrap();
    let started = Instant::now();
    let _: () = redis::cmd("SET")
        .arg("probe")
        .arg("1")
        .query(&mut c)
        .expect("a write on the source succeeds: it is not paused");
    assert!(started.elapsed() < Duration::from_secs(1));
    let _: () = redis::cmd("DEL").arg("probe").query(&mut c).unwrap();
}

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

async fn snapshot_copies_everything(from: &str, to: &str, diskless: bool) {
    let source = RedisServer::start_with(
        from,
        &[
            "--databases",
            "4",
            "--repl-diskless-sync",
            if diskless { "yes" } else { "no" },
            "--repl-diskless-sync-delay",
            "0",
        ],
    );
    let target = RedisServer::start_with(to, &["--databases", "4"]);
    let keys = populate(&source, 3);
    let run = start(
        spec(
            &source,
            &target,
            Mode::Snapshot,
            options(OnConflict::Fail, Verify::Full),
        ),
        quick(),
    );
    let (result, events) = run.finish().await;
    result.unwrap_or_else(|e| panic!("{from} -> {to}: {e} ({})", e.code()));
    assert_same(&source, &target, 4);
    assert_eq!(
        names(&events)
            .into_iter()
            .filter(|n| *n != "SnapshotProgress")
            .collect::<Vec<_>>(),
        [
            "SnapshotStarted",
            "SnapshotCompleted",
            "VerificationCompleted"
        ]
    );
    let EventKind::SnapshotStarted {
        diskless: was_diskless,
        rdb_bytes_total,
        ..
    } = &events[0]
    else {
        unreachable!()
    };
    assert_eq!(*was_diskless, diskless);
    assert_eq!(rdb_bytes_total.is_some(), !diskless);
    let completed = events.iter().find_map(|e| match e {
        EventKind::SnapshotCompleted {
            keys_written,
            keys_rewritten,
            keys_expired,
            rdb_bytes,
            ..
        } => Some((*keys_written, *keys_rewritten, *keys_expired, *rdb_bytes)),
        _ => None,
    });
    let (written, _rewritten, expired, rdb_bytes) = completed.unwrap();
    assert_eq!(written, keys, "every key was written");
    assert_eq!(expired, 0);
    assert!(rdb_bytes > 1_200_000, "{rdb_bytes}");
    let report = events.iter().find_map(|e| match e {
        EventKind::VerificationCompleted { report } => Some(report.clone()),
        _ => None,
    });
    let report = report.unwrap();
    assert!(report.is_clean(), "{report:?}");
    assert_eq!(report.checked, keys);
    if from != "6.2" && to != "6.2" {
        assert_eq!(function_names(&target), ["ferrylib"]);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn snapshot_of_every_type_in_several_dbs_with_ttls_same_version_diskless() {
    snapshot_copies_everything("7.2", "7.2", true).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn snapshot_from_a_disk_based_6_2_source_into_7_4() {
    snapshot_copies_everything("6.2", "7.4", false).await;
}
