//! Least privilege: what Ferry's ACL user must be allowed on each server, the exact `ACL SETUSER`
//! lines that grant no more (served by `GET /v1/guide/redis`), and how validation finds out what a
//! given user may not do.
//!
//! On Redis 7.0+ every needed command is asked of `ACL DRYRUN <user> <command> <args>` (which
//! also checks the key `ferry:probe` against the user's key patterns). Redis 6.2 has no DRYRUN:
//! there the user's rules (`ACL GETUSER`) are evaluated against each command's ACL categories
//! (`COMMAND INFO`), in order, the way the server applies them ([`allowed_by_rules`]). Either way
//! the result is one verdict per [`Need`], and `source.permissions` / `target.permissions` fail
//! naming what is missing.
//!
//! A migration's live phase writes on the target whatever the source's clients write, so the
//! target user needs `+@write` as a whole: the commands of the stream cannot be listed in advance.
//! The target user also replicates (`+psync +replconf`): the restore point is a copy of the
//! target's RDB, taken over the replication link.

use super::conn::Admin;
use super::error::{CallError, Side};
use super::reply::{text, unexpected};
use crate::resp::Frame;

/// What `ACL DRYRUN <user> <command> …` said.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum AclVerdict {
    Allowed,
    /// The server's explanation, e.g. "This user has no permissions to run the 'psync' command".
    Denied(String),
}

/// One ACL probe: may the URL's user run this command?
#[derive(Debug, Clone)]
pub struct AclProbe {
    pub command: &'static str,
    pub verdict: Result<AclVerdict, CallError>,
}

/// Why a command is needed: the checks fail only on what this migration will use.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum When {
    /// The transfer, verification or resume cannot run without it.
    Always,
    /// Only validation reads it; without it a check warns that it could not look.
    Validation,
    /// `pause_source_writes_on_cutover`.
    PauseOnCutover,
    /// `on_conflict: flush`.
    FlushConflicts,
    /// The restore point and a rollback to it (`options.backup`).
    Rollback,
    /// The relay transfer (`transfer: relay`, or `auto` when it picks the relay): the target is
    /// made a replica of Ferry and its replication settings are changed and put back.
    Relay,
    /// Reading the source by replication (`source.read: replication`, the default).
    Replication,
    /// Reading the source by `SCAN` (`source.read: scan`): its keyspace notifications.
    Scan,
    /// `source.read: scan` with `options.set_keyspace_notifications`.
    SetNotifications,
}

/// One command a side's user must be allowed, with harmless arguments for `ACL DRYRUN` (which
/// checks the arity). `name` is `COMMAND` or `COMMAND SUBCOMMAND`.
#[derive(Debug, Clone, Copy)]
pub struct Need {
    pub name: &'static str,
    pub probe: &'static [&'static str],
    pub when: When,
}

const fn need(name: &'static str, probe: &'static [&'static str], when: When) -> Need {
    Need { name, probe, when }
}

const SOURCE: &[Need] = &[
    need("PING", &["PING"], When::Always),
    need("INFO", &["INFO", "all"], When::Always),
    need("PSYNC", &["PSYNC", "?", "-1"], When::Replication),
    need(
        "REPLCONF",
        &["REPLCONF", "capa", "psync2"],
        When::Replication,
    ),
    need("SELECT", &["SELECT", "0"], When::Always),
    // Verification reads every type: these stand for `+@read`.
    need("SCAN", &["SCAN", "0"], When::Always),
    need("TYPE", &["TYPE", "ferry:probe"], When::Always),
    need("DUMP", &["DUMP", "ferry:probe"], When::Always),
    need("HGETALL", &["HGETALL", "ferry:probe"], When::Always),
    // source.read: scan — each key's TTL, the key-event channels, and (if allowed) the setting.
    need("PTTL", &["PTTL", "ferry:probe"], When::Always),
    need(
        "PSUBSCRIBE",
        &["PSUBSCRIBE", "__keyevent@*__:*"],
        When::Scan,
    ),
    need(
        "CONFIG SET",
        &["CONFIG", "SET", "notify-keyspace-events", "EA"],
        When::SetNotifications,
    ),
    need(
        "CONFIG GET",
        &["CONFIG", "GET", "maxmemory"],
        When::Validation,
    ),
    need("MODULE LIST", &["MODULE", "LIST"], When::Validation),
    need(
        "COMMAND INFO",
        &["COMMAND", "INFO", "psync"],
        When::Validation,
    ),
    need(
        "CLIENT PAUSE",
        &["CLIENT", "PAUSE", "1000", "WRITE"],
        When::PauseOnCutover,
    ),
    need(
        "CLIENT UNPAUSE",
        &["CLIENT", "UNPAUSE"],
        When::PauseOnCutover,
    ),
];

const TARGET: &[Need] = &[
    need("PING", &["PING"], When::Always),
    need("INFO", &["INFO", "all"], When::Always),
    need("SELECT", &["SELECT", "0"], When::Always),
    need(
        "RESTORE",
        &["RESTORE", "ferry:probe", "0", "payload"],
        When::Always,
    ),
    need("MULTI", &["MULTI"], When::Always),
    need("EXEC", &["EXEC"], When::Always),
    need("SET", &["SET", "ferry:probe", "1"], When::Always),
    need("DEL", &["DEL", "ferry:probe"], When::Always),
    need("UNLINK", &["UNLINK", "ferry:probe"], When::Always),
    need(
        "PEXPIREAT",
        &["PEXPIREAT", "ferry:probe", "1"],
        When::Always,
    ),
    // The target lease (`ferry:lease`): taken with WATCH … MULTI SET EXEC, renewed, read back.
    need("WATCH", &["WATCH", "ferry:lease"], When::Always),
    need("UNWATCH", &["UNWATCH"], When::Always),
    need("GET", &["GET", "ferry:lease"], When::Always),
    need("PTTL", &["PTTL", "ferry:lease"], When::Always),
    need("PEXPIRE", &["PEXPIRE", "ferry:lease", "1000"], When::Always),
    // The live stream and rewritten values: these stand for `+@write`.
    need("HSET", &["HSET", "ferry:probe", "f", "v"], When::Always),
    need("RPUSH", &["RPUSH", "ferry:probe", "v"], When::Always),
    need("SADD", &["SADD", "ferry:probe", "m"], When::Always),
    need("ZADD", &["ZADD", "ferry:probe", "1", "m"], When::Always),
    need(
        "XADD",
        &["XADD", "ferry:probe", "*", "f", "v"],
        When::Always,
    ),
    need("INCR", &["INCR", "ferry:probe"], When::Always),
    need("SCRIPT LOAD", &["SCRIPT", "LOAD", "return 1"], When::Always),
    // Verification.
    need("SCAN", &["SCAN", "0"], When::Always),
    need("TYPE", &["TYPE", "ferry:probe"], When::Always),
    need("DUMP", &["DUMP", "ferry:probe"], When::Always),
    need(
        "CONFIG GET",
        &["CONFIG", "GET", "maxmemory"],
        When::Validation,
    ),
    need("MODULE LIST", &["MODULE", "LIST"], When::Validation),
    need(
        "COMMAND INFO",
        &["COMMAND", "INFO", "restore"],
        When::Validation,
    ),
    need("FLUSHDB", &["FLUSHDB"], When::FlushConflicts),
    // The restore point is captured over the replication link; the rollback flushes first.
    need("PSYNC", &["PSYNC", "?", "-1"], When::Rollback),
    need("REPLCONF", &["REPLCONF", "capa", "psync2"], When::Rollback),
    need("FLUSHALL", &["FLUSHALL"], When::Rollback),
    // The relay: `REPLICAOF <ferry>` and `REPLICAOF NO ONE`; `masterauth`, `replica-read-only`
    // and `repl-diskless-load` set for the load and put back. (`+acl|whoami` in the rules lets
    // the job's start ask `ACL DRYRUN` again; without it the commands themselves tell.)
    need("REPLICAOF", &["REPLICAOF", "NO", "ONE"], When::Relay),
    need(
        "CONFIG SET",
        &["CONFIG", "SET", "masterauth", "x"],
        When::Relay,
    ),
];

/// Whether `command` is one of `side`'s needs that only a relay has.
pub fn relay_need(side: Side, command: &str) -> bool {
    needs(side)
        .iter()
        .any(|n| n.name == command && n.when == When::Relay)
}

/// What `side`'s user needs, in the order of the report.
pub fn needs(side: Side) -> &'static [Need] {
    match side {
        Side::Source => SOURCE,
        Side::Target => TARGET,
    }
}

/// The rules that grant a side exactly what it needs. The same rules serve 6.2 and 7.0+ but for
/// the command that lets validation check them: `ACL DRYRUN` (7.0+, answers only "may user X run
/// this") or, on 6.2, `ACL GETUSER` (which also shows other users' password hashes: grant it only
/// while validating, if at all).
pub fn rules(side: Side, redis_7: bool) -> String {
    let check = if redis_7 {
        "+acl|dryrun"
    } else {
        "+acl|getuser"
    };
    let common =
        "~* resetchannels -@all +ping +info +select +config|get +module|list +command|info";
    match side {
        Side::Source => format!(
            "{common} +@read +psync +sync +replconf +client|pause +client|unpause {check}{}",
            if redis_7 { " +function|list" } else { "" }
        ),
        Side::Target => format!(
            "{common} +@read +@write +multi +exec +watch +unwatch +script|load +psync +sync +replconf \
             {RELAY_RULES} {check}"
        ),
    }
}

/// What the source's user needs on top of [`rules`] for `source.read: scan`: the key-event
/// channels (the pattern itself, as `PSUBSCRIBE` names it) and, for
/// `options.set_keyspace_notifications`, `CONFIG SET`.
pub const SCAN_RULES: &str = "+psubscribe &__keyevent@*__:* +config|set";

/// What the target's user needs for the relay transfer (`transfer: auto` or `relay`); a
/// migration with `transfer: restore` can do without.
pub const RELAY_RULES: &str = "+replicaof +config|set +acl|whoami";

/// The `ACL SETUSER` line for a side's user.
pub fn setuser_line(side: Side, user: &str, redis_7: bool) -> String {
    format!("ACL SETUSER {user} on >CHANGE-ME {}", rules(side, redis_7))
}

/// Whether a user whose command rules are `rules` (as `ACL GETUSER` shows them on 6.2, e.g.
/// `-@all +@read +psync +config|get`) may run `command` (lower case) with `subcommand`, given the
/// command's ACL `categories` (without `@`). Rules apply in order; the last one that speaks
/// about the command wins, as the server's bitmap does.
pub fn allowed_by_rules(
    rules: &str,
    command: &str,
    subcommand: Option<&str>,
    categories: &[String],
) -> bool {
    let mut allowed = false;
    for rule in rules.split_whitespace() {
        let (grant, what) = match rule {
            "allcommands" => (true, "@all"),
            "nocommands" => (false, "@all"),
            _ => match rule.split_at_checked(1) {
                Some(("+", what)) => (true, what),
                Some(("-", what)) => (false, what),
                _ => continue,
            },
        };
        let what = what.to_ascii_lowercase();
        let applies = if let Some(category) = what.strip_prefix('@') {
            category == "all" || categories.iter().any(|c| c.eq_ignore_ascii_case(category))
        } else if let Some((name, sub)) = what.split_once('|') {
            // `+config|get` speaks about one subcommand only.
            name == command && subcommand.is_some_and(|s| s.eq_ignore_ascii_case(sub))
        } else {
            what == command
        };
        if applies {
            allowed = grant;
        }
    }
    allowed
}

// ---- gathering: what the URL's user may do (run by `facts`) ----

/// Asks `ACL DRYRUN` about every command the side needs, in one pipeline.
pub(super) async fn probe_acl(admin: &Admin, side: Side) -> Vec<AclProbe> {
    let user = admin.user().to_string();
    let probes = needs(side);
    let commands: Vec<(&str, Vec<&[u8]>)> = probes
        .iter()
        .map(|need| {
            let mut words: Vec<&[u8]> = vec![b"ACL", b"DRYRUN", user.as_bytes()];
            words.extend(need.probe.iter().map(|a| a.as_bytes()));
            ("ACL DRYRUN", words)
        })
        .collect();
    let replies = admin.call_many(&commands).await;
    probes
        .iter()
        .map(|need| need.name)
        .zip(replies)
        .map(|(name, reply)| {
            let verdict = match reply {
                Ok(frame) => Ok(acl_verdict(&frame)),
                // "ERR Command 'psync' not found": renamed away, which DRYRUN cannot see through.
                Err(CallError::Server { detail, .. }) if detail.contains("not found") => {
                    Err(CallError::Unavailable {
                        command: name.to_string(),
                    })
                }
                Err(e) => Err(e),
            };
            AclProbe {
                command: name,
                verdict,
            }
        })
        .collect()
}

/// Redis 6.x: reads the user's rules (`ACL GETUSER`) and the needed commands' categories
/// (`COMMAND INFO`), and decides each need as the server would.
pub(super) async fn evaluate_acl(admin: &Admin, side: Side) -> Vec<AclProbe> {
    let needs = needs(side);
    let user = admin.user().to_string();
    let mut names: Vec<String> = needs
        .iter()
        .filter_map(|n| n.name.split(' ').next())
        .map(str::to_ascii_lowercase)
        .collect();
    names.dedup();
    let mut info: Vec<&[u8]> = vec![b"COMMAND", b"INFO"];
    info.extend(names.iter().map(|n| n.as_bytes()));
    let mut replies = admin
        .call_many(&[
            ("ACL GETUSER", vec![b"ACL", b"GETUSER", user.as_bytes()]),
            ("COMMAND INFO", info),
        ])
        .await
        .into_iter();
    let missing = || {
        Err(CallError::Unexpected {
            command: "pipeline".into(),
            detail: "missing reply".into(),
        })
    };
    let user_rules = replies
        .next()
        .unwrap_or_else(missing)
        .and_then(|f| user_rules(&f));
    let categories = replies
        .next()
        .unwrap_or_else(missing)
        .map(|f| command_categories(&f));
    let (rules, keys, categories) = match (user_rules, categories) {
        (Ok((rules, keys)), Ok(categories)) => (rules, keys, categories),
        (Err(e), _) | (_, Err(e)) => {
            return needs
                .iter()
                .map(|need| AclProbe {
                    command: need.name,
                    verdict: Err(e.clone()),
                })
                .collect()
        }
    };
    let mut probes: Vec<AclProbe> = needs
        .iter()
        .map(|need| {
            let mut words = need.name.split(' ');
            let command = words.next().unwrap_or_default().to_ascii_lowercase();
            let sub = words.next().map(str::to_ascii_lowercase);
            let verdict = match categories.iter().find(|(name, _)| *name == command) {
                None => Err(CallError::Unavailable {
                    command: need.name.to_string(),
                }),
                Some((_, cats)) if allowed_by_rules(&rules, &command, sub.as_deref(), cats) => {
                    Ok(AclVerdict::Allowed)
                }
                Some(_) => Ok(AclVerdict::Denied(format!(
                    "user `{user}` has no permissions to run the '{}' command",
                    need.name.to_ascii_lowercase()
                ))),
            };
            AclProbe {
                command: need.name,
                verdict,
            }
        })
        .collect();
    let all_keys = keys.iter().any(|k| k == "*" || k == "~*" || k == "allkeys");
    probes.push(AclProbe {
        command: ALL_KEYS,
        verdict: Ok(if all_keys {
            AclVerdict::Allowed
        } else {
            AclVerdict::Denied(format!(
                "user `{user}` may reach only the keys {keys:?}; Ferry copies and checks every key"
            ))
        }),
    });
    probes
}

/// The pseudo-command of the key-pattern probe (6.x): every key must be reachable.
pub const ALL_KEYS: &str = "~* (all keys)";

/// `ACL GETUSER` (a flat map in RESP2): the `commands` rules and the `keys` patterns.
fn user_rules(frame: &Frame) -> Result<(String, Vec<String>), CallError> {
    let Frame::Array(flat) = frame else {
        return Err(unexpected("ACL GETUSER", frame));
    };
    let mut rules = None;
    let mut keys = Vec::new();
    for pair in flat.chunks(2) {
        let [name, value] = pair else { continue };
        match text(name).as_deref() {
            Some("commands") => rules = text(value),
            // 6.2: an array of patterns; 7.x: one string of `~pattern`s.
            Some("keys") => match value {
                Frame::Array(items) => keys.extend(items.iter().filter_map(text)),
                other => keys.extend(
                    text(other)
                        .unwrap_or_default()
                        .split_whitespace()
                        .map(str::to_string),
                ),
            },
            _ => {}
        }
    }
    rules
        .map(|r| (r, keys))
        .ok_or_else(|| unexpected("ACL GETUSER", frame))
}

/// `COMMAND INFO a b …`: each command's name and its ACL categories (the seventh element, as
/// `@read`…), without the `@`.
fn command_categories(frame: &Frame) -> Vec<(String, Vec<String>)> {
    let Frame::Array(entries) = frame else {
        return Vec::new();
    };
    entries
        .iter()
        .filter_map(|entry| {
            let Frame::Array(parts) = entry else {
                return None;
            };
            let name = text(parts.first()?)?.to_ascii_lowercase();
            let categories = match parts.get(6) {
                Some(Frame::Array(cats)) => cats
                    .iter()
                    .filter_map(text)
                    .map(|c| c.trim_start_matches('@').to_string())
                    .collect(),
                _ => Vec::new(),
            };
            Some((name, categories))
        })
        .collect()
}

fn acl_verdict(frame: &Frame) -> AclVerdict {
    match text(frame) {
        Some(t) if t == "OK" => AclVerdict::Allowed,
        Some(t) => AclVerdict::Denied(t),
        None => AclVerdict::Denied(frame.describe()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cats(list: &[&str]) -> Vec<String> {
        list.iter().map(|s| s.to_string()).collect()
    }

    #[test]
    fn rules_apply_in_order_with_categories_and_subcommands() {
        let read = cats(&["read", "keyspace"]);
        assert!(allowed_by_rules("+@all", "get", None, &read));
        assert!(!allowed_by_rules("+@all -@read", "get", None, &read));
        assert!(allowed_by_rules("-@all +@read", "get", None, &read));
        assert!(!allowed_by_rules("-@all +@read -get", "get", None, &read));
        assert!(allowed_by_rules("nocommands +get", "get", None, &read));
        let admin = cats(&["admin", "slow", "dangerous"]);
        assert!(allowed_by_rules(
            "-@all +config|get",
            "config",
            Some("get"),
            &admin
        ));
        assert!(!allowed_by_rules(
            "-@all +config|get",
            "config",
            Some("set"),
            &admin
        ));
        assert!(allowed_by_rules(
            "-@all +config",
            "config",
            Some("set"),
            &admin
        ));
        assert!(!allowed_by_rules(
            "+@all -config",
            "config",
            Some("get"),
            &admin
        ));
        assert!(!allowed_by_rules("", "get", None, &read));
    }

    /// The minimal rules grant every need of their side, as the evaluator reads them.
    #[test]
    fn the_minimal_rules_grant_what_each_side_needs() {
        for side in [Side::Source, Side::Target] {
            let mut rules = rules(side, false);
            if side == Side::Source {
                rules = format!("{rules} {SCAN_RULES}");
            }
            for need in needs(side) {
                let mut words = need.name.split(' ');
                let command = words.next().unwrap().to_ascii_lowercase();
                let sub = words.next().map(str::to_ascii_lowercase);
                // Categories as Redis files these commands.
                let categories = match command.as_str() {
                    "scan" | "type" | "dump" | "hgetall" | "get" | "pttl" => {
                        cats(&["read", "keyspace"])
                    }
                    "set" | "del" | "unlink" | "pexpireat" | "pexpire" | "hset" | "rpush"
                    | "sadd" | "zadd" | "xadd" | "incr" | "restore" | "flushdb" | "flushall" => {
                        cats(&["write"])
                    }
                    _ => cats(&["admin", "slow"]),
                };
                assert!(
                    allowed_by_rules(&rules, &command, sub.as_deref(), &categories),
                    "{side:?} rules do not grant {}",
                    need.name
                );
            }
        }
    }
}
