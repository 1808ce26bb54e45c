//! Deep checks of one value, as Redis makes them with `sanitize-dump-payload yes`, and the cheap
//! test for an empty collection.
//!
//! The parser's check phase proves that a record is framed right (its lengths add up), not that
//! what sits inside a ziplist, listpack or intset is consistent. Redis refuses an inconsistent
//! value only when it loads it, so a file Ferry accepted could fail a migration half-way, after
//! thousands of keys were written. An uploaded file is therefore checked here, value by value,
//! before it is accepted:
//!
//! - every LZF string decompresses to its announced length (within the configured cap);
//! - ziplists: header size, tail offset, every entry's `prevlen`, the header's count;
//! - listpacks: header size, every entry's back-length, the header's count;
//! - intsets: a valid width, the size the count implies, members strictly ascending;
//! - hashes, sets and sorted sets: whole pairs, and no field or member twice;
//! - streams and hashes with field expiries: decoded whole (their own consistency checks);
//! - module values are opaque (only the module can read them) and pass as framed.
//!
//! Elements are checked as they are walked and dropped at once, so memory stays at one element
//! plus one 8-byte hash per member of the collection (for the duplicate check), whatever the
//! size of the value.

use std::collections::HashSet;
use std::hash::{BuildHasher, RandomState};

use super::cursor::{finished, Cursor, RdbStr, Step};
use super::error::RdbError;
use super::intset::{intset_members, zipmap_pairs};
use super::listpack::{Element, Listpack};
use super::lzf_impl as lzf;
use super::parser::Entry;
use super::types;
use super::ziplist::Ziplist;

/// Empty compact containers are a few bytes; one compressed this small is decompressed to look.
const TINY_BLOB: usize = 64;

/// Whether `entry` is a collection with no elements. Older servers could write such keys; Redis
/// skips them when it loads a file (`RESTORE` refuses them as "Bad data format"), so Ferry
/// skips and counts them too. Cheap: reads only the count at the start of the value.
pub fn is_empty_collection(entry: &Entry) -> bool {
    let mut cur = Cursor::new(&entry.raw_value, entry.value_offset);
    let count = |cur: &mut Cursor<'_>| cur.len("a count").ok();
    match entry.type_byte {
        types::LIST | types::SET | types::ZSET | types::ZSET_2 | types::HASH => {
            count(&mut cur) == Some(0)
        }
        types::LIST_QUICKLIST | types::LIST_QUICKLIST_2 => count(&mut cur) == Some(0),
        types::HASH_METADATA => {
            cur.u64_le("the minimum field expiry").is_ok() && count(&mut cur) == Some(0)
        }
        types::HASH_ZIPMAP
        | types::SET_INTSET
        | types::LIST_ZIPLIST
        | types::ZSET_ZIPLIST
        | types::HASH_ZIPLIST
        | types::HASH_LISTPACK
        | types::ZSET_LISTPACK
        | types::SET_LISTPACK => blob_is_empty(entry.type_byte, &mut cur),
        types::HASH_LISTPACK_EX => {
            cur.u64_le("the minimum field expiry").is_ok()
                && blob_is_empty(types::HASH_LISTPACK, &mut cur)
        }
        _ => false,
    }
}

/// Whether the compact blob at the cursor holds no elements.
fn blob_is_empty(type_byte: u8, cur: &mut Cursor<'_>) -> bool {
    let blob = match cur.string("a blob") {
        Ok(RdbStr::Raw(b)) => b.to_vec(),
        Ok(RdbStr::Lzf { compressed, len }) if len <= TINY_BLOB => {
            match lzf::decompress(compressed, len) {
                Ok(b) => b,
                Err(_) => return false,
            }
        }
        _ => return false,
    };
    match type_byte {
        types::HASH_ZIPMAP => blob.first() == Some(&0) && blob.get(1) == Some(&0xFF),
        types::SET_INTSET => blob.get(4..8) == Some(&[0, 0, 0, 0]),
        types::LIST_ZIPLIST | types::ZSET_ZIPLIST | types::HASH_ZIPLIST => {
            blob.len() == 11 && blob[10] == 0xFF
        }
        _ => blob.len() == 7 && blob[6] == 0xFF,
    }
}

/// Checks `entry`'s value as deeply as Redis's `sanitize-dump-payload yes` (see the module docs).
pub fn check_entry(entry: &Entry) -> Result<(), RdbError> {
    match entry.type_byte {
        types::MODULE_2 => return Ok(()),
        t if types::is_stream(t)
            || matches!(
                t,
                types::HASH_METADATA | types::HASH_LISTPACK_EX | types::VALKEY_HASH_2
            ) =>
        {
            return entry.decode().map(drop);
        }
        _ => {}
    }
    let raw = &entry.raw_value;
    let base = entry.value_offset;
    let mut cur = Cursor::new(raw, base);
    let mut checker = Checker::default();
    checker
        .value(entry.type_byte, &mut cur, raw.len() as u64)
        .map_err(|h| finished(h, base))?;
    if !cur.at_end() {
        return Err(RdbError::corrupt(cur.offset(), "the end of the value"));
    }
    Ok(())
}

/// Duplicate detection by 64-bit hashes of the members.
#[derive(Default)]
struct Checker {
    hasher: RandomState,
    seen: HashSet<u64>,
}

/// How the elements of a container group.
#[derive(Clone, Copy, PartialEq)]
enum Shape {
    /// Lists: anything goes.
    Items,
    /// Sets: no member twice.
    Members,
    /// Hashes and sorted sets: pairs, no field/member twice; `scored` checks the second half of
    /// each pair is a number.
    Pairs { scored: bool },
}

fn shape_of(type_byte: u8) -> Shape {
    match type_byte {
        types::LIST | types::LIST_ZIPLIST => Shape::Items,
        types::SET | types::SET_INTSET | types::SET_LISTPACK => Shape::Members,
        types::ZSET | types::ZSET_2 | types::ZSET_ZIPLIST | types::ZSET_LISTPACK => {
            Shape::Pairs { scored: true }
        }
        _ => Shape::Pairs { scored: false },
    }
}

impl Checker {
    fn fresh(&mut self, at: u64, what: &[u8]) -> Result<(), RdbError> {
        if self.seen.insert(self.hasher.hash_one(what)) {
            Ok(())
        } else {
            Err(RdbError::corrupt(
                at,
                "no duplicate field or member (this one appears twice)",
            ))
        }
    }

    /// A string of a plain-encoded value: decompressed (and dropped) when it is LZF, returned
    /// as bytes for the duplicate check.
    fn string(cur: &mut Cursor<'_>, what: &'static str) -> Step<(u64, Vec<u8>)> {
        let at = cur.offset();
        let bytes = match cur.string(what)? {
            RdbStr::Raw(b) => b.to_vec(),
            RdbStr::Int(i) => super::cursor::int_text(i).to_vec(),
            RdbStr::Lzf { compressed, len } => lzf::decompress(compressed, len)
                .map_err(|e| RdbError::corrupt(at, format!("valid LZF data ({e:?})")))?,
        };
        Ok((at, bytes))
    }

    fn blob(cur: &mut Cursor<'_>, what: &'static str) -> Step<(u64, Vec<u8>)> {
        Self::string(cur, what)
    }

    fn value(&mut self, type_byte: u8, cur: &mut Cursor<'_>, max: u64) -> Step<()> {
        let shape = shape_of(type_byte);
        match type_byte {
            types::STRING => {
                Self::string(cur, "a string value")?;
            }
            types::LIST | types::SET | types::HASH | types::ZSET | types::ZSET_2 => {
                let per = if matches!(shape, Shape::Pairs { .. }) {
                    2
                } else {
                    1
                };
                let n = cur.count("an element count", per, max)?;
                for _ in 0..n {
                    let (at, member) = Self::string(cur, "an element")?;
                    if shape != Shape::Items {
                        self.fresh(at, &member)?;
                    }
                    match type_byte {
                        types::HASH => {
                            Self::string(cur, "a hash value")?;
                        }
                        types::ZSET_2 => {
                            let at = cur.offset();
                            if cur.f64_le("a binary score")?.is_nan() {
                                return Err(RdbError::corrupt(
                                    at,
                                    "a score that is a number (NaN)",
                                )
                                .into());
                            }
                        }
                        types::ZSET => {
                            let at = cur.offset();
                            match cur.u8("a text score length")? {
                                253 => {
                                    return Err(RdbError::corrupt(
                                        at,
                                        "a score that is a number (NaN)",
                                    )
                                    .into())
                                }
                                254 | 255 => {}
                                n => {
                                    let text = cur.take(u64::from(n), "a text score")?;
                                    score(text, at)?;
                                }
                            }
                        }
                        _ => {}
                    }
                }
            }
            types::HASH_ZIPMAP => {
                let (at, data) = Self::blob(cur, "a zipmap")?;
                for ((a, b), _) in zipmap_pairs(&data, at)? {
                    self.fresh(at + a as u64, &data[a..b])?;
                }
            }
            types::SET_INTSET => {
                let (at, data) = Self::blob(cur, "an intset")?;
                let members = intset_members(&data, at)?;
                if members.windows(2).any(|w| w[0] >= w[1]) {
                    return Err(RdbError::corrupt(
                        at,
                        "intset members in strictly ascending order",
                    )
                    .into());
                }
            }
            types::LIST_ZIPLIST | types::ZSET_ZIPLIST | types::HASH_ZIPLIST => {
                let (at, data) = Self::blob(cur, "a ziplist")?;
                let mut zl = Ziplist::open(&data, at)?;
                self.elements(shape, at, || zl.next_element())?;
                zl.verify_end()?;
            }
            types::HASH_LISTPACK | types::ZSET_LISTPACK | types::SET_LISTPACK => {
                let (at, data) = Self::blob(cur, "a listpack")?;
                let mut lp = Listpack::open(&data, at)?;
                self.elements(shape, at, || lp.next_element())?;
                lp.verify_end()?;
            }
            types::LIST_QUICKLIST | types::LIST_QUICKLIST_2 => {
                let nodes = cur.count("a quicklist node count", 1, max)?;
                for _ in 0..nodes {
                    let container = if type_byte == types::LIST_QUICKLIST_2 {
                        cur.len("a quicklist container")?
                    } else {
                        0
                    };
                    let (at, data) = Self::blob(cur, "a quicklist node")?;
                    match container {
                        0 => {
                            let mut zl = Ziplist::open(&data, at)?;
                            while zl.next_element()?.is_some() {}
                            zl.verify_end()?;
                        }
                        1 => {}
                        2 => {
                            let mut lp = Listpack::open(&data, at)?;
                            while lp.next_element()?.is_some() {}
                            lp.verify_end()?;
                        }
                        other => {
                            return Err(RdbError::corrupt(
                                at,
                                format!("quicklist container 1 or 2, found {other}"),
                            )
                            .into())
                        }
                    }
                }
            }
            other => {
                return Err(RdbError::UnknownByte {
                    offset: cur.offset(),
                    what: "value type",
                    byte: other,
                }
                .into())
            }
        }
        Ok(())
    }

    /// Walks the elements of a ziplist or listpack, grouped by `shape`.
    fn elements<'a>(
        &mut self,
        shape: Shape,
        at: u64,
        mut next: impl FnMut() -> Result<Option<Element<'a>>, RdbError>,
    ) -> Result<(), RdbError> {
        while let Some(first) = next()? {
            match shape {
                Shape::Items => {}
                Shape::Members => self.fresh(at, &element_bytes(first))?,
                Shape::Pairs { scored } => {
                    self.fresh(at, &element_bytes(first))?;
                    let second = next()?.ok_or_else(|| {
                        RdbError::corrupt(at, "an even number of elements (pairs)")
                    })?;
                    if let (true, Element::Str(s)) = (scored, second) {
                        score(s, at)?;
                    }
                }
            }
        }
        Ok(())
    }
}

fn element_bytes(e: Element<'_>) -> Vec<u8> {
    match e {
        Element::Str(s) => s.to_vec(),
        Element::Int(i) => super::cursor::int_text(i).to_vec(),
    }
}

fn score(text: &[u8], at: u64) -> Result<f64, RdbError> {
    std::str::from_utf8(text)
        .ok()
        .and_then(|t| t.trim().parse::<f64>().ok())
        .filter(|f| !f.is_nan())
        .ok_or_else(|| RdbError::corrupt(at, "a numeric score"))
}
