//! The migration's state and view: a fold of the migration's events.
//!
//! [`apply`] is the only place where a migration's state changes. It is called once per event,
//! both at start-up (folding the whole log) and after every append, so what the API shows after a
//! restart is exactly what it showed before. The fold is lenient on purpose: events are facts
//! that already happened (the commands enforced the rules when they recorded them), so it applies
//! them rather than second-guessing them. It refuses only what no log can mean: an event for a
//! migration that was never created, or a second creation.

use chrono::{DateTime, Utc};
use serde::Serialize;
use thiserror::Error;
use utoipa::ToSchema;
use uuid::Uuid;

mod limited;
mod progress;
mod scan;
mod shards;

pub use progress::Progress;
use progress::Rates;
pub use shards::ShardProgress;

use super::{allowed_now, Phase, State};
use crate::aggregate::{Action, ErrorInfo};
use crate::model::{
    Event, EventKind, LeaseOwner, PriorTransfer, ReportStatus, ResumeKind, ResumePoint,
    ValidationReport, VerificationReport,
};
use crate::spec::{Endpoint, MigrationSpec, Mode, Options, Schedule, TransferKind, Verify};

/// Which transfer a migration uses, and why (from its latest `TransferChosen` event).
#[derive(Debug, Clone, PartialEq, Serialize, ToSchema)]
#[schema(example = json!({"transfer": "relay", "reason": "auto: the target allows REPLICAOF and CONFIG, loads the source's RDB, may be emptied, and can reach Ferry, so it replicates through Ferry"}))]
pub struct TransferChoice {
    pub transfer: TransferKind,
    pub reason: String,
}

/// The migration's last rollback.
#[derive(Debug, Clone, PartialEq, Serialize, ToSchema)]
pub struct RollbackView {
    /// The restore that loads the restore point: `GET /v1/restores/{restore_id}`.
    pub restore_id: Uuid,
    /// The restore is still running.
    pub running: bool,
}

/// The writer that holds (or last held) the target's lease for this migration.
#[derive(Debug, Clone, PartialEq, Serialize, ToSchema)]
pub struct LeaseView {
    pub owner: LeaseOwner,
    #[schema(value_type = String, format = DateTime)]
    pub acquired_at: DateTime<Utc>,
    /// Taken by a restarted Ferry that resumed the migration (`owner.instance` says which).
    pub resumed: bool,
    /// Who held the lease before `force` took it over, if it did.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub took_over: Option<String>,
}

/// What `GET /v1/migrations/{id}` returns. Passwords in URLs are always `***`.
#[derive(Debug, Clone, PartialEq, Serialize, ToSchema)]
#[schema(example = json!({
    "id": "01936f5e-8a4b-7c2d-9e1f-0a1b2c3d4e5f", "name": "cache to new cluster", "state": "validated",
    "phase": null, "phase_detail": null, "mode": "snapshot",
    "source": {"url": "redis://default:***@10.0.0.1:6379"}, "target": {"url": "redis://10.0.0.2:6379"},
    "options": {"on_conflict": "fail", "backup": true, "verify": "sample",
        "pause_source_writes_on_cutover": true, "pause_during_verification": false, "auto_cutover": false,
        "transfer": "auto", "limits": {"max_bytes_per_sec": null, "max_ops_per_sec": null}},
    "schedule": {"start_at": null, "cutover_window": null}, "scheduled_start": null,
    "cutover_waits_until": null,
    "validation": {"status": "passed", "checks": [
        {"id": "source.connect", "status": "pass", "message": "connected to 10.0.0.1:6379"},
        {"id": "target.connect", "status": "pass", "message": "connected to 10.0.0.2:6379"}]},
    "progress": {"rdb_bytes_total": null, "rdb_bytes_read": null, "keys_written": null, "keys_skipped": null,
        "keys_total": null, "estimated": false, "commands_streamed": null, "lag_bytes": null,
        "lag_seconds": null, "apply_rate": null, "link_reconnects": null, "percent": null, "eta_seconds": null,
        "throttled_by": null, "lag_keys": null},
    "error": null, "allowed_actions": ["update", "validate", "start", "cancel"],
    "created_at": "2026-01-01T12:00:00Z", "updated_at": "2026-01-01T12:00:05Z",
    "started_at": null, "finished_at": null}))]
pub struct MigrationView {
    pub id: Uuid,
    pub name: Option<String>,
    pub state: State,
    /// Set while `migrating`.
    pub phase: Option<Phase>,
    /// What is happening now, in words: "waiting for the source's snapshot
    /// (repl-diskless-sync-delay 5 s …)", "copying the source's snapshot (… bytes)", "applying
    /// the source's writes as they happen", … Set while `migrating` or `cutting_over`.
    pub phase_detail: Option<String>,
    pub mode: Mode,
    /// `{url}` (password redacted) or `{rdb: {backup_id}}`.
    #[schema(value_type = crate::spec::SourceBody)]
    pub source: crate::spec::Source,
    pub target: Endpoint,
    pub options: Options,
    /// When it starts by itself and when it may cut over (`schedule` of the spec).
    pub schedule: Schedule,
    /// A validated migration waiting for `schedule.start_at`: when it starts by itself.
    #[schema(value_type = Option<String>, format = DateTime)]
    pub scheduled_start: Option<DateTime<Utc>>,
    /// The target has caught up, and `auto_cutover` waits for the cutover window to open then.
    #[schema(value_type = Option<String>, format = DateTime)]
    pub cutover_waits_until: Option<DateTime<Utc>>,
    /// The latest validation report, until the spec changes.
    pub validation: Option<ValidationReport>,
    /// The transfer the engine uses (`relay` or `restore`) and why; set once the migration runs.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub transfer: Option<TransferChoice>,
    pub progress: Progress,
    pub error: Option<ErrorInfo>,
    /// The restore point taken of the target before the first write (`options.backup` and a
    /// non-empty target).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub backup_id: Option<Uuid>,
    /// The outcome of the last `rollback`: `true` when the target was restored.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rolled_back: Option<bool>,
    /// The last rollback, when there was one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rollback: Option<RollbackView>,
    /// The writer holding the target's lease: who started or resumed this migration, on which
    /// Ferry instance.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub lease: Option<LeaseView>,
    /// What the filter left behind (`options.filter`): set once a filtered migration reports it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub filtered: Option<FilteredView>,
    // ---- dry run and ACL users (issue #19) ----
    /// The report of a dry run (`mode: dry_run`), once it has read the whole snapshot.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub dry_run_report: Option<Box<crate::model::dry_run::DryRunReport>>,
    /// The source's ACL users against the target's (`options.acl: copy | replace`), passwords
    /// redacted, as the migration found them before its first write.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub acl_users: Option<Box<crate::model::acl::AclDiffReport>>,
    /// What the migration accepts now (`POST /v1/migrations/{id}/<action>`; `update` is PATCH).
    pub allowed_actions: Vec<Action>,
    #[schema(value_type = String, format = DateTime)]
    pub created_at: DateTime<Utc>,
    #[schema(value_type = String, format = DateTime)]
    pub updated_at: DateTime<Utc>,
    /// When it was started (the last start, when it was validated again after a cancel).
    #[schema(value_type = Option<String>, format = DateTime)]
    pub started_at: Option<DateTime<Utc>>,
    /// When it became completed, failed or cancelled.
    #[schema(value_type = Option<String>, format = DateTime)]
    pub finished_at: Option<DateTime<Utc>>,
}

/// What a filtered migration left behind (from its last `KeysFiltered`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, ToSchema)]
pub struct FilteredView {
    /// Source keys the snapshot did not copy (outside the filter).
    pub snapshot_keys: u64,
    /// Stream commands not applied: every key they touch is outside the filter.
    pub stream_commands: u64,
}

/// The aggregate: the view plus what the supervisor needs and the API does not show.
#[derive(Debug, Clone, PartialEq)]
pub struct Migration {
    pub view: MigrationView,
    /// Number of events folded so far; changes with every event (used to detect concurrent change).
    pub version: u64,
    /// The last `seq` folded.
    pub last_seq: u64,
    /// Where a restarted engine continues: the last checkpoint since the last (re)start.
    pub resume: Option<ResumePoint>,
    pub verification: Option<VerificationReport>,
    /// The transfer an earlier run chose: a restarted engine keeps it (a relay's target is
    /// mid-replication and must be served or released, never restored into).
    pub transfer: Option<PriorTransfer>,
    /// The keys the target held before the first write (`TargetInventoried`); `Some(0)`: it
    /// was empty, so its restore point is "empty".
    pub target_keys_before: Option<u64>,
    /// `source.read: scan`: the source's `notify-keyspace-events` before Ferry set it, while not
    /// yet put back; a restarted engine puts this value back at its end.
    pub keyspace_notifications_before: Option<String>,
    /// A cluster source: where each shard continues (its last `Checkpoint`), by shard name.
    pub shard_resume: std::collections::BTreeMap<String, ResumePoint>,
    snapshot_started_at: Option<DateTime<Utc>>,
    /// Recent checkpoints, for the lag in seconds and the apply rate.
    rates: Rates,
    /// The last snapshot progress (time, keys, bytes): the rate since, against the limits.
    last_progress: Option<(DateTime<Utc>, u64, u64)>,
    /// The HA guard is slowing the writes down (`Throttled`, until `ThrottleLifted`).
    guard_throttled: bool,
}

impl Migration {
    /// The spec as recorded (URLs redacted).
    pub fn spec(&self) -> MigrationSpec {
        MigrationSpec {
            name: self.view.name.clone(),
            source: self.view.source.clone(),
            target: self.view.target.clone(),
            mode: self.view.mode,
            options: self.view.options.clone(),
            schedule: self.view.schedule,
        }
    }
}

/// Events that cannot belong to any migration's history.
#[derive(Debug, Error, PartialEq)]
pub enum FoldError {
    #[error("event {seq} ({kind}) belongs to migration {id}, which was never created")]
    NotCreated {
        seq: u64,
        id: Uuid,
        kind: &'static str,
    },
    #[error("event {seq} creates migration {id} a second time")]
    CreatedTwice { seq: u64, id: Uuid },
}

/// Folds one event into the migration it belongs to (`None` before its first event).
pub fn apply(state: Option<Migration>, event: &Event) -> Result<Migration, FoldError> {
    match (state, &event.kind) {
        (None, EventKind::MigrationCreated { spec }) => Ok(created(event, spec)),
        (None, kind) => Err(FoldError::NotCreated {
            seq: event.seq,
            id: event.aggregate_id,
            kind: kind.type_name(),
        }),
        (Some(_), EventKind::MigrationCreated { .. }) => Err(FoldError::CreatedTwice {
            seq: event.seq,
            id: event.aggregate_id,
        }),
        (Some(mut m), _) => {
            fold_into(&mut m, event);
            Ok(m)
        }
    }
}

fn created(event: &Event, spec: &MigrationSpec) -> Migration {
    let view = MigrationView {
        id: event.aggregate_id,
        name: spec.name.clone(),
        state: State::Configured,
        phase: None,
        phase_detail: None,
        mode: spec.mode,
        source: spec.source.clone(),
        target: spec.target.clone(),
        options: spec.options.clone(),
        schedule: spec.schedule,
        scheduled_start: None,
        cutover_waits_until: None,
        validation: None,
        transfer: None,
        progress: Progress::default(),
        error: None,
        backup_id: None,
        rolled_back: None,
        rollback: None,
        lease: None,
        filtered: None,
        dry_run_report: None,
        acl_users: None,
        allowed_actions: Vec::new(),
        created_at: event.at,
        updated_at: event.at,
        started_at: None,
        finished_at: None,
    };
    let mut m = Migration {
        view,
        version: 1,
        last_seq: event.seq,
        resume: None,
        verification: None,
        transfer: None,
        target_keys_before: None,
        keyspace_notifications_before: None,
        shard_resume: Default::default(),
        snapshot_started_at: None,
        rates: Rates::default(),
        last_progress: None,
        guard_throttled: false,
    };
    m.view.allowed_actions = allowed_now(&m);
    m
}

/// Applies an event to an existing migration, in place.
pub fn fold_into(m: &mut Migration, event: &Event) {
    apply_fact(m, event);
    m.view.allowed_actions = allowed_now(m);
}

fn apply_fact(m: &mut Migration, event: &Event) {
    m.version += 1;
    m.last_seq = event.seq;
    m.view.updated_at = event.at;
    let v = &mut m.view;
    match &event.kind {
        EventKind::MigrationCreated { .. } => {}
        EventKind::MigrationUpdated { spec } => {
            v.name = spec.name.clone();
            v.source = spec.source.clone();
            v.target = spec.target.clone();
            v.mode = spec.mode;
            v.options = spec.options.clone();
            v.schedule = spec.schedule;
            v.scheduled_start = None;
            v.state = State::Configured;
            v.validation = None;
        }
        EventKind::ValidationStarted {} => v.state = State::Validating,
        EventKind::ValidationCompleted { report } => {
            v.state = match report.status {
                ReportStatus::Failed => State::ValidationFailed,
                ReportStatus::Passed | ReportStatus::PassedWithWarnings => State::Validated,
            };
            v.scheduled_start = match v.state {
                State::Validated => v.schedule.start_at,
                _ => None,
            };
            v.validation = Some(report.clone());
        }
        EventKind::MigrationStarted {} => {
            v.state = State::Migrating;
            v.started_at = Some(event.at);
            v.dry_run_report = None;
            (v.phase, v.phase_detail) = if v.mode == Mode::DryRun {
                (
                    Some(Phase::Snapshot),
                    Some(
                        "dry run: connecting to the source (nothing is written to the target)"
                            .into(),
                    ),
                )
            } else if v.options.backup {
                (
                    Some(Phase::Backup),
                    Some(
                        "connecting; a restore point of the target is taken first if it holds                          keys"
                            .into(),
                    ),
                )
            } else {
                (
                    Some(Phase::Snapshot),
                    Some("connecting to the source".into()),
                )
            };
            v.progress = Progress::default();
            v.error = None;
            v.scheduled_start = None;
            v.cutover_waits_until = None;
            m.guard_throttled = false;
            m.last_progress = None;
            m.resume = None;
            m.rates.reset();
            m.target_keys_before = None;
        }
        EventKind::LeaseAcquired {
            owner,
            took_over,
            resumed,
            ..
        } => {
            v.lease = Some(LeaseView {
                owner: owner.clone(),
                acquired_at: event.at,
                resumed: *resumed,
                took_over: took_over.clone(),
            });
        }
        EventKind::TargetInventoried { keys } => m.target_keys_before = Some(*keys),
        EventKind::SourcePauseLapsed { .. } => {}
        // Recorded in the log (a cluster target's non-atomic transactions); the view has no
        // field for them yet.
        EventKind::TransactionSplit { .. } => {}
        EventKind::KeysFiltered {
            snapshot_keys,
            stream_commands,
        } => {
            v.filtered = Some(FilteredView {
                snapshot_keys: *snapshot_keys,
                stream_commands: *stream_commands,
            })
        }
        EventKind::DryRunCompleted { report } => {
            v.phase_detail = Some("dry run: snapshot read; report ready".into());
            let p = &mut v.progress;
            p.rdb_bytes_read = Some(report.rdb_bytes);
            p.rdb_bytes_total = Some(report.rdb_bytes);
            p.keys_total = Some(report.keys + report.keys_expired + report.keys_empty);
            p.estimated = false;
            v.dry_run_report = Some(report.clone());
        }
        EventKind::AclDiffed { report } => v.acl_users = Some(report.clone()),
        EventKind::AclCopied { .. } => {}
        EventKind::ScanStarted { .. }
        | EventKind::KeyspaceNotificationsSet { .. }
        | EventKind::KeyspaceNotificationsRestored { .. }
        | EventKind::ScanRedone { .. }
        | EventKind::ScanCheckpoint { .. } => scan::fold(m, &event.kind),
        EventKind::BackupCompleted { backup_id, .. } => {
            v.phase = Some(Phase::Snapshot);
            v.phase_detail = Some(format!(
                "restore point taken (backup {backup_id}); asking the source for its snapshot"
            ));
            v.backup_id = Some(*backup_id);
        }
        EventKind::RollbackRequested { restore_id, .. } => {
            v.rollback = Some(RollbackView {
                restore_id: *restore_id,
                running: true,
            });
        }
        EventKind::RollbackEnded {
            restore_id,
            restored,
        } => {
            v.rollback = Some(RollbackView {
                restore_id: *restore_id,
                running: false,
            });
            v.rolled_back = Some(*restored);
        }
        // Backup events under a migration's id are its restore point (above); restore events
        // there are rollbacks recorded before restores were aggregates of their own.
        EventKind::TlsVerificationSkipped { .. } => {}
        EventKind::BackupStarted { .. }
        | EventKind::BackupProgress { .. }
        | EventKind::BackupFailed { .. }
        | EventKind::BackupDeleted { .. }
        | EventKind::RestoreStarted { .. }
        | EventKind::RestoreProgress { .. } => {}
        EventKind::RestoreCompleted { .. } => v.rolled_back = Some(true),
        EventKind::RestoreFailed { .. } => v.rolled_back = Some(false),
        EventKind::TransferChosen {
            transfer,
            reason,
            relay_target,
        } => {
            v.transfer = Some(TransferChoice {
                transfer: *transfer,
                reason: reason.clone(),
            });
            m.transfer = Some(PriorTransfer {
                kind: *transfer,
                relay_target: relay_target.clone(),
            });
        }
        EventKind::TargetReleased { .. } => {}
        EventKind::SnapshotRequested {
            diskless,
            delay_secs,
            keys_estimate,
        } => {
            v.phase = Some(Phase::Snapshot);
            v.phase_detail = Some(progress::waiting_for_snapshot(*diskless, *delay_secs));
            v.progress.keys_total = *keys_estimate;
        }
        EventKind::SnapshotStarted {
            rdb_bytes_total,
            diskless,
            keys_total,
            ..
        } => {
            v.phase = Some(Phase::Snapshot);
            v.phase_detail = Some(progress::copying(*diskless, *rdb_bytes_total));
            let p = &mut v.progress;
            p.rdb_bytes_total = *rdb_bytes_total;
            // The relay counts the source's keys itself when its snapshot starts.
            if keys_total.is_some() {
                p.keys_total = *keys_total;
            }
            p.rdb_bytes_read = Some(0);
            p.keys_written = Some(0);
            p.keys_skipped = Some(0);
            p.percent = Some(0.0);
            p.estimated = rdb_bytes_total.is_none();
            p.eta_seconds = None;
            m.snapshot_started_at = Some(event.at);
            // A new snapshot invalidates any earlier checkpoint: the offset belongs to the old one.
            m.resume = None;
        }
        EventKind::SnapshotProgress {
            rdb_bytes_read,
            rdb_bytes_total,
            keys_written,
            keys_skipped,
            ..
        } => {
            let p = &mut v.progress;
            p.rdb_bytes_read = Some(*rdb_bytes_read);
            p.keys_written = Some(*keys_written);
            p.keys_skipped = Some(*keys_skipped);
            match rdb_bytes_total.filter(|t| *t > 0) {
                Some(total) => {
                    p.rdb_bytes_total = Some(total);
                    p.estimated = false;
                    p.percent = Some((*rdb_bytes_read as f64 * 100.0 / total as f64).min(100.0));
                }
                None => progress::estimate_snapshot(p),
            }
            p.eta_seconds = match (m.snapshot_started_at, p.percent) {
                (Some(started), Some(percent)) => progress::eta(started, event.at, percent),
                _ => None,
            };
            let now = (event.at, *keys_written + *keys_skipped, *rdb_bytes_read);
            limited::snapshot_progress(p, &v.options.limits, m.last_progress, now);
            limited::name_throttle(p, &v.options.limits, m.guard_throttled);
            m.last_progress = Some(now);
        }
        EventKind::SnapshotCompleted {
            rdb_bytes,
            keys_written,
            keys_skipped,
            keys_expired,
            ..
        } => {
            let p = &mut v.progress;
            p.rdb_bytes_read = Some(*rdb_bytes);
            p.rdb_bytes_total = Some(*rdb_bytes);
            p.keys_written = Some(*keys_written);
            p.keys_skipped = Some(*keys_skipped);
            p.keys_total = Some(keys_written + keys_skipped + keys_expired);
            p.estimated = false;
            p.percent = Some(100.0);
            p.eta_seconds = Some(0);
            v.phase = Some(match (v.mode, v.options.verify) {
                (Mode::Live, _) => Phase::Streaming,
                (Mode::Snapshot, Verify::None) => Phase::Snapshot,
                (Mode::Snapshot, _) => Phase::Verifying,
                (Mode::DryRun, _) => Phase::Snapshot,
            });
            v.phase_detail = Some(match v.phase {
                Some(Phase::Verifying) => format!(
                    "snapshot copied; comparing source and target (verify: {})",
                    verify_name(v.options.verify)
                ),
                Some(Phase::Streaming) => "snapshot copied; following the source's writes".into(),
                _ => "snapshot copied".into(),
            });
        }
        EventKind::StreamingStarted { .. } => {
            v.phase = Some(Phase::Streaming);
            v.phase_detail = Some(streaming_detail(v.options.auto_cutover));
            v.progress.commands_streamed = Some(0);
            m.rates.reset();
        }
        EventKind::Checkpoint {
            replid,
            applied_offset,
            commands_streamed,
            lag_bytes,
            ..
        } => {
            v.progress.commands_streamed = Some(*commands_streamed);
            v.progress.lag_bytes = *lag_bytes;
            m.rates.checkpoint(
                &mut v.progress,
                event.at,
                *applied_offset,
                *commands_streamed,
                *lag_bytes,
            );
            limited::name_throttle(&mut v.progress, &v.options.limits, m.guard_throttled);
            m.resume = Some(ResumePoint {
                replid: replid.clone(),
                applied_offset: *applied_offset,
            });
        }
        EventKind::LinkLost { link, cause } => {
            if v.state.is_running() {
                v.phase_detail = Some(format!(
                    "the {} link was lost ({cause}); reconnecting",
                    progress::link_name(*link)
                ));
            }
        }
        EventKind::LinkResumed { kind, .. } => {
            let p = &mut v.progress;
            p.link_reconnects = Some(p.link_reconnects.unwrap_or(0) + 1);
            m.rates.reset();
            if v.state.is_running() && *kind == ResumeKind::Partial {
                v.phase_detail = Some(streaming_detail(v.options.auto_cutover));
            }
        }
        EventKind::CutoverStarted {
            pause_source_writes,
        } => {
            v.cutover_waits_until = None;
            v.progress.throttled_by = None;
            v.state = State::CuttingOver;
            v.phase = None;
            v.phase_detail = Some(if *pause_source_writes {
                "cutting over: the source's writes are paused; waiting for the target to apply                  the last of them, then verifying"
                    .into()
            } else {
                "cutting over: waiting for the target to apply the source's writes up to now,                  then verifying"
                    .into()
            });
        }
        EventKind::CutoverCompleted { .. } => {}
        EventKind::VerificationCompleted { report } => m.verification = Some(report.clone()),
        EventKind::MigrationCompleted {} => {
            v.state = State::Completed;
            v.phase = None;
            v.phase_detail = None;
            v.finished_at = Some(event.at);
            v.progress.percent = Some(100.0);
            v.progress.eta_seconds = Some(0);
        }
        EventKind::MigrationFailed { code, message } => {
            v.state = State::Failed;
            v.phase = None;
            v.phase_detail = None;
            v.finished_at = Some(event.at);
            v.error = Some(ErrorInfo {
                code: code.clone(),
                message: message.clone(),
            });
        }
        EventKind::MigrationCancelled { .. } => {
            v.state = State::Cancelled;
            v.phase = None;
            v.phase_detail = None;
            v.finished_at = Some(event.at);
        }
        // ---- #19: rate limits, the HA guard, maintenance windows ----
        EventKind::LimitsChanged { .. }
        | EventKind::Throttled { .. }
        | EventKind::ThrottleLifted { .. }
        | EventKind::HaGuardBlind { .. }
        | EventKind::SourceBufferNearLimit { .. }
        | EventKind::ScheduledStart { .. }
        | EventKind::CutoverForced { .. }
        | EventKind::CutoverDeferred { .. }
        | EventKind::CutoverWindowMissed { .. } => limited::apply_fact(m, &event.kind),
        EventKind::ShardEvent { shard, event } => shards::fold(m, shard, event),
        EventKind::ShardFailedOver { to, .. } => shards::failed_over(m, to),
    }
}

fn streaming_detail(auto_cutover: bool) -> String {
    if auto_cutover {
        "applying the source's writes as they happen; cuts over by itself once the target has \
         caught up"
            .into()
    } else {
        "applying the source's writes as they happen; cut over when you are ready".into()
    }
}

fn verify_name(verify: Verify) -> &'static str {
    match verify {
        Verify::None => "none",
        Verify::Sample => "sample",
        Verify::Full => "full",
    }
}

#[cfg(test)]
mod tests;
