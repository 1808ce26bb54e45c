//! The target side: may Ferry write there, do the source's databases exist there, and what is in
//! the way?

use std::collections::BTreeMap;

use serde_json::json;

use super::{fail, keys, pass, warn, Inputs, Verdict};
use crate::spec::{Mode, OnConflict};
use crate::validate::error::CallError;

pub fn target_writable(inputs: &Inputs) -> Verdict {
    let id = "target.writable";
    let facts = inputs.target;
    let info = facts.need_info()?;
    let role = info.get("role").unwrap_or("unknown");
    let min_replicas = facts
        .config
        .as_ref()
        .ok()
        .and_then(|c| c.num("min-replicas-to-write"))
        .unwrap_or(0);
    let connected_replicas = info.num("connected_slaves").unwrap_or(0);
    let details = json!({
        "role": role,
        "master_host": info.get("master_host"),
        "master_port": info.get("master_port"),
        "cluster_enabled": info.get("cluster_enabled") == Some("1"),
        "min_replicas_to_write": min_replicas,
        "connected_replicas": connected_replicas,
        "acl": facts.acl_details(),
    });
    if info.get("cluster_enabled") == Some("1") {
        // A cluster has a master per shard: `cluster.mode` and the other `cluster.*` checks judge it.
        return pass(
            id,
            "the target is a cluster node; the cluster.* checks judge its masters",
            details,
        );
    }
    if role == "slave" || role == "replica" {
        let master = format!(
            "{}:{}",
            info.get("master_host").unwrap_or("?"),
            info.get("master_port").unwrap_or("?")
        );
        return fail(
            id,
            format!(
                "the target is a read-only replica of {master}: it refuses writes, and its master would \
                 overwrite them anyway; point Ferry at a master, or run `REPLICAOF NO ONE` on the target"
            ),
            details,
        );
    }
    if min_replicas > connected_replicas {
        return fail(
            id,
            format!(
                "the target refuses writes: min-replicas-to-write is {min_replicas} but only \
                 {connected_replicas} replicas are connected; connect the replicas or lower the setting"
            ),
            details,
        );
    }
    let denials = facts.acl_denials(&["RESTORE", "SELECT"]);
    if !denials.is_empty() {
        let user = facts
            .connect
            .as_ref()
            .map(|c| c.user.as_str())
            .unwrap_or("default");
        return fail(
            id,
            format!(
                "user `{user}` may not run what Ferry needs on the target ({}); grant it with \
                 `ACL SETUSER {user} +restore +select +@write` (target.permissions lists everything)",
                denials.join("; ")
            ),
            details,
        );
    }
    let acl_note = if facts.acl.is_empty() {
        " (ACL rights not checked)"
    } else {
        " and the user may RESTORE and SELECT"
    };
    pass(
        id,
        format!("the target is a writable master{acl_note}"),
        details,
    )
}

pub fn databases(inputs: &Inputs) -> Verdict {
    let id = "databases";
    // Through the migration's filter and db map: the target needs the dbs the data lands in.
    let shape = inputs.spec.shape().unwrap_or_default();
    let mut used: Vec<u32> = inputs
        .source
        .need_info()?
        .keyspace
        .keys()
        .copied()
        .filter(|db| shape.db_in(*db))
        .map(|db| shape.target_db(db))
        .collect();
    used.sort_unstable();
    used.dedup();
    let config = inputs.target.need_config()?;
    let Some(available) = config.num("databases") else {
        return warn(
            id,
            "the target did not report `databases`; check that it has every db the source uses",
            json!({ "source_dbs": used }),
        );
    };
    let missing: Vec<u32> = used
        .iter()
        .copied()
        .filter(|db| u64::from(*db) >= available)
        .collect();
    let details = json!({
        "source_dbs": used,
        "target_databases": available,
        "missing_dbs": missing,
    });
    if let Some(highest) = missing.iter().max() {
        return fail(
            id,
            format!(
                "the migration writes to db {} (the source's dbs after `options.filter.dbs` and \
                 `options.db_map`) but the target has only {available} databases (0–{}); set `databases {}` in the \
                 target's configuration and restart it, or map those databases lower with \
                 `options.db_map`",
                join(&missing),
                available.saturating_sub(1),
                highest + 1
            ),
            details,
        );
    }
    pass(
        id,
        format!("the target has {available} databases, enough for every db the source uses"),
        details,
    )
}

pub fn target_conflicts(inputs: &Inputs) -> Verdict {
    let id = "target.conflicts";
    let info = inputs.target.need_info()?;
    // The lease of another writer is bookkeeping, not data (`target.in_use` reports it).
    let lease = usize::from(matches!(&inputs.target.lease, Some(Ok(Some(_))))) as u64;
    // With `options.filter.dbs`, the migration writes only to their mapped databases: keys
    // elsewhere on the target are in nobody's way (now or later in the stream).
    let lands: Option<std::collections::BTreeSet<u32>> = inputs.spec.shape().ok().and_then(|s| {
        s.dbs()
            .map(|dbs| dbs.iter().map(|db| s.target_db(*db)).collect())
    });
    let per_db: BTreeMap<String, u64> = info
        .keyspace
        .iter()
        .filter(|(db, _)| lands.as_ref().is_none_or(|lands| lands.contains(db)))
        .map(|(db, stats)| {
            let own = if *db == 0 { lease } else { 0 };
            (*db, stats.keys.saturating_sub(own))
        })
        .filter(|(_, keys)| *keys > 0)
        .map(|(db, keys)| (format!("db{db}"), keys))
        .collect();
    let total: u64 = per_db.values().sum();
    let on_conflict = inputs.spec.options.on_conflict;
    let details = json!({ "keys_per_db": per_db, "total_keys": total, "on_conflict": on_conflict });
    let live = inputs.spec.mode == Mode::Live;
    if live && on_conflict == OnConflict::Skip {
        return fail(id, crate::spec::SKIP_IN_LIVE_MODE, details);
    }
    if total == 0 {
        return pass(id, "the target is empty", details);
    }
    let listing = per_db
        .iter()
        .map(|(db, keys)| format!("{db}: {keys}"))
        .collect::<Vec<_>>()
        .join(", ");
    let held = format!("the target already holds {} ({listing})", keys(total));
    match on_conflict {
        OnConflict::Fail => fail(
            id,
            format!(
                "{held} and on_conflict is `fail`; empty the target, or choose on_conflict \
                 `replace`, `skip` or `flush`"
            ),
            details,
        ),
        OnConflict::Replace if live => warn(
            id,
            format!(
                "{held}; keys that also exist on the source will be overwritten (on_conflict \
                 `replace`), and so will a key only the target had when the source writes it \
                 later (live mode forwards the source's commands as they are); a FLUSHALL, \
                 FLUSHDB or SWAPDB from the source stops the migration instead of deleting the \
                 target's other keys"
            ),
            details,
        ),
        OnConflict::Replace => warn(
            id,
            format!("{held}; keys that also exist on the source will be overwritten (on_conflict `replace`)"),
            details,
        ),
        OnConflict::Skip => warn(
            id,
            format!(
                "{held}; keys that also exist on the source keep the target's value (on_conflict \
                 `skip`), also if the snapshot has to be copied again"
            ),
            details,
        ),
        OnConflict::Flush => {
            let restore_point = if inputs.spec.options.backup {
                "after a restore point is taken"
            } else {
                "WITHOUT a restore point (backup is off)"
            };
            warn(
                id,
                format!("{held}; the databases the source uses will be flushed {restore_point} (on_conflict `flush`)"),
                details,
            )
        }
    }
}

/// Who writes to the target now: another migration or restore holding its lease makes `start`
/// answer 409 (unless `force=true` takes it over), so it is said here first. A warning, not a
/// failure: a lease is held only while its writer runs, and one of a Ferry that died lapses by
/// itself.
pub fn target_in_use(inputs: &Inputs) -> Verdict {
    let id = "target.in_use";
    let lease = match &inputs.target.lease {
        Some(Ok(lease)) => lease,
        Some(Err(cause)) => return Err(inputs.target.unknown(cause)),
        None => {
            let side = inputs.target.side;
            return Err(inputs.target.unknown(&CallError::NotConnected { side }));
        }
    };
    match lease {
        None => pass(
            id,
            "no other writer holds the target (its lease `ferry:lease` is free)",
            json!({ "lease": null }),
        ),
        Some(holder) => warn(
            id,
            format!(
                "the target is in use by {holder}; start will be refused (409) while that lasts, \
                 unless `force=true` takes the lease over"
            ),
            json!({ "lease": holder.raw, "owner": holder.owner, "expires_in_ms": holder.expires_in_ms }),
        ),
    }
}

fn join(dbs: &[u32]) -> String {
    dbs.iter()
        .map(u32::to_string)
        .collect::<Vec<_>>()
        .join(", ")
}
