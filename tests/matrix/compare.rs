//! This binary's own judge: reads both servers through plain commands into a version-independent
//! form and compares them, independently of the engine's verifier.
//!
//! What is compared, per key: the type; the value (sorted for sets and hashes, scores as exact
//! doubles); the TTL within a tolerance; for hashes on two 7.4+ servers every field's absolute
//! expiry; for streams the entries, the last id, (between two 7.0+ servers) the added-entries
//! counter and the max deleted id, every group's last delivered id, consumers and PEL (owner,
//! delivery count, and delivery time within a tolerance), and (between two 7.0+ servers) each
//! group's `entries-read`. Then, between two 7.0+ servers, the function libraries with their code.
//! Consumers' seen-times cannot be set by any command and are not compared.

use std::collections::BTreeMap;

use redis::Value;

use crate::common::redis::RedisServer;
use crate::dataset::{has_field_ttls, has_functions, DATABASES};

/// TTLs and delivery times may move this much while we read (clocks run during the copy).
const TOLERANCE_MS: i64 = 5_000;

/// What differs between two servers, one line per difference (empty when they match).
pub type Differences = Vec<String>;

/// A key's comparable form: type, exact parts, and times compared with a tolerance.
#[derive(Debug, Clone, PartialEq)]
struct KeyView {
    kind: String,
    exact: Vec<Vec<u8>>,
    /// Relative (PTTL, stream idle times) or absolute (field expiries) times in ms; -1/-2 as Redis.
    times: Vec<i64>,
}

/// What a server's features are, as far as the comparison must know.
#[derive(Clone, Copy)]
struct Common {
    streams_7: bool,
    field_ttls: bool,
}

fn flat(v: Value, out: &mut Vec<Vec<u8>>) {
    match v {
        Value::BulkString(b) => out.push(b),
        Value::SimpleString(s) => out.push(s.into_bytes()),
        Value::Int(i) => out.push(i.to_string().into_bytes()),
        Value::Nil => out.push(b"(nil)".to_vec()),
        Value::Double(d) => out.push(d.to_bits().to_string().into_bytes()),
        Value::Array(items) | Value::Set(items) => {
            out.push(format!("*{}", items.len()).into_bytes());
            for i in items {
                flat(i, out);
            }
        }
        Value::Map(pairs) => {
            out.push(format!("%{}", pairs.len()).into_bytes());
            for (k, v) in pairs {
                flat(k, out);
                flat(v, out);
            }
        }
        other => out.push(format!("{other:?}").into_bytes()),
    }
}

fn query(c: &mut redis::Connection, args: &[&[u8]]) -> Value {
    let mut cmd = redis::cmd(std::str::from_utf8(args[0]).unwrap());
    for a in &args[1..] {
        cmd.arg(*a);
    }
    cmd.query(c)
        .unwrap_or_else(|e| panic!("{:?}: {e}", String::from_utf8_lossy(&args.concat())))
}

fn items(v: Value) -> Vec<Value> {
    match v {
        Value::Array(items) | Value::Set(items) => items,
        other => panic!("expected an array, got {other:?}"),
    }
}

fn text(v: &Value) -> Vec<u8> {
    let mut out = vec![];
    flat(v.clone(), &mut out);
    out.concat()
}

/// `[name, value, name, value…]` of an XINFO reply as a map.
fn fields(v: Value) -> BTreeMap<Vec<u8>, Value> {
    let list = match v {
        Value::Map(pairs) => return pairs.into_iter().map(|(k, v)| (text(&k), v)).collect(),
        other => items(other),
    };
    list.chunks(2)
        .map(|p| (text(&p[0]), p[1].clone()))
        .collect()
}

fn read_key(c: &mut redis::Connection, key: &[u8], common: Common) -> KeyView {
    let kind = match query(c, &[b"TYPE", key]) {
        Value::SimpleString(s) => s,
        other => String::from_utf8_lossy(&text(&other)).into_owned(),
    };
    let mut exact = vec![];
    let mut times = vec![];
    match kind.as_str() {
        "string" => flat(query(c, &[b"GET", key]), &mut exact),
        "list" => flat(query(c, &[b"LRANGE", key, b"0", b"-1"]), &mut exact),
        "set" => {
            flat(query(c, &[b"SMEMBERS", key]), &mut exact);
            exact.sort();
        }
        "hash" => {
            let mut pairs: Vec<(Vec<u8>, Vec<u8>)> = items(query(c, &[b"HGETALL", key]))
                .chunks(2)
                .map(|p| (text(&p[0]), text(&p[1])))
                .collect();
            pairs.sort();
            if common.field_ttls && !pairs.is_empty() {
                let n = pairs.len().to_string();
                let mut args: Vec<&[u8]> = vec![b"HPEXPIRETIME", key, b"FIELDS", n.as_bytes()];
                args.extend(pairs.iter().map(|(f, _)| f.as_slice()));
                for at in items(query(c, &args)) {
                    let Value::Int(at) = at else {
                        panic!("HPEXPIRETIME answered {at:?}")
                    };
                    times.push(at);
                }
            }
            for (f, v) in pairs {
                exact.push(f);
                exact.push(v);
            }
        }
        "zset" => {
            for pair in items(query(c, &[b"ZRANGE", key, b"0", b"-1", b"WITHSCORES"])).chunks(2) {
                exact.push(text(&pair[0]));
                let score = String::from_utf8_lossy(&text(&pair[1])).into_owned();
                let bits = score
                    .parse::<f64>()
                    .unwrap_or_else(|_| panic!("score {score:?}"))
                    .to_bits();
                exact.push(bits.to_string().into_bytes());
            }
        }
        "stream" => stream(c, key, common, &mut exact, &mut times),
        "none" => {}
        other => exact.push(other.as_bytes().to_vec()),
    }
    let Value::Int(ttl) = query(c, &[b"PTTL", key]) else {
        panic!("PTTL")
    };
    times.push(ttl);
    KeyView { kind, exact, times }
}

fn stream(
    c: &mut redis::Connection,
    key: &[u8],
    common: Common,
    exact: &mut Vec<Vec<u8>>,
    times: &mut Vec<i64>,
) {
    flat(query(c, &[b"XRANGE", key, b"-", b"+"]), exact);
    let info = fields(query(c, &[b"XINFO", b"STREAM", key]));
    let mut wanted: Vec<&[u8]> = vec![b"length", b"last-generated-id", b"groups"];
    if common.streams_7 {
        wanted.extend([b"max-deleted-entry-id".as_slice(), b"entries-added"]);
    }
    for name in wanted {
        exact.push(name.to_vec());
        exact.push(info.get(name).map(text).unwrap_or_default());
    }
    for group in items(query(c, &[b"XINFO", b"GROUPS", key])) {
        let group = fields(group);
        let name = group.get(b"name".as_slice()).map(text).unwrap_or_default();
        let mut wanted: Vec<&[u8]> = vec![b"name", b"consumers", b"pending", b"last-delivered-id"];
        if common.streams_7 {
            wanted.push(b"entries-read");
        }
        for field in wanted {
            exact.push(field.to_vec());
            exact.push(group.get(field).map(text).unwrap_or_default());
        }
        // id, consumer, idle ms, delivery count.
        for entry in items(query(c, &[b"XPENDING", key, &name, b"-", b"+", b"1000"])) {
            let parts = items(entry);
            exact.push(text(&parts[0]));
            exact.push(text(&parts[1]));
            exact.push(text(&parts[3]));
            if let Value::Int(idle) = parts[2] {
                times.push(idle);
            }
        }
        let mut consumers: Vec<(Vec<u8>, Vec<u8>)> =
            items(query(c, &[b"XINFO", b"CONSUMERS", key, &name]))
                .into_iter()
                .map(|consumer| {
                    let f = fields(consumer);
                    (
                        f.get(b"name".as_slice()).map(text).unwrap_or_default(),
                        f.get(b"pending".as_slice()).map(text).unwrap_or_default(),
                    )
                })
                .collect();
        consumers.sort();
        for (n, p) in consumers {
            exact.push(n);
            exact.push(p);
        }
    }
}

fn read_server(server: &RedisServer, common: Common) -> BTreeMap<(u32, Vec<u8>), KeyView> {
    let mut c = server.conn();
    let mut all = BTreeMap::new();
    for db in 0..DATABASES {
        let _: () = redis::cmd("SELECT").arg(db).query(&mut c).unwrap();
        let keys: Vec<Vec<u8>> = redis::cmd("KEYS").arg("*").query(&mut c).unwrap();
        for key in keys {
            let view = read_key(&mut c, &key, common);
            if view.kind != "none" {
                all.insert((db, key), view);
            }
        }
    }
    all
}

/// `FUNCTION LIST WITHCODE` as `(library name, code)` pairs, sorted.
pub fn functions(server: &RedisServer) -> Vec<(Vec<u8>, Vec<u8>)> {
    let mut c = server.conn();
    let mut libraries: Vec<_> = items(query(&mut c, &[b"FUNCTION", b"LIST", b"WITHCODE"]))
        .into_iter()
        .map(|lib| {
            let f = fields(lib);
            (
                f.get(b"library_name".as_slice())
                    .map(text)
                    .unwrap_or_default(),
                f.get(b"library_code".as_slice())
                    .map(text)
                    .unwrap_or_default(),
            )
        })
        .collect();
    libraries.sort();
    libraries
}

/// Compares two servers key by key (see the module docs); returns the differences found.
pub fn differences(source: &RedisServer, target: &RedisServer) -> Differences {
    let common = Common {
        streams_7: has_functions(&source.version) && has_functions(&target.version),
        field_ttls: has_field_ttls(&source.version) && has_field_ttls(&target.version),
    };
    let a = read_server(source, common);
    let b = read_server(target, common);
    let mut out = vec![];
    if a.is_empty() {
        out.push("the source is empty: the comparison would prove nothing".into());
    }
    for (key, s) in &a {
        let shown = format!("db {} `{}`", key.0, String::from_utf8_lossy(&key.1));
        let Some(t) = b.get(key) else {
            out.push(format!("{shown}: missing on the target"));
            continue;
        };
        if s.kind != t.kind {
            out.push(format!("{shown}: type {} vs {}", s.kind, t.kind));
        } else if s.exact != t.exact {
            let first = s
                .exact
                .iter()
                .zip(&t.exact)
                .position(|(x, y)| x != y)
                .unwrap_or(s.exact.len().min(t.exact.len()));
            let show = |v: &Vec<Vec<u8>>| {
                v.get(first.saturating_sub(2)..(first + 2).min(v.len()))
                    .unwrap_or_default()
                    .iter()
                    .map(|x| String::from_utf8_lossy(&x[..x.len().min(60)]).into_owned())
                    .collect::<Vec<_>>()
            };
            out.push(format!(
                "{shown} ({}): value differs at part {first}: {:?} vs {:?} ({} vs {} parts)",
                s.kind,
                show(&s.exact),
                show(&t.exact),
                s.exact.len(),
                t.exact.len()
            ));
        } else if s.times.len() != t.times.len()
            || s.times
                .iter()
                .zip(&t.times)
                .any(|(x, y)| (*x < 0 || *y < 0) && x != y || (x - y).abs() > TOLERANCE_MS)
        {
            out.push(format!(
                "{shown} ({}): times (field expiries, idle times, PTTL last) {:?} vs {:?}",
                s.kind, s.times, t.times
            ));
        }
    }
    for key in b.keys().filter(|k| !a.contains_key(*k)) {
        out.push(format!(
            "db {} `{}`: extra on the target",
            key.0,
            String::from_utf8_lossy(&key.1)
        ));
    }
    if has_functions(&source.version) && has_functions(&target.version) {
        let (f, g) = (functions(source), functions(target));
        if f != g {
            out.push(format!(
                "function libraries differ: {:?} vs {:?}",
                f.iter()
                    .map(|l| String::from_utf8_lossy(&l.0).into_owned())
                    .collect::<Vec<_>>(),
                g.iter()
                    .map(|l| String::from_utf8_lossy(&l.0).into_owned())
                    .collect::<Vec<_>>()
            ));
        }
    }
    out
}

/// The number of keys the comparison looked at on the source (so a test can show it compared
/// something real).
pub fn key_count(server: &RedisServer) -> u64 {
    let mut c = server.conn();
    (0..DATABASES)
        .map(|db| {
            let _: () = redis::cmd("SELECT").arg(db).query(&mut c).unwrap();
            redis::cmd("DBSIZE").query::<u64>(&mut c).unwrap()
        })
        .sum()
}
