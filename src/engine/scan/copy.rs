//! Copying keys read from the live source: a batch at a time, pipelined.
//!
//! A batch (one `SCAN` step, or a handful of dirty keys) costs a few round trips to the source,
//! whatever its size: `MEMORY USAGE` of every key (an estimate from a few samples, O(1)), then
//! `PTTL` + `DUMP` of the ordinary keys in groups bounded by [`DUMP_BUDGET`] bytes. Each payload
//! goes to the writer's window as one `RESTORE … ABSTTL` (the TTL read with it, made absolute).
//!
//! A key goes as commands instead when the target cannot take its payload (a type its RDB
//! version does not know) or the payload is over the big-key threshold: the payload is decoded
//! and rewritten as chunked commands, as the replication snapshot does. A key whose *estimate* is
//! over the threshold is not DUMPed at all (serializing it would stall the source): it is read in
//! chunks ([`super::chunked`]); streams and module values have no chunked reading and are
//! DUMPed whole (a stream then goes as chunked commands, a module value as its RESTORE).
//!
//! A key gone by the time it is read (`PTTL` -2, or a nil `DUMP`) is deleted on the target when
//! the copy follows a change (the catch-up), and counted as expired during the scan.

use std::time::{SystemTime, UNIX_EPOCH};

use bytes::Bytes;

use super::chunked;
use crate::client::Conn;
use crate::engine::error::{show_key, EngineError};
use crate::engine::resume::KeySet;
use crate::engine::writer::{Restore, Writer};
use crate::engine::{Servers, Tuning};
use crate::rdb::commands::{value_to_commands, RewriteOptions};
use crate::rdb::payload;
use crate::rdb::version::{payload_version, target_understands};
use crate::resp::Frame;
use crate::spec::OnConflict;

/// Bytes of values (by `MEMORY USAGE`) DUMPed in one pipelined group.
const DUMP_BUDGET: u64 = 8 * 1024 * 1024;

/// What the copies so far did.
#[derive(Debug, Default, Clone, Copy)]
pub(super) struct Counts {
    /// Keys read from the source (scanned or dirty).
    pub read: u64,
    /// Keys read again because they changed.
    pub recopied: u64,
    /// Keys gone when read (expired or deleted meanwhile).
    pub gone: u64,
    /// Keys written as commands (chunked reads, or rewritten payloads).
    pub rewritten: u64,
    /// Keys deleted on the target because the source no longer had them.
    pub deleted: u64,
    /// Keys skipped because the target had them (`on_conflict: skip`, rewritten keys).
    pub skipped: u64,
}

/// How existing target keys are treated.
#[derive(Clone, Copy)]
pub(super) enum Policy<'a> {
    /// The first copy: the user's `on_conflict`, except for keys of an earlier run of this
    /// migration (everything not in `preexisting`), which are replaced.
    Scan {
        on_conflict: OnConflict,
        preexisting: Option<&'a KeySet>,
    },
    /// Copying a changed key again: it is the migration's own copy (or new): replaced, and
    /// deleted when the source no longer has it.
    CatchUp,
}

impl Policy<'_> {
    fn replace(&self, db: u32, key: &[u8]) -> bool {
        match self {
            Policy::CatchUp => true,
            Policy::Scan {
                on_conflict,
                preexisting,
            } => {
                preexisting.is_some_and(|before| !before.contains(db, key))
                    || matches!(on_conflict, OnConflict::Replace | OnConflict::Flush)
            }
        }
    }

    fn on_conflict(&self) -> OnConflict {
        match self {
            Policy::Scan { on_conflict, .. } => *on_conflict,
            Policy::CatchUp => OnConflict::Replace,
        }
    }
}

pub(super) fn now_ms() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis() as i64)
        .unwrap_or(0)
}

fn src(e: crate::client::ClientError) -> EngineError {
    EngineError::source(e)
}

/// The copier: a reading connection to the source, the target's writer, an admin connection to
/// the target (existence checks before a key goes as commands).
pub(super) struct Copier<'a> {
    pub source: &'a mut Conn,
    pub writer: &'a mut Writer,
    pub target: &'a mut Conn,
    pub tuning: &'a Tuning,
    pub servers: &'a Servers,
    pub counts: &'a mut Counts,
    /// The db the source connection is on.
    pub source_db: &'a mut Option<u32>,
}

/// One key's facts from the source.
struct Read {
    key: Bytes,
    /// `PTTL`: -1 none, -2 gone, else milliseconds.
    pttl: i64,
}

impl Copier<'_> {
    async fn select(&mut self, db: u32) -> Result<(), EngineError> {
        if *self.source_db != Some(db) {
            self.source.select(db).await.map_err(src)?;
            *self.source_db = Some(db);
        }
        Ok(())
    }

    /// Copies `keys` of `db` as `policy` says.
    pub async fn copy(
        &mut self,
        db: u32,
        keys: &[Bytes],
        policy: Policy<'_>,
    ) -> Result<(), EngineError> {
        if keys.is_empty() {
            return Ok(());
        }
        self.select(db).await?;
        self.counts.read += keys.len() as u64;
        if matches!(policy, Policy::CatchUp) {
            self.counts.recopied += keys.len() as u64;
        }
        let sizes: Vec<Vec<&[u8]>> = keys
            .iter()
            .map(|k| vec![b"MEMORY".as_slice(), b"USAGE", k])
            .collect();
        // A source that refuses MEMORY USAGE answers errors: every key is then DUMPed, and its
        // payload's size decides.
        let sizes: Vec<u64> = self
            .source
            .call_many(&sizes)
            .await
            .map_err(src)?
            .iter()
            .map(|f| f.as_int().unwrap_or(0).max(0) as u64)
            .collect();
        let big_key_bytes = self.tuning.big_key_bytes as u64;
        let mut start = 0;
        while start < keys.len() {
            let mut end = start;
            let mut budget = 0u64;
            while end < keys.len() && (end == start || budget < DUMP_BUDGET) {
                if sizes[end] <= big_key_bytes {
                    budget += sizes[end];
                }
                end += 1;
            }
            let group: Vec<usize> = (start..end).collect();
            let (big, small): (Vec<usize>, Vec<usize>) =
                group.into_iter().partition(|&i| sizes[i] > big_key_bytes);
            self.copy_dumped(db, keys, &small, policy).await?;
            for i in big {
                self.copy_big(db, &keys[i], policy).await?;
            }
            start = end;
        }
        Ok(())
    }

    /// `PTTL` + `DUMP` of `which` keys in one round trip, then each written.
    async fn copy_dumped(
        &mut self,
        db: u32,
        keys: &[Bytes],
        which: &[usize],
        policy: Policy<'_>,
    ) -> Result<(), EngineError> {
        if which.is_empty() {
            return Ok(());
        }
        let commands: Vec<Vec<&[u8]>> = which
            .iter()
            .flat_map(|&i| [vec![b"PTTL".as_slice(), &keys[i]], vec![b"DUMP", &keys[i]]])
            .collect();
        let replies = self.source.call_many(&commands).await.map_err(src)?;
        let now = now_ms();
        let mut replies = replies.into_iter();
        for &i in which {
            let (Some(pttl), Some(dump)) = (replies.next(), replies.next()) else {
                break;
            };
            let read = Read {
                key: keys[i].clone(),
                pttl: pttl.as_int().unwrap_or(-2),
            };
            match dump {
                Frame::Bulk(payload) if read.pttl != -2 => {
                    self.write_payload(db, &read, &payload, now, policy).await?
                }
                Frame::Error(e) => {
                    return Err(EngineError::SourceError(format!(
                        "DUMP of key `{}` (db {db}): {}",
                        show_key(&read.key),
                        String::from_utf8_lossy(&e)
                    )))
                }
                _ => self.gone(db, &read.key, policy).await?,
            }
        }
        Ok(())
    }

    /// The key is not on the source (any more).
    async fn gone(&mut self, db: u32, key: &Bytes, policy: Policy<'_>) -> Result<(), EngineError> {
        self.counts.gone += 1;
        if matches!(policy, Policy::CatchUp) {
            self.counts.deleted += 1;
            self.writer
                .setup(db, &[b"UNLINK".as_slice(), key], "UNLINK", None)
                .await?;
        }
        Ok(())
    }

    async fn write_payload(
        &mut self,
        db: u32,
        read: &Read,
        dumped: &[u8],
        now: i64,
        policy: Policy<'_>,
    ) -> Result<(), EngineError> {
        let Some((type_byte, raw, version)) = payload::parse(dumped) else {
            return Err(EngineError::SourceError(format!(
                "the DUMP of key `{}` (db {db}) fails its checksum",
                show_key(&read.key)
            )));
        };
        let target_rdb = self.servers.target_rdb;
        let expire_ms = (read.pttl >= 0).then(|| now + read.pttl);
        // Module values (types 6, 7) are opaque: RESTORE is their only way, whatever their size.
        let opaque = matches!(type_byte, 6 | 7);
        if target_understands(type_byte, target_rdb)
            && (opaque || raw.len() <= self.tuning.big_key_bytes)
        {
            return self
                .writer
                .restore(Restore {
                    db,
                    key: &read.key,
                    type_byte,
                    raw_value: raw,
                    rdb_version: payload_version(version, target_rdb),
                    expire_ms,
                    replace: policy.replace(db, &read.key),
                    idle_secs: None,
                    freq: None,
                })
                .await;
        }
        let value = match payload::decode(dumped) {
            Some(Ok(value)) => value,
            Some(Err(e)) => return Err(EngineError::Rdb(e.to_string())),
            None => unreachable!("parsed above"),
        };
        let opts = RewriteOptions {
            max_chunk_bytes: self.tuning.rewrite_chunk_bytes,
            max_chunk_items: self.tuning.rewrite_chunk_items,
            target_rdb,
            drop_field_ttls: self.servers.drop_field_ttls,
        };
        let commands = value_to_commands(&read.key, &value, expire_ms, &opts).map_err(|e| {
            EngineError::Unsupported(format!(
                "key `{}` (db {db}, type byte {type_byte}) cannot go to {}: {e}",
                show_key(&read.key),
                self.servers.target_version
            ))
        })?;
        if !self.make_room(db, &read.key, policy).await? {
            return Ok(());
        }
        self.counts.rewritten += 1;
        let last = commands.len().saturating_sub(1);
        for (i, command) in commands.iter().enumerate() {
            self.writer
                .rewrite_command(db, &read.key, command, i == last)
                .await?;
        }
        Ok(())
    }

    /// Before a key goes as several commands: `UNLINK` it on the target when it is replaced, or
    /// check that the target does not hold it (`fail`: an error naming it; `skip`: `false`).
    pub(super) async fn make_room(
        &mut self,
        db: u32,
        key: &Bytes,
        policy: Policy<'_>,
    ) -> Result<bool, EngineError> {
        if policy.replace(db, key) {
            let del = [Bytes::from_static(b"UNLINK"), key.clone()];
            self.writer.rewrite_command(db, key, &del, false).await?;
            return Ok(true);
        }
        // The writer may still hold commands for this db: they land first.
        self.writer.drain().await?;
        self.target.select(db).await.map_err(EngineError::target)?;
        let exists = self
            .target
            .call_ok(&[b"EXISTS".as_slice(), key])
            .await
            .map_err(EngineError::target)?
            .as_int()
            .unwrap_or(0)
            > 0;
        match (exists, policy.on_conflict()) {
            (false, _) => Ok(true),
            (true, OnConflict::Skip) => {
                self.counts.skipped += 1;
                Ok(false)
            }
            (true, _) => Err(EngineError::BusyKey {
                db,
                key: show_key(key),
            }),
        }
    }

    /// A key whose estimate is over the big-key threshold.
    async fn copy_big(
        &mut self,
        db: u32,
        key: &Bytes,
        policy: Policy<'_>,
    ) -> Result<(), EngineError> {
        let kind = self
            .source
            .call_ok(&[b"TYPE".as_slice(), key])
            .await
            .map_err(src)?;
        let kind = kind
            .as_bytes()
            .map(|b| String::from_utf8_lossy(b).into_owned())
            .unwrap_or_default();
        if chunked::readable(&kind) {
            return chunked::copy(self, db, key, &kind, policy).await;
        }
        // A stream or a module value: read whole.
        self.copy_dumped(db, std::slice::from_ref(key), &[0], policy)
            .await
    }
}
