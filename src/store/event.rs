//! The event model: every fact Ferry records, as past-tense types.
//!
//! Events are the only state Ferry keeps about a migration. They are appended, never edited, and
//! folded into views by `jobs`. So this file is the schema of the audit trail: add variants and
//! optional fields freely, but never change the meaning of an existing one, because old logs must
//! keep folding.
//!
//! No variant may carry a secret. URLs inside specs serialize redacted (see [`crate::redis_url`]).

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;
use uuid::Uuid;

use crate::spec::{MigrationSpec, TransferKind};

/// Who caused an event: `api` (or the API token's name) for requests, `engine` for the worker.
pub type Actor = String;

/// The envelope stored in the log. `seq` increases across the whole log, with no gaps.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct Event {
    pub seq: u64,
    /// The migration (or backup) the event belongs to.
    pub migration_id: Uuid,
    #[schema(value_type = String, format = DateTime)]
    pub at: DateTime<Utc>,
    pub actor: Actor,
    #[serde(flatten)]
    pub kind: EventKind,
}

/// What happened. Serialized as `{"type": "SnapshotStarted", "data": {...}}`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
#[serde(tag = "type", content = "data")]
pub enum EventKind {
    MigrationCreated {
        spec: MigrationSpec,
    },
    MigrationUpdated {
        spec: MigrationSpec,
    },
    ValidationStarted {},
    ValidationCompleted {
        report: ValidationReport,
    },
    MigrationStarted {},
    /// A backup (an RDB copy of a server) began. Recorded under the backup's own id.
    BackupStarted {
        backup_id: Uuid,
        /// The server backed up, password redacted.
        server: String,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        label: Option<String>,
        /// Set when the backup is a migration's restore point.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        for_migration: Option<Uuid>,
    },
    /// Under the backup's id: the file is complete and durable. Under a migration's id: the
    /// migration's restore point is taken.
    BackupCompleted {
        backup_id: Uuid,
        bytes: u64,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        details: Option<BackupDetails>,
    },
    BackupFailed {
        backup_id: Uuid,
        code: String,
        message: String,
    },
    /// The backup's file was deleted; its history stays.
    BackupDeleted {
        backup_id: Uuid,
    },
    /// A backup is being loaded into a server (under the backup's id; a rollback also records it
    /// under the migration's id).
    RestoreStarted {
        backup_id: Uuid,
        /// The server restored into, password redacted.
        target: String,
        on_conflict: crate::spec::OnConflict,
    },
    RestoreCompleted {
        backup_id: Uuid,
        keys_written: u64,
        keys_skipped: u64,
        keys_expired: u64,
        duration_ms: u64,
    },
    RestoreFailed {
        backup_id: Uuid,
        code: String,
        message: String,
    },
    /// Which transfer the migration uses (relay or restore) and why; recorded when the engine
    /// starts, again if `auto` falls back from relay to restore.
    TransferChosen {
        transfer: TransferKind,
        reason: String,
        /// For a relay: the target's settings before Ferry changed them, put back when the
        /// target is released (after cutover, on cancel or failure, or by a restarted Ferry).
        #[serde(default, skip_serializing_if = "Option::is_none")]
        relay_target: Option<RelayTargetSettings>,
    },
    /// A relay's target is a standalone server again: `REPLICAOF NO ONE` ran and the settings
    /// Ferry changed were put back.
    TargetReleased {
        /// Why now: cutover, cancel, failure, or the fallback from relay to restore.
        reason: String,
        /// The settings restored, as `name=value` (a generated `masterauth` shows as cleared).
        restored: Vec<String>,
    },
    SnapshotStarted {
        replid: String,
        offset: i64,
        /// `true` when the source streams the RDB without writing it to disk (`$EOF:` framing).
        diskless: bool,
        /// Known only for disk-based transfers (`$<len>` framing).
        rdb_bytes_total: Option<u64>,
        /// What a restarted snapshot redoes, when this is not the first attempt.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        redo: Option<String>,
        /// The source's key count when the snapshot began (`INFO keyspace`): progress in percent
        /// for diskless transfers, whose size is unknown until they end.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        keys_total: Option<u64>,
    },
    SnapshotProgress {
        rdb_bytes_read: u64,
        rdb_bytes_total: Option<u64>,
        keys_written: u64,
        keys_skipped: u64,
        keys_expired: u64,
    },
    SnapshotCompleted {
        rdb_bytes: u64,
        keys_written: u64,
        keys_skipped: u64,
        keys_expired: u64,
        /// Keys written as plain commands instead of RESTORE (older target, or too big).
        keys_rewritten: u64,
        duration_ms: u64,
    },
    StreamingStarted {
        replid: String,
        offset: i64,
    },
    /// What a restart needs to resume: the replication id and the offset the *target* has applied.
    Checkpoint {
        replid: String,
        applied_offset: i64,
        commands_streamed: u64,
        lag_bytes: Option<u64>,
        /// Stream bytes relayed so far (relay transfers, which forward the stream without
        /// cutting it into commands, so `commands_streamed` stays 0 there).
        #[serde(default, skip_serializing_if = "Option::is_none")]
        bytes_streamed: Option<u64>,
    },
    LinkLost {
        link: Link,
        cause: String,
    },
    LinkResumed {
        link: Link,
        kind: ResumeKind,
        reason: String,
    },
    CutoverStarted {
        pause_source_writes: bool,
    },
    CutoverCompleted {
        final_offset: i64,
    },
    VerificationCompleted {
        report: VerificationReport,
    },
    MigrationCompleted {},
    MigrationFailed {
        /// A stable, machine-readable reason, such as `engine_unavailable` or `busy_key`.
        code: String,
        /// What went wrong and what to do, for people.
        message: String,
    },
    MigrationCancelled {
        #[serde(default, skip_serializing_if = "Option::is_none")]
        reason: Option<String>,
    },
}

impl EventKind {
    /// The `type` tag, for filtering (`GET /v1/events?type=`).
    pub fn type_name(&self) -> &'static str {
        match self {
            EventKind::MigrationCreated { .. } => "MigrationCreated",
            EventKind::MigrationUpdated { .. } => "MigrationUpdated",
            EventKind::ValidationStarted { .. } => "ValidationStarted",
            EventKind::ValidationCompleted { .. } => "ValidationCompleted",
            EventKind::MigrationStarted { .. } => "MigrationStarted",
            EventKind::BackupStarted { .. } => "BackupStarted",
            EventKind::BackupCompleted { .. } => "BackupCompleted",
            EventKind::BackupFailed { .. } => "BackupFailed",
            EventKind::BackupDeleted { .. } => "BackupDeleted",
            EventKind::RestoreStarted { .. } => "RestoreStarted",
            EventKind::RestoreCompleted { .. } => "RestoreCompleted",
            EventKind::RestoreFailed { .. } => "RestoreFailed",
            EventKind::TransferChosen { .. } => "TransferChosen",
            EventKind::TargetReleased { .. } => "TargetReleased",
            EventKind::SnapshotStarted { .. } => "SnapshotStarted",
            EventKind::SnapshotProgress { .. } => "SnapshotProgress",
            EventKind::SnapshotCompleted { .. } => "SnapshotCompleted",
            EventKind::StreamingStarted { .. } => "StreamingStarted",
            EventKind::Checkpoint { .. } => "Checkpoint",
            EventKind::LinkLost { .. } => "LinkLost",
            EventKind::LinkResumed { .. } => "LinkResumed",
            EventKind::CutoverStarted { .. } => "CutoverStarted",
            EventKind::CutoverCompleted { .. } => "CutoverCompleted",
            EventKind::VerificationCompleted { .. } => "VerificationCompleted",
            EventKind::MigrationCompleted { .. } => "MigrationCompleted",
            EventKind::MigrationFailed { .. } => "MigrationFailed",
            EventKind::MigrationCancelled { .. } => "MigrationCancelled",
        }
    }
}

impl EventKind {
    /// The backup this event is about, for the backup events (which may sit under a backup's own
    /// id, where no migration folds them).
    pub fn backup_id(&self) -> Option<Uuid> {
        match self {
            EventKind::BackupStarted { backup_id, .. }
            | EventKind::BackupCompleted { backup_id, .. }
            | EventKind::BackupFailed { backup_id, .. }
            | EventKind::BackupDeleted { backup_id }
            | EventKind::RestoreStarted { backup_id, .. }
            | EventKind::RestoreCompleted { backup_id, .. }
            | EventKind::RestoreFailed { backup_id, .. } => Some(*backup_id),
            _ => None,
        }
    }
}

/// What a completed backup holds and how to check it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct BackupDetails {
    /// Redis version of the server backed up.
    pub server_version: String,
    pub rdb_version: u16,
    /// CRC-64/Jones of the file without its 8-byte trailer, in hex: the value Redis stores in that
    /// trailer (the CRC of a whole valid file, trailer included, is always 0).
    pub crc64: String,
    /// SHA-256 of the whole file, in hex.
    pub sha256: String,
    /// Keys per database (databases without keys are left out).
    pub databases: Vec<BackupDb>,
}

/// One database in a backup.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct BackupDb {
    pub db: u64,
    pub keys: u64,
}

/// A relay target's settings before Ferry changed them (none of them is a secret: a `masterauth`
/// the target already had is left as it was, and only the fact that Ferry generated one is kept).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct RelayTargetSettings {
    pub replica_read_only: String,
    pub repl_diskless_load: String,
    /// Ferry set a one-time `masterauth` because the target had none; it is cleared afterwards.
    pub masterauth_generated: bool,
}

/// Which connection an event is about.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum Link {
    Source,
    Target,
}

/// How a link came back: `partial` (PSYNC continued from the applied offset) or `full` (a new
/// snapshot was needed).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum ResumeKind {
    Partial,
    Full,
}

/// Outcome of one check, and of a whole report.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum CheckStatus {
    Pass,
    Warn,
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
    /// Builds a report whose status follows from its worst check.
    pub fn from_checks(checks: Vec<CheckResult>) -> Self {
        let worst = checks.iter().map(|c| c.status).max();
        let status = match worst {
            Some(CheckStatus::Fail) => ReportStatus::Failed,
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
