//! Shared by the validation tests: building specs, running validation, asserting on checks.

pub use std::time::{Duration, Instant};

pub use crate::common::redis::{free_port, modules_dir, RedisServer};
pub use ferry::model::{CheckResult, CheckStatus, ReportStatus, ValidationReport};
pub use ferry::spec::MigrationSpec;
pub use ferry::validate::checks::ALL;
pub use ferry::validate::{run, run_with, ValidateContext};
pub use serde_json::json;

/// A snapshot spec whose options are given as JSON (absent fields take their defaults).
pub fn spec(source: &str, target: &str, options: serde_json::Value) -> MigrationSpec {
    let options = serde_json::from_value(options).expect("valid options");
    crate::common::spec::spec(source, target, ferry::spec::Mode::Snapshot, options)
}

pub async fn validate(source: &str, target: &str) -> ValidationReport {
    validate_with(source, target, json!({})).await
}

pub async fn validate_with(
    source: &str,
    target: &str,
    options: serde_json::Value,
) -> ValidationReport {
    let data_dir = tempfile::tempdir().expect("temp data_dir");
    let report = run_with(
        &spec(source, target, options),
        &ValidateContext::new(data_dir.path()),
    )
    .await;
    assert_eq!(
        report
            .checks
            .iter()
            .map(|c| c.id.as_str())
            .collect::<Vec<_>>(),
        ALL.iter().map(|c| c.id).collect::<Vec<_>>(),
        "every check id appears once, in order"
    );
    report
}

/// The check `id`, or a panic that shows the whole report.
pub fn check<'a>(report: &'a ValidationReport, id: &str) -> &'a CheckResult {
    report
        .checks
        .iter()
        .find(|c| c.id == id)
        .unwrap_or_else(|| panic!("no check {id} in {}", pretty(report)))
}

pub fn pretty(report: &ValidationReport) -> String {
    serde_json::to_string_pretty(report).unwrap()
}

/// Asserts the check's status and that its message contains every fragment.
pub fn expect(report: &ValidationReport, id: &str, status: CheckStatus, fragments: &[&str]) {
    let found = check(report, id);
    assert_eq!(found.status, status, "{id}: {}", pretty(report));
    for fragment in fragments {
        assert!(
            found.message.contains(fragment),
            "{id} message should contain {fragment:?}: {}",
            found.message
        );
    }
}

pub fn set_many(server: &RedisServer, db: u32, count: usize, value_len: usize) {
    let mut conn = server.conn();
    let value = "v".repeat(value_len);
    let mut pipe = redis::pipe();
    pipe.cmd("SELECT").arg(db).ignore();
    for i in 0..count {
        pipe.cmd("SET").arg(format!("key:{i}")).arg(&value).ignore();
    }
    pipe.query::<()>(&mut conn).expect("load keys");
}

pub fn info_field(server: &RedisServer, section: &str, field: &str) -> String {
    let info: String = redis::cmd("INFO")
        .arg(section)
        .query(&mut server.conn())
        .unwrap();
    info.lines()
        .find_map(|l| l.strip_prefix(&format!("{field}:")))
        .unwrap_or_default()
        .trim()
        .to_string()
}

/// Polls `condition` until it holds, or panics with `what` after `timeout`.
pub fn wait_for(what: &str, timeout: Duration, mut condition: impl FnMut() -> bool) {
    let deadline = Instant::now() + timeout;
    while !condition() {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// A copy of a Redis Stack module that redis-server will load: the installed `.so` files lack the
/// execute bit, and redis-server refuses modules without it.
pub fn loadable_module(version: &str, file: &str) -> (tempfile::TempDir, String) {
    use std::os::unix::fs::PermissionsExt;
    let dir = tempfile::tempdir().unwrap();
    let copy = dir.path().join(file);
    std::fs::copy(modules_dir(version).join(file), &copy).expect("copy the module");
    std::fs::set_permissions(&copy, std::fs::Permissions::from_mode(0o755)).unwrap();
    let path = copy.to_str().unwrap().to_string();
    (dir, path)
}
