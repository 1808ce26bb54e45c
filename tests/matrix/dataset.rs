//! What the matrix moves: every type in its small and its large encoding, on every version.
//!
//! The servers run with low encoding thresholds ([`server_args`]) so that a few dozen elements
//! already cross from the compact encodings (intset, ziplist/listpack, listpack_ex) into the large
//! ones (hashtable, skiplist, quicklist of several compressed nodes, streams of several nodes):
//! the datasets stay small and every encoding still appears in the RDB.

use std::time::{SystemTime, UNIX_EPOCH};

use crate::common::redis::{server_version, RedisServer};

/// Databases the source fills (the servers have [`DATABASES`]; the last one stays empty).
pub const FILLED_DBS: u32 = 3;
pub const DATABASES: u32 = 4;

/// Elements above which a compact encoding turns into the large one on our test servers.
const SMALL_MAX: usize = 16;
/// Elements of a "large" collection: well over [`SMALL_MAX`].
const LARGE: usize = 40;

/// Function libraries (and the 7.0 stream counters that came with them): Redis 7.0+, Valkey.
pub fn has_functions(version: &str) -> bool {
    server_version(version).has_functions()
}

/// Hash field TTLs: Redis 7.4+, Valkey 9+.
pub fn has_field_ttls(version: &str) -> bool {
    server_version(version).has_field_ttls()
}

/// Server arguments: low encoding thresholds (the `ziplist` names are understood by every
/// version), compressed list nodes, small stream nodes, and extra databases.
pub fn server_args(version: &str, diskless: bool) -> Vec<String> {
    let small = SMALL_MAX.to_string();
    let mut args: Vec<String> = [
        "--databases",
        &DATABASES.to_string(),
        "--hash-max-ziplist-entries",
        &small,
        "--zset-max-ziplist-entries",
        &small,
        "--set-max-intset-entries",
        &small,
        "--list-max-ziplist-size",
        "8",
        "--list-compress-depth",
        "1",
        "--stream-node-max-entries",
        "8",
        "--repl-diskless-sync",
        if diskless { "yes" } else { "no" },
        "--repl-diskless-sync-delay",
        "0",
    ]
    .iter()
    .map(|s| s.to_string())
    .collect();
    let v = server_version(version);
    if v.fork == ferry::rdb::version::Fork::Valkey || (v.major, v.minor) >= (7, 2) {
        args.extend(["--set-max-listpack-entries".to_string(), small]);
    }
    args
}

fn now_ms() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis() as i64)
        .unwrap_or(0)
}

/// Incompressible bytes (xorshift), so that the RDB really carries their size.
pub fn noise(len: usize, mut seed: u64) -> Vec<u8> {
    (0..len)
        .map(|_| {
            seed ^= seed << 13;
            seed ^= seed >> 7;
            seed ^= seed << 17;
            seed as u8
        })
        .collect()
}

/// The function library every ≥ 7.0 source holds; `ferry_bump` writes, so it also shows in the
/// replication stream.
pub const LIBRARY: &str = "#!lua name=ferrymatrix\n\
    redis.register_function('ferry_bump', function(keys, args) return redis.call('INCRBY', keys[1], args[1]) end)";

/// Fills the source: [`FILLED_DBS`] databases of every type; a > 1 MB string in db 0 and a
/// compressible one in db 1; a function library on ≥ 7.0; hashes with field TTLs on ≥ 7.4.
pub fn populate(server: &RedisServer) {
    let mut c = server.conn();
    let v = server.version.as_str();
    for db in 0..FILLED_DBS {
        let _: () = redis::cmd("SELECT").arg(db).query(&mut c).unwrap();
        let mut p = redis::pipe();
        strings(&mut p, db);
        lists(&mut p);
        sets(&mut p);
        zsets(&mut p);
        hashes(&mut p);
        p.query::<()>(&mut c)
            .unwrap_or_else(|e| panic!("populate db {db} of {v}: {e}"));
        streams(&mut c, v);
        if has_field_ttls(v) {
            field_ttls(&mut c);
        }
    }
    let _: () = redis::cmd("SELECT").arg(0).query(&mut c).unwrap();
    let _: () = redis::cmd("SET")
        .arg("s:huge")
        .arg(noise(1_200_000, 0x9e37_79b9_7f4a_7c15))
        .query(&mut c)
        .unwrap();
    let _: () = redis::cmd("SELECT").arg(1).query(&mut c).unwrap();
    let _: () = redis::cmd("SET")
        .arg("s:huge:compressible")
        .arg("ferry".repeat(300_000))
        .query(&mut c)
        .unwrap();
    let _: () = redis::cmd("SELECT").arg(0).query(&mut c).unwrap();
    if has_functions(v) {
        let _: String = redis::cmd("FUNCTION")
            .arg("LOAD")
            .arg(LIBRARY)
            .query(&mut c)
            .unwrap();
    }
}

fn strings(p: &mut redis::Pipeline, db: u32) {
    p.cmd("SET").arg("s:int").arg(12345).ignore();
    p.cmd("SET")
        .arg("s:int:neg")
        .arg(-9_007_199_254_740_993i64)
        .ignore();
    p.cmd("SET").arg("s:embstr").arg("hello world").ignore();
    p.cmd("SET").arg("s:raw").arg("r".repeat(300)).ignore();
    p.cmd("SET")
        .arg(b"s:bin:\x00\xff\r\n".as_slice())
        .arg(b"\x00\x01\x02\xfe\xff\r\n".as_slice())
        .ignore();
    p.cmd("SET")
        .arg("s:px")
        .arg("ttl")
        .arg("PX")
        .arg(600_123)
        .ignore();
    p.cmd("SET").arg("s:pexpireat").arg("at").ignore();
    p.cmd("PEXPIREAT")
        .arg("s:pexpireat")
        .arg(now_ms() + 700_457)
        .ignore();
    for i in 0..10 {
        p.cmd("SET").arg(format!("db{db}:k:{i}")).arg(i).ignore();
    }
    // Integer-looking strings that are not stored as integers, and odd ones that are.
    for (k, v) in [
        ("s:zero", "0"),
        ("s:lead0", "007"),
        ("s:float", "1e3"),
        ("s:empty", ""),
        ("s:min", "-9223372036854775808"),
    ] {
        p.cmd("SET").arg(k).arg(v).ignore();
    }
    p.cmd("INCRBYFLOAT")
        .arg("s:incrbyfloat")
        .arg("10.5")
        .ignore();
    // A long key name, a unicode one, and a TTL far in the future.
    p.cmd("SET")
        .arg(format!("long:{}", "k".repeat(5000)))
        .arg("v")
        .ignore();
    p.cmd("SET").arg("ключ 🔑 key").arg("значение").ignore();
    p.cmd("SET").arg("s:far").arg("2100").ignore();
    p.cmd("PEXPIREAT")
        .arg("s:far")
        .arg(4_102_444_800_123i64)
        .ignore();
}

fn lists(p: &mut redis::Pipeline) {
    p.cmd("RPUSH").arg("l:small").arg(&["a", "b", "c"]).ignore();
    p.cmd("RPUSH")
        .arg("l:ints")
        .arg(&[1i64, -2, 300_000, 1 << 40])
        .ignore();
    // Several quicklist nodes of 8, the inner ones LZF-compressed (compress depth 1).
    let big: Vec<String> = (0..LARGE * 2)
        .map(|i| format!("item-{i}-{}", "y".repeat(i % 90)))
        .collect();
    p.cmd("RPUSH").arg("l:big").arg(&big).ignore();
    p.cmd("RPUSH").arg("l:ttl").arg(&["x", "y"]).ignore();
    p.cmd("PEXPIRE").arg("l:ttl").arg(800_321).ignore();
}

fn sets(p: &mut redis::Pipeline) {
    p.cmd("SADD").arg("set:int").arg(&[1, 2, 3, 99]).ignore();
    // 64-bit intset encoding.
    p.cmd("SADD")
        .arg("set:int64")
        .arg(&[-(1i64 << 40), 7, 1 << 50])
        .ignore();
    let ints: Vec<usize> = (0..LARGE).collect();
    p.cmd("SADD").arg("set:int:big").arg(&ints).ignore();
    p.cmd("SADD").arg("set:str").arg(&["a", "b", "c"]).ignore();
    // Few members, one too long for the compact encoding.
    p.cmd("SADD")
        .arg("set:longmember")
        .arg(&["a".to_string(), "m".repeat(100)])
        .ignore();
    let members: Vec<String> = (0..LARGE).map(|i| format!("m{i}")).collect();
    p.cmd("SADD").arg("set:str:big").arg(&members).ignore();
}

/// Scores that lose precision or meaning when printed carelessly.
pub const SPECIAL_SCORES: [&str; 6] = [
    "0.1",
    "1e-300",
    "inf",
    "-inf",
    "0.30000000000000004",
    "-2.5e+300",
];

fn zsets(p: &mut redis::Pipeline) {
    let mut small = vec![];
    for (i, score) in SPECIAL_SCORES.iter().enumerate() {
        small.push(score.to_string());
        small.push(format!("z{i}"));
    }
    p.cmd("ZADD").arg("z:small").arg(&small).ignore();
    let mut big = small.clone();
    for i in 0..LARGE {
        big.push(format!("{}", i as f64 / 7.0));
        big.push(format!("zz{i}"));
    }
    p.cmd("ZADD").arg("z:big").arg(&big).ignore();
    // Few members, one too long for the compact encoding; equal scores order by member; -0.
    p.cmd("ZADD")
        .arg("z:longmember")
        .arg(&["1", "b", "1", "a", "-0", "zero", "1e308", &"m".repeat(100)])
        .ignore();
}

fn hashes(p: &mut redis::Pipeline) {
    p.cmd("HSET")
        .arg("h:small")
        .arg(&["f1", "v1", "f2", "2", "f3", ""])
        .ignore();
    let mut big = vec![];
    for i in 0..LARGE {
        big.push(format!("field{i}"));
        big.push("v".repeat(i * 3));
    }
    p.cmd("HSET").arg("h:big").arg(&big).ignore();
    // Few fields, one value too long for the compact encoding; integer values.
    p.cmd("HSET")
        .arg("h:longvalue")
        .arg(&["a".to_string(), "v".repeat(100), "n".into(), "-42".into()])
        .ignore();
    p.cmd("HSET").arg("h:ttl").arg(&["a", "1"]).ignore();
    p.cmd("PEXPIRE").arg("h:ttl").arg(900_777).ignore();
}

pub fn run(c: &mut redis::Connection, args: &[&str]) {
    let mut cmd = redis::cmd(args[0]);
    for a in &args[1..] {
        cmd.arg(*a);
    }
    cmd.query::<redis::Value>(c)
        .unwrap_or_else(|e| panic!("{args:?}: {e}"));
}

/// Streams: several nodes, deleted entries, three consumer groups (one created at an id, one
/// with `ENTRIESREAD` on ≥ 7.0), a PEL over two consumers with a pending entry whose message was
/// deleted, a trimmed head, an empty stream with a group, and one with a TTL.
fn streams(c: &mut redis::Connection, version: &str) {
    for i in 1..=30 {
        let f = format!("{i}");
        if i % 4 == 0 {
            // A different field set: not compressed against the node's master entry.
            run(
                c,
                &[
                    "XADD",
                    "x:main",
                    &format!("{i}-1"),
                    "other",
                    &f,
                    "more",
                    "x",
                ],
            );
        } else {
            run(c, &["XADD", "x:main", &format!("{i}-1"), "f", &f]);
        }
    }
    run(c, &["XDEL", "x:main", "3-1", "17-1"]);
    run(c, &["XGROUP", "CREATE", "x:main", "g1", "0"]);
    run(c, &["XGROUP", "CREATE", "x:main", "g2", "$"]);
    run(c, &["XGROUP", "CREATE", "x:main", "g3", "10-1"]);
    run(
        c,
        &[
            "XREADGROUP",
            "GROUP",
            "g1",
            "alice",
            "COUNT",
            "5",
            "STREAMS",
            "x:main",
            ">",
        ],
    );
    run(
        c,
        &[
            "XREADGROUP",
            "GROUP",
            "g1",
            "bob",
            "COUNT",
            "3",
            "STREAMS",
            "x:main",
            ">",
        ],
    );
    run(
        c,
        &[
            "XREADGROUP",
            "GROUP",
            "g3",
            "carol",
            "COUNT",
            "2",
            "STREAMS",
            "x:main",
            ">",
        ],
    );
    // Read twice: a delivery count of 2.
    run(c, &["XCLAIM", "x:main", "g1", "bob", "0", "2-1"]);
    run(c, &["XACK", "x:main", "g1", "1-1"]);
    // A pending entry whose message is then deleted.
    run(c, &["XDEL", "x:main", "5-1"]);
    if has_functions(version) {
        run(
            c,
            &[
                "XGROUP",
                "CREATE",
                "x:main",
                "g4",
                "20-1",
                "ENTRIESREAD",
                "18",
            ],
        );
    }
    run(
        c,
        &["XGROUP", "CREATECONSUMER", "x:main", "g2", "idle-consumer"],
    );
    // A whole node (8 entries) deleted, odd values (empty, long, integers, binary), many fields.
    for i in 1..=40 {
        let id = format!("{i}-{}", i * 3);
        let long = "L".repeat(i * 5);
        let big = (i64::MAX - i as i64).to_string();
        let neg = (-(i as i64) * 1000).to_string();
        run(
            c,
            &[
                "XADD",
                "x:holes",
                &id,
                "empty",
                "",
                "long",
                &long,
                "int",
                &neg,
                "big",
                &big,
                "bin",
                "\x00\x01\r\n",
            ],
        );
    }
    for i in 9..=16 {
        run(c, &["XDEL", "x:holes", &format!("{i}-{}", i * 3)]);
    }
    run(c, &["XDEL", "x:holes", "40-120", "1-3"]);
    run(c, &["XADD", "x:trimmed", "MAXLEN", "5", "*", "a", "1"]);
    for i in 0..12 {
        run(
            c,
            &["XADD", "x:trimmed", "MAXLEN", "5", "*", "n", &i.to_string()],
        );
    }
    run(c, &["XGROUP", "CREATE", "x:empty", "g", "0", "MKSTREAM"]);
    run(c, &["XADD", "x:emptied", "5-5", "a", "1"]);
    run(c, &["XDEL", "x:emptied", "5-5"]);
    run(c, &["XADD", "x:ttl", "1-1", "a", "1"]);
    run(c, &["PEXPIRE", "x:ttl", "650000"]);
}

/// Hashes with field TTLs (7.4+), in the listpack_ex and the hashtable encoding, one with a key
/// TTL as well.
fn field_ttls(c: &mut redis::Connection) {
    run(c, &["HSET", "hf:small", "a", "1", "b", "2", "c", "3"]);
    run(
        c,
        &["HPEXPIRE", "hf:small", "600000", "FIELDS", "2", "a", "b"],
    );
    let mut big = vec!["HSET".to_string(), "hf:big".into()];
    for i in 0..LARGE {
        big.push(format!("f{i}"));
        big.push(format!("v{i}"));
    }
    let args: Vec<&str> = big.iter().map(String::as_str).collect();
    run(c, &args);
    for i in 0..LARGE / 2 {
        run(
            c,
            &[
                "HPEXPIRE",
                "hf:big",
                &(500_000 + i * 1000).to_string(),
                "FIELDS",
                "1",
                &format!("f{i}"),
            ],
        );
    }
    run(c, &["HSET", "hf:keyttl", "a", "1", "b", "2"]);
    run(c, &["HPEXPIRE", "hf:keyttl", "700000", "FIELDS", "1", "a"]);
    run(c, &["PEXPIRE", "hf:keyttl", "800000"]);
}

/// Removes what a refused target cannot hold and no option lets go: function libraries. (Field
/// TTLs have one: `drop_field_ttls`.)
pub fn strip_functions(server: &RedisServer) {
    if has_functions(&server.version) {
        run(&mut server.conn(), &["FUNCTION", "FLUSH"]);
    }
}
