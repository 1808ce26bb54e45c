//! How an event sits on disk: the key layout of the log tree and the compact record encoding.
//!
//! The log lives in one sled tree, so that an event and its index entry are written by a single
//! atomic batch (sled batches are atomic per tree; a crash leaves both or neither):
//!
//! - `e` + `seq` (u64, big endian) → the record. Big-endian keys sort numerically, so a range scan
//!   from `e`+`after+1` reads the global log in order.
//! - `m` + migration id (16 bytes) + `seq` → empty. The per-migration index: a prefix scan yields
//!   that migration's sequence numbers in order.
//! - `s` + first `seq` → a *sealed chunk*: [`SEAL_EVERY`] consecutive records, each framed as
//!   `seq` (u64 BE) + length (u32 BE) + record. Walking a sled tree costs about a microsecond per
//!   entry, which alone would spend the start-up budget of a million-event log; so the writer
//!   packs every full run of older events into one chunk (inserting it and removing the single
//!   keys in one atomic batch), and the start-up fold walks a thousand entries instead of a
//!   million. An event is always in exactly one place: its `e` key or a chunk.
//! - `c` + first `seq` → a sealed chunk written before chunks moved to `s` ([`LEGACY_CHUNK_PREFIX`]).
//!   Still read; never written. Every `c` chunk holds older events than every `s` chunk.
//!
//! Why chunks moved from `c` to `s`: sled keeps at most 16 entries per leaf and merges a leaf
//! that sealing empties of `e` keys into its left neighbour. With `c` sorting just before `e`,
//! that neighbour was the leaf of the newest chunks (up to 16 × ~90 kB), rewritten whole (as a
//! blob file) at every seal: two thirds of the log's bytes on disk were such stale copies.
//! `s` sorts after the index (`m`), whose entries are never removed, so no merge reaches it.
//!
//! The record is JSON (readable with any sled dump, and tolerant of new optional fields), but not
//! the API's envelope: the API flattens `type`/`data` into the envelope, and serde can only
//! deserialize `#[serde(flatten)]` by buffering the whole map first, which made folding a million
//! events several times slower. The record nests the kind instead and stores the time as integer
//! microseconds, and the `seq` lives in the key only.

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use uuid::Uuid;

use crate::model::{AggregateType, ChainLink, Digest32, Event, EventKind};

pub(crate) const EVENT_PREFIX: u8 = b'e';
pub(crate) const INDEX_PREFIX: u8 = b'm';
/// The prefix of the chunks sealed now.
pub(crate) const CHUNK_PREFIX: u8 = b's';
/// The prefix of the chunks sealed before they moved to [`CHUNK_PREFIX`] (see the module docs).
pub(crate) const LEGACY_CHUNK_PREFIX: u8 = b'c';
/// Both chunk prefixes, older first: walking them in this order walks the chunks in `seq` order.
pub(crate) const CHUNK_PREFIXES: [u8; 2] = [LEGACY_CHUNK_PREFIX, CHUNK_PREFIX];

/// Events per sealed chunk.
pub(crate) const SEAL_EVERY: u64 = 1024;

/// Key of the chunk whose first event is `first_seq`, as it is sealed now.
pub(crate) fn chunk_key(first_seq: u64) -> [u8; 9] {
    chunk_key_in(CHUNK_PREFIX, first_seq)
}

/// Key of the chunk whose first event is `first_seq` under `prefix` (one of [`CHUNK_PREFIXES`]).
pub(crate) fn chunk_key_in(prefix: u8, first_seq: u64) -> [u8; 9] {
    let mut key = event_key(first_seq);
    key[0] = prefix;
    key
}

/// First byte of a compressed chunk (see [`pack`]). A chunk of the first format starts with its
/// first `seq` as a big-endian u64, whose first byte is 0 in any log of fewer than 2^56 events.
pub(crate) const PACKED: u8 = 0xFF;

/// The most bytes a chunk may unpack to: a thousand records of a few hundred bytes each, with
/// room for large reports. Bounds the allocation a damaged length prefix could ask for.
const MAX_UNPACKED: usize = 64 << 20;

/// A chunk's frames as stored: [`PACKED`] then the frames, LZ4-compressed with their length in
/// front. A chunk's records share their keys, ids, replication ids and each other's hashes, so
/// LZ4 shrinks them several-fold and unpacks at gigabytes per second, which keeps the start-up
/// fold within its budget (deflate packed tighter but unpacked ten times slower).
pub(crate) fn pack(frames: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(frames.len() / 4 + 8);
    out.push(PACKED);
    out.extend_from_slice(&lz4_flex::compress_prepend_size(frames));
    out
}

/// The frames of a stored chunk: unpacked when it is [`PACKED`], as they are otherwise.
pub(crate) fn unpack(stored: &[u8]) -> Result<std::borrow::Cow<'_, [u8]>, String> {
    let Some(packed) = stored.strip_prefix(&[PACKED]) else {
        return Ok(std::borrow::Cow::Borrowed(stored));
    };
    let declared = packed
        .get(..4)
        .map(|b| u32::from_le_bytes([b[0], b[1], b[2], b[3]]) as usize)
        .ok_or("a packed chunk is shorter than its length prefix")?;
    if declared > MAX_UNPACKED {
        return Err(format!(
            "a packed chunk claims {declared} bytes, more than the {MAX_UNPACKED} a chunk may hold"
        ));
    }
    lz4_flex::decompress_size_prepended(packed)
        .map(std::borrow::Cow::Owned)
        .map_err(|e| format!("a packed chunk does not unpack: {e}"))
}

/// Appends one framed record to a chunk being built.
pub(crate) fn push_framed(chunk: &mut Vec<u8>, seq: u64, record: &[u8]) {
    chunk.extend_from_slice(&seq.to_be_bytes());
    chunk.extend_from_slice(&(record.len() as u32).to_be_bytes());
    chunk.extend_from_slice(record);
}

/// The `(seq, record)` frames of a chunk, in order. Stops at the first malformed frame (which
/// [`frames_are_whole`] detects).
pub(crate) fn frames(chunk: &[u8]) -> impl Iterator<Item = (u64, &[u8])> {
    let mut rest = chunk;
    std::iter::from_fn(move || {
        let seq = u64::from_be_bytes(rest.get(..8)?.try_into().ok()?);
        let len = u32::from_be_bytes(rest.get(8..12)?.try_into().ok()?) as usize;
        let record = rest.get(12..12 + len)?;
        rest = &rest[12 + len..];
        Some((seq, record))
    })
}

/// Whether every byte of `chunk` belongs to a complete frame.
pub(crate) fn frames_are_whole(chunk: &[u8]) -> bool {
    let framed: usize = frames(chunk).map(|(_, r)| 12 + r.len()).sum();
    framed == chunk.len()
}

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

/// `p` and `h` are the event's place in the audit chain ([`crate::model::audit`]) as hex; absent
/// from records written before the log had a chain.
///
/// `m` is the aggregate's id (it was the migration's id when only migrations had events, hence the
/// letter); `g` its type, absent from records written before backups and restores were aggregates
/// of their own, where [`AggregateType::of_legacy`] derives it.
#[derive(Serialize)]
struct RecordRef<'a> {
    #[serde(rename = "m")]
    aggregate_id: &'a Uuid,
    #[serde(rename = "g")]
    aggregate_type: AggregateType,
    #[serde(rename = "t")]
    at_micros: i64,
    #[serde(rename = "a")]
    actor: &'a str,
    #[serde(rename = "k")]
    kind: &'a EventKind,
    #[serde(rename = "p", skip_serializing_if = "Option::is_none")]
    prev_hash: Option<Digest32>,
    #[serde(rename = "h", skip_serializing_if = "Option::is_none")]
    hash: Option<Digest32>,
}

#[derive(Deserialize)]
struct Record {
    #[serde(rename = "m")]
    aggregate_id: Uuid,
    #[serde(rename = "g", default)]
    aggregate_type: Option<AggregateType>,
    #[serde(rename = "t")]
    at_micros: i64,
    #[serde(rename = "a")]
    actor: String,
    #[serde(rename = "k")]
    kind: EventKind,
    #[serde(rename = "p", default)]
    prev_hash: Option<Digest32>,
    #[serde(rename = "h", default)]
    hash: Option<Digest32>,
}

pub(crate) fn encode(event: &Event) -> Result<Vec<u8>, serde_json::Error> {
    serde_json::to_vec(&RecordRef {
        aggregate_id: &event.aggregate_id,
        aggregate_type: event.aggregate_type,
        at_micros: event.at.timestamp_micros(),
        actor: &event.actor,
        kind: &event.kind,
        prev_hash: event.chain.map(|c| c.prev_hash),
        hash: event.chain.map(|c| c.hash),
    })
}

pub(crate) fn decode(seq: u64, bytes: &[u8]) -> Result<Event, serde_json::Error> {
    let record: Record = serde_json::from_slice(bytes)?;
    let at = DateTime::<Utc>::from_timestamp_micros(record.at_micros).unwrap_or_default();
    let aggregate_type = record
        .aggregate_type
        .unwrap_or_else(|| AggregateType::of_legacy(record.aggregate_id, &record.kind));
    Ok(Event {
        seq,
        aggregate_type,
        aggregate_id: record.aggregate_id,
        at,
        actor: record.actor,
        kind: record.kind,
        chain: match (record.prev_hash, record.hash) {
            (Some(prev_hash), Some(hash)) => Some(ChainLink { prev_hash, hash }),
            _ => None,
        },
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_record_round_trips_with_microsecond_time() {
        let event = Event {
            seq: 42,
            aggregate_type: AggregateType::Migration,
            aggregate_id: Uuid::now_v7(),
            at: DateTime::<Utc>::from_timestamp_micros(1_700_000_000_123_456).unwrap(),
            actor: "api".into(),
            kind: EventKind::Checkpoint {
                replid: "abc".into(),
                applied_offset: 99,
                commands_streamed: 7,
                lag_bytes: Some(3),
                bytes_streamed: None,
            },
            chain: Some(ChainLink {
                prev_hash: Digest32([1; 32]),
                hash: Digest32([2; 32]),
            }),
        };
        let bytes = encode(&event).unwrap();
        assert_eq!(decode(42, &bytes).unwrap(), event);
    }

    /// A record of the first format (no `g`): a backup's event under its own id and a restore point
    /// under a migration's both decode, with the aggregate derived.
    #[test]
    fn records_without_an_aggregate_type_still_decode() {
        let backup = Uuid::now_v7();
        let migration = Uuid::now_v7();
        let own = format!(
            r#"{{"m":"{backup}","t":1700000000000000,"a":"api","k":{{"type":"BackupDeleted","data":{{"backup_id":"{backup}"}}}}}}"#
        );
        let event = decode(1, own.as_bytes()).unwrap();
        assert_eq!(
            (event.aggregate_type, event.aggregate_id),
            (AggregateType::Backup, backup)
        );
        let copy = format!(
            r#"{{"m":"{migration}","t":1700000000000000,"a":"engine","k":{{"type":"BackupCompleted","data":{{"backup_id":"{backup}","bytes":9}}}}}}"#
        );
        let event = decode(2, copy.as_bytes()).unwrap();
        assert_eq!(event.aggregate_type, AggregateType::Migration);
        let started = format!(
            r#"{{"m":"{migration}","t":1700000000000000,"a":"api","k":{{"type":"MigrationStarted","data":{{}}}}}}"#
        );
        assert_eq!(
            decode(3, started.as_bytes()).unwrap().aggregate_type,
            AggregateType::Migration
        );
    }

    #[test]
    fn chunks_frame_records_in_order() {
        let mut chunk = Vec::new();
        push_framed(&mut chunk, 5, b"{}");
        push_framed(&mut chunk, 6, b"[1]");
        let got: Vec<(u64, &[u8])> = frames(&chunk).collect();
        assert_eq!(got, [(5, &b"{}"[..]), (6, &b"[1]"[..])]);
        assert!(frames_are_whole(&chunk));
        assert!(!frames_are_whole(&chunk[..chunk.len() - 1]));
        assert!(
            chunk_key_in(LEGACY_CHUNK_PREFIX, 1) < event_key(0),
            "legacy chunks sort before single events"
        );
        assert!(
            chunk_key(0)[..] > index_key(&Uuid::max(), u64::MAX)[..],
            "chunks sort after the index, away from the single events that sealing removes"
        );
    }

    #[test]
    fn packed_chunks_unpack_and_chunks_of_the_first_format_read_as_they_are() {
        let mut chunk = Vec::new();
        for seq in 1..=100u64 {
            push_framed(
                &mut chunk,
                seq,
                br#"{"m":"0193","a":"engine","k":{"type":"Checkpoint"}}"#,
            );
        }
        let packed = pack(&chunk);
        assert!(
            packed.len() * 4 < chunk.len(),
            "{} of {}",
            packed.len(),
            chunk.len()
        );
        assert_eq!(unpack(&packed).unwrap().as_ref(), &chunk[..]);
        assert_eq!(unpack(&chunk).unwrap().as_ref(), &chunk[..]);
        let mut lying = vec![PACKED];
        lying.extend_from_slice(&u32::MAX.to_le_bytes());
        assert!(unpack(&lying).unwrap_err().contains("claims"));
        assert!(unpack(&packed[..packed.len() - 3]).is_err());
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
