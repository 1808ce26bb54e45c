//! Dry run (`mode: dry_run`): the report over a dataset of known contents, and the target left
//! exactly as it was (the write probe's own changes aside, counted exactly).

use ferry::model::dry_run::DryRunReport;
use ferry::model::EventKind;
use ferry::spec::{Mode, OnConflict, Options, Verify};

use crate::common::dry_run::{self as data, target_state};
use crate::helpers::*;

fn dry_run_options(write_probe: bool) -> Options {
    Options {
        write_probe,
        ..options(OnConflict::Fail, Verify::Full)
    }
}

async fn dry_run(write_probe: bool) -> (DryRunReport, data::TargetState, data::TargetState) {
    let source = data::source();
    let target = data::target();
    data::populate(&source);
    let before = target_state(&target);
    let run = start(
        spec(&source, &target, Mode::DryRun, dry_run_options(write_probe)),
        quick(),
    );
    let (result, events) = run.finish().await;
    result.unwrap_or_else(|e| panic!("dry run: {e} ({})", e.code()));
    let kinds: Vec<&str> = names(&events)
        .into_iter()
        .filter(|n| *n != "SnapshotProgress")
        .collect();
    assert_eq!(
        kinds,
        ["SnapshotRequested", "SnapshotStarted", "DryRunCompleted"]
    );
    let Some(EventKind::DryRunCompleted { report }) = events.last() else {
        unreachable!()
    };
    let after = target_state(&target);
    (*report.clone(), before, after)
}

#[tokio::test(flavor = "multi_thread")]
async fn dry_run_reports_what_the_migration_would_meet_and_writes_nothing_but_the_probe() {
    let (report, before, after) = dry_run(true).await;
    data::assert_report(&report);
    let probe = &report.probe;
    assert!(probe.ran);
    assert_eq!(probe.keys_written, 2000, "{probe:?}");
    assert_eq!(probe.keys_removed, 2000, "{probe:?}");
    assert_eq!(probe.error, None);
    assert!(probe.prefix.starts_with("ferry:probe:"));
    assert!(report.eta.write_keys_per_sec.is_some_and(|r| r > 0));
    assert!(report.note.contains("wrote 2000 keys"), "{}", report.note);
    // Every key and value, the keyspace, no `ferry:` key left behind.
    assert_eq!(after.contents, before.contents);
    assert_eq!(after.keyspace, before.keyspace);
    assert_eq!(after.ferry_keys, Vec::<String>::new());
    assert_eq!(after.expired_evicted, before.expired_evicted);
    // The only changes are the probe's: one per RESTORE, one per key its DEL removed.
    assert_eq!(
        after.changes - before.changes,
        probe.keys_written + probe.keys_removed
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn without_the_probe_not_one_change_reaches_the_target() {
    let (report, before, after) = dry_run(false).await;
    data::assert_report(&report);
    assert!(!report.probe.ran);
    assert_eq!(report.probe.keys_written, 0);
    assert_eq!(report.eta.write_keys_per_sec, None);
    assert_eq!(after, before);
}

/// Another writer's lease on the target keeps the probe out (its keys would mix with that
/// writer's): the dry run says so and changes nothing.
#[tokio::test(flavor = "multi_thread")]
async fn another_writers_lease_keeps_the_probe_out() {
    let source = data::source();
    let target = data::target();
    data::populate(&source);
    let _: () = redis::cmd("SET")
        .arg("ferry:lease")
        .arg("restore 0192f3a4-5b6c-7d8e-9f00-112233445566 by api on other-ferry")
        .arg("PX")
        .arg(120_000)
        .query(&mut target.conn())
        .unwrap();
    let before = target_state(&target);
    let run = start(
        spec(&source, &target, Mode::DryRun, dry_run_options(true)),
        quick(),
    );
    let (result, events) = run.finish().await;
    result.unwrap_or_else(|e| panic!("{e}"));
    let Some(EventKind::DryRunCompleted { report }) = events.last() else {
        panic!("{:?}", names(&events))
    };
    assert!(!report.probe.ran);
    let why = report.probe.error.as_deref().unwrap_or_default();
    assert!(why.contains("lease"), "{why}");
    assert!(report.note.contains("another writer"), "{}", report.note);
    let after = target_state(&target);
    assert_eq!(after.contents, before.contents);
    assert_eq!(after.changes, before.changes);
    assert_eq!(after.ferry_keys, ["0/ferry:lease"]);
}
