//! Hand-built files for what the test servers do not write: RDB 12 opcodes (SLOT_INFO,
//! MODULE_AUX, IDLE, FREQ), module values, both 7.4 hash-TTL layouts, Redis 13's KEY_META,
//! Valkey 9's magic with SLOT_IMPORT and HASH_2, and the errors for unknown or bad input.

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

#[test]
fn redis_13_key_metadata_is_skipped() {
    let mut f = b"REDIS0013".to_vec();
    f.extend([0xFE, 0x00]);
    f.push(0xF3);
    f.extend(len(1));
    f.extend(*b"spec");
    f.extend([2, 1, 0]);
    f.extend(record(0, b"k", s(b"v")));
    let items = parse_all(&finish(f), 1);
    let ents = entries(&items);
    assert_eq!(ents.len(), 1);
    assert_eq!(ents[0].decode().unwrap(), Value::String(b("v")));
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
    assert_eq!(got[0], Item::Header { version: 80 });
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
        RdbError::UnknownByte { byte: 22, .. }
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
