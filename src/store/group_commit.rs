//! Group commit: one thread owns every write to the log.
//!
//! A durable append costs one `fsync`, a few milliseconds on most disks, so a store that flushed
//! once per event would top out at a few hundred appends per second. Callers therefore hand their
//! events to this thread through a channel and wait for a reply. The thread takes whatever has
//! queued up while the previous flush ran (up to [`MAX_GROUP`] requests), writes all of it as one
//! atomic sled batch, flushes once, and only then answers every caller. Under load, many appends
//! share one fsync; with a single caller, the latency is one fsync, as before.
//!
//! Owning the writes in one thread also makes `seq` simple: the thread is the only one assigning
//! numbers, and it assigns them in the order it writes, so the log has no gaps. If a write or
//! flush fails, every caller of that group gets the error, and so does every later caller: after
//! an I/O error sled may or may not hold the batch, and guessing would risk a gap or a reused
//! number. A restart reopens the log from what is on disk, which is always consistent.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::mpsc::{Receiver, TryRecvError};
use std::sync::Arc;

use chrono::Utc;
use tokio::sync::{broadcast, oneshot};

use super::record;
use super::{NewEvent, StoreError, StoreMetrics};
use crate::model::audit::{self, Digest32};
use crate::model::Event;

/// The most requests one flush covers. Bounds the latency a burst adds to the last caller.
pub(crate) const MAX_GROUP: usize = 4096;

/// One caller's events (appended together, atomically) and where to send the outcome.
pub(crate) struct AppendRequest {
    pub events: Vec<NewEvent>,
    pub reply: oneshot::Sender<Result<Vec<Event>, StoreError>>,
}

pub(crate) struct GroupCommit {
    pub db: sled::Db,
    pub log: sled::Tree,
    /// The last `seq` written; the next event gets `last_seq + 1`.
    pub last_seq: u64,
    pub live: broadcast::Sender<Arc<Event>>,
    /// Set after a failed write: the reason every later append is refused (shared with the
    /// store's handles, so readiness can say it).
    pub poisoned: Arc<std::sync::Mutex<Option<String>>>,
    /// Every event up to this `seq` sits in a sealed chunk (see [`record`]).
    pub sealed_upto: u64,
    /// The hash of the last event written (the genesis' `prev_hash` before the first): what the
    /// next event links to (see [`crate::model::audit`]).
    pub head: Digest32,
    pub metrics: StoreMetrics,
    /// Where [`super::Store::last_seq`] reads `last_seq`.
    pub published: Arc<AtomicU64>,
}

impl GroupCommit {
    /// Serves requests until every [`super::Store`] handle is gone.
    pub fn run(mut self, requests: Receiver<AppendRequest>) {
        let mut group = Vec::new();
        while let Ok(first) = requests.recv() {
            group.push(first);
            while group.len() < MAX_GROUP {
                match requests.try_recv() {
                    Ok(next) => group.push(next),
                    Err(TryRecvError::Empty | TryRecvError::Disconnected) => break,
                }
            }
            self.commit(&mut group);
        }
        // The channel is closed: flush whatever sled still buffers before the handle goes away.
        if let Err(e) = self.db.flush() {
            tracing::error!(error = %e, "final flush of the event log failed");
        }
    }

    fn commit(&mut self, group: &mut Vec<AppendRequest>) {
        let poisoned = self
            .poisoned
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone();
        if let Some(reason) = &poisoned {
            for request in group.drain(..) {
                let _ = request
                    .reply
                    .send(Err(StoreError::Unavailable(reason.clone())));
            }
            return;
        }
        // Stored with microsecond precision; the in-memory copy must match what a re-read gives.
        let now = Utc::now();
        let at = chrono::DateTime::from_timestamp_micros(now.timestamp_micros()).unwrap_or(now);
        let mut batch = sled::Batch::default();
        let mut written: Vec<Result<Vec<Event>, StoreError>> = Vec::with_capacity(group.len());
        let mut seq = self.last_seq;
        let mut head = self.head;
        for request in group.iter_mut() {
            let mut events = Vec::with_capacity(request.events.len());
            let mut encoded = Vec::with_capacity(request.events.len());
            let mut failed = None;
            let mut request_head = head;
            for new in request.events.drain(..) {
                let mut event = Event {
                    seq: seq + events.len() as u64 + 1,
                    aggregate_type: new.aggregate_type,
                    aggregate_id: new.aggregate_id,
                    at,
                    actor: new.actor,
                    kind: new.kind,
                    chain: None,
                };
                let link = audit::link_after(request_head, &event);
                request_head = link.hash;
                event.chain = Some(link);
                match record::encode(&event) {
                    Ok(bytes) => encoded.push(bytes),
                    Err(e) => {
                        failed = Some(StoreError::Encode(e.to_string()));
                        break;
                    }
                }
                events.push(event);
            }
            // A request whose events cannot be encoded fails alone; it takes no numbers, and the
            // next request links to the same head.
            if let Some(err) = failed {
                written.push(Err(err));
                continue;
            }
            head = request_head;
            for (event, bytes) in events.iter().zip(encoded) {
                batch.insert(&record::event_key(event.seq), bytes);
                batch.insert(&record::index_key(&event.aggregate_id, event.seq), &[]);
            }
            seq += events.len() as u64;
            written.push(Ok(events));
        }

        let appended = seq - self.last_seq;
        let durable = self.log.apply_batch(batch).and_then(|()| {
            let started = std::time::Instant::now();
            let flushed = self.db.flush().map(|_| ());
            self.metrics
                .flush_seconds
                .observe(started.elapsed().as_secs_f64());
            flushed
        });
        match durable {
            Ok(()) => {
                self.last_seq = seq;
                self.published.store(seq, Ordering::Release);
                self.head = head;
                self.metrics.commits.inc();
                self.metrics.events_appended.inc_by(appended);
                for (request, outcome) in group.drain(..).zip(written) {
                    if let Ok(events) = &outcome {
                        for event in events {
                            // Nobody listening is fine: followers catch up from the log.
                            let _ = self.live.send(Arc::new(event.clone()));
                        }
                    }
                    // The caller may have gone away (request cancelled); the event is stored anyway.
                    let _ = request.reply.send(outcome);
                }
                // After the replies: sealing is housekeeping, no caller waits for it.
                if let Err(e) = self.seal() {
                    tracing::warn!(error = %e, "sealing events into a chunk failed; will retry");
                }
            }
            Err(e) => {
                tracing::error!(error = %e, "writing to the event log failed");
                let message = e.to_string();
                *self.poisoned.lock().unwrap_or_else(|p| p.into_inner()) = Some(message.clone());
                for request in group.drain(..) {
                    let _ = request.reply.send(Err(StoreError::Sled(message.clone())));
                }
            }
        }
    }

    /// Packs each full run of [`record::SEAL_EVERY`] unsealed events into one chunk, atomically
    /// (chunk in, single keys out, one batch). No flush: the events were durable already, and
    /// sled applies batches in order, so a crash leaves either the chunk or the single keys.
    fn seal(&mut self) -> Result<(), sled::Error> {
        while self.last_seq.saturating_sub(self.sealed_upto) >= record::SEAL_EVERY {
            let first = self.sealed_upto + 1;
            let last = self.sealed_upto + record::SEAL_EVERY;
            let mut chunk = Vec::new();
            let mut batch = sled::Batch::default();
            let mut expected = first;
            for entry in self
                .log
                .range(record::event_key(first)..=record::event_key(last))
            {
                let (key, value) = entry?;
                if record::seq_of_key(&key) != Some(expected) {
                    // Not the run we expect (should never happen): leave the log as it is.
                    tracing::error!(expected, "unexpected key while sealing; sealing stops");
                    self.sealed_upto = u64::MAX / 2;
                    return Ok(());
                }
                record::push_framed(&mut chunk, expected, &value);
                batch.remove(key);
                expected += 1;
            }
            if expected != last + 1 {
                tracing::error!(first, last, "events missing while sealing; sealing stops");
                self.sealed_upto = u64::MAX / 2;
                return Ok(());
            }
            batch.insert(&record::chunk_key(first), record::pack(&chunk));
            self.log.apply_batch(batch)?;
            self.sealed_upto = last;
        }
        Ok(())
    }
}
