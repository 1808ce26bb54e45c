//! The aggregates: migrations, backups and restores, each as typed state, one `decide` and one fold.
//!
//! This is where the rules live, and nothing here does I/O (no tokio, no sockets, no files, no
//! sled). Every aggregate has the same shape:
//!
//! - a typed state (`Migration`, `Backup`, `Restore`), whose view is what the API shows;
//! - `decide(&state, command) -> Result<Vec<EventKind>, Refusal>`: a command either becomes the
//!   facts to record, or is refused with what the state *does* allow ([`Refusal::allowed`]);
//! - `apply(&mut state, &event)`: the one fold, used at start-up and after every append, so what
//!   the API shows after a restart is what it showed before.
//!
//! The service layer ([`crate::jobs`]) holds one command lock per aggregate and runs each command
//! as lock → decide → append → fold. Facts that need I/O before a decision (what a target server
//! holds, whether a file fits) are gathered first and passed in as plain values.
//!
//! Some facts concern two aggregates: a restore's events also tell its backup that it is being
//! restored (so a second restore is refused), and a rollback is recorded both as the migration's
//! `RollbackRequested`/`RollbackEnded` and as the restore's own events.

pub mod backup;
pub mod lease;
pub mod migration;
pub mod restore;

use serde::{Deserialize, Serialize};
use thiserror::Error;
use utoipa::ToSchema;
use uuid::Uuid;

use crate::model::AggregateType;

/// A command a client can send. One vocabulary for every aggregate, so `allowed_actions` reads the
/// same wherever it appears.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum Action {
    /// `PATCH /v1/migrations/{id}`
    Update,
    Validate,
    Start,
    Cutover,
    Cancel,
    /// `POST /v1/migrations/{id}/rollback`: restore the target to the restore point.
    Rollback,
    /// `POST /v1/backups/{id}/restore`
    Restore,
    /// `GET /v1/backups/{id}/download`
    Download,
    /// `DELETE /v1/backups/{id}`
    Delete,
}

impl Action {
    pub fn as_str(self) -> &'static str {
        match self {
            Action::Update => "update",
            Action::Validate => "validate",
            Action::Start => "start",
            Action::Cutover => "cutover",
            Action::Cancel => "cancel",
            Action::Rollback => "rollback",
            Action::Restore => "restore",
            Action::Download => "download",
            Action::Delete => "delete",
        }
    }
}

/// A refused command: which aggregate, in which state, and what it allows instead. The API turns
/// it into a 409 with `state` and `allowed_actions`.
#[derive(Debug, Clone, PartialEq, Error)]
#[error("{detail}")]
pub struct Refusal {
    pub aggregate: AggregateType,
    pub id: Uuid,
    /// The state's name (`migrating`, `completed`, ...).
    pub state: &'static str,
    pub action: Action,
    pub allowed: Vec<Action>,
    /// What went wrong and what to do, for people.
    pub detail: String,
}

impl Refusal {
    /// A refusal because the state does not allow `action`; `why` adds the specific reason when
    /// the state alone does not say it.
    pub fn new(
        aggregate: AggregateType,
        id: Uuid,
        state: &'static str,
        action: Action,
        allowed: Vec<Action>,
        why: Option<String>,
    ) -> Refusal {
        let detail = match why {
            Some(why) => format!("cannot {} {aggregate} {id}: {why}", action.as_str()),
            None => format!(
                "cannot {} a {aggregate} that is {state}{}",
                action.as_str(),
                allowed_hint(&allowed)
            ),
        };
        Refusal {
            aggregate,
            id,
            state,
            action,
            allowed,
            detail,
        }
    }
}

fn allowed_hint(allowed: &[Action]) -> String {
    if allowed.is_empty() {
        "; it allows no action now".to_string()
    } else {
        let names: Vec<&str> = allowed.iter().map(|a| a.as_str()).collect();
        format!("; allowed now: {}", names.join(", "))
    }
}

/// Why something failed: a stable code and a message for people.
#[derive(Debug, Clone, PartialEq, Serialize, ToSchema)]
#[schema(example = json!({"code": "target_unreachable",
    "message": "cannot connect to 10.0.0.2:6379: connection refused"}))]
pub struct ErrorInfo {
    /// Stable, machine-readable reason.
    pub code: String,
    pub message: String,
}
