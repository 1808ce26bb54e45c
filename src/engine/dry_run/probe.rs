//! The dry run's write probe: a few thousand pipelined `RESTORE`s of a typical value into keys
//! under `ferry:probe:<migration id>:` (db 0), removed at once, even when the probe fails midway.
//! It measures how fast the target takes keys, which the read alone cannot tell.

use std::time::Instant;

use bytes::Bytes;
use uuid::Uuid;

use crate::client::Conn;
use crate::engine::error::EngineError;
use crate::engine::writer::{Restore, Writer, WriterConfig};
use crate::model::dry_run::ProbeReport;
use crate::spec::OnConflict;
use crate::transport::Peer;

/// How many keys the probe writes.
pub(crate) const PROBE_KEYS: u64 = 2000;
/// The probe's values stay within this size, whatever the data's typical size (a probe must be
/// short, and stay under any `proto-max-bulk-len`, whose minimum is 1 MB).
const MAX_PAYLOAD: u64 = 256 * 1024;
/// Keys per `DEL` when the probe's keys are removed.
const DEL_BATCH: u64 = 500;

/// The probe's key prefix for a migration.
pub(crate) fn prefix(id: Uuid) -> String {
    format!("ferry:probe:{id}:")
}

fn key(id: Uuid, n: u64) -> Bytes {
    Bytes::from(format!("{}{n}", prefix(id)))
}

/// A string value of `len` bytes as the RDB serializes it (length prefix, then the bytes): the
/// body of a type-0 DUMP payload.
fn rdb_string(len: u64) -> Vec<u8> {
    let mut out = Vec::with_capacity(len as usize + 5);
    if len < 64 {
        out.push(len as u8);
    } else if len < 16384 {
        out.push(0x40 | (len >> 8) as u8);
        out.push(len as u8);
    } else {
        out.push(0x80);
        out.extend_from_slice(&(len as u32).to_be_bytes());
    }
    out.extend((0..len).map(|i| b'a' + (i % 26) as u8));
    out
}

/// A probe that did not run: `options.write_probe: false` (`why` empty), or `why`.
pub(crate) fn not_run(id: Uuid, why: String) -> ProbeReport {
    ProbeReport {
        ran: false,
        keys_written: 0,
        keys_removed: 0,
        payload_bytes: 0,
        duration_ms: 0,
        prefix: prefix(id),
        error: (!why.is_empty()).then_some(why),
    }
}

/// Writes [`PROBE_KEYS`] values of `typical` bytes and removes them.
pub(crate) async fn run(
    target: &Peer,
    writer: WriterConfig,
    target_rdb: u16,
    id: Uuid,
    typical: u64,
) -> ProbeReport {
    let payload_bytes = typical.clamp(16, MAX_PAYLOAD);
    let raw = rdb_string(payload_bytes);
    let started = Instant::now();
    let written = write(target, writer, target_rdb, id, &raw).await;
    let duration_ms = started.elapsed().as_millis() as u64;
    let removed = remove(target, id).await;
    let (keys_written, error) = match written {
        Ok(n) => (n, None),
        Err((n, e)) => (n, Some(e.to_string())),
    };
    let (keys_removed, error) = match removed {
        Ok(n) => (n, error),
        Err(e) => (
            0,
            Some(format!(
                "{}the probe's keys could not be removed: {e}; delete the keys under {} by hand",
                error.map(|e| format!("{e}; ")).unwrap_or_default(),
                prefix(id)
            )),
        ),
    };
    ProbeReport {
        ran: true,
        keys_written,
        keys_removed,
        payload_bytes,
        duration_ms,
        prefix: prefix(id),
        error,
    }
}

/// The RESTOREs, pipelined through the migration's own writer; the keys written, also on error.
async fn write(
    target: &Peer,
    cfg: WriterConfig,
    target_rdb: u16,
    id: Uuid,
    raw: &[u8],
) -> Result<u64, (u64, EngineError)> {
    let conn = Conn::connect(target)
        .await
        .map_err(|e| (0, EngineError::target(e)))?;
    let mut writer = Writer::new(conn, cfg, OnConflict::Replace, 0);
    let written = |w: &Writer| {
        w.stats()
            .keys_written
            .load(std::sync::atomic::Ordering::Relaxed)
    };
    for n in 0..PROBE_KEYS {
        let key = key(id, n);
        let restore = Restore {
            db: 0,
            key: &key,
            type_byte: crate::rdb::types::STRING,
            raw_value: raw,
            rdb_version: target_rdb,
            expire_ms: None,
            replace: true,
            idle_secs: None,
            freq: None,
        };
        if let Err(e) = writer.restore(restore).await {
            return Err((written(&writer), e));
        }
    }
    match writer.drain().await {
        Ok(()) => Ok(written(&writer)),
        Err(e) => Err((written(&writer), e)),
    }
}

/// Deletes every key the probe may have written (whether it did or not), on a connection of its
/// own: the number actually removed.
pub(crate) async fn remove(target: &Peer, id: Uuid) -> Result<u64, EngineError> {
    let mut conn = Conn::connect(target).await.map_err(EngineError::target)?;
    conn.select(0).await.map_err(EngineError::target)?;
    let mut removed = 0;
    let mut n = 0;
    while n < PROBE_KEYS {
        let end = (n + DEL_BATCH).min(PROBE_KEYS);
        let mut del = vec![Bytes::from_static(b"DEL")];
        del.extend((n..end).map(|i| key(id, i)));
        removed += conn
            .call_ok(&del)
            .await
            .map_err(EngineError::target)?
            .as_int()
            .unwrap_or(0) as u64;
        n = end;
    }
    Ok(removed)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn string_lengths_use_the_rdb_length_encoding() {
        assert_eq!(rdb_string(3)[0], 3);
        assert_eq!(&rdb_string(300)[..2], &[0x41, 0x2c]);
        assert_eq!(&rdb_string(20000)[..5], &[0x80, 0, 0, 0x4e, 0x20]);
        assert_eq!(rdb_string(20000).len(), 20005);
    }
}
