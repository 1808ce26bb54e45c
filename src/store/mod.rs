//! The event log on sled: durable appends, ordered reads, live subscriptions.
//!
//! This is the only module that knows sled. Everything Ferry knows about a migration is an
//! [`Event`] in this log; views are folds of it (see `jobs`). Three promises hold:
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

pub mod credentials;
pub mod event;
mod record;
mod writer;

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use thiserror::Error;
use tokio::sync::{broadcast, oneshot};
use uuid::Uuid;

pub use credentials::{CredentialError, Credentials};
pub use event::{Event, EventKind};

use credentials::CredentialStore;
use writer::{AppendRequest, Writer};

/// How many live events a slow subscriber may lag behind before it must catch up from the log.
const LIVE_CAPACITY: usize = 16 * 1024;

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
}

impl From<sled::Error> for StoreError {
    fn from(e: sled::Error) -> Self {
        StoreError::Sled(e.to_string())
    }
}

/// An event before the log has given it a `seq` and a time.
#[derive(Debug, Clone, PartialEq)]
pub struct NewEvent {
    pub migration_id: Uuid,
    pub actor: String,
    pub kind: EventKind,
}

impl NewEvent {
    pub fn new(migration_id: Uuid, actor: impl Into<String>, kind: EventKind) -> Self {
        NewEvent {
            migration_id,
            actor: actor.into(),
            kind,
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
}

impl Store {
    /// Opens (or creates) the store in `data_dir`. Blocking: call it before serving, or from
    /// `spawn_blocking`. Waits up to ten seconds for a previous handle in this process (an app
    /// that is shutting down) to release the directory.
    pub fn open(data_dir: &Path) -> Result<Store, StoreError> {
        let open_err = |message: String| StoreError::Open {
            path: data_dir.to_path_buf(),
            message,
        };
        std::fs::create_dir_all(data_dir).map_err(|e| open_err(e.to_string()))?;
        let db = open_sled(&data_dir.join("log")).map_err(|e| open_err(e.to_string()))?;
        let log = db
            .open_tree("events")
            .map_err(|e| open_err(e.to_string()))?;
        let credentials = CredentialStore::open(&db, data_dir)?;
        let last_seq = match log.scan_prefix([record::EVENT_PREFIX]).next_back() {
            Some(entry) => {
                let (key, _) = entry?;
                record::seq_of_key(&key).ok_or_else(|| open_err("malformed event key".into()))?
            }
            None => 0,
        };
        let (live, _) = broadcast::channel(LIVE_CAPACITY);
        let (requests, queue) = std::sync::mpsc::channel();
        let writer = Writer {
            db: db.clone(),
            log: log.clone(),
            last_seq,
            live: live.clone(),
            poisoned: None,
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
            }),
        })
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

    /// Events of migration `id` with `seq > after`, in order, at most `limit`.
    pub async fn migration_events(
        &self,
        id: Uuid,
        after: u64,
        limit: usize,
    ) -> Result<Vec<Event>, StoreError> {
        let inner = self.inner.clone();
        blocking(move || {
            let start = record::index_key(&id, after.saturating_add(1));
            let end = record::index_key(&id, u64::MAX);
            let mut out = Vec::new();
            for entry in inner.log.range(start..=end).take(limit) {
                let (key, _) = entry?;
                let seq = record::seq_of_key(&key).ok_or(StoreError::Decode {
                    seq: 0,
                    message: "malformed index key".into(),
                })?;
                let bytes =
                    inner
                        .log
                        .get(record::event_key(seq))?
                        .ok_or_else(|| StoreError::Decode {
                            seq,
                            message: "indexed event is missing".into(),
                        })?;
                out.push(decode(seq, &bytes)?);
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
        blocking(move || {
            let start = record::event_key(after.saturating_add(1));
            let end = record::event_key(u64::MAX);
            let mut out = Vec::new();
            for entry in inner.log.range(start..=end) {
                if out.len() >= limit {
                    break;
                }
                let (key, bytes) = entry?;
                let seq = record::seq_of_key(&key).unwrap_or_default();
                let event = decode(seq, &bytes)?;
                if kind.as_deref().is_none_or(|k| event.kind.type_name() == k) {
                    out.push(event);
                }
            }
            Ok(out)
        })
        .await
    }

    /// Calls `f` with every event of the log, in order. Blocking; this is the start-up fold.
    ///
    /// Reading sled and decoding JSON are the two costs, so they run on two threads: this one
    /// walks the tree and hands raw records over in chunks, a helper decodes them.
    pub fn for_each_event(&self, mut f: impl FnMut(Event)) -> Result<(), StoreError> {
        const CHUNK: usize = 4096;
        let log = self.inner.log.clone();
        let (raw_tx, raw_rx) = std::sync::mpsc::sync_channel::<Vec<(u64, sled::IVec)>>(8);
        let (event_tx, event_rx) =
            std::sync::mpsc::sync_channel::<Result<Vec<Event>, StoreError>>(8);
        std::thread::scope(|scope| {
            scope.spawn(move || {
                for chunk in raw_rx {
                    let decoded: Result<Vec<Event>, StoreError> = chunk
                        .iter()
                        .map(|(seq, bytes)| decode(*seq, bytes))
                        .collect();
                    let failed = decoded.is_err();
                    if event_tx.send(decoded).is_err() || failed {
                        return;
                    }
                }
            });
            let reader = scope.spawn(move || -> Result<(), StoreError> {
                let mut chunk = Vec::with_capacity(CHUNK);
                for entry in log.scan_prefix([record::EVENT_PREFIX]) {
                    let (key, bytes) = entry?;
                    chunk.push((record::seq_of_key(&key).unwrap_or_default(), bytes));
                    if chunk.len() == CHUNK
                        && raw_tx
                            .send(std::mem::replace(&mut chunk, Vec::with_capacity(CHUNK)))
                            .is_err()
                    {
                        return Ok(());
                    }
                }
                if !chunk.is_empty() {
                    let _ = raw_tx.send(chunk);
                }
                Ok(())
            });
            for events in event_rx {
                events?.into_iter().for_each(&mut f);
            }
            reader
                .join()
                .map_err(|_| StoreError::Join("log reader panicked".into()))?
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

/// Opens sled, retrying while another handle in this process still holds the directory's lock.
fn open_sled(path: &Path) -> sled::Result<sled::Db> {
    let deadline = Instant::now() + LOCK_WAIT;
    loop {
        match sled::Config::new().path(path).open() {
            Err(sled::Error::Io(e))
                if e.to_string().contains("could not acquire lock")
                    && Instant::now() < deadline =>
            {
                std::thread::sleep(Duration::from_millis(50));
            }
            other => return other,
        }
    }
}

#[cfg(test)]
mod tests;
