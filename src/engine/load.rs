//! Loading an RDB *file* into a target: how a backup is restored and an uploaded dump imported.
//!
//! A file is just another [`RdbInput`]: it hands out 1 MiB chunks and then the end marker, and the
//! snapshot phase does the rest exactly as for a replication link (RESTORE, or plain commands for
//! an older target; the same `on_conflict` rules). So a restore is as faithful as a migration, and
//! a dump taken from a newer server still loads into an older one where the types allow it.

use bytes::{Bytes, BytesMut};
use tokio::io::AsyncReadExt;

use super::error::EngineError;
use super::snapshot::{RdbInput, Snapshot};
use super::writer::Writer;
use super::{EventSender, Reporter, Servers, Tuning};
use crate::client::lease::LeaseToken;
use crate::client::Conn;
use crate::model::Link;
use crate::replication::LinkItem;
use crate::shape::Shape;
use crate::spec::OnConflict;
use crate::transport::Peer;

const CHUNK: usize = 1024 * 1024;

/// What a load wrote.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct LoadSummary {
    pub rdb_bytes: u64,
    pub keys_written: u64,
    pub keys_skipped: u64,
    pub keys_expired: u64,
    pub keys_rewritten: u64,
    /// Empty collections in the file, skipped.
    pub keys_empty: u64,
    /// Keys a migration's filter left behind (0 for a restore).
    pub keys_filtered: u64,
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

/// Loads the RDB `file` (open, at its start: the caller has proven it, see
/// [`crate::backup::file::prove`]) into `target`, reporting progress on `events` (as
/// `SnapshotProgress`). `lease` is the writer's lease, put back after a `flush` of db 0.
pub async fn load_rdb_file(
    file: tokio::fs::File,
    target: &Peer,
    on_conflict: OnConflict,
    lease: Option<&LeaseToken>,
    events: EventSender,
    tuning: Tuning,
    throttle: Option<std::sync::Arc<super::rate::Throttle>>,
) -> Result<LoadSummary, EngineError> {
    let everything = Shape::default();
    load_shaped(
        file,
        target,
        on_conflict,
        lease,
        events,
        tuning,
        throttle,
        &everything,
    )
    .await
}

/// [`load_rdb_file`] through a migration's filter, db map and renames.
#[allow(clippy::too_many_arguments)]
pub(super) async fn load_shaped(
    file: tokio::fs::File,
    target: &Peer,
    on_conflict: OnConflict,
    lease: Option<&LeaseToken>,
    events: EventSender,
    tuning: Tuning,
    throttle: Option<std::sync::Arc<super::rate::Throttle>>,
    shape: &Shape,
) -> Result<LoadSummary, EngineError> {
    let total = file.metadata().await.ok().map(|m| m.len());
    let mut admin = Conn::connect(target).await.map_err(EngineError::target)?;
    super::topology::refuse_cluster(&mut admin, Link::Target, "loading an RDB file").await?;
    let servers = Servers::of_target(&mut admin, false)
        .await
        .map_err(EngineError::target)?;
    let writer_conn = Conn::connect(target).await.map_err(EngineError::target)?;
    let mut writer = Writer::new(writer_conn, tuning.writer, on_conflict, 0);
    if let Some(throttle) = throttle {
        // A migration from a file obeys its limits; a restore (a rollback) runs at full speed.
        writer.set_throttle(throttle);
    }
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
        preexisting: None,
        lease,
        shape,
    }
    .run()
    .await?;
    Ok(LoadSummary {
        rdb_bytes: summary.rdb_bytes,
        keys_written: summary.keys_written,
        keys_skipped: summary.keys_skipped,
        keys_expired: summary.keys_expired,
        keys_rewritten: summary.keys_rewritten,
        keys_empty: summary.keys_empty,
        keys_filtered: summary.keys_filtered,
        duration_ms: summary.duration.as_millis() as u64,
    })
}

/// Empties `target` before a rollback's load: every database, and the function libraries where
/// the server has them. The writer's `lease` is set again in the same transaction as the flush,
/// so no other writer ever finds the target without it.
pub async fn flush_target(target: &Peer, lease: Option<&LeaseToken>) -> Result<(), EngineError> {
    let mut conn = Conn::connect(target).await.map_err(EngineError::target)?;
    super::topology::refuse_cluster(&mut conn, Link::Target, "loading an RDB file").await?;
    conn.select(0).await.map_err(EngineError::target)?;
    let mut commands: Vec<Vec<Vec<u8>>> = vec![
        vec![b"MULTI".to_vec()],
        vec![b"FLUSHALL".to_vec(), b"SYNC".to_vec()],
    ];
    commands.extend(lease.map(LeaseToken::set_command));
    commands.push(vec![b"EXEC".to_vec()]);
    let replies = conn
        .call_many(&commands)
        .await
        .map_err(EngineError::target)?;
    if let Some(e) = replies.iter().find_map(crate::resp::Frame::as_error) {
        return Err(EngineError::TargetError {
            db: 0,
            key: String::new(),
            command: "FLUSHALL".into(),
            message: String::from_utf8_lossy(e).into_owned(),
        });
    }
    // Redis < 7.0 has no functions: its error reply to FUNCTION means there is nothing to flush.
    conn.call(&["FUNCTION", "FLUSH", "SYNC"])
        .await
        .map_err(EngineError::target)?;
    Ok(())
}
