//! The configure guide (`GET /v1/guide/redis`): each prerequisite, why it matters, how to fix it.
//!
//! One item per validation check id (a test keeps them in step with [`super::checks::ALL`]),
//! plus advice no check can enforce, such as the maintenance window.

use serde::Serialize;
use utoipa::ToSchema;

/// One prerequisite of a migration.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct GuideItem {
    /// The validation check that enforces it, when there is one (e.g. `capacity.memory`).
    pub check_id: Option<&'static str>,
    pub title: &'static str,
    /// Why it matters.
    pub why: &'static str,
    /// What to do when the check fails or warns.
    pub how_to_fix: &'static str,
}

const fn item(
    check_id: &'static str,
    title: &'static str,
    why: &'static str,
    how_to_fix: &'static str,
) -> GuideItem {
    GuideItem {
        check_id: Some(check_id),
        title,
        why,
        how_to_fix,
    }
}

/// The minimal ACL user of one side, as one `ACL SETUSER` line.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct GuideUser {
    /// `source` or `target`.
    pub server: &'static str,
    /// The Redis versions the line is for.
    pub versions: &'static str,
    /// Run it on that server (with a real password instead of `CHANGE-ME`), then put the user in
    /// the URL: `redis://ferry-source:PASSWORD@host:port`.
    pub setuser: String,
}

/// The least-privilege users: a source user and a target user, for 7.0+ and for 6.2.
pub fn users() -> Vec<GuideUser> {
    use super::error::Side;
    use super::permissions::setuser_line;
    [
        ("source", Side::Source, "ferry-source"),
        ("target", Side::Target, "ferry-target"),
    ]
    .into_iter()
    .flat_map(|(server, side, user)| {
        [("7.0 and later", true), ("6.2", false)].map(|(versions, redis_7)| GuideUser {
            server,
            versions,
            setuser: setuser_line(side, user, redis_7),
        })
    })
    .collect()
}

/// Every prerequisite, in the order a user should go through them.
pub fn prerequisites() -> Vec<GuideItem> {
    vec![
        item(
            "source.connect",
            "Ferry can reach the source",
            "Ferry reads the data through a replication connection to the source.",
            "Check host, port, TLS (rediss://) and credentials; allow Ferry's address through firewalls. \
             \"authentication failed\" means the user name or password in the URL is wrong.",
        ),
        item(
            "target.connect",
            "Ferry can reach the target",
            "Ferry writes every key to the target and verifies it afterwards.",
            "Check host, port, TLS (rediss://) and credentials; allow Ferry's address through firewalls. \
             \"authentication failed\" means the user name or password in the URL is wrong.",
        ),
        item(
            "distinct_servers",
            "The source and the target are two different servers",
            "Pointing the target at the source (through another address, a NAT or a DNS alias) would make \
             Ferry write the data onto itself. Ferry compares the servers' run_id, which each process draws at start-up.",
            "Point the target URL at the server you want to migrate to.",
        ),
        item(
            "tls.files",
            "Ferry can read the TLS files",
            "`tls.ca_file`, `tls.cert_file` and `tls.key_file` are read when validation, a migration, a backup or \
             a restore starts; a missing, unreadable or wrong-format file stops it before anything is written.",
            "Fix the path or the permissions the message names. Files must be PEM: certificates \
             (-----BEGIN CERTIFICATE-----) and an unencrypted private key (PKCS#8, PKCS#1 or SEC1); decrypt an \
             encrypted key with `openssl pkey -in KEY -out KEY.plain` and make it readable by Ferry's user only.",
        ),
        item(
            "tls.protocol",
            "Each URL says what its port speaks",
            "redis:// to a TLS-only port gets the connection closed without a word; rediss:// to a plain port gets \
             no TLS answer. Neither can carry a migration.",
            "Use rediss:// for the server's TLS port (tls-port) and redis:// for its plain port (port).",
        ),
        item(
            "tls.handshake",
            "The TLS handshake completes",
            "A handshake can fail for reasons other than the certificate: no common protocol version or cipher \
             (Ferry speaks TLS 1.2 and 1.3), or a server that closes the connection.",
            "Check the server's tls-protocols and tls-ciphers (TLS 1.2 or 1.3 with modern ciphers) and its log.",
        ),
        item(
            "tls.chain",
            "The server's certificate is trusted",
            "Ferry checks the server's certificate against the system's roots, or against `tls.ca_file` when one \
             is given: an untrusted certificate could belong to anyone between Ferry and the server.",
            "Give the CA certificate that signed the server's certificate (a private CA, e.g. the server's \
             tls-ca-cert-file) as `tls.ca_file`.",
        ),
        item(
            "tls.hostname",
            "The server's certificate carries the name Ferry connects to",
            "The certificate must name the host of the URL (DNS name or IP address in its subject alternative \
             names), or a certificate for another server would be accepted.",
            "Connect with a name the certificate carries, or set `tls.server_name` to it (e.g. when reaching the \
             server through an IP address or a tunnel).",
        ),
        item(
            "tls.expiry",
            "The server's certificate stays valid through the migration",
            "An expired certificate fails every connection; one that expires within 14 days can expire during a \
             long live migration, and every reconnection then fails.",
            "Renew the server's certificate (and reload it: `CONFIG SET tls-cert-file …`) before migrating.",
        ),
        item(
            "tls.client_certificate",
            "Ferry presents a client certificate the server accepts",
            "A server with tls-auth-clients yes refuses connections without a client certificate signed by a CA \
             it trusts (mutual TLS).",
            "Set `tls.cert_file` and `tls.key_file` to a client certificate signed by the CA in the server's \
             tls-ca-cert-file.",
        ),
        item(
            "tls.verification",
            "Server certificates are verified",
            "`tls.insecure_skip_verify` accepts any certificate: the link is encrypted, but anyone on the path \
             could pose as the server and read or change the data and the passwords. It is a warning here and \
             a `TlsVerificationSkipped` event when the migration starts.",
            "Give `tls.ca_file` (and `tls.server_name` if needed) instead of skipping verification.",
        ),
        item(
            "source.replication",
            "The source allows replication commands",
            "Ferry connects as a replica (REPLCONF, PSYNC). Managed services often rename or forbid PSYNC, \
             and an ACL user needs +psync and +replconf.",
            "Ask the operator to enable PSYNC/REPLCONF for Ferry's user (`ACL SETUSER <user> +psync +replconf`, \
             or remove `rename-command PSYNC`). Alternatives: `source.read: \"scan\"` (copies by SCAN, weaker: \
             see source.read), migrate from a replica you run yourself, or export an RDB file and import it \
             (POST /v1/backups/upload).",
        ),
        item(
            "source.read",
            "How the source is read, and what `source.read: scan` gives up",
            "`replication` (the default) reads one consistent snapshot and then every write in order, applied \
             exactly once. `scan` serves sources that refuse SYNC/PSYNC: SCAN + DUMP + PTTL, big keys in \
             chunks, then every key a keyspace notification names is copied again. It keeps no order across \
             keys, does not carry transactions atomically, follows changes only through notifications (a lost \
             subscriber connection means copying every key again; FLUSHDB/FLUSHALL/SWAPDB are not followed), \
             and always verifies every key at cutover. It needs `notify-keyspace-events` with `E` and `A`, and \
             SCAN, DUMP, PTTL and PSUBSCRIBE (`&__keyevent@*__:*`) for Ferry's user.",
            "Run `CONFIG SET notify-keyspace-events <value>` on the source with the value the check names, or \
             set `options.set_keyspace_notifications: true` (Ferry sets it and puts the old value back when \
             the migration ends). Grant `+psubscribe &__keyevent@*__:*` (and `+config|set` if Ferry sets \
             the notifications) on top of the source line of this guide.",
        ),
        item(
            "source.permissions",
            "Ferry's user on the source may do what the migration needs, and no more",
            "Ferry authenticates as the URL's user (`redis://user:password@…`, AUTH user password) on every \
             link, the replication link included. It needs PSYNC/REPLCONF to replicate, INFO and SELECT, read \
             commands to verify, CLIENT PAUSE/UNPAUSE when pausing writes at cutover, ACL LIST only with \
             `options.acl: copy`, and nothing that writes. \
             Validation asks ACL DRYRUN (7.0+) or evaluates ACL GETUSER against COMMAND INFO (6.2).",
            "Create a user with exactly the rights of the source line under `users` in this guide (one line \
             for Redis 7.0+, one for 6.2), or grant the missing commands the check names.",
        ),
        item(
            "target.permissions",
            "Ferry's user on the target may do what the migration needs, and no more",
            "Ferry writes the snapshot with RESTORE in MULTI/EXEC, applies the live stream (any write command \
             the source's clients send, hence +@write), verifies with read commands, and FLUSHALL is needed \
             only to roll back (FLUSHDB for on_conflict flush), and ACL LIST and ACL SETUSER only with \
             `options.acl: copy`. Validation checks each of them for the URL's user.",
            "Create a user with exactly the rights of the target line under `users` in this guide. If \
             applications PUBLISH on the source, the stream carries it: add `+publish &*`.",
        ),
        item(
            "source.role",
            "The source is a master or a healthy replica",
            "Reading from a replica is fine and spares the master. A replica whose master link is down serves \
             stale data. A cluster node passes here: the cluster.* checks judge its shards.",
            "Repair a broken master link or migrate from the master.",
        ),
        item(
            "cluster.mode",
            "Ferry can move this topology with these options",
            "A server is a Redis Cluster when its INFO says cluster_enabled:1; the URL may name any node \
             and the shards are discovered with CLUSTER SHARDS (7.0+) or CLUSTER SLOTS (6.2). Cluster → \
             cluster, standalone → cluster and cluster → standalone all move: one replication link per \
             source master, and a slot-routed writer with one offset key per target slot. Options the \
             cluster path does not carry fail here by name: a dry run, transfer relay, on_conflict \
             flush, source.read scan from a cluster, and into a cluster on_conflict skip, acl copy or \
             replace, an RDB file, and a restore point of a target that holds keys.",
            "Use the option the message names instead (for a restore point: options.backup false, or an \
             empty target).",
        ),
        item(
            "cluster.coverage",
            "Every slot of a cluster is served and every master answers",
            "A slot no master serves has no place for its keys; a master Ferry cannot reach is a shard \
             it cannot read or write; masters that disagree on the map are mid-change.",
            "Run `redis-cli --cluster check <node>`, repair with `redis-cli --cluster fix <node>`, and \
             make every master reachable from Ferry with the URL's credentials.",
        ),
        item(
            "cluster.slots_stable",
            "No slot is being resharded",
            "A slot being imported or migrated has its keys on two nodes: what a read sees depends on \
             timing, so a migration must not start in the middle of one.",
            "Let the resharding finish, or close it with `redis-cli --cluster fix <node>`.",
        ),
        item(
            "cluster.databases",
            "A cluster target receives db 0 only",
            "A cluster has only db 0. Keys of other databases of a standalone source need a rule that \
             says where they go, and must not collide there.",
            "Map each database with `options.db_map` (`{\"0\": 0, \"1\": 0, \"2\": 0}`: an explicit choice, since keys \
             from several databases may collide), leave it out with `options.filter.dbs`, or move the \
             keys into db 0 first.",
        ),
        item(
            "cluster.transactions",
            "A source transaction stays atomic, or its split is announced",
            "A cluster refuses MULTI across slots. Streaming from a standalone source into a cluster, \
             a MULTI/EXEC whose keys fall in several target slots is applied slot by slot (each part \
             whole) and recorded as a TransactionSplit event; this check warns in live mode with the \
             source's count of MULTI calls. A cluster source's transactions already keep to one slot.",
            "Keep a transaction's keys in one slot with a hash tag ({user:1}:a, {user:1}:b), or accept \
             the split.",
        ),
        item(
            "cluster.memory",
            "Every target master has room for its slots' keys",
            "Each source shard's dataset is spread evenly over its slots and placed on the target's masters \
             by slot, plus a 20% margin; a master that fills up refuses writes (OOM) or evicts.",
            "Raise maxmemory on the named masters, or rebalance or add masters to the target.",
        ),
        item(
            "target.writable",
            "The target accepts Ferry's writes",
            "A replica refuses writes (and its master would overwrite them), min-replicas-to-write can refuse \
             them (a cluster node passes here: the cluster.* checks judge its masters), and an ACL user needs RESTORE, SELECT and FLUSHDB (checked with ACL DRYRUN on Redis 7.0+).",
            "Point Ferry at a master or run `REPLICAOF NO ONE` on the target; grant \
             `ACL SETUSER <user> +restore +select +flushdb` and the write commands of your data types.",
        ),
        item(
            "versions",
            "The target can express every value of the source",
            "A target older than the source, or of the other fork (Redis vs Valkey), cannot load every encoding \
             through RESTORE, so Ferry rewrites those values as commands, which is slower; commands of the \
             stream it lacks are rewritten into its own. Some data cannot be expressed at all: hash field TTLs \
             need Redis 7.4+ or Valkey 9+ (counted by INFO keyspace `subexpiry` / `keys_with_volatile_items`).",
            "Prefer a target at least as new as the source; remove hash field TTLs (HPERSIST), use a target \
             that has them, or set `options.drop_field_ttls` to migrate the fields without their TTLs.",
        ),
        item(
            "databases",
            "Every database the source uses exists on the target",
            "Keys keep their db number; a target with fewer `databases` cannot hold db 5.",
            "Set `databases N` in the target's configuration (one more than the highest db the source uses) \
             and restart it; it cannot be changed at runtime.",
        ),
        item(
            "filter.matches",
            "The migration's filter selects some key",
            "`options.filter` (databases, globs, types) decides which keys move; one that matches nothing copies \
             nothing. Validation walks the source with SCAN (at most 50 calls of 1,000 keys) and counts what passes.",
            "Check the globs (they match as `SCAN … MATCH` does, case-sensitive) and `filter.dbs`.",
        ),
        item(
            "target.conflicts",
            "The target holds no keys in the way",
            "Keys already on the target collide with migrated ones. With on_conflict `fail` (the default) a \
             non-empty target fails validation.",
            "Empty the target, or choose on_conflict `replace` (overwrite), `skip` (keep the target's value) or \
             `flush` (flush the affected dbs after a restore point).",
        ),
        item(
            "target.in_use",
            "No other writer holds the target",
            "One writer per target: a migration, a restore or a rollback holds the target's lease \
             (`ferry:lease` in db 0, renewed while it runs, expiring 15 s after its Ferry dies; \
             on a cluster, the one key on the master serving its slot, whichever node the URL names). \
             A second writer's sweep or flush could destroy the first one's data, so start is \
             refused with 409 naming the holder.",
            "Wait for the holder to end, cancel it, or, if its Ferry is gone for good, start with \
             `force=true` to take the lease over (recorded as LeaseAcquired with took_over).",
        ),
        item(
            "capacity.memory",
            "The target has memory for the dataset",
            "The target needs the source's used_memory_dataset plus a margin below its maxmemory; an eviction \
             policy other than noeviction may silently drop migrated keys when memory fills.",
            "Raise the target's maxmemory (`CONFIG SET maxmemory …`) or free memory; use \
             `maxmemory-policy noeviction` during the migration.",
        ),
        item(
            "capacity.disk",
            "The target and Ferry have disk for the dataset",
            "A persisting target writes a full new RDB/AOF next to the old one; Ferry's data_dir holds the \
             restore point of a non-empty target and the spool. Ferry measures disks on its own host; a remote \
             target's disk can only be checked by you.",
            "Free space under the target's `dir` (twice the dataset) and under Ferry's data_dir, or move them \
             to bigger disks.",
        ),
        item(
            "source.output_buffer",
            "The source's replica output buffer survives the sync",
            "During a sync the source buffers new writes for the replica; past `client-output-buffer-limit replica` \
             it drops the link and the sync starts over, forever (the classic endless resync).",
            "Raise the limit on the source, e.g. `CONFIG SET client-output-buffer-limit \"replica 1gb 1gb 0\"`, \
             to the size the check suggests, or migrate in a quieter period.",
        ),
        item(
            "source.backlog",
            "The source's backlog covers a short interruption",
            "After a dropped link Ferry resumes with PSYNC only while the missed writes are still in \
             repl-backlog-size; otherwise it must copy everything again.",
            "Raise `repl-backlog-size` on the source to the size the check suggests (a minute of writes).",
        ),
        item(
            "source.sync_delay",
            "The source starts its snapshot without a long wait",
            "A source that streams its snapshot diskless (repl-diskless-sync yes, the default from Redis 7.0) \
             waits repl-diskless-sync-delay seconds (5 by default) before it forks, so that other replicas can \
             share the fork. The migration shows \"waiting for the source's snapshot\" meanwhile.",
            "`CONFIG SET repl-diskless-sync-delay 0` on the source to start at once; keep the delay if other \
             replicas sync at the same time.",
        ),
        item(
            "modules",
            "The target loads every module the source uses",
            "Module keys (RedisJSON, RedisBloom, RedisTimeSeries, Redis 8's vector sets…) can only be written \
             where the module is loaded. A module missing on the target only warns, since a source may load one \
             it holds no key of (Redis 8 loads `vectorset` by itself); the migration stops at the first key of \
             it, naming module and key, and never drops it silently.",
            "Load the named modules on the target (`loadmodule /path/to/module.so`), at least the source's versions.",
        ),
        item(
            "acl.users",
            "The target knows the users the applications log in as",
            "ACL users are not part of the data: a migration copies keys, not users, so clients that \
             authenticate as a user the target lacks are refused after cutover. `options.acl: copy` re-creates \
             the source's users on the target before the first write (`ACL LIST` on both servers, then \
             `ACL SETUSER <name> reset <rules>` with the passwords as their hashes, never in clear); it refuses \
             users that exist on the target with other rules unless `acl` is `replace`. `default` and the user \
             Ferry logs in as on the target are never changed (changing them could lock Ferry or every client \
             out mid-migration).",
            "Set `options.acl` to `copy` (or `replace`), and allow Ferry's users `+acl|list` on the source and \
             `+acl|list +acl|setuser` on the target; or create the users the check names on the target by hand.",
        ),
        item(
            "keyspace_notifications",
            "Keyspace notifications match",
            "Applications subscribed to keyspace events get different events after cutover if \
             notify-keyspace-events differs.",
            "Align it on the target: `CONFIG SET notify-keyspace-events <source value>`.",
        ),
        item(
            "maxmemory_policy",
            "The eviction policy matches",
            "A different maxmemory-policy evicts different keys (or refuses writes) once memory fills after cutover.",
            "Align it on the target: `CONFIG SET maxmemory-policy <source value>`.",
        ),
        item(
            "persistence",
            "Persistence settings match",
            "save, appendonly and appendfsync decide what survives a restart; a difference changes what the \
             application can lose after cutover.",
            "Align them on the target with CONFIG SET, then CONFIG REWRITE.",
        ),
        item(
            "transfer",
            "The transfer: relay or restore",
            "A relay lets the target replicate through Ferry and load the RDB natively, the fastest way \
             and one whose exactly-once rests on Redis' own replication; restore writes every key with \
             RESTORE and works on any writable target. `transfer: auto` picks relay when the five relay.* \
             checks hold.",
            "Nothing to fix for auto. For transfer relay, fix the relay.* checks that fail, or choose auto \
             or restore.",
        ),
        item(
            "relay.commands",
            "Relay: the target allows REPLICAOF and CONFIG SET",
            "The target is told REPLICAOF Ferry, its masterauth, replica-read-only and repl-diskless-load \
             are set for the copy and put back afterwards; a managed service or an ACL user without these \
             commands cannot be relayed to (cluster mode refuses REPLICAOF too).",
            "Allow them for Ferry's user (`ACL SETUSER ferry +replicaof +config|set +config|get`, part of the \
             minimal target rules), or use transfer restore.",
        ),
        item(
            "relay.versions",
            "Relay: the target loads the source's RDB",
            "A replica loads the RDB of its own server family at its own version or older, and executes the \
             source's commands as they are.",
            "Use a target of the same family (Redis or Valkey) at the source's version or newer, or transfer \
             restore (which rewrites what an older target cannot load).",
        ),
        item(
            "relay.target_empty",
            "Relay: the target may be emptied",
            "A replica's first sync replaces its whole dataset (every database), so a relay needs an empty \
             target, or on_conflict flush after the restore point.",
            "Empty the target, choose on_conflict flush (with backup on), or use transfer restore.",
        ),
        item(
            "relay.reachable",
            "Relay: the target can reach Ferry",
            "The target connects to Ferry's relay listener ([relay] bind, told to it as [relay] advertise); \
             a loopback address only reaches targets on Ferry's own host.",
            "Set [relay] bind to an interface the target can reach (e.g. 0.0.0.0:6390) and advertise to \
             Ferry's address as the target sees it (open that port).",
        ),
        item(
            "relay.tls",
            "Relay: the target replicates from Ferry over plain TCP",
            "Ferry reads a rediss:// source over TLS itself, but its relay listener serves plain TCP: the \
             target would receive the data unencrypted, and a target with tls-replication yes would dial \
             the listener with TLS and fail. Ferry cannot give the target the certificates it would need.",
            "Nothing to fix for auto (a rediss:// target, or one with tls-replication yes, takes the \
             restore path, which writes over TLS). For transfer relay, use a plain redis:// target on a \
             trusted network, or transfer restore.",
        ),
        GuideItem {
            check_id: None,
            title: "Plan a maintenance window for the cutover",
            why: "Between the last write applied and the switch of the clients, writes to the source would be \
                  lost; pausing source writes during cutover closes that gap but stops writers briefly.",
            how_to_fix: "Schedule the cutover at a quiet time and use pause_source_writes_on_cutover.",
        },
    ]
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::validate::checks::ALL;

    #[test]
    fn every_check_id_has_exactly_one_guide_item() {
        let items = prerequisites();
        for check in ALL {
            let count = items
                .iter()
                .filter(|i| i.check_id == Some(check.id))
                .count();
            assert_eq!(count, 1, "guide items for {}", check.id);
        }
        let known: Vec<&str> = ALL.iter().map(|c| c.id).collect();
        for item in items.iter().filter_map(|i| i.check_id) {
            assert!(known.contains(&item), "guide item for unknown check {item}");
        }
    }
}
