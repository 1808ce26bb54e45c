//! What a user asks for: the migration spec and its options.
//!
//! These types are shared by the API (request bodies), `jobs` (the aggregate keeps the current spec),
//! the event log (`MigrationCreated` carries the spec, redacted) and the engine (it reads the options).
//! Defaults live here, once, so that every entry point agrees on them.

use std::path::PathBuf;

use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use crate::redis_url::RedisUrl;
use crate::serde_objects::map_only;
use crate::shape::{DbMap, KeyFilter, Rename, Shape, ShapeError};

/// One Redis server. `url` is `redis://[user[:password]@]host:port` or `rediss://…` (a `/db` is
/// refused: databases are chosen with `options.filter.dbs` and `options.db_map`; user and
/// password are percent-decoded);
/// it is always shown with the password replaced by `***`. `tls` tunes a `rediss://` connection.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
#[schema(example = json!({"url": "redis://127.0.0.1:6379"}))]
pub struct Endpoint {
    #[schema(value_type = String, example = "redis://default:***@127.0.0.1:6379",
        pattern = r"^rediss?://(([A-Za-z0-9._~!$&'()*+,;=%-]*)(:[A-Za-z0-9._~!$&'()*+,;=%:-]*)?@)?[A-Za-z0-9.-]+(:(0|[1-9][0-9]{0,3}|[1-5][0-9]{4}|6[0-4][0-9]{3}|65[0-4][0-9]{2}|655[0-2][0-9]|6553[0-5]))?/?$")]
    pub url: RedisUrl,
    /// TLS settings for a `rediss://` URL; without them `rediss://` trusts the system's roots and
    /// checks the URL's host name.
    #[serde(
        default,
        skip_serializing_if = "Option::is_none",
        deserialize_with = "object_or_null"
    )]
    pub tls: Option<TlsSettings>,
}

/// An optional nested object (`tls`, `rdb`) as an object or null only. serde's derived
/// `Deserialize` would also build a struct from an array of its fields in order (`[null, null]`
/// → all defaults); the schema says object, so an array is refused like any other wrong type.
pub(crate) fn object_or_null<'de, D, T>(d: D) -> Result<Option<T>, D::Error>
where
    D: serde::Deserializer<'de>,
    T: Deserialize<'de>,
{
    struct ObjectOrNull<T>(std::marker::PhantomData<T>);
    impl<'de, T: Deserialize<'de>> serde::de::Visitor<'de> for ObjectOrNull<T> {
        type Value = Option<T>;
        fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
            f.write_str("an object, or null")
        }
        fn visit_none<E: serde::de::Error>(self) -> Result<Self::Value, E> {
            Ok(None)
        }
        fn visit_unit<E: serde::de::Error>(self) -> Result<Self::Value, E> {
            Ok(None)
        }
        fn visit_some<D: serde::Deserializer<'de>>(self, d: D) -> Result<Self::Value, D::Error> {
            d.deserialize_any(self)
        }
        fn visit_map<M: serde::de::MapAccess<'de>>(self, map: M) -> Result<Self::Value, M::Error> {
            T::deserialize(serde::de::value::MapAccessDeserializer::new(map)).map(Some)
        }
    }
    d.deserialize_option(ObjectOrNull(std::marker::PhantomData))
}

/// A nested object that must be an object: not null, and not the array of its fields in order
/// that serde's derived `Deserialize` would also take (the schema says object).
fn object_only<'de, D, T>(d: D) -> Result<T, D::Error>
where
    D: serde::Deserializer<'de>,
    T: Deserialize<'de>,
{
    object_or_null(d)?.ok_or_else(|| serde::de::Error::custom("expected an object, not null"))
}

impl Endpoint {
    /// A server reached as its URL says, with default TLS settings.
    pub fn new(url: RedisUrl) -> Self {
        Endpoint { url, tls: None }
    }

    /// Refuses settings that cannot mean anything: TLS settings on a plain `redis://` URL (they
    /// would be silently ignored, and the user surely meant TLS), a certificate without its key.
    ///
    /// Such an endpoint is still accepted by the API (the schema cannot say "only with
    /// rediss://", and schema-valid requests are accepted): validation fails it under
    /// `tls.files`, and nothing connects with it ([`crate::transport::Peer::new`] refuses it).
    pub fn check(&self) -> Result<(), String> {
        let Some(tls) = &self.tls else {
            return Ok(());
        };
        if !self.url.tls {
            return Err(
                "`tls` settings apply to rediss:// URLs only; change the scheme to rediss:// \
                 (or remove `tls`)"
                    .into(),
            );
        }
        tls.check()
    }
}

/// How to reach a `rediss://` server. Every field is optional. Files are read when a validation,
/// migration, backup or restore starts; their contents (the key above all) are never shown, only
/// their paths.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(default, deny_unknown_fields)]
#[schema(example = json!({"ca_file": "/etc/ferry/redis-ca.pem", "cert_file": "/etc/ferry/client.pem",
    "key_file": "/etc/ferry/client.key"}))]
pub struct TlsSettings {
    /// PEM file with the CA certificate(s) that signed the server's certificate (a private CA);
    /// without it, the system's roots are trusted.
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schema(value_type = Option<String>)]
    pub ca_file: Option<PathBuf>,
    /// PEM file with Ferry's client certificate (and its chain), for servers that require one
    /// (mTLS, `tls-auth-clients yes`). Needs `key_file`.
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schema(value_type = Option<String>)]
    pub cert_file: Option<PathBuf>,
    /// PEM file with the client certificate's private key (PKCS#8, PKCS#1 or SEC1, unencrypted).
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schema(value_type = Option<String>)]
    pub key_file: Option<PathBuf>,
    /// The name the server's certificate must carry (and the SNI sent), when it differs from the
    /// URL's host (e.g. connecting through an IP address or a tunnel).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub server_name: Option<String>,
    /// Accept any server certificate, unchecked. Only for tests and emergencies: anyone between
    /// Ferry and the server could read and change the data. Validation warns and the migration
    /// records a `TlsVerificationSkipped` event.
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    pub insecure_skip_verify: bool,
}

impl TlsSettings {
    fn check(&self) -> Result<(), String> {
        match (&self.cert_file, &self.key_file) {
            (Some(_), None) => {
                return Err(
                    "`tls.cert_file` needs `tls.key_file` (the certificate's private key)".into(),
                )
            }
            (None, Some(_)) => {
                return Err("`tls.key_file` needs `tls.cert_file` (the client certificate)".into())
            }
            _ => {}
        }
        if let Some(name) = &self.server_name {
            if name.is_empty() || name.len() > 253 || name.contains(char::is_whitespace) {
                return Err(
                    "`tls.server_name` must be a DNS name or an IP address, without spaces".into(),
                );
            }
        }
        let empty = |p: &Option<PathBuf>| p.as_ref().is_some_and(|p| p.as_os_str().is_empty());
        if empty(&self.ca_file) || empty(&self.cert_file) || empty(&self.key_file) {
            return Err("a `tls` file path is empty; give a path or leave the field out".into());
        }
        Ok(())
    }
}

/// Where the data comes from: a live server (`{"url": …, "tls": …}`), or an RDB file Ferry holds
/// as a backup (`{"rdb": {"backup_id": …}}`: a backup it took, or a dump uploaded with
/// `POST /v1/backups/upload`). On the wire it is one object with either `url` (and `tls`) or
/// `rdb`, so that every `{"url": …}` spec written before files were a source still reads the same.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(try_from = "SourceBody", into = "SourceBody")]
pub enum Source {
    /// A running server, read over the replication link (or by `SCAN`: see [`SourceRead`]); for a
    /// Redis Cluster, which node of each shard the link reads from ([`Prefer`]).
    Server(Endpoint, SourceRead, Prefer),
    /// A stored backup's RDB file, loaded through the snapshot path (mode `snapshot` only).
    Rdb(RdbSource),
}

impl Source {
    /// The server's address, when the source is a server.
    pub fn url(&self) -> Option<&RedisUrl> {
        self.endpoint().map(|e| &e.url)
    }

    /// The server, when the source is a server.
    pub fn endpoint(&self) -> Option<&Endpoint> {
        match self {
            Source::Server(endpoint, ..) => Some(endpoint),
            Source::Rdb(_) => None,
        }
    }

    /// How a server source is read (a file is read whole: `replication`, its default).
    pub fn read(&self) -> SourceRead {
        match self {
            Source::Server(_, read, _) => *read,
            Source::Rdb(_) => SourceRead::Replication,
        }
    }

    /// Which node of each shard a cluster source is read from (`master` for anything else).
    pub fn prefer(&self) -> Prefer {
        match self {
            Source::Server(_, _, prefer) => *prefer,
            Source::Rdb(_) => Prefer::Master,
        }
    }

    /// The backup, when the source is a file.
    pub fn backup_id(&self) -> Option<uuid::Uuid> {
        match self {
            Source::Server(..) => None,
            Source::Rdb(rdb) => Some(rdb.backup_id),
        }
    }
}

/// A server source shows as its (redacted) URL, a file as `backup <id>`.
impl std::fmt::Display for Source {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Source::Server(endpoint, ..) => write!(f, "{}", endpoint.url),
            Source::Rdb(rdb) => write!(f, "backup {}", rdb.backup_id),
        }
    }
}

impl From<Endpoint> for Source {
    fn from(endpoint: Endpoint) -> Self {
        Source::Server(endpoint, SourceRead::Replication, Prefer::Master)
    }
}

/// A backup used as a migration source.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct RdbSource {
    /// The id of a completed backup (`GET /v1/backups`).
    pub backup_id: uuid::Uuid,
}

/// Where the data comes from: either `url` (a running server, with optional `tls`) or `rdb` (a
/// stored backup, `snapshot` mode only).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
#[schema(example = json!({"rdb": {"backup_id": "0192f3a4-5b6c-7d8e-9f00-112233445566"}}))]
pub struct SourceBody {
    /// A server: `redis://[user[:password]@]host:port`, shown with the password as `***`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schema(value_type = Option<String>, example = "redis://default:***@127.0.0.1:6379",
        pattern = r"^rediss?://(([A-Za-z0-9._~!$&'()*+,;=%-]*)(:[A-Za-z0-9._~!$&'()*+,;=%:-]*)?@)?[A-Za-z0-9.-]+(:(0|[1-9][0-9]{0,3}|[1-5][0-9]{4}|6[0-4][0-9]{3}|65[0-4][0-9]{2}|655[0-2][0-9]|6553[0-5]))?/?$")]
    pub url: Option<RedisUrl>,
    /// TLS settings of a `rediss://` server source.
    #[serde(
        default,
        skip_serializing_if = "Option::is_none",
        deserialize_with = "object_or_null"
    )]
    pub tls: Option<TlsSettings>,
    /// Or a stored backup's RDB file.
    #[serde(
        default,
        skip_serializing_if = "Option::is_none",
        deserialize_with = "object_or_null"
    )]
    pub rdb: Option<RdbSource>,
    /// How a server source is read: `replication` (the default, PSYNC) or `scan` (for servers
    /// that refuse SYNC/PSYNC; weaker: see [`SourceRead`]). Only with `url`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schema(default = "replication")]
    pub read: Option<SourceRead>,
    /// A Redis Cluster source: read each shard from its `master` (the default) or from one of its
    /// `replica`s (a shard without one is read from its master). Only with `url`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schema(default = "master")]
    pub prefer: Option<Prefer>,
}

/// Which node of each shard of a Redis Cluster source Ferry replicates from. `replica` keeps the
/// snapshot's fork and the replication buffer off the masters that serve the application; the
/// cutover still pauses the masters and waits until each replica has all of its master's writes.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum Prefer {
    #[default]
    Master,
    Replica,
}

/// How Ferry reads a server source.
///
/// `replication` connects as a replica (PSYNC): one consistent snapshot, then every write in
/// order, applied exactly once. `scan` is for servers that refuse SYNC/PSYNC (managed services):
/// a pipelined `SCAN` + `DUMP` + `PTTL` copy (big keys read in chunks), then keyspace
/// notifications mark the keys that change, and each is copied again. It is weaker, and says so
/// in validation (`source.read`): no order across keys, no atomic multi-key transactions on the
/// target, a write is caught only through its notification (at-most-once: a lost subscriber
/// connection means a full re-scan), TTLs re-read in milliseconds, and a full verification at
/// cutover is forced.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum SourceRead {
    #[default]
    Replication,
    Scan,
}

impl SourceRead {
    pub fn as_str(self) -> &'static str {
        match self {
            SourceRead::Replication => "replication",
            SourceRead::Scan => "scan",
        }
    }
}

/// The key-space classes of `notify-keyspace-events` a scan reader follows: every class that
/// `A` stands for (generic, string, list, set, hash, zset, expired, evicted, stream).
const NOTIFY_CLASSES: &str = "g$lshzxet";

/// What `notify-keyspace-events` must become for `source.read: scan`, or `None` when `current`
/// already has it: `E` (key-event channels, whose message is the key) and every class of `A`.
/// The classes already set are kept, so other subscribers lose nothing.
pub fn keyspace_notifications_needed(current: &str) -> Option<String> {
    let has =
        |c: char| current.contains(c) || (NOTIFY_CLASSES.contains(c) && current.contains('A'));
    let event = has('E');
    let classes = NOTIFY_CLASSES.chars().all(has);
    if event && classes {
        return None;
    }
    let mut value = current.to_string();
    if !event {
        value.push('E');
    }
    if !classes {
        value.push('A');
    }
    Some(value)
}

impl TryFrom<SourceBody> for Source {
    type Error = String;

    fn try_from(body: SourceBody) -> Result<Self, String> {
        if body.prefer.is_some() && body.url.is_none() {
            return Err(
                "`source.prefer` goes with `source.url` (a cluster's seed node); a backup is read \
                 whole"
                    .into(),
            );
        }
        if body.read.is_some() && body.url.is_none() {
            return Err(
                "`source.read` goes with `source.url` (a server); a backup is read whole".into(),
            );
        }
        match (body.url, body.tls, body.rdb) {
            (Some(url), tls, None) => Ok(Source::Server(
                Endpoint { url, tls },
                body.read.unwrap_or_default(),
                body.prefer.unwrap_or_default(),
            )),
            (None, Some(_), _) => Err("`source.tls` goes with `source.url` (a server)".to_string()),
            (None, None, Some(rdb)) => Ok(Source::Rdb(rdb)),
            (Some(_), _, Some(_)) => {
                Err("`source` takes either `url` or `rdb`, not both".to_string())
            }
            (None, None, None) => Err(
                "`source` needs `url` (a server) or `rdb: {backup_id}` (a stored backup)"
                    .to_string(),
            ),
        }
    }
}

impl From<Source> for SourceBody {
    fn from(source: Source) -> Self {
        match source {
            Source::Server(endpoint, read, prefer) => SourceBody {
                url: Some(endpoint.url),
                tls: endpoint.tls,
                rdb: None,
                // A spec that did not ask reads back without the field, as it was written.
                read: (read != SourceRead::Replication).then_some(read),
                prefer: (prefer != Prefer::Master).then_some(prefer),
            },
            Source::Rdb(rdb) => SourceBody {
                url: None,
                tls: None,
                rdb: Some(rdb),
                read: None,
                prefer: None,
            },
        }
    }
}

/// `snapshot` copies the data once and completes; `live` keeps applying the source's writes until
/// cutover; `dry_run` rehearses a migration: it reads everything and writes nothing.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum Mode {
    #[default]
    Snapshot,
    Live,
    /// Reads the source's whole snapshot and writes nothing to the target (but a short write
    /// probe, removed at once): a report of what the migration would meet. No lease, no restore
    /// point.
    DryRun,
}

/// What to do with a key that already exists on the target.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum OnConflict {
    /// Stop the job and name the key (the safe default).
    #[default]
    Fail,
    /// Overwrite the target's key.
    Replace,
    /// Keep the target's key and count it as skipped.
    Skip,
    /// Flush the target's affected databases (after the restore point) before writing.
    Flush,
}

/// How much to compare after the copy.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum Verify {
    None,
    /// Per-db key counts plus a random sample of keys.
    #[default]
    Sample,
    /// Every key: type, value and TTL.
    Full,
}

/// How the data reaches the target.
///
/// `relay` lets the target replicate *through* Ferry (`REPLICAOF` Ferry, which relays the
/// source's RDB and command stream byte for byte): the target loads the RDB natively, which is
/// the fastest path, but it needs a target that allows `REPLICAOF` and `CONFIG`, can load the
/// source's RDB (same server family, same or newer version) and may be emptied (empty, or
/// `on_conflict: flush`; the relay replaces the whole target, every database). `restore` writes
/// every key with `RESTORE` (or plain commands), which works on any writable target. `auto` picks
/// `relay` when all of its conditions hold and `restore` otherwise; the migration records which
/// and why.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum Transfer {
    #[default]
    Auto,
    Relay,
    Restore,
}

/// The transfer a migration actually uses (`auto` resolved).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum TransferKind {
    Relay,
    Restore,
}

impl TransferKind {
    pub fn as_str(self) -> &'static str {
        match self {
            TransferKind::Relay => "relay",
            TransferKind::Restore => "restore",
        }
    }
}

/// Migration options; every field has a default.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(default, deny_unknown_fields)]
pub struct Options {
    pub on_conflict: OnConflict,
    /// Take a restore point (backup) of the target before the first write, when it holds data.
    pub backup: bool,
    pub verify: Verify,
    /// Pause writes on the source (`CLIENT PAUSE … WRITE`) during cutover, so that nothing is lost
    /// between the last applied write and the switch. The pause is short and renewed until the
    /// target has applied the final offset, then released (a Ferry that dies leaves it to lapse
    /// within seconds); if the source's offset moved anyway, the cutover catches up again.
    pub pause_source_writes_on_cutover: bool,
    /// Keep the source paused while the cutover's verification runs (by default the pause ends
    /// once the target has caught up, and verification compares a source that may move on).
    pub pause_during_verification: bool,
    /// In live mode, cut over by itself once the target has caught up (lag 0).
    pub auto_cutover: bool,
    /// `auto` (default), `relay` or `restore`: see [`Transfer`].
    pub transfer: Transfer,
    /// Migrate hashes whose fields have TTLs into a target without field TTLs (Redis < 7.4,
    /// Valkey < 9) by dropping those TTLs: the fields stay, without expiry. Off by default: then
    /// validation refuses such a pair, counting the keys, and the engine stops at the first field
    /// TTL it meets rather than lose it silently.
    pub drop_field_ttls: bool,
    // ---- shaping: filters, database map, renames (issue #19) ----
    /// Which source keys move, by database, glob pattern and type. Default: every key.
    #[serde(
        skip_serializing_if = "KeyFilter::is_everything",
        deserialize_with = "map_only"
    )]
    pub filter: KeyFilter,
    /// Source database → target database, as a JSON object with the source's number as the key
    /// (`{"3": 0}`); databases not named keep their number. Two source databases may share a
    /// target database only when both are named.
    #[serde(skip_serializing_if = "DbMap::is_empty")]
    #[schema(value_type = std::collections::BTreeMap<String, u32>, example = json!({"3": 0}))]
    pub db_map: DbMap,
    /// Prefix renames, applied after the filter; the first `from_prefix` a key starts with wins.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub rename: Vec<Rename>,
    /// Let `FLUSHDB`/`FLUSHALL` from the source through a filtered, renamed or mapped live
    /// migration (to the mapped database): they then delete target keys outside the filter too.
    /// Off: the migration stops before such a command.
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    pub flush_passthrough: bool,
    // ---- #19: rate limits (see `Limits`) ----
    /// Caps on the writes to the target (`null` = unlimited). The only option that may change
    /// while the migration runs (`PATCH` with `{"options": {"limits": …}}`).
    #[serde(deserialize_with = "map_only")]
    pub limits: Limits,
    // --- source.read: scan (issue #19) ---
    /// With `source.read: scan`: let Ferry turn on the keyspace notifications it needs on the
    /// source (`CONFIG SET notify-keyspace-events`, adding `E` and `A` to what is set). The value
    /// found is recorded (`KeyspaceNotificationsSet`) and put back when the migration ends, on
    /// every path (success, failure, cancel; a restarted job puts it back at its end). Off by
    /// default: validation then fails until the source has them, naming the `CONFIG SET`.
    pub set_keyspace_notifications: bool,
    // ---- dry run and ACL users (issue #19) ----
    /// Dry run only: measure the target's write speed with a short probe (2,000 RESTOREs into
    /// keys under `ferry:probe:<migration id>:`, deleted at once). Off: not one write reaches
    /// the target, and the ETA rests on the read speed alone.
    pub write_probe: bool,
    /// The source's ACL users: `ignore` (validation warns about users the target lacks), `copy`
    /// (re-create them on the target before the first write, refusing users that exist there
    /// with other rules) or `replace` (copy, and overwrite those). `default` and the user Ferry
    /// authenticates as on the target are never changed; Ferry's user on the source is not
    /// copied.
    pub acl: AclMode,
}

/// What to do with the source's ACL users (see [`Options::acl`]).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum AclMode {
    #[default]
    Ignore,
    Copy,
    Replace,
}

impl Default for Options {
    fn default() -> Self {
        Options {
            on_conflict: OnConflict::Fail,
            backup: true,
            verify: Verify::Sample,
            pause_source_writes_on_cutover: true,
            pause_during_verification: false,
            auto_cutover: false,
            transfer: Transfer::Auto,
            drop_field_ttls: false,
            filter: KeyFilter::default(),
            db_map: DbMap::new(),
            rename: Vec::new(),
            flush_passthrough: false,
            limits: Limits::default(),
            set_keyspace_notifications: false,
            write_probe: true,
            acl: AclMode::Ignore,
        }
    }
}

/// Why `on_conflict: skip` is refused in live mode (validation and the engine say the same).
pub const SKIP_IN_LIVE_MODE: &str =
    "on_conflict `skip` cannot be kept in live mode: the source's later writes to a key the \
     target kept are streamed as commands and would change or delete it; use `fail` (the target \
     must not hold the source's keys) or `replace`, or mode `snapshot`";

/// Why a server address cannot be used as written: the field to fix and what to do.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AddressError {
    pub field: &'static str,
    pub detail: String,
}

/// Refuses a URL that names a database (`redis://host:port/3`): a backup captures, and a restore
/// loads, every database under its own number, so a `/3` would be silently ignored.
pub fn check_no_db(url: &RedisUrl, field: &'static str) -> Result<(), AddressError> {
    match url.db {
        None => Ok(()),
        Some(db) => Err(AddressError {
            field,
            detail: format!(
                "`{field}` names database {db} (`/{db}`), but Ferry copies every database under \
                 its own number and cannot limit or renumber them here; remove `/{db}` from the URL"
            ),
        }),
    }
}

/// [`check_no_db`] for a migration's ends: a `/3` would be silently ignored, since the databases
/// a migration moves, and their numbers on the target, are said in one place only:
/// `options.filter.dbs` and `options.db_map`.
fn no_db_in_migration(url: &RedisUrl, field: &'static str) -> Result<(), AddressError> {
    match url.db {
        None => Ok(()),
        Some(db) => Err(AddressError {
            field,
            detail: format!(
                "`{field}` names database {db} (`/{db}`), but a URL does not choose a \
                 migration's databases: remove `/{db}`, and limit the databases with \
                 `options.filter.dbs` (e.g. [{db}]) or renumber them with `options.db_map` \
                 (e.g. {{\"{db}\": 0}})"
            ),
        }),
    }
}

/// The whole request: what to move, from where, to where, and how.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct MigrationSpec {
    #[serde(default)]
    pub name: Option<String>,
    #[schema(value_type = SourceBody)]
    pub source: Source,
    pub target: Endpoint,
    #[serde(default)]
    pub mode: Mode,
    #[serde(default, deserialize_with = "map_only")]
    pub options: Options,
    /// When to start and when the cutover may happen; absent = start when asked, cut over any
    /// time.
    #[serde(
        default,
        skip_serializing_if = "Schedule::is_empty",
        deserialize_with = "object_only"
    )]
    #[schema(default = json!({"start_at": null, "cutover_window": null}))]
    pub schedule: Schedule,
}

impl MigrationSpec {
    /// Checks the addresses (see [`check_no_db`]).
    pub fn check_addresses(&self) -> Result<(), AddressError> {
        if let Some(url) = self.source.url() {
            no_db_in_migration(url, "source.url")?;
        }
        no_db_in_migration(&self.target.url, "target.url")
    }

    /// The filter, map and renames, checked and compiled (see [`crate::shape`]).
    pub fn shape(&self) -> Result<Shape, ShapeError> {
        let o = &self.options;
        let shape = Shape::new(
            &o.filter,
            &o.db_map,
            &o.rename,
            o.flush_passthrough,
            self.mode == Mode::Live,
        )?;
        if shape.is_identity() {
            return Ok(shape);
        }
        let refuse = |field: &str, detail: &str| {
            Err(ShapeError {
                field: field.into(),
                detail: detail.into(),
            })
        };
        if o.transfer == Transfer::Relay {
            return refuse("options.transfer", SHAPED_RELAY);
        }
        if self.source.read() == SourceRead::Scan {
            return refuse(
                "source.read",
                "filters, db_map and rename are applied by the replication reader (and to backup \
                 files), not yet by the scan reader: use `read: replication`, or leave them out",
            );
        }
        if self.mode == Mode::DryRun {
            return refuse(
                "mode",
                "a dry run reports on the whole source and does not apply filters, db_map or \
                 rename yet: leave them out for the dry run",
            );
        }
        Ok(shape)
    }
}

/// Why a filter, map or rename rules out the relay (validation, the transfer choice and input
/// checks say the same).
pub const SHAPED_RELAY: &str =
    "a filter, db_map or rename needs transfer `restore` (or `auto`, which then chooses it): the \
     relay copies the whole server byte for byte and cannot leave keys out or rename them";
// ---- #19: rate limits and maintenance windows (in `spec/shaping.rs`) ----
mod shaping;
pub use shaping::{CutoverWindow, Limits, Schedule, SpecError};

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_apply_when_fields_are_missing() {
        let spec: MigrationSpec = serde_json::from_str(
            r#"{"source":{"url":"redis://a:1"},"target":{"url":"redis://b:2"}}"#,
        )
        .unwrap();
        assert_eq!(spec.mode, Mode::Snapshot);
        assert_eq!(spec.options, Options::default());
        assert!(spec.options.backup);
        assert_eq!(spec.options.verify, Verify::Sample);
    }

    #[test]
    fn unknown_fields_are_refused() {
        let err = serde_json::from_str::<MigrationSpec>(
            r#"{"source":{"url":"redis://a:1"},"target":{"url":"redis://b:2"},"speed":9}"#,
        )
        .unwrap_err();
        assert!(err.to_string().contains("speed"), "{err}");
    }

    #[test]
    fn a_source_is_a_url_or_a_backup_and_reads_back_the_same() {
        let url = r#"{"url":"redis://a:1"}"#;
        let source: Source = serde_json::from_str(url).unwrap();
        assert_eq!(source.url().map(|u| u.port), Some(1));
        assert_eq!(serde_json::to_string(&source).unwrap(), url);

        let rdb = r#"{"rdb":{"backup_id":"0192f3a4-5b6c-7d8e-9f00-112233445566"}}"#;
        let source: Source = serde_json::from_str(rdb).unwrap();
        assert!(source.url().is_none());
        assert!(source.backup_id().is_some());
        assert_eq!(serde_json::to_string(&source).unwrap(), rdb);
    }

    #[test]
    fn tls_settings_read_back_the_same_and_are_checked() {
        let source =
            r#"{"url":"rediss://a:1","tls":{"ca_file":"/ca.pem","insecure_skip_verify":true}}"#;
        let parsed: Source = serde_json::from_str(source).unwrap();
        let endpoint = parsed.endpoint().unwrap();
        assert!(endpoint.tls.as_ref().unwrap().insecure_skip_verify);
        assert_eq!(serde_json::to_string(&parsed).unwrap(), source);
        assert!(endpoint.check().is_ok());

        let plain: Endpoint =
            serde_json::from_str(r#"{"url":"redis://a:1","tls":{"ca_file":"/ca.pem"}}"#).unwrap();
        assert!(plain.check().unwrap_err().contains("rediss://"));
        let half: Endpoint =
            serde_json::from_str(r#"{"url":"rediss://a:1","tls":{"cert_file":"/c.pem"}}"#).unwrap();
        assert!(half.check().unwrap_err().contains("key_file"));
        let err = serde_json::from_str::<Source>(r#"{"tls":{}}"#).unwrap_err();
        assert!(err.to_string().contains("source.url"), "{err}");
    }

    #[test]
    fn source_read_defaults_to_replication_and_goes_only_with_a_url() {
        let plain: Source = serde_json::from_str(r#"{"url":"redis://a:1"}"#).unwrap();
        assert_eq!(plain.read(), SourceRead::Replication);
        let scan = r#"{"url":"redis://a:1","read":"scan"}"#;
        let parsed: Source = serde_json::from_str(scan).unwrap();
        assert_eq!(parsed.read(), SourceRead::Scan);
        assert_eq!(serde_json::to_string(&parsed).unwrap(), scan);
        let explicit: Source =
            serde_json::from_str(r#"{"url":"redis://a:1","read":"replication"}"#).unwrap();
        assert_eq!(explicit, plain);
        let rdb = r#"{"rdb":{"backup_id":"0192f3a4-5b6c-7d8e-9f00-112233445566"},"read":"scan"}"#;
        let err = serde_json::from_str::<Source>(rdb).unwrap_err();
        assert!(err.to_string().contains("source.read"), "{err}");
    }

    #[test]
    fn keyspace_notifications_add_only_what_is_missing() {
        assert_eq!(keyspace_notifications_needed("").as_deref(), Some("EA"));
        assert_eq!(keyspace_notifications_needed("Kx").as_deref(), Some("KxEA"));
        assert_eq!(keyspace_notifications_needed("AE"), None);
        assert_eq!(keyspace_notifications_needed("g$lshzxetE"), None);
        assert_eq!(keyspace_notifications_needed("AK").as_deref(), Some("AKE"));
    }

    #[test]
    fn a_source_with_both_or_neither_is_refused_by_name() {
        let both =
            r#"{"url":"redis://a:1","rdb":{"backup_id":"0192f3a4-5b6c-7d8e-9f00-112233445566"}}"#;
        let err = serde_json::from_str::<Source>(both).unwrap_err();
        assert!(err.to_string().contains("not both"), "{err}");
        let err = serde_json::from_str::<Source>("{}").unwrap_err();
        assert!(err.to_string().contains("backup_id"), "{err}");
        let err = serde_json::from_str::<Source>(r#"{"rdb":{"id":"x"}}"#).unwrap_err();
        assert!(err.to_string().contains("id"), "{err}");
    }
}
