//! A Redis Cluster source across a crash of Ferry during streaming: every shard resumes from its
//! own checkpoint (PSYNC to its own master, its own offset key on the target), no shard copies
//! its snapshot again, and every counter is exact after the cutover.
//!
//! The engine is dropped mid-stream (its task aborted, as a dying process leaves it: no cleanup
//! of its offset keys), and a new run starts with the per-shard resume points the log's shard
//! checkpoints fold into (`Migration::shard_resume`), as a restarted Ferry hands them over.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use ferry::engine::{self, Controls, EngineJob, PriorTransfer, Tuning};
use ferry::model::{EventKind, ResumeKind, ResumePoint};
use ferry::spec::{Mode, OnConflict, TransferKind, Verify};
use tokio::sync::mpsc;

use crate::common::cluster::RedisCluster;
use crate::common::cluster_load::{assert_counters, populate_cluster, spawn_counters};
use crate::common::redis::RedisServer;
use crate::harness::WAIT;

type Events = Arc<Mutex<Vec<EventKind>>>;

fn run(
    job: EngineJob,
    controls: Controls,
) -> (
    tokio::task::JoinHandle<Result<(), engine::EngineError>>,
    Events,
) {
    let (tx, mut rx) = mpsc::channel(256);
    let tuning = Tuning {
        report_interval: Duration::from_millis(100),
        ..Tuning::default()
    };
    let task = tokio::spawn(engine::run_with(job, tx, controls, tuning));
    let events: Events = Arc::default();
    let sink = events.clone();
    tokio::spawn(async move {
        while let Some(e) = rx.recv().await {
            sink.lock().unwrap().push(e);
        }
    });
    (task, events)
}

async fn wait_for(events: &Events, what: &str, pred: impl Fn(&EventKind) -> bool) {
    let deadline = Instant::now() + WAIT;
    while !events.lock().unwrap().iter().any(&pred) {
        assert!(
            Instant::now() < deadline,
            "no {what}: {:?}",
            events.lock().unwrap()
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// Each shard's last checkpoint, as the fold keeps it.
fn shard_checkpoints(events: &[EventKind]) -> BTreeMap<String, ResumePoint> {
    let mut points = BTreeMap::new();
    for e in events {
        if let EventKind::ShardEvent { shard, event } = e {
            if let EventKind::Checkpoint {
                replid,
                applied_offset,
                ..
            } = event.as_ref()
            {
                points.insert(
                    shard.name.clone(),
                    ResumePoint {
                        replid: replid.clone(),
                        applied_offset: *applied_offset,
                    },
                );
            }
        }
    }
    points
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_crash_during_streaming_resumes_every_shard_from_its_own_checkpoint() {
    let cluster = RedisCluster::start("7.4", 3, 0);
    let target = RedisServer::start("7.4");
    populate_cluster(&cluster, 600);
    let stop = Arc::new(AtomicBool::new(false));
    let writer = spawn_counters(&cluster, stop.clone());
    let mut spec = crate::common::spec::spec(
        &cluster.url(),
        &target,
        Mode::Live,
        crate::common::spec::options(OnConflict::Fail, Verify::Full),
    );
    spec.options.pause_source_writes_on_cutover = true;
    let id = uuid::Uuid::now_v7();
    let job = EngineJob::new(id, spec.clone());
    let (task, events) = run(job, Controls::default());
    wait_for(&events, "streaming", |e| {
        matches!(e, EventKind::StreamingStarted { .. })
    })
    .await;
    tokio::time::sleep(Duration::from_millis(700)).await;
    // The crash: the engine stops between two batches, keys and all.
    task.abort();
    let _ = task.await;
    let points = shard_checkpoints(&events.lock().unwrap());
    assert_eq!(points.len(), 3, "a checkpoint per shard: {points:?}");
    // Writes go on while Ferry is down.
    tokio::time::sleep(Duration::from_millis(700)).await;
    let left: Vec<String> = redis::cmd("KEYS")
        .arg("ferry:offset:*")
        .query(&mut target.conn())
        .unwrap();
    assert_eq!(left.len(), 3, "each shard's offset key survives: {left:?}");

    let resumed = EngineJob {
        shard_resume: points,
        transfer: Some(PriorTransfer {
            kind: TransferKind::Restore,
            relay_target: None,
        }),
        ..EngineJob::new(id, spec)
    };
    let controls = Controls::default();
    let (task, events) = run(resumed, controls.clone());
    wait_for(&events, "streaming again", |e| {
        matches!(e, EventKind::StreamingStarted { .. })
    })
    .await;
    tokio::time::sleep(Duration::from_millis(500)).await;
    stop.store(true, Ordering::Relaxed);
    let counts = writer.join().unwrap();
    controls.cutover.cancel();
    let result = tokio::time::timeout(Duration::from_secs(120), task)
        .await
        .expect("the resumed run ends")
        .expect("no panic");
    // The collector lets go once it has every event the run sent.
    let deadline = Instant::now() + Duration::from_secs(5);
    while Arc::strong_count(&events) > 1 && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    let events = events.lock().unwrap().clone();
    result.unwrap_or_else(|e| panic!("{e}; events: {events:?}"));
    // Every shard continued by partial resync; none copied its snapshot again.
    let mut partial = 0;
    for e in &events {
        if let EventKind::ShardEvent { event, .. } = e {
            match event.as_ref() {
                EventKind::LinkResumed {
                    kind: ResumeKind::Partial,
                    ..
                } => partial += 1,
                EventKind::SnapshotStarted { .. } => panic!("a shard copied again: {events:?}"),
                _ => {}
            }
        }
    }
    assert_eq!(partial, 3, "{events:?}");
    assert_counters(&target, &counts);
    let report = events
        .iter()
        .find_map(|e| match e {
            EventKind::VerificationCompleted { report } => Some(report.clone()),
            _ => None,
        })
        .expect("VerificationCompleted");
    assert_eq!((report.missing, report.different, report.extra), (0, 0, 0));
    let left: Vec<String> = redis::cmd("KEYS")
        .arg("ferry:*")
        .query(&mut target.conn())
        .unwrap();
    assert!(left.is_empty(), "{left:?}");
}
