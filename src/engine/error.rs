//! Why a migration stopped, with a stable machine-readable code per reason.

use thiserror::Error;

use crate::client::ClientError;
use crate::replication::LinkError;

/// Renders a key for messages: lossy UTF-8, cut at 200 characters (keys may be binary and large).
pub fn show_key(key: &[u8]) -> String {
    let cut = &key[..key.len().min(200)];
    let mut s = String::from_utf8_lossy(cut).into_owned();
    if key.len() > cut.len() {
        s.push('…');
    }
    s
}

#[derive(Debug, Error)]
pub enum EngineError {
    #[error("the transfer engine is not available in this build yet")]
    Unavailable,
    #[error("cancelled")]
    Cancelled,
    #[error("the source is unreachable: {0}")]
    SourceUnreachable(String),
    #[error("the target is unreachable: {0}")]
    TargetUnreachable(String),
    #[error("authentication failed: {0}")]
    AuthFailed(String),
    /// PSYNC/SYNC refused: a managed service, or an ACL user without +psync +replconf.
    #[error("{0}")]
    ReplicationRefused(String),
    #[error("the replication link to the source broke: {0}")]
    SourceLinkLost(String),
    #[error("a call to the source failed: {0}")]
    SourceError(String),
    #[error("the connection to the target broke: {0}")]
    TargetLinkLost(String),
    #[error("key `{key}` (db {db}) already exists on the target; choose on_conflict replace, skip or flush, or remove the key")]
    BusyKey { db: u32, key: String },
    #[error("the target refused {command} for key `{key}` (db {db}): {message}")]
    TargetError {
        db: u32,
        key: String,
        command: String,
        message: String,
    },
    #[error("the target refused the replicated command {command} (db {db}): {message}")]
    StreamApplyFailed {
        db: u32,
        command: String,
        message: String,
    },
    #[error("the snapshot from the source is unreadable: {0}")]
    Rdb(String),
    #[error("cannot migrate this to the target: {0}")]
    Unsupported(String),
    /// `acl: copy` met a target user with other rules, or the target refused a user's rules.
    #[error("ACL users: {0}")]
    AclRefused(String),
    #[error("verification found differences: {0}")]
    VerificationFailed(String),
    #[error("cutover: the target did not catch up with the source within {secs}s (applied {applied}, source {source_offset})")]
    CutoverTimeout {
        secs: u64,
        applied: i64,
        source_offset: i64,
    },
    #[error("the event channel closed: nobody records this migration any more")]
    EventsClosed,
    /// The source cannot continue from the applied offset (or the target lost data): the engine
    /// redoes the snapshot. Only escapes the engine if redoing keeps failing.
    #[error("a full resync is needed: {0}")]
    ResyncNeeded(String),
    /// A snapshot must be redone, but Ferry cannot tell which target keys are its own (no
    /// inventory of the target before the first write): redoing could delete or overwrite keys
    /// the conflict policy keeps.
    #[error("{0}")]
    RedoUnprovable(String),
    /// The file to load could not be proven whole and unchanged; nothing was flushed or written.
    #[error("{0}")]
    Unproven(String),
    /// Another writer took the target's lease; this one stopped.
    #[error("{0}")]
    LeaseLost(String),
    /// The source sent a command that would destroy target data the conflict policy keeps.
    #[error("{0}")]
    UnsafeCommand(String),
    /// A stream command the migration's filter cannot apply whole (keys on both sides, keys it
    /// cannot read, a flush): stopped before it, naming it.
    #[error("{0}")]
    Filtered(String),
    /// A slot of a Redis Cluster source moved between its shards during the migration: each
    /// shard is replicated on its own, so the order of the move's writes across two shards is
    /// not known, and going on could lose keys silently.
    #[error("the source cluster was resharded during the migration: slot {slot} {detail}; start the migration again once the resharding is done")]
    SourceResharded { slot: u16, detail: String },
}

impl EngineError {
    /// A stable, machine-readable code for `MigrationFailed.code`.
    pub fn code(&self) -> &'static str {
        match self {
            EngineError::Unavailable => "engine_unavailable",
            EngineError::Cancelled => "cancelled",
            EngineError::SourceUnreachable(_) => "source_unreachable",
            EngineError::TargetUnreachable(_) => "target_unreachable",
            EngineError::AuthFailed(_) => "auth_failed",
            EngineError::ReplicationRefused(_) => "replication_refused",
            EngineError::SourceLinkLost(_) => "source_link_lost",
            EngineError::SourceError(_) => "source_error",
            EngineError::TargetLinkLost(_) => "target_link_lost",
            EngineError::BusyKey { .. } => "busy_key",
            EngineError::TargetError { .. } => "target_error",
            EngineError::StreamApplyFailed { .. } => "stream_apply_failed",
            EngineError::Rdb(_) => "rdb_unreadable",
            EngineError::Unsupported(_) => "unsupported",
            EngineError::AclRefused(_) => "acl_refused",
            EngineError::VerificationFailed(_) => "verification_failed",
            EngineError::CutoverTimeout { .. } => "cutover_timeout",
            EngineError::EventsClosed => "events_closed",
            EngineError::ResyncNeeded(_) => "resync_needed",
            EngineError::RedoUnprovable(_) => "redo_unprovable",
            EngineError::Unproven(_) => "backup_unproven",
            EngineError::LeaseLost(_) => "lease_lost",
            EngineError::UnsafeCommand(_) => "unsafe_command",
            EngineError::Filtered(_) => "filtered_command",
            EngineError::SourceResharded { .. } => "source_resharded",
        }
    }

    /// Classifies a failure of the replication link (setup or steady state).
    pub(crate) fn from_link(e: LinkError) -> Self {
        match e {
            LinkError::Connect { .. } => EngineError::SourceUnreachable(e.to_string()),
            LinkError::Auth { .. } => EngineError::AuthFailed(e.to_string()),
            LinkError::Refused { .. } => EngineError::ReplicationRefused(format!(
                "{e}; or read it without replication: `source.read: \"scan\"` (SCAN + DUMP, \
                 keyspace notifications; weaker, see validation's source.read)"
            )),
            other => EngineError::SourceLinkLost(other.to_string()),
        }
    }

    /// Classifies a failure of an admin connection to the source.
    pub(crate) fn source(e: ClientError) -> Self {
        match e {
            _ if e.is_auth() => EngineError::AuthFailed(e.to_string()),
            ClientError::Connect(_) => EngineError::SourceUnreachable(e.to_string()),
            other => EngineError::SourceError(other.to_string()),
        }
    }

    /// Classifies a failure of a connection to the target.
    pub(crate) fn target(e: ClientError) -> Self {
        match e {
            _ if e.is_auth() => EngineError::AuthFailed(e.to_string()),
            ClientError::Connect(_) => EngineError::TargetUnreachable(e.to_string()),
            other => EngineError::TargetLinkLost(other.to_string()),
        }
    }
}
