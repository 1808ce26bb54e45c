//! The source side of the replication link: may Ferry replicate from it, from what role, and will
//! the link survive the transfer?
//!
//! Two Redis limits decide whether a long sync succeeds. While the snapshot is produced and read,
//! the source queues every new write for the replica in its output buffer; if that passes
//! `client-output-buffer-limit replica`, the source drops the replica and the sync starts over,
//! forever (the classic endless resync). After an interruption, a replica resumes only if the
//! writes it missed are still in `repl-backlog-size`. Both are compared with the source's current
//! write rate.

use serde_json::json;

use super::{config_mb, fail, human, pass, warn, Inputs, Verdict};
use crate::client::Info;

/// How fast we assume a snapshot moves end to end (fork, transfer, parse, RESTORE), in bytes per
/// second. Deliberately low: overestimating the sync time only makes the advice safer.
pub const ASSUMED_SYNC_BYTES_PER_SEC: u64 = 32 * 1024 * 1024;
/// The shortest sync we plan for, whatever the size: fork and handshake alone take time.
pub const MIN_SYNC_SECS: u64 = 5;
/// Head-room on top of the expected buffer growth: write rates are bursty.
pub const BUFFER_SAFETY_FACTOR: u64 = 2;
/// How long an interruption Ferry should be able to resume from without a new snapshot.
pub const RESUME_WINDOW_SECS: u64 = 60;

const ALTERNATIVES: [&str; 4] = [
    "read the source without replication: `source.read: \"scan\"` (SCAN + DUMP with keyspace \
     notifications; weaker, see the source.read check)",
    "ask the operator to allow PSYNC and REPLCONF for Ferry's user (managed services often rename them)",
    "migrate from a replica of the source that you run yourself",
    "export an RDB file from the source and import it (POST /v1/backups/upload)",
];

pub fn source_replication(inputs: &Inputs) -> Verdict {
    let id = "source.replication";
    if let Some(verdict) = super::source_read::not_replicating(inputs, id) {
        return verdict;
    }
    let facts = inputs.source;
    let commands = facts
        .replication_commands
        .as_ref()
        .map_err(|e| facts.unknown(e))?;
    let denials = facts.acl_denials(&["PSYNC", "REPLCONF"]);
    let details = json!({
        "psync": commands.psync,
        "sync": commands.sync,
        "acl": facts.acl_details(),
        "alternatives": ALTERNATIVES,
    });
    if !commands.psync {
        let sync = if commands.sync {
            "SYNC exists, but Ferry needs PSYNC"
        } else {
            "so is SYNC"
        };
        return fail(
            id,
            format!(
                "PSYNC is renamed or disabled on the source ({sync}): Ferry cannot replicate from it; \
                 set `source.read: \"scan\"` to copy it by SCAN instead; other alternatives: {}",
                ALTERNATIVES[1..].join("; ")
            ),
            details,
        );
    }
    if !denials.is_empty() {
        let user = facts
            .connect
            .as_ref()
            .map(|c| c.user.as_str())
            .unwrap_or("default");
        return warn(
            id,
            format!(
                "user `{user}` may not run the replication commands ({}); grant them with \
                 `ACL SETUSER {user} +psync +replconf`, or use an alternative: {}",
                denials.join("; "),
                ALTERNATIVES.join("; ")
            ),
            details,
        );
    }
    pass(id, "the source accepts PSYNC and REPLCONF", details)
}

pub fn source_role(inputs: &Inputs) -> Verdict {
    let id = "source.role";
    let info = inputs.source.need_info()?;
    let role = info.get("role").unwrap_or("unknown");
    let cluster = info.get("cluster_enabled") == Some("1");
    let master = match (info.get("master_host"), info.get("master_port")) {
        (Some(host), Some(port)) => Some(format!("{host}:{port}")),
        _ => None,
    };
    let link = info.get("master_link_status");
    let details = json!({
        "role": role,
        "cluster_enabled": cluster,
        "master": master,
        "master_link_status": link,
    });
    if cluster {
        // A cluster has a master per shard: `cluster.mode` and the other `cluster.*` checks judge it.
        return pass(
            id,
            "the source is a cluster node; the cluster.* checks judge its shards",
            details,
        );
    }
    match (role, link) {
        ("master", _) => pass(id, "the source is a master", details),
        ("slave" | "replica", Some("up")) => pass(
            id,
            format!(
                "the source is a replica of {}; reading from a replica is fine, it carries every write of its master",
                master.as_deref().unwrap_or("its master")
            ),
            details,
        ),
        ("slave" | "replica", _) => warn(
            id,
            format!(
                "the source is a replica whose link to its master {} is down, so its data may be stale; \
                 repair the link or migrate from the master",
                master.as_deref().unwrap_or("")
            ),
            details,
        ),
        (other, _) => warn(
            id,
            format!("the source reports role `{other}`; expected master or replica"),
            details,
        ),
    }
}

/// The source's write rate in bytes per second, from `instantaneous_input_kbps` (all network
/// input, reads included: an overestimate, which is the safe side).
fn write_rate(info: &Info) -> u64 {
    let kbps = info.float("instantaneous_input_kbps").unwrap_or(0.0);
    (kbps.max(0.0) * 1024.0) as u64
}

/// The dataset size a snapshot has to move, in bytes.
pub fn dataset_bytes(info: &Info) -> u64 {
    info.num("used_memory_dataset")
        .or_else(|| info.num("used_memory"))
        .unwrap_or(0)
}

/// The expected snapshot duration, in seconds.
fn expected_sync_secs(dataset: u64) -> u64 {
    (dataset / ASSUMED_SYNC_BYTES_PER_SEC).max(MIN_SYNC_SECS)
}

pub fn source_output_buffer(inputs: &Inputs) -> Verdict {
    let id = "source.output_buffer";
    if let Some(verdict) = super::source_read::not_replicating(inputs, id) {
        return verdict;
    }
    let info = inputs.source.need_info()?;
    let config = inputs.source.need_config()?;
    let dataset = dataset_bytes(info);
    let rate = write_rate(info);
    let sync_secs = expected_sync_secs(dataset);
    let needed = rate * sync_secs * BUFFER_SAFETY_FACTOR;
    let Some(limit) = config.replica_output_limit() else {
        return warn(
            id,
            "the source did not report `client-output-buffer-limit replica`; check it by hand",
            json!({ "write_bytes_per_sec": rate, "expected_sync_secs": sync_secs }),
        );
    };
    // The soft limit disconnects only if exceeded for longer than soft_seconds.
    let soft_applies = limit.soft_bytes > 0 && limit.soft_seconds < sync_secs;
    let effective = match (limit.hard_bytes, soft_applies) {
        (0, false) => None,
        (0, true) => Some(limit.soft_bytes),
        (hard, true) => Some(hard.min(limit.soft_bytes)),
        (hard, false) => Some(hard),
    };
    let details = json!({
        "limit": limit,
        "effective_limit_bytes": effective,
        "write_bytes_per_sec": rate,
        "dataset_bytes": dataset,
        "expected_sync_secs": sync_secs,
        "needed_bytes": needed,
    });
    match effective {
        None => pass(id, "the replica output buffer is unlimited on the source", details),
        Some(limit_bytes) if needed > limit_bytes => {
            let suggestion = config_mb(needed);
            warn(
                id,
                format!(
                    "at {}/s of writes, a ~{sync_secs}s sync needs about {} of replica output buffer but the \
                     limit is {}: the source would drop the link and the sync would restart endlessly; raise it on the source with \
                     `CONFIG SET client-output-buffer-limit \"replica {suggestion} {suggestion} 0\"`",
                    human(rate),
                    human(needed),
                    human(limit_bytes)
                ),
                details,
            )
        }
        Some(limit_bytes) if rate == 0 => pass(
            id,
            format!(
                "no writes measured right now, so the replica output buffer limit ({}) holds; \
                 validate again under normal load to be sure",
                human(limit_bytes)
            ),
            details,
        ),
        Some(limit_bytes) => pass(
            id,
            format!(
                "the replica output buffer limit ({}) covers the expected {} of writes during the sync",
                human(limit_bytes),
                human(needed)
            ),
            details,
        ),
    }
}

pub fn source_backlog(inputs: &Inputs) -> Verdict {
    let id = "source.backlog";
    if let Some(verdict) = super::source_read::not_replicating(inputs, id) {
        return verdict;
    }
    let info = inputs.source.need_info()?;
    let rate = write_rate(info);
    // INFO reports the size even where CONFIG is renamed; fall back to CONFIG just in case.
    let backlog = info.num("repl_backlog_size").or_else(|| {
        inputs
            .source
            .config
            .as_ref()
            .ok()
            .and_then(|c| c.num("repl-backlog-size"))
    });
    let Some(backlog) = backlog else {
        return warn(
            id,
            "the source did not report repl-backlog-size; check it by hand",
            json!({ "write_bytes_per_sec": rate }),
        );
    };
    let needed = rate * RESUME_WINDOW_SECS;
    let window_secs = backlog.checked_div(rate);
    let details = json!({
        "repl_backlog_size": backlog,
        "write_bytes_per_sec": rate,
        "resume_window_secs": RESUME_WINDOW_SECS,
        "needed_bytes": needed,
        "covers_secs": window_secs,
    });
    match window_secs {
        None => pass(
            id,
            format!(
                "repl-backlog-size is {}; no writes measured right now, so it cannot be too small yet; \
                 validate again under normal load to be sure",
                human(backlog)
            ),
            details,
        ),
        Some(secs) if backlog < needed => warn(
            id,
            format!(
                "repl-backlog-size ({}) holds only ~{secs}s of writes at {}/s: after a longer interruption \
                 Ferry must copy everything again; raise it on the source with `CONFIG SET repl-backlog-size {}`",
                human(backlog),
                human(rate),
                config_mb(needed)
            ),
            details,
        ),
        Some(secs) => pass(
            id,
            format!(
                "repl-backlog-size ({}) holds ~{secs}s of writes at the current rate",
                human(backlog)
            ),
            details,
        ),
    }
}

/// A diskless source waits `repl-diskless-sync-delay` seconds after Ferry asks for its snapshot
/// before it forks (so that other replicas asking meanwhile share the fork). Nothing is wrong,
/// but the migration then sits still for that long, which looks like a hang: say so up front.
pub fn source_sync_delay(inputs: &Inputs) -> Verdict {
    let id = "source.sync_delay";
    if let Some(verdict) = super::source_read::not_replicating(inputs, id) {
        return verdict;
    }
    let config = inputs.source.need_config()?;
    let diskless = config.get("repl-diskless-sync") == Some("yes");
    let delay = config.num("repl-diskless-sync-delay").unwrap_or(0);
    let details = json!({ "repl_diskless_sync": diskless, "repl_diskless_sync_delay_secs": delay });
    if diskless && delay > 0 {
        return warn(
            id,
            format!(
                "the source streams its snapshot diskless and waits repl-diskless-sync-delay \
                 ({delay} s) before it forks, so the migration waits {delay} s before the first \
                 key moves; to start at once run `CONFIG SET repl-diskless-sync-delay 0` on the \
                 source (keep the delay if other replicas sync at the same time: they share the fork)"
            ),
            details,
        );
    }
    let how = if diskless {
        "the source streams its snapshot diskless and forks at once (repl-diskless-sync-delay 0)"
    } else {
        "the source writes its snapshot to disk first (repl-diskless-sync no), then sends it"
    };
    pass(id, how, details)
}
