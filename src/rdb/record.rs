//! The check phase for one record: find out whether a complete record starts at the beginning of
//! a byte slice, and where its parts are, without copying anything.
//!
//! A [`Record`] holds positions relative to the record's first byte, so the parser can cut the
//! parts out of whichever buffer the record sits in. Strings are [`Span`]s, materialised into
//! `Bytes` only once the record is known to be complete.

use bytes::Bytes;

use super::cursor::{Cursor, Halt, RdbStr, Step};
use super::error::RdbError;
use super::module;
use super::skip::{is_value_type, skip_value, Resume};
use super::version::{type_in_file, Fork};

/// Opcodes (§1.5).
pub(crate) mod opcode {
    pub const KEY_META_OR_SLOT_IMPORT: u8 = 0xF3;
    pub const SLOT_INFO: u8 = 0xF4;
    pub const FUNCTION2: u8 = 0xF5;
    pub const FUNCTION_PRE_GA: u8 = 0xF6;
    pub const MODULE_AUX: u8 = 0xF7;
    pub const IDLE: u8 = 0xF8;
    pub const FREQ: u8 = 0xF9;
    pub const AUX: u8 = 0xFA;
    pub const RESIZEDB: u8 = 0xFB;
    pub const EXPIRETIME_MS: u8 = 0xFC;
    pub const EXPIRETIME: u8 = 0xFD;
    pub const SELECTDB: u8 = 0xFE;
    pub const EOF: u8 = 0xFF;
}

/// A string's place in the buffer, to materialise after the record has been cut out.
pub(crate) enum Span {
    Raw(usize, usize),
    Int(i64),
    Lzf(usize, usize, usize),
}

impl Span {
    pub(crate) fn of(buf: &[u8], s: RdbStr<'_>) -> Span {
        let start_of = |part: &[u8]| part.as_ptr() as usize - buf.as_ptr() as usize;
        match s {
            RdbStr::Raw(b) => Span::Raw(start_of(b), start_of(b) + b.len()),
            RdbStr::Int(i) => Span::Int(i),
            RdbStr::Lzf { compressed, len } => Span::Lzf(
                start_of(compressed),
                start_of(compressed) + compressed.len(),
                len,
            ),
        }
    }

    /// The string as `Bytes`, for a record that starts at `window[at]` (absolute offset `base`).
    pub(crate) fn materialise(
        &self,
        window: &Bytes,
        at: usize,
        base: u64,
    ) -> Result<Bytes, RdbError> {
        match *self {
            Span::Raw(a, b) => Ok(window.slice(at + a..at + b)),
            Span::Int(i) => Ok(super::cursor::int_text(i)),
            Span::Lzf(a, b, len) => super::lzf_impl::decompress(&window[at + a..at + b], len)
                .map(Bytes::from)
                .map_err(|e| RdbError::corrupt(base + a as u64, format!("valid LZF data ({e:?})"))),
        }
    }
}

/// A record found by the check phase; positions are buffer indexes.
pub(crate) enum Record {
    Header {
        version: u16,
        valkey: bool,
    },
    End {
        stored: u64,
        covered: usize,
    },
    SelectDb(u64),
    ExpireMs(i64),
    Idle(u64),
    Freq(u8),
    Skipped,
    /// Redis KEY_META: how many metadata classes the next key carries.
    KeyMeta(u32),
    ResizeDb(u64, u64),
    Aux(Span, Span),
    Function(Span),
    ModuleAux(u64),
    SlotInfo(u64, u64, u64),
    Entry {
        type_byte: u8,
        key: Span,
        value_start: usize,
    },
}

/// Reads the 9-byte magic: the version, and whether it is Valkey's.
pub(crate) fn parse_magic(magic: &[u8]) -> Result<(u16, bool), RdbError> {
    let bad = || RdbError::BadMagic {
        found: String::from_utf8_lossy(magic).into_owned(),
    };
    let digits = |d: &[u8]| -> Option<u16> {
        if d.iter().all(u8::is_ascii_digit) {
            std::str::from_utf8(d).ok()?.parse().ok()
        } else {
            None
        }
    };
    if let Some(rest) = magic.strip_prefix(b"REDIS") {
        let version = digits(rest).ok_or_else(bad)?;
        if !(6..=14).contains(&version) {
            return Err(RdbError::UnsupportedVersion { version });
        }
        Ok((version, false))
    } else if let Some(rest) = magic.strip_prefix(b"VALKEY") {
        let version = digits(rest).ok_or_else(bad)?;
        if !(80..=81).contains(&version) {
            return Err(RdbError::UnsupportedVersion { version });
        }
        Ok((version, true))
    } else {
        Err(bad())
    }
}

/// The check phase for one record at the start of the buffer.
pub(crate) fn check_record(
    cur: &mut Cursor<'_>,
    resume: &mut Resume,
    valkey: bool,
    version: u16,
) -> Step<Record> {
    let op = cur.u8("an opcode or type byte")?;
    let buf = cur.buf;
    let record = match op {
        opcode::EOF => {
            let covered = cur.pos;
            let stored = cur.u64_le("the CRC64 checksum")?;
            Record::End { stored, covered }
        }
        opcode::SELECTDB => Record::SelectDb(cur.len("a database number")?),
        opcode::EXPIRETIME => {
            Record::ExpireMs(i64::from(cur.i32_le("an expiry in seconds")?) * 1000)
        }
        opcode::EXPIRETIME_MS => Record::ExpireMs(cur.i64_le("an expiry in milliseconds")?),
        opcode::RESIZEDB => {
            Record::ResizeDb(cur.len("the database size")?, cur.len("the expires size")?)
        }
        opcode::AUX => {
            let key = Span::of(buf, cur.string("an aux key")?);
            let value = Span::of(buf, cur.string("an aux value")?);
            Record::Aux(key, value)
        }
        opcode::FREQ => Record::Freq(cur.u8("an LFU frequency")?),
        opcode::IDLE => Record::Idle(cur.len("an LRU idle time")?),
        opcode::MODULE_AUX => {
            let module_id = cur.len("a module id")?;
            let at = cur.offset();
            let when_opcode = cur.len("the module aux 'when' opcode")?;
            if when_opcode != 2 {
                return Err(Halt::from(RdbError::corrupt(
                    at,
                    format!("module aux 'when' opcode 2 (UINT), found {when_opcode}"),
                )));
            }
            cur.len("the module aux 'when' value")?;
            module::skip_ops(cur)?;
            Record::ModuleAux(module_id)
        }
        opcode::FUNCTION2 => Record::Function(Span::of(buf, cur.string("function library code")?)),
        opcode::SLOT_INFO => Record::SlotInfo(
            cur.len("a slot number")?,
            cur.len("the slot size")?,
            cur.len("the slot expires size")?,
        ),
        opcode::KEY_META_OR_SLOT_IMPORT if valkey => {
            cur.skip_string("a slot import job name")?;
            let ranges = cur.len("a slot range count")?;
            for _ in 0..ranges {
                cur.len("a slot range start")?;
                cur.len("a slot range end")?;
            }
            Record::Skipped
        }
        opcode::KEY_META_OR_SLOT_IMPORT if version >= 13 => {
            // Module metadata attached to the next key: per class a 4-byte class spec and the
            // module's value as an op-stream up to its EOF op.
            let at = cur.offset();
            let classes = cur.len("a key metadata class count")?;
            for _ in 0..classes {
                cur.take(4, "a key metadata class spec")?;
                module::skip_ops(cur)?;
            }
            let classes = u32::try_from(classes).map_err(|_| {
                Halt::from(RdbError::corrupt(
                    at,
                    "a key metadata class count below 2^32",
                ))
            })?;
            Record::KeyMeta(classes)
        }
        opcode::FUNCTION_PRE_GA => {
            return Err(Halt::from(RdbError::UnknownByte {
                offset: cur.offset() - 1,
                what: "opcode (FUNCTION from a 7.0 release candidate, which no GA server loads)",
                byte: op,
            }))
        }
        type_byte => {
            let offset = cur.offset() - 1;
            if !is_value_type(type_byte) {
                return Err(Halt::from(RdbError::UnknownByte {
                    offset,
                    what: "opcode or value type",
                    byte: type_byte,
                }));
            }
            let fork = if valkey { Fork::Valkey } else { Fork::Redis };
            if let Err(why) = type_in_file(type_byte, fork, version) {
                return Err(Halt::from(RdbError::UnreadableType {
                    offset,
                    byte: type_byte,
                    fork,
                    version,
                    why,
                }));
            }
            let key = Span::of(buf, cur.string("a key")?);
            let value_start = cur.pos;
            skip_value(type_byte, cur, resume, valkey)?;
            Record::Entry {
                type_byte,
                key,
                value_start,
            }
        }
    };
    Ok(record)
}
