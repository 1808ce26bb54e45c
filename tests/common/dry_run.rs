//! A dataset of known contents for dry runs (tests/engine/dry_run.rs, tests/api/dry_run.rs, the
//! CLI test), and what "the dry run wrote nothing" means on the target.

use ferry::model::dry_run::{CannotTakeReason, DryRunReport};

use crate::common::redis::RedisServer;

/// The source: Redis 7.4 (field TTLs), 4 databases, no RDB compression (so serialized sizes are
/// the values' own), diskless without delay.
pub fn source() -> RedisServer {
    RedisServer::start_with(
        "7.4",
        &[
            "--databases",
            "4",
            "--rdbcompression",
            "no",
            "--repl-diskless-sync-delay",
            "0",
            "--enable-debug-command",
            "yes",
        ],
    )
}

/// The target: Redis 7.2 (no field TTLs) whose `proto-max-bulk-len` is the smallest allowed,
/// 1 MB, and which already holds a few keys of its own.
pub fn target() -> RedisServer {
    let target = RedisServer::start_with("7.2", &["--proto-max-bulk-len", "1mb"]);
    let mut c = target.conn();
    let _: () = redis::cmd("SET")
        .arg("own:1")
        .arg("kept")
        .query(&mut c)
        .unwrap();
    let _: () = redis::cmd("SELECT").arg(3).query(&mut c).unwrap();
    let _: () = redis::cmd("HSET")
        .arg("own:2")
        .arg(&["f", "v"])
        .query(&mut c)
        .unwrap();
    target
}

/// Incompressible text of `len` bytes (a linear congruential sequence over letters and digits).
fn text(len: usize, seed: u64) -> String {
    const ALPHABET: &[u8] = b"abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789";
    let mut x = seed.wrapping_mul(6364136223846793005).wrapping_add(1);
    (0..len)
        .map(|_| {
            x = x
                .wrapping_mul(6364136223846793005)
                .wrapping_add(1442695040888963407);
            ALPHABET[(x >> 33) as usize % ALPHABET.len()] as char
        })
        .collect()
}

/// The size of the big string: over the target's 1 MB `proto-max-bulk-len`, under the engine's
/// big-key threshold (so it would go as one RESTORE).
pub const BIG: usize = 2 * 1024 * 1024;

/// Fills the source: db 0 five strings of 1000..5000 bytes, the 2 MB string `big:str`, a list and
/// a hash with field TTLs (`hash:fttl`); db 1 a hash, a set and a sorted set; db 2 a stream; db 3
/// two keys whose expiry has passed (active expiry off, so they stay in the snapshot). Returns
/// nothing: [`assert_report`] knows the contents.
pub fn populate(source: &RedisServer) {
    let mut c = source.conn();
    let _: () = redis::cmd("DEBUG")
        .arg("SET-ACTIVE-EXPIRE")
        .arg(0)
        .query(&mut c)
        .unwrap();
    for i in 1..=5u64 {
        let _: () = redis::cmd("SET")
            .arg(format!("s:{i}"))
            .arg(text(1000 * i as usize, i))
            .query(&mut c)
            .unwrap();
    }
    let _: () = redis::cmd("SET")
        .arg("big:str")
        .arg(text(BIG, 99))
        .query(&mut c)
        .unwrap();
    let _: () = redis::cmd("RPUSH")
        .arg("l:1")
        .arg(&["a", "b", "c"])
        .query(&mut c)
        .unwrap();
    crate::common::data::hash_with_field_ttls(source);
    let _: () = redis::cmd("SELECT").arg(1).query(&mut c).unwrap();
    let _: () = redis::cmd("HSET")
        .arg("h:1")
        .arg(&["f", "v"])
        .query(&mut c)
        .unwrap();
    let _: () = redis::cmd("SADD")
        .arg("st:1")
        .arg(&["a", "b"])
        .query(&mut c)
        .unwrap();
    let _: () = redis::cmd("ZADD")
        .arg("z:1")
        .arg(&["1", "a"])
        .query(&mut c)
        .unwrap();
    let _: () = redis::cmd("SELECT").arg(2).query(&mut c).unwrap();
    let _: String = redis::cmd("XADD")
        .arg("x:1")
        .arg("*")
        .arg(&["f", "v"])
        .query(&mut c)
        .unwrap();
    // An expiry already past when set deletes the key at once: these get 50 ms, and nothing
    // touches them afterwards (a read, or a SCAN, would expire them lazily). Validation samples
    // hashes for field TTLs with SCAN, but only in databases whose `INFO keyspace` counts
    // field expiries: db 3 holds none.
    let _: () = redis::cmd("SELECT").arg(3).query(&mut c).unwrap();
    for key in ["gone:1", "gone:2"] {
        let _: () = redis::cmd("SET")
            .arg(key)
            .arg("x")
            .arg("PX")
            .arg(50)
            .query(&mut c)
            .unwrap();
    }
    std::thread::sleep(std::time::Duration::from_millis(200));
}

/// The report of a dry run over [`populate`]'s data into [`target`].
pub fn assert_report(report: &DryRunReport) {
    let cells: Vec<(u32, &str, u64)> = report
        .databases
        .iter()
        .map(|c| (c.db, c.type_name.as_str(), c.keys))
        .collect();
    assert_eq!(
        cells,
        [
            (0, "hash", 1),
            (0, "list", 1),
            (0, "string", 6),
            (1, "hash", 1),
            (1, "set", 1),
            (1, "zset", 1),
            (2, "stream", 1),
        ]
    );
    assert_eq!(report.keys, 12);
    assert_eq!(report.keys_expired, 2);
    // Serialized sizes: no compression, so a string is its length prefix, its bytes and its name.
    let string_cell = report
        .databases
        .iter()
        .find(|c| c.db == 0 && c.type_name == "string")
        .unwrap();
    assert_eq!(
        string_cell.bytes,
        (BIG + 5 + "big:str".len()) as u64 + (1..=5u64).map(|i| 1000 * i + 2 + 3).sum::<u64>()
    );
    let top: Vec<&str> = report.biggest_keys.iter().map(|k| k.key.as_str()).collect();
    assert_eq!(top[..6], ["big:str", "s:5", "s:4", "s:3", "s:2", "s:1"]);
    assert_eq!(report.biggest_keys.len(), 12);
    assert_eq!(report.biggest_keys[0].bytes, (BIG + 5 + 7) as u64);
    let cannot: Vec<(CannotTakeReason, u64, Vec<&str>)> = report
        .cannot_take
        .iter()
        .map(|c| {
            (
                c.reason,
                c.count,
                c.examples.iter().map(|k| k.key.as_str()).collect(),
            )
        })
        .collect();
    assert_eq!(
        cannot,
        [
            (CannotTakeReason::FieldTtls, 1, vec!["hash:fttl"]),
            (CannotTakeReason::OverProtoMaxBulkLen, 1, vec!["big:str"]),
        ]
    );
    assert!(
        report.cannot_take[1].detail.contains("1048576"),
        "{report:?}"
    );
    assert!(report.eta.seconds >= 1, "{:?}", report.eta);
    assert!(report.eta.read_bytes_per_sec > 0);
    assert!(report.memory.needed_bytes > BIG as u64);
    assert_eq!(report.memory.target_maxmemory, Some(0));
    assert_eq!(report.memory.fits, None);
    assert!(report.memory.source_dataset_bytes.unwrap() > BIG as u64);
}

/// What a dry run may not change on the target: every key and value (DUMP, TTL or not), `INFO
/// keyspace`, the count of changes since the last save (`rdb_changes_since_last_save`, which
/// every write moves), the keys expired and evicted, and the `ferry:` keys.
#[derive(Debug, PartialEq)]
pub struct TargetState {
    pub contents: Vec<String>,
    pub keyspace: String,
    pub ferry_keys: Vec<String>,
    pub changes: u64,
    /// `INFO stats`: keys expired and evicted (a write could make either move).
    pub expired_evicted: (u64, u64),
}

pub fn target_state(target: &RedisServer) -> TargetState {
    let mut c = target.conn();
    let keyspace: String = redis::cmd("INFO").arg("keyspace").query(&mut c).unwrap();
    let persistence: String = redis::cmd("INFO").arg("persistence").query(&mut c).unwrap();
    let changes = persistence
        .lines()
        .find_map(|l| l.strip_prefix("rdb_changes_since_last_save:"))
        .unwrap()
        .trim()
        .parse()
        .unwrap();
    let stats: String = redis::cmd("INFO").arg("stats").query(&mut c).unwrap();
    let stat = |name: &str| -> u64 {
        stats
            .lines()
            .find_map(|l| l.strip_prefix(&format!("{name}:")))
            .unwrap()
            .trim()
            .parse()
            .unwrap()
    };
    let expired_evicted = (stat("expired_keys"), stat("evicted_keys"));
    let mut ferry_keys = Vec::new();
    for db in 0..16 {
        let _: () = redis::cmd("SELECT").arg(db).query(&mut c).unwrap();
        let keys: Vec<String> = redis::cmd("KEYS").arg("ferry:*").query(&mut c).unwrap();
        ferry_keys.extend(keys.into_iter().map(|k| format!("{db}/{k}")));
    }
    TargetState {
        contents: crate::common::data::exact_contents(target),
        keyspace: keyspace
            .lines()
            .filter(|l| l.starts_with("db"))
            .collect::<Vec<_>>()
            .join("\n"),
        ferry_keys,
        changes,
        expired_evicted,
    }
}
