//! A crash of Ferry while it streams into a Redis Cluster target, and the restarted job resuming
//! from the per-slot offset keys: every INCR counter ends exact (none lost, none applied twice).
//!
//! The crash is the engine's task aborted mid-flight (its sockets close wherever the flush was:
//! some slots' transactions applied, the others not), and the restart is a new job with what the
//! log would hand it: the last `Checkpoint` and the transfer chosen. (The `ferry serve` subprocess
//! of the other fault tests cannot start a cluster migration until validation's `cluster.mode`
//! check admits a cluster target.)

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use ferry::engine::{self, Controls, EngineJob, TargetBefore, Tuning};
use ferry::model::{EventKind, PriorTransfer, ResumePoint};
use ferry::spec::{OnConflict, TransferKind, Verify};
use tokio::sync::mpsc;

use crate::common::cluster::RedisCluster;
use crate::common::redis::RedisServer;
use crate::common::spec::{options, spec};

struct Job {
    task: tokio::task::JoinHandle<Result<(), engine::EngineError>>,
    events: Arc<Mutex<Vec<EventKind>>>,
    controls: Controls,
}

fn run(job: EngineJob) -> Job {
    let (tx, mut rx) = mpsc::channel(64);
    let controls = Controls::default();
    let tuning = Tuning {
        report_interval: Duration::from_millis(100),
        ..Tuning::default()
    };
    let task = tokio::spawn(engine::run_with(job, tx, controls.clone(), tuning));
    let events = Arc::new(Mutex::new(vec![]));
    let sink = events.clone();
    tokio::spawn(async move {
        while let Some(e) = rx.recv().await {
            sink.lock().unwrap().push(e);
        }
    });
    Job {
        task,
        events,
        controls,
    }
}

impl Job {
    async fn wait_for(&self, what: &str, pred: impl Fn(&EventKind) -> bool) {
        let deadline = Instant::now() + Duration::from_secs(60);
        while !self.events.lock().unwrap().iter().any(&pred) {
            assert!(!self.task.is_finished(), "the engine ended before {what}");
            assert!(Instant::now() < deadline, "no {what} within 60 s");
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    fn last_checkpoint(&self) -> Option<ResumePoint> {
        self.events
            .lock()
            .unwrap()
            .iter()
            .rev()
            .find_map(|e| match e {
                EventKind::Checkpoint {
                    replid,
                    applied_offset,
                    ..
                } => Some(ResumePoint {
                    replid: replid.clone(),
                    applied_offset: *applied_offset,
                }),
                _ => None,
            })
    }
}

fn counters(source: &RedisServer, stop: Arc<AtomicBool>) -> std::thread::JoinHandle<u64> {
    let url = source.url();
    std::thread::spawn(move || {
        let mut c = redis::Client::open(url).unwrap().get_connection().unwrap();
        let mut n = 0u64;
        while !stop.load(Ordering::Relaxed) {
            // Pipelined: the stream carries many commands per flush, so a crash lands mid-flush.
            let mut p = redis::pipe();
            for k in 0..20 {
                p.cmd("INCR")
                    .arg(format!("c:{}", (n * 20 + k) % 500))
                    .ignore();
            }
            p.cmd("MULTI")
                .ignore()
                .cmd("INCR")
                .arg(format!("t:a:{}", n % 40))
                .ignore()
                .cmd("INCR")
                .arg(format!("t:b:{}", n % 60))
                .ignore()
                .cmd("EXEC")
                .ignore();
            p.query::<()>(&mut c).unwrap();
            std::thread::sleep(Duration::from_millis(1));
            n += 1;
        }
        n
    })
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_crash_while_streaming_into_a_cluster_resumes_from_the_per_slot_offsets() {
    let cluster = RedisCluster::start("7.4", 3, 0);
    // A backlog that holds the whole test: the restarts must resume partially (a redo is
    // another path, refused on a cluster target by this build).
    let source = RedisServer::start_with(
        "7.4",
        &[
            "--repl-diskless-sync-delay",
            "0",
            "--repl-backlog-size",
            "256mb",
        ],
    );
    let stop = Arc::new(AtomicBool::new(false));
    let load = counters(&source, stop.clone());
    let spec = spec(
        &source,
        &cluster.url(),
        ferry::spec::Mode::Live,
        options(OnConflict::Fail, Verify::Full),
    );
    let id = uuid::Uuid::now_v7();
    let mut job = EngineJob::new(id, spec.clone());
    job.before = TargetBefore::Empty;
    let mut kills = 0;
    let mut current = run(job);
    for round in 0..3 {
        current
            .wait_for("a checkpoint with commands", |e| {
                matches!(e, EventKind::Checkpoint { commands_streamed, .. } if *commands_streamed > 200)
            })
            .await;
        tokio::time::sleep(Duration::from_millis(150 + 170 * round)).await;
        // The crash: the engine stops wherever it is, its connections close.
        current.task.abort();
        let _ = (&mut current.task).await;
        kills += 1;
        let checkpoint = current
            .last_checkpoint()
            .expect("a checkpoint before the crash");
        let mut job = EngineJob::new(id, spec.clone());
        job.before = TargetBefore::Empty;
        job.resume = Some(checkpoint);
        job.transfer = Some(PriorTransfer {
            kind: TransferKind::Restore,
            relay_target: None,
        });
        current = run(job);
        current
            .wait_for("LinkResumed", |e| {
                matches!(e, EventKind::LinkResumed { .. })
            })
            .await;
        let resumed_partially = current.events.lock().unwrap().iter().any(|e| {
            matches!(e, EventKind::LinkResumed { kind, .. } if *kind == ferry::model::ResumeKind::Partial)
        });
        assert!(
            resumed_partially,
            "a partial resume, not a new snapshot: {:?}",
            current.events.lock().unwrap()
        );
    }
    current
        .wait_for("a checkpoint after the last restart", |e| {
            matches!(e, EventKind::Checkpoint { commands_streamed, .. } if *commands_streamed > 100)
        })
        .await;
    stop.store(true, Ordering::Relaxed);
    let rounds = load.join().unwrap();
    current.controls.cutover.cancel();
    let result = tokio::time::timeout(Duration::from_secs(120), &mut current.task)
        .await
        .expect("cutover within 120 s")
        .expect("no panic");
    let events = current.events.lock().unwrap().clone();
    result.unwrap_or_else(|e| panic!("{e}; events {:?}", events));
    let report = events
        .iter()
        .find_map(|e| match e {
            EventKind::VerificationCompleted { report } => Some(report.clone()),
            _ => None,
        })
        .expect("VerificationCompleted");
    assert!(report.is_clean(), "{report:?}");
    // Every counter exact, read from the master of its slot.
    let mut src = source.conn();
    let keys: Vec<String> = (0..500)
        .map(|i| format!("c:{i}"))
        .chain((0..40).map(|i| format!("t:a:{i}")))
        .chain((0..60).map(|i| format!("t:b:{i}")))
        .collect();
    for key in &keys {
        let want: Option<i64> = redis::cmd("GET").arg(key).query(&mut src).unwrap();
        let got: Option<i64> = redis::cmd("GET")
            .arg(key)
            .query(&mut cluster.node(cluster.master_of(key)).conn())
            .unwrap();
        assert_eq!(got, want, "{key} after {kills} crashes");
    }
    let source_keys: u64 = source.cli(&["DBSIZE"]).trim().parse().unwrap();
    let cluster_keys: u64 = cluster.keys();
    assert_eq!(
        cluster_keys, source_keys,
        "no offset key left, no key missing"
    );
    eprintln!("cluster target: {kills} crashes survived, {rounds} load rounds, counters exact");
}

/// A crash in the middle of the snapshot into a cluster: the restarted job finds the base key's
/// `snapshot` mark, copies the snapshot again, and deletes (on every master) the keys of the
/// first copy that the source no longer has; the cluster ends with exactly the source's keys.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_crash_during_the_snapshot_into_a_cluster_redoes_it_and_sweeps_stale_keys() {
    let cluster = RedisCluster::start("7.4", 3, 0);
    // 1 ms per key while the source saves: the snapshot takes seconds, and the crash lands in it.
    let source = RedisServer::start_with(
        "7.4",
        &[
            "--repl-diskless-sync-delay",
            "0",
            "--rdb-key-save-delay",
            "1000",
        ],
    );
    let mut c = source.conn();
    let mut p = redis::pipe();
    for i in 0..3000 {
        p.cmd("SET").arg(format!("k:{i}")).arg(i).ignore();
    }
    p.query::<()>(&mut c).unwrap();
    let spec = spec(
        &source,
        &cluster.url(),
        ferry::spec::Mode::Snapshot,
        options(OnConflict::Fail, Verify::Full),
    );
    let id = uuid::Uuid::now_v7();
    let mut job = EngineJob::new(id, spec.clone());
    job.before = TargetBefore::Empty;
    let first = run(job);
    first
        .wait_for("keys written by the snapshot", |e| {
            matches!(e, EventKind::SnapshotProgress { keys_written, .. } if *keys_written > 200)
        })
        .await;
    first.task.abort();
    let _ = first.task.await;
    let copied: u64 = cluster.keys();
    assert!(copied > 200, "part of a copy is on the cluster: {copied}");
    // Keys of the first copy the source deletes meanwhile must not survive the redo.
    let _: () = redis::cmd("CONFIG")
        .arg("SET")
        .arg("rdb-key-save-delay")
        .arg("0")
        .query(&mut c)
        .unwrap();
    for i in 0..300 {
        let _: i64 = redis::cmd("DEL")
            .arg(format!("k:{i}"))
            .query(&mut c)
            .unwrap();
    }
    let mut job = EngineJob::new(id, spec);
    job.before = TargetBefore::Empty;
    job.transfer = Some(PriorTransfer {
        kind: TransferKind::Restore,
        relay_target: None,
    });
    let second = run(job);
    let result = tokio::time::timeout(Duration::from_secs(120), second.task)
        .await
        .expect("the redo within 120 s")
        .expect("no panic");
    let events = second.events.lock().unwrap().clone();
    result.unwrap_or_else(|e| panic!("{e}; events {events:?}"));
    assert!(
        events
            .iter()
            .any(|e| matches!(e, EventKind::SnapshotStarted { redo: Some(_), .. })),
        "the snapshot says it is redone: {events:?}"
    );
    let report = events
        .iter()
        .find_map(|e| match e {
            EventKind::VerificationCompleted { report } => Some(report.clone()),
            _ => None,
        })
        .expect("VerificationCompleted");
    assert!(report.is_clean() && report.checked == 2700, "{report:?}");
    let total: u64 = cluster.keys();
    assert_eq!(total, 2700, "exactly the source's keys, no offset key left");
    for i in [0, 150, 299] {
        let key = format!("k:{i}");
        let gone: Option<String> = redis::cmd("GET")
            .arg(&key)
            .query(&mut cluster.node(cluster.master_of(&key)).conn())
            .unwrap();
        assert_eq!(gone, None, "{key} was deleted on the source");
    }
}
