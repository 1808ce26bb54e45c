//! The event log on sled: durable appends, ordered reads, live subscriptions.
//!
//! This is the only module that knows sled, and it knows no domain rules: it stores [`Event`]s
//! (migrations', backups', restores') in one log and hands them back; the typed states are folds
//! of it (see [`crate::aggregate`] and [`crate::jobs`]). Three promises hold:
//!
//! 1. **Durable before acknowledged.** [`Store::append`] returns only after sled has flushed the
//!    events to disk. Many concurrent appends share one flush (group commit, see [`writer`]), so
//!    durability does not cost throughput.
//! 2. **One global order without gaps.** `seq` starts at 1 and increases by one per event across
//!    all migrations. An event and its per-migration index entry are written by one atomic batch,
//!    so a `kill -9` at any moment leaves a log that opens and holds every acknowledged event.
//! 3. **Followers miss nothing.** [`Store::subscribe`] delivers events after they are durable. A
//!    follower that falls behind (the channel is bounded) catches up with
//!    [`Store::events_after`], using the last `seq` it saw.
//!
//! sled's calls block (disk I/O), so the async methods run them on tokio's blocking pool; the
//! writer has a thread of its own.

mod chain;
pub mod credentials;
mod group_commit;
mod record;

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::histogram::{exponential_buckets, Histogram};
use thiserror::Error;
use tokio::sync::{broadcast, oneshot};
use uuid::Uuid;

pub use chain::Genesis;
pub use credentials::{CredentialError, Credentials};

use crate::model::audit::AuditReport;
use crate::model::{AggregateType, Event, EventKind};
use credentials::CredentialStore;
use group_commit::{AppendRequest, GroupCommit};

/// How many live events a slow subscriber may lag behind before it must catch up from the log.
pub(crate) const LIVE_CAPACITY: usize = 16 * 1024;

/// How long [`Store::open`] waits for another handle on the same directory to close.
const LOCK_WAIT: Duration = Duration::from_secs(10);

#[derive(Debug, Error)]
pub enum StoreError {
    #[error("cannot open the event log in {path}: {message}")]
    Open { path: PathBuf, message: String },
    #[error("event log I/O failed: {0}")]
    Sled(String),
    #[error("the event log refuses writes after an I/O error ({0}); restart Ferry")]
    Unavailable(String),
    #[error("event cannot be encoded: {0}")]
    Encode(String),
    #[error("event {seq} in the log cannot be read: {message}")]
    Decode { seq: u64, message: String },
    #[error("the event log writer has stopped")]
    WriterGone,
    #[error(transparent)]
    Credentials(#[from] CredentialError),
    #[error("a blocking store task failed: {0}")]
    Join(String),
    /// Another process holds the data directory (sled allows one).
    #[error(
        "the data directory {path} is in use by another Ferry process ({owner}); stop it, or \
         talk to it: its API, or `ferry cutover ID` / `ferry audit verify` with the same \
         --data-dir"
    )]
    InUse { path: PathBuf, owner: String },
    /// A read found the log jumping over `seq` every time it looked.
    #[error("event {seq} is missing from the log")]
    Missing { seq: u64 },
}

impl From<sled::Error> for StoreError {
    fn from(e: sled::Error) -> Self {
        StoreError::Sled(e.to_string())
    }
}

/// An event before the log has given it a `seq` and a time.
#[derive(Debug, Clone, PartialEq)]
pub struct NewEvent {
    pub aggregate_type: AggregateType,
    pub aggregate_id: Uuid,
    pub actor: String,
    pub kind: EventKind,
}

impl NewEvent {
    pub fn new(
        aggregate_type: AggregateType,
        aggregate_id: Uuid,
        actor: impl Into<String>,
        kind: EventKind,
    ) -> Self {
        NewEvent {
            aggregate_type,
            aggregate_id,
            actor: actor.into(),
            kind,
        }
    }

    /// An event of migration `id`.
    pub fn migration(id: Uuid, actor: impl Into<String>, kind: EventKind) -> Self {
        Self::new(AggregateType::Migration, id, actor, kind)
    }
}

/// What the writer counts and times, for `/metrics`. Clones share the values.
#[derive(Clone, Debug)]
pub struct StoreMetrics {
    /// Events appended since the process started.
    pub events_appended: Counter,
    /// Durable group commits, each one flush.
    pub commits: Counter,
    /// How long each flush (sled's fsync) took, in seconds.
    pub flush_seconds: Histogram,
}

impl Default for StoreMetrics {
    fn default() -> Self {
        StoreMetrics {
            events_appended: Counter::default(),
            commits: Counter::default(),
            // 0.25 ms to 4 s: a fast SSD's fsync to a disk in trouble.
            flush_seconds: Histogram::new(exponential_buckets(0.00025, 2.0, 15)),
        }
    }
}

/// A cheap, cloneable handle on the log. The log closes when the last handle is dropped.
#[derive(Clone)]
pub struct Store {
    inner: Arc<Inner>,
}

struct Inner {
    db: sled::Db,
    log: sled::Tree,
    credentials: CredentialStore,
    requests: std::sync::mpsc::Sender<AppendRequest>,
    live: broadcast::Sender<Arc<Event>>,
    genesis: Genesis,
    metrics: StoreMetrics,
    /// The last `seq` written, as the writer last published it.
    last_seq: Arc<AtomicU64>,
    poisoned: Arc<std::sync::Mutex<Option<String>>>,
}

impl Store {
    /// Opens (or creates) the store in `data_dir`. Blocking: call it before serving, or from
    /// `spawn_blocking`. Waits up to ten seconds for a previous handle in this process (an app
    /// that is shutting down) to release the directory; another process holding it is
    /// [`StoreError::InUse`] at once.
    pub fn open(data_dir: &Path) -> Result<Store, StoreError> {
        let open_err = |message: String| StoreError::Open {
            path: data_dir.to_path_buf(),
            message,
        };
        // Private: the log, the credentials and the backups below it are the owner's alone.
        crate::disk::private_dir(data_dir).map_err(|e| open_err(e.to_string()))?;
        let db = open_sled(data_dir)?;
        let log = db
            .open_tree("events")
            .map_err(|e| open_err(e.to_string()))?;
        let credentials = CredentialStore::open(&db, data_dir)?;
        let (last_seq, sealed_upto) = log_bounds(&log).map_err(|e| open_err(e.to_string()))?;
        let (genesis, head) =
            chain::open_chain(&db, &log, last_seq).map_err(|e| open_err(e.to_string()))?;
        let metrics = StoreMetrics::default();
        let published = Arc::new(AtomicU64::new(last_seq));
        let (live, _) = broadcast::channel(LIVE_CAPACITY);
        let (requests, queue) = std::sync::mpsc::channel();
        let poisoned = Arc::new(std::sync::Mutex::new(None));
        let writer = GroupCommit {
            db: db.clone(),
            log: log.clone(),
            last_seq,
            live: live.clone(),
            poisoned: poisoned.clone(),
            sealed_upto,
            head,
            metrics: metrics.clone(),
            published: published.clone(),
        };
        std::thread::Builder::new()
            .name("ferry-store-writer".into())
            .spawn(move || writer.run(queue))
            .map_err(|e| open_err(e.to_string()))?;
        Ok(Store {
            inner: Arc::new(Inner {
                db,
                log,
                credentials,
                requests,
                live,
                genesis,
                metrics,
                last_seq: published,
                poisoned,
            }),
        })
    }

    /// The `seq` of the last durable event (0 for an empty log).
    pub fn last_seq(&self) -> u64 {
        self.inner.last_seq.load(Ordering::Acquire)
    }

    /// Where the audit chain begins.
    pub fn genesis(&self) -> Genesis {
        self.inner.genesis
    }

    /// Walks the audit chain from the first event (see [`chain::verify`]). Reads the whole log:
    /// seconds for a million events.
    pub async fn verify_chain(&self) -> Result<AuditReport, StoreError> {
        let inner = self.inner.clone();
        blocking(move || chain::verify(&inner.log, inner.genesis)).await
    }

    /// The bytes the store occupies on disk (sled's own count of its files).
    pub fn size_on_disk(&self) -> Result<u64, StoreError> {
        Ok(self.inner.db.size_on_disk()?)
    }

    /// Counters and timings of the writer, for `/metrics`.
    pub fn metrics(&self) -> &StoreMetrics {
        &self.inner.metrics
    }

    /// Why the log refuses appends, if it does (an I/O error, a full disk): sled cannot be
    /// trusted after a failed flush, so only a restart reopens it from what is on disk.
    pub fn unavailable(&self) -> Option<String> {
        self.inner
            .poisoned
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    }

    /// Appends `events` atomically and durably, in order, and returns them with their `seq` and
    /// time. Either all of them are stored or (with an error) none.
    pub async fn append(&self, events: Vec<NewEvent>) -> Result<Vec<Event>, StoreError> {
        if events.is_empty() {
            return Ok(Vec::new());
        }
        let (reply, answer) = oneshot::channel();
        self.inner
            .requests
            .send(AppendRequest { events, reply })
            .map_err(|_| StoreError::WriterGone)?;
        answer.await.map_err(|_| StoreError::WriterGone)?
    }

    /// Appends one event; see [`Store::append`].
    pub async fn append_one(&self, event: NewEvent) -> Result<Event, StoreError> {
        self.append(vec![event])
            .await?
            .pop()
            .ok_or(StoreError::WriterGone)
    }

    /// A live feed of events, each delivered after it is durable.
    pub fn subscribe(&self) -> broadcast::Receiver<Arc<Event>> {
        self.inner.live.subscribe()
    }

    /// Events of aggregate `id` (a migration, backup or restore) with `seq > after`, in order, at
    /// most `limit`.
    pub async fn aggregate_events(
        &self,
        id: Uuid,
        after: u64,
        limit: usize,
    ) -> Result<Vec<Event>, StoreError> {
        let inner = self.inner.clone();
        blocking(move || {
            let start = record::index_key(&id, after.saturating_add(1));
            let end = record::index_key(&id, u64::MAX);
            let mut chunk = None;
            let mut out = Vec::new();
            for entry in inner.log.range(start..=end).take(limit) {
                let (key, _) = entry?;
                let seq = record::seq_of_key(&key).ok_or(StoreError::Decode {
                    seq: 0,
                    message: "malformed index key".into(),
                })?;
                out.push(event_at(&inner.log, seq, &mut chunk)?);
            }
            Ok(out)
        })
        .await
    }

    /// The global log after `after`, in order, at most `limit` events, optionally only those whose
    /// `type` is `kind`.
    pub async fn events_after(
        &self,
        after: u64,
        limit: usize,
        kind: Option<String>,
    ) -> Result<Vec<Event>, StoreError> {
        let inner = self.inner.clone();
        blocking(move || read_after(&inner.log, after, limit, kind.as_deref())).await
    }

    /// Calls `f` with every event of the log, in order. Blocking; this is the start-up fold.
    ///
    /// Walking sled is cheap now that old events sit in chunks; decoding JSON is the cost. So a
    /// reader thread hands out chunks alternately to two decoder threads, and this thread takes
    /// their results back in the same alternation, which keeps the order. The events go back to
    /// the thread that decoded them to be freed: freeing a million small allocations made on
    /// another thread cost this (the folding) thread as much as folding them.
    pub fn for_each_event(&self, mut f: impl FnMut(&Event)) -> Result<(), StoreError> {
        const DECODERS: usize = 2;
        let log = self.inner.log.clone();
        std::thread::scope(|scope| {
            let mut work_txs = Vec::new();
            let mut result_rxs = Vec::new();
            let mut spent_txs = Vec::new();
            for _ in 0..DECODERS {
                let (work_tx, work_rx) = std::sync::mpsc::sync_channel::<Work>(4);
                let (result_tx, result_rx) =
                    std::sync::mpsc::sync_channel::<Result<Vec<Event>, StoreError>>(4);
                let (spent_tx, spent_rx) = std::sync::mpsc::channel::<Vec<Event>>();
                scope.spawn(move || {
                    for work in work_rx {
                        spent_rx.try_iter().for_each(drop);
                        let decoded = work.decode();
                        let failed = decoded.is_err();
                        if result_tx.send(decoded).is_err() || failed {
                            return;
                        }
                    }
                });
                work_txs.push(work_tx);
                result_rxs.push(result_rx);
                spent_txs.push(spent_tx);
            }
            scope.spawn(move || {
                let mut turn = 0;
                let mut send = |work: Work| {
                    let sent = work_txs[turn % DECODERS].send(work).is_ok();
                    turn += 1;
                    sent
                };
                for work in log_work(&log) {
                    let failed = work.is_err();
                    if !send(work.unwrap_or_else(Work::Failed)) || failed {
                        return;
                    }
                }
            });
            let mut expected = 1;
            for turn in 0.. {
                let Ok(decoded) = result_rxs[turn % DECODERS].recv() else {
                    break;
                };
                let decoded = decoded?;
                for event in &decoded {
                    if event.seq != expected {
                        return Err(StoreError::Decode {
                            seq: expected,
                            message: format!(
                                "the log jumps from {} to {}",
                                expected - 1,
                                event.seq
                            ),
                        });
                    }
                    expected += 1;
                    f(event);
                }
                // A decoder that has finished frees nothing more: then it is dropped here.
                let _ = spent_txs[turn % DECODERS].send(decoded);
            }
            Ok(())
        })
    }

    /// Stores the credentials of `id` (encrypted, durable), replacing earlier ones.
    pub async fn put_credentials(&self, id: Uuid, creds: Credentials) -> Result<(), StoreError> {
        let inner = self.inner.clone();
        blocking(move || Ok(inner.credentials.put(&inner.db, id, &creds)?)).await
    }

    /// The stored credentials of `id`, if any.
    pub async fn credentials(&self, id: Uuid) -> Result<Option<Credentials>, StoreError> {
        let inner = self.inner.clone();
        blocking(move || Ok(inner.credentials.get(id)?)).await
    }
}

/// A unit of decoding work for the start-up fold.
enum Work {
    Chunk(sled::IVec),
    Singles(Vec<(u64, sled::IVec)>),
    Failed(StoreError),
}

impl Work {
    fn decode(self) -> Result<Vec<Event>, StoreError> {
        match self {
            Work::Chunk(chunk) => decode_chunk(&chunk),
            Work::Singles(singles) => {
                let mut events = Vec::with_capacity(singles.len());
                for (seq, bytes) in &singles {
                    events.push(decode(*seq, bytes)?);
                }
                Ok(events)
            }
            Work::Failed(e) => Err(e),
        }
    }
}

/// The whole log as work: every chunk, then the single events in groups.
fn log_work(log: &sled::Tree) -> impl Iterator<Item = Result<Work, StoreError>> + '_ {
    const SINGLES: usize = 1024;
    let chunks = record::CHUNK_PREFIXES
        .into_iter()
        .flat_map(|prefix| log.scan_prefix([prefix]))
        .map(|entry| Ok(Work::Chunk(entry?.1)));
    let mut singles = log.scan_prefix([record::EVENT_PREFIX]).peekable();
    let groups = std::iter::from_fn(move || {
        singles.peek()?;
        let mut group = Vec::with_capacity(SINGLES);
        for entry in singles.by_ref().take(SINGLES) {
            match entry {
                Ok((key, bytes)) => {
                    group.push((record::seq_of_key(&key).unwrap_or_default(), bytes))
                }
                Err(e) => return Some(Err(StoreError::from(e))),
            }
        }
        Some(Ok(Work::Singles(group)))
    });
    chunks.chain(groups)
}

fn decode_chunk(stored: &[u8]) -> Result<Vec<Event>, StoreError> {
    let chunk = &unpack(stored)?;
    if !record::frames_are_whole(chunk) {
        return Err(StoreError::Decode {
            seq: 0,
            message: "a sealed chunk is truncated".into(),
        });
    }
    // Sized up front: growing a Vec of ~300-byte events by doubling copied more bytes than the
    // decoding itself read.
    let mut events = Vec::with_capacity(record::SEAL_EVERY as usize);
    for (seq, bytes) in record::frames(chunk) {
        events.push(decode(seq, bytes)?);
    }
    Ok(events)
}

/// The last `seq` in the log, and the last one that is sealed into a chunk.
fn log_bounds(log: &sled::Tree) -> Result<(u64, u64), StoreError> {
    let last_single = match log.scan_prefix([record::EVENT_PREFIX]).next_back() {
        Some(entry) => record::seq_of_key(&entry?.0),
        None => None,
    };
    let first_single = match log.scan_prefix([record::EVENT_PREFIX]).next() {
        Some(entry) => record::seq_of_key(&entry?.0),
        None => None,
    };
    let last_sealed = match chunk_at_or_before(log, u64::MAX)? {
        Some((_, stored)) => record::frames(&unpack(&stored)?).last().map(|(seq, _)| seq),
        None => None,
    };
    let last = last_single.max(last_sealed).unwrap_or(0);
    let sealed = first_single.map_or(last, |first| first - 1);
    Ok((last, sealed))
}

/// One event by `seq`: its single key, or else the chunk that holds it. `cache` keeps the last
/// chunk read, since a migration's events cluster. The single key is tried first: sealing
/// inserts the chunk and removes the key atomically, so a missing key means the chunk exists.
fn event_at(
    log: &sled::Tree,
    seq: u64,
    cache: &mut Option<(u64, Vec<u8>)>,
) -> Result<Event, StoreError> {
    if let Some(bytes) = log.get(record::event_key(seq))? {
        return decode(seq, &bytes);
    }
    let cached = cache
        .as_ref()
        .is_some_and(|(first, _)| (*first..*first + record::SEAL_EVERY).contains(&seq));
    if !cached {
        *cache = match chunk_at_or_before(log, seq)? {
            Some((key, stored)) => record::seq_of_key(&key)
                .map(|first| Ok::<_, StoreError>((first, unpack(&stored)?.into_owned())))
                .transpose()?,
            None => None,
        };
    }
    let missing = || StoreError::Decode {
        seq,
        message: "indexed event is missing".into(),
    };
    let (_, chunk) = cache.as_ref().ok_or_else(missing)?;
    let (_, bytes) = record::frames(chunk)
        .find(|(s, _)| *s == seq)
        .ok_or_else(missing)?;
    decode(seq, bytes)
}

/// The global log after `after`: the chunks from the one holding `after + 1`, then the single
/// keys. The writer may seal events between the two walks; a jump in `seq` reveals that, and the
/// read starts over (a jump that stays is reported as [`StoreError::Missing`]).
fn read_after(
    log: &sled::Tree,
    after: u64,
    limit: usize,
    kind: Option<&str>,
) -> Result<Vec<Event>, StoreError> {
    let mut gap = after.saturating_add(1);
    'attempt: for _ in 0..8 {
        let mut out = Vec::new();
        let mut next = after.saturating_add(1);
        let first_chunk = chunk_at_or_before(log, next)?
            .and_then(|(key, _)| record::seq_of_key(&key))
            .unwrap_or(next);
        let take = |seq: u64, bytes: &[u8], out: &mut Vec<Event>| -> Result<bool, StoreError> {
            let event = decode(seq, bytes)?;
            if kind.is_none_or(|k| event.kind.type_name() == k) {
                out.push(event);
            }
            Ok(out.len() >= limit)
        };
        let chunks = record::CHUNK_PREFIXES.into_iter().flat_map(|prefix| {
            log.range(
                record::chunk_key_in(prefix, first_chunk)..=record::chunk_key_in(prefix, u64::MAX),
            )
        });
        for entry in chunks {
            let (_, stored) = entry?;
            let chunk = unpack(&stored)?;
            for (seq, bytes) in record::frames(&chunk) {
                if seq < next {
                    continue;
                }
                if seq != next {
                    gap = next;
                    continue 'attempt;
                }
                next += 1;
                if take(seq, bytes, &mut out)? {
                    return Ok(out);
                }
            }
        }
        for entry in log.range(record::event_key(next)..=record::event_key(u64::MAX)) {
            let (key, bytes) = entry?;
            let seq = record::seq_of_key(&key).unwrap_or_default();
            if seq != next {
                gap = next;
                continue 'attempt;
            }
            next += 1;
            if take(seq, &bytes, &mut out)? {
                return Ok(out);
            }
        }
        return Ok(out);
    }
    // Sealing moves at most a chunk at a time, and each retry sees it done; a jump that every
    // attempt meets at the same place is a hole in the log.
    Err(StoreError::Missing { seq: gap })
}

/// The chunk with the greatest first `seq` that is at most `seq` (the one that holds `seq`, if a
/// chunk does): the current prefix first, then the legacy one, whose chunks are all older.
fn chunk_at_or_before(
    log: &sled::Tree,
    seq: u64,
) -> Result<Option<(sled::IVec, sled::IVec)>, StoreError> {
    for prefix in record::CHUNK_PREFIXES.into_iter().rev() {
        let found = log
            .range(record::chunk_key_in(prefix, 0)..=record::chunk_key_in(prefix, seq))
            .next_back()
            .transpose()?;
        if found.is_some() {
            return Ok(found);
        }
    }
    Ok(None)
}

/// A stored chunk's frames (see [`record::unpack`]).
fn unpack(stored: &[u8]) -> Result<std::borrow::Cow<'_, [u8]>, StoreError> {
    record::unpack(stored).map_err(|message| StoreError::Decode { seq: 0, message })
}

fn decode(seq: u64, bytes: &[u8]) -> Result<Event, StoreError> {
    record::decode(seq, bytes).map_err(|e| StoreError::Decode {
        seq,
        message: e.to_string(),
    })
}

/// Runs a sled call on the blocking pool, keeping the caller's tracing span.
async fn blocking<T: Send + 'static>(
    f: impl FnOnce() -> Result<T, StoreError> + Send + 'static,
) -> Result<T, StoreError> {
    let span = tracing::Span::current();
    tokio::task::spawn_blocking(move || span.in_scope(f))
        .await
        .map_err(|e| StoreError::Join(e.to_string()))?
}

/// The file in the data directory that names the process holding it: `<pid> <command>`.
const OWNER_FILE: &str = "owner";

/// Whether sled should compress the log in `path`: yes for a new one, and for an existing one
/// whatever it was created with (sled refuses to open it with another setting; its `conf` file
/// says).
///
/// Why compress: sled rewrites a page whole every few updates and reclaims the stale copies
/// lazily, so what sits on disk is mostly copies of JSON records and index pages. zstd shrinks
/// those several-fold (docs/benchmarks.md, "Event store size": 635 → 247 MB per million events).
fn compresses(path: &Path) -> bool {
    // Text lines, then a binary CRC: read as bytes, not as a string.
    match std::fs::read(path.join("conf")) {
        Ok(conf) => String::from_utf8_lossy(&conf)
            .lines()
            .any(|line| line.trim() == "use_compression: true"),
        Err(_) => true,
    }
}

/// Opens sled. While another handle *in this process* still holds the directory's lock (an app
/// that is shutting down), it waits, up to [`LOCK_WAIT`]; when the owner file names another
/// process, it says so at once instead.
fn open_sled(data_dir: &Path) -> Result<sled::Db, StoreError> {
    let path = data_dir.join("log");
    let deadline = Instant::now() + LOCK_WAIT;
    loop {
        let config = sled::Config::new()
            .path(&path)
            .use_compression(compresses(&path));
        match config.open() {
            Err(sled::Error::Io(e)) if e.to_string().contains("could not acquire lock") => {
                let owner = std::fs::read_to_string(data_dir.join(OWNER_FILE)).unwrap_or_default();
                let pid = owner
                    .split_whitespace()
                    .next()
                    .and_then(|p| p.parse::<u32>().ok());
                if pid != Some(std::process::id()) || Instant::now() >= deadline {
                    let owner = match owner.trim() {
                        "" => "a process that did not say which".to_string(),
                        text => format!("pid {text}"),
                    };
                    return Err(StoreError::InUse {
                        path: data_dir.to_path_buf(),
                        owner,
                    });
                }
                std::thread::sleep(Duration::from_millis(50));
            }
            Err(e) => {
                return Err(StoreError::Open {
                    path: data_dir.to_path_buf(),
                    message: e.to_string(),
                })
            }
            Ok(db) => {
                // Best effort: it only improves the message a second process gets.
                let command: Vec<String> = std::env::args()
                    .take(2)
                    .map(|a| {
                        Path::new(&a)
                            .file_name()
                            .map_or(a.clone(), |n| n.to_string_lossy().into_owned())
                    })
                    .collect();
                let text = format!("{} {}\n", std::process::id(), command.join(" "));
                let _ = std::fs::write(data_dir.join(OWNER_FILE), text);
                return Ok(db);
            }
        }
    }
}

#[cfg(test)]
mod tests;
