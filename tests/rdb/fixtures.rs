//! Hand-built RDB 6 and 7 files for the encodings current servers no longer write: linked lists
//! (type 1), text-double zsets (3), zipmaps (9), ziplists (10, 12, 13), quicklists of ziplists
//! (14, with an empty node), second-precision EXPIRETIME, integer and LZF strings. They are built
//! from the format facts, checked against expected values, and then cross-checked against a real
//! 6.2 server: the payloads must RESTORE and the rewritten commands must replay to the same data.

use bytes::Bytes;
use ferry::rdb::commands::{value_to_commands, RewriteOptions};
use ferry::rdb::crc64;
use ferry::rdb::{Item, Value};

use crate::{corpus, entries, parse_all, replay};

pub fn len(n: usize) -> Vec<u8> {
    if n < 64 {
        vec![n as u8]
    } else if n < 16384 {
        vec![0x40 | (n >> 8) as u8, n as u8]
    } else {
        let mut v = vec![0x80];
        v.extend_from_slice(&(n as u32).to_be_bytes());
        v
    }
}

pub fn s(b: &[u8]) -> Vec<u8> {
    let mut v = len(b.len());
    v.extend_from_slice(b);
    v
}

enum Zl<'a> {
    S(&'a [u8]),
    I(i64),
}

fn ziplist(entries: &[Zl<'_>]) -> Vec<u8> {
    let mut body = Vec::new();
    let mut prev = 0usize;
    for e in entries {
        let start = body.len();
        body.push(prev as u8); // all entries here are short
        match e {
            Zl::S(b) => body.extend(s(b)),
            Zl::I(i @ 0..=12) => body.push(0xF1 + *i as u8),
            Zl::I(i) if i8::try_from(*i).is_ok() => body.extend([0xFE, *i as i8 as u8]),
            Zl::I(i) if i16::try_from(*i).is_ok() => {
                body.push(0xC0);
                body.extend((*i as i16).to_le_bytes());
            }
            Zl::I(i) if (-(1 << 23)..(1 << 23)).contains(i) => {
                body.push(0xF0);
                body.extend(&(*i as i32).to_le_bytes()[..3]);
            }
            Zl::I(i) if i32::try_from(*i).is_ok() => {
                body.push(0xD0);
                body.extend((*i as i32).to_le_bytes());
            }
            Zl::I(i) => {
                body.push(0xE0);
                body.extend(i.to_le_bytes());
            }
        }
        prev = body.len() - start;
    }
    let total = 11 + body.len();
    let mut out = (total as u32).to_le_bytes().to_vec();
    out.extend(0u32.to_le_bytes());
    out.extend((entries.len() as u16).to_le_bytes());
    out.extend(body);
    out.push(0xFF);
    out
}

fn zipmap(pairs: &[(&[u8], &[u8])]) -> Vec<u8> {
    let mut out = vec![pairs.len() as u8];
    for (k, v) in pairs {
        out.push(k.len() as u8);
        out.extend_from_slice(k);
        out.push(v.len() as u8);
        out.push(2); // two bytes of free padding after the value
        out.extend_from_slice(v);
        out.extend([0xAA, 0xAA]);
    }
    out.push(0xFF);
    out
}

fn intset(members: &[i16]) -> Vec<u8> {
    let mut out = 2u32.to_le_bytes().to_vec();
    out.extend((members.len() as u32).to_le_bytes());
    for m in members {
        out.extend(m.to_le_bytes());
    }
    out
}

pub fn record(type_byte: u8, key: &[u8], value: Vec<u8>) -> Vec<u8> {
    let mut out = vec![type_byte];
    out.extend(s(key));
    out.extend(value);
    out
}

pub fn finish(mut file: Vec<u8>) -> Vec<u8> {
    file.push(0xFF);
    let crc = crc64::checksum(&file);
    file.extend(crc.to_le_bytes());
    file
}

pub fn b(x: &str) -> Bytes {
    Bytes::copy_from_slice(x.as_bytes())
}

fn bs(xs: &[&str]) -> Vec<Bytes> {
    xs.iter().map(|x| b(x)).collect()
}

pub fn rdb6(expire_secs: i32) -> (Vec<u8>, Vec<(&'static str, Value)>) {
    let mut f = b"REDIS0006".to_vec();
    f.extend([0xFE, 0x00]);
    f.push(0xFD);
    f.extend(expire_secs.to_le_bytes());
    f.extend(record(0, b"exp", s(b"v")));
    let mut list = len(3);
    list.extend(s(b"a"));
    list.extend(s(b"b"));
    list.extend([0xC0, 12]);
    f.extend(record(1, b"linked", list));
    let mut zt = len(3);
    zt.extend(s(b"m1"));
    zt.extend([3, b'1', b'.', b'5']);
    zt.extend(s(b"m2"));
    zt.push(254);
    zt.extend(s(b"m3"));
    zt.push(255);
    f.extend(record(3, b"ztext", zt));
    f.extend(record(
        9,
        b"zipmap",
        s(&zipmap(&[(b"f1", b"v1"), (b"f2", b"v22")])),
    ));
    let zl = ziplist(&[
        Zl::S(b"x"),
        Zl::I(7),
        Zl::I(-300),
        Zl::I(100_000),
        Zl::I(-100),
        Zl::I(5_000_000_000),
    ]);
    f.extend(record(10, b"zllist", s(&zl)));
    let zz = ziplist(&[Zl::S(b"b"), Zl::S(b"2.5"), Zl::S(b"a"), Zl::I(3)]);
    f.extend(record(12, b"zlzset", s(&zz)));
    let hz = ziplist(&[Zl::S(b"f"), Zl::S(b"v"), Zl::S(b"g"), Zl::I(5)]);
    f.extend(record(13, b"zlhash", s(&hz)));
    f.extend(record(11, b"intset", s(&intset(&[-2, 5, 300]))));
    let text = "lzf-me ".repeat(40);
    let compressed = lzf::compress(text.as_bytes()).expect("compressible");
    let mut lzf_value = vec![0xC3];
    lzf_value.extend(len(compressed.len()));
    lzf_value.extend(len(text.len()));
    lzf_value.extend(&compressed);
    f.extend(record(0, b"lzf", lzf_value));
    let mut set = len(2);
    set.extend(s(b"p"));
    set.extend(s(b"q"));
    f.extend(record(2, b"set", set));
    let mut hash = len(1);
    hash.extend(s(b"k"));
    hash.extend(s(b"v"));
    f.extend(record(4, b"hash", hash));
    f.extend(record(0, b"int", vec![0xC2, 0x40, 0xE2, 0x01, 0x00]));
    let expected = vec![
        ("exp", Value::String(b("v"))),
        ("linked", Value::List(bs(&["a", "b", "12"]))),
        (
            "ztext",
            Value::SortedSet(vec![
                (b("m1"), 1.5),
                (b("m2"), f64::INFINITY),
                (b("m3"), f64::NEG_INFINITY),
            ]),
        ),
        (
            "zipmap",
            Value::Hash(vec![(b("f1"), b("v1")), (b("f2"), b("v22"))]),
        ),
        (
            "zllist",
            Value::List(bs(&["x", "7", "-300", "100000", "-100", "5000000000"])),
        ),
        (
            "zlzset",
            Value::SortedSet(vec![(b("b"), 2.5), (b("a"), 3.0)]),
        ),
        (
            "zlhash",
            Value::Hash(vec![(b("f"), b("v")), (b("g"), b("5"))]),
        ),
        ("intset", Value::Set(bs(&["-2", "5", "300"]))),
        ("lzf", Value::String(Bytes::from(text))),
        ("set", Value::Set(bs(&["p", "q"]))),
        ("hash", Value::Hash(vec![(b("k"), b("v"))])),
        ("int", Value::String(b("123456"))),
    ];
    (finish(f), expected)
}

fn rdb7(expire_ms: i64) -> (Vec<u8>, Vec<(&'static str, Value)>) {
    let mut f = b"REDIS0007".to_vec();
    f.push(0xFA);
    f.extend(s(b"redis-ver"));
    f.extend(s(b"3.2.0"));
    f.push(0xFA);
    f.extend(s(b"redis-bits"));
    f.extend([0xC0, 64]);
    f.extend([0xFE, 0x01, 0xFB, 0x02, 0x01]);
    f.push(0xFC);
    f.extend(expire_ms.to_le_bytes());
    let mut ql = len(3);
    ql.extend(s(&ziplist(&[Zl::S(b"a"), Zl::S(b"b")])));
    ql.extend(s(&ziplist(&[])));
    ql.extend(s(&ziplist(&[Zl::I(3)])));
    f.extend(record(14, b"quick", ql));
    f.extend(record(0, b"plain", s(b"x")));
    let expected = vec![
        ("quick", Value::List(bs(&["a", "b", "3"]))),
        ("plain", Value::String(b("x"))),
    ];
    (finish(f), expected)
}

/// Checks the decoded values, then cross-checks RESTORE against command replay on a 6.2 server.
fn check_fixture(file: &[u8], expected: &[(&str, Value)], db: u8) -> Vec<Item> {
    let items = parse_all(file, 3);
    let ents = entries(&items);
    assert_eq!(ents.len(), expected.len());
    let restored = corpus::start("6.2");
    let rewritten = corpus::start("6.2");
    let (mut a, mut c) = (restored.conn(), rewritten.conn());
    for conn in [&mut a, &mut c] {
        corpus::run(conn, &[b"SELECT", db.to_string().as_bytes()]);
    }
    for (e, (key, want)) in ents.iter().zip(expected) {
        assert_eq!(&e.key[..], key.as_bytes());
        let got = e
            .decode()
            .unwrap_or_else(|err| panic!("decode {key}: {err}"));
        assert_eq!(&got, want, "value of {key}");
        let ttl = e.expire_ms.unwrap_or(0).to_string();
        let payload = e.dump_payload(e.rdb_version);
        corpus::run(
            &mut a,
            &[b"RESTORE", &e.key, ttl.as_bytes(), &payload, b"ABSTTL"],
        );
        let cmds = value_to_commands(&e.key, &got, e.expire_ms, &RewriteOptions::default())
            .expect("rewrite");
        replay(&mut c, &cmds);
    }
    let want = corpus::snapshot(&restored, db);
    assert_eq!(want.len(), expected.len());
    assert_eq!(want, corpus::snapshot(&rewritten, db));
    items
}

#[test]
fn hand_built_rdb6_with_retired_encodings() {
    let secs = (corpus::now_ms() / 1000 + 3600) as i32;
    let (file, expected) = rdb6(secs);
    let items = check_fixture(&file, &expected, 0);
    assert_eq!(
        items[0],
        Item::Header {
            version: 6,
            fork: ferry::rdb::version::Fork::Redis
        }
    );
    let exp = entries(&items)[0];
    assert_eq!(
        exp.expire_ms,
        Some(i64::from(secs) * 1000),
        "EXPIRETIME seconds become ms"
    );
    // inspect reads the old format too
    let dir = tempfile::tempdir().expect("temp dir");
    let path = dir.path().join("v6.rdb");
    std::fs::write(&path, &file).expect("write fixture");
    let summary =
        ferry::rdb::inspect::summarize(std::fs::File::open(&path).expect("open")).expect("inspect");
    assert_eq!(
        (summary.rdb_version, summary.total_keys),
        (6, expected.len() as u64)
    );
    let encodings = &summary.databases[0].encodings;
    for name in ["linkedlist", "skiplist-text", "zipmap", "ziplist", "intset"] {
        assert!(encodings.contains_key(name), "{name} in {encodings:?}");
    }
    let text = ferry::rdb::inspect::run(&path, false).expect("inspect text");
    assert!(text.contains("Redis RDB version 6"), "{text}");
}

#[test]
fn hand_built_rdb7_with_aux_resizedb_and_quicklist() {
    let at = corpus::now_ms() + 3_600_000;
    let (file, expected) = rdb7(at);
    let items = check_fixture(&file, &expected, 1);
    assert_eq!(
        items[0],
        Item::Header {
            version: 7,
            fork: ferry::rdb::version::Fork::Redis
        }
    );
    assert!(items.contains(&Item::Aux {
        key: b("redis-bits"),
        value: b("64")
    }));
    assert!(items.contains(&Item::ResizeDb {
        db_size: 2,
        expires_size: 1
    }));
    let quick = entries(&items)[0];
    assert_eq!((quick.db, quick.expire_ms), (1, Some(at)));
}
