//! The check phase for values: walk a serialized value to find where it ends, without decoding it.
//!
//! A value can be far bigger than one network read, so the walk is resumable: a [`Resume`]
//! remembers where the last complete element of the value's main loop ended and how many elements
//! remain. When the parser retries after more bytes arrived, the walk continues there instead of
//! from the value's start, which keeps byte-at-a-time feeding linear in the value size.
//! Encoded blobs (listpacks, ziplists, intsets) are single RDB strings here: their inside is only
//! looked at when a value is decoded.

use super::cursor::{Cursor, Halt, Step};
use super::error::RdbError;
use super::module;
use super::types;

/// Where the walk of the current value stopped. Positions are relative to the parser's buffer.
#[derive(Debug, Default, Clone)]
pub(crate) struct Resume {
    /// 0: nothing read yet; 1: in the main element loop; 2: in a stream's group loop.
    stage: u8,
    /// Where the next element starts.
    pos: usize,
    /// Elements left in the current loop.
    remaining: u64,
}

/// Whether `type_byte` is a value type at all (of either fork, in any version): a byte that is
/// not is reported as an unknown opcode; one that is, but cannot be read from this file, is
/// refused by [`super::version::type_in_file`] with the reason.
pub(crate) fn is_value_type(type_byte: u8) -> bool {
    matches!(type_byte, 0..=7 | 9..=28)
}

/// Skips a value of `type_byte`, from `cur.pos`, continuing from `resume`.
pub(crate) fn skip_value(
    type_byte: u8,
    cur: &mut Cursor<'_>,
    resume: &mut Resume,
    valkey: bool,
) -> Step<()> {
    if resume.stage == 0 {
        let count = match type_byte {
            types::STRING
            | types::HASH_ZIPMAP
            | types::LIST_ZIPLIST
            | types::SET_INTSET
            | types::ZSET_ZIPLIST
            | types::HASH_ZIPLIST
            | types::HASH_LISTPACK
            | types::ZSET_LISTPACK
            | types::SET_LISTPACK => {
                cur.skip_string("a string value")?;
                return Ok(());
            }
            types::HASH_LISTPACK_EX => {
                cur.take(8, "the minimum field expiry")?;
                cur.skip_string("a listpack")?;
                return Ok(());
            }
            types::LIST
            | types::SET
            | types::ZSET
            | types::HASH
            | types::ZSET_2
            | types::LIST_QUICKLIST
            | types::LIST_QUICKLIST_2
            | types::STREAM_LISTPACKS
            | types::STREAM_LISTPACKS_2
            | types::STREAM_LISTPACKS_3 => cur.len("an element count")?,
            types::VALKEY_HASH_2 if valkey => cur.len("an element count")?,
            types::HASH_METADATA => {
                cur.take(8, "the minimum field expiry")?;
                cur.len("an element count")?
            }
            types::MODULE_2 => {
                cur.len("a module id")?;
                u64::MAX
            }
            other => {
                return Err(Halt::from(RdbError::UnknownByte {
                    offset: cur.offset() - 1,
                    what: "value type",
                    byte: other,
                }))
            }
        };
        resume.stage = 1;
        resume.pos = cur.pos;
        resume.remaining = count;
    }
    cur.pos = resume.pos;
    while resume.stage == 1 && resume.remaining > 0 {
        match type_byte {
            types::LIST | types::SET | types::LIST_QUICKLIST => {
                cur.skip_string("an element")?;
            }
            types::HASH => {
                cur.skip_string("a hash field")?;
                cur.skip_string("a hash value")?;
            }
            types::ZSET => {
                cur.skip_string("a zset member")?;
                let n = cur.u8("a text score length")?;
                if n < 253 {
                    cur.take(u64::from(n), "a text score")?;
                }
            }
            types::ZSET_2 => {
                cur.skip_string("a zset member")?;
                cur.take(8, "a binary score")?;
            }
            types::LIST_QUICKLIST_2 => {
                cur.len("a quicklist container")?;
                cur.skip_string("a quicklist node")?;
            }
            types::HASH_METADATA => {
                cur.len("a field TTL")?;
                cur.skip_string("a hash field")?;
                cur.skip_string("a hash value")?;
            }
            types::VALKEY_HASH_2 => {
                cur.skip_string("a hash field")?;
                cur.skip_string("a hash value")?;
                cur.take(8, "a field expiry")?;
            }
            types::MODULE_2 => {
                if module::skip_op(cur)? {
                    resume.remaining = 1;
                }
            }
            _ => {
                // streams: nodes of (master id, listpack)
                cur.skip_string("a stream node id")?;
                cur.skip_string("a stream node listpack")?;
            }
        }
        resume.remaining -= 1;
        resume.pos = cur.pos;
    }
    if !types::is_stream(type_byte) {
        return Ok(());
    }
    if resume.stage == 1 {
        cur.len("the stream length")?;
        cur.len("the last id ms")?;
        cur.len("the last id seq")?;
        if type_byte != types::STREAM_LISTPACKS {
            for _ in 0..5 {
                cur.len("stream metadata")?;
            }
        }
        let groups = cur.len("the group count")?;
        resume.stage = 2;
        resume.pos = cur.pos;
        resume.remaining = groups;
    }
    while resume.remaining > 0 {
        skip_group(type_byte, cur)?;
        resume.remaining -= 1;
        resume.pos = cur.pos;
    }
    Ok(())
}

fn skip_group(type_byte: u8, cur: &mut Cursor<'_>) -> Step<()> {
    cur.skip_string("a group name")?;
    cur.len("the group's last id ms")?;
    cur.len("the group's last id seq")?;
    if type_byte != types::STREAM_LISTPACKS {
        cur.len("entries_read")?;
    }
    let pel = cur.len("the PEL size")?;
    for _ in 0..pel {
        cur.take(16 + 8, "a PEL entry")?;
        cur.len("a delivery count")?;
    }
    let consumers = cur.len("the consumer count")?;
    for _ in 0..consumers {
        cur.skip_string("a consumer name")?;
        cur.take(8, "the seen time")?;
        if type_byte == types::STREAM_LISTPACKS_3 {
            cur.take(8, "the active time")?;
        }
        let owned = cur.len("the consumer PEL size")?;
        cur.take(owned.saturating_mul(16), "consumer PEL ids")?;
    }
    Ok(())
}
