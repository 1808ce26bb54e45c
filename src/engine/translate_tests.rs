//! The rewrite rules on the command level, for every new command against every kind of target.
//! Redis 8.4's commands (DELEX, MSETEX, SET IFEQ…) have no server in the suite (8.2.3 is the
//! newest Redis it runs), so they are proven here; the live matrix feeds the rest through real
//! servers.

use bytes::Bytes;

use super::translate::{translate, Out, TargetProfile};
use crate::rdb::version::{Fork, ServerVersion};

const NOW: i64 = 1_800_000_000_000;

fn redis(major: u32, minor: u32) -> TargetProfile {
    TargetProfile {
        server: ServerVersion::new(Fork::Redis, major, minor, 0),
        drop_field_ttls: false,
    }
}

fn valkey(major: u32, minor: u32) -> TargetProfile {
    TargetProfile {
        server: ServerVersion::new(Fork::Valkey, major, minor, 0),
        drop_field_ttls: false,
    }
}

fn dropping(mut t: TargetProfile) -> TargetProfile {
    t.drop_field_ttls = true;
    t
}

fn args(line: &str) -> Vec<Bytes> {
    line.split(' ')
        .map(|a| Bytes::from(a.to_string()))
        .collect()
}

fn text(out: &Out) -> String {
    match &out.label {
        Some((what, key)) => format!("<{what} {}>", String::from_utf8_lossy(key)),
        None => out
            .args
            .iter()
            .map(|a| String::from_utf8_lossy(a).into_owned())
            .collect::<Vec<_>>()
            .join(" "),
    }
}

/// The rewrite as lines, `None` when the command goes as it came.
fn rewrite(line: &str, target: &TargetProfile) -> Option<Vec<String>> {
    translate(&args(line), target, NOW)
        .unwrap_or_else(|e| panic!("{line}: {e}"))
        .map(|outs| outs.iter().map(text).collect())
}

fn refused(line: &str, target: &TargetProfile) -> String {
    translate(&args(line), target, NOW)
        .expect_err(line)
        .to_string()
}

#[test]
fn hsetex_becomes_hset_and_a_field_expiry_where_hsetex_is_missing() {
    let line = "hsetex h PXAT 1800000100000 FIELDS 2 a 1 b 2";
    for same in [redis(8, 2), redis(8, 4), valkey(9, 1)] {
        assert_eq!(rewrite(line, &same), None, "{same:?} has HSETEX");
    }
    assert_eq!(
        rewrite(line, &redis(7, 4)).unwrap(),
        ["HSET h a 1 b 2", "HPEXPIREAT h 1800000100000 FIELDS 2 a b"]
    );
    // Field conditions held on the source; other expiry forms map to their own command.
    assert_eq!(
        rewrite("HSETEX h FNX EX 60 FIELDS 1 a 1", &redis(7, 4)).unwrap(),
        ["HSET h a 1", "HEXPIRE h 60 FIELDS 1 a"]
    );
    assert_eq!(
        rewrite("hsetex h FIELDS 1 a 1", &redis(6, 2)).unwrap(),
        ["HSET h a 1"]
    );
    // KEEPTTL: HSET would clear the TTLs on 7.4; a target without field TTLs has none to keep.
    assert_eq!(
        rewrite("hsetex h KEEPTTL FIELDS 1 a 2", &redis(7, 4)).unwrap(),
        ["<HSETEX KEEPTTL h>"]
    );
    assert_eq!(
        rewrite("hsetex h KEEPTTL FIELDS 1 a 2", &redis(7, 2)).unwrap(),
        ["HSET h a 2"]
    );
    // Valkey's key conditions are unknown to Redis' HSETEX.
    assert_eq!(
        rewrite("hsetex h NX FXX PX 10 FIELDS 1 a 1", &redis(8, 2)).unwrap(),
        ["hsetex h FXX PX 10 FIELDS 1 a 1"]
    );
    assert_eq!(
        rewrite("hsetex h NX PX 10 FIELDS 1 a 1", &valkey(9, 0)),
        None
    );
}

#[test]
fn field_ttls_into_a_target_without_them_stop_the_migration_unless_dropped() {
    for target in [redis(7, 2), redis(6, 2), valkey(8, 1)] {
        let why = refused("hsetex h PXAT 1800000100000 FIELDS 1 a 1", &target);
        assert!(
            why.contains("HSETEX on key `h`") && why.contains("drop_field_ttls"),
            "{why}"
        );
        let why = refused("HPEXPIREAT h 1800000100000 FIELDS 1 a", &target);
        assert!(why.contains("HPEXPIREAT on key `h`"), "{why}");
        let target = dropping(target);
        assert_eq!(
            rewrite("hsetex h PXAT 1800000100000 FIELDS 1 a 1", &target).unwrap(),
            ["HSET h a 1"]
        );
        // A time still ahead changes nothing the target can hold; one already past deleted the
        // field on the source, and must here too.
        assert_eq!(
            rewrite("HPEXPIREAT h 1800000100000 FIELDS 1 a", &target).unwrap(),
            Vec::<String>::new()
        );
        assert_eq!(
            rewrite("HPEXPIREAT h 1 FIELDS 2 a b", &target).unwrap(),
            ["HDEL h a b"]
        );
        assert_eq!(
            rewrite("HPERSIST h FIELDS 1 a", &target).unwrap(),
            Vec::<String>::new()
        );
        assert_eq!(
            rewrite("HEXPIRE h 0 FIELDS 1 a", &target).unwrap(),
            ["HDEL h a"]
        );
    }
    assert_eq!(
        rewrite("HPEXPIREAT h 1 FIELDS 1 a", &redis(7, 4)),
        None,
        "7.4 has field TTLs"
    );
}

#[test]
fn hgetdel_and_hgetex_become_the_writes_they_made() {
    assert_eq!(
        rewrite("hgetdel h FIELDS 2 a b", &redis(7, 4)).unwrap(),
        ["HDEL h a b"]
    );
    assert_eq!(rewrite("hgetdel h FIELDS 1 a", &redis(8, 2)), None);
    assert_eq!(
        rewrite("HGETEX h PERSIST FIELDS 1 a", &redis(7, 4)).unwrap(),
        ["HPERSIST h FIELDS 1 a"]
    );
    assert_eq!(
        rewrite("HGETEX h PXAT 5 FIELDS 1 a", &redis(7, 4)).unwrap(),
        ["HPEXPIREAT h 5 FIELDS 1 a"]
    );
    assert_eq!(
        rewrite("HGETEX h PXAT 5 FIELDS 1 a", &dropping(redis(7, 0))).unwrap(),
        ["HDEL h a"]
    );
}

#[test]
fn stream_reference_policies_become_xdel_xack_or_scripts() {
    let keep = "xdelex s KEEPREF IDS 2 1-1 2-1";
    assert_eq!(rewrite(keep, &redis(8, 2)), None);
    for target in [redis(7, 4), redis(6, 2), valkey(9, 1)] {
        assert_eq!(rewrite(keep, &target).unwrap(), ["XDEL s 1-1 2-1"]);
        assert_eq!(
            rewrite("XDELEX s IDS 1 1-1", &target).unwrap(),
            ["XDEL s 1-1"]
        );
        assert_eq!(
            rewrite("xdelex s DELREF IDS 1 1-1", &target).unwrap(),
            ["<XDEL DELREF s>"]
        );
        assert_eq!(
            rewrite("xackdel s g ACKED IDS 1 2-1", &target).unwrap(),
            ["XACK s g 2-1", "<XDEL ACKED s>"]
        );
        assert_eq!(
            rewrite("xackdel s g IDS 1 2-1", &target).unwrap(),
            ["XACK s g 2-1", "XDEL s 2-1"]
        );
        assert_eq!(
            rewrite("xadd s KEEPREF MAXLEN = 1 3-1 f v", &target).unwrap(),
            ["xadd s MAXLEN = 1 3-1 f v"]
        );
        assert_eq!(
            rewrite("xadd s MAXLEN = 14 ACKED 14-0 f v", &target).unwrap(),
            ["xadd s 14-0 f v", "<trim ACKED s>"]
        );
        assert_eq!(
            rewrite("xtrim s MAXLEN 0 DELREF", &target).unwrap(),
            ["<trim DELREF s>"]
        );
        assert_eq!(rewrite("XADD s MAXLEN = 5 * a KEEPREF", &target), None);
    }
    // The trim script gets the strategy, the exact threshold and the policy.
    let out = translate(&args("xtrim s MINID = 5-0 ACKED"), &redis(7, 4), NOW)
        .unwrap()
        .unwrap();
    let tail: Vec<&[u8]> = out[0].args[3..].iter().map(|a| &a[..]).collect();
    assert_eq!(tail, [&b"s"[..], b"MINID", b"5-0", b"ACKED"]);
}

#[test]
fn redis_8_2_bitops_run_as_a_script_elsewhere() {
    assert_eq!(
        rewrite("bitop DIFF d a b", &redis(7, 4)).unwrap(),
        ["<BITOP d>"]
    );
    assert_eq!(rewrite("bitop DIFF d a b", &redis(8, 2)), None);
    assert_eq!(rewrite("bitop AND d a b", &redis(6, 2)), None);
    assert_eq!(
        rewrite("BITOP one d a b c", &valkey(9, 1)).unwrap(),
        ["<BITOP d>"]
    );
}

#[test]
fn redis_8_4_compare_and_set_loses_its_condition_where_missing() {
    // DELEX and DELIFEQ are propagated only when they deleted.
    assert_eq!(rewrite("DELEX k IFEQ v", &redis(8, 2)).unwrap(), ["DEL k"]);
    assert_eq!(rewrite("DELEX k IFDEQ 0123abcd", &redis(8, 4)), None);
    assert_eq!(rewrite("DELEX k", &valkey(9, 1)).unwrap(), ["DEL k"]);
    assert_eq!(rewrite("delifeq k v", &redis(8, 4)).unwrap(), ["DEL k"]);
    assert_eq!(rewrite("delifeq k v", &valkey(9, 0)), None);
    // SET conditions: IFEQ is also Valkey 8.1's; the digest forms are Redis 8.4's only.
    assert_eq!(
        rewrite("set k w IFEQ v", &redis(7, 4)).unwrap(),
        ["set k w"]
    );
    assert_eq!(rewrite("set k w IFEQ v", &valkey(8, 1)), None);
    assert_eq!(
        rewrite("SET k w IFDEQ 00ff PXAT 1800000100000", &valkey(9, 1)).unwrap(),
        ["SET k w PXAT 1800000100000"]
    );
    assert_eq!(
        rewrite("SET k w GET IFNE x KEEPTTL", &redis(6, 2)).unwrap(),
        ["SET k w GET KEEPTTL"]
    );
    assert_eq!(
        rewrite("SET k IFEQ", &redis(6, 2)),
        None,
        "a value named IFEQ"
    );
    assert_eq!(rewrite("SET k w PX 10", &redis(6, 2)), None);
    // MSETEX: one SET per key, the condition held, the expiry kept.
    assert_eq!(
        rewrite("msetex 2 a 1 b 2 XX PXAT 1800000100000", &redis(7, 4)).unwrap(),
        ["SET a 1 PXAT 1800000100000", "SET b 2 PXAT 1800000100000"]
    );
    assert_eq!(
        rewrite("MSETEX 1 a 1 KEEPTTL", &valkey(9, 0)).unwrap(),
        ["SET a 1 KEEPTTL"]
    );
    assert_eq!(rewrite("MSETEX 1 a 1", &redis(6, 2)).unwrap(), ["SET a 1"]);
    assert_eq!(rewrite("MSETEX 1 a 1 EX 5", &valkey(9, 1)), None);
    assert_eq!(rewrite("MSETEX 1 a 1 EX 5", &redis(8, 4)), None);
}

#[test]
fn vector_sets_stop_the_migration_naming_command_and_key() {
    let why = refused("vadd vs VALUES 2 1 2 e1", &redis(7, 4));
    assert!(
        why.contains("VADD on key `vs`") && why.contains("vectorset"),
        "{why}"
    );
    assert!(refused("VREM vs e1", &valkey(9, 1)).contains("VREM on key `vs`"));
    assert_eq!(rewrite("vadd vs VALUES 2 1 2 e1", &redis(8, 2)), None);
}

#[test]
fn malformed_new_commands_are_refused_not_guessed() {
    let why = refused("hsetex h PXAT 5 FIELDS 2 a 1", &redis(7, 4));
    assert!(why.contains("not in a form"), "{why}");
    assert!(refused("xdelex s IDS 3 1-1", &redis(7, 4)).contains("XDELEX"));
    assert!(refused("msetex 2 a 1", &redis(7, 4)).contains("MSETEX"));
}
