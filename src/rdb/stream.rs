//! Decoding streams (§2.4): listpack nodes keyed by a master id, then metadata and groups.
//!
//! Each node's listpack starts with a "master entry" (live count, deleted count, the master field
//! names, a 0 terminator). Every entry follows as: flags, ms delta and seq delta from the node's
//! master id, then either only the values (flag SAMEFIELDS: the fields are the master's) or a
//! field count and field/value pairs, and finally its own element count (used to walk backwards).
//! Deleted entries (flag 1) stay in the listpack until the node is rewritten, so they are skipped.

use bytes::Bytes;

use super::cursor::{Cursor, Step};
use super::decode::{element_bytes, string_bytes};
use super::error::RdbError;
use super::listpack::Listpack;
use super::types;
use super::value::{Consumer, ConsumerGroup, PendingEntry, Stream, StreamEntry, StreamId};

const FLAG_DELETED: i64 = 1;
const FLAG_SAMEFIELDS: i64 = 2;

fn raw_id(cur: &mut Cursor<'_>, what: &'static str) -> Step<StreamId> {
    Ok(StreamId::from_be_bytes(cur.array(what)?))
}

fn id_of_lens(cur: &mut Cursor<'_>, what: &'static str) -> Step<StreamId> {
    Ok(StreamId {
        ms: cur.len(what)?,
        seq: cur.len(what)?,
    })
}

/// Decodes a stream of type 15, 19 or 21 from the whole raw value.
pub(crate) fn decode(type_byte: u8, cur: &mut Cursor<'_>, owner: &Bytes) -> Step<Stream> {
    let max = cur.buf.len() as u64;
    let nodes = cur.count("the stream node count", 2, max)?;
    let mut entries = Vec::new();
    for _ in 0..nodes {
        let at = cur.offset();
        let master = match cur.string("a stream node id")? {
            super::cursor::RdbStr::Raw(b) if b.len() == 16 => {
                let mut raw = [0u8; 16];
                raw.copy_from_slice(b);
                StreamId::from_be_bytes(raw)
            }
            _ => {
                return Err(RdbError::corrupt(at, "a 16-byte stream node id").into());
            }
        };
        let lp_at = cur.offset();
        let blob = string_bytes(owner, cur.string("a stream node listpack")?, lp_at)?;
        decode_node(master, &blob, lp_at, &mut entries)?;
    }
    let length = cur.len("the stream length")?;
    let last_id = id_of_lens(cur, "the last id")?;
    let (first_id, max_deleted_id, entries_added) = if type_byte == types::STREAM_LISTPACKS {
        (None, None, None)
    } else {
        (
            Some(id_of_lens(cur, "the first id")?),
            Some(id_of_lens(cur, "the max deleted id")?),
            Some(cur.len("entries_added")?),
        )
    };
    let group_count = cur.count("the group count", 4, max)?;
    let mut groups = Vec::with_capacity(group_count as usize);
    for _ in 0..group_count {
        let at = cur.offset();
        let name = string_bytes(owner, cur.string("a group name")?, at)?;
        let last_id = id_of_lens(cur, "the group's last id")?;
        let entries_read = if type_byte == types::STREAM_LISTPACKS {
            None
        } else {
            Some(cur.len("entries_read")?).filter(|&n| n != u64::MAX)
        };
        let pel = cur.count("the PEL size", 25, max)?;
        let mut pending = Vec::with_capacity(pel as usize);
        for _ in 0..pel {
            let id = raw_id(cur, "a PEL id")?;
            let delivery_time_ms = cur.u64_le("a delivery time")?;
            let delivery_count = cur.len("a delivery count")?;
            pending.push(PendingEntry {
                id,
                delivery_time_ms,
                delivery_count,
            });
        }
        let consumer_count = cur.count("the consumer count", 10, max)?;
        let mut consumers = Vec::with_capacity(consumer_count as usize);
        for _ in 0..consumer_count {
            let at = cur.offset();
            let name = string_bytes(owner, cur.string("a consumer name")?, at)?;
            let seen_time_ms = cur.u64_le("a consumer seen time")?;
            let active_time_ms = if type_byte == types::STREAM_LISTPACKS_3 {
                Some(cur.u64_le("a consumer active time")?)
            } else {
                None
            };
            let owned = cur.count("the consumer PEL size", 16, max)?;
            let mut ids = Vec::with_capacity(owned as usize);
            for _ in 0..owned {
                ids.push(raw_id(cur, "a consumer PEL id")?);
            }
            consumers.push(Consumer {
                name,
                seen_time_ms,
                active_time_ms,
                pending: ids,
            });
        }
        groups.push(ConsumerGroup {
            name,
            last_id,
            entries_read,
            pending,
            consumers,
        });
    }
    Ok(Stream {
        entries,
        length,
        last_id,
        first_id,
        max_deleted_id,
        entries_added,
        groups,
    })
}

fn decode_node(
    master: StreamId,
    blob: &Bytes,
    base: u64,
    out: &mut Vec<StreamEntry>,
) -> Result<(), RdbError> {
    let mut lp = Listpack::open(blob, base)?;
    let live = lp.expect_int("the node's live count")?;
    let deleted = lp.expect_int("the node's deleted count")?;
    let nfields = lp.expect_int("the master field count")?;
    let bad = |what: &str| RdbError::corrupt(base, format!("a stream node listpack: {what}"));
    if live < 0 || deleted < 0 || nfields < 0 || nfields as usize > blob.len() {
        return Err(bad("non-negative counts"));
    }
    let mut master_fields = Vec::with_capacity(nfields as usize);
    for _ in 0..nfields {
        master_fields.push(element_bytes(blob, lp.expect("a master field")?));
    }
    if lp.expect_int("the master entry terminator")? != 0 {
        return Err(bad("a 0 after the master fields"));
    }
    let total = live.saturating_add(deleted);
    for _ in 0..total {
        let flags = lp.expect_int("entry flags")?;
        let ms_delta = lp.expect_int("an id ms delta")?;
        let seq_delta = lp.expect_int("an id seq delta")?;
        let id = StreamId {
            ms: master.ms.wrapping_add(ms_delta as u64),
            seq: master.seq.wrapping_add(seq_delta as u64),
        };
        let mut fields = Vec::new();
        if flags & FLAG_SAMEFIELDS != 0 {
            fields.reserve(master_fields.len());
            for f in &master_fields {
                let v = element_bytes(blob, lp.expect("a value")?);
                fields.push((f.clone(), v));
            }
        } else {
            let n = lp.expect_int("the entry's field count")?;
            if n < 0 || n as usize > blob.len() {
                return Err(bad("a sane field count"));
            }
            fields.reserve(n as usize);
            for _ in 0..n {
                let f = element_bytes(blob, lp.expect("a field")?);
                let v = element_bytes(blob, lp.expect("a value")?);
                fields.push((f, v));
            }
        }
        lp.expect_int("the entry's lp-count")?;
        if flags & FLAG_DELETED == 0 {
            out.push(StreamEntry { id, fields });
        }
    }
    if lp.next_element()?.is_some() {
        return Err(bad("the end after the node's entries"));
    }
    Ok(())
}
