//! What a server says about itself, reduced to what decisions about it need.

use std::collections::BTreeMap;

/// A server's answer to `INFO`, as the checks before a backup or a restore read it. Gathered by
/// the I/O layers, then handed to the aggregates, which decide on plain values.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ServerSummary {
    /// `redis_version` (or Valkey's).
    pub version: String,
    /// What the dataset takes in memory: the estimate of an RDB of it.
    pub dataset_bytes: u64,
    /// `used_memory`.
    pub used_memory: u64,
    /// `maxmemory`; 0 means no limit.
    pub maxmemory: u64,
    /// Keys per database, for the databases that hold any.
    pub keys: BTreeMap<u32, u64>,
}

impl ServerSummary {
    pub fn total_keys(&self) -> u64 {
        self.keys.values().sum()
    }
}
