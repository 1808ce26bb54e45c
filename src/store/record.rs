//! How an event sits on disk: the key layout of the log tree and the compact record encoding.
//!
//! The log lives in one sled tree, so that an event and its index entry are written by a single
//! atomic batch (sled batches are atomic per tree; a crash leaves both or neither):
//!
//! - `e` + `seq` (u64, big endian) → the record. Big-endian keys sort numerically, so a range scan
//!   from `e`+`after+1` reads the global log in order.
//! - `m` + migration id (16 bytes) + `seq` → empty. The per-migration index: a prefix scan yields
//!   that migration's sequence numbers in order.
//!
//! The record is JSON (readable with any sled dump, and tolerant of new optional fields), but not
//! the API's envelope: the API flattens `type`/`data` into the envelope, and serde can only
//! deserialize `#[serde(flatten)]` by buffering the whole map first, which made folding a million
//! events several times slower. The record nests the kind instead and stores the time as integer
//! microseconds, and the `seq` lives in the key only.

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use uuid::Uuid;

use super::event::{Event, EventKind};

pub(crate) const EVENT_PREFIX: u8 = b'e';
pub(crate) const INDEX_PREFIX: u8 = b'm';

/// Key of event `seq` in the log tree.
pub(crate) fn event_key(seq: u64) -> [u8; 9] {
    let mut key = [0u8; 9];
    key[0] = EVENT_PREFIX;
    key[1..].copy_from_slice(&seq.to_be_bytes());
    key
}

/// Key of the index entry of event `seq` of migration `id`.
pub(crate) fn index_key(id: &Uuid, seq: u64) -> [u8; 25] {
    let mut key = [0u8; 25];
    key[0] = INDEX_PREFIX;
    key[1..17].copy_from_slice(id.as_bytes());
    key[17..].copy_from_slice(&seq.to_be_bytes());
    key
}

/// The `seq` at the end of an event or index key.
pub(crate) fn seq_of_key(key: &[u8]) -> Option<u64> {
    let tail: [u8; 8] = key.get(key.len().checked_sub(8)?..)?.try_into().ok()?;
    Some(u64::from_be_bytes(tail))
}

#[derive(Serialize)]
struct RecordRef<'a> {
    #[serde(rename = "m")]
    migration_id: &'a Uuid,
    #[serde(rename = "t")]
    at_micros: i64,
    #[serde(rename = "a")]
    actor: &'a str,
    #[serde(rename = "k")]
    kind: &'a EventKind,
}

#[derive(Deserialize)]
struct Record {
    #[serde(rename = "m")]
    migration_id: Uuid,
    #[serde(rename = "t")]
    at_micros: i64,
    #[serde(rename = "a")]
    actor: String,
    #[serde(rename = "k")]
    kind: EventKind,
}

pub(crate) fn encode(event: &Event) -> Result<Vec<u8>, serde_json::Error> {
    serde_json::to_vec(&RecordRef {
        migration_id: &event.migration_id,
        at_micros: event.at.timestamp_micros(),
        actor: &event.actor,
        kind: &event.kind,
    })
}

pub(crate) fn decode(seq: u64, bytes: &[u8]) -> Result<Event, serde_json::Error> {
    let record: Record = serde_json::from_slice(bytes)?;
    let at = DateTime::<Utc>::from_timestamp_micros(record.at_micros).unwrap_or_default();
    Ok(Event {
        seq,
        migration_id: record.migration_id,
        at,
        actor: record.actor,
        kind: record.kind,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_record_round_trips_with_microsecond_time() {
        let event = Event {
            seq: 42,
            migration_id: Uuid::now_v7(),
            at: DateTime::<Utc>::from_timestamp_micros(1_700_000_000_123_456).unwrap(),
            actor: "api".into(),
            kind: EventKind::Checkpoint {
                replid: "abc".into(),
                applied_offset: 99,
                commands_streamed: 7,
                lag_bytes: Some(3),
            },
        };
        let bytes = encode(&event).unwrap();
        assert_eq!(decode(42, &bytes).unwrap(), event);
    }

    #[test]
    fn keys_sort_by_seq_and_carry_it() {
        assert!(event_key(255) < event_key(256));
        assert_eq!(seq_of_key(&event_key(7)), Some(7));
        let id = Uuid::now_v7();
        assert!(index_key(&id, 1)[1..17] == *id.as_bytes());
        assert_eq!(seq_of_key(&index_key(&id, 9)), Some(9));
        assert_eq!(seq_of_key(b"short"), None);
    }
}
