//! The dry run's report builder: pure, and bounded in memory whatever the dataset (one cell per
//! database × type, a heap of the [`TOP_KEYS`] biggest keys, [`CANNOT_TAKE_EXAMPLES`] examples
//! per reason).

use std::cmp::Reverse;
use std::collections::{BTreeMap, BinaryHeap};

use bytes::Bytes;

use crate::engine::error::show_key;
use crate::model::dry_run::{
    CannotTake, CannotTakeReason, DryRunDbType, DryRunKey, MemoryEstimate, CANNOT_TAKE_EXAMPLES,
    TOP_KEYS,
};
use crate::rdb::types;

/// A key's fixed cost in a Redis keyspace besides its value: the dict entry, the object header
/// and the key's own string (rounded to what the allocator hands out).
const PER_KEY_OVERHEAD: u64 = 64;
/// A key with a TTL also sits in the expires dict.
const PER_TTL_OVERHEAD: u64 = 32;

/// The memory model, in words, for the report.
pub(crate) const MEMORY_MODEL: &str = "per key: 64 bytes (+32 with a TTL) + its value: the \
    serialized size (LZF-compressed strings and compact encodings at their uncompressed size) \
    x 1.25 for compact encodings (allocator rounding), x 1.0 for strings, plus per element 40 \
    bytes (hashtable set, linked list), 64 (hashtable hash) or 84 (skiplist sorted set) for \
    encodings that allocate each element, x 1.2 for streams, x 1.5 for module values. Measured \
    against Redis 7.2 on strings, sets, hashes and sorted sets it lands within about 20% above \
    the target's used_memory_dataset; compare source_dataset_bytes";

/// A value's memory once loaded, from its serialized size with compression undone (`expanded`)
/// and, for the encodings that allocate each element, its element count.
fn value_memory(type_byte: u8, expanded: u64, elements: Option<u64>) -> f64 {
    let per_element = match type_byte {
        types::SET | types::LIST => 40,
        types::HASH => 64,
        types::ZSET | types::ZSET_2 => 84,
        _ => 0,
    };
    let factor = match type_byte {
        types::STRING => 1.0,
        t if types::is_stream(t) => 1.2,
        6 | types::MODULE_2 => 1.5,
        // Hashtable hashes with field TTLs: no count read, so a flat factor.
        types::HASH_METADATA | types::VALKEY_HASH_2 => 3.0,
        _ if per_element > 0 => 1.0,
        _ => 1.25,
    };
    expanded as f64 * factor + (per_element * elements.unwrap_or(0)) as f64
}

/// One of the biggest keys, ordered by size, then by reading order (the first read wins a tie).
#[derive(PartialEq, Eq, PartialOrd, Ord)]
struct Ranked {
    bytes: u64,
    order: Reverse<u64>,
    db: u32,
    key: Bytes,
    type_name: &'static str,
}

#[derive(Default)]
pub(crate) struct ReportBuilder {
    cells: BTreeMap<(u32, &'static str), (u64, u64)>,
    /// A min-heap of the biggest keys so far, never longer than [`TOP_KEYS`].
    top: BinaryHeap<Reverse<Ranked>>,
    read: u64,
    cannot: BTreeMap<CannotTakeReason, CannotTake>,
    pub keys: u64,
    pub expired: u64,
    pub empty: u64,
    pub functions: u64,
    memory: f64,
    value_bytes: u64,
}

impl ReportBuilder {
    /// Counts one key that a migration would write (or try to). `expanded_len` is its value's
    /// size with LZF undone and `elements` its element count when its encoding allocates each
    /// (see [`crate::rdb::sizes`]): what memory is estimated from.
    #[allow(clippy::too_many_arguments)]
    pub fn key(
        &mut self,
        db: u32,
        key: &[u8],
        type_byte: u8,
        value_len: u64,
        expanded_len: u64,
        elements: Option<u64>,
        ttl: bool,
    ) {
        let bytes = key.len() as u64 + value_len;
        let type_name = types::data_type(type_byte);
        let cell = self.cells.entry((db, type_name)).or_default();
        cell.0 += 1;
        cell.1 += bytes;
        self.keys += 1;
        self.value_bytes += value_len;
        self.memory += key.len() as f64
            + value_memory(type_byte, expanded_len, elements)
            + (PER_KEY_OVERHEAD + if ttl { PER_TTL_OVERHEAD } else { 0 }) as f64;
        self.read += 1;
        let smallest = self.top.peek().map(|r| r.0.bytes);
        if self.top.len() < TOP_KEYS || smallest.is_some_and(|s| bytes > s) {
            let cut = &key[..key.len().min(200)];
            self.top.push(Reverse(Ranked {
                bytes,
                order: Reverse(self.read),
                db,
                key: Bytes::copy_from_slice(cut),
                type_name,
            }));
            if self.top.len() > TOP_KEYS {
                self.top.pop();
            }
        }
    }

    /// Records that the target cannot take a key (counted with [`ReportBuilder::key`] as well).
    pub fn cannot_take(
        &mut self,
        reason: CannotTakeReason,
        detail: impl FnOnce() -> String,
        db: u32,
        key: &[u8],
        type_byte: u8,
        value_len: u64,
    ) {
        let entry = self.cannot.entry(reason).or_insert_with(|| CannotTake {
            reason,
            detail: detail(),
            count: 0,
            examples: Vec::new(),
        });
        entry.count += 1;
        if entry.examples.len() < CANNOT_TAKE_EXAMPLES {
            entry.examples.push(DryRunKey {
                db,
                key: show_key(key),
                type_name: types::data_type(type_byte).to_string(),
                bytes: key.len() as u64 + value_len,
            });
        }
    }

    /// The mean serialized value size: what the write probe writes per key.
    pub fn typical_value_bytes(&self) -> u64 {
        self.value_bytes.checked_div(self.keys).unwrap_or(0)
    }

    pub fn databases(&self) -> Vec<DryRunDbType> {
        self.cells
            .iter()
            .map(|((db, type_name), (keys, bytes))| DryRunDbType {
                db: *db,
                type_name: type_name.to_string(),
                keys: *keys,
                bytes: *bytes,
            })
            .collect()
    }

    /// The biggest keys, biggest first.
    pub fn biggest_keys(&self) -> Vec<DryRunKey> {
        let mut ranked: Vec<&Ranked> = self.top.iter().map(|r| &r.0).collect();
        ranked.sort_by(|a, b| b.cmp(a));
        ranked
            .into_iter()
            .map(|r| DryRunKey {
                db: r.db,
                key: show_key(&r.key),
                type_name: r.type_name.to_string(),
                bytes: r.bytes,
            })
            .collect()
    }

    pub fn cannot_take_list(&self) -> Vec<CannotTake> {
        self.cannot.values().cloned().collect()
    }

    /// The memory estimate against what the target has free.
    pub fn memory(
        &self,
        source_dataset_bytes: Option<u64>,
        target_used: Option<u64>,
        target_maxmemory: Option<u64>,
    ) -> MemoryEstimate {
        let needed = self.memory.ceil() as u64;
        let free = match (target_maxmemory, target_used) {
            (Some(max), Some(used)) if max > 0 => Some(max.saturating_sub(used)),
            _ => None,
        };
        MemoryEstimate {
            needed_bytes: needed,
            model: MEMORY_MODEL.to_string(),
            source_dataset_bytes,
            target_used_bytes: target_used,
            target_maxmemory,
            target_free_bytes: free,
            fits: free.map(|free| needed <= free),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_top_keys_are_the_biggest_in_order_and_bounded() {
        let mut b = ReportBuilder::default();
        for i in 0..100u64 {
            b.key(
                0,
                format!("k{i}").as_bytes(),
                types::STRING,
                i * 10,
                i * 10,
                None,
                false,
            );
        }
        // A tie with k99 (2 + 990 bytes) read later ranks after it.
        b.key(1, b"zz", types::STRING, 990, 990, None, false);
        let top = b.biggest_keys();
        assert_eq!(top.len(), TOP_KEYS);
        assert_eq!(top[0].key, "k99");
        assert_eq!(top[1].key, "zz");
        assert_eq!(top[2].key, "k98");
        assert_eq!(top[19].key, "k81");
        assert_eq!(b.keys, 101);
        assert_eq!(
            b.databases(),
            vec![
                DryRunDbType {
                    db: 0,
                    type_name: "string".into(),
                    keys: 100,
                    bytes: (0..100u64)
                        .map(|i| i * 10 + format!("k{i}").len() as u64)
                        .sum()
                },
                DryRunDbType {
                    db: 1,
                    type_name: "string".into(),
                    keys: 1,
                    bytes: 992
                }
            ]
        );
    }

    #[test]
    fn cannot_take_keeps_counts_and_a_few_examples() {
        let mut b = ReportBuilder::default();
        for i in 0..25 {
            b.cannot_take(
                CannotTakeReason::FieldTtls,
                || "why".into(),
                2,
                format!("h{i}").as_bytes(),
                types::HASH_LISTPACK_EX,
                5,
            );
        }
        let list = b.cannot_take_list();
        assert_eq!(list.len(), 1);
        assert_eq!(list[0].count, 25);
        assert_eq!(list[0].examples.len(), CANNOT_TAKE_EXAMPLES);
        assert_eq!(list[0].examples[0].type_name, "hash");
    }

    #[test]
    fn memory_fits_only_against_a_limit() {
        let mut b = ReportBuilder::default();
        b.key(0, b"a", types::STRING, 99, 99, None, true);
        let m = b.memory(None, Some(1000), Some(0));
        assert_eq!(m.needed_bytes, 100 + 64 + 32);
        assert_eq!(m.fits, None);
        let m = b.memory(None, Some(1000), Some(1100));
        assert_eq!(m.target_free_bytes, Some(100));
        assert_eq!(m.fits, Some(false));
    }
}
