//! The backup aggregate: an RDB copy of a server, taken (or uploaded), restorable, deletable.
//!
//! ```text
//!   running ──► completed ──delete──► deleted
//!      │            │ restore (one at a time: `restoring` names the running restore)
//!      └──► failed ─┴──delete──► deleted
//! ```
//! A capture reports `BackupProgress` checkpoints (at most about once a second), so the view's
//! `bytes` is folded from the log like everything else and survives a restart. A capture that a
//! restart interrupted is failed explicitly (`interrupted`) by the service at start-up.

use chrono::{DateTime, Utc};
use serde::Serialize;
use utoipa::ToSchema;
use uuid::Uuid;

use super::{Action, Refusal};
use crate::model::{AggregateType, BackupDetails, Event, EventKind, StoredBackup};

/// Where a backup is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum BackupStatus {
    Running,
    Completed,
    Failed,
    Deleted,
}

impl BackupStatus {
    pub fn as_str(self) -> &'static str {
        match self {
            BackupStatus::Running => "running",
            BackupStatus::Completed => "completed",
            BackupStatus::Failed => "failed",
            BackupStatus::Deleted => "deleted",
        }
    }
}

/// A backup, as `GET /v1/backups/{id}` shows it. This is the whole state of the aggregate.
#[derive(Debug, Clone, PartialEq, Serialize, ToSchema)]
pub struct Backup {
    pub id: Uuid,
    pub label: Option<String>,
    /// The server backed up (password redacted), or `upload`.
    pub server: String,
    /// The migration this is the restore point of.
    pub for_migration: Option<Uuid>,
    pub status: BackupStatus,
    /// Bytes stored (so far, while running: from the capture's last checkpoint).
    pub bytes: u64,
    /// Version, RDB version, checksums and keys per database, once completed.
    pub details: Option<BackupDetails>,
    pub error: Option<String>,
    /// The restore running from this backup now, if any (`GET /v1/restores/{id}`).
    pub restoring: Option<Uuid>,
    /// The latest restore from this backup.
    pub last_restore_id: Option<Uuid>,
    /// What the backup accepts now.
    pub allowed_actions: Vec<Action>,
    #[schema(value_type = String, format = DateTime)]
    pub created_at: DateTime<Utc>,
    #[schema(value_type = Option<String>, format = DateTime)]
    pub completed_at: Option<DateTime<Utc>>,
}

/// What the service asks of a backup.
#[derive(Debug, Clone, PartialEq)]
pub enum Command {
    /// The capture stored this many bytes so far.
    Progress {
        bytes: u64,
    },
    Complete {
        bytes: u64,
        details: BackupDetails,
    },
    Fail {
        code: String,
        message: String,
    },
    /// The file is removed (the service removes it only after this decision).
    Delete,
    /// May a restore begin? (The restore aggregate records it; see [`super::restore::begin`].)
    Restore,
    /// May the file be read?
    Download,
}

/// The events that begin a capture of `server` (redacted).
pub fn begin(
    id: Uuid,
    server: String,
    label: Option<String>,
    for_migration: Option<Uuid>,
) -> Vec<EventKind> {
    vec![EventKind::BackupStarted {
        backup_id: id,
        server,
        label,
        for_migration,
    }]
}

/// The events that record an uploaded file, already stored and checked.
pub fn uploaded(
    id: Uuid,
    label: Option<String>,
    bytes: u64,
    details: BackupDetails,
) -> Vec<EventKind> {
    vec![
        EventKind::BackupStarted {
            backup_id: id,
            server: "upload".into(),
            label,
            for_migration: None,
        },
        EventKind::BackupCompleted {
            backup_id: id,
            bytes,
            details: Some(details),
        },
    ]
}

/// What backup `b` accepts now.
pub fn allowed(b: &Backup) -> Vec<Action> {
    match (b.status, b.restoring) {
        (BackupStatus::Completed, None) => vec![Action::Restore, Action::Download, Action::Delete],
        (BackupStatus::Completed, Some(_)) => vec![Action::Download],
        (BackupStatus::Failed, _) => vec![Action::Delete],
        (BackupStatus::Running | BackupStatus::Deleted, _) => vec![],
    }
}

/// Decides `command` against `b`.
pub fn decide(b: &Backup, command: Command) -> Result<Vec<EventKind>, Refusal> {
    let id = b.id;
    let running = b.status == BackupStatus::Running;
    match command {
        // Reports of a capture that has ended (or was failed at a restart) are dropped.
        Command::Progress { .. } | Command::Complete { .. } | Command::Fail { .. } if !running => {
            Ok(vec![])
        }
        Command::Progress { bytes } => Ok(vec![EventKind::BackupProgress {
            backup_id: id,
            bytes,
        }]),
        Command::Complete { bytes, details } => Ok(vec![EventKind::BackupCompleted {
            backup_id: id,
            bytes,
            details: Some(details),
        }]),
        Command::Fail { code, message } => Ok(vec![EventKind::BackupFailed {
            backup_id: id,
            code,
            message,
        }]),
        Command::Delete if b.status == BackupStatus::Deleted => Ok(vec![]),
        Command::Delete => {
            check(b, Action::Delete).map(|()| vec![EventKind::BackupDeleted { backup_id: id }])
        }
        Command::Restore => check(b, Action::Restore).map(|()| vec![]),
        Command::Download => check(b, Action::Download).map(|()| vec![]),
    }
}

fn check(b: &Backup, action: Action) -> Result<(), Refusal> {
    if allowed(b).contains(&action) {
        return Ok(());
    }
    let why = match (b.status, b.restoring) {
        (BackupStatus::Completed, Some(restore)) => Some(format!(
            "it is being restored already (restore {restore}); wait for that restore to end"
        )),
        (BackupStatus::Running, _) => Some(format!(
            "it is still running; {} it when it has completed",
            action.as_str()
        )),
        (status, _) if action != Action::Delete => Some(format!(
            "it is {}, not completed: it has no file",
            status.as_str()
        )),
        _ => None,
    };
    Err(refusal(b, action, why))
}

/// The refusal of `action` by `b`, with what it allows now.
pub fn refusal(b: &Backup, action: Action, why: Option<String>) -> Refusal {
    Refusal::new(
        AggregateType::Backup,
        b.id,
        b.status.as_str(),
        action,
        allowed(b),
        why,
    )
}

/// The record a reader of the file needs, if `b` is completed.
pub fn stored(b: &Backup) -> Result<StoredBackup, Refusal> {
    match (&b.details, b.status) {
        (Some(details), BackupStatus::Completed) => Ok(StoredBackup {
            id: b.id,
            bytes: b.bytes,
            details: details.clone(),
        }),
        _ => Err(refusal(
            b,
            Action::Download,
            Some(format!(
                "it is {}, not completed: only a completed backup can be read",
                b.status.as_str()
            )),
        )),
    }
}

/// Starts the state from its first event (`BackupStarted` under the backup's own id).
pub fn create(event: &Event) -> Option<Backup> {
    let EventKind::BackupStarted {
        backup_id,
        server,
        label,
        for_migration,
    } = &event.kind
    else {
        return None;
    };
    let mut b = Backup {
        id: *backup_id,
        label: label.clone(),
        server: server.clone(),
        for_migration: *for_migration,
        status: BackupStatus::Running,
        bytes: 0,
        details: None,
        error: None,
        restoring: None,
        last_restore_id: None,
        allowed_actions: vec![],
        created_at: event.at,
        completed_at: None,
    };
    b.allowed_actions = allowed(&b);
    Some(b)
}

/// Folds one event: the backup's own, or a restore's (`event.aggregate_id` is the restore).
pub fn apply(b: &mut Backup, event: &Event) {
    match &event.kind {
        EventKind::BackupProgress { bytes, .. } => b.bytes = *bytes,
        EventKind::BackupCompleted { bytes, details, .. } => {
            b.status = BackupStatus::Completed;
            b.bytes = *bytes;
            b.details = details.clone();
            b.completed_at = Some(event.at);
        }
        EventKind::BackupFailed { message, .. } => {
            b.status = BackupStatus::Failed;
            b.error = Some(message.clone());
            b.completed_at = Some(event.at);
        }
        EventKind::BackupDeleted { .. } => b.status = BackupStatus::Deleted,
        EventKind::RestoreStarted { .. } => {
            b.restoring = Some(event.aggregate_id);
            b.last_restore_id = Some(event.aggregate_id);
        }
        EventKind::RestoreCompleted { .. } | EventKind::RestoreFailed { .. }
            if b.restoring == Some(event.aggregate_id) =>
        {
            b.restoring = None;
        }
        _ => {}
    }
    b.allowed_actions = allowed(b);
}

#[cfg(test)]
mod tests {
    use super::*;

    fn event(id: Uuid, kind: EventKind) -> Event {
        Event {
            seq: 1,
            aggregate_type: AggregateType::of_legacy(id, &kind),
            aggregate_id: id,
            at: Utc::now(),
            actor: "api".into(),
            kind,
            chain: None,
        }
    }

    fn completed() -> Backup {
        let id = Uuid::now_v7();
        let mut b = create(&event(
            id,
            begin(id, "redis://h:1".into(), None, None).remove(0),
        ))
        .unwrap();
        let details = BackupDetails {
            server_version: "7.2.4".into(),
            rdb_version: 11,
            crc64: "0".into(),
            sha256: "0".into(),
            databases: vec![],
        };
        for kind in decide(&b, Command::Complete { bytes: 9, details }).unwrap() {
            apply(&mut b, &event(id, kind));
        }
        b
    }

    #[test]
    fn progress_comes_from_events_and_stops_counting_once_ended() {
        let id = Uuid::now_v7();
        let mut b = create(&event(id, begin(id, "s".into(), None, None).remove(0))).unwrap();
        for kind in decide(&b, Command::Progress { bytes: 4096 }).unwrap() {
            apply(&mut b, &event(id, kind));
        }
        assert_eq!((b.status, b.bytes), (BackupStatus::Running, 4096));
        assert!(decide(&completed(), Command::Progress { bytes: 1 })
            .unwrap()
            .is_empty());
    }

    #[test]
    fn a_second_restore_is_refused_while_one_runs_and_allowed_after() {
        let mut b = completed();
        assert!(decide(&b, Command::Restore).is_ok());
        let restore = Uuid::now_v7();
        let started = EventKind::RestoreStarted {
            backup_id: b.id,
            target: "redis://t:1".into(),
            on_conflict: crate::spec::OnConflict::Fail,
            for_migration: None,
        };
        apply(&mut b, &event(restore, started));
        let refused = decide(&b, Command::Restore).unwrap_err();
        assert_eq!(refused.allowed, vec![Action::Download]);
        assert!(
            refused.detail.contains("being restored"),
            "{}",
            refused.detail
        );
        assert!(decide(&b, Command::Delete).is_err());
        let ended = EventKind::RestoreCompleted {
            backup_id: b.id,
            keys_written: 1,
            keys_skipped: 0,
            keys_expired: 0,
            duration_ms: 1,
            keys_empty: 0,
        };
        apply(&mut b, &event(restore, ended));
        assert!(decide(&b, Command::Restore).is_ok());
    }

    #[test]
    fn a_running_backup_cannot_be_deleted_or_read() {
        let id = Uuid::now_v7();
        let b = create(&event(id, begin(id, "s".into(), None, None).remove(0))).unwrap();
        assert!(decide(&b, Command::Delete).is_err());
        assert!(stored(&b).is_err());
        assert!(b.allowed_actions.is_empty());
    }
}
