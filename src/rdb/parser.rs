//! The incremental (push) RDB parser.
//!
//! Bytes go in with [`Parser::push`] in chunks of any size; [`Parser::next_item`] hands out one
//! [`Item`] at a time, or `Ok(None)` when the buffered bytes do not yet hold a complete record.
//! Each call first *checks* that a whole record is buffered (see [`super::cursor`]), then cuts it
//! out of the buffer with `split_to`: the key and the raw value of an [`Entry`] are `Bytes` slices
//! of that cut, so no per-key copy or allocation happens on the hot path. Memory is therefore
//! bounded by the largest single record plus one pushed chunk, never by the file.
//!
//! Opcodes that qualify the next key (`EXPIRETIME`, `IDLE`, `FREQ`, Redis `KEY_META`) are consumed
//! as they come and remembered until the key arrives. The CRC64 runs over every consumed byte and
//! is checked at the end opcode.

use bytes::{Bytes, BytesMut};

use super::crc64;
use super::cursor::{Cursor, Halt, RdbStr, Step};
use super::error::RdbError;
use super::module;
use super::skip::{known_type, skip_value, Resume};

/// Opcodes (§1.5).
mod opcode {
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

/// The default cap on one record (a key with its value): 16 GiB.
pub const DEFAULT_MAX_RECORD_BYTES: u64 = 16 << 30;

/// One thing read from an RDB, in file order.
#[derive(Debug, Clone, PartialEq)]
pub enum Item {
    /// The magic: always first.
    Header { version: u16 },
    /// An AUX field (`redis-ver`, `ctime`, `repl-id`, …); integer-encoded values come as text.
    Aux { key: Bytes, value: Bytes },
    /// The database the following keys belong to.
    SelectDb { db: u64 },
    /// A size hint for the current database.
    ResizeDb { db_size: u64, expires_size: u64 },
    /// A function library's source (`#!lua name=…`), to replay with `FUNCTION LOAD REPLACE`.
    Function { code: Bytes },
    /// Module aux data (skipped; only the module can interpret it).
    ModuleAux { module_id: u64, module_name: String },
    /// A cluster slot's size hint (RDB 12).
    SlotInfo {
        slot: u64,
        size: u64,
        expires_size: u64,
    },
    /// A key and its value.
    Entry(Entry),
    /// The end; the checksum was verified unless it is 0 (written with `rdbchecksum no`).
    End { checksum: u64 },
}

/// A key with its metadata and its value exactly as serialized.
#[derive(Debug, Clone, PartialEq)]
pub struct Entry {
    /// The database (from the last SELECTDB).
    pub db: u64,
    pub key: Bytes,
    /// The object type byte (§2): decides how `raw_value` is laid out.
    pub type_byte: u8,
    /// Absolute expiry in unix milliseconds (second-precision EXPIRETIME is converted).
    pub expire_ms: Option<i64>,
    /// LRU idle time in seconds.
    pub idle_secs: Option<u64>,
    /// LFU frequency counter.
    pub freq: Option<u8>,
    /// The value's bytes as in the RDB: what a DUMP payload carries after the type byte.
    pub raw_value: Bytes,
    /// Absolute offset of `raw_value` in the RDB (error messages name offsets in the file).
    pub value_offset: u64,
    /// The RDB version of the file the entry came from (decides Valkey/Redis meaning of type 22).
    pub rdb_version: u16,
}

#[derive(Debug, Clone, Copy, PartialEq)]
enum State {
    Header,
    Body,
    Done,
}

/// A string's place in the buffer, to materialise after the record has been cut out.
enum Span {
    Raw(usize, usize),
    Int(i64),
    Lzf(usize, usize, usize),
}

impl Span {
    fn of(buf: &[u8], s: RdbStr<'_>) -> Span {
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

    fn materialise(&self, record: &Bytes, base: u64) -> Result<Bytes, RdbError> {
        match *self {
            Span::Raw(a, b) => Ok(record.slice(a..b)),
            Span::Int(i) => Ok(Bytes::from(i.to_string())),
            Span::Lzf(a, b, len) => super::lzf_impl::decompress(&record[a..b], len)
                .map(Bytes::from)
                .map_err(|e| RdbError::corrupt(base + a as u64, format!("valid LZF data ({e:?})"))),
        }
    }
}

/// A record found by the check phase; positions are buffer indexes.
enum Record {
    End {
        stored: u64,
        covered: usize,
    },
    SelectDb(u64),
    ExpireMs(i64),
    Idle(u64),
    Freq(u8),
    Skipped,
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

/// The push parser. See the module documentation.
#[derive(Debug)]
pub struct Parser {
    buf: BytesMut,
    /// Absolute offset of `buf[0]`.
    base: u64,
    crc: u64,
    state: State,
    version: Option<u16>,
    valkey: bool,
    db: u64,
    expire_ms: Option<i64>,
    idle_secs: Option<u64>,
    freq: Option<u8>,
    /// Do not re-check before the buffer holds this many bytes.
    need: usize,
    /// What the last incomplete check was waiting for (for `finish`).
    waiting_for: &'static str,
    resume: Resume,
    max_record_bytes: u64,
    failed: Option<RdbError>,
}

impl Default for Parser {
    fn default() -> Self {
        Self::new()
    }
}

impl Parser {
    pub fn new() -> Parser {
        Parser {
            buf: BytesMut::new(),
            base: 0,
            crc: 0,
            state: State::Header,
            version: None,
            valkey: false,
            db: 0,
            expire_ms: None,
            idle_secs: None,
            freq: None,
            need: 0,
            waiting_for: "the RDB magic",
            resume: Resume::default(),
            max_record_bytes: DEFAULT_MAX_RECORD_BYTES,
            failed: None,
        }
    }

    /// Caps the size of one record (key + value); bigger ones fail with [`RdbError::TooLarge`]
    /// as soon as their length is read, instead of buffering without bound.
    pub fn with_max_record_bytes(mut self, max: u64) -> Parser {
        self.max_record_bytes = max;
        self
    }

    /// Appends bytes.
    pub fn push(&mut self, chunk: &[u8]) {
        self.buf.extend_from_slice(chunk);
    }

    /// The RDB version, once the header has been read.
    pub fn rdb_version(&self) -> Option<u16> {
        self.version
    }

    /// Whether the file uses the `VALKEY` magic.
    pub fn is_valkey(&self) -> bool {
        self.valkey
    }

    /// Bytes consumed so far (the offset of the next record).
    pub fn offset(&self) -> u64 {
        self.base
    }

    /// Bytes buffered but not yet consumed.
    pub fn buffered(&self) -> usize {
        self.buf.len()
    }

    /// Whether the end opcode (and checksum) has been read.
    pub fn is_done(&self) -> bool {
        self.state == State::Done
    }

    /// `Ok` if the end was reached, else why the input is incomplete.
    pub fn finish(&self) -> Result<(), RdbError> {
        if let Some(e) = &self.failed {
            return Err(e.clone());
        }
        match self.state {
            State::Done => Ok(()),
            _ => Err(RdbError::Truncated {
                offset: self.base + self.buf.len() as u64,
                expected: self.waiting_for,
            }),
        }
    }

    /// After the end: the bytes pushed beyond the RDB (e.g. a diskless transfer's EOF marker or
    /// the start of the replication stream). Empties the buffer.
    pub fn take_remaining(&mut self) -> Bytes {
        if self.state == State::Done {
            self.buf.split().freeze()
        } else {
            Bytes::new()
        }
    }

    /// The next complete item, `Ok(None)` if more bytes are needed (or the end was reached).
    /// After an error the parser stays failed and repeats that error.
    pub fn next_item(&mut self) -> Result<Option<Item>, RdbError> {
        if let Some(e) = &self.failed {
            return Err(e.clone());
        }
        match self.step() {
            Ok(item) => Ok(item),
            Err(e) => {
                self.failed = Some(e.clone());
                Err(e)
            }
        }
    }

    fn step(&mut self) -> Result<Option<Item>, RdbError> {
        loop {
            if self.buf.len() < self.need {
                return Ok(None);
            }
            match self.state {
                State::Done => return Ok(None),
                State::Header => {
                    if self.buf.len() < 9 {
                        self.need = 9;
                        return Ok(None);
                    }
                    let (version, valkey) = parse_magic(&self.buf[..9])?;
                    self.version = Some(version);
                    self.valkey = valkey;
                    self.consume(9);
                    self.state = State::Body;
                    return Ok(Some(Item::Header { version }));
                }
                State::Body => {
                    let version = self.version.unwrap_or(0);
                    let mut cur = Cursor::new(&self.buf, self.base);
                    let found = check_record(&mut cur, &mut self.resume, self.valkey, version);
                    let used = cur.pos;
                    match found {
                        Ok(record) => {
                            if let Some(item) = self.emit(record, used)? {
                                return Ok(Some(item));
                            }
                        }
                        Err(Halt::Incomplete { need, expected }) => {
                            if need as u64 > self.max_record_bytes {
                                return Err(RdbError::TooLarge {
                                    offset: self.base,
                                    what: "a record",
                                    len: need as u64,
                                    limit: self.max_record_bytes,
                                });
                            }
                            self.need = need;
                            self.waiting_for = expected;
                            return Ok(None);
                        }
                        Err(Halt::Fail(e)) => return Err(*e),
                    }
                }
            }
        }
    }

    /// Cuts `n` bytes off the front, folding them into the checksum.
    fn consume(&mut self, n: usize) -> Bytes {
        self.crc = crc64::update(self.crc, &self.buf[..n]);
        self.base += n as u64;
        self.need = 0;
        self.resume = Resume::default();
        self.buf.split_to(n).freeze()
    }

    fn emit(&mut self, record: Record, used: usize) -> Result<Option<Item>, RdbError> {
        let base = self.base;
        if let Record::End { stored, covered } = record {
            self.consume(covered);
            let computed = self.crc;
            self.base += 8;
            let _ = self.buf.split_to(8);
            self.state = State::Done;
            if stored != 0 && stored != computed {
                return Err(RdbError::ChecksumMismatch { stored, computed });
            }
            return Ok(Some(Item::End { checksum: stored }));
        }
        let bytes = self.consume(used);
        let item = match record {
            Record::End { .. } => unreachable!("handled above"),
            Record::SelectDb(db) => {
                self.db = db;
                Item::SelectDb { db }
            }
            Record::ExpireMs(ms) => {
                self.expire_ms = Some(ms);
                return Ok(None);
            }
            Record::Idle(secs) => {
                self.idle_secs = Some(secs);
                return Ok(None);
            }
            Record::Freq(f) => {
                self.freq = Some(f);
                return Ok(None);
            }
            Record::Skipped => return Ok(None),
            Record::ResizeDb(db_size, expires_size) => Item::ResizeDb {
                db_size,
                expires_size,
            },
            Record::Aux(k, v) => Item::Aux {
                key: k.materialise(&bytes, base)?,
                value: v.materialise(&bytes, base)?,
            },
            Record::Function(code) => Item::Function {
                code: code.materialise(&bytes, base)?,
            },
            Record::ModuleAux(module_id) => Item::ModuleAux {
                module_id,
                module_name: module::module_name(module_id),
            },
            Record::SlotInfo(slot, size, expires_size) => Item::SlotInfo {
                slot,
                size,
                expires_size,
            },
            Record::Entry {
                type_byte,
                key,
                value_start,
            } => Item::Entry(Entry {
                db: self.db,
                key: key.materialise(&bytes, base)?,
                type_byte,
                expire_ms: self.expire_ms.take(),
                idle_secs: self.idle_secs.take(),
                freq: self.freq.take(),
                raw_value: bytes.slice(value_start..),
                value_offset: base + value_start as u64,
                rdb_version: self.version.unwrap_or(0),
            }),
        };
        Ok(Some(item))
    }
}

/// Reads the 9-byte magic: the version, and whether it is Valkey's.
fn parse_magic(magic: &[u8]) -> Result<(u16, bool), RdbError> {
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
fn check_record(
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
            let classes = cur.len("a key metadata class count")?;
            for _ in 0..classes {
                cur.take(4, "a key metadata class spec")?;
                module::skip_ops(cur)?;
            }
            Record::Skipped
        }
        opcode::FUNCTION_PRE_GA => {
            return Err(Halt::from(RdbError::UnknownByte {
                offset: cur.offset() - 1,
                what: "opcode (FUNCTION from a 7.0 release candidate, which no GA server loads)",
                byte: op,
            }))
        }
        type_byte => {
            if !known_type(type_byte, valkey) {
                return Err(Halt::from(RdbError::UnknownByte {
                    offset: cur.offset() - 1,
                    what: "opcode or value type",
                    byte: type_byte,
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

impl Entry {
    /// Decodes the raw value into a typed [`super::Value`] (on demand: the parser never does).
    pub fn decode(&self) -> Result<super::Value, RdbError> {
        super::decode::decode_value(
            self.type_byte,
            &self.raw_value,
            self.value_offset,
            self.rdb_version >= 80,
        )
    }

    /// The DUMP payload for `RESTORE`, stamped with `rdb_version` (see [`super::payload`]).
    pub fn dump_payload(&self, rdb_version: u16) -> Vec<u8> {
        super::payload::build(self.type_byte, &self.raw_value, rdb_version)
    }

    /// For a module value (type 7), the module's name (e.g. `ReJSON-RL`).
    pub fn module_name(&self) -> Option<String> {
        if self.type_byte != super::types::MODULE_2 {
            return None;
        }
        let mut cur = Cursor::new(&self.raw_value, self.value_offset);
        cur.len("a module id").ok().map(module::module_name)
    }
}
