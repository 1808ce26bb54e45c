//! Keyspace notifications: the source's setting, and the subscriber that turns every change into
//! a dirty key.
//!
//! The subscriber listens on `__keyevent@*__:*` (flag `E`): each message's channel names the db
//! and the event, its payload is the key, byte for byte (the key-space channels put the key in
//! the channel name instead). Every event marks its key dirty, whatever it is (`set`, `del`,
//! `expired`, `evicted`, `rename_to`, …): the catch-up reads the key again and copies what it
//! finds, or deletes it on the target when it is gone. Which command changed the key does not
//! matter, only that it changed.
//!
//! Pub/sub is at-most-once: a message published while the connection is down, or dropped with a
//! subscriber that fell behind its output buffer limit, is lost for good. So a lost connection is
//! never resumed quietly: the reader learns it ([`Dirty::take`] answers `Lost`) and copies every
//! key again. The same goes for a dirty set that outgrows its bound.
//!
//! `PING` on a subscribed connection is answered in line with the messages: a pong means every
//! message published before the PING was read has been received ([`Listener::barrier`]). The
//! cutover uses it under its write pause to know that no notification is still on its way.

use std::collections::{HashMap, HashSet};
use std::sync::{Arc, Mutex};

use bytes::Bytes;
use tokio::sync::{mpsc, oneshot};

use crate::client::{ClientError, Conn};
use crate::resp::Frame;
use crate::transport::Peer;

/// The pattern of every key-event channel, in every db.
const PATTERN: &[u8] = b"__keyevent@*__:*";
const CHANNEL_PREFIX: &[u8] = b"__keyevent@";

/// Keys known changed and not yet copied again, with a bound.
#[derive(Debug, Default)]
struct DirtyState {
    keys: HashSet<(u32, Bytes)>,
    /// Why the set cannot be trusted any more (a full re-scan is due), once it happened.
    lost: Option<String>,
}

/// The dirty keys, shared between the subscriber task and the reader.
#[derive(Debug, Clone)]
pub(super) struct Dirty {
    state: Arc<Mutex<DirtyState>>,
    bound: usize,
}

/// What the reader finds when it takes dirty keys.
pub(super) enum Taken {
    Keys(Vec<(u32, Bytes)>),
    /// Changes may have been missed: copy every key again (the reason is recorded).
    Lost(String),
}

impl Dirty {
    pub fn new(bound: usize) -> Dirty {
        Dirty {
            state: Arc::default(),
            bound: bound.max(1),
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, DirtyState> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn mark(&self, db: u32, key: Bytes) {
        let mut state = self.lock();
        if state.lost.is_some() {
            return;
        }
        state.keys.insert((db, key));
        if state.keys.len() > self.bound {
            state.keys = HashSet::new();
            state.lost = Some(format!(
                "more than {} keys changed before they could be copied again (the dirty-key \
                 bound)",
                self.bound
            ));
        }
    }

    fn lose(&self, why: String) {
        let mut state = self.lock();
        if state.lost.is_none() {
            state.keys = HashSet::new();
            state.lost = Some(why);
        }
    }

    /// Keys pending.
    pub fn len(&self) -> usize {
        self.lock().keys.len()
    }

    /// Takes up to `max` dirty keys (they are dirty again if they change once more).
    pub fn take(&self, max: usize) -> Taken {
        let mut state = self.lock();
        if let Some(why) = state.lost.take() {
            state.keys.clear();
            return Taken::Lost(why);
        }
        let keys: Vec<(u32, Bytes)> = state.keys.iter().take(max).cloned().collect();
        for k in &keys {
            state.keys.remove(k);
        }
        Taken::Keys(keys)
    }

    /// Forgets every pending key: a full scan is about to copy them all anyway.
    pub fn clear(&self) {
        self.lock().keys.clear();
    }
}

/// The subscriber: a task reading the notifications into [`Dirty`].
pub(super) struct Listener {
    requests: mpsc::Sender<oneshot::Sender<()>>,
    task: tokio::task::JoinHandle<()>,
}

impl Drop for Listener {
    fn drop(&mut self) {
        self.task.abort();
    }
}

impl Listener {
    /// Subscribes (the subscription is in place when this returns, before any key is read).
    pub async fn start(peer: &Peer, dirty: Dirty) -> Result<Listener, ClientError> {
        let mut conn = Conn::connect(peer).await?;
        let reply = conn.call_ok(&[b"PSUBSCRIBE".as_slice(), PATTERN]).await?;
        if !matches!(&reply, Frame::Array(parts) if parts.first().and_then(Frame::as_bytes).is_some_and(|k| k.eq_ignore_ascii_case(b"psubscribe")))
        {
            return Err(ClientError::NotRedis {
                addr: conn.addr().to_string(),
                detail: format!("PSUBSCRIBE answered {reply:?}"),
            });
        }
        let (requests, rx) = mpsc::channel(4);
        let task = tokio::spawn(listen(conn, dirty, rx));
        Ok(Listener { requests, task })
    }

    /// Waits until every notification published before this call has been read into the dirty
    /// set. `false` when the subscriber is gone (the dirty set then says so).
    pub async fn barrier(&self) -> bool {
        let (tx, rx) = oneshot::channel();
        if self.requests.send(tx).await.is_err() {
            return false;
        }
        rx.await.is_ok()
    }
}

async fn listen(mut conn: Conn, dirty: Dirty, mut requests: mpsc::Receiver<oneshot::Sender<()>>) {
    let mut next_token = 0u64;
    let mut waiting: HashMap<Vec<u8>, oneshot::Sender<()>> = HashMap::new();
    loop {
        tokio::select! {
            request = requests.recv() => {
                let Some(done) = request else { return };
                next_token += 1;
                let token = format!("ferry-barrier-{next_token}").into_bytes();
                if let Err(e) = conn.send_only(&[b"PING".as_slice(), &token]).await {
                    dirty.lose(format!("the keyspace notification connection broke ({e})"));
                    return;
                }
                waiting.insert(token, done);
            }
            frame = conn.next_frame() => {
                let frame = match frame {
                    Ok(frame) => frame,
                    Err(e) => {
                        dirty.lose(format!(
                            "the keyspace notification connection broke ({e}); notifications \
                             published meanwhile are lost"
                        ));
                        return;
                    }
                };
                match message(frame) {
                    Some(Message::Changed(db, key)) => dirty.mark(db, key),
                    Some(Message::Pong(token)) => {
                        if let Some(done) = waiting.remove(&token[..]) {
                            let _ = done.send(());
                        }
                    }
                    None => {}
                }
            }
        }
    }
}

enum Message {
    Changed(u32, Bytes),
    Pong(Bytes),
}

/// `pmessage <pattern> __keyevent@<db>__:<event> <key>`, or `pong <token>`.
fn message(frame: Frame) -> Option<Message> {
    let Frame::Array(parts) = frame else {
        return None;
    };
    let kind = parts.first()?.as_bytes()?;
    if kind.eq_ignore_ascii_case(b"pong") {
        return Some(Message::Pong(parts.get(1)?.as_bytes()?.clone()));
    }
    if !kind.eq_ignore_ascii_case(b"pmessage") {
        return None;
    }
    let channel = parts.get(2)?.as_bytes()?;
    let key = parts.get(3)?.as_bytes()?.clone();
    Some(Message::Changed(channel_db(channel)?, key))
}

/// The db of `__keyevent@<db>__:<event>`.
fn channel_db(channel: &[u8]) -> Option<u32> {
    let rest = channel.strip_prefix(CHANNEL_PREFIX)?;
    let end = rest.iter().position(|b| *b == b'_')?;
    std::str::from_utf8(&rest[..end]).ok()?.parse().ok()
}

/// The source's `notify-keyspace-events`.
pub(super) async fn current_setting(source: &mut Conn) -> Result<String, ClientError> {
    let reply = source
        .call_ok(&["CONFIG", "GET", "notify-keyspace-events"])
        .await?;
    let value = match reply {
        Frame::Array(parts) => parts.get(1).and_then(Frame::as_bytes).cloned(),
        _ => None,
    };
    Ok(value
        .map(|v| String::from_utf8_lossy(&v).into_owned())
        .unwrap_or_default())
}

pub(super) async fn set(source: &mut Conn, value: &str) -> Result<(), ClientError> {
    source
        .call_ok(&["CONFIG", "SET", "notify-keyspace-events", value])
        .await
        .map(drop)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn key_event_messages_name_their_db_and_key() {
        let bulk = |s: &[u8]| Frame::Bulk(Bytes::copy_from_slice(s));
        let frame = Frame::Array(vec![
            bulk(b"pmessage"),
            bulk(PATTERN),
            bulk(b"__keyevent@12__:expired"),
            bulk(b"a key\x00"),
        ]);
        match message(frame) {
            Some(Message::Changed(db, key)) => {
                assert_eq!(db, 12);
                assert_eq!(&key[..], b"a key\x00");
            }
            _ => panic!("not a change"),
        }
        assert!(channel_db(b"__keyspace@1__:k").is_none());
    }

    #[test]
    fn an_overflowing_dirty_set_asks_for_a_full_scan() {
        let dirty = Dirty::new(2);
        dirty.mark(0, Bytes::from_static(b"a"));
        dirty.mark(0, Bytes::from_static(b"a"));
        dirty.mark(1, Bytes::from_static(b"a"));
        assert_eq!(dirty.len(), 2);
        dirty.mark(0, Bytes::from_static(b"b"));
        assert!(matches!(dirty.take(10), Taken::Lost(why) if why.contains("bound")));
        assert!(matches!(dirty.take(10), Taken::Keys(k) if k.is_empty()));
    }
}
