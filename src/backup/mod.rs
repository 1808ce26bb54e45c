//! Backup I/O: taking an RDB copy of a server, and writing RDB files that are always whole.
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
//!
//! This module only does the I/O. Backups as resources (their states, their rules, their events)
//! are the backup aggregate ([`crate::aggregate::backup`]); the supervisor runs a capture as a
//! task and reports its progress and end through the service. Restoring is the engine's snapshot
//! path ([`crate::engine::load_rdb_file`]).

pub mod capture;
pub mod file;

use crate::client::ClientError;
use crate::replication::LinkError;

/// Why a capture or a file did not happen.
#[derive(Debug, thiserror::Error)]
pub enum BackupError {
    /// The server could not be asked about itself.
    #[error("the server: {0}")]
    Server(#[from] ClientError),
    /// The replication link failed or the server refused it.
    #[error(transparent)]
    Link(#[from] LinkError),
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
    /// A stored file differs from its record (damaged, truncated or replaced).
    #[error("{0}")]
    Mismatch(String),
}

impl BackupError {
    pub(crate) fn io(what: impl Into<String>, source: std::io::Error) -> Self {
        BackupError::Io {
            what: what.into(),
            source,
        }
    }

    /// A stable code for `BackupFailed.code`.
    pub fn code(&self) -> &'static str {
        match self {
            BackupError::Server(e) if e.is_auth() => "auth_failed",
            BackupError::Server(e) if e.is_connect() => "source_unreachable",
            BackupError::Server(_) => "source_error",
            BackupError::Link(LinkError::Refused { .. }) => "replication_refused",
            BackupError::Link(LinkError::Auth { .. }) => "auth_failed",
            BackupError::Link(LinkError::Connect(_)) => "source_unreachable",
            BackupError::Link(_) => "source_link_lost",
            BackupError::NoSpace(_) | BackupError::TooLarge { .. } => "no_space",
            BackupError::Corrupt { .. } => "corrupt_rdb",
            BackupError::Io { .. } | BackupError::Closed => "io_error",
            BackupError::Mismatch(_) => "backup_unproven",
        }
    }
}
