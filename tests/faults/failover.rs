//! Source failover: the server Ferry replicates from is promoted and takes a new replid. Redis
//! keeps the old one as `replid2` (psync2), so Ferry continues by partial resync, during the run
//! and after a restart from a checkpoint that still names the old replid.

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use ferry::engine::{self, Controls, EngineJob, Tuning};
use ferry::model::{EventKind, ResumeKind, ResumePoint};
use ferry::spec::{MigrationSpec, Mode, OnConflict, Options, Verify};
use tokio::sync::mpsc;

use crate::common::redis::RedisServer;
use crate::harness::{differences, seed, Load, WAIT};

pub fn spec(source: &RedisServer, target: &RedisServer) -> MigrationSpec {
    let options = Options {
        verify: Verify::Full,
        ..crate::common::spec::options(OnConflict::Fail, Verify::Full)
    };
    MigrationSpec {
        name: Some("failover".into()),
        ..crate::common::spec::spec(source, target, Mode::Live, options)
    }
}

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

fn replid_of(server: &RedisServer) -> String {
    let info = server.cli(&["INFO", "replication"]);
    info.lines()
        .find_map(|l| l.strip_prefix("master_replid:"))
        .map(|s| s.trim().to_string())
        .expect("master_replid in INFO")
}

fn last_checkpoint(events: &Events) -> ResumePoint {
    events
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
        .expect("a checkpoint")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_promoted_source_with_a_new_replid_is_followed_by_partial_resync() {
    let primary = RedisServer::start_with("7.2", &["--repl-diskless-sync-delay", "0"]);
    let port = primary.url().rsplit(':').next().unwrap().to_string();
    // Ferry replicates from a replica of `primary`; promoting it is the failover.
    let source = RedisServer::start_with(
        "7.2",
        &[
            "--repl-diskless-sync-delay",
            "0",
            "--replicaof",
            "127.0.0.1",
            &port,
        ],
    );
    let target = RedisServer::start("7.2");
    seed(&primary, 300);
    let deadline = Instant::now() + WAIT;
    while !source
        .cli(&["INFO", "replication"])
        .contains("master_link_status:up")
    {
        assert!(Instant::now() < deadline, "the replica never synced");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let old_replid = replid_of(&source);
    let migration_id = uuid::Uuid::now_v7();
    let job = EngineJob::new(migration_id, spec(&source, &target));
    let (task, events) = run(job.clone(), Controls::default());
    wait_for(&events, "StreamingStarted", |e| {
        matches!(e, EventKind::StreamingStarted { .. })
    })
    .await;
    let load = Load::start(&primary);
    load.wait_more(300).await;
    load.stop();
    // Ferry stops (crash) once it has caught up, its checkpoint naming the old replid.
    let primary_offset = || -> i64 {
        primary
            .cli(&["INFO", "replication"])
            .lines()
            .find_map(|l| l.strip_prefix("master_repl_offset:"))
            .and_then(|v| v.trim().parse().ok())
            .unwrap()
    };
    let deadline = Instant::now() + WAIT;
    while last_checkpoint(&events).applied_offset < primary_offset() {
        assert!(Instant::now() < deadline, "the engine never caught up");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    task.abort();
    let _ = task.await;
    let checkpoint = last_checkpoint(&events);
    assert_eq!(checkpoint.replid, old_replid);

    // Failover while Ferry is down: the replica becomes a master with a new replid (the old one
    // kept as replid2), and takes writes.
    assert!(source.cli(&["REPLICAOF", "NO", "ONE"]).contains("OK"));
    let new_replid = replid_of(&source);
    assert_ne!(new_replid, old_replid);
    let load = Load::start(&source);
    load.wait_more(300).await;

    let controls = Controls::default();
    let resumed = EngineJob {
        resume: Some(checkpoint.clone()),
        ..job
    };
    let (task, events) = run(resumed, controls.clone());
    wait_for(&events, "a resume", |e| {
        matches!(e, EventKind::LinkResumed { .. })
    })
    .await;
    let first_resume = events
        .lock()
        .unwrap()
        .iter()
        .find_map(|e| match e {
            EventKind::LinkResumed { kind, .. } => Some(*kind),
            _ => None,
        })
        .unwrap();
    assert_eq!(
        first_resume,
        ResumeKind::Partial,
        "checkpoint {checkpoint:?} (old replid {old_replid}, new {new_replid}): {:?}",
        events.lock().unwrap()
    );
    load.wait_more(200).await;
    load.stop();
    controls.cutover.cancel();
    tokio::time::timeout(WAIT, task)
        .await
        .expect("cutover in time")
        .unwrap()
        .expect("the migration completes");
    let diffs = differences(&source, &target);
    assert!(diffs.is_empty(), "{diffs:?}");
    let replids: Vec<String> = events
        .lock()
        .unwrap()
        .iter()
        .filter_map(|e| match e {
            EventKind::Checkpoint { replid, .. } => Some(replid.clone()),
            _ => None,
        })
        .collect();
    assert_eq!(
        replids.last(),
        Some(&new_replid),
        "checkpoints follow the new replid"
    );
    eprintln!(
        "failover: resumed from {checkpoint:?} by partial resync onto {new_replid}, 0 differences"
    );
}
