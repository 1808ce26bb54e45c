//! RDB module against real servers of every supported version, hand-built fixtures for the
//! encodings current servers no longer write, and mutated files that must fail cleanly.

#[path = "../common/mod.rs"]
mod common;

mod alloc_probe;
mod corpus;
mod fixtures;
mod hostile;
mod modern;

use std::collections::BTreeMap;
use std::sync::{Mutex, OnceLock};

use bytes::Bytes;
use ferry::rdb::commands::{value_to_commands, RewriteOptions};
use ferry::rdb::{Entry, Item, Parser, RdbError, Value};

#[global_allocator]
static ALLOCATOR: alloc_probe::Probe = alloc_probe::Probe;

/// Parses a whole file fed in `chunk`-byte pieces; panics on a parse error.
pub fn parse_all(file: &[u8], chunk: usize) -> Vec<Item> {
    try_parse_all(file, chunk).unwrap_or_else(|e| panic!("parse failed: {e}"))
}

/// Parses a whole file fed in `chunk`-byte pieces.
pub fn try_parse_all(file: &[u8], chunk: usize) -> Result<Vec<Item>, RdbError> {
    let mut parser = Parser::new();
    let mut items = Vec::new();
    for piece in file.chunks(chunk.max(1)) {
        parser.push(piece);
        while let Some(item) = parser.next_item()? {
            items.push(item);
        }
    }
    parser.finish()?;
    assert!(parser.take_remaining().is_empty(), "bytes after the end");
    Ok(items)
}

fn entries(items: &[Item]) -> Vec<&Entry> {
    items
        .iter()
        .filter_map(|i| match i {
            Item::Entry(e) => Some(e),
            _ => None,
        })
        .collect()
}

/// Runs commands built as `Bytes` arguments.
fn replay(conn: &mut redis::Connection, cmds: &[Vec<Bytes>]) {
    for cmd in cmds {
        let args: Vec<&[u8]> = cmd.iter().map(|a| a.as_ref()).collect();
        corpus::run(conn, &args);
    }
}

/// A saved corpus per version, shared by the tests that only need the file.
pub fn corpus_file(version: &'static str, with_big_values: bool) -> Vec<u8> {
    type Files = BTreeMap<(&'static str, bool), Vec<u8>>;
    static CACHE: OnceLock<Mutex<Files>> = OnceLock::new();
    let cache = CACHE.get_or_init(Default::default);
    if let Some(f) = cache
        .lock()
        .expect("cache")
        .get(&(version, with_big_values))
    {
        return f.clone();
    }
    let server = corpus::start(version);
    corpus::populate(&server);
    if !with_big_values {
        let mut c = server.conn();
        corpus::run(&mut c, &[b"DEL", b"s:big", b"h:bigvalue", b"l:big"]);
    }
    let file = corpus::save(&server);
    cache
        .lock()
        .expect("cache")
        .insert((version, with_big_values), file.clone());
    file
}

/// The whole check for one version: parse the saved corpus, compare every payload with the
/// server's own DUMP, RESTORE the payloads into one fresh server and replay the rewritten
/// commands into another, then compare all three type-aware, database by database.
fn round_trip(version: &str) {
    let source = corpus::start(version);
    corpus::populate(&source);
    let file = corpus::save(&source);
    let items = parse_all(&file, 64 * 1024);
    let rdb_version = match items.first() {
        Some(Item::Header { version, .. }) => *version,
        other => panic!("first item should be the header, got {other:?}"),
    };
    let server = common::redis::server_version(version);
    assert_eq!(
        rdb_version,
        server.rdb_version(),
        "RDB version written by {version}"
    );
    // Valkey 9 writes its own magic (VALKEY080) and only `valkey-ver`, no `redis-ver`.
    let fork = ferry::rdb::version::Fork::Valkey;
    assert_eq!(
        matches!(items.first(), Some(Item::Header { fork: f, .. }) if *f == fork),
        server.fork == fork && server.major >= 9,
        "{version}: the magic names the fork"
    );
    let ver_aux = if server.fork == fork {
        "valkey-ver"
    } else {
        "redis-ver"
    };
    assert!(matches!(items.last(), Some(Item::End { checksum }) if *checksum != 0));
    assert!(items
        .iter()
        .any(|i| matches!(i, Item::Aux { key, .. } if key == ver_aux)));

    let restored = corpus::start(version);
    let rewritten = corpus::start(version);
    let mut src = source.conn();
    let mut a = restored.conn();
    let mut b = rewritten.conn();
    let opts = RewriteOptions {
        max_chunk_bytes: 64 * 1024,
        max_chunk_items: 7,
        target_rdb: rdb_version,
        drop_field_ttls: false,
    };
    let mut db = u64::MAX;
    let mut type_bytes = std::collections::BTreeSet::new();
    let mut functions = 0;
    for item in &items {
        match item {
            Item::Function { code } => {
                functions += 1;
                for c in [&mut a, &mut b] {
                    corpus::run(c, &[b"FUNCTION", b"LOAD", b"REPLACE", code]);
                }
            }
            Item::Entry(e) => {
                type_bytes.insert(e.type_byte);
                if &e.key[..] == b"l:plain" {
                    // a PLAIN quicklist node (container 1) holding the 300-byte element
                    assert!(
                        e.raw_value.windows(3).any(|w| w == [0x01, 0x41, 0x2C]),
                        "no plain node"
                    );
                }
                if e.db != db {
                    db = e.db;
                    for c in [&mut src, &mut a, &mut b] {
                        corpus::run(c, &[b"SELECT", db.to_string().as_bytes()]);
                    }
                }
                let payload = e.dump_payload(rdb_version);
                let server_dump: Vec<u8> =
                    redis::from_redis_value(corpus::run(&mut src, &[b"DUMP", &e.key]))
                        .expect("DUMP");
                assert_eq!(
                    payload,
                    server_dump,
                    "payload of {:?} (type {}) differs from the server's DUMP",
                    String::from_utf8_lossy(&e.key),
                    e.type_byte
                );
                let ttl = e.expire_ms.unwrap_or(0).to_string();
                corpus::run(
                    &mut a,
                    &[b"RESTORE", &e.key, ttl.as_bytes(), &payload, b"ABSTTL"],
                );
                let value = e.decode().unwrap_or_else(|err| {
                    panic!("decode {:?}: {err}", String::from_utf8_lossy(&e.key))
                });
                match value_to_commands(&e.key, &value, e.expire_ms, &opts) {
                    Ok(cmds) => replay(&mut b, &cmds),
                    Err(RdbError::Unsupported { .. }) if matches!(value, Value::Module { .. }) => {
                        assert_eq!(e.module_name().as_deref(), Some("ReJSON-RL"));
                        corpus::run(
                            &mut b,
                            &[b"RESTORE", &e.key, ttl.as_bytes(), &payload, b"ABSTTL"],
                        );
                    }
                    Err(err) => panic!("rewrite {:?}: {err}", String::from_utf8_lossy(&e.key)),
                }
            }
            _ => {}
        }
    }
    if corpus::at_least(version, 7, 0) {
        assert_eq!(functions, 1, "the function library is in the RDB");
    }
    let mut keys_in_source = 0;
    for db in 0..3u8 {
        let want = corpus::snapshot(&source, db);
        keys_in_source += want.len();
        assert!(!want.is_empty(), "db {db} of the corpus is empty");
        let got_restore = corpus::snapshot(&restored, db);
        let got_commands = corpus::snapshot(&rewritten, db);
        assert_same(
            &want,
            &got_restore,
            &format!("{version} db {db} via RESTORE"),
        );
        assert_same(
            &want,
            &got_commands,
            &format!("{version} db {db} via commands"),
        );
    }
    assert_eq!(entries(&items).len(), keys_in_source, "one entry per key");
    check_inspect(&file, &source, &type_bytes);
    assert_types_cover(version, &type_bytes);
}

/// `ferry rdb inspect` on the saved file agrees with the server about keys per database.
fn check_inspect(
    file: &[u8],
    source: &common::redis::RedisServer,
    seen: &std::collections::BTreeSet<u8>,
) {
    let path = source.dir().join("dump.rdb");
    assert_eq!(std::fs::read(&path).expect("dump.rdb"), file);
    let json = ferry::rdb::inspect::run(&path, true).expect("inspect --json");
    let parsed: serde_json::Value = serde_json::from_str(&json).expect("inspect prints JSON");
    let dbs = parsed["databases"].as_array().expect("databases");
    for db in 0..3u8 {
        let keys = corpus::snapshot(source, db).len() as u64;
        let reported = dbs
            .iter()
            .find(|d| d["db"] == u64::from(db))
            .unwrap_or_else(|| panic!("db {db} missing in {json}"));
        assert_eq!(reported["keys"].as_u64(), Some(keys), "db {db} in {json}");
        assert_eq!(
            reported["size_hint"].as_u64(),
            Some(keys),
            "RESIZEDB of db {db}"
        );
    }
    assert_eq!(parsed["file_bytes"].as_u64(), Some(file.len() as u64));
    assert!(parsed["aux"].as_array().is_some_and(|a| !a.is_empty()));
    let text = ferry::rdb::inspect::run(&path, false).expect("inspect");
    assert!(text.contains("RDB version"), "{text}");
    if seen.contains(&7) {
        assert!(text.contains("module ReJSON-RL"), "{text}");
    }
}

fn assert_same(want: &BTreeMap<Vec<u8>, String>, got: &BTreeMap<Vec<u8>, String>, what: &str) {
    for (k, v) in want {
        let g = got.get(k).map(String::as_str).unwrap_or("<missing>");
        assert_eq!(g, v, "{what}: key {:?} differs", String::from_utf8_lossy(k));
    }
    assert_eq!(want.len(), got.len(), "{what}: key count");
}

/// Every encoding the version writes showed up (the thresholds did their job).
fn assert_types_cover(version: &str, seen: &std::collections::BTreeSet<u8>) {
    let want: &[u8] = match version {
        "6.2" => &[0, 2, 4, 5, 11, 12, 13, 14, 15],
        "7.0" => &[0, 2, 4, 5, 11, 16, 17, 18, 19],
        "7.2" => &[0, 2, 4, 5, 7, 11, 16, 17, 18, 20, 21],
        "7.4" => &[0, 2, 4, 5, 7, 11, 16, 17, 18, 20, 21, 24, 25],
        // No RedisJSON in these builds: no module type 7.
        "8.2" => &[0, 2, 4, 5, 11, 16, 17, 18, 20, 21, 24, 25],
        // Valkey's own hash with field TTLs is type 22, whatever its size.
        "valkey-9.1" => &[0, 2, 4, 5, 11, 16, 17, 18, 20, 21, 22],
        other => panic!("no type list for {other}"),
    };
    for t in want {
        assert!(
            seen.contains(t),
            "{version}: no key of type {t} in the corpus (seen {seen:?})"
        );
    }
}

#[test]
fn redis_6_2_rdb9_round_trips() {
    round_trip("6.2");
}

#[test]
fn redis_7_0_rdb10_round_trips() {
    round_trip("7.0");
}

#[test]
fn redis_7_2_rdb11_round_trips() {
    round_trip("7.2");
}

#[test]
fn redis_7_4_rdb12_round_trips() {
    round_trip("7.4");
}

#[test]
fn redis_8_2_rdb12_round_trips() {
    round_trip("8.2");
}

/// Valkey 9.1's own file: the `VALKEY080` magic, `valkey-ver`, type 22 for hashes with field
/// TTLs, and DUMP payloads whose footer says 80.
#[test]
fn valkey_9_1_rdb80_round_trips() {
    round_trip("valkey-9.1");
}

/// The path for a target older than the source: a 7.4 corpus rewritten for RDB 9 and replayed
/// into 6.2 holds the same data; what 6.2 cannot express (field TTLs, modules) is refused.
#[test]
fn commands_carry_a_7_4_dataset_into_6_2() {
    let source = corpus::start("7.4");
    corpus::populate(&source);
    let items = parse_all(&corpus::save(&source), 100_000);
    let target = corpus::start("6.2");
    let mut conn = target.conn();
    let opts = RewriteOptions {
        max_chunk_bytes: 16 * 1024,
        max_chunk_items: 5,
        target_rdb: 9,
        drop_field_ttls: false,
    };
    let mut refused = std::collections::BTreeSet::new();
    for e in entries(&items) {
        corpus::run(&mut conn, &[b"SELECT", e.db.to_string().as_bytes()]);
        let value = e.decode().expect("decode");
        match value_to_commands(&e.key, &value, e.expire_ms, &opts) {
            Ok(cmds) => replay(&mut conn, &cmds),
            Err(RdbError::Unsupported { .. }) => {
                refused.insert(String::from_utf8_lossy(&e.key).into_owned());
            }
            Err(other) => panic!("{other}"),
        }
    }
    let expected_refusals: std::collections::BTreeSet<String> = ["hx:small", "hx:big", "j:doc"]
        .iter()
        .map(|s| s.to_string())
        .collect();
    assert_eq!(refused, expected_refusals);
    for db in 0..3u8 {
        let mut want = corpus::snapshot_portable(&source, db);
        for key in &refused {
            want.remove(key.as_bytes());
        }
        assert_same(
            &want,
            &corpus::snapshot_portable(&target, db),
            &format!("7.4 -> 6.2 db {db}"),
        );
    }
}

#[test]
fn one_byte_at_a_time_gives_the_same_items() {
    let file = corpus_file("7.4", true);
    let whole = parse_all(&file, file.len());
    let bytewise = parse_all(&file, 1);
    assert_eq!(whole.len(), bytewise.len());
    assert_eq!(whole, bytewise);
    // odd chunk sizes too
    assert_eq!(parse_all(&file, 4093), whole);
}

/// Memory is bounded by the largest record plus what was pushed since, never by the file.
#[test]
fn buffering_is_bounded_by_the_largest_record() {
    let file = corpus_file("7.4", true);
    let largest = entries(&parse_all(&file, file.len()))
        .iter()
        .map(|e| e.key.len() + e.raw_value.len() + 32)
        .max()
        .expect("entries");
    let chunk = 16 * 1024;
    let mut parser = Parser::new();
    let mut most = 0;
    for piece in file.chunks(chunk) {
        parser.push(piece);
        most = most.max(parser.buffered());
        while parser.next_item().expect("parse").is_some() {}
    }
    parser.finish().expect("complete");
    assert!(largest > 1_000_000, "the corpus has a big value");
    assert!(
        most <= largest + chunk,
        "buffered {most} bytes, largest record {largest}, chunk {chunk}"
    );
}

#[test]
fn a_flipped_bit_fails_the_checksum_and_truncation_is_reported() {
    let mut file = corpus_file("7.0", false);
    // flip a bit inside the first string value that is plain text
    let at = file
        .windows(5)
        .position(|w| w == b"hello")
        .expect("s:raw value in the file");
    file[at] ^= 0x20;
    match try_parse_all(&file, 1000) {
        Err(RdbError::ChecksumMismatch { .. }) => {}
        other => panic!("expected a checksum mismatch, got {other:?}"),
    }
    file[at] ^= 0x20;
    let cut = &file[..file.len() - 20];
    match try_parse_all(cut, 1000) {
        Err(RdbError::Truncated { offset, .. }) => assert!(offset <= cut.len() as u64 + 16),
        other => panic!("expected truncation, got {other:?}"),
    }
}

#[test]
fn a_zero_checksum_is_accepted_unchecked() {
    let mut file = corpus_file("7.2", false);
    let n = file.len();
    file[n - 8..].copy_from_slice(&[0; 8]);
    let items = parse_all(&file, 777);
    assert!(matches!(items.last(), Some(Item::End { checksum: 0 })));
}

#[test]
fn bytes_after_the_end_are_handed_back() {
    let file = corpus_file("7.0", false);
    let mut parser = Parser::new();
    parser.push(&file);
    parser.push(b"*1\r\n$4\r\nPING\r\n");
    while parser.next_item().expect("parse").is_some() {}
    parser.finish().expect("complete");
    assert_eq!(&parser.take_remaining()[..], b"*1\r\n$4\r\nPING\r\n");
    assert_eq!(parser.offset(), file.len() as u64);
}

#[test]
fn records_over_the_limit_fail_early() {
    let file = corpus_file("7.4", true);
    let mut parser = Parser::new().with_max_record_bytes(1 << 20);
    parser.push(&file);
    let err = loop {
        match parser.next_item() {
            Ok(Some(_)) => continue,
            Ok(None) => panic!("the 1.5 MB value should exceed a 1 MiB record limit"),
            Err(e) => break e,
        }
    };
    assert!(matches!(err, RdbError::TooLarge { .. }), "{err}");
}
