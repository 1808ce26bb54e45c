//! The snapshot phase: the RDB streams in from the link and goes out to the target as it arrives.
//!
//! Each chunk from the link is pushed into the [`Parser`]; each key it yields becomes one
//! `RESTORE` built in place by the writer (the payload is the entry's raw value bytes plus a
//! version and a CRC, never re-encoded). Memory is the parser's largest record plus the writer's
//! window, whatever the size of the dataset.
//!
//! A key goes as plain commands instead ("rewritten") when the target cannot decode its payload
//! (its RDB version predates the type byte: e.g. listpack types from 7.x into 6.2), or when its
//! serialized value is above the big-key threshold, so that no single command blocks the target
//! for long.
//!
//! `on_conflict` is carried by the commands themselves: `replace` (and `flush`, defensively) adds
//! `REPLACE`; `fail` and `skip` send a plain `RESTORE` and let the reply reader turn `BUSYKEY` into
//! a failure naming the key, or a skip. `flush` empties each database the snapshot touches before
//! its first key (and puts the lease back in the same breath). Keys already expired at the time
//! they are read are not written, and counted; so are empty collections (older servers could
//! write them; Redis skips them on load and `RESTORE` refuses them).
//!
//! A redone snapshot knows the keys the target held before the migration (`preexisting`): those
//! keep the policy, every other key is the migration's own earlier copy and is replaced. The
//! lease key (`ferry:lease`) of a file or a source is never copied: it belongs to whoever wrote
//! it there, not to the target.

mod big;
pub(crate) mod read;

use std::collections::HashSet;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use bytes::Bytes;

use super::error::{show_key, EngineError};
use super::resume::{KeySet, SNAPSHOT_MARK};
use super::writer::{Restore, Writer};
use super::{Reporter, Servers, Tuning};
use crate::client::lease::LeaseToken;
use crate::client::Conn;
use crate::model::EventKind;
use crate::model::LEASE_KEY;
use crate::rdb::commands::{value_to_commands, RewriteOptions};
use crate::rdb::version::{payload_version, target_understands};
use crate::rdb::{Entry, Item, RdbError};
use crate::replication::{LinkItem, ReplicaLink};
use crate::shape::Shape;
use crate::spec::OnConflict;

/// Where the RDB bytes come from: the replication link, or a file (a backup being restored).
///
/// The snapshot only needs chunks in order and an end marker, so anything that can hand those
/// out loads through the very same writer path.
pub(crate) trait RdbInput {
    /// The next item if one is already buffered, without waiting.
    fn next_buffered(&mut self) -> Result<Option<LinkItem>, EngineError>;
    /// The next item, waiting for it.
    async fn next(&mut self) -> Result<LinkItem, EngineError>;
    /// RDB bytes handed out so far.
    fn rdb_bytes(&self) -> u64;
}

impl RdbInput for ReplicaLink {
    fn next_buffered(&mut self) -> Result<Option<LinkItem>, EngineError> {
        ReplicaLink::next_buffered(self).map_err(EngineError::from_link)
    }
    async fn next(&mut self) -> Result<LinkItem, EngineError> {
        ReplicaLink::next(self)
            .await
            .map_err(EngineError::from_link)
    }
    fn rdb_bytes(&self) -> u64 {
        ReplicaLink::rdb_bytes(self)
    }
}

pub(crate) struct Snapshot<'a, I: RdbInput = ReplicaLink> {
    pub link: &'a mut I,
    pub writer: &'a mut Writer,
    /// An admin connection to the target (existence checks before a rewritten key).
    pub target: &'a mut Conn,
    pub reporter: &'a Reporter,
    pub tuning: &'a Tuning,
    pub servers: &'a Servers,
    pub on_conflict: OnConflict,
    pub rdb_bytes_total: Option<u64>,
    /// The migration's offset key; its `snapshot` mark is set again after db 0 is flushed.
    /// `None` when loading a file (a backup restore has no replication offset).
    pub offset_key: Option<&'a [u8]>,
    /// A redone snapshot records what it writes, for the sweep (see `resume`).
    pub written: Option<&'a mut KeySet>,
    /// A redone snapshot: the keys the target held before the migration (they keep the policy;
    /// any other key on the target is the migration's own and is replaced).
    pub preexisting: Option<&'a KeySet>,
    /// The lease the writer holds, set again right after a `FLUSHDB` of db 0 removes it.
    pub lease: Option<&'a LeaseToken>,
    /// Which keys go, under which db and name ([`crate::shape`]); the identity copies all.
    pub shape: &'a Shape,
}

#[derive(Debug, Default)]
pub(crate) struct Summary {
    pub rdb_bytes: u64,
    pub keys_written: u64,
    pub keys_skipped: u64,
    pub keys_expired: u64,
    pub keys_rewritten: u64,
    /// Empty collections skipped.
    pub keys_empty: u64,
    /// Keys the filter left behind.
    pub keys_filtered: u64,
    pub duration: Duration,
}

/// Counters kept by the snapshot itself (the writer counts what the target confirmed).
#[derive(Default)]
pub(super) struct Counts {
    expired: u64,
    rewritten: u64,
    /// Rewritten keys skipped because the target had them (`on_conflict: skip`).
    skipped: u64,
    /// Empty collections, skipped.
    empty: u64,
    /// Keys the filter left behind.
    pub(super) filtered: u64,
}

pub(crate) fn rdb_error(e: RdbError) -> EngineError {
    EngineError::Rdb(e.to_string())
}

pub(crate) fn now_ms() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis() as i64)
        .unwrap_or(0)
}

impl<'a, I: RdbInput> Snapshot<'a, I> {
    pub async fn run(self) -> Result<Summary, EngineError> {
        let started = Instant::now();
        let reporter = self.reporter;
        let tuning = self.tuning;
        let mut writing = Writing {
            snapshot: self,
            big: None,
            counts: Counts::default(),
            flushed: HashSet::new(),
            db: 0,
        };
        read::drive(&mut writing, reporter, tuning).await?;
        let Writing {
            snapshot, counts, ..
        } = writing;
        snapshot.writer.drain().await?;
        let stats = snapshot.writer.stats();
        Ok(Summary {
            rdb_bytes: snapshot.link.rdb_bytes(),
            keys_written: stats.keys_written.load(Ordering::Relaxed),
            keys_skipped: stats.keys_skipped.load(Ordering::Relaxed) + counts.skipped,
            keys_expired: counts.expired,
            keys_rewritten: counts.rewritten,
            keys_empty: counts.empty,
            keys_filtered: counts.filtered,
            duration: started.elapsed(),
        })
    }
}

/// The restore path as an [`read::ItemSink`]: every item goes to the writer.
struct Writing<'a, I: RdbInput> {
    snapshot: Snapshot<'a, I>,
    big: Option<big::BigKey>,
    counts: Counts,
    flushed: HashSet<u32>,
    db: u32,
}

impl<I: RdbInput> read::ItemSink for Writing<'_, I> {
    type Input = I;

    fn input(&mut self) -> &mut I {
        self.snapshot.link
    }

    async fn item(&mut self, item: Item, now: i64, _offset: u64) -> Result<(), EngineError> {
        let s = &mut self.snapshot;
        match item {
            Item::BigStart(start) => {
                self.big = Some(s.big_start(start, now, &mut self.counts).await?);
            }
            Item::BigPart(part) => {
                if let Some(b) = &self.big {
                    s.big_part(b, part).await?;
                }
            }
            Item::BigEnd => {
                if let Some(b) = self.big.take() {
                    s.big_end(b).await?;
                }
            }
            item => {
                s.apply(item, now, &mut self.db, &mut self.flushed, &mut self.counts)
                    .await?
            }
        }
        Ok(())
    }

    async fn idle(&mut self) -> Result<(), EngineError> {
        // About to wait on the source: let the target work on what we have.
        self.snapshot.writer.flush().await
    }

    fn check(&mut self) -> Result<(), EngineError> {
        self.snapshot.writer.check()
    }

    fn progress(&self, rdb_bytes_read: u64) -> EventKind {
        self.snapshot.progress(rdb_bytes_read, &self.counts)
    }
}

impl<I: RdbInput> Snapshot<'_, I> {
    fn progress(&self, rdb_bytes_read: u64, counts: &Counts) -> EventKind {
        let stats = self.writer.stats();
        EventKind::SnapshotProgress {
            rdb_bytes_read,
            rdb_bytes_total: self.rdb_bytes_total,
            keys_written: stats.keys_written.load(Ordering::Relaxed),
            keys_skipped: stats.keys_skipped.load(Ordering::Relaxed) + counts.skipped,
            keys_expired: counts.expired,
        }
    }

    async fn apply(
        &mut self,
        item: Item,
        now: i64,
        db: &mut u32,
        flushed: &mut HashSet<u32>,
        counts: &mut Counts,
    ) -> Result<(), EngineError> {
        match item {
            Item::SelectDb { db: selected } => {
                *db = u32::try_from(selected)
                    .map_err(|_| EngineError::Rdb(format!("database number {selected}")))?;
                // `flush` empties the databases the migration writes to: the mapped ones, each
                // once (two source databases may share one), never one the filter leaves out.
                let target_db = self.shape.target_db(*db);
                if self.on_conflict == OnConflict::Flush
                    && self.shape.db_in(*db)
                    && flushed.insert(target_db)
                {
                    self.writer
                        .setup(target_db, &[b"FLUSHDB"], "FLUSHDB", None)
                        .await?;
                    if let Some(lease) = self.lease.filter(|_| target_db == 0) {
                        // Pipelined right behind the flush on the same connection: the lease is
                        // back before any other client could see it gone for long.
                        let set = lease.set_command();
                        let args: Vec<&[u8]> = set.iter().map(Vec::as_slice).collect();
                        self.writer.setup(0, &args, "SET", None).await?;
                    }
                    if let Some(key) = self.offset_key.filter(|_| target_db == 0) {
                        let mark = [b"SET".as_slice(), key, SNAPSHOT_MARK.as_bytes()];
                        self.writer.setup(0, &mark, "SET", None).await?;
                    }
                }
            }
            Item::Header { version, fork } => {
                // Type numbers are read per the file's own fork and version (its magic); the
                // source's INFO is what the handshake announced to (see `REPLCONF version`).
                tracing::info!(
                    rdb_version = version,
                    rdb_fork = %fork,
                    source = %self.servers.source_version,
                    "source RDB header"
                );
            }
            Item::Entry(entry) => self.entry(entry, now, counts).await?,
            Item::Function { code } => self.function(*db, &code).await?,
            Item::Aux { key, value } if &key[..] == b"lua" => {
                // Scripts of a ≤ 6.2 source, which may still send EVALSHA in the stream.
                self.writer
                    .setup(*db, &[b"SCRIPT", b"LOAD", &value], "SCRIPT LOAD", None)
                    .await?;
            }
            _ => {}
        }
        Ok(())
    }

    async fn function(&mut self, db: u32, code: &Bytes) -> Result<(), EngineError> {
        if self.servers.target_rdb < 10 {
            return Err(EngineError::Unsupported(format!(
                "the source has Redis functions, which the target ({}) does not support; use a Redis 7.0+ or Valkey target",
                self.servers.target_version
            )));
        }
        match self.on_conflict {
            OnConflict::Fail => {
                self.writer
                    .setup(db, &[b"FUNCTION", b"LOAD", code], "FUNCTION LOAD", None)
                    .await
            }
            OnConflict::Skip => {
                self.writer
                    .setup(
                        db,
                        &[b"FUNCTION", b"LOAD", code],
                        "FUNCTION LOAD",
                        Some("already exists"),
                    )
                    .await
            }
            OnConflict::Replace | OnConflict::Flush => {
                self.writer
                    .setup(
                        db,
                        &[b"FUNCTION", b"LOAD", b"REPLACE", code],
                        "FUNCTION LOAD",
                        None,
                    )
                    .await
            }
        }
    }

    async fn entry(
        &mut self,
        mut entry: Entry,
        now: i64,
        counts: &mut Counts,
    ) -> Result<(), EngineError> {
        if entry.expire_ms.is_some_and(|at| at <= now) {
            counts.expired += 1;
            return Ok(());
        }
        let db = u32::try_from(entry.db)
            .map_err(|_| EngineError::Rdb(format!("database number {}", entry.db)))?;
        if db == 0 && entry.key == LEASE_KEY.as_bytes() {
            // Another writer's lease, captured with its data: not data, and not ours to copy.
            return Ok(());
        }
        if crate::rdb::sanitize::is_empty_collection(&entry) {
            counts.empty += 1;
            return Ok(());
        }
        if !self.shape.is_identity() {
            if !self.shape.key_in(db, &entry.key) || !self.type_in(&entry) {
                counts.filtered += 1;
                return Ok(());
            }
            self.portable(db, &entry)?;
            // From here on the key is the target's: its mapped db and its new name.
            entry.key = self.shape.target_key(&entry.key);
        } else {
            self.portable(db, &entry)?;
        }
        let db = self.shape.target_db(db);
        if let Some(written) = self.written.as_deref_mut() {
            written.insert(db, &entry.key);
        }
        // In a redo, a key the target did not hold before the migration is our own earlier copy.
        let ours = self
            .preexisting
            .is_some_and(|before| !before.contains(db, &entry.key));
        let target_rdb = self.servers.target_rdb;
        if !restorable(
            self.servers,
            self.tuning,
            entry.type_byte,
            entry.raw_value.len(),
        ) {
            return self.rewrite(db, entry, ours, counts).await;
        }
        // A payload may carry any version the target knows: the source's own if the target is
        // newer, the target's if it is older (the type byte is known there: checked above);
        // Valkey refuses Redis' 12-79 and gets 11.
        let version = payload_version(entry.rdb_version, target_rdb);
        self.writer
            .restore(Restore {
                db,
                key: &entry.key,
                type_byte: entry.type_byte,
                raw_value: &entry.raw_value,
                rdb_version: version,
                expire_ms: entry.expire_ms,
                replace: ours
                    || matches!(self.on_conflict, OnConflict::Replace | OnConflict::Flush),
                idle_secs: entry.idle_secs,
                freq: entry.freq,
            })
            .await
    }

    /// Whether the entry's type (as `TYPE` would name it) passes the type filter.
    fn type_in(&self, entry: &Entry) -> bool {
        if !self.shape.filters_types() {
            return true;
        }
        match entry.module_name() {
            Some(module_type) => self.shape.type_in(&module_type),
            None => self
                .shape
                .type_in(crate::rdb::types::data_type(entry.type_byte)),
        }
    }

    /// See [`portable`].
    fn portable(&self, db: u32, entry: &Entry) -> Result<(), EngineError> {
        portable(self.servers, db, entry)
    }

    /// Writes a key as plain commands, in chunks bounded by the tuning.
    async fn rewrite(
        &mut self,
        db: u32,
        entry: Entry,
        ours: bool,
        counts: &mut Counts,
    ) -> Result<(), EngineError> {
        let value = entry.decode().map_err(rdb_error)?;
        let opts = RewriteOptions {
            max_chunk_bytes: self.tuning.rewrite_chunk_bytes,
            max_chunk_items: self.tuning.rewrite_chunk_items,
            target_rdb: self.servers.target_rdb,
            drop_field_ttls: self.servers.drop_field_ttls,
        };
        let commands =
            value_to_commands(&entry.key, &value, entry.expire_ms, &opts).map_err(|e| {
                EngineError::Unsupported(format!(
                    "key `{}` (db {db}, type byte {}) cannot go to {}: {e}",
                    show_key(&entry.key),
                    entry.type_byte,
                    self.servers.target_version
                ))
            })?;
        let policy = if ours {
            OnConflict::Replace
        } else {
            self.on_conflict
        };
        match policy {
            OnConflict::Fail | OnConflict::Skip => {
                let exists = match self.writer.cluster_exists(&entry.key).await {
                    Some(found) => found?,
                    None => {
                        self.target.select(db).await.map_err(EngineError::target)?;
                        self.target
                            .call_ok(&[b"EXISTS".as_slice(), &entry.key])
                            .await
                            .map_err(EngineError::target)?
                            .as_int()
                            .unwrap_or(0)
                            > 0
                    }
                };
                if exists && policy == OnConflict::Skip {
                    counts.skipped += 1;
                    return Ok(());
                }
                if exists {
                    return Err(EngineError::BusyKey {
                        db,
                        key: show_key(&entry.key),
                    });
                }
            }
            OnConflict::Replace => {
                // UNLINK: the old value may be as big as the new one, and freeing it must not
                // block the target (a rewritten key is often a big one).
                let del = [Bytes::from_static(b"UNLINK"), entry.key.clone()];
                self.writer
                    .rewrite_command(db, &entry.key, &del, commands.is_empty())
                    .await?;
            }
            OnConflict::Flush => {}
        }
        let last = commands.len().saturating_sub(1);
        for (i, command) in commands.iter().enumerate() {
            self.writer
                .rewrite_command(db, &entry.key, command, i == last)
                .await?;
        }
        counts.rewritten += 1;
        Ok(())
    }
}

/// The module (as `MODULE LIST` names it) that registers a module type (as the RDB names it), for
/// the modules this build knows: Redis 8's vector sets, Redis Stack's modules, FalkorDB.
fn module_of_type(type_name: &str) -> Option<&'static str> {
    Some(match type_name {
        "vectorset" => "vectorset",
        "ReJSON-RL" => "ReJSON",
        "MBbloom--" | "MBbloomCF" | "TopK-TYPE" | "CMSk-TYPE" | "TDIS-TYPE" => "bf",
        "TSDB-TYPE" => "timeseries",
        "graphdata" => "graph",
        name if name.starts_with("ft_") => "search",
        _ => return None,
    })
}

/// Refuses, naming the key, what the target could only take by losing part of it: module
/// metadata attached to the key (Redis 8.6 `KEY_META`, which no command recreates), or a
/// module value whose module the target has not loaded. The migration stops at the first
/// such key: validation only warns about a module the target lacks, because a source that
/// loads one (Redis 8's built-in `vectorset`) often holds no key of it.
pub(crate) fn portable(servers: &Servers, db: u32, entry: &Entry) -> Result<(), EngineError> {
    if entry.key_meta_classes > 0 {
        return Err(EngineError::Unsupported(format!(
            "key `{}` (db {db}) carries module metadata ({} KEY_META class{}, Redis 8.6+),                  which Ferry cannot carry yet",
            show_key(&entry.key),
            entry.key_meta_classes,
            if entry.key_meta_classes == 1 { "" } else { "es" }
        )));
    }
    let Some(type_name) = entry.module_name() else {
        return Ok(());
    };
    let module = module_of_type(&type_name);
    // A module type we cannot map to a module name, or a target that does not list its
    // modules, is left to the target's RESTORE, which refuses the key if the module is missing.
    let (Some(module), Some(listed)) = (module, &servers.target_modules) else {
        return Ok(());
    };
    if listed.iter().any(|l| l.eq_ignore_ascii_case(module)) {
        return Ok(());
    }
    Err(EngineError::Unsupported(format!(
        "key `{}` (db {db}) holds a value of the `{}` module (type {type_name}), which the              target ({}) has not loaded: load the module on the target, or remove such keys",
        show_key(&entry.key),
        module,
        servers.target_version
    )))
}

/// Whether a whole entry goes as one `RESTORE` (otherwise it is rewritten as plain commands): the
/// target knows its type byte, and it is not above the big-key threshold. Module values (types 6,
/// 7) are opaque: RESTORE is their only way, whatever their size.
pub(crate) fn restorable(servers: &Servers, tuning: &Tuning, type_byte: u8, len: usize) -> bool {
    let opaque = matches!(type_byte, 6 | 7);
    target_understands(type_byte, servers.target_rdb) && (opaque || len <= tuning.big_key_bytes)
}
