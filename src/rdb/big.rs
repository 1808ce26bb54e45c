//! Values too big to hold whole, read piece by piece.
//!
//! The parser normally hands out a key only once its whole record is buffered, so its memory is
//! the largest record: a 300 MB string costs 300 MB, and more once it is cut into commands. With
//! [`Parser::streaming_values_over`](super::Parser::streaming_values_over), a record that grows
//! past the threshold is handed out as it arrives instead: an [`Item::BigStart`] with the key,
//! then [`BigPart`]s, then [`Item::BigEnd`]. A raw string comes out as byte ranges; a list, set,
//! sorted set or hash as runs of elements (a quicklist node at a time for lists). Memory is then
//! one element (or one quicklist node) plus one pushed chunk, whatever the size of the value.
//!
//! Some values cannot be cut: an LZF-compressed string must be decompressed whole (it is, and
//! then handed out in ranges), and streams, module values and the compact encodings (a listpack
//! is one string) stay whole records. Both are bounded by the parser's record cap.
//!
//! In *skip* mode (a relay, which only watches the RDB go by) nothing is materialised: strings
//! are skipped, LZF is never decompressed, and only `BigStart`/`BigEnd` come out.
//!
//! [`Item::BigStart`]: super::Item::BigStart
//! [`Item::BigEnd`]: super::Item::BigEnd

use bytes::Bytes;

use super::cursor::{Cursor, Halt, Step, StrHeader};
use super::decode::{element_bytes, string_bytes};
use super::error::RdbError;
use super::listpack::Listpack;
use super::lzf_impl as lzf;
use super::types;
use super::value::Value;
use super::ziplist::Ziplist;

/// Most elements in one piece.
const PIECE_ELEMENTS: usize = 1024;
/// Most bytes in one piece (a string range, or the elements of one run).
const PIECE_BYTES: usize = 1024 * 1024;

/// The start of a value that follows in [`BigPart`]s.
#[derive(Debug, Clone, PartialEq)]
pub struct BigStart {
    /// The database (from the last SELECTDB).
    pub db: u64,
    pub key: Bytes,
    /// The object type byte.
    pub type_byte: u8,
    /// Absolute expiry in unix milliseconds.
    pub expire_ms: Option<i64>,
    pub idle_secs: Option<u64>,
    pub freq: Option<u8>,
    /// A string's length in bytes; a collection's declared count (of nodes, for a quicklist).
    pub len: u64,
    /// The RDB version of the file.
    pub rdb_version: u16,
}

/// A piece of a big value, in order.
#[derive(Debug, Clone, PartialEq)]
pub enum BigPart {
    /// The string's bytes from `offset`.
    StringRange { offset: u64, bytes: Bytes },
    /// A run of elements, as a partial [`Value`]: `List`, `Set`, `SortedSet`, `Hash` or
    /// `HashWithTtl`.
    Elements(Value),
}

/// Whether a value of `type_byte` can be handed out in pieces.
pub(crate) fn streams(type_byte: u8, valkey: bool) -> bool {
    matches!(
        type_byte,
        types::STRING
            | types::LIST
            | types::SET
            | types::ZSET
            | types::ZSET_2
            | types::HASH
            | types::LIST_QUICKLIST
            | types::LIST_QUICKLIST_2
            | types::HASH_METADATA
    ) || (type_byte == types::VALKEY_HASH_2 && valkey)
}

/// A big value being read.
#[derive(Debug)]
pub(crate) struct BigValue {
    type_byte: u8,
    skip: bool,
    stage: Stage,
}

#[derive(Debug)]
enum Stage {
    /// Plain string bytes: how many are left, and the offset of the next.
    Raw {
        remaining: u64,
        offset: u64,
    },
    /// An LZF string, waiting until its compressed bytes are all buffered.
    LzfWhole {
        compressed: u64,
        len: u64,
    },
    /// A decompressed string being handed out.
    Decompressed {
        data: Bytes,
        pos: usize,
    },
    /// Collection elements (quicklist nodes) left.
    Elements {
        remaining: u64,
        min_expire: u64,
    },
    Done,
}

/// What one step produced.
pub(crate) enum Produced {
    /// `used` input bytes were consumed; `part` is the piece to hand out, if any.
    Piece {
        used: usize,
        part: Option<BigPart>,
    },
    Done,
}

impl BigValue {
    /// Reads the value's header, right after the key. `Ok(None)`: this value is not streamed
    /// (an integer-encoded string). `max_whole` bounds what must be held whole (LZF).
    pub(crate) fn start(
        type_byte: u8,
        cur: &mut Cursor<'_>,
        skip: bool,
        max_whole: u64,
    ) -> Step<Option<(BigValue, u64)>> {
        let (stage, len) = match type_byte {
            types::STRING => match cur.string_header("a string value")? {
                StrHeader::Raw(n) => (
                    Stage::Raw {
                        remaining: n,
                        offset: 0,
                    },
                    n,
                ),
                StrHeader::Int => return Ok(None),
                StrHeader::Lzf { compressed, len } if skip => (
                    Stage::Raw {
                        remaining: compressed,
                        offset: 0,
                    },
                    len,
                ),
                StrHeader::Lzf { compressed, len } => {
                    let whole = compressed.saturating_add(len);
                    if whole > max_whole {
                        return Err(Halt::from(RdbError::TooLarge {
                            offset: cur.offset(),
                            what: "an LZF-compressed string, which must be decompressed whole \
                                   (raise [transfer] max_whole_value_bytes)",
                            len: whole,
                            limit: max_whole,
                        }));
                    }
                    (Stage::LzfWhole { compressed, len }, len)
                }
            },
            types::HASH_METADATA => {
                let min_expire = cur.u64_le("the minimum field expiry")?;
                let n = cur.len("an element count")?;
                (
                    Stage::Elements {
                        remaining: n,
                        min_expire,
                    },
                    n,
                )
            }
            _ => {
                let n = cur.len("an element count")?;
                (
                    Stage::Elements {
                        remaining: n,
                        min_expire: 0,
                    },
                    n,
                )
            }
        };
        Ok(Some((
            BigValue {
                type_byte,
                skip,
                stage,
            },
            len,
        )))
    }

    /// Whether the next step needs input bytes (a decompressed string hands out ranges without).
    pub(crate) fn needs_input(&self) -> bool {
        match &self.stage {
            Stage::Raw { remaining, .. } => *remaining > 0,
            Stage::Elements { remaining, .. } => *remaining > 0,
            Stage::LzfWhole { .. } => true,
            Stage::Decompressed { .. } | Stage::Done => false,
        }
    }

    /// One step over `window[at..]` (absolute offset `base`).
    pub(crate) fn step(&mut self, window: &Bytes, at: usize, base: u64) -> Step<Produced> {
        let region = &window[at..];
        match &mut self.stage {
            Stage::Done => Ok(Produced::Done),
            Stage::Raw { remaining, offset } => {
                if *remaining == 0 {
                    self.stage = Stage::Done;
                    return Ok(Produced::Done);
                }
                if region.is_empty() {
                    return Err(Halt::Incomplete {
                        need: 1,
                        expected: "string bytes",
                    });
                }
                let take = (*remaining)
                    .min(region.len() as u64)
                    .min(PIECE_BYTES as u64) as usize;
                let part = (!self.skip).then(|| BigPart::StringRange {
                    offset: *offset,
                    bytes: window.slice(at..at + take),
                });
                *remaining -= take as u64;
                *offset += take as u64;
                Ok(Produced::Piece { used: take, part })
            }
            Stage::LzfWhole { compressed, len } => {
                let c = usize::try_from(*compressed).unwrap_or(usize::MAX);
                if region.len() < c {
                    return Err(Halt::Incomplete {
                        need: c,
                        expected: "an LZF-compressed string",
                    });
                }
                let data = lzf::decompress(&region[..c], *len as usize).map_err(|e| {
                    Halt::from(RdbError::corrupt(base, format!("valid LZF data ({e:?})")))
                })?;
                self.stage = Stage::Decompressed {
                    data: Bytes::from(data),
                    pos: 0,
                };
                Ok(Produced::Piece {
                    used: c,
                    part: None,
                })
            }
            Stage::Decompressed { data, pos } => {
                if *pos >= data.len() {
                    self.stage = Stage::Done;
                    return Ok(Produced::Done);
                }
                let take = (data.len() - *pos).min(PIECE_BYTES);
                let part = BigPart::StringRange {
                    offset: *pos as u64,
                    bytes: data.slice(*pos..*pos + take),
                };
                *pos += take;
                Ok(Produced::Piece {
                    used: 0,
                    part: Some(part),
                })
            }
            Stage::Elements {
                remaining,
                min_expire,
            } => {
                if *remaining == 0 {
                    self.stage = Stage::Done;
                    return Ok(Produced::Done);
                }
                let min_expire = *min_expire;
                let mut cur = Cursor::new(region, base);
                let mut run = Run::new(self.type_byte);
                let mut used = 0;
                while *remaining > 0 && run.count < PIECE_ELEMENTS && run.bytes < PIECE_BYTES {
                    match element(
                        self.type_byte,
                        self.skip,
                        &mut cur,
                        window,
                        &mut run,
                        min_expire,
                    ) {
                        Ok(()) => {
                            used = cur.pos;
                            *remaining -= 1;
                        }
                        Err(Halt::Incomplete { .. }) if used > 0 => break,
                        Err(Halt::Incomplete { need, expected }) => {
                            return Err(Halt::Incomplete { need, expected })
                        }
                        Err(e) => return Err(e),
                    }
                }
                Ok(Produced::Piece {
                    used,
                    part: (!self.skip).then(|| run.into_part()),
                })
            }
        }
    }
}

/// Elements gathered for one piece.
struct Run {
    value: Value,
    count: usize,
    bytes: usize,
}

impl Run {
    fn new(type_byte: u8) -> Run {
        let value = match type_byte {
            types::SET => Value::Set(Vec::new()),
            types::ZSET | types::ZSET_2 => Value::SortedSet(Vec::new()),
            types::HASH => Value::Hash(Vec::new()),
            types::HASH_METADATA | types::VALKEY_HASH_2 => Value::HashWithTtl(Vec::new()),
            _ => Value::List(Vec::new()),
        };
        Run {
            value,
            count: 0,
            bytes: 0,
        }
    }

    fn into_part(self) -> BigPart {
        BigPart::Elements(self.value)
    }

    fn push_one(&mut self, e: Bytes) {
        self.count += 1;
        self.bytes += e.len();
        match &mut self.value {
            Value::List(v) | Value::Set(v) => v.push(e),
            _ => unreachable!("single elements only go to lists and sets"),
        }
    }
}

/// Reads one element (one quicklist node) of a big collection into `run`.
fn element(
    type_byte: u8,
    skip: bool,
    cur: &mut Cursor<'_>,
    window: &Bytes,
    run: &mut Run,
    min_expire: u64,
) -> Step<()> {
    let string = |cur: &mut Cursor<'_>, what: &'static str| -> Step<Option<Bytes>> {
        if skip {
            cur.skip_string(what)?;
            return Ok(None);
        }
        let at = cur.offset();
        let s = cur.string(what)?;
        Ok(Some(string_bytes(window, s, at)?))
    };
    match type_byte {
        types::LIST | types::SET => {
            if let Some(e) = string(cur, "an element")? {
                run.push_one(e);
            }
        }
        types::ZSET | types::ZSET_2 => {
            let member = string(cur, "a zset member")?;
            let score = if type_byte == types::ZSET_2 {
                cur.f64_le("a binary score")?
            } else {
                let at = cur.offset();
                match cur.u8("a text score length")? {
                    253 => f64::NAN,
                    254 => f64::INFINITY,
                    255 => f64::NEG_INFINITY,
                    n => std::str::from_utf8(cur.take(u64::from(n), "a text score")?)
                        .ok()
                        .and_then(|t| t.trim().parse().ok())
                        .ok_or_else(|| Halt::from(RdbError::corrupt(at, "a text score")))?,
                }
            };
            if let (Some(m), Value::SortedSet(v)) = (member, &mut run.value) {
                run.count += 1;
                run.bytes += m.len() + 8;
                v.push((m, score));
            }
        }
        types::HASH => {
            let field = string(cur, "a hash field")?;
            let value = string(cur, "a hash value")?;
            if let (Some(f), Some(v), Value::Hash(items)) = (field, value, &mut run.value) {
                run.count += 1;
                run.bytes += f.len() + v.len();
                items.push((f, v));
            }
        }
        types::HASH_METADATA | types::VALKEY_HASH_2 => {
            let ttl = if type_byte == types::HASH_METADATA {
                Some(cur.len("a field TTL")?)
            } else {
                None
            };
            let field = string(cur, "a hash field")?;
            let value = string(cur, "a hash value")?;
            let expire = match ttl {
                Some(t) => (t != 0).then(|| min_expire.wrapping_add(t - 1) as i64),
                None => {
                    let e = cur.i64_le("a field expiry")?;
                    (e != -1).then_some(e)
                }
            };
            if let (Some(f), Some(v), Value::HashWithTtl(items)) = (field, value, &mut run.value) {
                run.count += 1;
                run.bytes += f.len() + v.len();
                items.push((f, v, expire));
            }
        }
        types::LIST_QUICKLIST | types::LIST_QUICKLIST_2 => {
            let container = if type_byte == types::LIST_QUICKLIST_2 {
                cur.len("a quicklist container")?
            } else {
                0
            };
            let at = cur.offset();
            let Some(data) = string(cur, "a quicklist node")? else {
                return Ok(());
            };
            match container {
                0 => {
                    let mut zl = Ziplist::open(&data, at)?;
                    while let Some(e) = zl.next_element()? {
                        run.push_one(element_bytes(&data, e));
                    }
                }
                1 => run.push_one(data),
                2 => {
                    let mut lp = Listpack::open(&data, at)?;
                    while let Some(e) = lp.next_element()? {
                        run.push_one(element_bytes(&data, e));
                    }
                }
                other => {
                    return Err(Halt::from(RdbError::corrupt(
                        at,
                        format!("quicklist container 1 (plain) or 2 (packed), found {other}"),
                    )))
                }
            }
        }
        other => {
            return Err(Halt::from(RdbError::UnknownByte {
                offset: cur.offset(),
                what: "value type that streams",
                byte: other,
            }))
        }
    }
    Ok(())
}
