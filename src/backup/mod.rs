//! Backups: RDB copies of a server, kept in `data_dir/backups/`, restorable into any server.
//!
//! A backup is taken the way a replica gets its first copy: Ferry connects to the server over the
//! replication link ([`crate::replication`]), asks for a full sync and stores the RDB the server
//! sends. That is a consistent point-in-time copy, taken by the server's own fork, with no
//! `SAVE` on the server's disk and no access to its filesystem.
//!
//! The pieces:
//! - [`file`]: writing a file so that a file with the final name is always complete and checked
//!   (parsed while it arrives, CRC-64 and SHA-256, fsync, rename).
//! - [`capture`]: the replication side, with the free-space check before anything is written.
//! - [`registry`]: backups as resources. Their facts are events in the same log as migrations
//!   (`BackupStarted`, `BackupCompleted`, `BackupFailed`, `BackupDeleted`, `Restore*`), recorded
//!   under the backup's own id and folded here into [`BackupView`]s.
//!
//! Restoring goes through [`crate::engine::load_rdb_file`], the migration's own snapshot path:
//! RESTORE where the target understands the payload, plain commands where it is older.
//!
//! A completed backup (taken or uploaded) can also be the *source* of a migration
//! (`source: {rdb: {backup_id}}`): see [`crate::jobs`]' `rdb_source` and
//! [`crate::engine::run_from_file`].

pub mod capture;
pub mod file;
pub mod registry;

pub use registry::{BackupLimits, BackupStatus, BackupView, Backups, RestoreView};

use crate::engine::EngineError;

/// Why a backup, restore or upload did not happen.
#[derive(Debug, thiserror::Error)]
pub enum BackupError {
    #[error("no backup {0}")]
    NotFound(uuid::Uuid),
    #[error("{0}")]
    Conflict(String),
    /// The file would not fit: the message says how much is needed and what is available.
    #[error("{0}")]
    NoSpace(String),
    #[error("the file is larger than the limit of {limit} bytes; raise backup_max_bytes (or upload_max_bytes for uploads) in the configuration")]
    TooLarge { limit: u64 },
    #[error("not a valid RDB file (byte {offset}): {message}")]
    Corrupt { offset: u64, message: String },
    #[error("{what}: {source}")]
    Io {
        what: String,
        #[source]
        source: std::io::Error,
    },
    #[error("the file was already finished")]
    Closed,
    #[error(transparent)]
    Engine(#[from] EngineError),
    #[error(transparent)]
    Store(#[from] crate::store::StoreError),
}

impl BackupError {
    pub(crate) fn io(what: impl Into<String>, source: std::io::Error) -> Self {
        BackupError::Io {
            what: what.into(),
            source,
        }
    }

    /// A stable code for `BackupFailed.code` / `RestoreFailed.code`.
    pub fn code(&self) -> &'static str {
        match self {
            BackupError::NotFound(_) => "not_found",
            BackupError::Conflict(_) => "conflict",
            BackupError::NoSpace(_) | BackupError::TooLarge { .. } => "no_space",
            BackupError::Corrupt { .. } => "corrupt_rdb",
            BackupError::Io { .. } | BackupError::Closed => "io_error",
            BackupError::Engine(e) => e.code(),
            BackupError::Store(_) => "store_error",
        }
    }
}
