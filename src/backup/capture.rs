//! Taking a backup: a full sync over the replication link, stored with [`RdbFileWriter`].
//!
//! Before the server is asked to fork, the space the file will need is estimated (the dataset
//! part of the server's memory, a generous bound for an RDB, which is compact and often
//! compressed) and compared with what may be used: the free space of the backup directory and
//! the configured `backup_max_bytes`, whichever is smaller. A disk-based master announces the
//! exact size with the transfer and is checked again against it. Either way, the writer refuses
//! to go beyond the limit while writing, so a wrong estimate ends in a clean `no_space` failure,
//! never in a full disk.

use std::path::Path;

use uuid::Uuid;

use super::file::{FileFacts, RdbFileWriter};
use super::BackupError;
use crate::client::{Conn, Info};
use crate::disk::free_bytes;
use crate::model::{ServerSummary, LEASE_KEY};
use crate::replication::{LinkConfig, LinkError, LinkItem, ReplicaLink, SyncStart, Transfer};
use crate::transport::Peer;

/// What a capture produced.
#[derive(Debug, Clone)]
pub struct Captured {
    pub facts: FileFacts,
    pub server_version: String,
}

/// Asks `server` about itself: version, dataset size, memory and keys per database. Ferry's lease
/// key (`ferry:lease`, db 0) is bookkeeping, not data: it is not counted.
pub async fn server_summary(server: &Peer) -> Result<ServerSummary, BackupError> {
    let mut conn = Conn::connect(server).await?;
    let info = conn.info("all").await?;
    let mut summary = summary(&info);
    if summary.keys.contains_key(&0) {
        conn.select(0).await?;
        let lease = conn
            .call_ok(&[b"EXISTS".as_slice(), LEASE_KEY.as_bytes()])
            .await?
            .as_int()
            .unwrap_or(0);
        if let Some(keys) = summary.keys.get_mut(&0) {
            *keys = keys.saturating_sub(lease.max(0) as u64);
            if *keys == 0 {
                summary.keys.remove(&0);
            }
        }
    }
    Ok(summary)
}

/// The parts of `INFO` that decisions about a backup or a restore read.
pub fn summary(info: &Info) -> ServerSummary {
    ServerSummary {
        version: info.version().unwrap_or_default().to_string(),
        dataset_bytes: info.dataset_bytes().unwrap_or(0),
        used_memory: info.num("used_memory").unwrap_or(0),
        maxmemory: info.num("maxmemory").unwrap_or(0),
        keys: info
            .keyspace
            .iter()
            .map(|(db, stats)| (*db, stats.keys))
            .collect(),
    }
}

/// The bytes a backup in `dir` may use: the free space there above the floor `min_free`,
/// capped by `max_bytes`.
pub fn available_bytes(dir: &Path, max_bytes: u64, min_free: u64) -> Result<u64, BackupError> {
    let free = free_bytes(dir).map_err(|e| BackupError::io(e, std::io::Error::other("statvfs")))?;
    Ok(free.saturating_sub(min_free).min(max_bytes))
}

fn refuse(needed: u64, dir: &Path, max_bytes: u64, min_free: u64, exact: bool) -> BackupError {
    let free = free_bytes(dir).unwrap_or(0);
    let what = if exact { "needs" } else { "needs about" };
    BackupError::NoSpace(format!(
        "the backup {what} {needed} bytes but only {} may be used ({free} bytes free in {}, \
         min_free_bytes = {min_free}, backup_max_bytes = {max_bytes}); free disk space or raise \
         backup_max_bytes",
        free.saturating_sub(min_free).min(max_bytes),
        dir.display()
    ))
}

/// Refuses up front when the estimated size does not fit.
pub fn check_space(
    dir: &Path,
    max_bytes: u64,
    min_free: u64,
    estimate: u64,
) -> Result<(), BackupError> {
    crate::disk::private_dir(dir)
        .map_err(|e| BackupError::io(format!("create {}", dir.display()), e))?;
    if estimate > available_bytes(dir, max_bytes, min_free)? {
        return Err(refuse(estimate, dir, max_bytes, min_free, false));
    }
    Ok(())
}

/// Copies the RDB of `server` into `dir` as backup `id`, using at most `max_bytes` and never the
/// last `min_free` bytes of the disk. `progress` hears the bytes stored so far, after every
/// chunk (the caller decides how often to record them).
pub async fn capture(
    server: &Peer,
    dir: &Path,
    id: Uuid,
    max_bytes: u64,
    min_free: u64,
    mut progress: impl FnMut(u64),
) -> Result<Captured, BackupError> {
    let facts = server_summary(server).await?;
    check_space(dir, max_bytes, min_free, facts.dataset_bytes)?;
    let mut link = ReplicaLink::connect(server, LinkConfig::default(), None).await?;
    if let SyncStart::Full {
        transfer: Transfer::Sized(len),
        ..
    } = link.start()
    {
        if *len > available_bytes(dir, max_bytes, min_free)? {
            return Err(refuse(*len, dir, max_bytes, min_free, true));
        }
    }
    let limit = available_bytes(dir, max_bytes, min_free)?;
    let mut writer = RdbFileWriter::create(dir, id, limit).await?;
    loop {
        match link.next().await? {
            LinkItem::RdbChunk(chunk) => {
                writer.write(&chunk).await.map_err(|e| match e {
                    BackupError::TooLarge { .. } => refuse(
                        writer_bytes_hint(limit, chunk.len()),
                        dir,
                        max_bytes,
                        min_free,
                        false,
                    ),
                    other => other,
                })?;
                progress(writer.bytes());
            }
            LinkItem::RdbDone => break,
            LinkItem::Command(_) => {
                return Err(
                    LinkError::Protocol("a command arrived before the RDB ended".into()).into(),
                )
            }
        }
    }
    drop(link);
    let facts_file = writer.finish().await?;
    Ok(Captured {
        facts: facts_file,
        server_version: facts.version,
    })
}

/// At least this much was needed when a chunk did not fit under `limit`.
fn writer_bytes_hint(limit: u64, chunk: usize) -> u64 {
    limit.saturating_add(chunk as u64)
}
