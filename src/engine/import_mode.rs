//! Valkey's import mode: a target that does not expire keys while Ferry writes them.
//!
//! Ferry copies keys with their absolute expiry and then replays the source's stream, in which
//! the *source* decides when a key is gone (it propagates a `DEL` when the key expires there). A
//! target that also expires keys on its own clock can drop a key a moment before a write that
//! still needs it arrives (a `PEXPIREAT` that extends it, an `HSET` on a hash that was about to
//! expire), and the copy diverges. Valkey 8.1+ has a switch for exactly this case, checked on
//! Valkey 9.1.2:
//!
//! - `CONFIG SET import-mode yes` stops the server from deleting expired keys, by active expiry or
//!   on access (`DBSIZE` keeps counting them); ordinary clients still see an expired key as
//!   missing.
//! - `CLIENT IMPORT-SOURCE ON` (refused with "Server is not in import mode" otherwise) marks a
//!   connection as the importer: it sees and changes expired keys as if they were alive, and a
//!   `RESTORE … ABSTTL` with a time already past still creates the key.
//!
//! Ferry turns the mode on before its first write when the target has it and it is off, marks
//! every writer connection, and turns it off again when the migration ends, however it ends. A
//! target that was already in import mode is left as it was. If Ferry itself dies, the mode
//! stays on until the job resumes and ends; the target then holds expired keys that no client
//! sees, and a `CONFIG SET import-mode no` expires them.
//!
//! Redis has no such mode; there the source's `DEL`s and the target's own expiry both apply,
//! which is what every Redis replica tool does.

use crate::client::{ClientError, Conn};
use crate::rdb::version::{Fork, ServerVersion};
use crate::transport::Peer;

/// Whether `target` has import mode, and whether this migration switched it on.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub(crate) struct ImportMode {
    /// Writer connections mark themselves as import sources.
    pub active: bool,
    /// Ferry turned the mode on and must turn it off at the end.
    pub owned: bool,
}

/// Turns import mode on if the target has it (Valkey 8.1+ with an `import-mode` setting that
/// `CONFIG` may change). Anything short of that means "no import mode", never a failure: the
/// migration is still correct without it, as it is on Redis.
pub(crate) async fn begin(target: &mut Conn, server: &ServerVersion) -> ImportMode {
    if !server.at_least(Fork::Valkey, 8, 1) {
        return ImportMode::default();
    }
    let current = match target.call(&["CONFIG", "GET", "import-mode"]).await {
        Ok(crate::resp::Frame::Array(items)) => items
            .get(1)
            .and_then(|value| value.as_bytes().map(|b| b.to_vec())),
        Ok(_) => None,
        Err(e) => {
            tracing::warn!(error = %e, "cannot read the target's import-mode; continuing without it");
            return ImportMode::default();
        }
    };
    match current.as_deref() {
        Some(b"yes") => ImportMode {
            active: true,
            owned: false,
        },
        Some(_) => match target
            .call_ok(&["CONFIG", "SET", "import-mode", "yes"])
            .await
        {
            Ok(_) => {
                tracing::info!("target import-mode switched on for the migration");
                ImportMode {
                    active: true,
                    owned: true,
                }
            }
            Err(e) => {
                tracing::warn!(error = %e, "cannot switch the target's import-mode on; continuing without it");
                ImportMode::default()
            }
        },
        None => ImportMode::default(),
    }
}

/// Marks a writer connection as the importer. A target that restarted lost the mode (it is a
/// runtime setting): it is switched on again first.
pub(crate) async fn mark_writer(conn: &mut Conn, mode: ImportMode) -> Result<(), ClientError> {
    if !mode.active {
        return Ok(());
    }
    if mode.owned {
        conn.call_ok(&["CONFIG", "SET", "import-mode", "yes"])
            .await?;
    }
    conn.call_ok(&["CLIENT", "IMPORT-SOURCE", "ON"]).await?;
    Ok(())
}

/// Switches the mode off again on a fresh connection (the migration's own may be gone). Best
/// effort: a target that cannot be reached is logged, and keeps the mode until someone turns
/// it off.
pub(crate) async fn end(target: &Peer, mode: ImportMode) {
    if !mode.owned {
        return;
    }
    let attempt = async {
        let mut conn = Conn::connect(target).await?;
        conn.call_ok(&["CONFIG", "SET", "import-mode", "no"]).await
    };
    match tokio::time::timeout(std::time::Duration::from_secs(10), attempt).await {
        Ok(Ok(_)) => tracing::info!("target import-mode switched off"),
        Ok(Err(e)) => {
            tracing::warn!(error = %e, "the target's import-mode is still on: run CONFIG SET import-mode no")
        }
        Err(_) => tracing::warn!(
            "the target did not answer within 10s: its import-mode is still on (CONFIG SET import-mode no)"
        ),
    }
}
