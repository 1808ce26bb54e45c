//! The restore aggregate: one load of a backup into a server (a rollback is a restore too).
//!
//! ```text
//!   running ──► completed
//!      └──────► failed      (also at start-up, when a restart interrupted it: `interrupted`)
//! ```
//! A restore is accepted only after its target was looked at ([`begin`]): the server answers, the
//! conflict policy suits what it holds, and the backup fits under its `maxmemory`. So a refusal is
//! a 4xx at once, not a 202 that fails later. The backup's own state guards that one restore runs
//! at a time (see [`super::backup`]).

use chrono::{DateTime, Utc};
use serde::Serialize;
use utoipa::ToSchema;
use uuid::Uuid;

use super::backup::{self, Backup};
use super::{ErrorInfo, Refusal};
use crate::model::{Event, EventKind, ServerSummary};
use crate::spec::OnConflict;

/// Where a restore is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum RestoreState {
    Running,
    Completed,
    Failed,
}

impl RestoreState {
    pub fn as_str(self) -> &'static str {
        match self {
            RestoreState::Running => "running",
            RestoreState::Completed => "completed",
            RestoreState::Failed => "failed",
        }
    }
}

/// How far a running restore got (from its checkpoints, at most about once a second).
#[derive(Debug, Clone, Default, PartialEq, Serialize, ToSchema)]
pub struct RestoreProgress {
    pub rdb_bytes_read: u64,
    pub rdb_bytes_total: Option<u64>,
    pub keys_written: u64,
    pub keys_skipped: u64,
    /// Share of the file loaded, 0–100.
    pub percent: Option<f64>,
}

/// What a completed restore wrote.
#[derive(Debug, Clone, PartialEq, Serialize, ToSchema)]
pub struct RestoreOutcome {
    pub keys_written: u64,
    pub keys_skipped: u64,
    pub keys_expired: u64,
    pub duration_ms: u64,
    /// Empty collections in the file (older servers could write them): skipped, as Redis does.
    #[serde(default)]
    pub keys_empty: u64,
}

/// A restore, as `GET /v1/restores/{id}` shows it. This is the whole state of the aggregate.
#[derive(Debug, Clone, PartialEq, Serialize, ToSchema)]
#[schema(example = json!({"id": "01936f5e-9c1d-7e2f-8a3b-4c5d6e7f8091",
    "backup_id": "01936f5e-8a4b-7c2d-9e1f-0a1b2c3d4e5f", "target": "redis://default:***@10.0.0.3:6379",
    "on_conflict": "replace", "for_migration": null, "state": "running",
    "progress": {"rdb_bytes_read": 524288, "rdb_bytes_total": 1048576, "keys_written": 1200,
        "keys_skipped": 0, "percent": 50.0},
    "outcome": null, "error": null, "started_at": "2026-01-01T12:00:00Z", "completed_at": null}))]
pub struct Restore {
    pub id: Uuid,
    /// The backup loaded; `null` for the rollback of a migration whose target was empty at its
    /// start (that restore point is "empty": the target is flushed, nothing is loaded).
    pub backup_id: Option<Uuid>,
    /// The server restored into, password redacted.
    pub target: String,
    pub on_conflict: OnConflict,
    /// Set when this restore is the rollback of that migration.
    pub for_migration: Option<Uuid>,
    pub state: RestoreState,
    pub progress: RestoreProgress,
    /// Once completed.
    pub outcome: Option<RestoreOutcome>,
    /// Once failed.
    pub error: Option<ErrorInfo>,
    #[schema(value_type = String, format = DateTime)]
    pub started_at: DateTime<Utc>,
    #[schema(value_type = Option<String>, format = DateTime)]
    pub completed_at: Option<DateTime<Utc>>,
}

/// A restore the service wants to begin.
#[derive(Debug, Clone, PartialEq)]
pub struct Begin {
    /// The target URL, password redacted.
    pub target: String,
    pub on_conflict: OnConflict,
    pub for_migration: Option<Uuid>,
    /// The target is flushed before the load (a rollback): what it holds now does not matter.
    pub flush_first: bool,
}

/// Why a restore was not begun.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum BeginError {
    /// The backup does not allow a restore now (not completed, or being restored).
    #[error(transparent)]
    Refused(#[from] Refusal),
    /// The target cannot take this restore as asked; `field` names what to change.
    #[error("{detail}")]
    Unsuitable { field: &'static str, detail: String },
}

/// Decides whether `backup` may be restored into a target that holds `target`: the events that
/// begin the restore (recorded under its new id), or why not.
pub fn begin(
    backup: &Backup,
    request: &Begin,
    target: &ServerSummary,
) -> Result<Vec<EventKind>, BeginError> {
    backup::decide(backup, backup::Command::Restore)?;
    let file_dbs: Vec<u32> = backup
        .details
        .as_ref()
        .map(|d| {
            d.databases
                .iter()
                .filter(|db| db.keys > 0)
                .filter_map(|db| u32::try_from(db.db).ok())
                .collect()
        })
        .unwrap_or_default();
    if request.on_conflict == OnConflict::Fail && !request.flush_first {
        let clashing: Vec<(u32, u64)> = file_dbs
            .iter()
            .filter_map(|db| target.keys.get(db).map(|keys| (*db, *keys)))
            .filter(|(_, keys)| *keys > 0)
            .collect();
        if !clashing.is_empty() {
            let keys: u64 = clashing.iter().map(|(_, k)| k).sum();
            let dbs: Vec<String> = clashing.iter().map(|(db, _)| db.to_string()).collect();
            return Err(BeginError::Unsuitable {
                field: "on_conflict",
                detail: format!(
                    "the target already holds {keys} keys in database {} that the backup also \
                     writes, and on_conflict is `fail`: choose `replace` or `skip`, or empty \
                     those databases first",
                    dbs.join(", ")
                ),
            });
        }
    }
    if target.maxmemory > 0 {
        let kept = if request.flush_first {
            0
        } else {
            target.used_memory
        };
        // The file's size is a lower bound of what its keys take in memory.
        if kept.saturating_add(backup.bytes) > target.maxmemory {
            return Err(BeginError::Unsuitable {
                field: "target",
                detail: format!(
                    "the backup needs at least {} bytes of memory, but the target has maxmemory \
                     {} with {kept} bytes in use: raise maxmemory or free memory on the target",
                    backup.bytes, target.maxmemory
                ),
            });
        }
    }
    Ok(vec![EventKind::RestoreStarted {
        backup_id: backup.id,
        target: request.target.clone(),
        on_conflict: request.on_conflict,
        for_migration: request.for_migration,
    }])
}

/// The restore that rolls a migration back to an *empty* restore point: its target held no keys
/// when it started, so putting it back means emptying it. Nothing is loaded; the nil backup id
/// says so in the event.
pub fn begin_empty(request: &Begin) -> Vec<EventKind> {
    vec![EventKind::RestoreStarted {
        backup_id: Uuid::nil(),
        target: request.target.clone(),
        on_conflict: request.on_conflict,
        for_migration: request.for_migration,
    }]
}

/// What the supervisor reports about a restore.
#[derive(Debug, Clone, PartialEq)]
pub enum Command {
    Progress {
        rdb_bytes_read: u64,
        rdb_bytes_total: Option<u64>,
        keys_written: u64,
        keys_skipped: u64,
    },
    Complete(RestoreOutcome),
    Fail {
        code: String,
        message: String,
    },
}

/// Decides a report: recorded while the restore runs, dropped once it has ended.
pub fn decide(r: &Restore, command: Command) -> Vec<EventKind> {
    if r.state != RestoreState::Running {
        return vec![];
    }
    let backup_id = r.backup_id.unwrap_or_default();
    vec![match command {
        Command::Progress {
            rdb_bytes_read,
            rdb_bytes_total,
            keys_written,
            keys_skipped,
        } => EventKind::RestoreProgress {
            backup_id,
            rdb_bytes_read,
            rdb_bytes_total,
            keys_written,
            keys_skipped,
        },
        Command::Complete(o) => EventKind::RestoreCompleted {
            backup_id,
            keys_written: o.keys_written,
            keys_skipped: o.keys_skipped,
            keys_expired: o.keys_expired,
            duration_ms: o.duration_ms,
            keys_empty: o.keys_empty,
        },
        Command::Fail { code, message } => EventKind::RestoreFailed {
            backup_id,
            code,
            message,
        },
    }]
}

/// Starts the state from `RestoreStarted`. A restore recorded before restores had ids of their
/// own sits under its backup's id; a later one of the same backup starts it afresh.
pub fn create(event: &Event) -> Option<Restore> {
    let EventKind::RestoreStarted {
        backup_id,
        target,
        on_conflict,
        for_migration,
    } = &event.kind
    else {
        return None;
    };
    Some(Restore {
        id: event.aggregate_id,
        backup_id: (!backup_id.is_nil()).then_some(*backup_id),
        target: target.clone(),
        on_conflict: *on_conflict,
        for_migration: *for_migration,
        state: RestoreState::Running,
        progress: RestoreProgress::default(),
        outcome: None,
        error: None,
        started_at: event.at,
        completed_at: None,
    })
}

/// Folds one of the restore's events.
pub fn apply(r: &mut Restore, event: &Event) {
    match &event.kind {
        EventKind::RestoreStarted { .. } => {
            if let Some(fresh) = create(event) {
                *r = fresh;
            }
        }
        EventKind::RestoreProgress {
            rdb_bytes_read,
            rdb_bytes_total,
            keys_written,
            keys_skipped,
            ..
        } => {
            r.progress = RestoreProgress {
                rdb_bytes_read: *rdb_bytes_read,
                rdb_bytes_total: *rdb_bytes_total,
                keys_written: *keys_written,
                keys_skipped: *keys_skipped,
                percent: rdb_bytes_total
                    .filter(|t| *t > 0)
                    .map(|t| (*rdb_bytes_read as f64 * 100.0 / t as f64).min(100.0)),
            };
        }
        EventKind::RestoreCompleted {
            keys_written,
            keys_skipped,
            keys_expired,
            duration_ms,
            keys_empty,
            ..
        } => {
            r.state = RestoreState::Completed;
            r.progress.keys_written = *keys_written;
            r.progress.keys_skipped = *keys_skipped;
            r.progress.percent = Some(100.0);
            r.outcome = Some(RestoreOutcome {
                keys_written: *keys_written,
                keys_skipped: *keys_skipped,
                keys_expired: *keys_expired,
                duration_ms: *duration_ms,
                keys_empty: *keys_empty,
            });
            r.completed_at = Some(event.at);
        }
        EventKind::RestoreFailed { code, message, .. } => {
            r.state = RestoreState::Failed;
            r.error = Some(ErrorInfo {
                code: code.clone(),
                message: message.clone(),
            });
            r.completed_at = Some(event.at);
        }
        _ => {}
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::{AggregateType, BackupDb, BackupDetails};

    fn backup(dbs: &[(u64, u64)], bytes: u64) -> Backup {
        let id = Uuid::now_v7();
        let start = Event {
            seq: 1,
            aggregate_type: AggregateType::Backup,
            aggregate_id: id,
            at: Utc::now(),
            actor: "api".into(),
            kind: backup::begin(id, "s".into(), None, None).remove(0),
            chain: None,
        };
        let mut b = backup::create(&start).unwrap();
        let done = Event {
            kind: EventKind::BackupCompleted {
                backup_id: id,
                bytes,
                details: Some(BackupDetails {
                    server_version: "7.2.4".into(),
                    rdb_version: 11,
                    crc64: "0".into(),
                    sha256: "0".into(),
                    databases: dbs
                        .iter()
                        .map(|(db, keys)| BackupDb {
                            db: *db,
                            keys: *keys,
                        })
                        .collect(),
                }),
            },
            ..start
        };
        backup::apply(&mut b, &done);
        b
    }

    fn request(on_conflict: OnConflict, flush_first: bool) -> Begin {
        Begin {
            target: "redis://t:1".into(),
            on_conflict,
            for_migration: None,
            flush_first,
        }
    }

    #[test]
    fn fail_policy_is_refused_only_where_the_target_holds_keys_in_the_backups_databases() {
        let b = backup(&[(0, 10), (3, 2)], 100);
        let mut target = ServerSummary::default();
        target.keys.insert(5, 7);
        assert!(begin(&b, &request(OnConflict::Fail, false), &target).is_ok());
        target.keys.insert(3, 1);
        let err = begin(&b, &request(OnConflict::Fail, false), &target).unwrap_err();
        assert!(
            matches!(
                err,
                BeginError::Unsuitable {
                    field: "on_conflict",
                    ..
                }
            ),
            "{err}"
        );
        assert!(begin(&b, &request(OnConflict::Replace, false), &target).is_ok());
        assert!(begin(&b, &request(OnConflict::Fail, true), &target).is_ok());
    }

    #[test]
    fn a_backup_larger_than_the_targets_free_memory_is_refused() {
        let b = backup(&[(0, 1)], 1000);
        let target = ServerSummary {
            maxmemory: 1500,
            used_memory: 800,
            ..ServerSummary::default()
        };
        let err = begin(&b, &request(OnConflict::Replace, false), &target).unwrap_err();
        assert!(err.to_string().contains("maxmemory"), "{err}");
        assert!(begin(&b, &request(OnConflict::Replace, true), &target).is_ok());
    }
}
