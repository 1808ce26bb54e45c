//! The transfer engine: full sync, live streaming, cutover and verification.
//!
//! The engine is started by the `jobs` supervisor, one tokio task per migration. It never touches the
//! state that the API reads: everything it has to say goes out as [`EventKind`]s on the `events`
//! channel, in order, and the supervisor appends them to the log. When [`run`] returns, the
//! supervisor records the final fact: `MigrationCompleted` for `Ok`, `MigrationCancelled` for
//! [`EngineError::Cancelled`], `MigrationFailed` (with [`EngineError::code`]) otherwise.

use thiserror::Error;
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;
use uuid::Uuid;

use crate::spec::MigrationSpec;
use crate::store::EventKind;

/// Everything the engine needs to run one migration.
#[derive(Debug, Clone)]
pub struct EngineJob {
    pub migration_id: Uuid,
    /// The spec with real credentials (from the encrypted credential store, not from the log).
    pub spec: MigrationSpec,
    /// Where to continue, folded from the last `Checkpoint`; `None` for a fresh start.
    pub resume: Option<ResumePoint>,
}

/// The last durable progress of a job, as recorded in its `Checkpoint` events.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ResumePoint {
    pub replid: String,
    pub applied_offset: i64,
}

/// Signals from the API to a running engine.
#[derive(Debug, Clone, Default)]
pub struct Controls {
    /// Stop at the next safe point, release any source pause, return [`EngineError::Cancelled`].
    pub cancel: CancellationToken,
    /// Start the cutover (live mode). The supervisor has already recorded `CutoverStarted`.
    pub cutover: CancellationToken,
}

/// Channel on which the engine reports facts, in order.
pub type EventSender = mpsc::Sender<EventKind>;

#[derive(Debug, Error)]
pub enum EngineError {
    #[error("the transfer engine is not available in this build yet")]
    Unavailable,
    #[error("cancelled")]
    Cancelled,
}

impl EngineError {
    /// A stable, machine-readable code for `MigrationFailed.code`.
    pub fn code(&self) -> &'static str {
        match self {
            EngineError::Unavailable => "engine_unavailable",
            EngineError::Cancelled => "cancelled",
        }
    }
}

/// Runs one migration to its end. See the module docs for the contract.
pub async fn run(
    job: EngineJob,
    events: EventSender,
    controls: Controls,
) -> Result<(), EngineError> {
    let _ = (job, events, controls);
    Err(EngineError::Unavailable)
}
