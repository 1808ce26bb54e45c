//! The writer's cluster mode: the same calls as on a standalone target ([`Writer::restore`],
//! [`Writer::forward`], …), each command routed to the master that serves its key's slot.
//!
//! A standalone writer streams one pipeline and wraps each batch in one `MULTI` with the offset
//! key. A cluster refuses a transaction that spans slots, so here each flush groups what it holds
//! by slot ([`SlotBatches`]) and applies every slot's commands plus that slot's offset key
//! (`ferry:offset:{<tag>}:<scope>`) in one `MULTI`, the masters in parallel
//! ([`ClusterConn::apply_slot_batches`], which follows `MOVED`/`ASK`/`TRYAGAIN` and asks a slot's
//! key after a lost connection, so a target failover neither loses nor repeats a batch). The
//! window is bounded by flushing every [`FLUSH_COMMANDS`] commands or [`FLUSH_BYTES`] bytes, and
//! a flush completes before the writer takes more: memory is one flush, never the dataset.
//!
//! **Applied offset and the base key.** A flush is done once every slot answered, so the offset
//! it reached is then applied on *every* slot; only then does the writer move its applied offset
//! (what checkpoints and ACKs report), and record it in the run's base key
//! (`ferry:offset:{<tag of slot 0>}:<scope>:base`, see [`super::cluster_target`]): a restarted
//! job resumes from there and skips, slot by slot, what a slot's own key says it already holds
//! ([`SlotOffsets`]), so nothing is applied twice and nothing is skipped.
//!
//! **Commands.** [`route`] decides: one slot; split per slot (`DEL`, `UNLINK`, `MSET`…: keys
//! handled one by one, no atomicity lost); or cross-slot (`RENAME` across slots, a script over
//! keys of several slots), which stops the migration naming the command: it is never split
//! silently. A source `MULTI`/`EXEC` whose commands land on several slots cannot stay atomic on
//! a cluster: each slot's part stays atomic, and the split is recorded as a `TransactionSplit`
//! event. A cluster has only db 0: `SELECT` of any other db fails (the db map decides).
//!
//! In the snapshot (no replication id yet) the per-slot `MULTI` carries the value
//! `snapshot:<n>`, unique per flush (what makes the lost-connection check exact); such a value
//! is not an offset, so [`ClusterConn::read_slot_offsets`] ignores it, and the snapshot's start
//! deletes every slot key of the scope first.

use std::sync::atomic::Ordering;

use bytes::Bytes;

use super::{EngineError, Restore, Writer};
use crate::client::routed::{ClusterConn, RoutedError};
use crate::cluster::{key_slot, route, Route, Slot, SlotBatches, SlotOffsets};
use crate::model::EventKind;
use crate::rdb::crc64;

/// Commands held before a flush. Each flush costs one `MULTI` per slot it touches (plus the
/// slot's offset key), so larger flushes put more keys in each slot's transaction: 100k small
/// keys into 3 masters took 6.0 s at 2048 and 4.7 s at 8192 (debug build; 1.3-1.7 s into one
/// standalone server).
const FLUSH_COMMANDS: usize = 8192;
/// Bytes held before a flush.
const FLUSH_BYTES: usize = 8 * 1024 * 1024;

/// What routes a writer's commands to a cluster (see the module docs).
pub(crate) struct ClusterSink {
    conn: ClusterConn,
    /// The offset keys' scope: `Run::offset_scope`.
    scope: String,
    batches: SlotBatches,
    bytes: usize,
    /// The commands of the source command (or transaction) not yet whole.
    group: Vec<(Slot, Vec<Bytes>)>,
    /// How many commands the stream forwarded for that group (before any split per slot): more
    /// than one is a transaction (or a command rewritten into several).
    group_commands: u32,
    /// The stream's replication id once streaming: flushes then record offsets.
    replid: Option<String>,
    /// The offset the commands held reach (the last whole one).
    pending_offset: Option<i64>,
    /// Keys completed by the commands held (snapshot counts).
    pending_keys: u64,
    /// Snapshot flushes so far, for their unique values.
    flushes: u64,
    /// What each slot already holds, after a resume.
    skip: Option<SlotOffsets>,
    /// Where `TransactionSplit` goes.
    events: super::super::EventSender,
    /// The base key, written after each streamed flush.
    base_key: String,
}

impl ClusterSink {
    pub fn new(
        conn: ClusterConn,
        scope: String,
        events: super::super::EventSender,
        skip: Option<SlotOffsets>,
    ) -> ClusterSink {
        ClusterSink {
            conn,
            base_key: super::super::cluster_target::base_key(&scope),
            scope,
            batches: SlotBatches::default(),
            bytes: 0,
            group: Vec::new(),
            group_commands: 0,
            replid: None,
            pending_offset: None,
            pending_keys: 0,
            flushes: 0,
            skip,
            events,
        }
    }

    fn push(&mut self, slot: Slot, command: Vec<Bytes>) {
        self.bytes += command.iter().map(Bytes::len).sum::<usize>();
        self.batches.push(slot, command);
    }

    fn full(&self) -> bool {
        self.batches.len() >= FLUSH_COMMANDS || self.bytes >= FLUSH_BYTES
    }
}

/// A routed failure as the engine names it: a lost node is a lost target link (the run resumes
/// from the offset keys), a refusal names the slot and what the target said.
fn routed_error(e: RoutedError) -> EngineError {
    match e {
        RoutedError::Client(c) => EngineError::target(c),
        // A RESTORE without REPLACE met a key (`on_conflict: fail`); the reply does not name it.
        RoutedError::Refused { slot, reply, .. } if reply.starts_with("BUSYKEY") => {
            EngineError::BusyKey {
                db: 0,
                key: format!("(one of the keys of slot {slot})"),
            }
        }
        RoutedError::Refused { slot, addr, reply } => EngineError::StreamApplyFailed {
            db: 0,
            command: format!("(the transaction of slot {slot} on {addr})"),
            message: reply,
        },
        other => EngineError::TargetLinkLost(other.to_string()),
    }
}

impl Writer {
    /// Routes everything this writer writes to a cluster from now on (see the module docs).
    pub(crate) fn route_to_cluster(&mut self, sink: ClusterSink) {
        self.cluster = Some(Box::new(sink));
    }

    /// Whether this writer writes to a cluster.
    pub(crate) fn is_cluster(&self) -> bool {
        self.cluster.is_some()
    }

    /// Applies what is held: every slot's batch with its offset key, then the base key.
    pub(super) async fn cluster_flush(&mut self) -> Result<(), EngineError> {
        let stream_db = self.stream_db();
        let Some(sink) = self.cluster.as_deref_mut() else {
            return Ok(());
        };
        let offset = sink.pending_offset.take();
        let keys = std::mem::take(&mut sink.pending_keys);
        if !sink.batches.is_empty() {
            let value = match (&sink.replid, offset) {
                (Some(replid), Some(offset)) => {
                    super::super::resume::mark_value(replid, offset, stream_db)
                }
                _ => {
                    sink.flushes += 1;
                    format!("{}:{}", super::super::resume::SNAPSHOT_MARK, sink.flushes)
                }
            };
            let batches = sink.batches.take();
            sink.bytes = 0;
            sink.conn
                .apply_slot_batches(batches, &sink.scope, &value)
                .await
                .map_err(routed_error)?;
        }
        if let (Some(replid), Some(offset)) = (sink.replid.clone(), offset) {
            // Every slot holds everything up to `offset` now: the point a restart resumes from.
            let value = super::super::resume::mark_value(&replid, offset, stream_db);
            let key = sink.base_key.clone();
            sink.conn
                .call_key(
                    key.as_bytes(),
                    &[b"SET".as_slice(), key.as_bytes(), value.as_bytes()],
                )
                .await
                .map_err(routed_error)?;
            self.shared
                .stats
                .applied_offset
                .store(offset, Ordering::Release);
        }
        self.shared
            .stats
            .keys_written
            .fetch_add(keys, Ordering::Relaxed);
        Ok(())
    }

    async fn cluster_flush_if_full(&mut self) -> Result<(), EngineError> {
        if self.cluster.as_ref().is_some_and(|s| s.full()) {
            self.cluster_flush().await?;
        }
        Ok(())
    }

    /// The cluster's side of [`Writer::track_offset`]: flushes from now on record offsets.
    pub(super) fn cluster_track(&mut self, replid: String) {
        if let Some(sink) = self.cluster.as_deref_mut() {
            sink.replid = Some(replid);
        }
    }

    /// A cluster has only db 0: any other fails, naming the db map as the way out.
    pub(super) fn cluster_select(&mut self, db: u32) -> Result<(), EngineError> {
        if db != 0 {
            return Err(EngineError::Unsupported(format!(
                "the target is a Redis Cluster, which has only db 0, and this migration writes \
                 to db {db}; send every source db that has keys to db 0 with options.db_map"
            )));
        }
        self.db = Some(0);
        Ok(())
    }

    /// A keyed command of the snapshot (`RESTORE`, a rewritten key's part): held for its slot.
    async fn cluster_keyed(
        &mut self,
        key: &[u8],
        args: Vec<Bytes>,
        completes: bool,
    ) -> Result<(), EngineError> {
        if let Some(sink) = self.cluster.as_deref_mut() {
            sink.push(key_slot(key), args);
            sink.pending_keys += u64::from(completes);
        }
        self.cluster_flush_if_full().await
    }

    /// [`Writer::restore`] on a cluster: the same `RESTORE`, routed by its key.
    pub(super) async fn cluster_restore(&mut self, r: Restore<'_>) -> Result<(), EngineError> {
        self.cluster_select(r.db)?;
        let version = r.rdb_version.to_le_bytes();
        let crc = crc64::update(
            crc64::update(crc64::update(0, &[r.type_byte]), r.raw_value),
            &version,
        );
        let mut payload = Vec::with_capacity(1 + r.raw_value.len() + 10);
        payload.push(r.type_byte);
        payload.extend_from_slice(r.raw_value);
        payload.extend_from_slice(&version);
        payload.extend_from_slice(&crc.to_le_bytes());
        let mut args = vec![
            Bytes::from_static(b"RESTORE"),
            r.key.clone(),
            Bytes::from(r.expire_ms.unwrap_or(0).to_string()),
            Bytes::from(payload),
        ];
        if r.replace {
            args.push(Bytes::from_static(b"REPLACE"));
        }
        args.push(Bytes::from_static(b"ABSTTL"));
        if let Some(freq) = r.freq {
            args.push(Bytes::from_static(b"FREQ"));
            args.push(Bytes::from(freq.to_string()));
        } else if let Some(idle) = r.idle_secs {
            args.push(Bytes::from_static(b"IDLETIME"));
            args.push(Bytes::from(idle.min(i64::MAX as u64).to_string()));
        }
        self.cluster_keyed(r.key, args, true).await
    }

    /// [`Writer::rewrite_command`] on a cluster.
    pub(super) async fn cluster_rewrite(
        &mut self,
        db: u32,
        key: &Bytes,
        args: &[Bytes],
        last: bool,
    ) -> Result<(), EngineError> {
        self.cluster_select(db)?;
        self.cluster_keyed(key, args.to_vec(), last).await
    }

    /// [`Writer::setup`] on a cluster: a keyed command goes to its slot; `FUNCTION LOAD` and
    /// `SCRIPT LOAD` go to every master (any of them may run the stream's `FCALL`/`EVALSHA`).
    pub(super) async fn cluster_setup(
        &mut self,
        db: u32,
        args: &[&[u8]],
        what: &'static str,
        tolerate: Option<&'static str>,
    ) -> Result<(), EngineError> {
        self.cluster_select(db)?;
        if matches!(what, "FUNCTION LOAD" | "SCRIPT LOAD") {
            self.cluster_flush().await?;
            let Some(sink) = self.cluster.as_deref_mut() else {
                return Ok(());
            };
            for (addr, reply) in sink.conn.call_each_master(args).await {
                let reply = reply.map_err(routed_error)?;
                if let Some(e) = reply.as_error() {
                    let e = String::from_utf8_lossy(e).into_owned();
                    if !tolerate.is_some_and(|t| e.contains(t)) {
                        return Err(EngineError::TargetError {
                            db: 0,
                            key: addr,
                            command: what.to_string(),
                            message: e,
                        });
                    }
                }
            }
            return Ok(());
        }
        let args: Vec<Bytes> = args.iter().map(|a| Bytes::copy_from_slice(a)).collect();
        match route(&args) {
            Route::Slot(slot) => {
                if let Some(sink) = self.cluster.as_deref_mut() {
                    sink.push(slot, args);
                }
                self.cluster_flush_if_full().await
            }
            _ => Err(EngineError::Unsupported(format!(
                "{what} cannot be applied to a Redis Cluster target by this build of Ferry"
            ))),
        }
    }

    /// [`Writer::forward`] on a cluster: the command is routed (split per slot when it acts on
    /// each key alone); once its source command or transaction is whole (`offset`), it joins
    /// the flush, minus what a resumed slot already holds.
    pub(super) async fn cluster_forward(
        &mut self,
        args: &[Bytes],
        offset: Option<i64>,
    ) -> Result<(), EngineError> {
        let name = args
            .first()
            .map(|n| String::from_utf8_lossy(n).to_ascii_uppercase())
            .unwrap_or_default();
        if name == "SELECT" {
            let db = args
                .get(1)
                .and_then(|d| std::str::from_utf8(d).ok()?.parse::<u32>().ok())
                .unwrap_or(u32::MAX);
            self.cluster_select(db)?;
        } else if let Some(sink) = self.cluster.as_deref_mut() {
            sink.group_commands += 1;
            match route(args) {
                Route::Slot(slot) => sink.group.push((slot, args.to_vec())),
                Route::Split(parts) => sink.group.extend(parts),
                // A published message is not data; a cluster delivers it cluster-wide anyway.
                Route::NoKey if name == "PUBLISH" => {}
                Route::NoKey => {
                    return Err(EngineError::Unsupported(format!(
                        "the source ran {name}, which names no key: a Redis Cluster target \
                         cannot apply it with its offsets, so the migration stopped before it"
                    )))
                }
                Route::CrossSlot(slots) => {
                    return Err(EngineError::Unsupported(format!(
                        "the source ran {name} over keys in {} different slots of the target \
                         cluster ({}); a cluster cannot apply it as one command and Ferry does \
                         not split it silently, so the migration stopped before it",
                        slots.len(),
                        show_slots(&slots)
                    )))
                }
            }
        }
        let Some(end) = offset else {
            return Ok(());
        };
        self.cluster_whole(end).await
    }

    /// The commands grouped so far make one whole source command or transaction ending at `end`.
    async fn cluster_whole(&mut self, end: i64) -> Result<(), EngineError> {
        let Some(sink) = self.cluster.as_deref_mut() else {
            return Ok(());
        };
        let mut group = std::mem::take(&mut sink.group);
        let commands = std::mem::take(&mut sink.group_commands);
        if let Some(skip) = &sink.skip {
            group.retain(|(slot, _)| !skip.applied(*slot, end));
        }
        let mut slots: Vec<Slot> = group.iter().map(|(s, _)| *s).collect();
        slots.sort_unstable();
        slots.dedup();
        // A single command split per slot (`DEL a b`) loses no atomicity it had: not reported.
        if slots.len() > 1 && commands > 1 {
            let event = EventKind::TransactionSplit {
                offset: end,
                slots,
                commands,
            };
            sink.events
                .send(event)
                .await
                .map_err(|_| EngineError::EventsClosed)?;
        }
        for (slot, command) in group {
            sink.push(slot, command);
        }
        sink.pending_offset = Some(end);
        self.cluster_flush_if_full().await
    }

    /// On a cluster: whether `key` exists, asked on the master of its slot (a rewritten key's
    /// conflict check; the admin connection to the seed node would be answered `MOVED`).
    /// `None` on a standalone target: the caller asks its own connection.
    pub(crate) async fn cluster_exists(&mut self, key: &[u8]) -> Option<Result<bool, EngineError>> {
        let sink = self.cluster.as_deref_mut()?;
        Some(
            sink.conn
                .call_key(key, &[b"EXISTS".as_slice(), key])
                .await
                .map(|reply| reply.as_int().unwrap_or(0) > 0)
                .map_err(routed_error),
        )
    }

    /// [`Writer::mark_applied`] on a cluster: the offset counts with the next flush.
    pub(super) async fn cluster_mark_applied(&mut self, offset: i64) -> Result<(), EngineError> {
        self.cluster_whole(offset).await
    }
}

/// Slots for a message: the first few, and how many more.
fn show_slots(slots: &[Slot]) -> String {
    let shown: Vec<String> = slots.iter().take(8).map(u16::to_string).collect();
    match slots.len() {
        n if n > 8 => format!("slots {} and {} more", shown.join(", "), n - 8),
        _ => format!("slots {}", shown.join(", ")),
    }
}
