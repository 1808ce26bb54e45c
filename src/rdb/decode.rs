//! Decoding an entry's raw value into a [`Value`], for every type byte the parser accepts.
//!
//! The raw value is complete (the parser checked it), so running out of bytes here means the
//! value lies about its own sizes: that is reported as truncation at the absolute file offset.
//! Elements are `Bytes` slices of the raw value (or of a decompressed blob) whenever they are
//! stored as plain bytes; integers become their decimal text.

use bytes::Bytes;

use super::cursor::{finished, Cursor, RdbStr, Step};
use super::error::RdbError;
use super::intset::{intset_members, zipmap_pairs};
use super::listpack::{Element, Listpack};
use super::lzf_impl as lzf;
use super::module;
use super::stream;
use super::types;
use super::value::Value;
use super::ziplist::Ziplist;

/// Materialises an RDB string found in `owner` (zero-copy when plain).
pub(crate) fn string_bytes(owner: &Bytes, s: RdbStr<'_>, at: u64) -> Result<Bytes, RdbError> {
    match s {
        RdbStr::Raw(b) => Ok(owner.slice_ref(b)),
        RdbStr::Int(i) => Ok(super::cursor::int_text(i)),
        RdbStr::Lzf { compressed, len } => lzf::decompress(compressed, len)
            .map(Bytes::from)
            .map_err(|e| RdbError::corrupt(at, format!("valid LZF data ({e:?})"))),
    }
}

/// Materialises a listpack/ziplist element found in `owner`.
pub(crate) fn element_bytes(owner: &Bytes, e: Element<'_>) -> Bytes {
    match e {
        Element::Str(s) => owner.slice_ref(s),
        Element::Int(i) => super::cursor::int_text(i),
    }
}

fn element_score(e: Element<'_>, at: u64) -> Result<f64, RdbError> {
    match e {
        Element::Int(i) => Ok(i as f64),
        Element::Str(s) => {
            parse_score(s).ok_or_else(|| RdbError::corrupt(at, "a numeric zset score"))
        }
    }
}

/// Parses a score written as text (`inf`, `-inf`, `nan` included).
fn parse_score(s: &[u8]) -> Option<f64> {
    std::str::from_utf8(s).ok()?.trim().parse().ok()
}

/// Decodes the raw value of a `type_byte` entry whose bytes start at absolute offset `base`.
pub(crate) fn decode_value(
    type_byte: u8,
    raw: &Bytes,
    base: u64,
    valkey: bool,
) -> Result<Value, RdbError> {
    let mut cur = Cursor::new(raw, base);
    let value = decode_inner(type_byte, &mut cur, raw, valkey).map_err(|h| finished(h, base))?;
    if !cur.at_end() {
        return Err(RdbError::corrupt(
            cur.offset(),
            format!(
                "the end of the value, {} more bytes follow",
                raw.len() - cur.pos
            ),
        ));
    }
    Ok(value)
}

/// Reads an RDB string holding an encoded blob and materialises it (decompressing if needed).
fn blob(cur: &mut Cursor<'_>, owner: &Bytes, what: &'static str) -> Step<(Bytes, u64)> {
    let at = cur.offset();
    let s = cur.string(what)?;
    Ok((string_bytes(owner, s, at)?, at))
}

fn decode_inner(type_byte: u8, cur: &mut Cursor<'_>, raw: &Bytes, valkey: bool) -> Step<Value> {
    let max = raw.len() as u64;
    let value = match type_byte {
        types::STRING => {
            let at = cur.offset();
            Value::String(string_bytes(raw, cur.string("a string value")?, at)?)
        }
        types::LIST | types::SET => {
            let n = cur.count("an element count", 1, max)?;
            let mut items = Vec::with_capacity(n as usize);
            for _ in 0..n {
                let at = cur.offset();
                items.push(string_bytes(raw, cur.string("an element")?, at)?);
            }
            if type_byte == types::LIST {
                Value::List(items)
            } else {
                Value::Set(items)
            }
        }
        types::ZSET | types::ZSET_2 => {
            let n = cur.count("a zset size", 2, max)?;
            let mut items = Vec::with_capacity(n as usize);
            for _ in 0..n {
                let at = cur.offset();
                let member = string_bytes(raw, cur.string("a zset member")?, at)?;
                let score = if type_byte == types::ZSET_2 {
                    cur.f64_le("a binary score")?
                } else {
                    let at = cur.offset();
                    match cur.u8("a text score length")? {
                        253 => f64::NAN,
                        254 => f64::INFINITY,
                        255 => f64::NEG_INFINITY,
                        n => parse_score(cur.take(u64::from(n), "a text score")?)
                            .ok_or_else(|| RdbError::corrupt(at, "a text score"))?,
                    }
                };
                items.push((member, score));
            }
            Value::SortedSet(items)
        }
        types::HASH => {
            let n = cur.count("a hash size", 2, max)?;
            let mut items = Vec::with_capacity(n as usize);
            for _ in 0..n {
                let at = cur.offset();
                let f = string_bytes(raw, cur.string("a hash field")?, at)?;
                let at = cur.offset();
                let v = string_bytes(raw, cur.string("a hash value")?, at)?;
                items.push((f, v));
            }
            Value::Hash(items)
        }
        types::MODULE_2 => {
            let module_id = cur.len("a module id")?;
            module::skip_ops(cur)?;
            Value::Module {
                module_id,
                module_name: module::module_name(module_id),
            }
        }
        types::HASH_ZIPMAP => {
            let (data, at) = blob(cur, raw, "a zipmap")?;
            let pairs = zipmap_pairs(&data, at)?;
            Value::Hash(
                pairs
                    .into_iter()
                    .map(|((a, b), (c, d))| (data.slice(a..b), data.slice(c..d)))
                    .collect(),
            )
        }
        types::SET_INTSET => {
            let (data, at) = blob(cur, raw, "an intset")?;
            Value::Set(
                intset_members(&data, at)?
                    .into_iter()
                    .map(super::cursor::int_text)
                    .collect(),
            )
        }
        types::LIST_ZIPLIST | types::ZSET_ZIPLIST | types::HASH_ZIPLIST => {
            let (data, at) = blob(cur, raw, "a ziplist")?;
            let mut zl = Ziplist::open(&data, at)?;
            let hint = zl.size_hint();
            compact_to_value(type_byte, &data, at, hint, || zl.next_element())?
        }
        types::HASH_LISTPACK | types::ZSET_LISTPACK | types::SET_LISTPACK => {
            let (data, at) = blob(cur, raw, "a listpack")?;
            let mut lp = Listpack::open(&data, at)?;
            let hint = lp.size_hint();
            compact_to_value(type_byte, &data, at, hint, || lp.next_element())?
        }
        types::LIST_QUICKLIST | types::LIST_QUICKLIST_2 => {
            let nodes = cur.count("a quicklist node count", 1, max)?;
            let mut items = Vec::new();
            for _ in 0..nodes {
                let container = if type_byte == types::LIST_QUICKLIST_2 {
                    cur.len("a quicklist container")?
                } else {
                    0
                };
                let (data, at) = blob(cur, raw, "a quicklist node")?;
                match container {
                    0 => {
                        let mut zl = Ziplist::open(&data, at)?;
                        while let Some(e) = zl.next_element()? {
                            items.push(element_bytes(&data, e));
                        }
                    }
                    1 => items.push(data),
                    2 => {
                        let mut lp = Listpack::open(&data, at)?;
                        while let Some(e) = lp.next_element()? {
                            items.push(element_bytes(&data, e));
                        }
                    }
                    other => {
                        return Err(RdbError::corrupt(
                            at,
                            format!("quicklist container 1 (plain) or 2 (packed), found {other}"),
                        )
                        .into())
                    }
                }
            }
            Value::List(items)
        }
        types::STREAM_LISTPACKS | types::STREAM_LISTPACKS_2 | types::STREAM_LISTPACKS_3 => {
            Value::Stream(stream::decode(type_byte, cur, raw)?)
        }
        types::HASH_METADATA => {
            let min_expire = cur.u64_le("the minimum field expiry")?;
            let n = cur.count("a hash size", 3, max)?;
            let mut items = Vec::with_capacity(n as usize);
            for _ in 0..n {
                let ttl = cur.len("a field TTL")?;
                let at = cur.offset();
                let f = string_bytes(raw, cur.string("a hash field")?, at)?;
                let at = cur.offset();
                let v = string_bytes(raw, cur.string("a hash value")?, at)?;
                let expire = (ttl != 0).then(|| min_expire.wrapping_add(ttl - 1) as i64);
                items.push((f, v, expire));
            }
            Value::HashWithTtl(items)
        }
        types::VALKEY_HASH_2 if valkey => {
            let n = cur.count("a hash size", 10, max)?;
            let mut items = Vec::with_capacity(n as usize);
            for _ in 0..n {
                let at = cur.offset();
                let f = string_bytes(raw, cur.string("a hash field")?, at)?;
                let at = cur.offset();
                let v = string_bytes(raw, cur.string("a hash value")?, at)?;
                let expire = cur.i64_le("a field expiry")?;
                items.push((f, v, (expire != -1).then_some(expire)));
            }
            Value::HashWithTtl(items)
        }
        types::HASH_LISTPACK_EX => {
            cur.u64_le("the minimum field expiry")?;
            let (data, at) = blob(cur, raw, "a listpack")?;
            let mut lp = Listpack::open(&data, at)?;
            let mut items = Vec::with_capacity(lp.size_hint() / 3);
            while let Some(f) = lp.next_element()? {
                let v = lp.expect("a hash value")?;
                let ttl = lp.expect_int("a field expiry")?;
                items.push((
                    element_bytes(&data, f),
                    element_bytes(&data, v),
                    (ttl != 0).then_some(ttl),
                ));
            }
            Value::HashWithTtl(items)
        }
        other => {
            return Err(RdbError::UnknownByte {
                offset: cur.offset(),
                what: "value type",
                byte: other,
            }
            .into())
        }
    };
    Ok(value)
}

/// Builds the value of a ziplist or listpack type from its elements (`next` yields them in
/// order), grouping them by the type's shape without an intermediate vector.
fn compact_to_value<'a>(
    type_byte: u8,
    data: &Bytes,
    at: u64,
    hint: usize,
    mut next: impl FnMut() -> Result<Option<Element<'a>>, RdbError>,
) -> Result<Value, RdbError> {
    let odd = || RdbError::corrupt(at, "an even number of elements (pairs)");
    Ok(match type_byte {
        types::LIST_ZIPLIST | types::SET_LISTPACK => {
            let mut items = Vec::with_capacity(hint);
            while let Some(e) = next()? {
                items.push(element_bytes(data, e));
            }
            if type_byte == types::LIST_ZIPLIST {
                Value::List(items)
            } else {
                Value::Set(items)
            }
        }
        types::ZSET_ZIPLIST | types::ZSET_LISTPACK => {
            let mut items = Vec::with_capacity(hint / 2);
            while let Some(member) = next()? {
                let score = next()?.ok_or_else(odd)?;
                items.push((element_bytes(data, member), element_score(score, at)?));
            }
            Value::SortedSet(items)
        }
        _ => {
            let mut items = Vec::with_capacity(hint / 2);
            while let Some(field) = next()? {
                let value = next()?.ok_or_else(odd)?;
                items.push((element_bytes(data, field), element_bytes(data, value)));
            }
            Value::Hash(items)
        }
    })
}
