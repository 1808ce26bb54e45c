//! The report of a dry run (`mode: dry_run`): what a migration would meet, measured by reading the
//! source's whole snapshot and writing nothing to the target but a short, removed write probe.
//!
//! Plain types only: the engine builds the report (`engine::dry_run`), the `DryRunCompleted`
//! event carries it, the migration's view shows it.

use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

/// Everything a dry run found. Sizes are the serialized (RDB) sizes of the values, which is what
/// travels; `memory` says how the target's memory is estimated from them.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct DryRunReport {
    /// Bytes of the source's RDB read.
    pub rdb_bytes: u64,
    /// How long reading and parsing the snapshot took.
    pub read_ms: u64,
    /// Keys in the snapshot that would be written (expired and empty ones left out).
    pub keys: u64,
    /// Keys whose expiry had already passed when they were read: not written by a migration.
    pub keys_expired: u64,
    /// Empty collections (older servers could write them): skipped by a migration.
    #[serde(default)]
    pub keys_empty: u64,
    /// Counts and serialized bytes per database and type (`TYPE`'s names), in db then type order.
    pub databases: Vec<DryRunDbType>,
    /// The biggest keys by serialized size, biggest first (at most [`TOP_KEYS`]).
    pub biggest_keys: Vec<DryRunKey>,
    /// Keys the target cannot take, per reason (at most [`CANNOT_TAKE_EXAMPLES`] examples each).
    pub cannot_take: Vec<CannotTake>,
    /// Function libraries in the snapshot (Redis 7.0+ functions).
    #[serde(default)]
    pub functions: u64,
    pub memory: MemoryEstimate,
    pub eta: EtaEstimate,
    pub probe: ProbeReport,
    /// What a dry run does not change, said plainly: it wrote nothing to the target except the
    /// probe keys (removed at once), took no lease, no restore point and no inventory.
    pub note: String,
}

/// At most this many keys in [`DryRunReport::biggest_keys`].
pub const TOP_KEYS: usize = 20;
/// At most this many example keys per reason in [`DryRunReport::cannot_take`].
pub const CANNOT_TAKE_EXAMPLES: usize = 10;

/// One database × type cell.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct DryRunDbType {
    pub db: u32,
    /// `string`, `list`, `set`, `zset`, `hash`, `stream`, `module`.
    #[serde(rename = "type")]
    pub type_name: String,
    pub keys: u64,
    /// Serialized value bytes (key names included).
    pub bytes: u64,
}

/// A key named in the report (names longer than 200 bytes are cut, and shown lossily as UTF-8).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct DryRunKey {
    pub db: u32,
    pub key: String,
    #[serde(rename = "type")]
    pub type_name: String,
    /// Serialized value bytes (key name included).
    pub bytes: u64,
}

/// Why the target cannot take a key.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum CannotTakeReason {
    /// A module value whose module the target has not loaded (or Redis 8.6 key metadata).
    ModuleMissing,
    /// A hash whose fields have TTLs, into a target without field TTLs (and `drop_field_ttls`
    /// off).
    FieldTtls,
    /// A value, or one element of it, larger than the target's `proto-max-bulk-len`.
    OverProtoMaxBulkLen,
    /// A type or encoding the target cannot read, and that plain commands cannot carry either.
    UnsupportedType,
}

/// The keys refused for one reason.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct CannotTake {
    pub reason: CannotTakeReason,
    /// What exactly, in words (the target's limit or version).
    pub detail: String,
    pub count: u64,
    pub examples: Vec<DryRunKey>,
}

/// The target's memory after the copy, estimated.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct MemoryEstimate {
    /// The estimate: per key, its serialized size times a factor of its encoding plus a fixed
    /// per-key overhead (see `model`).
    pub needed_bytes: u64,
    /// How `needed_bytes` was computed, in words.
    pub model: String,
    /// The source's own `used_memory_dataset` (`INFO memory`), for comparison: the same data in
    /// the same server version takes about that much.
    pub source_dataset_bytes: Option<u64>,
    /// The target's `used_memory` now.
    pub target_used_bytes: Option<u64>,
    /// The target's `maxmemory` (0: no limit).
    pub target_maxmemory: Option<u64>,
    /// `maxmemory − used_memory`; `None` when the target has no `maxmemory` (or did not say).
    pub target_free_bytes: Option<u64>,
    /// Whether `needed_bytes` fits in `target_free_bytes`; `None` without a limit.
    pub fits: Option<bool>,
}

/// How long the real migration's snapshot would take.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct EtaEstimate {
    /// The source's RDB as this dry run read it (bytes per second, parsing included).
    pub read_bytes_per_sec: u64,
    /// RESTOREs per second the probe measured on the target; `None` without a probe.
    pub write_keys_per_sec: Option<u64>,
    /// The snapshot's duration: the slower of reading (as measured) and writing (the keys at the
    /// probe's rate); reading and writing overlap in a migration.
    pub seconds: u64,
    /// What the figure rests on, in words.
    pub basis: String,
}

/// The write probe: RESTOREs into keys under `ferry:probe:<migration id>:`, deleted at once.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct ProbeReport {
    /// `false` when `options.write_probe` was off, or another writer holds the target's lease
    /// (`error` says so): then nothing at all was written.
    pub ran: bool,
    pub keys_written: u64,
    pub keys_removed: u64,
    /// The payload size of each probe key (the typical value size of the snapshot).
    pub payload_bytes: u64,
    pub duration_ms: u64,
    /// The key prefix used.
    pub prefix: String,
    /// Why the probe stopped early (its keys were removed all the same), or did not run.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
}
