//! The migration aggregate: its lifecycle, its commands, and (in [`fold`]) its view.
//!
//! ```text
//!   configured ──validate──► validating ──► validated ──start──► migrating{phase} ──► cutting_over ──► completed
//!       ▲                         │              │                   │                    │
//!       └────────PATCH────────────┴──────────────┤              (engine error)            │
//!                                 └► validation_failed               ▼                    ▼
//!                                                                  failed             cancelled (from any
//!                                                                                      non-final state)
//! ```
//! A final migration with a restore point may be rolled back (a restore of that backup).
//!
//! [`allowed`] is the whole rule book: [`decide`] asks it before it returns any event, and a
//! refusal carries its answer, so a 409 can tell the client what it *may* do instead.

mod fold;

pub use fold::{
    apply, fold_into, FoldError, LeaseView, Migration, MigrationView, Progress, RollbackView,
};

use uuid::Uuid;

use super::{Action, Refusal};
use crate::model::{AggregateType, EventKind, Link, ValidationReport};
use crate::spec::{MigrationSpec, TransferKind};

use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use crate::spec::Mode;

/// Where a migration is in its lifecycle.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum State {
    Configured,
    Validating,
    Validated,
    ValidationFailed,
    Migrating,
    CuttingOver,
    Completed,
    Failed,
    Cancelled,
}

impl State {
    /// Final states: nothing happens to the job any more.
    pub fn is_final(self) -> bool {
        matches!(self, State::Completed | State::Failed | State::Cancelled)
    }

    /// States in which the engine runs (and is resumed after a restart).
    pub fn is_running(self) -> bool {
        matches!(self, State::Migrating | State::CuttingOver)
    }

    pub fn as_str(self) -> &'static str {
        match self {
            State::Configured => "configured",
            State::Validating => "validating",
            State::Validated => "validated",
            State::ValidationFailed => "validation_failed",
            State::Migrating => "migrating",
            State::CuttingOver => "cutting_over",
            State::Completed => "completed",
            State::Failed => "failed",
            State::Cancelled => "cancelled",
        }
    }
}

impl std::fmt::Display for State {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// What a migrating job is doing.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum Phase {
    /// Taking a restore point of the target before the first write.
    Backup,
    /// Copying the source's RDB snapshot into the target.
    Snapshot,
    /// Applying the source's live writes (mode `live`).
    Streaming,
    /// Comparing source and target.
    Verifying,
}

/// The commands a job in `state` (of `mode`) accepts, before rollback is considered.
///
/// Validation is re-runnable until start, and a PATCH before start sends the job back to
/// `configured`. `validating` also accepts `validate`, because a validation interrupted by a
/// restart must be re-runnable; the service refuses a second *concurrent* validation.
/// Cutover only means something for a live migration: a snapshot completes by itself.
pub fn allowed(state: State, mode: Mode) -> Vec<Action> {
    use Action::*;
    match state {
        State::Configured | State::Validating | State::ValidationFailed => {
            vec![Update, Validate, Cancel]
        }
        State::Validated => vec![Update, Validate, Start, Cancel],
        State::Migrating if mode == Mode::Live => vec![Cutover, Cancel],
        State::Migrating | State::CuttingOver => vec![Cancel],
        State::Completed | State::Failed | State::Cancelled => vec![],
    }
}

/// Everything migration `m` accepts now: [`allowed`], plus `rollback` for a final migration that
/// has a restore point and no rollback running.
pub fn allowed_now(m: &Migration) -> Vec<Action> {
    let mut actions = allowed(m.view.state, m.view.mode);
    if rollback_blocker(m).is_none() {
        actions.push(Action::Rollback);
    }
    actions
}

/// Why `m` cannot be rolled back now, if it cannot.
fn rollback_blocker(m: &Migration) -> Option<String> {
    let v = &m.view;
    if !v.state.is_final() {
        return Some(format!(
            "it is {}; rollback is allowed once it is failed, cancelled or completed (cancel it first)",
            v.state
        ));
    }
    // A target that held no keys at the start has the "empty" restore point: rolling back
    // empties it.
    if v.backup_id.is_none() && m.target_keys_before != Some(0) {
        let why = if m.target_keys_before.is_none() {
            "the migration ended before its first write, so the target was never changed"
        } else if v.options.backup {
            "no restore point was taken"
        } else {
            "options.backup was false, so no restore point was taken"
        };
        return Some(format!("{why}; nothing is flushed without a restore point"));
    }
    if let Some(rollback) = v.rollback.as_ref().filter(|r| r.running) {
        return Some(format!(
            "it is being rolled back already (restore {}); wait for that restore to end",
            rollback.restore_id
        ));
    }
    None
}

/// What a client (or the engine, through the supervisor) asks of a migration.
#[derive(Debug, Clone, PartialEq)]
pub enum Command {
    /// A new spec before start (URLs with their real passwords are kept apart, in the credentials).
    Update {
        spec: Box<MigrationSpec>,
    },
    StartValidation,
    /// Records a report, unless the migration changed while the checks ran (`since_version`).
    CompleteValidation {
        report: ValidationReport,
        since_version: u64,
    },
    Start,
    /// The scheduler's start at `schedule.start_at` (`armed_for`: the instant its timer was set
    /// for; a schedule changed since is not started by an old timer), at `now`.
    StartScheduled {
        armed_for: chrono::DateTime<chrono::Utc>,
        now: chrono::DateTime<chrono::Utc>,
    },
    /// A cutover asked at `now`; outside the cutover window it needs `force`.
    Cutover {
        force: bool,
        now: chrono::DateTime<chrono::Utc>,
    },
    /// New rate limits for a running migration (`PATCH` of `options.limits`).
    ChangeLimits {
        limits: crate::spec::Limits,
    },
    /// `engine_running`: the supervisor was running an engine and has signalled it; the engine's
    /// end records `MigrationCancelled` then, so nothing is recorded now.
    Cancel {
        actor: String,
        engine_running: bool,
    },
    /// Restore the restore point with the new restore `restore_id`.
    Rollback {
        restore_id: Uuid,
    },
    /// Facts the engine reported while running.
    Report {
        facts: Vec<EventKind>,
    },
    /// The final fact of an engine run (`MigrationCompleted`, `MigrationFailed`, `MigrationCancelled`).
    End {
        fact: EventKind,
    },
    /// The rollback's restore ended.
    EndRollback {
        restore_id: Uuid,
        restored: bool,
    },
}

/// Decides `command` against `m`: the events to record, or a refusal naming what `m` allows.
///
/// Reports and ends that arrive after the migration became final are not refused (the engine
/// cannot be told no); they decide to record nothing.
pub fn decide(m: &Migration, command: Command) -> Result<Vec<EventKind>, Refusal> {
    let check = |action: Action| -> Result<(), Refusal> {
        if allowed(m.view.state, m.view.mode).contains(&action) {
            Ok(())
        } else {
            Err(refusal(m, action, None))
        }
    };
    match command {
        Command::Update { spec } => {
            check(Action::Update)?;
            Ok(vec![EventKind::MigrationUpdated { spec }])
        }
        Command::StartValidation => {
            check(Action::Validate)?;
            Ok(vec![EventKind::ValidationStarted {}])
        }
        Command::CompleteValidation {
            report,
            since_version,
        } => {
            if m.version != since_version {
                return Err(refusal(
                    m,
                    Action::Validate,
                    Some(format!(
                        "it changed while it was validated (it is {} now); validate it again",
                        m.view.state
                    )),
                ));
            }
            Ok(vec![EventKind::ValidationCompleted { report }])
        }
        Command::Start => {
            check(Action::Start)?;
            Ok(started(m, None))
        }
        Command::StartScheduled { armed_for, now } => {
            check(Action::Start)?;
            if m.view.schedule.start_at != Some(armed_for) {
                return Err(refusal(
                    m,
                    Action::Start,
                    Some(format!(
                        "its schedule changed since the start was set for {}",
                        armed_for.to_rfc3339()
                    )),
                ));
            }
            let late_secs = (now - armed_for).num_seconds().max(0) as u64;
            Ok(started(
                m,
                Some(EventKind::ScheduledStart {
                    start_at: armed_for,
                    late_secs,
                }),
            ))
        }
        Command::Cutover { force, now } => {
            check(Action::Cutover)?;
            let mut events = Vec::new();
            if let Some(window) = m.view.schedule.cutover_window {
                if !window.contains(now) {
                    if !force {
                        return Err(refusal(
                            m,
                            Action::Cutover,
                            Some(format!(
                                "it is outside the cutover window ({} to {}); cut over inside \
                                 it, or send {{\"force\": true}} to cut over now anyway \
                                 (recorded as CutoverForced)",
                                window.from.to_rfc3339(),
                                window.to.to_rfc3339()
                            )),
                        ));
                    }
                    events.push(EventKind::CutoverForced { window });
                }
            }
            events.push(EventKind::CutoverStarted {
                pause_source_writes: m.view.options.pause_source_writes_on_cutover,
            });
            Ok(events)
        }
        Command::ChangeLimits { limits } => {
            if !m.view.state.is_running() {
                return Err(refusal(
                    m,
                    Action::Update,
                    Some("limits change this way only while it runs".into()),
                ));
            }
            let relay = m.view.transfer.as_ref().map(|t| t.transfer) == Some(TransferKind::Relay);
            if limits.any() && relay {
                return Err(refusal(
                    m,
                    Action::Update,
                    Some(
                        "it runs as a relay (the target replicates through Ferry at its own \
                         pace), which rate limits cannot slow down"
                            .into(),
                    ),
                ));
            }
            Ok(vec![EventKind::LimitsChanged { limits }])
        }
        Command::Cancel {
            actor,
            engine_running,
        } => {
            check(Action::Cancel)?;
            if engine_running {
                return Ok(vec![]);
            }
            Ok(vec![EventKind::MigrationCancelled {
                reason: Some(format!("cancelled by {actor}")),
            }])
        }
        Command::Rollback { restore_id } => {
            if let Some(why) = rollback_blocker(m) {
                return Err(refusal(m, Action::Rollback, Some(why)));
            }
            let backup_id = m.view.backup_id.unwrap_or_default();
            Ok(vec![EventKind::RollbackRequested {
                restore_id,
                backup_id,
            }])
        }
        Command::Report { facts } if m.view.state.is_final() => {
            let _ = facts;
            Ok(vec![])
        }
        Command::Report { facts } => Ok(facts),
        Command::End { .. } if m.view.state.is_final() => Ok(vec![]),
        Command::End { fact } => Ok(vec![fact]),
        Command::EndRollback {
            restore_id,
            restored,
        } => Ok(vec![EventKind::RollbackEnded {
            restore_id,
            restored,
        }]),
    }
}

/// The events of a start: `MigrationStarted`, the scheduler's note when it started it, and a
/// `TlsVerificationSkipped` per end whose certificate is not checked.
fn started(m: &Migration, scheduled: Option<EventKind>) -> Vec<EventKind> {
    let spec = m.spec();
    let unchecked = [
        (Link::Source, spec.source.endpoint()),
        (Link::Target, Some(&spec.target)),
    ]
    .into_iter()
    .filter_map(|(link, endpoint)| {
        let endpoint = endpoint?;
        let skipped = endpoint.url.tls
            && endpoint
                .tls
                .as_ref()
                .is_some_and(|t| t.insecure_skip_verify);
        skipped.then(|| EventKind::TlsVerificationSkipped {
            link,
            addr: endpoint.url.addr(),
        })
    });
    std::iter::once(EventKind::MigrationStarted {})
        .chain(scheduled)
        .chain(unchecked)
        .collect()
}

/// The refusal of `action` by `m`, with what it allows now.
pub fn refusal(m: &Migration, action: Action, why: Option<String>) -> Refusal {
    Refusal::new(
        AggregateType::Migration,
        m.view.id,
        m.view.state.as_str(),
        action,
        allowed_now(m),
        why,
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::spec::Mode;

    #[test]
    fn start_is_allowed_only_after_a_passed_validation() {
        for state in [
            State::Configured,
            State::Validating,
            State::ValidationFailed,
            State::Migrating,
            State::CuttingOver,
            State::Completed,
            State::Failed,
            State::Cancelled,
        ] {
            assert!(
                !allowed(state, Mode::Snapshot).contains(&Action::Start),
                "{state:?}"
            );
        }
        assert!(allowed(State::Validated, Mode::Snapshot).contains(&Action::Start));
    }

    /// The whole rule book, state by state: what the API answers 202/200 to, and 409 otherwise.
    #[test]
    fn the_transition_table() {
        use Action::*;
        let table = [
            (
                State::Configured,
                Mode::Live,
                vec![Update, Validate, Cancel],
            ),
            (
                State::Validating,
                Mode::Live,
                vec![Update, Validate, Cancel],
            ),
            (
                State::ValidationFailed,
                Mode::Live,
                vec![Update, Validate, Cancel],
            ),
            (
                State::Validated,
                Mode::Live,
                vec![Update, Validate, Start, Cancel],
            ),
            (State::Migrating, Mode::Live, vec![Cutover, Cancel]),
            (State::Migrating, Mode::Snapshot, vec![Cancel]),
            (State::CuttingOver, Mode::Live, vec![Cancel]),
            (State::Completed, Mode::Live, vec![]),
            (State::Failed, Mode::Live, vec![]),
            (State::Cancelled, Mode::Snapshot, vec![]),
        ];
        for (state, mode, expected) in table {
            assert_eq!(allowed(state, mode), expected, "{state} ({mode:?})");
        }
    }

    #[test]
    fn final_states_allow_nothing_and_cutover_needs_live_mode() {
        assert!(allowed(State::Completed, Mode::Live).is_empty());
        assert!(allowed(State::Migrating, Mode::Live).contains(&Action::Cutover));
        assert!(!allowed(State::Migrating, Mode::Snapshot).contains(&Action::Cutover));
        assert!(!allowed(State::Migrating, Mode::Live).contains(&Action::Update));
    }
}
