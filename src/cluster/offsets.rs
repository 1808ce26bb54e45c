//! Exactly-once on a cluster target: commands grouped by slot, and the per-slot offset keys that
//! say how far each slot has applied the source's stream.
//!
//! A transaction on a cluster may not span slots, so the one offset key of a standalone target
//! becomes one key per target slot, `ferry:offset:{<tag>}:<migration>` (the tag hashes to that
//! slot, see [`super::tags`]). A flush groups the commands it holds by slot ([`SlotBatches`]) and
//! writes each slot's commands plus that slot's offset key in one `MULTI`: after any crash, each
//! slot's key says exactly which of its writes the data holds. Slots are independent (no command
//! of one slot reads another's keys), so applying slot by slot keeps the order that matters.
//!
//! On resume ([`SlotOffsets`]): the stream restarts from the last checkpoint, the offset every
//! slot had applied when it was recorded; a command is skipped when its slot's key is at or past
//! the command's offset.

use std::collections::{BTreeMap, HashMap};

use bytes::Bytes;

use super::slot::Slot;
use super::tags::SlotTags;

/// The offset key of `slot` for `migration`.
pub fn offset_key(slot: Slot, migration: &str) -> String {
    format!("ferry:offset:{{{}}}:{migration}", SlotTags::get().tag(slot))
}

/// The `SCAN MATCH` pattern of every offset key of `migration`.
pub fn offset_key_pattern(migration: &str) -> String {
    format!("ferry:offset:{{*}}:{migration}")
}

/// Commands held for one flush, by slot, each slot's in arrival order.
#[derive(Debug, Default)]
pub struct SlotBatches {
    by_slot: BTreeMap<Slot, Vec<Vec<Bytes>>>,
    commands: usize,
}

impl SlotBatches {
    pub fn push(&mut self, slot: Slot, command: Vec<Bytes>) {
        self.by_slot.entry(slot).or_default().push(command);
        self.commands += 1;
    }

    /// Commands held.
    pub fn len(&self) -> usize {
        self.commands
    }

    pub fn is_empty(&self) -> bool {
        self.commands == 0
    }

    /// Every slot's commands, slot by slot; leaves the batches empty.
    pub fn take(&mut self) -> Vec<(Slot, Vec<Vec<Bytes>>)> {
        self.commands = 0;
        std::mem::take(&mut self.by_slot).into_iter().collect()
    }
}

/// How far each slot has applied: the checkpoint every slot reached, and the slots whose own
/// offset key says more.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct SlotOffsets {
    checkpoint: i64,
    ahead: HashMap<Slot, i64>,
}

impl SlotOffsets {
    /// From the last checkpoint and the offsets read from the slots' keys.
    pub fn new(checkpoint: i64, keys: impl IntoIterator<Item = (Slot, i64)>) -> SlotOffsets {
        // A key seen twice (a SCAN racing a slot's migration) counts at its highest.
        let mut ahead: HashMap<Slot, i64> = HashMap::new();
        for (slot, offset) in keys.into_iter().filter(|(_, o)| *o > checkpoint) {
            let entry = ahead.entry(slot).or_insert(offset);
            *entry = (*entry).max(offset);
        }
        SlotOffsets { checkpoint, ahead }
    }

    /// Where the stream must restart: every slot has applied everything up to here.
    pub fn resume_from(&self) -> i64 {
        self.checkpoint
    }

    /// Whether the command that ends at `offset`, on `slot`, is already on the target.
    pub fn applied(&self, slot: Slot, offset: i64) -> bool {
        offset <= self.checkpoint || self.ahead.get(&slot).is_some_and(|a| offset <= *a)
    }

    /// Slots that are ahead of the checkpoint, with their offsets.
    pub fn ahead(&self) -> &HashMap<Slot, i64> {
        &self.ahead
    }
}

/// Reads an offset key's value, `<replid>:<offset>:<db>` (the standalone format), as
/// `(replid, offset)`.
pub fn parse_offset_value(value: &str) -> Option<(&str, i64)> {
    let mut parts = value.rsplitn(3, ':');
    let _db = parts.next()?;
    let offset = parts.next()?.parse().ok()?;
    Some((parts.next()?, offset))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cluster::key_slot;

    #[test]
    fn offset_keys_live_in_their_slot_and_match_the_pattern() {
        for slot in [0, 1, 4242, 16383] {
            let key = offset_key(slot, "0193-abc");
            assert_eq!(key_slot(key.as_bytes()), slot);
            assert!(key.starts_with("ferry:offset:{") && key.ends_with("}:0193-abc"));
        }
        assert_eq!(offset_key_pattern("m"), "ferry:offset:{*}:m");
    }

    #[test]
    fn batches_keep_each_slots_order() {
        let mut batches = SlotBatches::default();
        let cmd = |s: &str| vec![Bytes::from(s.to_string())];
        batches.push(7, cmd("a"));
        batches.push(3, cmd("b"));
        batches.push(7, cmd("c"));
        assert_eq!(batches.len(), 3);
        let taken = batches.take();
        assert!(batches.is_empty());
        assert_eq!(
            taken,
            vec![(3, vec![cmd("b")]), (7, vec![cmd("a"), cmd("c")])]
        );
    }

    #[test]
    fn a_command_is_applied_when_the_checkpoint_or_its_slots_key_covers_it() {
        let offsets = SlotOffsets::new(100, [(1, 120), (2, 90), (3, 100), (1, 150)]);
        assert_eq!(offsets.resume_from(), 100);
        assert!(offsets.applied(9, 100) && !offsets.applied(9, 101));
        assert!(offsets.applied(1, 150) && !offsets.applied(1, 151));
        // A key behind the checkpoint says nothing the checkpoint does not.
        assert!(offsets.applied(2, 99) && !offsets.applied(2, 101));
        assert_eq!(offsets.ahead().len(), 1);
    }

    #[test]
    fn offset_values_are_read_like_the_standalone_key() {
        assert_eq!(parse_offset_value("abc:123:0"), Some(("abc", 123)));
        assert_eq!(parse_offset_value("abc:x:0"), None);
        assert_eq!(parse_offset_value("snapshot"), None);
    }
}
