//! Redis Cluster, the pure part: which slot a key belongs to, the per-slot hash tags, and the slot
//! map parsed from a node's replies. No I/O: the admin client ([`crate::client`]) asks the
//! questions, validation and the engine read the answers through these types.
//!
//! - [`slot`]: CRC16/XMODEM with the hash-tag rule.
//! - [`tags`]: a short tag hashing to each of the 16384 slots (per-slot offset keys).
//! - [`keys`]: the keys of a replicated command, and its route (one slot, split, cross-slot).
//! - [`map`]: a [`SlotMap`] from `CLUSTER SHARDS` (7.0+) or `CLUSTER SLOTS` (6.2), coverage.
//! - [`nodes`]: `CLUSTER NODES`, for the slots a node is importing or migrating.
//! - [`offsets`]: per-slot batches and offset keys (exactly-once on a cluster target).
//! - [`redirect`]: `MOVED`, `ASK`, `TRYAGAIN`, `CLUSTERDOWN` replies.

pub mod keys;
pub mod map;
pub mod nodes;
pub mod offsets;
pub mod redirect;
pub mod slot;
pub mod tags;
#[cfg(test)]
mod tests;

pub use keys::{command_keys, route, Route};
pub use map::{Coverage, Node, Ranges, Role, Shard, SlotMap};
pub use nodes::{parse_nodes, MoveDirection, NodeLine, SlotMove};
pub use offsets::{offset_key, SlotBatches, SlotOffsets};
pub use redirect::Redirect;
pub use slot::{crc16, hash_tag, key_slot, Slot, SLOTS};
pub use tags::SlotTags;

use thiserror::Error;

/// A cluster reply Ferry could not read.
#[derive(Debug, Clone, Error, PartialEq, Eq)]
pub enum ClusterError {
    #[error("unexpected `{command}` reply: {detail}")]
    Malformed {
        command: &'static str,
        detail: String,
    },
}
