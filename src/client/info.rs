//! Parsed `INFO` and `CONFIG GET *` answers: the one reading of a server's self-description that
//! validation, the engine, backups and restores share.
//!
//! `INFO` is text: `# Section` headers and `field:value` lines. Field names are unique across
//! sections, so one flat map is enough. The keyspace section is the exception worth parsing
//! further: `db3:keys=10,expires=2,avg_ttl=0[,subexpiry=1]` tells which databases hold data and,
//! on Redis ≥ 7.4, how many keys carry hash field TTLs.

use std::collections::{BTreeMap, HashMap};

use serde::Serialize;

/// The fields of one `INFO all` answer.
#[derive(Debug, Clone, Default)]
pub struct Info {
    fields: HashMap<String, String>,
    /// Databases that hold keys, by index.
    pub keyspace: BTreeMap<u32, DbStats>,
}

/// One `dbN:` line of the keyspace section.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
pub struct DbStats {
    pub keys: u64,
    pub expires: u64,
    /// Keys with at least one hash field TTL; `None` where the server does not report it (< 7.4).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub subexpiry: Option<u64>,
}

impl Info {
    pub fn parse(text: &str) -> Self {
        let mut info = Info::default();
        for line in text.lines() {
            let line = line.trim();
            if line.is_empty() || line.starts_with('#') {
                continue;
            }
            let Some((name, value)) = line.split_once(':') else {
                continue;
            };
            if let Some(db) = name.strip_prefix("db").and_then(|n| n.parse::<u32>().ok()) {
                info.keyspace.insert(db, DbStats::parse(value));
            } else {
                info.fields.insert(name.to_string(), value.to_string());
            }
        }
        info
    }

    pub fn get(&self, field: &str) -> Option<&str> {
        self.fields.get(field).map(String::as_str)
    }

    /// A numeric field (`used_memory`, `repl_backlog_size`, …).
    pub fn num(&self, field: &str) -> Option<u64> {
        self.get(field)?.trim().parse().ok()
    }

    /// A floating-point field (`instantaneous_input_kbps`).
    pub fn float(&self, field: &str) -> Option<f64> {
        self.get(field)?.trim().parse().ok()
    }

    /// `redis_version`, e.g. `7.2.4` (Valkey reports a compatible one beside its own).
    pub fn version(&self) -> Option<&str> {
        self.get("redis_version")
            .or_else(|| self.get("valkey_version"))
    }

    /// What the dataset takes in memory (`used_memory_dataset`, else `used_memory`): a generous
    /// bound for the size of its RDB, which is compact and often compressed.
    pub fn dataset_bytes(&self) -> Option<u64> {
        self.num("used_memory_dataset")
            .or_else(|| self.num("used_memory"))
    }

    /// The server's fork and version: Valkey's `INFO` keeps `redis_version:7.2.4` and says what it
    /// is in `valkey_version` / `server_name`.
    pub fn server(&self) -> Option<crate::rdb::version::ServerVersion> {
        crate::rdb::version::ServerVersion::from_info(|field| self.get(field))
    }

    /// `(major, minor)` of `redis_version`.
    pub fn version_pair(&self) -> Option<(u32, u32)> {
        let mut parts = self.version()?.split('.');
        let major = parts.next()?.parse().ok()?;
        let minor = parts.next()?.parse().ok()?;
        Some((major, minor))
    }

    pub fn total_keys(&self) -> u64 {
        self.keyspace.values().map(|db| db.keys).sum()
    }
}

impl DbStats {
    fn parse(value: &str) -> Self {
        let mut stats = DbStats::default();
        for pair in value.split(',') {
            let Some((name, number)) = pair.split_once('=') else {
                continue;
            };
            let number = number.trim().parse().ok();
            match name.trim() {
                "keys" => stats.keys = number.unwrap_or(0),
                "expires" => stats.expires = number.unwrap_or(0),
                // Keys with hash field TTLs: Redis 7.4+ and Valkey 9+ name the count differently.
                "subexpiry" | "keys_with_volatile_items" => stats.subexpiry = number,
                _ => {}
            }
        }
        stats
    }
}

/// The answer of `CONFIG GET *`: every parameter and its value.
#[derive(Debug, Clone, Default)]
pub struct Config {
    values: HashMap<String, String>,
}

impl Config {
    /// Builds the map from the flat `[name, value, name, value, …]` reply.
    pub fn from_pairs(flat: Vec<String>) -> Self {
        let mut values = HashMap::with_capacity(flat.len() / 2);
        let mut items = flat.into_iter();
        while let (Some(name), Some(value)) = (items.next(), items.next()) {
            values.insert(name, value);
        }
        Config { values }
    }

    pub fn get(&self, name: &str) -> Option<&str> {
        self.values.get(name).map(String::as_str)
    }

    pub fn num(&self, name: &str) -> Option<u64> {
        self.get(name)?.trim().parse().ok()
    }

    /// Whether the server writes its data to disk (RDB snapshots or an AOF).
    pub fn persists(&self) -> bool {
        self.get("appendonly") == Some("yes")
            || self.get("save").is_some_and(|s| !s.trim().is_empty())
    }

    /// The `replica` (or, on old servers, `slave`) class of `client-output-buffer-limit`.
    pub fn replica_output_limit(&self) -> Option<OutputLimit> {
        let value = self.get("client-output-buffer-limit")?;
        let words: Vec<&str> = value.split_whitespace().collect();
        words.chunks(4).find_map(|class| match class {
            [name, hard, soft, seconds] if *name == "replica" || *name == "slave" => {
                Some(OutputLimit {
                    hard_bytes: parse_memory(hard)?,
                    soft_bytes: parse_memory(soft)?,
                    soft_seconds: seconds.parse().ok()?,
                })
            }
            _ => None,
        })
    }
}

/// `client-output-buffer-limit <class> <hard> <soft> <soft seconds>`: a client is disconnected
/// when its buffer passes `hard`, or stays above `soft` for `soft_seconds`. 0 means no limit.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct OutputLimit {
    pub hard_bytes: u64,
    pub soft_bytes: u64,
    pub soft_seconds: u64,
}

/// Parses a Redis memory value: `268435456`, `64mb`, `1gb`, `512k`.
pub fn parse_memory(text: &str) -> Option<u64> {
    let lower = text.trim().to_ascii_lowercase();
    let digits_end = lower
        .find(|c: char| !c.is_ascii_digit())
        .unwrap_or(lower.len());
    let (number, unit) = lower.split_at(digits_end);
    let number: u64 = number.parse().ok()?;
    let factor: u64 = match unit {
        "" | "b" => 1,
        "k" => 1000,
        "kb" => 1024,
        "m" => 1000 * 1000,
        "mb" => 1024 * 1024,
        "g" => 1000 * 1000 * 1000,
        "gb" => 1024 * 1024 * 1024,
        _ => return None,
    };
    number.checked_mul(factor)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn info_fields_and_keyspace_are_parsed() {
        let info = Info::parse(
            "# Server\r\nredis_version:7.4.1\r\nrun_id:abc\r\n\r\n# Keyspace\r\n\
             db0:keys=3,expires=1,avg_ttl=0,subexpiry=2\r\ndb5:keys=1,expires=0,avg_ttl=0\r\n",
        );
        assert_eq!(info.version(), Some("7.4.1"));
        assert_eq!(info.version_pair(), Some((7, 4)));
        assert_eq!(info.get("run_id"), Some("abc"));
        assert_eq!(info.keyspace[&0].subexpiry, Some(2));
        assert_eq!(info.keyspace[&5].keys, 1);
        assert_eq!(info.keyspace[&5].subexpiry, None);
        assert_eq!(info.total_keys(), 4);
    }

    #[test]
    fn config_pairs_and_output_limits() {
        let config = Config::from_pairs(
            [
                "client-output-buffer-limit",
                "normal 0 0 0 slave 268435456 67108864 60 pubsub 33554432 8388608 60",
                "save",
                "",
                "appendonly",
                "no",
            ]
            .map(String::from)
            .to_vec(),
        );
        assert_eq!(
            config.replica_output_limit(),
            Some(OutputLimit {
                hard_bytes: 268_435_456,
                soft_bytes: 67_108_864,
                soft_seconds: 60
            })
        );
        assert!(!config.persists());
    }

    #[test]
    fn memory_units_follow_redis() {
        assert_eq!(parse_memory("1gb"), Some(1 << 30));
        assert_eq!(parse_memory("64mb"), Some(64 << 20));
        assert_eq!(parse_memory("1k"), Some(1000));
        assert_eq!(parse_memory("12"), Some(12));
        assert_eq!(parse_memory("x"), None);
    }
}
