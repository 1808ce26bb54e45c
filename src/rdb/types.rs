//! Object type bytes (§2 of the format facts) and their names.

pub const STRING: u8 = 0;
pub const LIST: u8 = 1;
pub const SET: u8 = 2;
pub const ZSET: u8 = 3;
pub const HASH: u8 = 4;
pub const ZSET_2: u8 = 5;
pub const MODULE_2: u8 = 7;
pub const HASH_ZIPMAP: u8 = 9;
pub const LIST_ZIPLIST: u8 = 10;
pub const SET_INTSET: u8 = 11;
pub const ZSET_ZIPLIST: u8 = 12;
pub const HASH_ZIPLIST: u8 = 13;
pub const LIST_QUICKLIST: u8 = 14;
pub const STREAM_LISTPACKS: u8 = 15;
pub const HASH_LISTPACK: u8 = 16;
pub const ZSET_LISTPACK: u8 = 17;
pub const LIST_QUICKLIST_2: u8 = 18;
pub const STREAM_LISTPACKS_2: u8 = 19;
pub const SET_LISTPACK: u8 = 20;
pub const STREAM_LISTPACKS_3: u8 = 21;
/// Valkey 9's hash with field expiries (Redis used 22 only in 7.4 release candidates).
pub const VALKEY_HASH_2: u8 = 22;
pub const HASH_METADATA: u8 = 24;
pub const HASH_LISTPACK_EX: u8 = 25;

/// Whether `t` is one of the stream encodings.
pub fn is_stream(t: u8) -> bool {
    matches!(
        t,
        STREAM_LISTPACKS | STREAM_LISTPACKS_2 | STREAM_LISTPACKS_3
    )
}

/// The Redis data type (as `TYPE` reports it) of an object type byte.
pub fn data_type(t: u8) -> &'static str {
    match t {
        STRING => "string",
        LIST | LIST_ZIPLIST | LIST_QUICKLIST | LIST_QUICKLIST_2 => "list",
        SET | SET_INTSET | SET_LISTPACK => "set",
        ZSET | ZSET_2 | ZSET_ZIPLIST | ZSET_LISTPACK => "zset",
        HASH | HASH_ZIPMAP | HASH_ZIPLIST | HASH_LISTPACK | VALKEY_HASH_2 | HASH_METADATA
        | HASH_LISTPACK_EX => "hash",
        STREAM_LISTPACKS | STREAM_LISTPACKS_2 | STREAM_LISTPACKS_3 => "stream",
        MODULE_2 => "module",
        _ => "unknown",
    }
}

/// The encoding name of an object type byte, for inspection output.
pub fn encoding_name(t: u8) -> &'static str {
    match t {
        STRING => "string",
        LIST => "linkedlist",
        SET => "hashtable",
        ZSET => "skiplist-text",
        HASH => "hashtable",
        ZSET_2 => "skiplist",
        MODULE_2 => "module",
        HASH_ZIPMAP => "zipmap",
        LIST_ZIPLIST | ZSET_ZIPLIST | HASH_ZIPLIST => "ziplist",
        SET_INTSET => "intset",
        LIST_QUICKLIST => "quicklist",
        STREAM_LISTPACKS => "stream-v1",
        HASH_LISTPACK | ZSET_LISTPACK | SET_LISTPACK => "listpack",
        LIST_QUICKLIST_2 => "quicklist2",
        STREAM_LISTPACKS_2 => "stream-v2",
        STREAM_LISTPACKS_3 => "stream-v3",
        VALKEY_HASH_2 => "hash-ttl-valkey",
        HASH_METADATA => "hash-metadata",
        HASH_LISTPACK_EX => "listpack-ex",
        _ => "unknown",
    }
}
