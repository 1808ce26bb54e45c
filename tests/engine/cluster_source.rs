//! A Redis Cluster SOURCE migrated into a standalone target: one replication link per shard, the
//! migration on top (events per shard, one cutover over every master, failovers followed,
//! reshardings refused). Every test compares the target with the cluster's masters by its own
//! reader, besides the engine's verification.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use ferry::cluster::key_slot;
use ferry::engine::EngineError;
use ferry::model::{EventKind, ShardRef};
use ferry::spec::{Mode, OnConflict, Prefer, Source, SourceRead, Transfer, Verify};

use crate::common::cluster::RedisCluster;
use crate::common::cluster_load::{assert_counters, populate_cluster, slot_owners, spawn_counters};
use crate::common::redis::RedisServer;
use crate::helpers::*;

/// Every master's keys, merged: the source as a whole.
fn dump_masters(cluster: &RedisCluster) -> Snapshot {
    let mut all = Snapshot::new();
    for port in cluster.master_ports() {
        all.extend(dump_all(cluster.node(port), 1));
    }
    all
}

/// The target holds exactly the cluster's keys (types, values; TTLs within 2 s).
fn assert_same_as_cluster(cluster: &RedisCluster, target: &RedisServer) {
    let source = dump_masters(cluster);
    let target = dump_all(target, 1);
    let names = |s: &Snapshot| s.keys().cloned().collect::<Vec<_>>();
    assert_eq!(names(&source), names(&target), "the same keys");
    for (key, (kind, value, ttl)) in &source {
        let (t_kind, t_value, t_ttl) = &target[key];
        assert_eq!((kind, value), (t_kind, t_value), "{key:?}");
        assert!(
            (*ttl < 0) == (*t_ttl < 0) && (ttl - t_ttl).abs() < 2000,
            "{key:?}: ttl {ttl} vs {t_ttl}"
        );
    }
}

fn cluster_spec(
    cluster: &RedisCluster,
    target: &RedisServer,
    mode: Mode,
    prefer: Prefer,
) -> ferry::spec::MigrationSpec {
    let mut s = spec(
        &cluster.url(),
        target,
        mode,
        options(OnConflict::Fail, Verify::Full),
    );
    if let Source::Server(endpoint, read, _) = s.source {
        s.source = Source::Server(endpoint, read, prefer);
    }
    s
}

fn shard_refs(events: &[EventKind]) -> BTreeMap<String, ShardRef> {
    events
        .iter()
        .filter_map(|e| match e {
            EventKind::ShardEvent { shard, .. } => Some((shard.name.clone(), shard.clone())),
            _ => None,
        })
        .collect()
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
async fn a_cluster_is_copied_shard_by_shard_into_a_standalone_target() {
    let cluster = RedisCluster::start("7.4", 3, 0);
    let target = RedisServer::start("7.4");
    let keys = populate_cluster(&cluster, 3000);
    let run = start(
        cluster_spec(&cluster, &target, Mode::Snapshot, Prefer::Master),
        quick(),
    );
    let (result, events) = run.finish().await;
    result.unwrap_or_else(|e| panic!("{e}; events: {:?}", names(&events)));
    // Three shards, named by their first slot, each read from its master.
    let shards = shard_refs(&events);
    let masters = cluster.master_ports();
    assert_eq!(
        shards.keys().cloned().collect::<Vec<_>>(),
        ["s0", "s10923", "s5461"]
    );
    for shard in shards.values() {
        let port: u16 = shard.addr.rsplit(':').next().unwrap().parse().unwrap();
        assert!(masters.contains(&port), "{shard:?}");
        assert_eq!(shard.node_id.len(), 40, "{shard:?}");
    }
    // The migration-wide facts, once each, summed over the shards.
    let count = |name: &str| names(&events).iter().filter(|n| **n == name).count();
    assert_eq!(
        (
            count("SnapshotStarted"),
            count("SnapshotCompleted"),
            count("VerificationCompleted")
        ),
        (1, 1, 1),
        "{:?}",
        names(&events)
    );
    assert_eq!(completed_counts(&events), (keys, 0));
    let report = the_verification(&events);
    assert_eq!(
        (
            report.checked,
            report.missing,
            report.different,
            report.extra
        ),
        (keys, 0, 0, 0)
    );
    assert_same_as_cluster(&cluster, &target);
    // No offset key left behind.
    let left: Vec<String> = redis::cmd("KEYS")
        .arg("ferry:*")
        .query(&mut target.conn())
        .unwrap();
    assert!(left.is_empty(), "{left:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_cluster_source_refuses_what_it_cannot_do() {
    let cluster = RedisCluster::start("7.4", 3, 0);
    let target = RedisServer::start("7.4");
    let base = cluster_spec(&cluster, &target, Mode::Snapshot, Prefer::Master);
    let cases: Vec<(ferry::spec::MigrationSpec, &str)> = vec![
        (
            ferry::spec::MigrationSpec {
                mode: Mode::DryRun,
                ..base.clone()
            },
            "dry run",
        ),
        (
            {
                let mut s = base.clone();
                if let Source::Server(e, _, p) = s.source {
                    s.source = Source::Server(e, SourceRead::Scan, p);
                }
                s
            },
            "source.read: scan",
        ),
        (
            {
                let mut s = base.clone();
                s.options.on_conflict = OnConflict::Flush;
                s
            },
            "on_conflict: flush",
        ),
        (
            {
                let mut s = base.clone();
                s.options.transfer = Transfer::Relay;
                s
            },
            "transfer: relay",
        ),
        (
            {
                let mut s = base.clone();
                s.mode = Mode::Live;
                s.schedule.cutover_window = Some(ferry::spec::CutoverWindow {
                    from: chrono::Utc::now(),
                    to: chrono::Utc::now() + chrono::Duration::hours(1),
                });
                s
            },
            "schedule.cutover_window",
        ),
    ];
    for (spec, words) in cases {
        let (result, events) = start(spec, quick()).finish().await;
        let err = result.expect_err(words);
        assert_eq!(err.code(), "unsupported", "{err}");
        assert!(err.to_string().contains(words), "{words}: {err}");
        assert!(events.is_empty(), "{words}: nothing happened: {events:?}");
    }
    let size: i64 = redis::cmd("DBSIZE").query(&mut target.conn()).unwrap();
    assert_eq!(size, 0);
}

/// Live: streams until every shard streams, writes on, cuts over (pausing every master), and
/// checks every counter.
async fn live_run(
    cluster: &RedisCluster,
    target: &RedisServer,
    prefer: Prefer,
    during: impl FnOnce(&RedisCluster),
) -> (Vec<EventKind>, Vec<i64>) {
    populate_cluster(cluster, 600);
    let stop = Arc::new(AtomicBool::new(false));
    let writer = spawn_counters(cluster, stop.clone());
    let mut s = cluster_spec(cluster, target, Mode::Live, prefer);
    s.options.pause_source_writes_on_cutover = true;
    let run = start(s, quick());
    run.wait_for("StreamingStarted", |e| {
        matches!(e, EventKind::StreamingStarted { .. })
    })
    .await;
    tokio::time::sleep(Duration::from_millis(500)).await;
    during(cluster);
    tokio::time::sleep(Duration::from_millis(800)).await;
    stop.store(true, Ordering::Relaxed);
    let counts = writer.join().unwrap();
    run.controls.cutover.cancel();
    let (result, events) = run.finish().await;
    result.unwrap_or_else(|e| panic!("{e}; events: {:?}", names(&events)));
    assert!(
        counts.iter().sum::<i64>() > 100,
        "the writer wrote: {counts:?}"
    );
    assert_counters(target, &counts);
    assert_same_as_cluster(cluster, target);
    let report = the_verification(&events);
    assert_eq!((report.missing, report.different, report.extra), (0, 0, 0));
    assert!(
        names(&events).ends_with(&["VerificationCompleted", "CutoverCompleted"]),
        "{:?}",
        names(&events)
    );
    // Every master takes writes again.
    let owners = slot_owners(cluster);
    for port in cluster.master_ports() {
        let key = (0..)
            .map(|i| format!("probe:{i}"))
            .find(|k| owners[key_slot(k.as_bytes()) as usize] == port)
            .unwrap();
        let mut c = cluster.node(port).conn();
        c.set_read_timeout(Some(Duration::from_secs(2))).unwrap();
        let started = Instant::now();
        let _: () = redis::cmd("SET")
            .arg(&key)
            .arg(1)
            .query(&mut c)
            .unwrap_or_else(|e| panic!("master {port} takes writes: {e}"));
        assert!(
            started.elapsed() < Duration::from_secs(1),
            "master {port} is not paused"
        );
        let _: () = redis::cmd("DEL").arg(&key).query(&mut c).unwrap();
    }
    (events, counts)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn live_from_a_cluster_under_writes_cuts_over_with_every_counter_exact() {
    let cluster = RedisCluster::start("7.4", 3, 0);
    let target = RedisServer::start("7.4");
    let (events, _) = live_run(&cluster, &target, Prefer::Master, |_| {}).await;
    // Each shard streamed and checkpointed under its own name.
    let checkpointed: std::collections::BTreeSet<String> = events
        .iter()
        .filter_map(|e| match e {
            EventKind::ShardEvent { shard, event }
                if matches!(**event, EventKind::Checkpoint { .. }) =>
            {
                Some(shard.name.clone())
            }
            _ => None,
        })
        .collect();
    assert_eq!(checkpointed.len(), 3, "{checkpointed:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn prefer_replica_reads_every_shard_from_a_replica() {
    let cluster = RedisCluster::start("7.4", 3, 1);
    let target = RedisServer::start("7.4");
    let forks = |port: u16| -> String {
        let info = cluster.node(port).cli(&["INFO", "stats"]);
        info.lines()
            .find(|l| l.starts_with("total_forks:"))
            .unwrap_or_default()
            .trim()
            .to_string()
    };
    let masters = cluster.master_ports();
    let before: Vec<String> = masters.iter().map(|p| forks(*p)).collect();
    let (events, _) = live_run(&cluster, &target, Prefer::Replica, |_| {}).await;
    let after: Vec<String> = masters.iter().map(|p| forks(*p)).collect();
    let replicas = cluster.replica_ports();
    for shard in shard_refs(&events).values() {
        let port: u16 = shard.addr.rsplit(':').next().unwrap().parse().unwrap();
        assert!(replicas.contains(&port), "read from a replica: {shard:?}");
    }
    let logs: Vec<String> = masters.iter().map(|p| cluster.node(*p).log()).collect();
    assert_eq!(before, after, "no master forked for Ferry: {logs:#?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_source_failover_during_streaming_is_followed() {
    let cluster = RedisCluster::start("7.4", 3, 1);
    let target = RedisServer::start("7.4");
    let promoted = Mutex::new(None);
    let (events, _) = live_run(&cluster, &target, Prefer::Master, |cluster| {
        let replica = cluster.replica_ports()[0];
        let reply = cluster.node(replica).cli(&["CLUSTER", "FAILOVER"]);
        assert!(reply.contains("OK"), "{reply}");
        let deadline = Instant::now() + Duration::from_secs(20);
        while !cluster.master_ports().contains(&replica) {
            assert!(Instant::now() < deadline, "the replica was promoted");
            std::thread::sleep(Duration::from_millis(50));
        }
        *promoted.lock().unwrap() = Some(replica);
    })
    .await;
    let promoted = promoted.lock().unwrap().expect("promoted");
    let failovers: Vec<(String, String)> = events
        .iter()
        .filter_map(|e| match e {
            EventKind::ShardFailedOver { from, to, .. } => {
                Some((from.addr.clone(), to.addr.clone()))
            }
            _ => None,
        })
        .collect();
    assert_eq!(failovers.len(), 1, "{failovers:?}");
    assert_eq!(failovers[0].1, format!("127.0.0.1:{promoted}"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_slot_resharded_during_streaming_fails_naming_the_slot() {
    let cluster = RedisCluster::start("7.4", 3, 0);
    let target = RedisServer::start("7.4");
    populate_cluster(&cluster, 300);
    let run = start(
        cluster_spec(&cluster, &target, Mode::Live, Prefer::Master),
        quick(),
    );
    run.wait_for("StreamingStarted", |e| {
        matches!(e, EventKind::StreamingStarted { .. })
    })
    .await;
    // Move the slot of k:1 to another master, as `redis-cli --cluster reshard` would.
    let slot = key_slot(b"k:1");
    let from = cluster.master_of("k:1");
    let to = *cluster.master_ports().iter().find(|p| **p != from).unwrap();
    let id = |port: u16| {
        cluster
            .node(port)
            .cli(&["CLUSTER", "MYID"])
            .trim()
            .to_string()
    };
    let (from_id, to_id) = (id(from), id(to));
    let s = slot.to_string();
    cluster
        .node(to)
        .cli(&["CLUSTER", "SETSLOT", &s, "IMPORTING", &from_id]);
    cluster
        .node(from)
        .cli(&["CLUSTER", "SETSLOT", &s, "MIGRATING", &to_id]);
    let (result, events) = run.finish().await;
    let err: EngineError = result.expect_err("a resharding stops the migration");
    assert_eq!(err.code(), "source_resharded", "{err}");
    assert!(err.to_string().contains(&format!("slot {slot} ")), "{err}");
    assert!(!names(&events).contains(&"CutoverCompleted"));
    // The shards' offset keys are gone with the failed migration.
    let left: Vec<String> = redis::cmd("KEYS")
        .arg("ferry:offset:*")
        .query(&mut target.conn())
        .unwrap();
    assert!(left.is_empty(), "{left:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_killed_source_master_is_followed_to_its_promoted_replica() {
    let mut cluster = RedisCluster::start("7.4", 3, 1);
    let target = RedisServer::start("7.4");
    populate_cluster(&cluster, 600);
    let stop = Arc::new(AtomicBool::new(false));
    let writer = spawn_counters(&cluster, stop.clone());
    let mut s = cluster_spec(&cluster, &target, Mode::Live, Prefer::Master);
    s.options.pause_source_writes_on_cutover = true;
    let tuning = ferry::engine::Tuning {
        reconnect_timeout: Duration::from_secs(6),
        ..quick()
    };
    // The target was empty: a shard whose new master cannot continue may copy its snapshot again.
    let job = ferry::engine::EngineJob {
        before: ferry::engine::TargetBefore::Empty,
        ..ferry::engine::EngineJob::new(uuid::Uuid::now_v7(), s)
    };
    let (tx, mut rx) = tokio::sync::mpsc::channel(256);
    let controls = ferry::engine::Controls::default();
    let task = tokio::spawn(ferry::engine::run_with(job, tx, controls.clone(), tuning));
    let events: Arc<Mutex<Vec<EventKind>>> = Arc::default();
    let sink = events.clone();
    tokio::spawn(async move {
        while let Some(e) = rx.recv().await {
            sink.lock().unwrap().push(e);
        }
    });
    let wait = |what: &'static str, pred: fn(&EventKind) -> bool| {
        let events = events.clone();
        async move {
            let deadline = Instant::now() + Duration::from_secs(90);
            while !events.lock().unwrap().iter().any(pred) {
                assert!(
                    Instant::now() < deadline,
                    "no {what}: {:?}",
                    names(&events.lock().unwrap())
                );
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
        }
    };
    wait("streaming", |e| {
        matches!(e, EventKind::StreamingStarted { .. })
    })
    .await;
    tokio::time::sleep(Duration::from_millis(500)).await;
    let victim = cluster.master_of("c:1");
    cluster
        .nodes
        .iter_mut()
        .find(|n| n.port == victim)
        .unwrap()
        .kill();
    let deadline = Instant::now() + Duration::from_secs(60);
    while !events
        .lock()
        .unwrap()
        .iter()
        .any(|e| matches!(e, EventKind::ShardFailedOver { .. }))
    {
        if Instant::now() > deadline || task.is_finished() {
            let inner: Vec<String> = events
                .lock()
                .unwrap()
                .iter()
                .rev()
                .take(12)
                .map(|e| match e {
                    EventKind::ShardEvent { shard, event } => format!("{}:{:?}", shard.addr, event),
                    other => format!("{other:?}"),
                })
                .collect();
            let live = cluster.nodes.iter().find(|n| n.port != victim).unwrap();
            let nodes = live.cli(&["CLUSTER", "NODES"]);
            let result = if task.is_finished() {
                format!("{:?}", task.await)
            } else {
                "running".into()
            };
            panic!("no failover followed ({result}): {inner:#?}\n{nodes}");
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    // The shard streams again, from its new master.
    let deadline = Instant::now() + Duration::from_secs(90);
    loop {
        // Three shards started streaming; the one followed to its new master starts again.
        let resumed = events
            .lock()
            .unwrap()
            .iter()
            .filter(|e| {
                matches!(e, EventKind::ShardEvent { shard, event }
                    if !shard.addr.ends_with(&format!(":{victim}"))
                        && matches!(**event, EventKind::StreamingStarted { .. }))
            })
            .count()
            > 2;
        if resumed {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "the shard streams again: {:?}",
            events.lock().unwrap()
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    tokio::time::sleep(Duration::from_millis(500)).await;
    stop.store(true, Ordering::Relaxed);
    writer.join().unwrap();
    controls.cutover.cancel();
    let result = tokio::time::timeout(Duration::from_secs(120), task)
        .await
        .expect("the run ends")
        .expect("no panic");
    let deadline = Instant::now() + Duration::from_secs(5);
    while Arc::strong_count(&events) > 1 && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    let events = events.lock().unwrap().clone();
    result.unwrap_or_else(|e| panic!("{e}; events: {events:?}"));
    // A kill -9 may lose writes the dead master acknowledged: the target must hold exactly what
    // the cluster holds now.
    let mut routed = crate::common::cluster_load::Routed::new(&cluster);
    let source_counts: Vec<i64> = (0..crate::common::cluster_load::COUNTERS)
        .map(|c| {
            let key = format!("c:{c}");
            routed
                .run::<Option<i64>>(&key, redis::cmd("GET").arg(&key))
                .unwrap_or(0)
        })
        .collect();
    assert_counters(&target, &source_counts);
    assert_same_as_cluster(&cluster, &target);
    let report = the_verification(&events);
    assert_eq!((report.missing, report.different, report.extra), (0, 0, 0));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn auto_cutover_waits_for_every_shard_then_cuts_over_once() {
    let cluster = RedisCluster::start("7.4", 3, 0);
    let target = RedisServer::start("7.4");
    populate_cluster(&cluster, 300);
    let stop = Arc::new(AtomicBool::new(false));
    let writer = spawn_counters(&cluster, stop.clone());
    tokio::time::sleep(Duration::from_millis(300)).await;
    stop.store(true, Ordering::Relaxed);
    let counts = writer.join().unwrap();
    let mut s = cluster_spec(&cluster, &target, Mode::Live, Prefer::Master);
    s.options.auto_cutover = true;
    s.options.pause_source_writes_on_cutover = true;
    let (result, events) = start(s, quick()).finish().await;
    result.unwrap_or_else(|e| panic!("{e}; events: {:?}", names(&events)));
    let count = |name: &str| names(&events).iter().filter(|n| **n == name).count();
    assert_eq!((count("CutoverStarted"), count("CutoverCompleted")), (1, 1));
    let started = names(&events)
        .iter()
        .position(|n| *n == "CutoverStarted")
        .unwrap();
    let streaming = names(&events)
        .iter()
        .position(|n| *n == "StreamingStarted")
        .unwrap();
    assert!(streaming < started, "{:?}", names(&events));
    assert_counters(&target, &counts);
    assert_same_as_cluster(&cluster, &target);
}
