//! The incremental (push) RDB parser.
//!
//! Bytes go in with [`Parser::push`] in chunks of any size; [`Parser::next_item`] hands out one
//! [`Item`] at a time, or `Ok(None)` when the buffered bytes do not yet hold a complete record.
//! Each call first *checks* that a whole record is buffered ([`super::record`]), then hands out
//! its parts as `Bytes` slices: no per-key copy or allocation happens on the hot path.
//!
//! Two buffers make that cheap. Pushed bytes are appended to a growable `BytesMut`. As soon as a
//! complete record is found there, the whole buffer is frozen into an immutable *window*, and
//! records are cut from the window by reference counting alone, one after the other. When the
//! window ends in the middle of a record, that partial record is copied to the front of the
//! growable buffer and waits for more bytes (the check phase says how many it needs at least, so
//! byte-at-a-time feeding does not re-check on every byte). Memory is therefore bounded by the
//! largest single record plus one pushed chunk, never by the file.
//!
//! The CRC64 runs over the window in large steps (when the window is retired and at the end
//! opcode) rather than per record. Opcodes that qualify the next key (`EXPIRETIME`, `IDLE`,
//! `FREQ`, Redis `KEY_META`) are consumed as they come and remembered until the key arrives.

use bytes::{Bytes, BytesMut};

use super::crc64;
use super::cursor::{Cursor, Halt};
use super::error::RdbError;
use super::module;
use super::record::{check_record, parse_magic, Record};
use super::skip::Resume;
use super::version::Fork;

/// The default cap on one record (a key with its value): 16 GiB.
pub const DEFAULT_MAX_RECORD_BYTES: u64 = 16 << 30;

/// One thing read from an RDB, in file order.
#[derive(Debug, Clone, PartialEq)]
pub enum Item {
    /// The magic: always first. `fork` is Valkey for the `VALKEY` magic (Valkey 9+); a `REDIS`
    /// magic may still come from Valkey 7.2–8.1, whose files are Redis 7.2's format.
    Header { version: u16, fork: Fork },
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
///
/// `key` and `raw_value` are reference-counted slices of the parser's window: an entry kept
/// alive keeps that window (about one pushed chunk, or one big record) alive too. Process
/// entries as they come, or copy what must outlive them.
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
    /// Redis 8.6+ `KEY_META`: how many module metadata classes were attached to this key (0 for
    /// none). The parser checks and skips them; a writer that cannot carry them must refuse the
    /// key rather than drop its metadata.
    pub key_meta_classes: u32,
}

#[derive(Debug, Clone, Copy, PartialEq)]
enum State {
    Header,
    Body,
    Done,
}

/// The push parser. See the module documentation.
#[derive(Debug)]
pub struct Parser {
    /// Frozen bytes records are cut from; `window[wpos..]` is not consumed yet.
    window: Bytes,
    wpos: usize,
    /// `window[..crc_pos]` is already folded into `crc`.
    crc_pos: usize,
    /// Bytes pushed after the window (or, when the window is used up, everything pending).
    buf: BytesMut,
    /// Absolute offset of the next record (bytes consumed so far).
    base: u64,
    crc: u64,
    state: State,
    version: Option<u16>,
    valkey: bool,
    db: u64,
    expire_ms: Option<i64>,
    idle_secs: Option<u64>,
    freq: Option<u8>,
    key_meta_classes: u32,
    /// In buffer mode, do not re-check before `buf` holds this many bytes.
    need: usize,
    /// What the last incomplete check was waiting for (for `finish`).
    waiting_for: &'static str,
    resume: Resume,
    max_record_bytes: u64,
    /// The cap on a decompressed string, when this parser has its own.
    max_decompressed: Option<u64>,
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
            window: Bytes::new(),
            wpos: 0,
            crc_pos: 0,
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
            key_meta_classes: 0,
            need: 0,
            waiting_for: "the RDB magic",
            resume: Resume::default(),
            max_record_bytes: DEFAULT_MAX_RECORD_BYTES,
            max_decompressed: None,
            failed: None,
        }
    }

    /// Caps the size of one record (key + value); bigger ones fail with [`RdbError::TooLarge`]
    /// as soon as their length is read, instead of buffering without bound.
    pub fn with_max_record_bytes(mut self, max: u64) -> Parser {
        self.max_record_bytes = max;
        self
    }

    /// Caps the length an LZF string may claim to decompress to (else the process-wide
    /// [`super::max_decompressed_bytes`]): a bigger claim fails as [`RdbError::TooLarge`].
    pub fn with_max_decompressed(mut self, max: u64) -> Parser {
        self.max_decompressed = Some(max);
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

    /// The fork whose numbering the file's type bytes and opcodes follow (from the magic).
    pub fn fork(&self) -> Fork {
        if self.valkey {
            Fork::Valkey
        } else {
            Fork::Redis
        }
    }

    /// Bytes consumed so far (the offset of the next record).
    pub fn offset(&self) -> u64 {
        self.base
    }

    /// Bytes buffered but not yet consumed.
    pub fn buffered(&self) -> usize {
        self.window.len() - self.wpos + self.buf.len()
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
                offset: self.base + self.buffered() as u64,
                expected: self.waiting_for,
            }),
        }
    }

    /// After the end: the bytes pushed beyond the RDB (e.g. a diskless transfer's EOF marker or
    /// the start of the replication stream). Empties the buffers.
    pub fn take_remaining(&mut self) -> Bytes {
        if self.state != State::Done {
            return Bytes::new();
        }
        let tail = self.window.slice(self.wpos..);
        self.window = Bytes::new();
        self.wpos = 0;
        self.crc_pos = 0;
        if tail.is_empty() {
            return self.buf.split().freeze();
        }
        let mut all = BytesMut::with_capacity(tail.len() + self.buf.len());
        all.extend_from_slice(&tail);
        all.extend_from_slice(&self.buf);
        self.buf.clear();
        all.freeze()
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
            if self.state == State::Done {
                return Ok(None);
            }
            let in_window = self.wpos < self.window.len();
            if !in_window && (self.buf.is_empty() || self.buf.len() < self.need) {
                return Ok(None);
            }
            let region: &[u8] = if in_window {
                &self.window[self.wpos..]
            } else {
                &self.buf
            };
            let base = self.base;
            let found = if self.state == State::Header {
                check_header(region)
            } else {
                let version = self.version.unwrap_or(0);
                let mut cur = Cursor::new(region, base);
                if let Some(max) = self.max_decompressed {
                    cur.max_string = max;
                }
                check_record(&mut cur, &mut self.resume, self.valkey, version)
                    .map(|record| (record, cur.pos))
            };
            match found {
                Ok((record, used)) => {
                    if used as u64 > self.max_record_bytes {
                        return Err(self.too_large(used));
                    }
                    if !in_window {
                        // Complete: freeze everything pending and cut records from it.
                        self.retire_window();
                        self.window = self.buf.split().freeze();
                        continue;
                    }
                    if let Some(item) = self.emit(record, used)? {
                        return Ok(Some(item));
                    }
                }
                Err(Halt::Incomplete { need, expected }) => {
                    if need as u64 > self.max_record_bytes {
                        return Err(self.too_large(need));
                    }
                    self.need = need;
                    self.waiting_for = expected;
                    if in_window {
                        // The window ends inside this record: move the partial record in front
                        // of the bytes pushed since, and go on in buffer mode.
                        self.retire_window();
                        continue;
                    }
                    return Ok(None);
                }
                Err(Halt::Fail(e)) => return Err(*e),
            }
        }
    }

    fn too_large(&self, len: usize) -> RdbError {
        RdbError::TooLarge {
            offset: self.base,
            what: "a record",
            len: len as u64,
            limit: self.max_record_bytes,
        }
    }

    /// Folds the consumed part of the window into the checksum and moves its unconsumed tail (a
    /// partial record) to the front of `buf`.
    fn retire_window(&mut self) {
        self.crc = crc64::update(self.crc, &self.window[self.crc_pos..self.wpos]);
        let tail = &self.window[self.wpos..];
        if !tail.is_empty() {
            let mut joined = BytesMut::with_capacity(tail.len() + self.buf.len());
            joined.extend_from_slice(tail);
            joined.extend_from_slice(&self.buf);
            self.buf = joined;
        }
        self.window = Bytes::new();
        self.wpos = 0;
        self.crc_pos = 0;
    }

    /// Marks `n` window bytes consumed.
    fn consume(&mut self, n: usize) {
        self.wpos += n;
        self.base += n as u64;
        self.need = 0;
        self.resume = Resume::default();
    }

    fn emit(&mut self, record: Record, used: usize) -> Result<Option<Item>, RdbError> {
        let (at, base) = (self.wpos, self.base);
        let item = match record {
            Record::Header { version, valkey } => {
                self.version = Some(version);
                self.valkey = valkey;
                self.state = State::Body;
                Item::Header {
                    version,
                    fork: self.fork(),
                }
            }
            Record::End { stored, covered } => {
                self.crc = crc64::update(self.crc, &self.window[self.crc_pos..at + covered]);
                self.crc_pos = at + used;
                let computed = self.crc;
                self.consume(used);
                self.state = State::Done;
                if stored != 0 && stored != computed {
                    return Err(RdbError::ChecksumMismatch { stored, computed });
                }
                return Ok(Some(Item::End { checksum: stored }));
            }
            Record::SelectDb(db) => {
                self.db = db;
                Item::SelectDb { db }
            }
            Record::ExpireMs(ms) => {
                self.expire_ms = Some(ms);
                self.consume(used);
                return Ok(None);
            }
            Record::Idle(secs) => {
                self.idle_secs = Some(secs);
                self.consume(used);
                return Ok(None);
            }
            Record::Freq(f) => {
                self.freq = Some(f);
                self.consume(used);
                return Ok(None);
            }
            Record::Skipped => {
                self.consume(used);
                return Ok(None);
            }
            Record::KeyMeta(classes) => {
                self.key_meta_classes = classes;
                self.consume(used);
                return Ok(None);
            }
            Record::ResizeDb(db_size, expires_size) => Item::ResizeDb {
                db_size,
                expires_size,
            },
            Record::Aux(k, v) => Item::Aux {
                key: k.materialise(&self.window, at, base)?,
                value: v.materialise(&self.window, at, base)?,
            },
            Record::Function(code) => Item::Function {
                code: code.materialise(&self.window, at, base)?,
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
                key: key.materialise(&self.window, at, base)?,
                type_byte,
                expire_ms: self.expire_ms.take(),
                idle_secs: self.idle_secs.take(),
                freq: self.freq.take(),
                raw_value: self.window.slice(at + value_start..at + used),
                value_offset: base + value_start as u64,
                rdb_version: self.version.unwrap_or(0),
                key_meta_classes: std::mem::take(&mut self.key_meta_classes),
            }),
        };
        self.consume(used);
        Ok(Some(item))
    }
}

/// The check phase for the 9-byte magic.
fn check_header(region: &[u8]) -> Result<(Record, usize), Halt> {
    match region.get(..9) {
        None => Err(Halt::Incomplete {
            need: 9,
            expected: "the RDB magic",
        }),
        Some(magic) => {
            let (version, valkey) = parse_magic(magic)?;
            Ok((Record::Header { version, valkey }, 9))
        }
    }
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
