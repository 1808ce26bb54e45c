//! Reports: what validation found before a migration, and what verification found after.
//!
//! Plain types, recorded inside events (`ValidationCompleted`, `VerificationCompleted`) and shown
//! by the API. `validate` and `engine` produce them; nothing here does I/O.

use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

/// Outcome of one check, and of a whole report.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum CheckStatus {
    Pass,
    Warn,
    /// Not run, because a check it depends on failed; `details.waits_on` names that check.
    Skipped,
    Fail,
}

/// One pre-flight check.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
#[schema(example = json!({"id": "source.connect", "status": "pass",
    "message": "connected to 127.0.0.1:6379 (Redis 7.2.4)", "details": {"latency_ms": 1}}))]
pub struct CheckResult {
    /// Stable id, such as `source.connect` or `capacity.memory`.
    pub id: String,
    pub status: CheckStatus,
    /// One line that says what was found and, when it is not a pass, what to do.
    pub message: String,
    /// Measured values behind the verdict.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schema(value_type = Option<Object>)]
    pub details: Option<serde_json::Value>,
}

/// The overall verdict of a validation.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum ReportStatus {
    Passed,
    PassedWithWarnings,
    Failed,
}

/// The result of `POST /v1/migrations/{id}/validate`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct ValidationReport {
    pub status: ReportStatus,
    pub checks: Vec<CheckResult>,
}

impl ValidationReport {
    /// Builds a report whose status follows from its worst check. A skipped check is not a pass:
    /// it never happens without the failure it waits on, so the report fails either way.
    pub fn from_checks(checks: Vec<CheckResult>) -> Self {
        let worst = checks.iter().map(|c| c.status).max();
        let status = match worst {
            Some(CheckStatus::Fail | CheckStatus::Skipped) => ReportStatus::Failed,
            Some(CheckStatus::Warn) => ReportStatus::PassedWithWarnings,
            _ => ReportStatus::Passed,
        };
        ValidationReport { status, checks }
    }
}

/// How a key differed between source and target.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum Difference {
    Missing,
    Extra,
    Type,
    Value,
    Ttl,
}

/// One key that did not match.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct ProblemKey {
    pub db: u32,
    /// The key, lossily decoded as UTF-8 for display.
    pub key: String,
    pub difference: Difference,
}

/// What verification compared and found.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct VerificationReport {
    pub mode: crate::spec::Verify,
    pub checked: u64,
    pub missing: u64,
    pub different: u64,
    pub extra: u64,
    /// The first 100 problem keys.
    pub problems: Vec<ProblemKey>,
}

impl VerificationReport {
    pub fn is_clean(&self) -> bool {
        self.missing == 0 && self.different == 0 && self.extra == 0
    }
}
