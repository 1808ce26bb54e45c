//! The lifecycle of a migration, in one place.
//!
//! ```text
//!   configured ──validate──► validating ──► validated ──start──► migrating{phase} ──► cutting_over ──► completed
//!       ▲                         │              │                   │                    │
//!       └────────PATCH────────────┴──────────────┤              (engine error)            │
//!                                 └► validation_failed               ▼                    ▼
//!                                                                  failed             cancelled (from any
//!                                                                                      non-final state)
//! ```
//!
//! [`allowed`] is the whole rule book: the commands in `jobs` ask it before they record anything,
//! and a refusal carries its answer, so a 409 can tell the client what it *may* do instead.

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

/// A command a client can send about a migration.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum Action {
    /// `PATCH /v1/migrations/{id}`
    Update,
    Validate,
    Start,
    Cutover,
    Cancel,
}

impl Action {
    pub fn as_str(self) -> &'static str {
        match self {
            Action::Update => "update",
            Action::Validate => "validate",
            Action::Start => "start",
            Action::Cutover => "cutover",
            Action::Cancel => "cancel",
        }
    }
}

/// The commands a job in `state` (of `mode`) accepts.
///
/// Validation is re-runnable until start, and a PATCH before start sends the job back to
/// `configured`. `validating` also accepts `validate`, because a validation interrupted by a
/// restart must be re-runnable; the command itself refuses a second *concurrent* validation.
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

#[cfg(test)]
mod tests {
    use super::*;

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
