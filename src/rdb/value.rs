//! Typed values: what an [`super::Entry`] decodes to, independent of its encoding.
//!
//! Every string is a `Bytes`: elements of a plain (uncompressed) encoding are slices of the
//! entry's raw bytes, integers become their decimal text, as Redis would return them.

use bytes::Bytes;

/// A decoded value.
#[derive(Debug, Clone, PartialEq)]
pub enum Value {
    String(Bytes),
    List(Vec<Bytes>),
    Set(Vec<Bytes>),
    /// Members with exact scores (inf, -inf and nan included), in file order.
    SortedSet(Vec<(Bytes, f64)>),
    Hash(Vec<(Bytes, Bytes)>),
    /// Redis 7.4 / Valkey 9 hashes with field expiries: absolute unix ms, `None` = no TTL.
    HashWithTtl(Vec<(Bytes, Bytes, Option<i64>)>),
    Stream(Stream),
    /// Opaque module data: only `RESTORE` on a target with the module can move it.
    Module {
        module_id: u64,
        module_name: String,
    },
}

impl Value {
    /// The Redis type name (`TYPE key`).
    pub fn type_name(&self) -> &'static str {
        match self {
            Value::String(_) => "string",
            Value::List(_) => "list",
            Value::Set(_) => "set",
            Value::SortedSet(_) => "zset",
            Value::Hash(_) | Value::HashWithTtl(_) => "hash",
            Value::Stream(_) => "stream",
            Value::Module { .. } => "module",
        }
    }
}

/// A stream entry id.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Default, Hash)]
pub struct StreamId {
    pub ms: u64,
    pub seq: u64,
}

impl StreamId {
    /// From the 16-byte big-endian form used in RDB node keys and PELs.
    pub fn from_be_bytes(raw: [u8; 16]) -> StreamId {
        let mut ms = [0u8; 8];
        let mut seq = [0u8; 8];
        ms.copy_from_slice(&raw[..8]);
        seq.copy_from_slice(&raw[8..]);
        StreamId {
            ms: u64::from_be_bytes(ms),
            seq: u64::from_be_bytes(seq),
        }
    }
}

impl std::fmt::Display for StreamId {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}-{}", self.ms, self.seq)
    }
}

/// One live stream entry.
#[derive(Debug, Clone, PartialEq)]
pub struct StreamEntry {
    pub id: StreamId,
    pub fields: Vec<(Bytes, Bytes)>,
}

/// A pending (delivered, unacknowledged) entry of a consumer group.
#[derive(Debug, Clone, PartialEq)]
pub struct PendingEntry {
    pub id: StreamId,
    /// Last delivery, unix ms.
    pub delivery_time_ms: u64,
    pub delivery_count: u64,
}

/// A consumer of a group and the ids it owns in the group's PEL.
#[derive(Debug, Clone, PartialEq)]
pub struct Consumer {
    pub name: Bytes,
    pub seen_time_ms: u64,
    /// Last successful read (RDB 11+).
    pub active_time_ms: Option<u64>,
    pub pending: Vec<StreamId>,
}

/// A consumer group.
#[derive(Debug, Clone, PartialEq)]
pub struct ConsumerGroup {
    pub name: Bytes,
    pub last_id: StreamId,
    /// Entries read by the group (RDB 10+); `None` when unknown (stored as -1) or not stored.
    pub entries_read: Option<u64>,
    pub pending: Vec<PendingEntry>,
    pub consumers: Vec<Consumer>,
}

/// A stream with its metadata and consumer groups.
#[derive(Debug, Clone, PartialEq)]
pub struct Stream {
    /// Live entries in id order (deleted ones are skipped).
    pub entries: Vec<StreamEntry>,
    /// `XLEN` as stored.
    pub length: u64,
    pub last_id: StreamId,
    /// RDB 10+ metadata.
    pub first_id: Option<StreamId>,
    pub max_deleted_id: Option<StreamId>,
    pub entries_added: Option<u64>,
    pub groups: Vec<ConsumerGroup>,
}
