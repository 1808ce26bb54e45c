//! A short hash tag for every slot: the string `t` such that a key `…{t}…` lands in that slot.
//!
//! A cluster target keeps one offset key per slot (`ferry:offset:{<tag>}:<migration>`), so that a
//! batch can write one slot's commands and that slot's offset in a single `MULTI` (a transaction
//! may not span slots). The tags are found by walking alphanumeric strings, shortest first, in a
//! fixed order, and keeping the first one that hashes to each slot: the table is the same on
//! every run and every machine, which is what lets a restarted job find the keys it wrote.

use std::sync::OnceLock;

use super::slot::{key_slot, Slot, SLOTS};

/// The characters tags are made of: no `{` or `}`, so a tag inside braces is the whole hash tag.
const ALPHABET: &[u8] = b"0123456789abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ";

/// The tag of every slot, indexed by slot.
pub struct SlotTags {
    tags: Vec<String>,
}

impl SlotTags {
    /// The table, built on first use (about a quarter of a million CRCs, well under 10 ms).
    pub fn get() -> &'static SlotTags {
        static TABLE: OnceLock<SlotTags> = OnceLock::new();
        TABLE.get_or_init(SlotTags::build)
    }

    fn build() -> SlotTags {
        let mut tags: Vec<Option<String>> = vec![None; SLOTS as usize];
        let mut missing = SLOTS as usize;
        let mut len = 1;
        // 62^3 = 238,328 strings of length 3 already cover every slot; the loop does not assume it.
        while missing > 0 {
            let mut digits = vec![0usize; len];
            loop {
                let candidate: Vec<u8> = digits.iter().map(|&d| ALPHABET[d]).collect();
                let entry = &mut tags[key_slot(&candidate) as usize];
                if entry.is_none() {
                    *entry = Some(String::from_utf8(candidate).expect("ASCII"));
                    missing -= 1;
                }
                if !next(&mut digits) {
                    break;
                }
            }
            len += 1;
        }
        SlotTags {
            tags: tags.into_iter().map(|t| t.expect("every slot")).collect(),
        }
    }

    /// The tag of `slot` (panics on a slot ≥ 16384, which no parsed slot map holds).
    pub fn tag(&self, slot: Slot) -> &str {
        &self.tags[slot as usize]
    }
}

/// Advances `digits` as an odometer over [`ALPHABET`]; `false` once it wrapped around.
fn next(digits: &mut [usize]) -> bool {
    for digit in digits.iter_mut().rev() {
        *digit += 1;
        if *digit < ALPHABET.len() {
            return true;
        }
        *digit = 0;
    }
    false
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_slot_has_a_short_tag_that_hashes_to_it() {
        let table = SlotTags::get();
        for slot in 0..SLOTS {
            let tag = table.tag(slot);
            assert!(!tag.is_empty() && tag.len() <= 3, "slot {slot}: {tag:?}");
            assert!(!tag.contains(['{', '}']));
            assert_eq!(key_slot(tag.as_bytes()), slot);
            let key = format!("ferry:offset:{{{tag}}}:0193");
            assert_eq!(key_slot(key.as_bytes()), slot, "{key}");
        }
    }

    #[test]
    fn the_table_is_the_same_on_every_build() {
        // A restarted job reads the offset keys an earlier run wrote: the tags must not move.
        let table = SlotTags::build();
        assert_eq!(table.tag(key_slot(b"0")), "0");
        let again = SlotTags::build();
        assert!((0..SLOTS).all(|s| table.tag(s) == again.tag(s)));
    }
}
