//! The service and the supervisor together, against a real store, with an engine that runs until
//! it is cancelled.

use std::path::Path;
use std::sync::Arc;

use super::*;
use crate::aggregate::migration::State;
use crate::engine::EngineError;
use crate::jobs::JobError;
use crate::model::{AggregateType, CheckResult, CheckStatus, EventKind};
use crate::store::NewEvent;

/// A test double, kept on purpose: these unit tests check the store-side state machine
/// (transitions, concurrent starts, credentials) with no redis-server in reach; the engine only
/// has to stay "running" until cancelled. Everything a real transfer does is tested against real
/// servers in tests/engine, tests/api (running.rs) and tests/faults.
fn idle_engine() -> EngineFn {
    Arc::new(|_job, _events, controls| {
        Box::pin(async move {
            controls.cancel.cancelled().await;
            Err(EngineError::Cancelled)
        })
    })
}

fn spec() -> MigrationSpec {
    spec_into(2)
}

/// A spec whose target is port `target` on loopback.
fn spec_into(target: u16) -> MigrationSpec {
    serde_json::from_str(&format!(
        r#"{{"source":{{"url":"redis://:pw@127.0.0.1:1"}},"target":{{"url":"redis://127.0.0.1:{target}"}}}}"#
    ))
    .unwrap()
}

/// A real redis-server for the target: `start` takes the target's lease, so these tests need
/// one (the engine itself stays idle). Killed on drop.
struct Target {
    child: std::process::Child,
    port: u16,
    _dir: tempfile::TempDir,
}

impl Target {
    fn start() -> Target {
        let dir = std::env::var_os("FERRY_REDIS_DIR")
            .map(std::path::PathBuf::from)
            .unwrap_or_else(|| Path::new(env!("CARGO_MANIFEST_DIR")).join("target/redis"));
        let binary = dir.join("7.2/redis-server");
        assert!(
            binary.exists(),
            "redis-server 7.2 not found at {}: run scripts/install-redis.sh first",
            binary.display()
        );
        let data = tempfile::tempdir().unwrap();
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let child = std::process::Command::new(binary)
            .args([
                "--port",
                &port.to_string(),
                "--save",
                "",
                "--appendonly",
                "no",
            ])
            .arg("--dir")
            .arg(data.path())
            .stdout(std::process::Stdio::null())
            .spawn()
            .expect("start redis-server");
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(20);
        while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
            assert!(
                std::time::Instant::now() < deadline,
                "redis-server did not start"
            );
            std::thread::sleep(std::time::Duration::from_millis(20));
        }
        Target {
            child,
            port,
            _dir: data,
        }
    }
}

impl Drop for Target {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

async fn open_with_engine(dir: &Path, engine: EngineFn) -> Result<(Jobs, FoldStats), JobError> {
    open(SupervisorConfig {
        data_dir: dir.to_path_buf(),
        engine,
        limits: BackupLimits::default(),
    })
    .await
}

/// A data dir holding one migration into port `target` that has passed validation.
async fn validated_migration(dir: &Path, target: u16) -> Uuid {
    let (jobs, _) = open_with_engine(dir, idle_engine()).await.unwrap();
    let id = jobs.create(spec_into(target), "api").await.unwrap().id;
    let report = ValidationReport::from_checks(vec![CheckResult {
        id: "source.connect".into(),
        status: CheckStatus::Pass,
        message: "ok".into(),
        details: None,
    }]);
    jobs.store()
        .append(vec![
            NewEvent::migration(id, "api", EventKind::ValidationStarted {}),
            NewEvent::migration(id, "api", EventKind::ValidationCompleted { report }),
        ])
        .await
        .unwrap();
    jobs.shutdown().await;
    id
}

#[tokio::test]
async fn concurrent_starts_start_the_migration_exactly_once() {
    let dir = tempfile::tempdir().unwrap();
    let target = Target::start();
    let id = validated_migration(dir.path(), target.port).await;
    let (jobs, stats) = open_with_engine(dir.path(), idle_engine()).await.unwrap();
    assert_eq!((stats.events, stats.migrations), (3, 1));
    assert_eq!(jobs.get(id).unwrap().state, State::Validated);

    let attempts: Vec<_> = (0..16)
        .map(|_| {
            let jobs = jobs.clone();
            tokio::spawn(async move { jobs.start(id, "api", false).await })
        })
        .collect();
    let mut started = 0;
    for attempt in attempts {
        match attempt.await.unwrap() {
            Ok(view) => {
                started += 1;
                assert_eq!(view.state, State::Migrating);
            }
            Err(JobError::Refused(refusal)) => {
                assert_eq!(refusal.state, "migrating");
                assert_eq!(refusal.allowed, vec![crate::aggregate::Action::Cancel]);
            }
            Err(other) => panic!("unexpected error: {other}"),
        }
    }
    assert_eq!(started, 1);
    let types: Vec<&str> = jobs
        .events(AggregateType::Migration, id, 0, 100)
        .await
        .unwrap()
        .iter()
        .map(|e| e.kind.type_name())
        .collect();
    assert_eq!(
        types.iter().filter(|t| **t == "MigrationStarted").count(),
        1
    );

    // Cancelling the running engine records the cancel with the requester as actor.
    jobs.cancel(id, "ops").await.unwrap();
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    while jobs.get(id).unwrap().state != State::Cancelled {
        assert!(std::time::Instant::now() < deadline, "not cancelled");
        tokio::time::sleep(std::time::Duration::from_millis(10)).await;
    }
    let last = jobs
        .events(AggregateType::Migration, id, 0, 100)
        .await
        .unwrap()
        .pop()
        .unwrap();
    assert_eq!(last.actor, "ops");
    jobs.shutdown().await;
}

#[tokio::test]
async fn credentials_stay_out_of_the_log_but_reach_the_engine_spec() {
    let dir = tempfile::tempdir().unwrap();
    let (jobs, _) = open_with_engine(dir.path(), idle_engine()).await.unwrap();
    let id = jobs.create(spec(), "api").await.unwrap().id;
    let event = &jobs
        .events(AggregateType::Migration, id, 0, 10)
        .await
        .unwrap()[0];
    let logged = serde_json::to_string(event).unwrap();
    assert!(
        !logged.contains(":pw@") && logged.contains(":***@"),
        "{logged}"
    );
    let real = jobs.real_spec(id).await.unwrap();
    assert_eq!(
        real.source.url().unwrap().expose_url(),
        "redis://:pw@127.0.0.1:1"
    );
    jobs.shutdown().await;
}
