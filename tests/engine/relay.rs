//! The relay transfer against real servers: the target replicates through Ferry.
//!
//! What each test proves, by reading the servers themselves: the data is the source's (every
//! type, every db, TTLs), the target is a standalone master again afterwards with the settings it
//! had (`masterauth`, `replica-read-only`, `repl-diskless-load`), and on cancel it is released
//! too, never left replicating from an address that no longer answers.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use ferry::engine::{EngineError, Tuning};
use ferry::model::EventKind;
use ferry::relay::{RelayHub, RelaySettings};
use ferry::spec::{Mode, OnConflict, Options, Transfer, TransferKind, Verify};

use crate::common::redis::RedisServer;
use crate::helpers::*;

fn relay_options(transfer: Transfer, verify: Verify) -> Options {
    Options {
        transfer,
        ..options(OnConflict::Fail, verify)
    }
}

fn config(server: &RedisServer, name: &str) -> String {
    let mut c = server.conn();
    let pair: Vec<String> = redis::cmd("CONFIG")
        .arg("GET")
        .arg(name)
        .query(&mut c)
        .unwrap();
    pair.get(1).cloned().unwrap_or_default()
}

fn role(server: &RedisServer) -> String {
    let mut c = server.conn();
    let info: String = redis::cmd("INFO").arg("replication").query(&mut c).unwrap();
    info.lines()
        .find_map(|l| l.strip_prefix("role:"))
        .unwrap_or_default()
        .trim()
        .to_string()
}

/// The target is a master with the settings it started with.
fn assert_released(target: &RedisServer, diskless_load: &str) {
    assert_eq!(role(target), "master", "the target is standalone again");
    assert_eq!(
        config(target, "masterauth"),
        "",
        "the one-time secret is cleared"
    );
    assert_eq!(config(target, "repl-diskless-load"), diskless_load);
    assert_eq!(config(target, "replica-read-only"), "yes");
}

fn chosen(events: &[EventKind]) -> Vec<TransferKind> {
    events
        .iter()
        .filter_map(|e| match e {
            EventKind::TransferChosen { transfer, .. } => Some(*transfer),
            _ => None,
        })
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_relay_snapshot_copies_every_type_and_releases_the_target() {
    let source = RedisServer::start_with(
        "7.2",
        &["--repl-diskless-sync-delay", "0", "--databases", "4"],
    );
    let target = RedisServer::start_with("7.2", &["--databases", "4"]);
    let keys = populate(&source, 3);
    let run = start(
        spec(
            &source,
            &target,
            Mode::Snapshot,
            relay_options(Transfer::Auto, Verify::Full),
        ),
        quick(),
    );
    let (result, events) = run.finish().await;
    result.unwrap_or_else(|e| panic!("relay snapshot failed: {e}; events {:?}", names(&events)));
    assert_eq!(chosen(&events), [TransferKind::Relay], "auto picks relay");
    assert_same(&source, &target, 3);
    assert_released(&target, "disabled");
    let (written, _) = completed_counts(&events);
    assert_eq!(
        written, keys,
        "progress counts the keys seen in the relayed RDB"
    );
    let n = names(&events);
    for kind in [
        "SnapshotStarted",
        "SnapshotCompleted",
        "TargetReleased",
        "VerificationCompleted",
    ] {
        assert!(n.contains(&kind), "{kind} in {n:?}");
    }
    assert!(
        !n.contains(&"StreamingStarted"),
        "snapshot mode stops at the snapshot"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_live_relay_follows_every_kind_of_write_and_cuts_over_with_the_source_paused() {
    let source = RedisServer::start_with("7.2", &["--repl-diskless-sync-delay", "0"]);
    let target = RedisServer::start("7.2");
    populate(&source, 1);
    let mut opts = relay_options(Transfer::Relay, Verify::Full);
    opts.pause_source_writes_on_cutover = true;
    let run = start(spec(&source, &target, Mode::Live, opts), quick());
    run.wait_for("StreamingStarted", |e| {
        matches!(e, EventKind::StreamingStarted { .. })
    })
    .await;
    let stop = Arc::new(AtomicBool::new(false));
    let writer = spawn_writer(&source, stop.clone());
    run.wait_for(
        "a checkpoint after writes",
        |e| matches!(e, EventKind::Checkpoint { bytes_streamed: Some(b), .. } if *b > 20_000),
    )
    .await;
    stop.store(true, Ordering::Relaxed);
    let written = writer.join().unwrap();
    assert!(written > 0);
    run.controls.cutover.cancel();
    let (result, events) = run.finish().await;
    result.unwrap_or_else(|e| panic!("live relay failed: {e}; events {:?}", names(&events)));
    assert_released(&target, "disabled");
    assert_same(&source, &target, 1);
    let report = events
        .iter()
        .find_map(|e| match e {
            EventKind::VerificationCompleted { report } => Some(report.clone()),
            _ => None,
        })
        .expect("VerificationCompleted");
    assert!(report.is_clean() && report.checked > 0, "{report:?}");
    assert!(names(&events).contains(&"CutoverCompleted"));
    source_writes_succeed_promptly(&source);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cancel_during_a_relay_snapshot_releases_the_target_and_the_source() {
    let source = RedisServer::start_with(
        "7.2",
        &[
            "--repl-diskless-sync-delay",
            "0",
            "--rdb-key-save-delay",
            "20000",
        ],
    );
    let target = RedisServer::start("7.2");
    populate(&source, 1);
    let run = start(
        spec(
            &source,
            &target,
            Mode::Live,
            relay_options(Transfer::Relay, Verify::Full),
        ),
        quick(),
    );
    run.wait_for("SnapshotStarted", |e| {
        matches!(e, EventKind::SnapshotStarted { .. })
    })
    .await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(role(&target), "slave", "mid-relay the target replicates");
    let events = wait_until_cancelled(run).await;
    assert!(
        names(&events).contains(&"TargetReleased"),
        "{:?}",
        names(&events)
    );
    assert_released(&target, "disabled");
    source_writes_succeed_promptly(&source);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn auto_falls_back_to_restore_when_the_target_cannot_reach_the_relay() {
    let source = RedisServer::start_with("7.2", &["--repl-diskless-sync-delay", "0"]);
    let target = RedisServer::start("7.2");
    populate(&source, 1);
    // Advertised at a port nothing listens on: the target's connection never arrives.
    let tuning = Tuning {
        relay: RelayHub::new(RelaySettings {
            bind: "127.0.0.1:0".into(),
            advertise: Some("127.0.0.1:1".into()),
        }),
        relay_connect_timeout: Duration::from_secs(3),
        ..quick()
    };
    let run = start(
        spec(
            &source,
            &target,
            Mode::Snapshot,
            relay_options(Transfer::Auto, Verify::Full),
        ),
        tuning,
    );
    let (result, events) = run.finish().await;
    result.unwrap_or_else(|e| panic!("fallback failed: {e}; events {:?}", names(&events)));
    assert_eq!(
        chosen(&events),
        [TransferKind::Relay, TransferKind::Restore],
        "relay first, then restore"
    );
    let reason = events
        .iter()
        .rev()
        .find_map(|e| match e {
            EventKind::TransferChosen { reason, .. } => Some(reason.clone()),
            _ => None,
        })
        .unwrap();
    assert!(reason.contains("did not connect"), "{reason}");
    assert_same(&source, &target, 1);
    assert_released(&target, "disabled");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_explicit_relay_into_a_target_with_keys_is_refused_before_anything_changes() {
    let source = RedisServer::start("7.2");
    let target = RedisServer::start("7.2");
    populate(&source, 1);
    let _: () = redis::cmd("SET")
        .arg("mine")
        .arg("1")
        .query(&mut target.conn())
        .unwrap();
    let run = start(
        spec(
            &source,
            &target,
            Mode::Snapshot,
            relay_options(Transfer::Relay, Verify::None),
        ),
        quick(),
    );
    let (result, _) = run.finish().await;
    match result {
        Err(EngineError::Unsupported(message)) => {
            assert!(message.contains("on_conflict"), "{message}")
        }
        other => panic!("expected a refusal, got {other:?}"),
    }
    assert_eq!(role(&target), "master");
    assert_eq!(get(&target, 0, "mine").as_deref(), Some("1"));
}
