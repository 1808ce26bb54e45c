//! RDB: a streaming parser for RDB versions 6–14 (and Valkey 80–81), DUMP payloads, and values
//! rewritten as plain commands.
//!
//! An RDB is a magic (`REDIS0011`), a flat sequence of records (aux fields, database selectors,
//! keys with their values) and an end byte followed by a CRC64. Ferry reads it while it streams
//! from a master, so the [`Parser`] is push-based: feed it bytes as they arrive, pull [`Item`]s.
//! A key comes out as an [`Entry`] holding the value's *raw* bytes, which is all a same-or-newer
//! target needs: [`Entry::dump_payload`] turns them into a `RESTORE` payload without decoding.
//! Only when a value must be rewritten (older target, key too big for one `RESTORE`) is it
//! decoded ([`Entry::decode`], [`Value`]) and turned into commands ([`commands`]).
//!
//! Layout, bottom-up:
//! - `cursor`: the primitives (lengths, strings, numbers) and the *check phase* convention: a walk
//!   that runs out of bytes says how many it needs ("incomplete"), which is not an error.
//! - `skip` and `record`: checking that a whole record is buffered, resumably for huge values.
//! - [`Parser`] (`parser`): buffers, the frozen window records are cut from, the checksum.
//! - `decode` with the encodings `listpack`, `ziplist`, `intset` (and zipmap), `stream`,
//!   [`module`]; [`lzf`] and [`crc64`] (each with the benchmark that chose the implementation).
//! - [`payload`] (DUMP payloads), [`commands`] (values as commands), [`version`] (which server
//!   writes and reads what), [`inspect`] (`ferry rdb inspect`).
//!
//! The module knows nothing about jobs, HTTP, storage or async runtimes: bytes in, items out.

mod big;
mod cursor;
mod decode;
mod error;
mod intset;
mod listpack;
mod lzf_impl;
mod parser;
mod record;
mod skip;
mod stream;
mod value;
mod ziplist;

pub mod commands;
pub mod crc64;
pub mod inspect;
pub mod module;
pub mod payload;
pub mod sanitize;
pub mod sizes;
pub mod types;
pub mod version;

pub use big::{BigPart, BigStart};
pub use error::RdbError;
pub use parser::{Entry, Item, Parser, DEFAULT_MAX_RECORD_BYTES};
pub use value::{Consumer, ConsumerGroup, PendingEntry, Stream, StreamEntry, StreamId, Value};

/// The largest string an LZF record may claim to decompress to, unless configured otherwise.
pub const DEFAULT_MAX_DECOMPRESSED_BYTES: u64 = 512 << 20;

static MAX_DECOMPRESSED: std::sync::atomic::AtomicU64 =
    std::sync::atomic::AtomicU64::new(DEFAULT_MAX_DECOMPRESSED_BYTES);

/// Sets the cap on one decompressed string (`max_decompressed_bytes` in the configuration).
///
/// One process-wide value rather than a parameter: every cursor that meets an LZF string
/// (uploads, captures, restores, `ferry rdb inspect`, decoding a value) must apply it, and it
/// is read only on that cold path. Set once at start-up.
pub fn set_max_decompressed_bytes(limit: u64) {
    MAX_DECOMPRESSED.store(limit, std::sync::atomic::Ordering::Relaxed);
}

/// The current cap on one decompressed string.
pub fn max_decompressed_bytes() -> u64 {
    MAX_DECOMPRESSED.load(std::sync::atomic::Ordering::Relaxed)
}

/// LZF decompression, ours and the crate's (public for the benchmark).
pub mod lzf {
    pub use super::lzf_impl::{decompress, own, via_crate, LzfError};
}
