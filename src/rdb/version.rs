//! Which server writes and accepts which RDB version, and which value types each version knows.
//!
//! A target accepts a DUMP payload only if the payload's RDB version is one it accepts, and it can
//! decode the value only if it knows the type byte. So a payload from a newer source can be
//! relabelled with a version the target accepts exactly when its type byte already existed there;
//! otherwise the value must be rewritten as plain commands.
//!
//! Two forks write RDB files since 2024, and they split after RDB 11 (Redis 7.2, Valkey 7.2–8.1):
//! Redis went on with 12 (7.4–8.4), 13 (8.6) and 14 (8.8); Valkey 9 jumped to 80 behind its own
//! magic (`VALKEY080`), treats 12–79 as foreign, and gave type 22 and opcode 243 meanings of its
//! own. A type byte therefore means something only together with the fork and the version of
//! the file it comes from ([`type_in_file`]), and a server is known only by both
//! ([`ServerVersion`]): Valkey's `INFO` still says `redis_version:7.2.4`.

use std::fmt;

/// The family a server or a file belongs to.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Fork {
    Redis,
    Valkey,
}

impl fmt::Display for Fork {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Fork::Redis => "Redis",
            Fork::Valkey => "Valkey",
        })
    }
}

/// A server release: which fork, which version. Ordered by fork, then version.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct ServerVersion {
    pub fork: Fork,
    pub major: u32,
    pub minor: u32,
    pub patch: u32,
}

impl fmt::Display for ServerVersion {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{} {}.{}.{}",
            self.fork, self.major, self.minor, self.patch
        )
    }
}

/// `major.minor[.patch]` of a version string (`7.2.4`, `9.1.2`); extra parts are ignored.
fn parse_triple(text: &str) -> Option<(u32, u32, u32)> {
    let mut parts = text.trim().split('.');
    let major = parts.next()?.parse().ok()?;
    let minor = parts.next().unwrap_or("0").parse().ok()?;
    let patch = parts
        .next()
        .and_then(|p| p.split(|c: char| !c.is_ascii_digit()).next()?.parse().ok())
        .unwrap_or(0);
    Some((major, minor, patch))
}

impl ServerVersion {
    pub fn new(fork: Fork, major: u32, minor: u32, patch: u32) -> Self {
        ServerVersion {
            fork,
            major,
            minor,
            patch,
        }
    }

    /// A Redis release from its `redis_version` string.
    pub fn redis(version: &str) -> Option<Self> {
        let (major, minor, patch) = parse_triple(version)?;
        Some(Self::new(Fork::Redis, major, minor, patch))
    }

    /// The server behind an `INFO server` reply, given its fields.
    ///
    /// Valkey 8+ reports `valkey_version` beside a frozen `redis_version:7.2.4`; Valkey 7.2 has
    /// only `server_name:valkey` and its real version in `redis_version`. Anything else is Redis.
    pub fn from_info<'a>(field: impl Fn(&str) -> Option<&'a str>) -> Option<Self> {
        if let Some((major, minor, patch)) = field("valkey_version").and_then(parse_triple) {
            return Some(Self::new(Fork::Valkey, major, minor, patch));
        }
        let (major, minor, patch) = parse_triple(field("redis_version")?)?;
        let fork = match field("server_name") {
            Some(name) if name.trim().eq_ignore_ascii_case("valkey") => Fork::Valkey,
            _ => Fork::Redis,
        };
        Some(Self::new(fork, major, minor, patch))
    }

    /// Whether this is `fork` at `major.minor` or later.
    pub fn at_least(&self, fork: Fork, major: u32, minor: u32) -> bool {
        self.fork == fork && (self.major, self.minor) >= (major, minor)
    }

    /// The RDB version this server writes, which is also the highest it reads.
    pub fn rdb_version(&self) -> u16 {
        match self.fork {
            Fork::Redis => rdb_version_for_redis(self.major, self.minor),
            // Valkey forked from Redis 7.2 and kept RDB 11 through 8.1; 9.0 and 9.1 write 80.
            Fork::Valkey if self.major < 9 => 11,
            Fork::Valkey if self.major == 9 && self.minor < 2 => VALKEY_FIRST_RDB,
            Fork::Valkey => VALKEY_FIRST_RDB + 1,
        }
    }

    /// Hash fields with their own TTL (`HPEXPIREAT`, …): Redis 7.4+, Valkey 9.0+.
    pub fn has_field_ttls(&self) -> bool {
        self.at_least(Fork::Redis, 7, 4) || self.at_least(Fork::Valkey, 9, 0)
    }

    /// Function libraries (`FUNCTION LOAD`): Redis 7.0+, every Valkey.
    pub fn has_functions(&self) -> bool {
        self.at_least(Fork::Redis, 7, 0) || self.fork == Fork::Valkey
    }
}

/// The RDB version a Redis server of `major.minor` writes (and the highest it accepts).
///
/// Valkey 7.2–8.1 report themselves as Redis 7.2 (`redis_version:7.2.4`) and write RDB 11.
pub fn rdb_version_for_redis(major: u32, minor: u32) -> u16 {
    match (major, minor) {
        (0..=2, _) => 6,
        (3, 0..=1) => 6,
        (3, _) => 7,
        (4, _) => 8,
        (5, _) | (6, _) => 9,
        (7, 0..=1) => 10,
        (7, 2..=3) => 11,
        (7, _) | (8, 0..=4) => 12,
        (8, 5..=7) => 13,
        _ => 14,
    }
}

/// Parses `redis_version` (e.g. `7.2.4`) and returns its RDB version, or `None` if unparseable.
pub fn rdb_version_for_version_string(version: &str) -> Option<u16> {
    let mut parts = version.trim().split('.');
    let major = parts.next()?.parse().ok()?;
    let minor = parts.next().unwrap_or("0").parse().ok()?;
    Some(rdb_version_for_redis(major, minor))
}

/// The first RDB version that knows object type `type_byte`, or `None` for an unknown type.
pub fn type_introduced_in(type_byte: u8) -> Option<u16> {
    Some(match type_byte {
        0..=4 => 1,
        9..=12 => 2,
        13 => 4,
        14 => 7,
        5 | 7 => 8,
        15 => 9,
        16..=19 => 10,
        20 | 21 => 11,
        24 | 25 => 12,
        26 => 13,
        27 | 28 => 14,
        _ => return None,
    })
}

/// The first RDB version of Valkey's own numbering (Valkey 9.0); 12–79 are "foreign" to Valkey.
pub const VALKEY_FIRST_RDB: u16 = 80;

/// Why a type byte cannot be read from a file of `fork` and RDB `rdb`, or `Ok` when it can.
///
/// The same byte means different things per fork (22 is Valkey's hash with field TTLs, and was
/// only a release candidate's in Redis), and a byte newer than the file's version cannot be in a
/// file a server wrote. Types this build knows of but does not read are refused by name, so
/// that the error says what would be needed instead of guessing a layout.
pub fn type_in_file(type_byte: u8, fork: Fork, rdb: u16) -> Result<(), &'static str> {
    match (fork, type_byte) {
        (_, 6) => Err("a module value of a Redis 4.0 release candidate, which no GA server loads"),
        (Fork::Valkey, 22) => Ok(()),
        (Fork::Valkey, 23) => Err("a Valkey 9.2 path hash (type 23), which this build does not read yet"),
        (Fork::Valkey, t) if type_introduced_in(t).is_some_and(|v| v <= 11) => Ok(()),
        (Fork::Valkey, _) => Err("not a Valkey value type"),
        (Fork::Redis, 22 | 23) => Err(
            "a hash with field TTLs of a Redis 7.4 release candidate, which no GA server loads",
        ),
        (Fork::Redis, 26) => Err(
            "a Redis 8.6 stream with idempotent-producer (IDMP) state (type 26), which this build does not read yet",
        ),
        (Fork::Redis, 27) => Err(
            "a Redis 8.8 stream with a consumer-group NACK zone (type 27), which this build does not read yet",
        ),
        (Fork::Redis, 28) => Err("a Redis 8.8 type 28 value, which this build does not read yet"),
        (Fork::Redis, t) => match type_introduced_in(t) {
            Some(v) if v <= rdb => Ok(()),
            Some(_) => Err("a type newer than the file's RDB version, so the file is damaged"),
            None => Err("not a Redis value type"),
        },
    }
}

/// Whether a payload of `type_byte` can be relabelled for a target that speaks `target_rdb`.
///
/// Valkey 9+ (`target_rdb` ≥ 80) continues Redis' RDB 11 type set with its own additions (22 =
/// hash with field TTLs, 23 at 81); it does not know Redis 7.4+'s types 24 and up.
pub fn target_understands(type_byte: u8, target_rdb: u16) -> bool {
    if target_rdb >= VALKEY_FIRST_RDB {
        return match type_byte {
            22 => true,
            23 => target_rdb >= 81,
            t => type_introduced_in(t).is_some_and(|v| v <= 11),
        };
    }
    type_introduced_in(type_byte).is_some_and(|v| v <= target_rdb)
}

/// The version to stamp into a DUMP payload from a `source_rdb` file for a `target_rdb` server
/// (check [`target_understands`] for the type first).
///
/// Redis accepts any version up to its own. Valkey (strict mode, the default) accepts up to 11
/// and its own 80+, but refuses the Redis-only 12–79, so a Redis 7.4+ payload is stamped 11.
pub fn payload_version(source_rdb: u16, target_rdb: u16) -> u16 {
    let version = source_rdb.min(target_rdb);
    if target_rdb >= VALKEY_FIRST_RDB && (12..VALKEY_FIRST_RDB).contains(&version) {
        11
    } else {
        version
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn info<'a>(pairs: &'a [(&'a str, &'a str)]) -> impl Fn(&str) -> Option<&'a str> + 'a {
        move |name| pairs.iter().find(|(k, _)| *k == name).map(|(_, v)| *v)
    }

    #[test]
    fn the_fork_and_version_come_from_info_not_from_redis_version_alone() {
        let valkey = ServerVersion::from_info(info(&[
            ("redis_version", "7.2.4"),
            ("server_name", "valkey"),
            ("valkey_version", "9.1.2"),
        ]))
        .unwrap();
        assert_eq!(valkey, ServerVersion::new(Fork::Valkey, 9, 1, 2));
        assert_eq!(valkey.to_string(), "Valkey 9.1.2");
        assert_eq!(valkey.rdb_version(), 80);
        assert!(valkey.has_field_ttls() && valkey.has_functions());
        let old_valkey = ServerVersion::from_info(info(&[
            ("redis_version", "7.2.5"),
            ("server_name", "valkey"),
        ]))
        .unwrap();
        assert_eq!(old_valkey.fork, Fork::Valkey);
        assert_eq!(old_valkey.rdb_version(), 11);
        assert!(!old_valkey.has_field_ttls());
        let redis = ServerVersion::from_info(info(&[("redis_version", "8.2.3")])).unwrap();
        assert_eq!(redis, ServerVersion::new(Fork::Redis, 8, 2, 3));
        assert_eq!(redis.rdb_version(), 12);
        assert!(redis.has_field_ttls());
        assert!(!ServerVersion::redis("7.2.4").unwrap().has_field_ttls());
        assert!(!ServerVersion::redis("6.2.5").unwrap().has_functions());
        assert_eq!(ServerVersion::from_info(info(&[])), None);
        assert_eq!(
            ServerVersion::from_info(info(&[("valkey_version", "8.1.0")]))
                .unwrap()
                .rdb_version(),
            11
        );
    }

    #[test]
    fn type_numbers_are_read_per_fork_and_version() {
        assert_eq!(type_in_file(22, Fork::Valkey, 80), Ok(()));
        assert!(
            type_in_file(22, Fork::Redis, 12).is_err(),
            "Redis' 22 was a release candidate's"
        );
        assert!(
            type_in_file(24, Fork::Valkey, 80).is_err(),
            "24 is Redis-only"
        );
        assert_eq!(type_in_file(24, Fork::Redis, 12), Ok(()));
        assert!(
            type_in_file(24, Fork::Redis, 11).is_err(),
            "24 arrived with RDB 12"
        );
        assert_eq!(type_in_file(21, Fork::Valkey, 80), Ok(()));
        for t in [26, 27, 28] {
            let why = type_in_file(t, Fork::Redis, 14).unwrap_err();
            assert!(why.contains("does not read yet"), "{t}: {why}");
        }
        assert!(type_in_file(6, Fork::Redis, 9).is_err());
        assert!(type_in_file(8, Fork::Redis, 12).is_err());
    }

    #[test]
    fn versions_of_the_servers_we_test() {
        assert_eq!(rdb_version_for_version_string("6.2.5"), Some(9));
        assert_eq!(rdb_version_for_version_string("7.0.15"), Some(10));
        assert_eq!(rdb_version_for_version_string("7.2.4"), Some(11));
        assert_eq!(rdb_version_for_version_string("7.4.1"), Some(12));
        assert_eq!(rdb_version_for_version_string("8.2.3"), Some(12));
        assert_eq!(rdb_version_for_version_string("x"), None);
    }

    #[test]
    fn valkey_targets_get_their_own_rules() {
        assert!(target_understands(21, 80));
        assert!(target_understands(22, 80));
        assert!(
            !target_understands(24, 80),
            "Redis 7.4 field-TTL hashes are foreign to Valkey"
        );
        assert!(
            !target_understands(22, 12),
            "type 22 was only a Redis release candidate"
        );
        assert_eq!(payload_version(12, 80), 11);
        assert_eq!(payload_version(11, 80), 11);
        assert_eq!(payload_version(80, 80), 80);
        assert_eq!(payload_version(12, 11), 11);
        assert_eq!(payload_version(9, 12), 9);
    }

    #[test]
    fn listpack_hashes_need_rdb_10() {
        assert!(!target_understands(16, 9));
        assert!(target_understands(16, 10));
        assert!(target_understands(0, 9));
        assert!(!target_understands(25, 11));
        assert!(!target_understands(200, 12));
    }
}
