//! Drives the transfer engine directly (no HTTP, no store): start it on a spec, collect the events
//! it emits, wait for one, and take its result. Shared by the engine, matrix and backup tests.

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use ferry::engine::{self, Controls, EngineError, EngineJob, Tuning};
use ferry::model::EventKind;
use ferry::spec::MigrationSpec;
use tokio::sync::mpsc;
use tokio::task::JoinHandle;

/// A running engine: its task, the events it emitted so far, and its controls.
pub struct Running {
    pub migration_id: uuid::Uuid,
    pub task: JoinHandle<Result<(), EngineError>>,
    pub events: Arc<Mutex<Vec<EventKind>>>,
    pub controls: Controls,
}

/// Spawns `engine::run_with` for a fresh job and a task that collects its events.
pub fn start(spec: MigrationSpec, tuning: Tuning) -> Running {
    let (tx, mut rx) = mpsc::channel(64);
    let controls = Controls::default();
    let migration_id = uuid::Uuid::now_v7();
    let job = EngineJob::new(migration_id, spec);
    let task = tokio::spawn(engine::run_with(job, tx, controls.clone(), tuning));
    let events = Arc::new(Mutex::new(vec![]));
    let sink = events.clone();
    tokio::spawn(async move {
        while let Some(e) = rx.recv().await {
            sink.lock().unwrap().push(e);
        }
    });
    Running {
        migration_id,
        task,
        events,
        controls,
    }
}

impl Running {
    pub fn names(&self) -> Vec<&'static str> {
        names(&self.events.lock().unwrap())
    }

    pub fn events(&self) -> Vec<EventKind> {
        self.events.lock().unwrap().clone()
    }

    /// Polls (60 s at most) until an event matching `pred` was emitted; panics if the engine ends
    /// first, naming the events it did emit.
    pub async fn wait_for(&self, what: &str, pred: impl Fn(&EventKind) -> bool) {
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            if self.events.lock().unwrap().iter().any(&pred) {
                return;
            }
            if self.task.is_finished() {
                panic!("engine ended before {what}; events: {:?}", self.names());
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
        // The sender is dropped with the task: the collector drains what is left, then lets go.
        // A collector still holding on after the deadline means the list may be cut short, and
        // an absence check on a short list would pass for the wrong reason: fail instead.
        let deadline = Instant::now() + Duration::from_secs(5);
        while Arc::strong_count(&self.events) > 1 {
            assert!(
                Instant::now() < deadline,
                "the engine's events were not all collected within 5 s of its end; got {:?}",
                names(&self.events.lock().unwrap())
            );
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        let events = self.events.lock().unwrap().clone();
        (result, events)
    }
}

/// The `type` names of events, for assertions and messages.
pub fn names(events: &[EventKind]) -> Vec<&'static str> {
    events.iter().map(|e| e.type_name()).collect()
}
