//! The replica side of Redis replication: handshake, PSYNC, RDB framing, the command stream, ACKs.
//!
//! Ferry gets a consistent snapshot *and* every later write by asking the source to treat it as a
//! replica. The conversation (`handshake`) is: `AUTH` (through [`crate::transport`], shared with the admin client), `PING`, `REPLCONF listening-port`,
//! `REPLCONF capa eof capa psync2`, then `PSYNC ? -1` (first time) or `PSYNC <replid> <offset+1>`
//! (resume). The master answers `+FULLRESYNC <replid> <offset>` and sends an RDB, or `+CONTINUE`
//! and goes straight to the command stream. Old servers without PSYNC get `SYNC`.
//!
//! The RDB arrives framed one of two ways, and [`ReplicaLink`] hides which:
//! - disk-based: `$<len>\r\n` and exactly `len` bytes, with no trailing CRLF;
//! - diskless: `$EOF:<40 random bytes>\r\n`, the RDB, then the same 40 bytes. The mark may be split
//!   across reads, so the last 40 bytes received are held back until more data shows they are not
//!   the mark.
//!
//! While the master prepares the snapshot it sends bare `\n` keep-alives, which are skipped.
//!
//! After the RDB comes the command stream: RESP arrays, exactly what a replica would execute. The
//! replication *offset* counts their bytes (PING, SELECT and REPLCONF GETACK included), which is why
//! every [`ReplCommand`] carries the offset just after it. The link answers `REPLCONF GETACK`
//! itself and sends `REPLCONF ACK <offset>` about once a second; the offset it acknowledges is the
//! one the *caller* says it has applied ([`ReplicaLink::set_applied`]), never merely what arrived,
//! so the master's view of this replica never runs ahead of the target.
//!
//! The link knows nothing about jobs or targets: it yields [`LinkItem`]s and nothing else.

mod handshake;
mod link;

pub use handshake::{SyncStart, Transfer};
pub use link::{LinkConfig, LinkItem, ReplCommand, ReplicaLink};

use thiserror::Error;

/// Why the replication link could not be set up or broke.
#[derive(Debug, Error)]
pub enum LinkError {
    /// The socket could not be opened or authenticated ([`crate::transport`] says why).
    #[error("the source: {0}")]
    Connect(crate::transport::ConnectError),
    #[error("the source at {addr} refused authentication: {reason}")]
    Auth { addr: String, reason: String },
    /// PSYNC and SYNC were both refused (managed services often disable them).
    #[error("the source refused replication ({command}): {reason}; the source must allow PSYNC/SYNC and REPLCONF for this user")]
    Refused {
        command: &'static str,
        reason: String,
    },
    #[error("the source sent nothing for {secs}s ({during})")]
    Timeout { secs: u64, during: &'static str },
    #[error("the source closed the replication link ({during})")]
    Closed { during: &'static str },
    #[error("protocol error from the source: {0}")]
    Protocol(String),
    #[error("i/o error on the replication link: {0}")]
    Io(#[from] std::io::Error),
}
