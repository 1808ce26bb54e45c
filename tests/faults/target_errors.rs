//! A target error that no retry can fix fails the job at once, naming the command and the key.

use std::time::Duration;

use ferry::engine::{self, Controls, EngineError, EngineJob, Tuning};
use ferry::model::EventKind;
use tokio::sync::mpsc;

use crate::common::redis::RedisServer;
use crate::failover::spec;
use crate::harness::WAIT;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_wrongtype_on_the_target_fails_the_job_naming_command_and_key() {
    let source = RedisServer::start_with("7.2", &["--repl-diskless-sync-delay", "0"]);
    let target = RedisServer::start("7.2");
    let (tx, mut rx) = mpsc::channel(256);
    let job = EngineJob::new(uuid::Uuid::now_v7(), spec(&source, &target));
    let task = tokio::spawn(engine::run_with(
        job,
        tx,
        Controls::default(),
        Tuning::default(),
    ));
    let deadline = std::time::Instant::now() + WAIT;
    loop {
        let event = tokio::time::timeout(WAIT, rx.recv()).await.expect("events");
        if matches!(event, Some(EventKind::StreamingStarted { .. })) {
            break;
        }
        assert!(std::time::Instant::now() < deadline && event.is_some());
    }
    tokio::spawn(async move { while rx.recv().await.is_some() {} });
    // Someone writes a string on the target where the source keeps a list.
    target.cli(&["SET", "jobs:queue", "not a list"]);
    let _: () = redis::cmd("LPUSH")
        .arg("jobs:queue")
        .arg("a")
        .query(&mut source.conn())
        .unwrap();
    let result = tokio::time::timeout(Duration::from_secs(60), task)
        .await
        .expect("the job fails promptly")
        .unwrap();
    let err = result.expect_err("a WRONGTYPE cannot be retried away");
    assert!(matches!(err, EngineError::TargetError { .. }), "{err:?}");
    let text = err.to_string();
    assert!(
        text.contains("LPUSH") && text.contains("`jobs:queue`") && text.contains("WRONGTYPE"),
        "{text}"
    );
}
