//! `on_conflict` (fail, replace, skip, flush) and verification catching a difference.

use ferry::model::EventKind;
use ferry::spec::{Mode, OnConflict, Verify};

use crate::common::redis::RedisServer;
use crate::helpers::*;

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

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failed_verification_at_cutover_still_releases_the_source_pause() {
    let source = RedisServer::start_with("7.2", &["--repl-diskless-sync-delay", "0"]);
    let target = RedisServer::start("7.2");
    populate(&source, 1);
    // A key only the target has: full verification counts it as extra. (Live mode refuses
    // `skip`, which this test once used to make the target differ.)
    let _: () = redis::cmd("SET")
        .arg("only:target")
        .arg("theirs")
        .query(&mut target.conn())
        .unwrap();
    let mut opts = options(OnConflict::Replace, Verify::Full);
    opts.pause_source_writes_on_cutover = true;
    opts.auto_cutover = true;
    let run = start(spec(&source, &target, Mode::Live, opts), quick());
    let (result, events) = run.finish().await;
    assert_eq!(result.unwrap_err().code(), "verification_failed");
    assert!(names(&events).contains(&"CutoverStarted"));
    source_writes_succeed_promptly(&source);
}
