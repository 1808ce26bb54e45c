//! The pipelined target writer: many commands in flight on one connection, within a bounded window.
//!
//! Round trips dominate a naive copy (one RESTORE, wait, next RESTORE...). Here the caller encodes
//! commands into one reused buffer and the writer sends it in large writes, while a separate reader
//! task consumes the replies in order and checks each against what was expected of it
//! ([`Expect`]). The two halves are joined by a bounded queue of pending replies, and a byte budget
//! (a semaphore) is taken for every command sent and given back when its reply arrives. So the
//! memory held for a slow target is at most the window (commands and bytes), never the dataset:
//! when the window is full the writer waits, the replication link is not read, and TCP pushes back
//! on the source.
//!
//! Deadlock rule: before the writer waits for anything (window, queue space, a barrier, or the
//! next input), it flushes what it has encoded, so every reply the reader waits for has been sent.
//!
//! The reader also tracks the *applied* replication offset: a pending entry may carry the offset
//! reached once its reply is in, and [`Pending::Applied`] marks offsets of commands that were not
//! sent at all (PING, REPLCONF) so they count as applied once everything before them is.

use std::sync::atomic::{AtomicI64, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use bytes::Bytes;
use tokio::io::AsyncWriteExt;
use tokio::sync::{mpsc, oneshot, Semaphore, TryAcquireError};

use super::error::EngineError;
use crate::client::Conn;
use crate::rdb::crc64;
use crate::resp::{CommandBuf, Decoder, Limits};
use crate::spec::OnConflict;
use crate::transport::WriteHalf;

/// Bounds of the in-flight window and the batching of writes.
#[derive(Debug, Clone, Copy)]
pub struct WriterConfig {
    /// Most commands sent and not yet answered.
    pub max_inflight_commands: usize,
    /// Most bytes sent and not yet answered.
    pub max_inflight_bytes: usize,
    /// Flush the output buffer once it holds this much.
    pub flush_bytes: usize,
}

impl Default for WriterConfig {
    fn default() -> Self {
        WriterConfig {
            max_inflight_commands: 4096,
            max_inflight_bytes: 16 * 1024 * 1024,
            flush_bytes: 128 * 1024,
        }
    }
}

/// What a command's reply must look like, and what it means.
#[derive(Debug)]
pub(crate) enum Expect {
    /// `RESTORE`: `+OK`; `-BUSYKEY` is a skip or a failure depending on `on_conflict`.
    Restore { db: u32, key: Bytes },
    /// One command of a key rewritten as plain commands; the `last` one completes the key.
    Rewrite {
        db: u32,
        key: Bytes,
        command: Bytes,
        last: bool,
    },
    /// SELECT, FLUSHDB, FUNCTION LOAD...: an error fails, unless it contains `tolerate`.
    Setup {
        db: u32,
        what: &'static str,
        tolerate: Option<&'static str>,
    },
}

enum Pending {
    Reply {
        expect: Expect,
        cost: u32,
    },
    /// Consecutive replication-stream commands, queued as one entry: the stream is the hot path,
    /// and one queue operation per command would cost more than decoding the command.
    Stream(StreamBatch),
    Applied(i64),
    Barrier(oneshot::Sender<()>),
}

/// Replication-stream commands sent back to back, answered in order.
struct StreamBatch {
    db: u32,
    /// Command names and first arguments (usually the key), to name the one the target refuses.
    names: Vec<(Bytes, Bytes)>,
    cost: u64,
    /// The offset applied once all of them are answered (the last one that ends a transaction
    /// or stands alone).
    offset: Option<i64>,
    /// Starts with the `MULTI` of an offset wrap (see [`Writer::track_offset`]).
    opens: bool,
    /// Ends with the wrap's trailer: `SELECT 0`, `SET <offset key>`, `SELECT <db>`, `EXEC`.
    closes: bool,
    /// Part of a wrap: replies are `+QUEUED` and the offset counts at the `EXEC`.
    wrapped: bool,
}

impl StreamBatch {
    fn new(db: u32, opens: bool, wrapped: bool) -> Self {
        StreamBatch {
            db,
            names: Vec::with_capacity(STREAM_BATCH),
            cost: 0,
            offset: None,
            opens,
            closes: false,
            wrapped,
        }
    }
}

/// Commands queued inside the trailer of a wrap before its `EXEC`.
const TRAILER_COMMANDS: usize = 3;

/// The key on the target that holds the applied offset, written in the same transaction as the
/// commands that reached it.
struct OffsetKey {
    key: Bytes,
    replid: String,
}

/// A wrap (`MULTI` sent, `EXEC` not yet).
#[derive(Default)]
struct Wrap {
    commands: usize,
    /// The offset reached by the last whole command or transaction inside.
    offset: Option<i64>,
    /// The last command in it completed a command or transaction (the wrap may close here).
    whole: bool,
}

/// Commands per [`StreamBatch`].
const STREAM_BATCH: usize = 256;

/// Most commands in one offset wrap. Each wrap costs the target five commands of its own
/// (`MULTI`, the trailer, `EXEC`) and Ferry a reply array; under a steady stream wraps reach this
/// size (at 256 they averaged ~150 commands, 3% overhead; at 1024 it is under 1%), and the
/// `EXEC` of 1024 small commands blocks the target for about a millisecond.
const WRAP_COMMANDS: usize = 1024;

/// Counters the reader updates as replies come in.
#[derive(Debug, Default)]
pub struct WriterStats {
    pub keys_written: AtomicU64,
    pub keys_skipped: AtomicU64,
    pub commands_applied: AtomicU64,
    pub applied_offset: AtomicI64,
}

struct Shared {
    stats: WriterStats,
    error: Mutex<Option<EngineError>>,
    window: Semaphore,
}

/// Aborts the reader task when the writer is dropped (cancel, error): no task outlives its job.
struct AbortOnDrop(tokio::task::JoinHandle<()>);

impl Drop for AbortOnDrop {
    fn drop(&mut self) {
        self.0.abort();
    }
}

pub struct Writer {
    write: WriteHalf,
    out: CommandBuf,
    tx: mpsc::Sender<Pending>,
    shared: Arc<Shared>,
    _reader: AbortOnDrop,
    cfg: WriterConfig,
    db: Option<u32>,
    batch: Option<StreamBatch>,
    offset_key: Option<OffsetKey>,
    wrap: Option<Wrap>,
    /// The source's db when a db map makes it differ from the connection's (see
    /// [`Writer::note_stream_db`]).
    stream_db: Option<u32>,
    /// The rate limits of the run (`options.limits`, the HA guard), when any may apply.
    throttle: Option<Arc<super::rate::Throttle>>,
    /// A command waited for the rate limits since [`Writer::take_paced`] was last asked.
    paced: bool,
    /// Set for a Redis Cluster target: every call below is routed by slot instead
    /// ([`cluster::ClusterSink`]).
    cluster: Option<Box<cluster::ClusterSink>>,
}

impl Writer {
    /// Takes over an authenticated connection to the target.
    pub fn new(conn: Conn, cfg: WriterConfig, on_conflict: OnConflict, start_offset: i64) -> Self {
        let addr = conn.addr().to_string();
        let (read, write, leftover) = conn.into_parts();
        let (tx, rx) = mpsc::channel(cfg.max_inflight_commands.max(1));
        let shared = Arc::new(Shared {
            stats: WriterStats::default(),
            error: Mutex::new(None),
            window: Semaphore::new(cfg.max_inflight_bytes.max(1)),
        });
        shared
            .stats
            .applied_offset
            .store(start_offset, Ordering::Release);
        let reader = ReplyReader {
            read,
            buf: leftover,
            decoder: Decoder::new(Limits::default()),
            shared: shared.clone(),
            on_conflict,
            addr,
            wrap_names: Vec::new(),
        };
        let task = tokio::spawn(reader.run(rx));
        Writer {
            write,
            out: CommandBuf::with_capacity(cfg.flush_bytes * 2),
            tx,
            shared,
            _reader: AbortOnDrop(task),
            cfg,
            db: None,
            batch: None,
            offset_key: None,
            wrap: None,
            stream_db: None,
            throttle: None,
            paced: false,
            cluster: None,
        }
    }

    /// From now on, replication-stream commands go in wraps: `MULTI`, the commands (a source
    /// transaction's own `MULTI`/`EXEC` left out: it stays atomic inside ours), then
    /// `SELECT 0`, `SET <key> <replid>:<offset>:<db>`, `SELECT <db>`, `EXEC` (the db is the one
    /// the stream is in after the batch: a source continuing by partial resync sends no new
    /// `SELECT`, so a resumed writer must know it). The target thus applies
    /// each batch and records the offset it reached in one atomic step, which is what makes a
    /// resume exactly-once: after any crash, the key says precisely which writes the data holds.
    pub fn track_offset(&mut self, key: Bytes, replid: String) {
        self.cluster_track(replid.clone());
        self.offset_key = Some(OffsetKey { key, replid });
    }

    pub fn stats(&self) -> &WriterStats {
        &self.shared.stats
    }

    /// The replication offset the target has applied.
    pub fn applied_offset(&self) -> i64 {
        self.shared.stats.applied_offset.load(Ordering::Acquire)
    }

    /// The db the writer's connection is on, as far as commands sent so far go.
    pub fn db(&self) -> u32 {
        self.db.unwrap_or(0)
    }

    /// Records that a forwarded command (the stream's own SELECT) switched the db.
    pub fn note_db(&mut self, db: u32) {
        self.db = Some(db);
    }

    /// Records the db the *source's* stream is in, when a db map sends it to another one on
    /// the target: the offset key then records the source's db (a resumed stream continues in
    /// it, and the map is not always invertible), while the trailer's `SELECT` restores the
    /// connection's.
    pub fn note_stream_db(&mut self, db: u32) {
        self.stream_db = Some(db);
    }

    /// The source's db as far as the stream sent goes ([`Writer::note_stream_db`], else the
    /// connection's).
    pub fn stream_db(&self) -> u32 {
        self.stream_db.unwrap_or(self.db())
    }

    fn failure(&self) -> EngineError {
        self.shared
            .error
            .lock()
            .ok()
            .and_then(|mut e| e.take())
            .unwrap_or_else(|| EngineError::TargetLinkLost("the reply reader stopped".into()))
    }

    /// Fails fast if the reader has seen an error.
    pub fn check(&self) -> Result<(), EngineError> {
        if self.is_cluster() {
            // Cluster writes are answered within each flush; the idle standalone half's
            // connection (to the seed node) is not used, and may go away in a failover.
            return Ok(());
        }
        let failed = self
            .shared
            .error
            .lock()
            .map(|e| e.is_some())
            .unwrap_or(true);
        if failed {
            Err(self.failure())
        } else {
            Ok(())
        }
    }

    /// Sends everything encoded so far, and lets the reader expect all of it. An open wrap is
    /// closed first: callers flush only between whole commands and transactions.
    pub async fn flush(&mut self) -> Result<(), EngineError> {
        if self.is_cluster() {
            return self.cluster_flush().await;
        }
        self.close_wrap().await?;
        self.send().await
    }

    /// Sends everything encoded so far without closing a wrap (used while waiting for window
    /// space in the middle of a long transaction: the target answers `+QUEUED` meanwhile).
    async fn send(&mut self) -> Result<(), EngineError> {
        self.push_batch().await?;
        self.write_out().await
    }

    /// Ends the open wrap with the offset key's trailer and `EXEC`.
    async fn close_wrap(&mut self) -> Result<(), EngineError> {
        let Some(wrap) = self.wrap.take() else {
            return Ok(());
        };
        let Some(key) = &self.offset_key else {
            return Ok(());
        };
        // A wrap is closed between whole commands, so it always has an offset; without one the
        // key keeps its value (the data then holds no command past it).
        let offset = wrap.offset.unwrap_or_else(|| self.applied_offset());
        let db = self.db();
        let value = format!("{}:{offset}:{}", key.replid, self.stream_db());
        let start = self.out.len();
        self.out.array(2).arg(b"SELECT").arg_int(0);
        self.out
            .command(&[b"SET".as_slice(), &key.key, value.as_bytes()]);
        self.out.array(2).arg(b"SELECT").arg_int(db as i64);
        self.out.array(1).arg(b"EXEC");
        let cost = self.reserve(self.out.len() - start).await?;
        let batch = self
            .batch
            .get_or_insert_with(|| StreamBatch::new(db, false, true));
        batch.cost += cost as u64;
        batch.closes = true;
        batch.offset = Some(offset);
        self.push_batch().await
    }

    /// Writes the output buffer to the socket.
    async fn write_out(&mut self) -> Result<(), EngineError> {
        if self.out.is_empty() {
            return Ok(());
        }
        // `flush`: a TLS stream may keep the tail of what it accepted as unsent records until
        // then (a no-op on plain TCP); without it the last batch can wait forever for replies.
        let written = self.write.write_all_buf(self.out.buf_mut()).await;
        if let Err(e) = match written {
            Ok(()) => self.write.flush().await,
            Err(e) => Err(e),
        } {
            self.check()?;
            return Err(EngineError::TargetLinkLost(e.to_string()));
        }
        // One huge command (a big rewritten element) must not pin a huge buffer for good.
        if self.out.capacity() > 8 * self.cfg.flush_bytes {
            self.out = CommandBuf::with_capacity(self.cfg.flush_bytes * 2);
        }
        Ok(())
    }

    /// Queues the open stream batch, if any.
    async fn push_batch(&mut self) -> Result<(), EngineError> {
        match self.batch.take() {
            Some(batch) => self.enqueue(Pending::Stream(batch)).await,
            None => Ok(()),
        }
    }

    /// Waits until every command sent so far has been answered (and checked).
    pub async fn drain(&mut self) -> Result<(), EngineError> {
        if self.is_cluster() {
            return self.cluster_flush().await;
        }
        self.flush().await?;
        let (tx, rx) = oneshot::channel();
        self.enqueue(Pending::Barrier(tx)).await?;
        self.write_out().await?;
        rx.await.map_err(|_| self.failure())?;
        self.check()
    }

    async fn enqueue(&mut self, pending: Pending) -> Result<(), EngineError> {
        match self.tx.try_send(pending) {
            Ok(()) => Ok(()),
            Err(mpsc::error::TrySendError::Full(pending)) => {
                // The reader frees queue space as replies arrive; they can only arrive for
                // commands that were written.
                self.write_out().await?;
                self.tx.send(pending).await.map_err(|_| self.failure())
            }
            Err(mpsc::error::TrySendError::Closed(_)) => Err(self.failure()),
        }
    }

    /// Takes window space for a command of `len` bytes, waiting (after a flush) while the window
    /// is full. Returns the space taken, to be given back when the reply arrives.
    async fn reserve(&mut self, len: usize) -> Result<u32, EngineError> {
        let cost = len.clamp(1, self.cfg.max_inflight_bytes.min(u32::MAX as usize)) as u32;
        let shared = self.shared.clone();
        match shared.window.try_acquire_many(cost) {
            Ok(permit) => permit.forget(),
            Err(TryAcquireError::NoPermits) => {
                self.send().await?;
                let permit = shared
                    .window
                    .acquire_many(cost)
                    .await
                    .map_err(|_| self.failure())?;
                permit.forget();
            }
            Err(TryAcquireError::Closed) => return Err(self.failure()),
        }
        Ok(cost)
    }

    /// Admits the command just encoded (`len` bytes) into the window and queues its expectation.
    async fn admit(&mut self, len: usize, expect: Expect) -> Result<(), EngineError> {
        let cost = self.reserve(len).await?;
        self.push_batch().await?;
        self.enqueue(Pending::Reply { expect, cost }).await?;
        if self.out.len() >= self.cfg.flush_bytes {
            self.write_out().await?;
        }
        Ok(())
    }

    /// Switches the connection to `db` unless it is there already.
    pub async fn select(&mut self, db: u32) -> Result<(), EngineError> {
        if self.is_cluster() {
            return self.cluster_select(db);
        }
        if self.db == Some(db) {
            return Ok(());
        }
        let start = self.out.len();
        self.out.array(2).arg(b"SELECT").arg_int(db as i64);
        self.db = Some(db);
        let len = self.out.len() - start;
        self.admit(
            len,
            Expect::Setup {
                db,
                what: "SELECT",
                tolerate: None,
            },
        )
        .await
    }

    /// A setup command (FLUSHDB, FUNCTION LOAD, SCRIPT LOAD) on `db`.
    pub async fn setup(
        &mut self,
        db: u32,
        args: &[&[u8]],
        what: &'static str,
        tolerate: Option<&'static str>,
    ) -> Result<(), EngineError> {
        if self.is_cluster() {
            return self.cluster_setup(db, args, what, tolerate).await;
        }
        self.select(db).await?;
        let start = self.out.len();
        self.out.command(args);
        let len = self.out.len() - start;
        self.admit(len, Expect::Setup { db, what, tolerate }).await
    }

    /// `RESTORE key ttl payload [REPLACE] ABSTTL [IDLETIME s | FREQ f]`, with the DUMP payload
    /// (type byte, value bytes, RDB version, CRC64) built straight into the output buffer.
    pub async fn restore(&mut self, r: Restore<'_>) -> Result<(), EngineError> {
        self.pace(true).await?;
        if self.is_cluster() {
            self.charge(r.raw_value.len());
            return self.cluster_restore(r).await;
        }
        self.select(r.db).await?;
        let start = self.out.len();
        let hint = if r.idle_secs.is_some() || r.freq.is_some() {
            2
        } else {
            0
        };
        let argc = 5 + usize::from(r.replace) + hint;
        let out = &mut self.out;
        out.array(argc)
            .arg(b"RESTORE")
            .arg(r.key)
            .arg_int(r.expire_ms.unwrap_or(0));
        let version = r.rdb_version.to_le_bytes();
        // CRC-64/Jones over type byte, value and version (the rdb module's fast implementation).
        let crc = crc64::update(
            crc64::update(crc64::update(0, &[r.type_byte]), r.raw_value),
            &version,
        );
        out.bulk_header(1 + r.raw_value.len() + 2 + 8)
            .raw(&[r.type_byte]);
        // A big value goes from the parser's buffer straight to the socket: copying it into
        // the output buffer would hold it twice and leave that buffer huge.
        let mut sent_directly = 0;
        if r.raw_value.len() >= self.cfg.flush_bytes {
            sent_directly = self.out.len() - start + r.raw_value.len();
            self.flush().await?;
            if let Err(e) = self.write.write_all(r.raw_value).await {
                self.check()?;
                return Err(EngineError::TargetLinkLost(e.to_string()));
            }
        } else {
            self.out.raw(r.raw_value);
        }
        let rest = self.out.len();
        let out = &mut self.out;
        out.raw(&version).raw(&crc.to_le_bytes()).end_arg();
        if r.replace {
            out.arg(b"REPLACE");
        }
        out.arg(b"ABSTTL");
        if let Some(freq) = r.freq {
            out.arg(b"FREQ").arg_int(freq as i64);
        } else if let Some(idle) = r.idle_secs {
            out.arg(b"IDLETIME")
                .arg_int(idle.min(i64::MAX as u64) as i64);
        }
        let len = if sent_directly > 0 {
            sent_directly + (self.out.len() - rest)
        } else {
            self.out.len() - start
        };
        let key = r.key.clone();
        self.charge(len);
        self.admit(len, Expect::Restore { db: r.db, key }).await
    }

    /// One command of a key rewritten as plain commands.
    pub async fn rewrite_command(
        &mut self,
        db: u32,
        key: &Bytes,
        args: &[Bytes],
        last: bool,
    ) -> Result<(), EngineError> {
        self.pace(true).await?;
        if self.is_cluster() {
            self.charge(args.iter().map(Bytes::len).sum());
            return self.cluster_rewrite(db, key, args, last).await;
        }
        self.select(db).await?;
        let start = self.out.len();
        self.out.command(args);
        let len = self.out.len() - start;
        self.charge(len);
        let command = args.first().cloned().unwrap_or_default();
        self.admit(
            len,
            Expect::Rewrite {
                db,
                key: key.clone(),
                command,
                last,
            },
        )
        .await
    }

    /// A replication-stream command, forwarded byte for byte. `offset` is what the target has
    /// applied once this command is answered (`None` inside a transaction, before its EXEC).
    pub async fn forward(
        &mut self,
        raw: &[u8],
        args: &[Bytes],
        offset: Option<i64>,
    ) -> Result<(), EngineError> {
        if self.throttle.is_some() {
            let whole = self.wrap.as_ref().is_none_or(|w| w.whole);
            self.pace(whole).await?;
            self.charge(raw.len());
        }
        if self.is_cluster() {
            return self.cluster_forward(args, offset).await;
        }
        let opens = self.offset_key.is_some() && self.wrap.is_none();
        let start = self.out.len();
        if opens {
            // The previous batch is closed: the new wrap starts a batch of its own.
            self.push_batch().await?;
            self.out.array(1).arg(b"MULTI");
            self.wrap = Some(Wrap::default());
        }
        self.out.raw(raw);
        let cost = self.reserve(self.out.len() - start).await?;
        let db = self.db();
        if self.batch.as_ref().is_some_and(|b| b.db != db) {
            self.push_batch().await?;
        }
        let wrapped = self.wrap.is_some();
        let batch = self
            .batch
            .get_or_insert_with(|| StreamBatch::new(db, opens, wrapped));
        let name = args.first().cloned().unwrap_or_default();
        let key = args.get(1).cloned().unwrap_or_default();
        batch.names.push((name, key));
        batch.cost += cost as u64;
        if offset.is_some() {
            batch.offset = offset;
        }
        let full = batch.names.len() >= STREAM_BATCH;
        let mut close = false;
        if let Some(wrap) = &mut self.wrap {
            wrap.commands += 1;
            wrap.whole = offset.is_some();
            if offset.is_some() {
                wrap.offset = offset;
                close = wrap.commands >= WRAP_COMMANDS;
            }
        }
        if close {
            self.close_wrap().await?;
        } else if full {
            self.push_batch().await?;
        }
        if self.out.len() >= self.cfg.flush_bytes {
            self.write_out().await?;
        }
        Ok(())
    }

    /// Marks `offset` applied once everything queued before it is (for commands not sent).
    pub async fn mark_applied(&mut self, offset: i64) -> Result<(), EngineError> {
        if self.is_cluster() {
            return self.cluster_mark_applied(offset).await;
        }
        if let Some(wrap) = &mut self.wrap {
            // Between whole commands: the open wrap's key records this offset too.
            wrap.offset = Some(offset);
            wrap.whole = true;
            return Ok(());
        }
        self.push_batch().await?;
        self.enqueue(Pending::Applied(offset)).await
    }
}

/// The parts of a RESTORE.
pub struct Restore<'a> {
    pub db: u32,
    pub key: &'a Bytes,
    pub type_byte: u8,
    pub raw_value: &'a [u8],
    pub rdb_version: u16,
    pub expire_ms: Option<i64>,
    pub replace: bool,
    pub idle_secs: Option<u64>,
    pub freq: Option<u8>,
}

#[path = "writer_cluster.rs"]
pub(crate) mod cluster;
#[path = "writer_pace.rs"]
mod pace;
#[path = "writer_reply.rs"]
mod reply;
use reply::ReplyReader;

#[cfg(test)]
#[path = "writer_tests.rs"]
mod tests;
