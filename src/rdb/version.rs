//! Which RDB version each server writes and accepts, and which value types each version knows.
//!
//! A target accepts a DUMP payload only if the payload's RDB version is not above its own, and it can
//! decode the value only if it knows the type byte. So a payload from a newer source can be relabelled
//! with the target's (older) version exactly when its type byte already existed in that version;
//! otherwise the value must be rewritten as plain commands.

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

    #[test]
    fn versions_of_the_servers_we_test() {
        assert_eq!(rdb_version_for_version_string("6.2.5"), Some(9));
        assert_eq!(rdb_version_for_version_string("7.0.15"), Some(10));
        assert_eq!(rdb_version_for_version_string("7.2.4"), Some(11));
        assert_eq!(rdb_version_for_version_string("7.4.1"), Some(12));
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
