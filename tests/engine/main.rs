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

/// Writes every kind of command the stream must carry, until `stop` is set.
fn spawn_writer(
    source: &RedisServer,
    stop: std::sync::Arc<std::sync::atomic::AtomicBool>,
) -> std::thread::JoinHandle<u64> {
    let url = source.url();
    std::thread::spawn(move || {
        let mut c = redis::Client::open(url).unwrap().get_connection().unwrap();
        let mut n = 0u64;
        while !stop.load(std::sync::atomic::Ordering::Relaxed) {
            let i = n % 50;
            let _: () = redis::cmd("SET")
                .arg(format!("w:s:{i}"))
                .arg(n)
                .query(&mut c)
                .unwrap();
            let _: i64 = redis::cmd("INCR").arg("w:counter").query(&mut c).unwrap();
            let _: i64 = redis::cmd("LPUSH")
                .arg("w:list")
                .arg(n)
                .query(&mut c)
                .unwrap();
            let _: i64 = redis::cmd("HSET")
                .arg("w:hash")
                .arg(format!("f{i}"))
                .arg(n)
                .query(&mut c)
                .unwrap();
            let _: i64 = redis::cmd("EXPIRE")
                .arg(format!("w:s:{i}"))
                .arg(1000)
                .query(&mut c)
                .unwrap();
            if n % 3 == 0 {
                let _: i64 = redis::cmd("DEL")
                    .arg(format!("w:s:{}", (i + 7) % 50))
                    .query(&mut c)
                    .unwrap();
            }
            let _: () = redis::pipe()
                .atomic()
                .cmd("INCRBY")
                .arg("w:tx")
                .arg(2)
                .cmd("SADD")
                .arg("w:set")
                .arg(i)
                .query(&mut c)
                .unwrap();
            let _: i64 = redis::cmd("EVAL")
                .arg("redis.call('ZADD', KEYS[1], ARGV[1], ARGV[2]); return redis.call('ZCARD', KEYS[1])")
                .arg(1)
                .arg("w:zset")
                .arg(n as f64 / 3.0)
                .arg(format!("m{i}"))
                .query(&mut c)
                .unwrap();
            n += 1;
        }
        n
    })
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

async fn run_snapshot_with_conflict(
    on_conflict: OnConflict,
    verify: Verify,
    prepare: impl Fn(&mut redis::Connection),
) -> (
    RedisServer,
    RedisServer,
    Result<(), ferry::engine::EngineError>,
    Vec<EventKind>,
) {
    let source = RedisServer::start_with(
        "7.2",
        &["--databases", "4", "--repl-diskless-sync-delay", "0"],
    );
    let target = RedisServer::start_with("7.2", &["--databases", "4"]);
    populate(&source, 2);
    prepare(&mut target.conn());
    let run = start(
        spec(
            &source,
            &target,
            Mode::Snapshot,
            options(on_conflict, verify),
        ),
        quick(),
    );
    let (result, events) = run.finish().await;
    (source, target, result, events)
}

fn completed_counts(events: &[EventKind]) -> (u64, u64) {
    events
        .iter()
        .find_map(|e| match e {
            EventKind::SnapshotCompleted {
                keys_written,
                keys_skipped,
                ..
            } => Some((*keys_written, *keys_skipped)),
            _ => None,
        })
        .expect("SnapshotCompleted")
}

fn get(server: &RedisServer, db: u32, key: &str) -> Option<String> {
    let mut c = server.conn();
    let _: () = redis::cmd("SELECT").arg(db).query(&mut c).unwrap();
    redis::cmd("GET").arg(key).query(&mut c).unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn on_conflict_fail_stops_with_busy_key_naming_the_key() {
    let (_s, _t, result, _) = run_snapshot_with_conflict(OnConflict::Fail, Verify::Full, |c| {
        let _: () = redis::cmd("SET")
            .arg("str:raw")
            .arg("theirs")
            .query(c)
            .unwrap();
    })
    .await;
    let err = result.expect_err("an existing key stops the job");
    assert_eq!(err.code(), "busy_key");
    assert!(err.to_string().contains("str:raw"), "{err}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn on_conflict_replace_overwrites_the_targets_key() {
    let (source, target, result, _) =
        run_snapshot_with_conflict(OnConflict::Replace, Verify::Full, |c| {
            let _: () = redis::cmd("SET")
                .arg("str:raw")
                .arg("theirs")
                .query(c)
                .unwrap();
            let _: () = redis::cmd("SET")
                .arg("list:small")
                .arg("wrong type")
                .query(c)
                .unwrap();
        })
        .await;
    result.unwrap();
    assert_eq!(get(&target, 0, "str:raw").as_deref(), Some("hello world"));
    assert_same(&source, &target, 4);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn on_conflict_skip_keeps_the_targets_key_and_counts_it() {
    let (source, target, result, events) =
        run_snapshot_with_conflict(OnConflict::Skip, Verify::None, |c| {
            let _: () = redis::cmd("SET")
                .arg("str:raw")
                .arg("theirs")
                .query(c)
                .unwrap();
        })
        .await;
    result.unwrap();
    assert_eq!(get(&target, 0, "str:raw").as_deref(), Some("theirs"));
    assert_eq!(get(&target, 1, "str:raw").as_deref(), Some("hello world"));
    let (written, skipped) = completed_counts(&events);
    assert_eq!(skipped, 1);
    assert_eq!(written + skipped, dump_all(&source, 4).len() as u64);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn on_conflict_flush_empties_only_the_databases_the_snapshot_touches() {
    let (source, target, result, _) =
        run_snapshot_with_conflict(OnConflict::Flush, Verify::Full, |c| {
            let _: () = redis::cmd("SET").arg("stale").arg("x").query(c).unwrap();
            let _: () = redis::cmd("SELECT").arg(3).query(c).unwrap();
            let _: () = redis::cmd("SET")
                .arg("untouched")
                .arg("y")
                .query(c)
                .unwrap();
        })
        .await;
    result.unwrap();
    assert_eq!(get(&target, 0, "stale"), None);
    assert_eq!(get(&target, 3, "untouched").as_deref(), Some("y"));
    assert_same(&source, &target, 3);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn verification_reports_a_difference_and_fails_the_job() {
    // `skip` keeps the target's differing value, which full verification must catch.
    let (_s, _t, result, events) =
        run_snapshot_with_conflict(OnConflict::Skip, Verify::Full, |c| {
            let _: () = redis::cmd("SET")
                .arg("str:raw")
                .arg("theirs")
                .query(c)
                .unwrap();
        })
        .await;
    let err = result.expect_err("a difference fails the job");
    assert_eq!(err.code(), "verification_failed");
    let report = events
        .iter()
        .find_map(|e| match e {
            EventKind::VerificationCompleted { report } => Some(report.clone()),
            _ => None,
        })
        .expect("the report is emitted before the failure");
    assert_eq!(report.different, 1, "{report:?}");
    assert_eq!(report.problems[0].key, "str:raw");
}

async fn wait_until_cancelled(run: Running) -> Vec<EventKind> {
    let started = Instant::now();
    run.controls.cancel.cancel();
    let (result, events) = run.finish().await;
    assert!(
        matches!(result, Err(ferry::engine::EngineError::Cancelled)),
        "{result:?}"
    );
    assert!(
        started.elapsed() < Duration::from_secs(5),
        "cancel is prompt"
    );
    events
}

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
async fn snapshot_from_7_4_into_6_2_rewrites_what_6_2_cannot_restore() {
    let source = RedisServer::start_with(
        "7.4",
        &["--databases", "4", "--repl-diskless-sync-delay", "0"],
    );
    let target = RedisServer::start_with("6.2", &["--databases", "4"]);
    populate(&source, 2);
    // Functions do not exist on 6.2: drop the library so the rest can move.
    source.cli(&["FUNCTION", "FLUSH"]);
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
    result.unwrap();
    assert_same(&source, &target, 4);
    let rewritten = events.iter().find_map(|e| match e {
        EventKind::SnapshotCompleted { keys_rewritten, .. } => Some(*keys_rewritten),
        _ => None,
    });
    assert!(
        rewritten.unwrap() > 10,
        "listpack-encoded values went as commands: {rewritten:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_function_library_cannot_go_to_a_6_2_target_and_the_error_says_so() {
    let source = RedisServer::start_with("7.2", &["--repl-diskless-sync-delay", "0"]);
    let target = RedisServer::start("6.2");
    populate(&source, 1);
    let run = start(
        spec(
            &source,
            &target,
            Mode::Snapshot,
            options(OnConflict::Fail, Verify::Full),
        ),
        quick(),
    );
    let (result, _) = run.finish().await;
    let err = result.expect_err("functions need 7.0");
    assert_eq!(err.code(), "unsupported");
    assert!(err.to_string().contains("functions"), "{err}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn big_keys_over_the_threshold_go_as_chunked_commands_while_the_target_keeps_answering() {
    let source = RedisServer::start_with("7.2", &["--repl-diskless-sync-delay", "0"]);
    let target = RedisServer::start("7.2");
    let mut c = source.conn();
    // A ~6 MB list and hash of incompressible values, with a 256 KB threshold.
    let mut seed = 0x2545_f491_4f6c_dd1du64;
    let mut noise = move || {
        (0..12)
            .map(|_| {
                seed ^= seed << 13;
                seed ^= seed >> 7;
                seed ^= seed << 17;
                format!("{seed:016x}")
            })
            .collect::<String>()
    };
    for batch in 0..30 {
        let items: Vec<String> = (0..1000)
            .map(|i| format!("{batch}-{i}-{}", noise()))
            .collect();
        let _: () = redis::cmd("RPUSH")
            .arg("big:list")
            .arg(&items)
            .query(&mut c)
            .unwrap();
        let mut pairs = vec![];
        for i in 0..1000 {
            pairs.push(format!("f{batch}-{i}"));
            pairs.push(noise());
        }
        let _: () = redis::cmd("HSET")
            .arg("big:hash")
            .arg(&pairs)
            .query(&mut c)
            .unwrap();
    }
    let _: () = redis::cmd("SET")
        .arg("small")
        .arg("1")
        .query(&mut c)
        .unwrap();
    let tuning = ferry::engine::Tuning {
        big_key_bytes: 256 * 1024,
        rewrite_chunk_bytes: 64 * 1024,
        ..quick()
    };
    let run = start(
        spec(
            &source,
            &target,
            Mode::Snapshot,
            options(OnConflict::Fail, Verify::Full),
        ),
        tuning,
    );
    // Meanwhile the target answers PING quickly.
    let mut probe = target.conn();
    let mut worst = Duration::ZERO;
    while !run.task.is_finished() {
        let t = Instant::now();
        let _: String = redis::cmd("PING").query(&mut probe).unwrap();
        worst = worst.max(t.elapsed());
        tokio::time::sleep(Duration::from_millis(2)).await;
    }
    let (result, events) = run.finish().await;
    result.unwrap();
    assert!(worst < Duration::from_millis(200), "PING took {worst:?}");
    assert_same(&source, &target, 1);
    let rewritten = events.iter().find_map(|e| match e {
        EventKind::SnapshotCompleted {
            keys_rewritten,
            keys_written,
            ..
        } => Some((*keys_rewritten, *keys_written)),
        _ => None,
    });
    assert_eq!(rewritten, Some((2, 3)));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn authenticated_servers_work_and_a_wrong_password_fails_without_leaking_it() {
    let source = RedisServer::start_with("7.2", &["--repl-diskless-sync-delay", "0"]);
    let target = RedisServer::start("7.2");
    source.cli(&[
        "ACL",
        "SETUSER",
        "mover",
        "on",
        ">src-secret-1",
        "+@all",
        "~*",
    ]);
    target.cli(&["CONFIG", "SET", "requirepass", "tgt-secret-2"]);
    populate(&source, 1);
    let mut s = spec(
        &source,
        &target,
        Mode::Snapshot,
        options(OnConflict::Fail, Verify::Full),
    );
    s.source.url = ferry::redis_url::RedisUrl::parse(&format!(
        "redis://mover:src-secret-1@127.0.0.1:{}",
        source.port
    ))
    .unwrap();
    s.target.url = ferry::redis_url::RedisUrl::parse(&format!(
        "redis://:tgt-secret-2@127.0.0.1:{}",
        target.port
    ))
    .unwrap();
    let (result, _) = start(s.clone(), quick()).finish().await;
    result.unwrap();

    s.source.url = ferry::redis_url::RedisUrl::parse(&format!(
        "redis://mover:not-it-3@127.0.0.1:{}",
        source.port
    ))
    .unwrap();
    let (result, events) = start(s, quick()).finish().await;
    let err = result.expect_err("a wrong password fails");
    assert_eq!(err.code(), "auth_failed");
    let shown = format!("{err} {err:?} {events:?}");
    for secret in ["src-secret-1", "tgt-secret-2", "not-it-3"] {
        assert!(!shown.contains(secret), "{secret} leaked: {shown}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_unreachable_source_fails_with_source_unreachable() {
    let target = RedisServer::start("7.2");
    let mut s = spec(
        &target,
        &target,
        Mode::Snapshot,
        options(OnConflict::Fail, Verify::None),
    );
    s.source.url = ferry::redis_url::RedisUrl::parse(&format!(
        "redis://127.0.0.1:{}",
        common::redis::free_port()
    ))
    .unwrap();
    let (result, events) = start(s, quick()).finish().await;
    assert_eq!(result.unwrap_err().code(), "source_unreachable");
    assert!(events.is_empty(), "{events:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_user_without_psync_gets_replication_refused() {
    let source = RedisServer::start("7.2");
    let target = RedisServer::start("7.2");
    source.cli(&[
        "ACL", "SETUSER", "reader", "on", ">pw", "+@all", "-psync", "-sync", "~*",
    ]);
    let mut s = spec(
        &source,
        &target,
        Mode::Snapshot,
        options(OnConflict::Fail, Verify::None),
    );
    s.source.url =
        ferry::redis_url::RedisUrl::parse(&format!("redis://reader:pw@127.0.0.1:{}", source.port))
            .unwrap();
    let (result, _) = start(s, quick()).finish().await;
    let err = result.unwrap_err();
    assert_eq!(err.code(), "replication_refused", "{err}");
    assert!(err.to_string().contains("PSYNC"), "{err}");
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
    wait_until_cancelled(run).await;

    let _: () = redis::cmd("SET")
        .arg("while-down")
        .arg("2")
        .query(&mut c)
        .unwrap();
    let (tx, mut rx) = tokio::sync::mpsc::channel(64);
    let controls = ferry::engine::Controls::default();
    let job = ferry::engine::EngineJob {
        migration_id: uuid::Uuid::now_v7(),
        spec: s,
        resume: Some(ferry::engine::ResumePoint {
            replid,
            applied_offset: applied,
        }),
    };
    let task = tokio::spawn(ferry::engine::run_with(job, tx, controls.clone(), quick()));
    let first = rx.recv().await.unwrap();
    assert!(
        matches!(
            first,
            EventKind::LinkResumed {
                kind: ferry::store::event::ResumeKind::Partial,
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
            kind: ferry::store::event::ResumeKind::Partial,
            ..
        }
    )));
    assert_same(&source, &target, 1);
}

fn field_expiries(server: &RedisServer) -> Vec<i64> {
    redis::cmd("HPEXPIRETIME")
        .arg("hash:fttl")
        .arg("FIELDS")
        .arg(3)
        .arg(&["a", "b", "c"])
        .query(&mut server.conn())
        .unwrap()
}

fn hash_with_field_ttls(source: &RedisServer) {
    let mut c = source.conn();
    let _: () = redis::cmd("HSET")
        .arg("hash:fttl")
        .arg(&["a", "1", "b", "2", "c", "3"])
        .query(&mut c)
        .unwrap();
    let _: Vec<i64> = redis::cmd("HPEXPIRE")
        .arg("hash:fttl")
        .arg(600_000)
        .arg("FIELDS")
        .arg(2)
        .arg(&["a", "b"])
        .query(&mut c)
        .unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hash_field_ttls_move_from_7_4_to_7_4_and_are_verified() {
    let source = RedisServer::start_with("7.4", &["--repl-diskless-sync-delay", "0"]);
    let target = RedisServer::start("7.4");
    populate(&source, 1);
    hash_with_field_ttls(&source);
    let run = start(
        spec(
            &source,
            &target,
            Mode::Snapshot,
            options(OnConflict::Fail, Verify::Full),
        ),
        quick(),
    );
    let (result, _) = run.finish().await;
    result.unwrap();
    let expiries = field_expiries(&target);
    assert_eq!(expiries, field_expiries(&source));
    assert!(expiries[0] > 0 && expiries[2] == -1, "{expiries:?}");
    assert_same(&source, &target, 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hash_field_ttls_cannot_go_to_7_2_and_the_error_names_the_key() {
    let source = RedisServer::start_with("7.4", &["--repl-diskless-sync-delay", "0"]);
    let target = RedisServer::start("7.2");
    hash_with_field_ttls(&source);
    let run = start(
        spec(
            &source,
            &target,
            Mode::Snapshot,
            options(OnConflict::Fail, Verify::Full),
        ),
        quick(),
    );
    let (result, _) = run.finish().await;
    let err = result.expect_err("7.2 has no field TTLs");
    assert_eq!(err.code(), "unsupported");
    assert!(err.to_string().contains("hash:fttl"), "{err}");
}
