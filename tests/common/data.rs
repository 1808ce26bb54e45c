//! Running the engine against real servers, and comparing servers independently of the engine's
//! own verifier (a test that trusted the code under test would prove little).

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use ferry::engine::Tuning;
use ferry::model::EventKind;
use redis::Value;

use crate::common::redis::RedisServer;

#[allow(unused_imports)]
pub use crate::common::spec::{options, spec};

#[allow(unused_imports)]
pub use crate::common::engine::{names, start, Running};

/// A small tuning for tests: quick reports.
pub fn quick() -> Tuning {
    Tuning {
        report_interval: Duration::from_millis(200),
        ..Tuning::default()
    }
}

/// Every key of every db, with type, a canonical value and whether it has a TTL (± a tolerance
/// checked separately).
pub type Snapshot = BTreeMap<(u32, Vec<u8>), (String, Vec<Vec<u8>>, i64)>;

fn bytes_of(v: Value, out: &mut Vec<Vec<u8>>) {
    match v {
        Value::BulkString(b) => out.push(b),
        Value::SimpleString(s) => out.push(s.into_bytes()),
        Value::Int(i) => out.push(i.to_string().into_bytes()),
        Value::Nil => out.push(b"(nil)".to_vec()),
        Value::Array(items) => {
            out.push(format!("*{}", items.len()).into_bytes());
            for i in items {
                bytes_of(i, out);
            }
        }
        other => out.push(format!("{other:?}").into_bytes()),
    }
}

fn query(conn: &mut redis::Connection, args: &[&[u8]]) -> Value {
    let mut cmd = redis::cmd(std::str::from_utf8(args[0]).unwrap());
    for a in &args[1..] {
        cmd.arg(*a);
    }
    cmd.query(conn).unwrap()
}

/// Reads a whole server into a comparable form.
pub fn dump_all(server: &RedisServer, dbs: u32) -> Snapshot {
    let mut conn = server.conn();
    let mut all = Snapshot::new();
    for db in 0..dbs {
        let _: () = redis::cmd("SELECT").arg(db).query(&mut conn).unwrap();
        let keys: Vec<Vec<u8>> = redis::cmd("KEYS").arg("*").query(&mut conn).unwrap();
        for key in keys {
            let kind: String = redis::cmd("TYPE").arg(&key).query(&mut conn).unwrap();
            let mut value = vec![];
            let k = &key[..];
            match kind.as_str() {
                "string" => bytes_of(query(&mut conn, &[b"GET", k]), &mut value),
                "list" => bytes_of(query(&mut conn, &[b"LRANGE", k, b"0", b"-1"]), &mut value),
                "set" => {
                    bytes_of(query(&mut conn, &[b"SMEMBERS", k]), &mut value);
                    value.sort();
                }
                "hash" => {
                    let mut flat = vec![];
                    bytes_of(query(&mut conn, &[b"HGETALL", k]), &mut flat);
                    let mut pairs: Vec<_> = flat[1..].chunks(2).map(|c| c.to_vec()).collect();
                    pairs.sort();
                    value = pairs.concat();
                }
                "zset" => {
                    let mut flat = vec![];
                    bytes_of(
                        query(&mut conn, &[b"ZRANGE", k, b"0", b"-1", b"WITHSCORES"]),
                        &mut flat,
                    );
                    for pair in flat[1..].chunks(2) {
                        value.push(pair[0].clone());
                        let score: f64 = std::str::from_utf8(&pair[1]).unwrap().parse().unwrap();
                        value.push(score.to_bits().to_string().into_bytes());
                    }
                }
                "stream" => {
                    bytes_of(query(&mut conn, &[b"XRANGE", k, b"-", b"+"]), &mut value);
                    let mut groups = vec![];
                    bytes_of(query(&mut conn, &[b"XINFO", b"GROUPS", k]), &mut groups);
                    // name, consumers, pending, last-delivered-id are common to all versions.
                    for w in groups.windows(2) {
                        if matches!(
                            &w[0][..],
                            b"name" | b"consumers" | b"pending" | b"last-delivered-id"
                        ) {
                            value.extend(w.iter().cloned());
                        }
                    }
                    for w in groups.windows(2) {
                        if &w[0][..] != b"name" {
                            continue;
                        }
                        let pending =
                            query(&mut conn, &[b"XPENDING", k, &w[1], b"-", b"+", b"100"]);
                        // id, consumer, idle ms, delivery count: idle times differ, skip them.
                        if let Value::Array(entries) = pending {
                            for entry in entries {
                                if let Value::Array(fields) = entry {
                                    for (i, f) in fields.into_iter().enumerate() {
                                        if i != 2 {
                                            bytes_of(f, &mut value);
                                        }
                                    }
                                }
                            }
                        }
                    }
                }
                other => value.push(other.as_bytes().to_vec()),
            }
            let ttl: i64 = redis::cmd("PTTL").arg(&key).query(&mut conn).unwrap();
            all.insert((db, key), (kind, value, ttl));
        }
    }
    all
}

/// Asserts both servers hold the same keys, types, values, and TTLs within 3 s.
pub fn assert_same(source: &RedisServer, target: &RedisServer, dbs: u32) {
    let a = dump_all(source, dbs);
    let b = dump_all(target, dbs);
    let missing: Vec<_> = a.keys().filter(|k| !b.contains_key(*k)).take(5).collect();
    let extra: Vec<_> = b.keys().filter(|k| !a.contains_key(*k)).take(5).collect();
    assert!(
        missing.is_empty() && extra.is_empty(),
        "{} keys on source, {} on target; missing {missing:?}, extra {extra:?}",
        a.len(),
        b.len()
    );
    for (key, (kind, value, ttl)) in &a {
        let (tkind, tvalue, tttl) = &b[key];
        assert_eq!(kind, tkind, "type of {key:?}");
        assert!(value == tvalue, "value of {key:?} ({kind}) differs");
        assert_eq!(*ttl == -1, *tttl == -1, "TTL presence of {key:?}");
        if *ttl >= 0 {
            assert!((ttl - tttl).abs() < 3000, "TTL of {key:?}: {ttl} vs {tttl}");
        }
    }
    assert!(!a.is_empty(), "the comparison compared something");
}

fn version_at_least(server: &RedisServer, major: u32, minor: u32) -> bool {
    let mut parts = server.version.split('.').map(|p| p.parse::<u32>().unwrap());
    let (a, b) = (parts.next().unwrap(), parts.next().unwrap());
    (a, b) >= (major, minor)
}

/// Fills `dbs` databases with every type in small and large encodings, TTLs, binary keys, a
/// >1 MB string, streams with groups/PEL/deleted entries, and (7.0+) a function library.
pub fn populate(server: &RedisServer, dbs: u32) -> u64 {
    let mut c = server.conn();
    let mut keys = 0u64;
    for db in 0..dbs {
        let _: () = redis::cmd("SELECT").arg(db).query(&mut c).unwrap();
        let mut p = redis::pipe();
        p.cmd("SET").arg("str:int").arg(12345).ignore();
        p.cmd("SET").arg("str:raw").arg("hello world").ignore();
        p.cmd("SET")
            .arg(b"bin:\x00\xff\r\n".as_slice())
            .arg(b"\x00\x01\x02\xfe".as_slice())
            .ignore();
        p.cmd("SET")
            .arg("str:ttl")
            .arg("expires")
            .arg("PX")
            .arg(600_000)
            .ignore();
        p.cmd("SET").arg("str:long").arg("x".repeat(5000)).ignore();
        p.cmd("RPUSH")
            .arg("list:small")
            .arg(&["a", "b", "c"])
            .ignore();
        let big: Vec<String> = (0..600)
            .map(|i| format!("item-{i}-{}", "y".repeat(i % 70)))
            .collect();
        p.cmd("RPUSH").arg("list:big").arg(&big).ignore();
        p.cmd("SADD").arg("set:int").arg(&[1, 2, 3, 99]).ignore();
        p.cmd("SADD").arg("set:str").arg(&["a", "b", "c"]).ignore();
        let members: Vec<String> = (0..700).map(|i| format!("m{i}")).collect();
        p.cmd("SADD").arg("set:big").arg(&members).ignore();
        p.cmd("ZADD")
            .arg("zset:small")
            .arg(&["0.1", "a", "1e-300", "b", "inf", "c", "-inf", "d"])
            .ignore();
        let mut zbig = vec![];
        for i in 0..300 {
            zbig.push(format!("{}", i as f64 / 7.0));
            zbig.push(format!("z{i}"));
        }
        p.cmd("ZADD").arg("zset:big").arg(&zbig).ignore();
        p.cmd("HSET")
            .arg("hash:small")
            .arg(&["f1", "v1", "f2", "v2"])
            .ignore();
        let mut hbig = vec![];
        for i in 0..600 {
            hbig.push(format!("field{i}"));
            hbig.push("v".repeat(i % 100));
        }
        p.cmd("HSET").arg("hash:big").arg(&hbig).ignore();
        p.cmd("HSET").arg("hash:ttl").arg(&["a", "1"]).ignore();
        p.cmd("PEXPIRE").arg("hash:ttl").arg(900_000).ignore();
        for i in 1..=20 {
            p.cmd("XADD")
                .arg("stream")
                .arg(format!("{i}-1"))
                .arg("f")
                .arg(i)
                .ignore();
        }
        p.cmd("XDEL").arg("stream").arg("3-1").ignore();
        p.cmd("XGROUP")
            .arg("CREATE")
            .arg("stream")
            .arg("g1")
            .arg("0")
            .ignore();
        p.cmd("XGROUP")
            .arg("CREATE")
            .arg("stream")
            .arg("g2")
            .arg("$")
            .ignore();
        p.cmd("XREADGROUP")
            .arg("GROUP")
            .arg("g1")
            .arg("alice")
            .arg("COUNT")
            .arg(5)
            .arg("STREAMS")
            .arg("stream")
            .arg(">")
            .ignore();
        p.cmd("XREADGROUP")
            .arg("GROUP")
            .arg("g1")
            .arg("bob")
            .arg("COUNT")
            .arg(2)
            .arg("STREAMS")
            .arg("stream")
            .arg(">")
            .ignore();
        p.cmd("XACK").arg("stream").arg("g1").arg("1-1").ignore();
        for i in 0..50 {
            p.cmd("SET").arg(format!("db{db}:key:{i}")).arg(i).ignore();
        }
        p.query::<()>(&mut c).unwrap();
        keys += 16 + 50;
    }
    let _: () = redis::cmd("SELECT").arg(0).query(&mut c).unwrap();
    // Incompressible, so the RDB really carries more than a megabyte for it.
    let mut seed = 0x9e37_79b9_7f4a_7c15u64;
    let big: Vec<u8> = (0..1_200_000)
        .map(|_| {
            seed ^= seed << 13;
            seed ^= seed >> 7;
            seed ^= seed << 17;
            seed as u8
        })
        .collect();
    let _: () = redis::cmd("SET")
        .arg("str:huge")
        .arg(&big)
        .query(&mut c)
        .unwrap();
    keys += 1;
    if version_at_least(server, 7, 0) {
        let lib = "#!lua name=ferrylib\nredis.register_function('ferry_echo', function(keys, args) return args[1] end)";
        let _: String = redis::cmd("FUNCTION")
            .arg("LOAD")
            .arg(lib)
            .query(&mut c)
            .unwrap();
    }
    keys
}

/// The function libraries' names on a server.
pub fn function_names(server: &RedisServer) -> Vec<String> {
    let listing = server.cli(&["FUNCTION", "LIST"]);
    let mut names: Vec<String> = listing
        .lines()
        .collect::<Vec<_>>()
        .windows(2)
        .filter(|w| w[0] == "library_name")
        .map(|w| w[1].to_string())
        .collect();
    names.sort();
    names
}

pub fn source_writes_succeed_promptly(source: &RedisServer) {
    let mut c = source.conn();
    c.set_read_timeout(Some(Duration::from_secs(2))).unwrap();
    let started = Instant::now();
    let _: () = redis::cmd("SET")
        .arg("probe")
        .arg("1")
        .query(&mut c)
        .expect("a write on the source succeeds: it is not paused");
    assert!(started.elapsed() < Duration::from_secs(1));
    let _: () = redis::cmd("DEL").arg("probe").query(&mut c).unwrap();
}

/// Writes every kind of command the stream must carry, until `stop` is set.
pub fn spawn_writer(
    source: &RedisServer,
    stop: std::sync::Arc<std::sync::atomic::AtomicBool>,
) -> std::thread::JoinHandle<u64> {
    let url = source.url();
    std::thread::spawn(move || {
        let mut c = redis::Client::open(url).unwrap().get_connection().unwrap();
        let mut n = 0u64;
        while !stop.load(std::sync::atomic::Ordering::Relaxed) {
            let i = n % 50;
            let _: () = redis::cmd("SET")
                .arg(format!("w:s:{i}"))
                .arg(n)
                .query(&mut c)
                .unwrap();
            let _: i64 = redis::cmd("INCR").arg("w:counter").query(&mut c).unwrap();
            let _: i64 = redis::cmd("LPUSH")
                .arg("w:list")
                .arg(n)
                .query(&mut c)
                .unwrap();
            let _: i64 = redis::cmd("HSET")
                .arg("w:hash")
                .arg(format!("f{i}"))
                .arg(n)
                .query(&mut c)
                .unwrap();
            let _: i64 = redis::cmd("EXPIRE")
                .arg(format!("w:s:{i}"))
                .arg(1000)
                .query(&mut c)
                .unwrap();
            if n % 3 == 0 {
                let _: i64 = redis::cmd("DEL")
                    .arg(format!("w:s:{}", (i + 7) % 50))
                    .query(&mut c)
                    .unwrap();
            }
            let _: () = redis::pipe()
                .atomic()
                .cmd("INCRBY")
                .arg("w:tx")
                .arg(2)
                .cmd("SADD")
                .arg("w:set")
                .arg(i)
                .query(&mut c)
                .unwrap();
            let _: i64 = redis::cmd("EVAL")
                .arg("redis.call('ZADD', KEYS[1], ARGV[1], ARGV[2]); return redis.call('ZCARD', KEYS[1])")
                .arg(1)
                .arg("w:zset")
                .arg(n as f64 / 3.0)
                .arg(format!("m{i}"))
                .query(&mut c)
                .unwrap();
            n += 1;
        }
        n
    })
}

pub fn completed_counts(events: &[EventKind]) -> (u64, u64) {
    events
        .iter()
        .find_map(|e| match e {
            EventKind::SnapshotCompleted {
                keys_written,
                keys_skipped,
                ..
            } => Some((*keys_written, *keys_skipped)),
            _ => None,
        })
        .expect("SnapshotCompleted")
}

pub fn get(server: &RedisServer, db: u32, key: &str) -> Option<String> {
    let mut c = server.conn();
    let _: () = redis::cmd("SELECT").arg(db).query(&mut c).unwrap();
    redis::cmd("GET").arg(key).query(&mut c).unwrap()
}

pub async fn wait_until_cancelled(run: Running) -> Vec<EventKind> {
    let started = Instant::now();
    run.controls.cancel.cancel();
    let (result, events) = run.finish().await;
    assert!(
        matches!(result, Err(ferry::engine::EngineError::Cancelled)),
        "{result:?}"
    );
    assert!(
        started.elapsed() < Duration::from_secs(5),
        "cancel is prompt"
    );
    events
}

pub fn field_expiries(server: &RedisServer) -> Vec<i64> {
    redis::cmd("HPEXPIRETIME")
        .arg("hash:fttl")
        .arg("FIELDS")
        .arg(3)
        .arg(&["a", "b", "c"])
        .query(&mut server.conn())
        .unwrap()
}

pub fn hash_with_field_ttls(source: &RedisServer) {
    let mut c = source.conn();
    let _: () = redis::cmd("HSET")
        .arg("hash:fttl")
        .arg(&["a", "1", "b", "2", "c", "3"])
        .query(&mut c)
        .unwrap();
    let _: Vec<i64> = redis::cmd("HPEXPIRE")
        .arg("hash:fttl")
        .arg(600_000)
        .arg("FIELDS")
        .arg(2)
        .arg(&["a", "b"])
        .query(&mut c)
        .unwrap();
}

/// Every key of every db as `db/key = DUMP payload (+ whether it has a TTL)`, sorted: equal lists
/// mean the server holds byte for byte the same data.
pub fn exact_contents(server: &RedisServer) -> Vec<String> {
    let mut conn = server.conn();
    let mut out = vec![];
    for db in 0..16 {
        let _: () = redis::cmd("SELECT").arg(db).query(&mut conn).unwrap();
        let keys: Vec<Vec<u8>> = redis::cmd("KEYS").arg("*").query(&mut conn).unwrap();
        for key in keys {
            let dump: Vec<u8> = redis::cmd("DUMP").arg(&key).query(&mut conn).unwrap();
            let ttl: i64 = redis::cmd("PTTL").arg(&key).query(&mut conn).unwrap();
            out.push(format!(
                "{db}/{} = {dump:?} ttl:{}",
                String::from_utf8_lossy(&key),
                ttl >= 0
            ));
        }
    }
    out.sort();
    out
}
