//! Cluster → cluster: each source shard's run writes through the target's slot-routed writer,
//! its offset keys scoped to the shard. A snapshot from a 6.2 cluster (found with CLUSTER SLOTS)
//! into a 7.4 cluster, and a live migration under a write load with a cutover that pauses every
//! source master. Each ends with the target cluster holding exactly the source cluster's keys,
//! each on the master of its slot, exact counters and no bookkeeping key left.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use ferry::model::EventKind;
use ferry::spec::{Mode, OnConflict, Verify};

use crate::common::cluster::RedisCluster;
use crate::common::cluster_load::{populate_cluster, spawn_counters, Routed};
use crate::helpers::*;

/// Every master's keys, merged, with where each lives.
fn masters_dump(cluster: &RedisCluster) -> (Snapshot, Vec<(String, u16)>) {
    let mut all = Snapshot::new();
    let mut placed = Vec::new();
    for port in cluster.master_ports() {
        for (key, value) in dump_all(cluster.node(port), 1) {
            if key.1.starts_with(b"ferry:") {
                placed.push((String::from_utf8_lossy(&key.1).into_owned(), 0));
                continue;
            }
            placed.push((String::from_utf8_lossy(&key.1).into_owned(), port));
            assert!(all.insert(key, value).is_none(), "a key on one master only");
        }
    }
    (all, placed)
}

/// The target cluster holds exactly the source cluster's keys (types, values; TTLs within 2 s),
/// each on the master of its slot, and no `ferry:*` key.
fn assert_clusters_same(source: &RedisCluster, target: &RedisCluster) {
    let (expected, _) = masters_dump(source);
    let (actual, placed) = masters_dump(target);
    let bookkeeping: Vec<&String> = placed
        .iter()
        .filter(|(_, p)| *p == 0)
        .map(|(k, _)| k)
        .collect();
    assert!(bookkeeping.is_empty(), "left behind: {bookkeeping:?}");
    let names = |s: &Snapshot| s.keys().cloned().collect::<Vec<_>>();
    assert_eq!(names(&expected).len(), names(&actual).len(), "as many keys");
    assert_eq!(names(&expected), names(&actual), "the same keys");
    for (key, (kind, value, ttl)) in &expected {
        let (t_kind, t_value, t_ttl) = &actual[key];
        assert_eq!((kind, value), (t_kind, t_value), "{key:?}");
        assert!(
            (*ttl < 0) == (*t_ttl < 0) && (ttl - t_ttl).abs() <= 2000,
            "{key:?}: ttl {ttl} vs {t_ttl}"
        );
    }
    for (name, port) in placed.iter().filter(|(n, _)| n.is_ascii()).take(500) {
        assert_eq!(
            target.master_of(name),
            *port,
            "`{name}` is on its slot's master"
        );
    }
}

fn the_verification(events: &[EventKind]) -> ferry::model::VerificationReport {
    events
        .iter()
        .find_map(|e| match e {
            EventKind::VerificationCompleted { report } => Some(report.clone()),
            _ => None,
        })
        .expect("a migration-wide VerificationCompleted")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_6_2_cluster_is_copied_into_a_7_4_cluster_key_by_slot() {
    let source = RedisCluster::start("6.2", 3, 0);
    let target = RedisCluster::start("7.4", 3, 0);
    let keys = populate_cluster(&source, 1500);
    let run = start(
        spec(
            &source.url(),
            &target.url(),
            Mode::Snapshot,
            options(OnConflict::Fail, Verify::Full),
        ),
        quick(),
    );
    let (result, events) = run.finish().await;
    result.unwrap_or_else(|e| panic!("{e}; events {:?}", names(&events)));
    let report = the_verification(&events);
    assert_eq!(
        (
            report.checked,
            report.missing,
            report.different,
            report.extra
        ),
        (keys, 0, 0, 0),
        "{report:?}"
    );
    assert_clusters_same(&source, &target);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn live_cluster_to_cluster_under_writes_cuts_over_with_every_counter_exact() {
    let source = RedisCluster::start("7.4", 3, 0);
    let target = RedisCluster::start("7.4", 3, 0);
    populate_cluster(&source, 600);
    let stop = Arc::new(AtomicBool::new(false));
    let writer = spawn_counters(&source, stop.clone());
    let mut s = spec(
        &source.url(),
        &target.url(),
        Mode::Live,
        options(OnConflict::Fail, Verify::Full),
    );
    s.options.pause_source_writes_on_cutover = true;
    let run = start(s, quick());
    run.wait_for("StreamingStarted", |e| {
        matches!(e, EventKind::StreamingStarted { .. })
    })
    .await;
    tokio::time::sleep(Duration::from_millis(1500)).await;
    stop.store(true, Ordering::Relaxed);
    let counts = writer.join().unwrap();
    assert!(
        counts.iter().sum::<i64>() > 100,
        "the writer wrote: {counts:?}"
    );
    run.controls.cutover.cancel();
    let (result, events) = run.finish().await;
    result.unwrap_or_else(|e| panic!("{e}; events: {:?}", names(&events)));
    let mut routed = Routed::new(&target);
    for (c, n) in counts.iter().enumerate() {
        let key = format!("c:{c}");
        let got: Option<i64> = routed.run(&key, redis::cmd("GET").arg(&key));
        assert_eq!(got.unwrap_or(0), *n, "counter {key}");
    }
    let report = the_verification(&events);
    assert_eq!(
        (report.missing, report.different, report.extra),
        (0, 0, 0),
        "{report:?}"
    );
    assert!(
        names(&events).ends_with(&["VerificationCompleted", "CutoverCompleted"]),
        "{:?}",
        names(&events)
    );
    assert_clusters_same(&source, &target);
}
