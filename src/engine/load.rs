//! Loading an RDB *file* into a target: how a backup is restored and an uploaded dump imported.
//!
//! A file is just another [`RdbInput`]: it hands out 1 MiB chunks and then the end marker, and the
//! snapshot phase does the rest exactly as for a replication link (RESTORE, or plain commands for
//! an older target; the same `on_conflict` rules). So a restore is as faithful as a migration, and
//! a dump taken from a newer server still loads into an older one where the types allow it.

use std::path::Path;

use bytes::{Bytes, BytesMut};
use tokio::io::AsyncReadExt;

use super::error::EngineError;
use super::snapshot::{RdbInput, Snapshot};
use super::writer::Writer;
use super::{EventSender, Reporter, Servers, Tuning};
use crate::client::Conn;
use crate::redis_url::RedisUrl;
use crate::replication::LinkItem;
use crate::spec::OnConflict;

const CHUNK: usize = 1024 * 1024;

/// What a load wrote.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct LoadSummary {
    pub rdb_bytes: u64,
    pub keys_written: u64,
    pub keys_skipped: u64,
    pub keys_expired: u64,
    pub keys_rewritten: u64,
    pub duration_ms: u64,
}

/// An RDB file read in chunks.
struct FileInput {
    file: tokio::fs::File,
    read: u64,
    done: bool,
}

impl RdbInput for FileInput {
    fn next_buffered(&mut self) -> Result<Option<LinkItem>, EngineError> {
        Ok(None)
    }

    async fn next(&mut self) -> Result<LinkItem, EngineError> {
        if self.done {
            return Ok(LinkItem::RdbDone);
        }
        let mut buf = BytesMut::zeroed(CHUNK);
        let n = self
            .file
            .read(&mut buf)
            .await
            .map_err(|e| EngineError::Rdb(format!("reading the file failed: {e}")))?;
        if n == 0 {
            self.done = true;
            return Ok(LinkItem::RdbDone);
        }
        buf.truncate(n);
        self.read += n as u64;
        Ok(LinkItem::RdbChunk(Bytes::from(buf)))
    }

    fn rdb_bytes(&self) -> u64 {
        self.read
    }
}

/// Loads the RDB file at `path` into `target`, reporting progress on `events` (as
/// `SnapshotProgress`). The file must be a complete RDB: a truncated one fails at its end.
pub async fn load_rdb_file(
    path: &Path,
    target: &RedisUrl,
    on_conflict: OnConflict,
    events: EventSender,
    tuning: Tuning,
) -> Result<LoadSummary, EngineError> {
    let file = tokio::fs::File::open(path)
        .await
        .map_err(|e| EngineError::Rdb(format!("cannot open {}: {e}", path.display())))?;
    let total = file.metadata().await.ok().map(|m| m.len());
    let mut admin = Conn::connect(target).await.map_err(EngineError::target)?;
    let servers = Servers::of_target(&mut admin, false)
        .await
        .map_err(EngineError::target)?;
    let writer_conn = Conn::connect(target).await.map_err(EngineError::target)?;
    let mut writer = Writer::new(writer_conn, tuning.writer, on_conflict, 0);
    let mut input = FileInput {
        file,
        read: 0,
        done: false,
    };
    let reporter = Reporter { events };
    let summary = Snapshot {
        link: &mut input,
        writer: &mut writer,
        target: &mut admin,
        reporter: &reporter,
        tuning: &tuning,
        servers: &servers,
        on_conflict,
        rdb_bytes_total: total,
        offset_key: None,
        written: None,
    }
    .run()
    .await?;
    Ok(LoadSummary {
        rdb_bytes: summary.rdb_bytes,
        keys_written: summary.keys_written,
        keys_skipped: summary.keys_skipped,
        keys_expired: summary.keys_expired,
        keys_rewritten: summary.keys_rewritten,
        duration_ms: summary.duration.as_millis() as u64,
    })
}

/// Empties `target` before a rollback's load: every database, and the function libraries where
/// the server has them.
pub async fn flush_target(target: &RedisUrl) -> Result<(), EngineError> {
    let mut conn = Conn::connect(target).await.map_err(EngineError::target)?;
    conn.call_ok(&["FLUSHALL", "SYNC"])
        .await
        .map_err(EngineError::target)?;
    // Redis < 7.0 has no functions: its error reply to FUNCTION means there is nothing to flush.
    conn.call(&["FUNCTION", "FLUSH", "SYNC"])
        .await
        .map_err(EngineError::target)?;
    Ok(())
}
