//! Running the engine and the validation against real servers, as the supervisor would.

use std::time::Duration;

use ferry::engine::Tuning;
use ferry::model::EventKind;
use ferry::model::{CheckResult, CheckStatus};
use ferry::spec::{MigrationSpec, Mode, OnConflict, Options, Verify};

use crate::common::redis::RedisServer;

/// A spec with full verification and `on_conflict: fail` (a target that already has a key is a
/// bug of the test, not something to paper over).
pub fn spec(source: &RedisServer, target: &RedisServer, mode: Mode) -> MigrationSpec {
    let options = Options {
        pause_source_writes_on_cutover: true,
        pause_during_verification: false,
        ..crate::common::spec::options(OnConflict::Fail, Verify::Full)
    };
    MigrationSpec {
        name: Some(format!("matrix {} -> {}", source.version, target.version)),
        ..crate::common::spec::spec(source, target, mode, options)
    }
}

/// Quick progress reports; everything else at production values unless a test says otherwise.
pub fn tuning() -> Tuning {
    Tuning {
        report_interval: Duration::from_millis(200),
        ..Tuning::default()
    }
}

pub use crate::common::engine::start;

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
pub fn verification(events: &[EventKind]) -> Option<&ferry::model::VerificationReport> {
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
