//! The relay's hold on the target: what it learns, what it changes, and how it lets go.
//!
//! A relay makes the target a replica of Ferry, which changes the target's role and a few of its
//! settings. Every change is recorded before it is made ([`RelayTargetSettings`] in the
//! `TransferChosen` event, none of it secret) and undone by [`Release::run`] on every way out:
//! after cutover, on cancel, on failure, and by a restarted Ferry that finds the job over.
//!
//! The password the target authenticates to Ferry with is its `masterauth`. When the target has
//! none (the usual case for a standalone primary), Ferry sets a one-time secret, prefixed
//! `ferry-relay-` so that it can be recognised and cleared later even by a Ferry that restarted
//! (and never knew it). When the target already has one (a node of a replicated setup), Ferry
//! leaves it alone and accepts that password: it reads it with the same `CONFIG` rights the relay
//! needs anyway, and there is then nothing to put back, and nothing secret to keep across a crash.

use std::time::Duration;

use crate::client::{ClientError, Conn};
use crate::model::{RelayTargetSettings, LEASE_KEY};
use crate::rdb::version::{Fork, ServerVersion};
use crate::relay::choice::{self, RelayFacts};
use crate::relay::RelaySettings;
use crate::resp::Frame;
use crate::spec::MigrationSpec;
use crate::transport::Peer;

/// The prefix of a `masterauth` Ferry generated.
pub(crate) const SECRET_PREFIX: &str = "ferry-relay-";

/// The server's fork and version from `INFO server`; unlike [`crate::engine::server_version`]
/// nothing is assumed when it does not say (a relay changes the target's role).
pub(crate) async fn server_kind(conn: &mut Conn) -> Result<ServerVersion, ClientError> {
    let info = conn.info("server").await?;
    info.server().ok_or_else(|| ClientError::NotRedis {
        addr: conn.addr().to_string(),
        detail: "INFO server has neither redis_version nor valkey_version".into(),
    })
}

/// Keys in every database of `INFO keyspace`.
pub(crate) async fn total_keys(conn: &mut Conn) -> Result<u64, ClientError> {
    Ok(conn.info("keyspace").await?.total_keys())
}

/// The target's keys, not counting the lease this migration holds on it (`ferry:lease`, db 0):
/// the lease is Ferry's own, and the replica's first sync replacing it is no conflict.
async fn keys_but_the_lease(target: &mut Conn) -> Result<u64, ClientError> {
    let total = total_keys(target).await?;
    target.select(0).await?;
    let lease = match target.call(&["EXISTS", LEASE_KEY]).await? {
        Frame::Integer(n) => n.max(0) as u64,
        _ => 0,
    };
    Ok(total.saturating_sub(lease))
}

/// Reads what [`choice::choose`] needs from the two servers.
pub(crate) async fn gather_facts(
    spec: &MigrationSpec,
    source: &mut Conn,
    target: &mut Conn,
    relay: &RelaySettings,
) -> RelayFacts {
    let show = |e: ClientError| e.to_string();
    let source_kind = server_kind(source).await.map_err(show);
    let target_kind = server_kind(target).await.map_err(show);
    let target_keys = keys_but_the_lease(target).await.map_err(show);
    let target_commands = commands_allowed(target, target_kind.as_ref().ok()).await;
    // Unknown (CONFIG refused) counts as "no": `relay.commands` fails on CONFIG then anyway.
    let tls_replication = config_get(target, "tls-replication").await.ok();
    RelayFacts {
        requested: spec.options.transfer,
        on_conflict: spec.options.on_conflict,
        source: source_kind,
        target: target_kind,
        target_keys,
        target_commands,
        reachable: choice::reachability(relay.advertised_host().as_deref(), &spec.target.url.host),
        plain_hop: choice::plain_hop(spec.target.url.tls, tls_replication.as_deref()),
        shaped: spec.shape().map_or(true, |s| !s.is_identity()),
    }
}

/// Whether Ferry may run `REPLICAOF` and `CONFIG SET` on the target.
async fn commands_allowed(target: &mut Conn, kind: Option<&ServerVersion>) -> Result<(), String> {
    let cluster = target.info("cluster").await.map_err(|e| e.to_string())?;
    if cluster.get("cluster_enabled") == Some("1") {
        return Err("it runs in cluster mode, where REPLICAOF is refused".into());
    }
    match target.call(&["CONFIG", "GET", "masterauth"]).await {
        Ok(Frame::Error(e)) => {
            return Err(format!("CONFIG GET: {}", String::from_utf8_lossy(&e)));
        }
        Err(e) => return Err(e.to_string()),
        Ok(_) => {}
    }
    match target.call(&["COMMAND", "INFO", "replicaof"]).await {
        Ok(Frame::Array(entries)) if entries.first().is_some_and(|e| *e != Frame::Null) => {}
        Ok(Frame::Error(e)) => {
            return Err(format!("COMMAND INFO: {}", String::from_utf8_lossy(&e)));
        }
        Ok(_) => return Err("REPLICAOF is renamed or disabled".into()),
        Err(e) => return Err(e.to_string()),
    }
    // ACL DRYRUN exists from 7.0 on; older servers answer for the default user's rights only.
    let has_dry_run = kind.is_some_and(|k| k.fork == Fork::Valkey || k.major >= 7);
    if !has_dry_run {
        return Ok(());
    }
    let user = match target.call(&["ACL", "WHOAMI"]).await {
        Ok(Frame::Bulk(user)) => String::from_utf8_lossy(&user).into_owned(),
        Ok(Frame::Simple(user)) => String::from_utf8_lossy(&user).into_owned(),
        // No right to ask who we are: the real commands will tell, when they run.
        _ => return Ok(()),
    };
    for probe in [
        vec!["ACL", "DRYRUN", &user, "REPLICAOF", "NO", "ONE"],
        vec!["ACL", "DRYRUN", &user, "CONFIG", "SET", "masterauth", "x"],
    ] {
        match target.call(&probe).await {
            Ok(Frame::Simple(ok)) if &ok[..] == b"OK" => {}
            Ok(Frame::Bulk(reason)) | Ok(Frame::Error(reason)) => {
                return Err(format!(
                    "{} for user {user}: {}",
                    probe[3..].join(" "),
                    String::from_utf8_lossy(&reason)
                ))
            }
            _ => {}
        }
    }
    Ok(())
}

/// Lets the target's first load come straight from the socket, when it holds nothing but this
/// migration's lease; returns whether it did.
///
/// `prepare` sets `repl-diskless-load on-empty-db`, but Redis counts the lease key, so such a
/// target is "not empty" and writes the whole RDB to disk before loading it (1M keys of the
/// benchmark mix: 3.6–4.0 s instead of the 2.0–2.4 s of a native diskless sync). `swapdb` loads
/// from the socket whatever the target holds, but keeps what it holds in memory until the load
/// has succeeded: harmless for one key, a second copy of the dataset for a full one. Hence only
/// here, and [`load_through_disk_unless_empty`] once the first load is in.
pub(crate) async fn load_from_socket_if_empty(target: &mut Conn) -> Result<bool, ClientError> {
    if keys_but_the_lease(target).await? > 0 {
        return Ok(false);
    }
    target
        .call_ok(&["CONFIG", "SET", "repl-diskless-load", "swapdb"])
        .await?;
    Ok(true)
}

/// Back to `on-empty-db` after the first load: a later full resync (a source backlog overrun)
/// finds the dataset on the target, and must not hold two copies of it in memory.
pub(crate) async fn load_through_disk_unless_empty(target: &mut Conn) -> Result<(), ClientError> {
    target
        .call_ok(&["CONFIG", "SET", "repl-diskless-load", "on-empty-db"])
        .await?;
    Ok(())
}

/// What [`prepare`] found and did.
pub(crate) struct Prepared {
    /// The password the target will authenticate with.
    pub secret: String,
    /// What to put back.
    pub release: Release,
}

/// Reads the settings a relay changes, before it changes them.
pub(crate) async fn read_settings(target: &mut Conn) -> Result<RelayTargetSettings, ClientError> {
    let masterauth = config_get(target, "masterauth").await?;
    Ok(RelayTargetSettings {
        replica_read_only: config_get(target, "replica-read-only").await?,
        repl_diskless_load: config_get(target, "repl-diskless-load").await?,
        // A secret of ours found here is a leftover of an earlier run of this job.
        masterauth_generated: masterauth.is_empty() || masterauth.starts_with(SECRET_PREFIX),
    })
}

async fn config_get(conn: &mut Conn, name: &str) -> Result<String, ClientError> {
    let reply = conn.call_ok(&["CONFIG", "GET", name]).await?;
    let value = match reply {
        Frame::Array(items) => items.get(1).and_then(|v| v.as_bytes().cloned()),
        _ => None,
    };
    Ok(value
        .map(|v| String::from_utf8_lossy(&v).into_owned())
        .unwrap_or_default())
}

/// Makes the target ready to replicate through Ferry: a password to authenticate with, writes
/// refused from clients (`replica-read-only yes`: a stray write would diverge it from the source),
/// and a load straight from the socket into the (empty) dataset.
pub(crate) async fn prepare(
    target: &mut Conn,
    peer: &Peer,
    original: &RelayTargetSettings,
    keep: Option<&str>,
) -> Result<Prepared, ClientError> {
    let current = config_get(target, "masterauth").await?;
    let secret = if original.masterauth_generated {
        let wanted = match keep {
            Some(secret) => secret.to_string(),
            // Ours, from before a restart of Ferry: the target is still using it.
            None if current.starts_with(SECRET_PREFIX) => current.clone(),
            None => format!(
                "{SECRET_PREFIX}{}",
                crate::relay::random_hex(32).map_err(|e| ClientError::Io {
                    addr: target.addr().to_string(),
                    source: e,
                })?
            ),
        };
        if current != wanted {
            target
                .call_ok(&["CONFIG", "SET", "masterauth", &wanted])
                .await?;
        }
        wanted
    } else {
        current
    };
    target
        .call_ok(&["CONFIG", "SET", "replica-read-only", "yes"])
        .await?;
    target
        .call_ok(&["CONFIG", "SET", "repl-diskless-load", "on-empty-db"])
        .await?;
    Ok(Prepared {
        secret,
        release: Release {
            peer: peer.clone(),
            original: original.clone(),
        },
    })
}

/// How to give the target back: `REPLICAOF NO ONE` and the original settings.
#[derive(Debug, Clone)]
pub(crate) struct Release {
    /// The target's link (TLS and ACL user as the job's own).
    pub peer: Peer,
    pub original: RelayTargetSettings,
}

impl Release {
    /// Runs on a fresh connection (the job's may be mid-call or gone). Returns the settings put
    /// back, as `name=value`.
    pub async fn run(&self) -> Result<Vec<String>, ClientError> {
        let mut conn = Conn::connect(&self.peer).await?;
        self.run_on(&mut conn).await
    }

    pub async fn run_on(&self, conn: &mut Conn) -> Result<Vec<String>, ClientError> {
        conn.call_ok(&["REPLICAOF", "NO", "ONE"]).await?;
        let mut restored = vec!["replicaof=no one".to_string()];
        let o = &self.original;
        for (name, value) in [
            ("replica-read-only", o.replica_read_only.as_str()),
            ("repl-diskless-load", o.repl_diskless_load.as_str()),
        ] {
            if !value.is_empty() {
                conn.call_ok(&["CONFIG", "SET", name, value]).await?;
                restored.push(format!("{name}={value}"));
            }
        }
        if o.masterauth_generated {
            conn.call_ok(&["CONFIG", "SET", "masterauth", ""]).await?;
            restored.push("masterauth=(cleared)".to_string());
        }
        Ok(restored)
    }

    /// [`Release::run`] within a bound, logging instead of failing: it runs on the way out of a
    /// job that is already ending for another reason.
    pub async fn run_bounded(&self, why: &str) -> Option<Vec<String>> {
        match tokio::time::timeout(Duration::from_secs(15), self.run()).await {
            Ok(Ok(restored)) => {
                tracing::info!(target = %self.peer.url(), why, ?restored, "relay target released");
                Some(restored)
            }
            Ok(Err(e)) => {
                tracing::error!(target = %self.peer.url(), why, error = %e,
                    "could not release the relay target: run REPLICAOF NO ONE on it by hand");
                None
            }
            Err(_) => {
                tracing::error!(target = %self.peer.url(), why,
                    "releasing the relay target timed out: run REPLICAOF NO ONE on it by hand");
                None
            }
        }
    }
}

/// Where the target replicates from, per `INFO replication`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct TargetRole {
    /// `None` for a master.
    pub master: Option<(String, u16)>,
    /// The offset it has processed (`slave_repl_offset`, or `master_repl_offset`).
    pub offset: i64,
    /// `master_link_status:up`.
    pub link_up: bool,
    /// Still loading an RDB (`master_sync_in_progress:1`).
    pub syncing: bool,
}

pub(crate) async fn role(target: &mut Conn) -> Result<TargetRole, ClientError> {
    let info = target.info("replication").await?;
    let get = |k: &str| info.get(k).unwrap_or_default().to_string();
    let master = (get("role") == "slave").then(|| {
        (
            get("master_host"),
            get("master_port").parse::<u16>().unwrap_or(0),
        )
    });
    let offset = info
        .get("slave_repl_offset")
        .or_else(|| info.get("master_repl_offset"))
        .and_then(|o| o.parse().ok())
        .unwrap_or(0);
    Ok(TargetRole {
        master,
        offset,
        link_up: get("master_link_status") == "up",
        syncing: get("master_sync_in_progress") == "1",
    })
}
