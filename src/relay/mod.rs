//! The master side of Redis replication: Ferry as the server a target replicates from.
//!
//! The RESTORE path makes the target parse commands and insert keys one by one; a replica loading
//! an RDB does the same work far more cheaply (it presizes its dictionaries and skips the
//! existence checks). So when the target can replicate, Ferry lets it: the target is told
//! `REPLICAOF <ferry> <port>`, Ferry accepts its connection here, and relays what the source
//! sends, byte for byte, while it watches the RDB go by for progress.
//!
//! Ferry presents the **source's** replication id and offsets: `+FULLRESYNC` and `+CONTINUE`
//! are the source's own replies to the target's own `PSYNC`, forwarded. So the target's psync2
//! offset *is* the applied offset, and after any break (Ferry restarted, a link dropped) the target
//! asks `PSYNC <replid> <offset>` again and the source decides, exactly as if the target were its
//! direct replica: exactly-once comes from Redis' own replication, not from Ferry's bookkeeping.
//!
//! Layout:
//! - [`hub`]: one listener per bind address, shared by every relay job of the process. A target
//!   is routed to its job by the password it authenticates with (its `masterauth`).
//! - [`handshake`]: the server side of the replica handshake (`PING`, `AUTH`, `REPLCONF …`,
//!   `PSYNC`), up to the request a job must answer.
//! - [`session`]: one accepted target: answers its `PSYNC`, frames the RDB (`$EOF:` diskless
//!   framing, whatever framing the source used), forwards the command stream, and reads back the
//!   target's `REPLCONF ACK`s and loading keep-alives.
//! - [`choice`]: when a relay is possible at all (a pure function, shared by validation and the
//!   engine).
//!
//! Like [`crate::replication`], the module knows nothing about jobs, events or HTTP.

pub mod choice;
mod handshake;
pub mod hub;
pub mod session;

pub use choice::{Choice, RelayFacts, TransferKind};
pub use hub::{Registration, RelayHub, RelaySettings};
pub use session::{TargetMessage, TargetSession};

use thiserror::Error;

/// What can go wrong on the relay's side of the protocol.
#[derive(Debug, Error)]
pub enum RelayError {
    #[error("cannot listen for relay targets on {addr}: {reason}; set [relay] bind in the config")]
    Bind { addr: String, reason: String },
    #[error("the relay listens on {bind}, which targets cannot connect to; set [relay] advertise to an address they can reach")]
    NoAdvertise { bind: String },
    #[error("`{0}` is not a valid [relay] address; write host:port (e.g. 10.0.0.5:6390)")]
    BadAddress(String),
    #[error("another relay job already authenticates targets with the same password; run the two one after the other, or use transfer restore for one of them")]
    SecretInUse,
    #[error("the target closed its replication connection ({during})")]
    Closed { during: &'static str },
    #[error("the target sent nothing for {secs}s ({during})")]
    Timeout { secs: u64, during: &'static str },
    #[error("protocol error from the target: {0}")]
    Protocol(String),
    #[error("i/o error on the relay connection: {0}")]
    Io(#[from] std::io::Error),
}

/// `len` random bytes from the OS, as lowercase hex (secrets and EOF marks).
pub fn random_hex(len: usize) -> std::io::Result<String> {
    use std::io::Read;
    let mut raw = vec![0u8; len.div_ceil(2)];
    std::fs::File::open("/dev/urandom")?.read_exact(&mut raw)?;
    let mut out = String::with_capacity(raw.len() * 2);
    for b in raw {
        out.push_str(&format!("{b:02x}"));
    }
    out.truncate(len);
    Ok(out)
}
