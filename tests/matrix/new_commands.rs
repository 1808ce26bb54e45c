//! The write commands of Redis 8.0–8.2 and Valkey 8–9, as a table: each row is sent by the live
//! writer of every source that has it, so every pair with such a source feeds it through a real
//! source into a real target of every other family, and the judge compares the row's own keys
//! (`nc:<row>…`) afterwards. A target that lacks a command gets it rewritten (see
//! `ferry::engine`'s stream translation); Redis 8.4's commands, which no server of the suite has,
//! are covered on the command level in the engine's unit tests.

use ferry::rdb::version::{Fork, ServerVersion};

use crate::common::redis::server_version;
use crate::dataset::run;

/// One row: which sources have it, and the commands of round `n`.
pub struct Row {
    pub name: &'static str,
    pub on: fn(&ServerVersion) -> bool,
    pub round: fn(n: u64) -> Vec<String>,
}

fn redis_8_0(v: &ServerVersion) -> bool {
    v.at_least(Fork::Redis, 8, 0)
}
fn redis_8_2(v: &ServerVersion) -> bool {
    v.at_least(Fork::Redis, 8, 2)
}
fn hash_ex(v: &ServerVersion) -> bool {
    redis_8_0(v) || v.at_least(Fork::Valkey, 9, 0)
}
fn valkey_8_1(v: &ServerVersion) -> bool {
    v.at_least(Fork::Valkey, 8, 1)
}
fn valkey_9_0(v: &ServerVersion) -> bool {
    v.at_least(Fork::Valkey, 9, 0)
}
fn valkey_9_1(v: &ServerVersion) -> bool {
    v.at_least(Fork::Valkey, 9, 1)
}

pub const TABLE: &[Row] = &[
    Row {
        name: "HSETEX with a field TTL",
        on: hash_ex,
        round: |n| {
            vec![format!(
                "HSETEX nc:hsetex PX 600000 FIELDS 2 a{} x{n} b y",
                n % 7
            )]
        },
    },
    Row {
        name: "HSETEX without TTL, and FNX",
        on: hash_ex,
        round: |n| {
            vec![
                format!("HSETEX nc:hsetex:plain FIELDS 1 f{} {n}", n % 5),
                format!("HSETEX nc:hsetex:fnx FNX EX 700 FIELDS 1 f{n} v"),
            ]
        },
    },
    Row {
        name: "HSETEX KEEPTTL",
        on: hash_ex,
        round: |n| {
            vec![format!(
                "HSETEX nc:hsetex KEEPTTL FIELDS 2 a{} kept{n} c{n} new",
                n % 7
            )]
        },
    },
    Row {
        name: "HGETEX PX and PERSIST",
        on: hash_ex,
        round: |n| {
            vec![
                format!("HGETEX nc:hsetex PX 550000 FIELDS 1 a{}", (n + 3) % 7),
                "HGETEX nc:hsetex PERSIST FIELDS 1 b".to_string(),
            ]
        },
    },
    Row {
        name: "HGETDEL",
        on: hash_ex,
        round: |n| {
            vec![
                format!("HSET nc:hgetdel f{n} v{n} g{n} w"),
                format!("HGETDEL nc:hgetdel FIELDS 2 f{n} nope"),
            ]
        },
    },
    Row {
        name: "HSETEX and HGETDEL inside MULTI",
        on: hash_ex,
        round: |n| {
            vec![
                "MULTI".to_string(),
                format!("HSETEX nc:tx PX 600000 FIELDS 2 f{n} v g{n} w"),
                format!("HGETDEL nc:tx FIELDS 1 g{n}"),
                format!("SET nc:tx:n {n}"),
                "EXEC".to_string(),
            ]
        },
    },
    Row {
        name: "XDELEX and XACKDEL with KEEPREF, DELREF, ACKED",
        on: redis_8_2,
        round: |n| {
            let (a, b, c) = (3 * n + 1, 3 * n + 2, 3 * n + 3);
            let mut out = vec![
                format!("XADD nc:xs {a}-1 f {n}"),
                format!("XADD nc:xs {b}-1 f {n}"),
                format!("XADD nc:xs {c}-1 f {n}"),
                "XREADGROUP GROUP g1 alice COUNT 2 STREAMS nc:xs >".to_string(),
                format!("XDELEX nc:xs ACKED IDS 2 {a}-1 {}-1", a.saturating_sub(3)),
                format!("XACKDEL nc:xs g1 DELREF IDS 1 {a}-1"),
                format!("XDELEX nc:xs KEEPREF IDS 1 {b}-1"),
            ];
            if n % 2 == 0 {
                out.push("XREADGROUP GROUP g2 bob COUNT 3 STREAMS nc:xs >".to_string());
                out.push(format!("XACKDEL nc:xs g2 ACKED IDS 2 {b}-1 {c}-1"));
            } else {
                out.push(format!("XDELEX nc:xs DELREF IDS 1 {c}-1"));
            }
            out
        },
    },
    Row {
        name: "XADD and XTRIM with KEEPREF, DELREF, ACKED",
        on: redis_8_2,
        round: |n| {
            let policy = ["KEEPREF", "DELREF", "ACKED"][n as usize % 3];
            vec![
                format!("XADD nc:xt {policy} MAXLEN 6 {}-1 f {n}", n + 1),
                "XREADGROUP GROUP g1 alice COUNT 1 STREAMS nc:xt >".to_string(),
                format!("XACK nc:xt g1 {}-1", n / 2 + 1),
                format!(
                    "XTRIM nc:xt MAXLEN 4 {}",
                    ["ACKED", "DELREF"][n as usize % 2]
                ),
                format!("XTRIM nc:xt MINID {}-1 ACKED", n.saturating_sub(2)),
            ]
        },
    },
    Row {
        name: "BITOP DIFF, DIFF1, ANDOR, ONE",
        on: redis_8_2,
        round: |n| {
            vec![
                format!("SET nc:b1 {n}abc{}", "z".repeat(n as usize % 4)),
                format!("SET nc:b2 xy{n}"),
                "BITOP DIFF nc:bdiff nc:b1 nc:b2".to_string(),
                "BITOP DIFF1 nc:bdiff1 nc:b1 nc:b2 nc:missing".to_string(),
                "BITOP ANDOR nc:bandor nc:b1 nc:b2".to_string(),
                "BITOP ONE nc:bone nc:b1 nc:b2 nc:bdiff".to_string(),
            ]
        },
    },
    Row {
        name: "SET IFEQ",
        on: valkey_8_1,
        round: |n| {
            vec![
                format!("SET nc:cas v{n}"),
                format!("SET nc:cas w{n} IFEQ v{n}"),
                format!("SET nc:cas x{n} IFEQ nomatch"),
            ]
        },
    },
    Row {
        name: "DELIFEQ",
        on: valkey_9_0,
        round: |n| {
            vec![
                format!("SET nc:delifeq:{} v", n % 4),
                format!("DELIFEQ nc:delifeq:{} v", (n + 2) % 4),
            ]
        },
    },
    Row {
        name: "MSETEX",
        on: valkey_9_1,
        round: |n| {
            vec![
                format!("MSETEX 2 nc:m1 {n} nc:m2 {n} PX 600000"),
                format!("MSETEX 1 nc:m1 kept{n} KEEPTTL"),
                format!("MSETEX 1 nc:m3 {n} XX EX 650"),
                "MSETEX 1 nc:m3 first NX".to_string(),
            ]
        },
    },
];

/// What the table needs before the first round: the consumer groups of its streams.
pub fn setup(c: &mut redis::Connection, version: &str) {
    let v = server_version(version);
    if redis_8_2(&v) {
        for (key, group) in [("nc:xs", "g1"), ("nc:xs", "g2"), ("nc:xt", "g1")] {
            run(c, &["XGROUP", "CREATE", key, group, "0", "MKSTREAM"]);
        }
    }
}

/// The rows `version` has, by name.
pub fn rows_of(version: &str) -> Vec<&'static str> {
    let v = server_version(version);
    TABLE
        .iter()
        .filter(|r| (r.on)(&v))
        .map(|r| r.name)
        .collect()
}

/// Sends round `n` of every row the source has. Errors are the test's own bugs: they panic.
pub fn round(c: &mut redis::Connection, version: &str, n: u64) {
    let v = server_version(version);
    for row in TABLE.iter().filter(|r| (r.on)(&v)) {
        for line in (row.round)(n) {
            let args: Vec<&str> = line.split_whitespace().collect();
            let mut cmd = redis::cmd(args[0]);
            for a in &args[1..] {
                cmd.arg(*a);
            }
            if let Err(e) = cmd.query::<redis::Value>(c) {
                panic!("{} on {version}: `{line}`: {e}", row.name);
            }
        }
    }
}
