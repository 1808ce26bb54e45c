//! Running the engine and the validation against real servers, as the supervisor would.

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use ferry::engine::{self, Controls, EngineError, EngineJob, Tuning};
use ferry::redis_url::RedisUrl;
use ferry::spec::{Endpoint, MigrationSpec, Mode, OnConflict, Options, Verify};
use ferry::store::event::{CheckResult, CheckStatus};
use ferry::store::EventKind;
use tokio::sync::mpsc;
use tokio::task::JoinHandle;

use crate::common::redis::RedisServer;

/// A spec with full verification and `on_conflict: fail` (a target that already has a key is a
/// bug of the test, not something to paper over).
pub fn spec(source: &RedisServer, target: &RedisServer, mode: Mode) -> MigrationSpec {
    MigrationSpec {
        name: Some(format!("matrix {} -> {}", source.version, target.version)),
        source: Endpoint {
            url: RedisUrl::parse(&source.url()).unwrap(),
        }
        .into(),
        target: Endpoint {
            url: RedisUrl::parse(&target.url()).unwrap(),
        },
        mode,
        options: Options {
            on_conflict: OnConflict::Fail,
            backup: false,
            verify: Verify::Full,
            pause_source_writes_on_cutover: true,
            auto_cutover: false,
        },
    }
}

/// Quick progress reports; everything else at production values unless a test says otherwise.
pub fn tuning() -> Tuning {
    Tuning {
        report_interval: Duration::from_millis(200),
        ..Tuning::default()
    }
}

/// An engine task and the events it emitted so far.
pub struct Running {
    pub task: JoinHandle<Result<(), EngineError>>,
    pub events: Arc<Mutex<Vec<EventKind>>>,
    pub controls: Controls,
}

pub fn start(spec: MigrationSpec, tuning: Tuning) -> Running {
    let (tx, mut rx) = mpsc::channel(64);
    let controls = Controls::default();
    let job = EngineJob {
        migration_id: uuid::Uuid::now_v7(),
        spec,
        resume: None,
    };
    let task = tokio::spawn(engine::run_with(job, tx, controls.clone(), tuning));
    let events = Arc::new(Mutex::new(vec![]));
    let sink = events.clone();
    tokio::spawn(async move {
        while let Some(e) = rx.recv().await {
            sink.lock().unwrap().push(e);
        }
    });
    Running {
        task,
        events,
        controls,
    }
}

impl Running {
    fn names(&self) -> Vec<&'static str> {
        self.events
            .lock()
            .unwrap()
            .iter()
            .map(|e| e.type_name())
            .collect()
    }

    /// Polls (60 s at most) until an event matching `pred` was emitted; panics if the engine ends
    /// first, with its error.
    pub async fn wait_for(&mut self, what: &str, pred: impl Fn(&EventKind) -> bool) {
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            if self.events.lock().unwrap().iter().any(&pred) {
                return;
            }
            if self.task.is_finished() {
                let result = (&mut self.task).await;
                panic!(
                    "engine ended before {what}: {result:?}; events: {:?}",
                    self.names()
                );
            }
            assert!(
                Instant::now() < deadline,
                "no {what} within 60s; events: {:?}",
                self.names()
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    /// Waits (120 s at most) for the engine's result and every event it sent.
    pub async fn finish(self) -> (Result<(), EngineError>, Vec<EventKind>) {
        let result = tokio::time::timeout(Duration::from_secs(120), self.task)
            .await
            .expect("the engine finished within 120 s")
            .expect("the engine task did not panic");
        // The sender is dropped with the task: the collector drains what is left.
        let deadline = Instant::now() + Duration::from_secs(5);
        while Arc::strong_count(&self.events) > 1 && Instant::now() < deadline {
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        let events = self.events.lock().unwrap().clone();
        (result, events)
    }
}

/// One check of `ferry::validate::run` for this spec, by id.
pub async fn validation_check(spec: &MigrationSpec, id: &str) -> CheckResult {
    let report = ferry::validate::run(spec).await;
    report
        .checks
        .iter()
        .find(|c| c.id == id)
        .cloned()
        .unwrap_or_else(|| panic!("no `{id}` check in {report:?}"))
}

/// Asserts that validation refuses the spec in check `id`, with a message containing every
/// `reasons` fragment; returns the message.
pub async fn assert_refused(spec: &MigrationSpec, id: &str, reasons: &[&str]) -> String {
    let check = validation_check(spec, id).await;
    assert_eq!(
        check.status,
        CheckStatus::Fail,
        "`{id}` must refuse: {check:?}"
    );
    for reason in reasons {
        assert!(
            check.message.contains(reason),
            "`{id}` names {reason:?}: {}",
            check.message
        );
    }
    check.message
}

/// Asserts that validation does not refuse the spec in check `id`.
pub async fn assert_not_refused(spec: &MigrationSpec, id: &str) {
    let check = validation_check(spec, id).await;
    assert_ne!(
        check.status,
        CheckStatus::Fail,
        "`{id}` must not refuse: {check:?}"
    );
}

/// The verification report of a finished run.
pub fn verification(events: &[EventKind]) -> Option<&ferry::store::event::VerificationReport> {
    events.iter().find_map(|e| match e {
        EventKind::VerificationCompleted { report } => Some(report),
        _ => None,
    })
}

/// `keys_rewritten` of the snapshot.
pub fn keys_rewritten(events: &[EventKind]) -> Option<u64> {
    events.iter().find_map(|e| match e {
        EventKind::SnapshotCompleted { keys_rewritten, .. } => Some(*keys_rewritten),
        _ => None,
    })
}
