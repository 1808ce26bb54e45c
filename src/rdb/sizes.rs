//! How big a serialized value is once loaded, as far as its bytes say without decoding it.
//!
//! Values whose whole body is one RDB string (a plain string, and the compact encodings: zipmap,
//! ziplist, intset, listpack) may be LZF-compressed in the file, and then hold much more in
//! memory than they take in the RDB. The string's header says its uncompressed length, so a
//! memory estimate (the dry run's) can start from that instead of the compressed size. Values of
//! the element-per-allocation encodings start with their element count, which is what their
//! memory mostly depends on.

use super::cursor::{Cursor, StrHeader};
use super::types;

/// The value's size with its body decompressed: `raw.len()` plus what LZF saved, for encodings
/// whose body is one string; `raw.len()` for the others (and for anything unreadable).
pub fn expanded_len(type_byte: u8, raw: &[u8]) -> u64 {
    let single_string = matches!(
        type_byte,
        types::STRING
            | types::HASH_ZIPMAP
            | types::LIST_ZIPLIST
            | types::SET_INTSET
            | types::ZSET_ZIPLIST
            | types::HASH_ZIPLIST
            | types::HASH_LISTPACK
            | types::ZSET_LISTPACK
            | types::SET_LISTPACK
    );
    let serialized = raw.len() as u64;
    if !single_string {
        return serialized;
    }
    match Cursor::new(raw, 0).string_header("value") {
        Ok(StrHeader::Lzf { compressed, len }) => serialized - compressed.min(serialized) + len,
        _ => serialized,
    }
}

/// How many elements a value of an element-per-allocation encoding holds (linked list, hashtable
/// set, skiplist sorted set, hashtable hash: field-value pairs), read from its first length;
/// `None` for other encodings (their elements share one allocation) or an unreadable header.
pub fn element_count(type_byte: u8, raw: &[u8]) -> Option<u64> {
    matches!(
        type_byte,
        types::LIST | types::SET | types::ZSET | types::HASH | types::ZSET_2
    )
    .then(|| Cursor::new(raw, 0).len("element count").ok())
    .flatten()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_lzf_string_counts_its_uncompressed_length() {
        // 0xC3: LZF; compressed length 3, uncompressed length 60, then 3 bytes.
        let raw = [0xC3, 3, 60, 1, 2, 3];
        assert_eq!(expanded_len(types::STRING, &raw), 6 - 3 + 60);
        let plain = [3, b'a', b'b', b'c'];
        assert_eq!(expanded_len(types::STRING, &plain), 4);
        assert_eq!(expanded_len(types::LIST_QUICKLIST_2, &raw), 6);
    }

    #[test]
    fn hashtable_encodings_say_how_many_elements_they_hold() {
        assert_eq!(element_count(types::SET, &[2, 1, b'a', 1, b'b']), Some(2));
        assert_eq!(element_count(types::SET_LISTPACK, &[2, 1, b'a']), None);
    }
}
