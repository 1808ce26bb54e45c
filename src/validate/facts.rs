//! Facts about one server, gathered once, concurrently, each under a timeout.
//!
//! Checks never talk to a server: they read a [`ServerFacts`]. That keeps every network call in one
//! place (so the time budget is easy to see: connect, then one pipelined round of INFO, CONFIG GET,
//! MODULE LIST and COMMAND INFO, then one round of ACL DRYRUN probes), and it keeps the checks pure
//! functions that unit tests can feed by hand.
//!
//! A fact that cannot be read is kept as its [`CallError`]: managed services rename `CONFIG`, and an
//! ACL user may lack `MODULE`. The checks that need it then say which command was missing instead of
//! guessing.

use super::cluster_facts::ClusterFacts;
use super::conn::{connect, Admin, ConnectOptions};
use super::error::{CallError, ConnectError, Side};
use super::permissions;
pub use super::permissions::{AclProbe, AclVerdict};
use super::reply::{text, unexpected};
use crate::client::{Config, Info};
use crate::model::{LeaseHolder, LeaseOwner, LEASE_KEY};
use crate::redis_url::RedisUrl;
use crate::resp::Frame;
use crate::spec::Endpoint;
use crate::transport::{Peer, TlsInfo};

/// The user of the stand-in facts of a file source (`from_file`): no server, no connection.
pub const FILE_SOURCE_USER: &str = "rdb file";

/// What connecting measured.
#[derive(Debug, Clone)]
pub struct Connected {
    pub latency: std::time::Duration,
    /// The ACL user the URL authenticates as (`default` when none is named).
    pub user: String,
    /// What TLS negotiated, for a `rediss://` server.
    pub tls: Option<TlsInfo>,
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

/// Everything validation knows about one server.
#[derive(Debug, Clone)]
pub struct ServerFacts {
    pub side: Side,
    pub url: RedisUrl,
    /// `tls.insecure_skip_verify` was asked for: the certificate goes unchecked.
    pub tls_unverified: bool,
    /// When the facts were gathered (certificate expiry is counted from it).
    pub gathered_at: chrono::DateTime<chrono::Utc>,
    pub connect: Result<Connected, ConnectError>,
    pub info: Result<Info, CallError>,
    pub config: Result<Config, CallError>,
    pub modules: Result<Vec<Module>, CallError>,
    pub replication_commands: Result<ReplicationCommands, CallError>,
    /// One verdict per [`super::permissions::Need`] of the side (`ACL DRYRUN` on 7.0+, the
    /// user's rules against `COMMAND INFO` on 6.x), plus `~*` on 6.x. Empty when unreachable.
    pub acl: Vec<AclProbe>,
    /// Target only: the verdicts of `acl` on what only a relay runs (`REPLICAOF`, `CONFIG SET`).
    pub relay_acl: Vec<AclProbe>,
    /// Target only: whether `REPLICAOF` exists under its name (`COMMAND INFO replicaof`).
    pub replicaof: Option<Result<bool, CallError>>,
    /// Hashes sampled for field TTLs, taken only on a source of Redis ≥ 7.4, in the databases whose
    /// `INFO keyspace` does not count them (`subexpiry`) or counts some: Redis 7.4 keeps counting
    /// a hash after `HPERSIST` removed its last field TTL, so a count alone may be stale.
    pub field_ttl_sample: Option<Result<FieldTtlSample, CallError>>,
    /// How many function libraries (`FUNCTION LIST`) the server holds; read only on a source of
    /// Redis ≥ 7.0 (older servers have no functions), because a target older than 7.0 cannot
    /// hold them.
    pub function_libraries: Option<Result<u64, CallError>>,
    /// The target's lease (`ferry:lease`, db 0): who writes there now (`None` inside: nobody).
    /// Read on the target only.
    pub lease: Option<Result<Option<LeaseHolder>, CallError>>,
    /// `ACL LIST`, one line per user (passwords as hashes: never shown, only compared; see
    /// [`crate::model::acl`]). `None` when the server was unreachable.
    pub acl_users: Option<Result<Vec<String>, CallError>>,
    /// The slot map and every master's facts, when the server runs in cluster mode
    /// (`cluster_enabled:1`); `None` for a standalone server.
    pub cluster: Option<Result<ClusterFacts, CallError>>,
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

impl ServerFacts {
    /// Facts of a server that could not be reached: every fact says so.
    fn unreachable(side: Side, endpoint: &Endpoint, error: ConnectError) -> Self {
        let missing = CallError::NotConnected { side };
        ServerFacts {
            side,
            url: endpoint.url.clone(),
            tls_unverified: unverified(endpoint),
            gathered_at: chrono::Utc::now(),
            connect: Err(error),
            info: Err(missing.clone()),
            config: Err(missing.clone()),
            modules: Err(missing.clone()),
            replication_commands: Err(missing),
            acl: Vec::new(),
            relay_acl: Vec::new(),
            replicaof: None,
            field_ttl_sample: None,
            function_libraries: None,
            lease: None,
            cluster: None,
            acl_users: None,
        }
    }

    /// Connects to `endpoint` (reading its TLS files first) and reads every fact the checks need.
    pub async fn gather(side: Side, endpoint: &Endpoint, options: &ConnectOptions) -> Self {
        let url = &endpoint.url;
        let admin = match Peer::new(endpoint) {
            Ok(peer) => match connect(&peer, options).await {
                Ok(admin) => admin,
                Err(error) => return Self::unreachable(side, endpoint, error),
            },
            Err(error) => return Self::unreachable(side, endpoint, error),
        };
        let mut first = admin
            .call_many(&[
                ("INFO", words(&["INFO", "all"])),
                ("CONFIG GET", words(&["CONFIG", "GET", "*"])),
                ("MODULE LIST", words(&["MODULE", "LIST"])),
                ("COMMAND INFO", words(&["COMMAND", "INFO", "psync", "sync"])),
            ])
            .await
            .into_iter();
        let mut next = || {
            first.next().unwrap_or_else(|| {
                Err(CallError::Unexpected {
                    command: "pipeline".into(),
                    detail: "missing reply".into(),
                })
            })
        };
        let (info, config, modules, replication_commands) = (next(), next(), next(), next());
        let info = info
            .and_then(|f| text_of("INFO", &f))
            .map(|t| Info::parse(&t));
        let config = config.and_then(|f| strings("CONFIG GET", f));
        let has_dry_run = info
            .as_ref()
            .ok()
            .and_then(Info::version_pair)
            .is_some_and(|version| version >= (7, 0));
        let acl = if has_dry_run {
            permissions::probe_acl(&admin, side).await
        } else {
            permissions::evaluate_acl(&admin, side).await
        };
        // The relay's commands are needs of the target like any other (asked with the rest, on
        // 6.x too); the relay checks read them apart.
        let relay_acl = acl
            .iter()
            .filter(|probe| permissions::relay_need(side, probe.command))
            .cloned()
            .collect();
        let replicaof = if side == Side::Target {
            let info = admin
                .call("COMMAND INFO", &words(&["COMMAND", "INFO", "replicaof"]))
                .await;
            Some(info.and_then(|f| match f {
                Frame::Array(entries) => Ok(entries.first().is_some_and(|e| *e != Frame::Null)),
                other => Err(unexpected("COMMAND INFO", &other)),
            }))
        } else {
            None
        };
        // Functions arrived with ACL DRYRUN, in 7.0.
        let function_libraries = if side == Side::Source && has_dry_run {
            let listed = admin
                .call("FUNCTION LIST", &words(&["FUNCTION", "LIST"]))
                .await;
            Some(listed.and_then(|f| match f {
                Frame::Array(libraries) => Ok(libraries.len() as u64),
                other => Err(unexpected("FUNCTION LIST", &other)),
            }))
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
        let acl_users = Some(
            admin
                .call("ACL LIST", &words(&["ACL", "LIST"]))
                .await
                .and_then(|f| strings("ACL LIST", f)),
        );
        let cluster_enabled = info
            .as_ref()
            .is_ok_and(|info| info.get("cluster_enabled") == Some("1"));
        let cluster = if cluster_enabled {
            Some(super::cluster_facts::gather(side, endpoint, &admin, options).await)
        } else {
            None
        };
        // Last: it selects db 0 on the shared connection. A cluster's lease is one key too, on
        // the master that serves its slot (read there while gathering the cluster).
        let lease = match (side, &cluster) {
            (Side::Source, _) => None,
            (Side::Target, Some(Ok(cluster))) => Some(cluster.lease()),
            (Side::Target, _) => Some(read_lease(&admin).await),
        };
        ServerFacts {
            side,
            url: url.clone(),
            tls_unverified: unverified(endpoint),
            gathered_at: chrono::Utc::now(),
            connect: Ok(Connected {
                latency: admin.latency,
                user: admin.user().to_string(),
                tls: admin.tls.clone(),
            }),
            info,
            config: config.map(Config::from_pairs),
            modules: modules.and_then(parse_modules),
            replication_commands: replication_commands.and_then(|f| match f {
                Frame::Array(entries) => parse_command_info(entries),
                other => Err(unexpected("COMMAND INFO", &other)),
            }),
            acl,
            relay_acl,
            replicaof,
            field_ttl_sample,
            function_libraries,
            lease,
            cluster,
            acl_users,
        }
    }
}

fn unverified(endpoint: &Endpoint) -> bool {
    endpoint.url.tls
        && endpoint
            .tls
            .as_ref()
            .is_some_and(|t| t.insecure_skip_verify)
}

/// Reads `ferry:lease` and its time to live (selects db 0 on the connection).
pub(super) async fn read_lease(admin: &Admin) -> Result<Option<LeaseHolder>, CallError> {
    let key = LEASE_KEY.as_bytes();
    let mut replies = admin
        .call_many(&[
            ("SELECT", words(&["SELECT", "0"])),
            ("GET", vec![b"GET".as_slice(), key]),
            ("PTTL", vec![b"PTTL".as_slice(), key]),
        ])
        .await
        .into_iter()
        .skip(1);
    let value = replies.next().unwrap_or_else(|| {
        Err(CallError::Unexpected {
            command: "GET".into(),
            detail: "missing reply".into(),
        })
    })?;
    let ttl = replies.next().and_then(|r| r.ok()).and_then(|f| f.as_int());
    match value {
        Frame::Bulk(v) => {
            let raw = String::from_utf8_lossy(&v).into_owned();
            Ok(Some(LeaseHolder {
                owner: LeaseOwner::parse(&raw),
                raw,
                expires_in_ms: ttl.filter(|ms| *ms >= 0),
            }))
        }
        Frame::Null => Ok(None),
        other => Err(unexpected("GET", &other)),
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
                .call("SELECT", &words(&["SELECT", &db.to_string()]))
                .await?;
            let mut cursor = "0".to_string();
            while scans_left > 0 {
                scans_left -= 1;
                let scan = words(&["SCAN", &cursor, "COUNT", "100", "TYPE", "hash"]);
                let (next, keys) = scan_reply(admin.call("SCAN", &scan).await?)?;
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
        .call("SELECT", &words(&["SELECT", &home_db.to_string()]))
        .await;
    outcome.and(restored).map(|_| sample)
}

async fn hash_has_field_ttl(admin: &Admin, key: &[u8]) -> Result<bool, CallError> {
    let count = FIELD_TTL_SAMPLE_FIELDS.to_string();
    let fields = match admin
        .call("HRANDFIELD", &[b"HRANDFIELD", key, count.as_bytes()])
        .await?
    {
        Frame::Array(fields) => fields,
        Frame::Null => Vec::new(),
        other => return Err(unexpected("HRANDFIELD", &other)),
    };
    let fields: Vec<bytes::Bytes> = fields
        .iter()
        .filter_map(|f| f.as_bytes().cloned())
        .collect();
    if fields.is_empty() {
        return Ok(false);
    }
    let n = fields.len().to_string();
    let mut args: Vec<&[u8]> = vec![b"HTTL", key, b"FIELDS", n.as_bytes()];
    args.extend(fields.iter().map(|f| f.as_ref()));
    // Per field: -2 no such field, -1 no TTL, else seconds left.
    match admin.call("HTTL", &args).await? {
        Frame::Array(ttls) => Ok(ttls.iter().filter_map(Frame::as_int).any(|ttl| ttl >= 0)),
        other => Err(unexpected("HTTL", &other)),
    }
}

/// A command's words as the byte slices [`Admin::call`] takes.
pub fn words<'a>(words: &[&'a str]) -> Vec<&'a [u8]> {
    words.iter().map(|w| w.as_bytes()).collect()
}

/// `SCAN`'s `[cursor, [key, …]]`.
fn scan_reply(frame: Frame) -> Result<(String, Vec<Vec<u8>>), CallError> {
    if let Frame::Array(parts) = &frame {
        if let [cursor, Frame::Array(keys)] = parts.as_slice() {
            if let Some(cursor) = text(cursor) {
                let keys = keys
                    .iter()
                    .filter_map(|k| k.as_bytes().map(|b| b.to_vec()))
                    .collect();
                return Ok((cursor, keys));
            }
        }
    }
    Err(unexpected("SCAN", &frame))
}

/// A bulk or simple string reply as text.
fn text_of(command: &str, frame: &Frame) -> Result<String, CallError> {
    text(frame).ok_or_else(|| unexpected(command, frame))
}

/// An array of strings (`CONFIG GET *`).
fn strings(command: &str, frame: Frame) -> Result<Vec<String>, CallError> {
    match &frame {
        Frame::Array(items) => items
            .iter()
            .map(|i| text(i).ok_or_else(|| unexpected(command, &frame)))
            .collect(),
        _ => Err(unexpected(command, &frame)),
    }
}

/// `MODULE LIST` answers, per module, a flat list `name <name> ver <n> path … args …`.
fn parse_modules(frame: Frame) -> Result<Vec<Module>, CallError> {
    let Frame::Array(entries) = frame else {
        return Err(unexpected("MODULE LIST", &frame));
    };
    let mut modules = Vec::with_capacity(entries.len());
    for entry in entries {
        let Frame::Array(flat) = &entry else {
            return Err(unexpected("MODULE LIST", &entry));
        };
        let mut name = None;
        let mut version = None;
        for pair in flat.chunks(2) {
            if let [key, field] = pair {
                match text(key).as_deref() {
                    Some("name") => name = text(field),
                    Some("ver") => version = field.as_int(),
                    _ => {}
                }
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
fn parse_command_info(entries: Vec<Frame>) -> Result<ReplicationCommands, CallError> {
    if entries.len() != 2 {
        return Err(CallError::Unexpected {
            command: "COMMAND INFO".into(),
            detail: format!("{} entries for 2 commands", entries.len()),
        });
    }
    let exists = |f: &Frame| !matches!(f, Frame::Null);
    Ok(ReplicationCommands {
        psync: exists(&entries[0]),
        sync: exists(&entries[1]),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn bulk(s: &str) -> Frame {
        Frame::Bulk(bytes::Bytes::copy_from_slice(s.as_bytes()))
    }

    #[test]
    fn module_list_is_read_from_flat_pairs() {
        let reply = Frame::Array(vec![Frame::Array(vec![
            bulk("name"),
            bulk("ReJSON"),
            bulk("ver"),
            Frame::Integer(20609),
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
        let found =
            parse_command_info(vec![Frame::Null, Frame::Array(vec![bulk("sync")])]).unwrap();
        assert_eq!(
            found,
            ReplicationCommands {
                psync: false,
                sync: true
            }
        );
    }
}
