//! A real-server corpus: servers configured with tiny encoding thresholds so that a few keys cover
//! every type in its small and its large encoding, populated, saved, and compared type-aware.

use std::collections::BTreeMap;
use std::time::{SystemTime, UNIX_EPOCH};

use ferry::rdb::version::Fork;

use crate::common::redis::{modules_dir, server_version, RedisServer};

/// Whether `version` (e.g. "7.2") has what Redis `major.minor` has (up to 7.4, the features the
/// corpus uses: functions, set listpacks, field TTLs). Valkey 9 has all of them.
pub fn at_least(version: &str, major: u32, minor: u32) -> bool {
    let v = server_version(version);
    match v.fork {
        Fork::Redis => (v.major, v.minor) >= (major, minor),
        Fork::Valkey => v.major >= 9 || (major, minor) <= (7, 2),
    }
}

/// The Redis Stack builds (7.2, 7.4) carry RedisJSON; 8.2's and Valkey's wheels carry no module.
pub fn has_rejson(version: &str) -> bool {
    matches!(version, "7.2" | "7.4")
}

/// Server arguments that force both encodings with few elements.
pub fn server_args(version: &str) -> Vec<String> {
    let mut args: Vec<String> = [
        "--hash-max-ziplist-entries",
        "8",
        "--zset-max-ziplist-entries",
        "8",
        "--set-max-intset-entries",
        "8",
        "--list-max-ziplist-size",
        "4",
        "--list-compress-depth",
        "1",
        "--stream-node-max-entries",
        "10",
        "--databases",
        "4",
    ]
    .iter()
    .map(|s| s.to_string())
    .collect();
    if at_least(version, 7, 0) {
        args.extend(["--enable-debug-command".into(), "yes".into()]);
    }
    if at_least(version, 7, 2) {
        args.extend(["--set-max-listpack-entries".into(), "8".into()]);
    }
    if has_rejson(version) {
        args.extend(["--loadmodule".into(), rejson(version).display().to_string()]);
    }
    args
}

/// RedisJSON for `version`. The installed `.so` files lack the execute bit, which Redis
/// requires, so a copy with mode 0755 is made once per test process (the installed tree is left
/// as is; `chmod +x` in scripts/install-redis.sh would make this copy unnecessary).
fn rejson(version: &str) -> std::path::PathBuf {
    use std::os::unix::fs::PermissionsExt;
    let installed = modules_dir(version).join("rejson.so");
    let dir = std::env::temp_dir().join(format!(
        "ferry-rdb-modules-{}-{version}",
        std::process::id()
    ));
    let copy = dir.join("rejson.so");
    if !copy.exists() {
        std::fs::create_dir_all(&dir).expect("create module dir");
        let tmp = dir.join(format!("rejson.so.{:?}", std::thread::current().id()));
        std::fs::copy(&installed, &tmp).expect("copy rejson.so");
        std::fs::set_permissions(&tmp, std::fs::Permissions::from_mode(0o755))
            .expect("chmod module");
        std::fs::rename(&tmp, &copy).expect("install module copy");
    }
    copy
}

/// Starts a server of `version` with [`server_args`].
pub fn start(version: &str) -> RedisServer {
    let args = server_args(version);
    let refs: Vec<&str> = args.iter().map(String::as_str).collect();
    RedisServer::start_with(version, &refs)
}

pub fn now_ms() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .expect("clock after 1970")
        .as_millis() as i64
}

/// Runs one command given as byte strings; panics with the command on error.
pub fn run(conn: &mut redis::Connection, args: &[&[u8]]) -> redis::Value {
    let mut cmd = redis::cmd(std::str::from_utf8(args[0]).expect("ascii command name"));
    for a in &args[1..] {
        cmd.arg(*a);
    }
    cmd.query(conn).unwrap_or_else(|e| {
        panic!(
            "{:?} failed: {e}",
            args.iter()
                .map(|a| String::from_utf8_lossy(a))
                .collect::<Vec<_>>()
        )
    })
}

fn r(conn: &mut redis::Connection, line: &str) {
    let parts: Vec<&[u8]> = line.split(' ').map(str::as_bytes).collect();
    run(conn, &parts);
}

/// The big value: 1.5 MB that LZF cannot shrink much (so it stays big in the file).
pub fn big_value() -> Vec<u8> {
    let mut x: u32 = 0x1234_5678;
    (0..1_500_000)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 17;
            x ^= x << 5;
            (x >> 24) as u8
        })
        .collect()
}

/// Fills db 0–2 with every type in small and large encodings.
pub fn populate(server: &RedisServer) {
    let v = server.version.as_str();
    let mut c = server.conn();
    let c = &mut c;
    let in_an_hour = now_ms() + 3_600_000;
    // strings: int, raw, LZF-compressible, empty, big, binary key and value
    r(c, "SET s:int 12345");
    r(c, "SET s:neg -7");
    r(c, "SET s:raw hello");
    run(c, &[b"SET", b"s:lzf", "abcdefgh".repeat(200).as_bytes()]);
    run(c, &[b"SET", b"s:empty", b""]);
    run(c, &[b"SET", b"s:big", &big_value()]);
    run(c, &[b"SET", b"bin\x00\xff\r\nkey", b"\x00\x01\x02\xfe\xff"]);
    run(c, &[b"SET", b"12", b"integer-looking key"]);
    r(c, &format!("SET s:ttl soon PXAT {in_an_hour}"));
    r(c, "SET s:ttlsec x EX 7200");
    // lists: small (one listpack/ziplist node), large (many nodes, compressed inner nodes)
    r(c, "RPUSH l:small a 1 -5 bb");
    for i in 0..60 {
        run(
            c,
            &[
                b"RPUSH",
                b"l:big",
                format!("element-{i}-{}", "pad".repeat(i % 7)).as_bytes(),
            ],
        );
    }
    run(c, &[b"RPUSH", b"l:big", &big_value()[..200_000]]);
    if at_least(v, 7, 0) {
        // elements over the packed threshold become PLAIN quicklist nodes
        r(c, "DEBUG QUICKLIST-PACKED-THRESHOLD 100");
        // (7.2+ keeps lists of <= 4 elements as one listpack: make it a quicklist first)
        r(c, "RPUSH l:plain a b c d e");
        run(c, &[b"RPUSH", b"l:plain", &big_value()[..300], b"tiny2"]);
    }
    // sets: intset, listpack (7.2+), hashtable
    r(c, "SADD set:ints 1 2 3 -100000 4294967296");
    r(c, "SADD set:small a b c");
    for i in 0..40 {
        r(c, &format!("SADD set:big member-{i}"));
        r(c, &format!("SADD set:bigints {}", i * 1000));
    }
    // zsets: listpack/ziplist, skiplist; exact and infinite scores
    r(c, "ZADD z:small 1.5 a -inf b inf c 0.1 d");
    for i in 0..30 {
        r(c, &format!("ZADD z:big {} m{i}", f64::from(i) / 3.0));
    }
    r(c, "ZADD z:big 1e300 huge -2.5e-300 tiny inf top");
    // hashes: listpack/ziplist, hashtable, a big value
    r(c, "HSET h:small f1 v1 f2 2 f3 v3");
    for i in 0..30 {
        r(c, &format!("HSET h:big field{i} value{i}"));
    }
    run(
        c,
        &[b"HSET", b"h:bigvalue", b"blob", &big_value()[..1_100_000]],
    );
    // streams: several nodes, deletions, groups, PEL, consumers
    for i in 1..=35 {
        if i % 5 == 0 {
            r(c, &format!("XADD st 1700000000000-{i} other {i} extra x"));
        } else {
            r(c, &format!("XADD st 1700000000000-{i} name n{i} value {i}"));
        }
    }
    r(c, "XDEL st 1700000000000-3 1700000000000-4");
    r(c, "XGROUP CREATE st g1 0");
    r(c, "XREADGROUP GROUP g1 alice COUNT 4 STREAMS st >");
    r(c, "XREADGROUP GROUP g1 bob COUNT 3 STREAMS st >");
    r(c, "XREADGROUP GROUP g1 alice COUNT 1 STREAMS st 0");
    r(c, "XACK st g1 1700000000000-1");
    // a delivered, unacknowledged message that is then deleted stays in bob's PEL
    r(c, "XDEL st 1700000000000-8");
    r(c, "XGROUP CREATE st g2 $");
    r(c, "XGROUP CREATECONSUMER st g2 idle-one");
    r(c, "XADD st:small * a 1");
    r(c, "XADD st:empty 5-1 a 1");
    r(c, "XDEL st:empty 5-1");
    // expiring collection
    r(c, "RPUSH l:ttl a b");
    r(c, &format!("PEXPIREAT l:ttl {in_an_hour}"));
    if at_least(v, 7, 0) {
        run(c, &[b"FUNCTION", b"LOAD", function_code().as_bytes()]);
    }
    if at_least(v, 7, 4) {
        r(c, "HSET hx:small a 1 b 2 c 3");
        r(
            c,
            &format!("HPEXPIREAT hx:small {} FIELDS 2 a b", in_an_hour + 5),
        );
        for i in 0..20 {
            r(c, &format!("HSET hx:big f{i} v{i}"));
        }
        r(
            c,
            &format!("HPEXPIREAT hx:big {} FIELDS 3 f1 f2 f3", in_an_hour + 7),
        );
        r(
            c,
            &format!("HPEXPIREAT hx:big {} FIELDS 1 f9", in_an_hour + 9_000),
        );
    }
    if has_rejson(v) {
        r(c, r#"JSON.SET j:doc $ {"a":1,"b":[true,null,"x"]}"#);
    }
    // other databases
    r(c, "SELECT 1");
    r(c, "SET db1:s one");
    r(c, "HSET db1:h a b");
    r(c, "SELECT 2");
    r(c, &format!("SET db2:s two PXAT {in_an_hour}"));
}

/// The function library loaded on 7.0+.
pub fn function_code() -> &'static str {
    "#!lua name=ferrylib\nredis.register_function('ferryfn',function() return 1 end)"
}

/// Saves and reads the server's `dump.rdb`.
pub fn save(server: &RedisServer) -> Vec<u8> {
    let mut c = server.conn();
    let _: () = redis::cmd("SAVE").query(&mut c).expect("SAVE");
    std::fs::read(server.dir().join("dump.rdb")).expect("read dump.rdb")
}

fn describe(v: &redis::Value) -> String {
    format!("{v:?}")
}

fn bulk(v: redis::Value) -> Vec<Vec<u8>> {
    redis::from_redis_value(v).expect("an array of bulk strings")
}

/// A type-aware description of every key in `db`: key -> canonical text.
pub fn snapshot(server: &RedisServer, db: u8) -> BTreeMap<Vec<u8>, String> {
    snapshot_with(server, db, false)
}

/// Like [`snapshot`], but only what every version reports alike (for comparing a newer source
/// with an older target): data, TTLs to the nearest 10 s, stream ids, groups and PELs.
pub fn snapshot_portable(server: &RedisServer, db: u8) -> BTreeMap<Vec<u8>, String> {
    snapshot_with(server, db, true)
}

fn snapshot_with(server: &RedisServer, db: u8, portable: bool) -> BTreeMap<Vec<u8>, String> {
    let v = server.version.clone();
    let mut conn = server.conn();
    let c = &mut conn;
    run(c, &[b"SELECT", db.to_string().as_bytes()]);
    let keys = bulk(run(c, &[b"KEYS", b"*"]));
    let mut out = BTreeMap::new();
    for key in keys {
        let k = key.as_slice();
        let ty: String = redis::from_redis_value(run(c, &[b"TYPE", k])).expect("type");
        let mut d = format!("type={ty};");
        match ty.as_str() {
            "string" => d += &describe(&run(c, &[b"GET", k])),
            "list" => d += &describe(&run(c, &[b"LRANGE", k, b"0", b"-1"])),
            "set" => {
                let mut m = bulk(run(c, &[b"SMEMBERS", k]));
                m.sort();
                d += &format!("{m:?}");
            }
            "zset" => {
                // 6.2 prints scores with %.17g, 7.x with the shortest form: compare the doubles
                let flat = bulk(run(c, &[b"ZRANGE", k, b"0", b"-1", b"WITHSCORES"]));
                let pairs: Vec<(String, f64)> = flat
                    .chunks(2)
                    .map(|p| {
                        let score = String::from_utf8_lossy(&p[1])
                            .parse::<f64>()
                            .expect("score");
                        (String::from_utf8_lossy(&p[0]).into_owned(), score)
                    })
                    .collect();
                d += &format!("{pairs:?}");
            }
            "hash" => {
                let flat = bulk(run(c, &[b"HGETALL", k]));
                let mut pairs: Vec<_> = flat.chunks(2).map(|p| p.to_vec()).collect();
                pairs.sort();
                d += &format!("{pairs:?}");
                if at_least(&v, 7, 4) && !portable {
                    let fields: Vec<Vec<u8>> = pairs.iter().map(|p| p[0].clone()).collect();
                    let mut args: Vec<&[u8]> = vec![b"HPEXPIRETIME", k, b"FIELDS"];
                    let n = fields.len().to_string();
                    args.push(n.as_bytes());
                    args.extend(fields.iter().map(|f| f.as_slice()));
                    d += &format!(";fieldttl={}", describe(&run(c, &args)));
                }
            }
            "stream" => d += &describe_stream(c, k, portable),
            _ => d += &describe(&run(c, &[b"JSON.GET", k])),
        }
        if at_least(&v, 7, 0) && !portable {
            d += &format!(";pexpiretime={}", describe(&run(c, &[b"PEXPIRETIME", k])));
        } else {
            let pttl: i64 = redis::from_redis_value(run(c, &[b"PTTL", k])).expect("pttl");
            // relative: compare to the nearest 10 s
            d += &format!(
                ";pttl~{}",
                if pttl < 0 {
                    pttl
                } else {
                    (pttl + 5_000) / 10_000
                }
            );
        }
        out.insert(key, d);
    }
    out
}

fn info_map(v: redis::Value) -> BTreeMap<String, redis::Value> {
    let flat: Vec<redis::Value> = redis::from_redis_value(v).expect("an info array");
    flat.chunks(2)
        .map(|p| {
            (
                redis::from_redis_value::<String>(p[0].clone()).expect("name"),
                p[1].clone(),
            )
        })
        .collect()
}

fn describe_stream(c: &mut redis::Connection, k: &[u8], portable: bool) -> String {
    let mut d = format!("entries={}", describe(&run(c, &[b"XRANGE", k, b"-", b"+"])));
    let info = info_map(run(c, &[b"XINFO", b"STREAM", k]));
    let fields: &[&str] = if portable {
        &["length", "last-generated-id"]
    } else {
        &[
            "length",
            "last-generated-id",
            "max-deleted-entry-id",
            "entries-added",
            "recorded-first-entry-id",
        ]
    };
    for field in fields {
        if let Some(x) = info.get(*field) {
            d += &format!(";{field}={}", describe(x));
        }
    }
    let groups: Vec<redis::Value> =
        redis::from_redis_value(run(c, &[b"XINFO", b"GROUPS", k])).expect("groups");
    for g in groups {
        let g = info_map(g);
        let name: Vec<u8> = redis::from_redis_value(g["name"].clone()).expect("group name");
        d += &format!(";group {}", describe(&g["name"]));
        let group_fields: &[&str] = if portable {
            &["consumers", "pending", "last-delivered-id"]
        } else {
            &["consumers", "pending", "last-delivered-id", "entries-read"]
        };
        for field in group_fields {
            if let Some(x) = g.get(*field) {
                d += &format!(" {field}={}", describe(x));
            }
        }
        let pending: Vec<Vec<redis::Value>> =
            redis::from_redis_value(run(c, &[b"XPENDING", k, &name, b"-", b"+", b"1000"]))
                .expect("xpending");
        for p in pending {
            // id, consumer, idle (varies: skipped), delivery count
            d += &format!(
                " pel({},{},{})",
                describe(&p[0]),
                describe(&p[1]),
                describe(&p[3])
            );
        }
        let consumers: Vec<redis::Value> =
            redis::from_redis_value(run(c, &[b"XINFO", b"CONSUMERS", k, &name]))
                .expect("consumers");
        let mut names: Vec<String> = consumers
            .into_iter()
            .map(|x| {
                let m = info_map(x);
                format!("{}:{}", describe(&m["name"]), describe(&m["pending"]))
            })
            .collect();
        names.sort();
        d += &format!(" consumers={names:?}");
    }
    d
}
