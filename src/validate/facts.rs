//! Facts about one server, gathered once, concurrently, each under a timeout.
//!
//! Checks never talk to a server: they read a [`ServerFacts`]. That keeps every network call in one
//! place (so the time budget is easy to see: connect, then one concurrent round of INFO, CONFIG GET,
//! MODULE LIST and COMMAND INFO, then one round of ACL DRYRUN probes), and it keeps the checks pure
//! functions that unit tests can feed by hand.
//!
//! A fact that cannot be read is kept as its [`CallError`]: managed services rename `CONFIG`, and an
//! ACL user may lack `MODULE`. The checks that need it then say which command was missing instead of
//! guessing.

use futures::future::join_all;
use redis::Value;

use super::conn::{connect, Admin, ConnectOptions};
use super::error::{CallError, ConnectError, Side};
use super::info::{Config, Info};
use crate::redis_url::RedisUrl;

/// What connecting measured.
#[derive(Debug, Clone)]
pub struct Connected {
    pub latency: std::time::Duration,
    /// The ACL user the URL authenticates as (`default` when none is named).
    pub user: String,
}

/// One loaded module (`MODULE LIST`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Module {
    pub name: String,
    pub version: Option<i64>,
}

/// Whether the replication commands exist under their real names (`COMMAND INFO psync sync`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ReplicationCommands {
    pub psync: bool,
    pub sync: bool,
}

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

/// Everything validation knows about one server.
#[derive(Debug, Clone)]
pub struct ServerFacts {
    pub side: Side,
    pub url: RedisUrl,
    pub connect: Result<Connected, ConnectError>,
    pub info: Result<Info, CallError>,
    pub config: Result<Config, CallError>,
    pub modules: Result<Vec<Module>, CallError>,
    pub replication_commands: Result<ReplicationCommands, CallError>,
    /// Empty when the server is older than 7.0 (no `ACL DRYRUN`) or unreachable.
    pub acl: Vec<AclProbe>,
    /// Hashes sampled for field TTLs, taken only on a source of Redis ≥ 7.4, in the databases whose
    /// `INFO keyspace` does not count them (`subexpiry`) or counts some: Redis 7.4 keeps counting
    /// a hash after `HPERSIST` removed its last field TTL, so a count alone may be stale.
    pub field_ttl_sample: Option<Result<FieldTtlSample, CallError>>,
    /// How many function libraries (`FUNCTION LIST`) the server holds; read only on a source of
    /// Redis ≥ 7.0 (older servers have no functions), because a target older than 7.0 cannot
    /// hold them.
    pub function_libraries: Option<Result<u64, CallError>>,
}

/// What sampling hashes for field TTLs found.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FieldTtlSample {
    pub hashes_sampled: u64,
    pub with_field_ttls: u64,
}

/// At most this many hashes are sampled for field TTLs, across all databases.
pub const FIELD_TTL_SAMPLE_HASHES: u64 = 200;
/// At most this many `SCAN` calls are spent looking for hashes: in a keyspace of few hashes among
/// many keys, `SCAN … TYPE hash` walks a lot to find each one.
const FIELD_TTL_SCAN_CALLS: u32 = 100;
/// At most this many fields of each sampled hash are asked for their TTL.
const FIELD_TTL_SAMPLE_FIELDS: usize = 16;

/// The commands whose ACL rights each side needs, with harmless arguments for `ACL DRYRUN`.
fn acl_probes(side: Side) -> &'static [(&'static str, &'static [&'static str])] {
    match side {
        Side::Source => &[
            ("PSYNC", &["PSYNC", "?", "-1"]),
            ("REPLCONF", &["REPLCONF", "capa", "psync2"]),
        ],
        Side::Target => &[
            ("RESTORE", &["RESTORE", "ferry:probe", "0", "payload"]),
            ("SELECT", &["SELECT", "0"]),
            ("FLUSHDB", &["FLUSHDB"]),
        ],
    }
}

impl ServerFacts {
    /// Facts of a server that could not be reached: every fact says so.
    fn unreachable(side: Side, url: &RedisUrl, error: ConnectError) -> Self {
        let missing = CallError::NotConnected { side };
        ServerFacts {
            side,
            url: url.clone(),
            connect: Err(error),
            info: Err(missing.clone()),
            config: Err(missing.clone()),
            modules: Err(missing.clone()),
            replication_commands: Err(missing),
            acl: Vec::new(),
            field_ttl_sample: None,
            function_libraries: None,
        }
    }

    /// Connects to `url` and reads every fact the checks need.
    pub async fn gather(side: Side, url: &RedisUrl, options: &ConnectOptions) -> Self {
        let admin = match connect(url, options).await {
            Ok(admin) => admin,
            Err(error) => return Self::unreachable(side, url, error),
        };
        let (info, config, modules, replication_commands) = tokio::join!(
            admin.call::<String>("INFO", command(&["INFO", "all"])),
            admin.call::<Vec<String>>("CONFIG GET", command(&["CONFIG", "GET", "*"])),
            admin.call::<Value>("MODULE LIST", command(&["MODULE", "LIST"])),
            admin.call::<Vec<Value>>(
                "COMMAND INFO",
                command(&["COMMAND", "INFO", "psync", "sync"])
            ),
        );
        let info = info.map(|text| Info::parse(&text));
        let has_dry_run = info
            .as_ref()
            .ok()
            .and_then(Info::version_pair)
            .is_some_and(|version| version >= (7, 0));
        let acl = if has_dry_run {
            probe_acl(&admin, side).await
        } else {
            Vec::new()
        };
        // Functions arrived with ACL DRYRUN, in 7.0.
        let function_libraries = if side == Side::Source && has_dry_run {
            let listed = admin
                .call::<Vec<Value>>("FUNCTION LIST", command(&["FUNCTION", "LIST"]))
                .await;
            Some(listed.map(|libraries| libraries.len() as u64))
        } else {
            None
        };
        let dbs_to_sample: Vec<u32> = match &info {
            Ok(info)
                if side == Side::Source && info.server().is_some_and(|s| s.has_field_ttls()) =>
            {
                info.keyspace
                    .iter()
                    .filter(|(_, db)| db.keys > 0 && db.subexpiry != Some(0))
                    .map(|(index, _)| *index)
                    .collect()
            }
            _ => Vec::new(),
        };
        let field_ttl_sample = if dbs_to_sample.is_empty() {
            None
        } else {
            Some(sample_field_ttls(&admin, &dbs_to_sample, url.db.unwrap_or(0)).await)
        };
        ServerFacts {
            side,
            url: url.clone(),
            connect: Ok(Connected {
                latency: admin.latency,
                user: admin.user().to_string(),
            }),
            info,
            config: config.map(Config::from_pairs),
            modules: modules.and_then(parse_modules),
            replication_commands: replication_commands.and_then(parse_command_info),
            acl,
            field_ttl_sample,
            function_libraries,
        }
    }
}

/// Looks for hash field TTLs in a sample of hashes (`SCAN … TYPE hash`, `HRANDFIELD`, `HTTL`),
/// for servers that do not count them in `INFO keyspace`. A sample can prove that such keys exist,
/// never that they do not.
///
/// It `SELECT`s each db on the shared connection, so it must run when no other call is in flight;
/// it selects `home_db` again at the end.
pub async fn sample_field_ttls(
    admin: &Admin,
    dbs: &[u32],
    home_db: u32,
) -> Result<FieldTtlSample, CallError> {
    let mut sample = FieldTtlSample {
        hashes_sampled: 0,
        with_field_ttls: 0,
    };
    let mut scans_left = FIELD_TTL_SCAN_CALLS;
    let outcome = async {
        for db in dbs {
            admin
                .call::<()>("SELECT", command(&["SELECT", &db.to_string()]))
                .await?;
            let mut cursor = "0".to_string();
            while scans_left > 0 {
                scans_left -= 1;
                let scan = command(&["SCAN", &cursor, "COUNT", "100", "TYPE", "hash"]);
                let (next, keys): (String, Vec<Vec<u8>>) = admin.call("SCAN", scan).await?;
                for key in keys {
                    if sample.hashes_sampled >= FIELD_TTL_SAMPLE_HASHES {
                        return Ok(());
                    }
                    sample.hashes_sampled += 1;
                    if hash_has_field_ttl(admin, &key).await? {
                        sample.with_field_ttls += 1;
                    }
                }
                if next == "0" {
                    break;
                }
                cursor = next;
            }
        }
        Ok::<(), CallError>(())
    }
    .await;
    // Put the connection back where it belongs even when sampling stopped early.
    let restored = admin
        .call::<()>("SELECT", command(&["SELECT", &home_db.to_string()]))
        .await;
    outcome.and(restored).map(|()| sample)
}

async fn hash_has_field_ttl(admin: &Admin, key: &[u8]) -> Result<bool, CallError> {
    let mut fields_cmd = redis::cmd("HRANDFIELD");
    fields_cmd.arg(key).arg(FIELD_TTL_SAMPLE_FIELDS);
    let fields: Vec<Vec<u8>> = admin.call("HRANDFIELD", fields_cmd).await?;
    if fields.is_empty() {
        return Ok(false);
    }
    let mut ttl_cmd = redis::cmd("HTTL");
    ttl_cmd.arg(key).arg("FIELDS").arg(fields.len());
    for field in &fields {
        ttl_cmd.arg(field.as_slice());
    }
    // Per field: -2 no such field, -1 no TTL, else seconds left.
    let ttls: Vec<i64> = admin.call("HTTL", ttl_cmd).await?;
    Ok(ttls.iter().any(|ttl| *ttl >= 0))
}

/// Asks `ACL DRYRUN` about every command the side needs, concurrently.
async fn probe_acl(admin: &Admin, side: Side) -> Vec<AclProbe> {
    let user = admin.user().to_string();
    let probes = acl_probes(side).iter().map(|(name, args)| {
        let mut cmd = command(&["ACL", "DRYRUN", &user]);
        for arg in args.iter() {
            cmd.arg(*arg);
        }
        let name = *name;
        async move {
            let verdict = match admin.call::<Value>("ACL DRYRUN", cmd).await {
                Ok(value) => Ok(acl_verdict(&value)),
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
        }
    });
    join_all(probes).await
}

fn acl_verdict(value: &Value) -> AclVerdict {
    match value {
        Value::Okay => AclVerdict::Allowed,
        other => match text(other) {
            Some(t) if t == "OK" => AclVerdict::Allowed,
            Some(t) => AclVerdict::Denied(t),
            None => AclVerdict::Denied(format!("{other:?}")),
        },
    }
}

/// Builds a command from its words.
pub fn command(words: &[&str]) -> redis::Cmd {
    let mut cmd = redis::cmd(words[0]);
    for word in &words[1..] {
        cmd.arg(*word);
    }
    cmd
}

/// `MODULE LIST` answers, per module, a flat list `name <name> ver <n> path … args …`
/// (a map under RESP3).
fn parse_modules(value: Value) -> Result<Vec<Module>, CallError> {
    let Value::Array(entries) = value else {
        return Err(unexpected("MODULE LIST", &value));
    };
    let mut modules = Vec::with_capacity(entries.len());
    for entry in entries {
        let pairs: Vec<(Value, Value)> = match entry {
            Value::Array(flat) => {
                let mut items = flat.into_iter();
                std::iter::from_fn(|| Some((items.next()?, items.next()?))).collect()
            }
            Value::Map(pairs) => pairs,
            other => return Err(unexpected("MODULE LIST", &other)),
        };
        let mut name = None;
        let mut version = None;
        for (key, field) in pairs {
            match text(&key).as_deref() {
                Some("name") => name = text(&field),
                Some("ver") => version = integer(&field),
                _ => {}
            }
        }
        if let Some(name) = name {
            modules.push(Module { name, version });
        }
    }
    Ok(modules)
}

/// `COMMAND INFO psync sync`: one entry per name asked, nil for a command that does not exist
/// (renamed to something else, or to "" to disable it).
fn parse_command_info(entries: Vec<Value>) -> Result<ReplicationCommands, CallError> {
    if entries.len() != 2 {
        return Err(CallError::Unexpected {
            command: "COMMAND INFO".into(),
            detail: format!("{} entries for 2 commands", entries.len()),
        });
    }
    let exists = |v: &Value| !matches!(v, Value::Nil);
    Ok(ReplicationCommands {
        psync: exists(&entries[0]),
        sync: exists(&entries[1]),
    })
}

fn text(value: &Value) -> Option<String> {
    match value {
        Value::BulkString(bytes) => Some(String::from_utf8_lossy(bytes).into_owned()),
        Value::SimpleString(s) => Some(s.clone()),
        Value::VerbatimString { text, .. } => Some(text.clone()),
        Value::Okay => Some("OK".into()),
        _ => None,
    }
}

fn integer(value: &Value) -> Option<i64> {
    match value {
        Value::Int(n) => Some(*n),
        other => text(other)?.parse().ok(),
    }
}

fn unexpected(command: &str, value: &Value) -> CallError {
    CallError::Unexpected {
        command: command.to_string(),
        detail: format!("{value:?}").chars().take(120).collect(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn bulk(s: &str) -> Value {
        Value::BulkString(s.as_bytes().to_vec())
    }

    #[test]
    fn module_list_is_read_from_flat_pairs() {
        let reply = Value::Array(vec![Value::Array(vec![
            bulk("name"),
            bulk("ReJSON"),
            bulk("ver"),
            Value::Int(20609),
            bulk("path"),
            bulk("/x/rejson.so"),
        ])]);
        assert_eq!(
            parse_modules(reply).unwrap(),
            vec![Module {
                name: "ReJSON".into(),
                version: Some(20609)
            }]
        );
    }

    #[test]
    fn a_nil_command_info_entry_means_the_command_is_gone() {
        let found = parse_command_info(vec![Value::Nil, Value::Array(vec![bulk("sync")])]).unwrap();
        assert_eq!(
            found,
            ReplicationCommands {
                psync: false,
                sync: true
            }
        );
    }
}
