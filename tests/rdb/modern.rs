//! Hand-built files for what the test servers do not write: RDB 12 opcodes (SLOT_INFO,
//! MODULE_AUX, IDLE, FREQ), module values, both 7.4 hash-TTL layouts, Redis 13's KEY_META,
//! Redis 13/14's stream and array types 26–28 (refused by name, with the offset), Valkey 9's
//! magic with SLOT_IMPORT and HASH_2, the type numbers the forks give different meanings, and
//! the errors for unknown or bad input.

use ferry::rdb::version::Fork;
use ferry::rdb::{crc64, Item, Parser, RdbError, Value};

use crate::fixtures::{b, finish, len, record, s};
use crate::{entries, parse_all, try_parse_all};

/// A module id for `name` (9 chars of the module alphabet) and encoding version `ver`.
fn module_id(name: &str, ver: u64) -> u64 {
    const CHARSET: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";
    let mut id = 0u64;
    for c in name.bytes() {
        id = (id << 6)
            | CHARSET
                .iter()
                .position(|&x| x == c)
                .expect("module alphabet") as u64;
    }
    (id << 10) | ver
}

fn len64(n: u64) -> Vec<u8> {
    let mut v = vec![0x81];
    v.extend(n.to_be_bytes());
    v
}

/// A listpack of short strings and integers (encoding chosen per element).
fn listpack(elements: &[Result<&str, i64>]) -> Vec<u8> {
    let mut body = Vec::new();
    for e in elements {
        let enc = match e {
            Ok(text) => {
                let mut v = vec![0x80 | text.len() as u8];
                v.extend(text.as_bytes());
                v
            }
            Err(i @ 0..=127) => vec![*i as u8],
            Err(i) => {
                let mut v = vec![0xF4];
                v.extend(i.to_le_bytes());
                v
            }
        };
        body.push(enc.len() as u8);
        body.splice(body.len() - 1..body.len() - 1, enc);
    }
    let mut out = ((7 + body.len()) as u32).to_le_bytes().to_vec();
    out.extend((elements.len() as u16).to_le_bytes());
    out.extend(body);
    out.push(0xFF);
    out
}

#[test]
fn rdb12_opcodes_modules_and_field_ttls() {
    let json = module_id("ReJSON-RL", 3);
    let mut f = b"REDIS0012".to_vec();
    f.push(0xFA);
    f.extend(s(b"redis-ver"));
    f.extend(s(b"7.4.0"));
    f.push(0xF7);
    f.extend(len64(json));
    f.extend([2, 2]); // when-opcode UINT, when = 2 (after keys)
    f.extend([2, 5, 5]);
    f.extend(s(b"x"));
    f.push(0);
    f.push(0xF5);
    f.extend(s(
        b"#!lua name=lib\nredis.register_function('f', function() return 1 end)",
    ));
    f.extend([0xFE, 0x00, 0xFB, 0x05, 0x00]);
    f.extend([0xF4, 0x40, 0x64, 0x05, 0x00]); // slot 100, 5 keys, 0 expires
    f.extend([0xF8, 42]);
    f.extend(record(0, b"idle", s(b"v")));
    f.extend([0xF9, 7]);
    f.extend(record(0, b"freq", s(b"w")));
    let mut module_value = len64(json);
    module_value.extend([2, 3, 4]);
    module_value.extend(1.5f64.to_le_bytes());
    module_value.push(3);
    module_value.extend(2.5f32.to_le_bytes());
    module_value.extend([1, 9, 5]);
    module_value.extend(s(b"abc"));
    module_value.push(0);
    f.extend(record(7, b"json", module_value));
    let mut meta = 1_000_000u64.to_le_bytes().to_vec();
    meta.extend(len(2));
    meta.extend(len(0));
    meta.extend(s(b"a"));
    meta.extend(s(b"1"));
    meta.extend(len(6));
    meta.extend(s(b"b"));
    meta.extend(s(b"2"));
    f.extend(record(24, b"hmeta", meta));
    let mut ex = 2_000_000_000_000u64.to_le_bytes().to_vec();
    ex.extend(s(&listpack(&[
        Ok("x"),
        Ok("y"),
        Err(0),
        Ok("z"),
        Ok("w"),
        Err(2_000_000_000_000),
    ])));
    f.extend(record(25, b"hlpex", ex));
    let file = finish(f);

    let items = parse_all(&file, 5);
    assert!(items.contains(&Item::ModuleAux {
        module_id: json,
        module_name: "ReJSON-RL".into()
    }));
    assert!(items
        .iter()
        .any(|i| matches!(i, Item::Function { code } if code.starts_with(b"#!lua name=lib"))));
    assert!(items.contains(&Item::SlotInfo {
        slot: 100,
        size: 5,
        expires_size: 0
    }));
    let ents = entries(&items);
    assert_eq!((ents[0].idle_secs, ents[0].freq), (Some(42), None));
    assert_eq!((ents[1].idle_secs, ents[1].freq), (None, Some(7)));
    assert_eq!(ents[2].module_name().as_deref(), Some("ReJSON-RL"));
    assert_eq!(
        ents[2].decode().unwrap(),
        Value::Module {
            module_id: json,
            module_name: "ReJSON-RL".into()
        }
    );
    assert_eq!(
        ents[3].decode().unwrap(),
        Value::HashWithTtl(vec![
            (b("a"), b("1"), None),
            (b("b"), b("2"), Some(1_000_005))
        ])
    );
    assert_eq!(
        ents[4].decode().unwrap(),
        Value::HashWithTtl(vec![
            (b("x"), b("y"), None),
            (b("z"), b("w"), Some(2_000_000_000_000))
        ])
    );
}

/// Redis 8.6's KEY_META (opcode 243 before the type byte): a class count, then per class a
/// 4-byte class spec and the module's value as an op-stream ending in its EOF op. It is checked,
/// skipped, and counted on the key it belongs to (and only that key): a writer that cannot
/// carry it refuses the key instead of dropping the metadata.
#[test]
fn redis_13_key_metadata_is_parsed_and_counted_on_its_key() {
    let mut f = b"REDIS0013".to_vec();
    f.extend([0xFE, 0x00]);
    f.push(0xF3);
    f.extend(len(2));
    f.extend(*b"spec");
    f.extend([2, 1, 0]); // UINT 1, EOF
    f.extend(*b"sp2c");
    f.extend([5]); // STRING "meta"
    f.extend(s(b"meta"));
    f.extend([4]); // DOUBLE
    f.extend(1.5f64.to_le_bytes());
    f.push(0);
    f.extend(record(0, b"k", s(b"v")));
    f.extend(record(0, b"plain", s(b"w")));
    for chunk in [1, 7, 1000] {
        let items = parse_all(&finish(f.clone()), chunk);
        let ents = entries(&items);
        assert_eq!(ents.len(), 2);
        assert_eq!(ents[0].decode().unwrap(), Value::String(b("v")));
        assert_eq!(ents[0].key_meta_classes, 2);
        assert_eq!(ents[1].key_meta_classes, 0, "metadata belongs to one key");
    }
    // In a Redis file older than 13 the byte is no opcode at all.
    let mut old = b"REDIS0012".to_vec();
    old.extend([0xFE, 0x00, 0xF3]);
    assert!(matches!(
        first_error(&old),
        RdbError::UnknownByte {
            byte: 0xF3,
            offset: 11,
            ..
        }
    ));
}

/// Types 26 (8.6 stream with IDMP state), 27 (8.8 stream with a NACK zone) and 28 (8.8) are
/// refused with their offset and what they are: their layouts come from write-ups, not from a
/// Redis source this build was checked against, so reading them would be a guess.
#[test]
fn redis_13_and_14_types_26_to_28_are_refused_by_name_and_offset() {
    for (version, type_byte, name) in [
        (b"REDIS0013", 26u8, "IDMP"),
        (b"REDIS0014", 26, "IDMP"),
        (b"REDIS0014", 27, "NACK"),
        (b"REDIS0014", 28, "type 28"),
    ] {
        let mut f = version.to_vec();
        f.extend([0xFE, 0x00]);
        f.extend(record(0, b"before", s(b"v")));
        // A stream-like body: one node, so that a misreading parser would find something.
        let mut body = len(1);
        body.extend(s(&[0u8; 16]));
        body.extend(s(b"listpack"));
        f.extend(record(type_byte, b"x", body));
        let at = 9 + 2 + 1 + 7 + 2;
        match first_error(&finish(f)) {
            RdbError::UnreadableType {
                offset,
                byte,
                fork,
                why,
                ..
            } => {
                assert_eq!((offset, byte, fork), (at, type_byte, Fork::Redis));
                assert!(why.contains(name), "{why}");
                let text = RdbError::UnreadableType {
                    offset,
                    byte,
                    fork,
                    version: 14,
                    why,
                }
                .to_string();
                assert!(text.contains(&format!("at byte {at}")), "{text}");
            }
            other => panic!("type {type_byte}: {other:?}"),
        }
    }
}

/// The same number means different things per fork: 22 is Valkey's hash with field TTLs and a
/// Redis 7.4 release candidate's; 24 is Redis 7.4's and nothing in Valkey; 243 is Redis'
/// KEY_META and Valkey's SLOT_IMPORT. And no file holds a type newer than its version.
#[test]
fn colliding_type_numbers_are_read_per_fork() {
    let mut hash2 = len(1);
    hash2.extend(s(b"f"));
    hash2.extend(s(b"v"));
    hash2.extend((-1i64).to_le_bytes());
    // Valkey's 22 parses in a Valkey file ...
    let mut f = b"VALKEY080".to_vec();
    f.extend([0xFE, 0x00]);
    f.extend(record(22, b"h", hash2.clone()));
    assert_eq!(
        entries(&parse_all(&finish(f), 3))[0].decode().unwrap(),
        Value::HashWithTtl(vec![(b("f"), b("v"), None)])
    );
    // ... and is refused in a Redis one, naming the release candidate.
    let mut f = b"REDIS0012".to_vec();
    f.extend([0xFE, 0x00]);
    f.extend(record(22, b"h", hash2));
    match first_error(&f) {
        RdbError::UnreadableType {
            byte: 22,
            offset: 11,
            fork: Fork::Redis,
            why,
            ..
        } => {
            assert!(why.contains("release candidate"), "{why}")
        }
        other => panic!("{other:?}"),
    }
    // Redis 7.4's 24 in a Valkey file.
    let mut f = b"VALKEY080".to_vec();
    f.extend([0xFE, 0x00, 24]);
    assert!(matches!(
        first_error(&f),
        RdbError::UnreadableType {
            byte: 24,
            fork: Fork::Valkey,
            ..
        }
    ));
    // A set listpack (RDB 11) in an RDB 10 file.
    let mut f = b"REDIS0010".to_vec();
    f.extend([0xFE, 0x00, 20]);
    match first_error(&f) {
        RdbError::UnreadableType { byte: 20, why, .. } => assert!(why.contains("newer"), "{why}"),
        other => panic!("{other:?}"),
    }
}

#[test]
fn valkey_magic_slot_import_and_hash2() {
    let mut f = b"VALKEY080".to_vec();
    f.push(0xF3);
    f.extend(s(b"job-1"));
    f.extend([1, 0, 0x40, 0x64]);
    f.extend([0xFE, 0x00]);
    let mut h = len(2);
    h.extend(s(b"f"));
    h.extend(s(b"v"));
    h.extend((-1i64).to_le_bytes());
    h.extend(s(b"g"));
    h.extend(s(b"u"));
    h.extend(5000i64.to_le_bytes());
    f.extend(record(22, b"vh", h));
    f.push(0xFF);
    f.extend([0; 8]); // Valkey may skip the checksum for replicas
    let mut parser = Parser::new();
    parser.push(&f);
    let mut got = Vec::new();
    while let Some(item) = parser.next_item().expect("valkey file parses") {
        got.push(item);
    }
    parser.finish().expect("complete");
    assert!(parser.is_valkey());
    assert_eq!(parser.fork(), Fork::Valkey);
    assert_eq!(
        got[0],
        Item::Header {
            version: 80,
            fork: Fork::Valkey
        }
    );
    let ents = entries(&got);
    assert_eq!(
        ents[0].decode().unwrap(),
        Value::HashWithTtl(vec![(b("f"), b("v"), None), (b("g"), b("u"), Some(5000))])
    );
}

fn first_error(file: &[u8]) -> RdbError {
    try_parse_all(file, 1000).expect_err("this input must fail")
}

#[test]
fn unknown_types_and_bad_headers_name_offset_and_cause() {
    let mut f = b"REDIS0011".to_vec();
    f.extend([0xFE, 0x00, 0x1F]);
    f.extend(s(b"k"));
    assert_eq!(
        first_error(&f),
        RdbError::UnknownByte {
            offset: 11,
            what: "opcode or value type",
            byte: 0x1F
        }
    );
    // Redis' type 22 only existed in 7.4 release candidates; Valkey's 22 needs the Valkey magic
    let mut f = b"REDIS0012".to_vec();
    f.extend([0xFE, 0x00, 22]);
    assert!(matches!(
        first_error(&f),
        RdbError::UnreadableType { byte: 22, .. }
    ));
    assert!(matches!(
        first_error(b"REDIS0099xxxx"),
        RdbError::UnsupportedVersion { version: 99 }
    ));
    assert!(matches!(
        first_error(b"REDIS0005xxxx"),
        RdbError::UnsupportedVersion { version: 5 }
    ));
    assert!(matches!(
        first_error(b"VALKEY079xxx"),
        RdbError::UnsupportedVersion { version: 79 }
    ));
    assert!(matches!(
        first_error(b"GET / HTTP/1.1\r\n"),
        RdbError::BadMagic { .. }
    ));
    // a length byte that is no encoding, inside a set
    let mut f = b"REDIS0011".to_vec();
    f.extend([0xFE, 0x00, 2]);
    f.extend(s(b"k"));
    f.push(0x85);
    match first_error(&f) {
        RdbError::Corrupt { offset, expected } => {
            assert_eq!(offset, 14, "magic 0-8, SELECTDB 9-10, type 11, key 12-13");
            assert!(expected.contains("element count"), "{expected}");
        }
        other => panic!("{other:?}"),
    }
}

#[test]
fn a_failed_parser_keeps_its_error_and_a_checksum_covers_everything() {
    let mut f = b"REDIS0011".to_vec();
    f.extend([0xFE, 0x00]);
    f.extend(record(0, b"k", s(b"v")));
    let good = finish(f.clone());
    let crc = crc64::checksum(&good[..good.len() - 8]);
    assert_eq!(&good[good.len() - 8..], &crc.to_le_bytes());
    let mut bad = good.clone();
    let n = bad.len();
    bad[n - 1] ^= 0x01;
    let mut parser = Parser::new();
    parser.push(&bad);
    let first = loop {
        match parser.next_item() {
            Ok(Some(_)) => {}
            Ok(None) => panic!("the checksum must not match"),
            Err(e) => break e,
        }
    };
    assert!(matches!(first, RdbError::ChecksumMismatch { .. }));
    assert_eq!(parser.next_item(), Err(first.clone()));
    assert_eq!(parser.finish(), Err(first));
}
