//! The `cluster.*` checks: what a Redis Cluster on either side needs before anything is written.
//!
//! A server is a cluster when its `INFO` says `cluster_enabled:1`; the URL may name any node (the
//! seed) and the rest is discovered (see [`crate::validate::cluster_facts`]). Until the engine
//! moves data from and to clusters, `cluster.mode` refuses every topology with a cluster in it:
//! the other checks already say what such a migration would need (full coverage, no slot in
//! motion, memory on every master), so a report explains the whole picture.

use serde_json::{json, Value};

use super::replication::dataset_bytes;
use super::{fail, human, pass, warn, Inputs, Unknown, Verdict};
use crate::client::Info;
use crate::cluster::{MoveDirection, Ranges, Slot, SLOTS};
use crate::spec::{AclMode, Mode, OnConflict, SourceRead, Transfer};
use crate::validate::cluster_facts::ClusterFacts;
use crate::validate::error::Side;
use crate::validate::facts::ServerFacts;

use super::capacity::MEMORY_MARGIN_PERCENT;

/// A side's cluster facts: `None` for a standalone server, `Unknown` when discovery failed.
fn cluster_of(facts: &ServerFacts) -> Result<Option<&ClusterFacts>, Unknown> {
    facts.need_info()?;
    match &facts.cluster {
        None => Ok(None),
        Some(Ok(cluster)) => Ok(Some(cluster)),
        Some(Err(cause)) => Err(facts.unknown(cause)),
    }
}

fn describe(side: Side, cluster: Option<&ClusterFacts>) -> String {
    match cluster {
        None => format!("the {side} is a standalone server"),
        Some(c) => format!(
            "the {side} is a Redis Cluster of {} master{} (found with {})",
            c.masters.len(),
            if c.masters.len() == 1 { "" } else { "s" },
            c.seed.command
        ),
    }
}

fn side_details(cluster: Option<&ClusterFacts>) -> Value {
    match cluster {
        None => json!({ "cluster_enabled": false }),
        Some(c) => json!({
            "cluster_enabled": true,
            "discovered_with": c.seed.command,
            "masters": c.masters.iter().map(|m| json!({
                "id": m.node.id,
                "addr": m.node.addr(),
                "slots": m.slots,
                "replicas": c.seed.map.shards.iter()
                    .find(|s| s.master.id == m.node.id)
                    .map_or(0, |s| s.replicas.len()),
            })).collect::<Vec<_>>(),
        }),
    }
}

/// `cluster.mode`: which topology this is, the mismatch explained, and whether Ferry moves it
/// with these options.
///
/// Every pairing moves (cluster → cluster, standalone → cluster, cluster → standalone), through
/// the replication link to each source master and the slot-routed writer on a cluster target.
/// What fails is an option the cluster path does not carry, named with what to use instead.
pub fn mode(inputs: &Inputs) -> Verdict {
    let id = "cluster.mode";
    let source = cluster_of(inputs.source)?;
    let target = cluster_of(inputs.target)?;
    let details = json!({
        "source": side_details(source),
        "target": side_details(target),
    });
    let source_text = match inputs.spec.source.endpoint() {
        None => "the source is an RDB file".to_string(),
        Some(_) => describe(Side::Source, source),
    };
    let topology = format!("{source_text}, {}", describe(Side::Target, target));
    let what = match (source.is_some(), target.is_some()) {
        (false, false) => return pass(id, "both servers are standalone", details),
        (true, true) => {
            "one replication link per source master, each shard's keys routed by slot to the \
             target's masters"
        }
        (true, false) => {
            "one replication link per source master, every shard's keys written to db 0 of the \
             target (a cluster has only db 0)"
        }
        (false, true) => {
            "the source's keys routed by slot to the target's masters (cluster-enabled differs on \
             the two sides: a cluster holds db 0 only, and a source transaction across slots is \
             applied slot by slot, see cluster.transactions)"
        }
    };
    let unsupported = unsupported_options(inputs, source.is_some(), target.is_some());
    if unsupported.is_empty() {
        return pass(id, format!("{topology}: {what}"), details);
    }
    fail(
        id,
        format!("{topology}: {what}; but {}", unsupported.join("; and ")),
        details,
    )
}

/// The options this migration sets that a cluster on either side does not carry, each with
/// what to do instead. Kept with the engine's own refusals (it refuses the same, should a
/// server change between validation and start).
fn unsupported_options(inputs: &Inputs, source_cluster: bool, target_cluster: bool) -> Vec<String> {
    let spec = inputs.spec;
    let options = &spec.options;
    let mut no = Vec::new();
    if spec.mode == Mode::DryRun {
        no.push(
            "a dry run reads one standalone source: run it against each shard's master, or use \
             mode `snapshot` or `live`"
                .to_string(),
        );
    }
    if options.transfer == Transfer::Relay {
        no.push(
            "transfer `relay` needs a standalone source and target (a cluster node refuses \
             REPLICAOF and a relay carries one link): use `restore` or `auto`"
                .to_string(),
        );
    }
    if options.on_conflict == OnConflict::Flush {
        no.push(
            "on_conflict `flush` is not carried across a cluster's masters: empty the target \
             yourself, or use `fail` or `replace`"
                .to_string(),
        );
    }
    if target_cluster && options.on_conflict == OnConflict::Skip {
        no.push(
            "on_conflict `skip` into a cluster: a RESTORE refused inside one slot's transaction \
             cannot be told apart per key; use `fail` or `replace`"
                .to_string(),
        );
    }
    if target_cluster && options.acl != AclMode::Ignore {
        no.push(
            "options.acl `copy`/`replace` into a cluster: its users would have to be created on \
             every master; create them there yourself and use `ignore`"
                .to_string(),
        );
    }
    if source_cluster && spec.schedule.cutover_window.is_some() {
        no.push(
            "schedule.cutover_window with a cluster source: the cutover over every master does \
             not wait for a window yet; cut over by hand inside your window"
                .to_string(),
        );
    }
    if source_cluster && spec.source.read() == SourceRead::Scan {
        no.push(
            "source.read `scan` reads one node: a cluster source is read through one \
             replication link per master (source.read `replication`)"
                .to_string(),
        );
    }
    if target_cluster && spec.source.endpoint().is_none() {
        no.push(
            "an RDB file loads into a standalone target only: load it into a standalone server \
             and migrate that into the cluster"
                .to_string(),
        );
    }
    if target_cluster && options.backup && target_holds_keys(inputs) {
        no.push(
            "a restore point of a cluster target is not taken by this build, and the target \
             holds keys: set options.backup false to write into it without one (the keys it \
             holds are then kept, or refused by on_conflict), or empty it first"
                .to_string(),
        );
    }
    no
}

/// Whether any master of the target cluster holds keys (any key counts: `INFO` cannot tell
/// Ferry's own keys from the application's). Unknown counts as holding keys.
fn target_holds_keys(inputs: &Inputs) -> bool {
    match &inputs.target.cluster {
        Some(Ok(cluster)) => cluster.masters.iter().any(|m| {
            m.state
                .as_ref()
                .map_or(true, |state| state.info.total_keys() > 0)
        }),
        _ => inputs
            .target
            .info
            .as_ref()
            .map_or(true, |info| info.total_keys() > 0),
    }
}

/// `cluster.coverage`: all 16384 slots served, every master reachable and of one mind.
pub fn coverage(inputs: &Inputs) -> Verdict {
    let id = "cluster.coverage";
    let sides = [
        (Side::Source, cluster_of(inputs.source)?),
        (Side::Target, cluster_of(inputs.target)?),
    ];
    let mut problems = Vec::new();
    let mut silent_replicas = Vec::new();
    let mut details = serde_json::Map::new();
    for (side, cluster) in sides {
        let Some(cluster) = cluster else { continue };
        let coverage = cluster.seed.map.coverage();
        if !coverage.unserved.is_empty() {
            problems.push(format!(
                "no master of the {side} serves slots {}",
                Ranges(&coverage.unserved)
            ));
        }
        if !coverage.doubly_served.is_empty() {
            let ranges: Vec<(Slot, Slot)> =
                coverage.doubly_served.iter().map(|s| (*s, *s)).collect();
            problems.push(format!(
                "two masters of the {side} claim slots {}",
                Ranges(&ranges)
            ));
        }
        for unreachable in cluster.unreachable() {
            problems.push(format!("the {side}'s master {unreachable}"));
        }
        let disagreeing: Vec<String> = cluster
            .masters
            .iter()
            .filter(|m| m.state.as_ref().is_ok_and(|s| !s.agrees))
            .map(|m| m.node.addr())
            .collect();
        if !disagreeing.is_empty() {
            problems.push(format!(
                "the {side}'s masters {} see a different slot map than the seed (a change is \
                 under way)",
                disagreeing.join(", ")
            ));
        }
        let silent: Vec<String> = cluster
            .replicas
            .iter()
            .filter_map(|(node, answered)| {
                answered
                    .as_ref()
                    .err()
                    .map(|e| format!("the {side}'s replica {}: {e}", node.addr()))
            })
            .collect();
        silent_replicas.extend(silent.iter().cloned());
        details.insert(
            side.name().to_string(),
            json!({
                "replicas_unreachable": silent,
                "unserved": coverage.unserved.iter().map(|(a, b)| [a, b]).collect::<Vec<_>>(),
                "doubly_served": coverage.doubly_served,
                "unreachable": cluster.unreachable(),
                "disagreeing": disagreeing,
            }),
        );
    }
    let details = Value::Object(details);
    if details.as_object().is_some_and(|d| d.is_empty()) {
        return pass(id, "no cluster on either side", details);
    }
    if problems.is_empty() && !silent_replicas.is_empty() {
        // Replicas carry no slot of their own: a migration reads and writes masters.
        return warn(
            id,
            format!(
                "all {SLOTS} slots are served and every master answers, but not every replica: \
                 {}; a failover to one of them would stall the migration until it is back",
                silent_replicas.join("; ")
            ),
            details,
        );
    }
    if problems.is_empty() {
        return pass(
            id,
            format!(
                "all {SLOTS} slots are served and every node answers, the masters with the same map"
            ),
            details,
        );
    }
    fail(
        id,
        format!(
            "{}; a migration needs every slot served and every master reachable: check with \
             `redis-cli --cluster check <node>` and repair with `redis-cli --cluster fix <node>`",
            problems.join("; ")
        ),
        details,
    )
}

/// `cluster.slots_stable`: no slot is being imported or migrated when the migration starts.
pub fn slots_stable(inputs: &Inputs) -> Verdict {
    let id = "cluster.slots_stable";
    let sides = [
        (Side::Source, cluster_of(inputs.source)?),
        (Side::Target, cluster_of(inputs.target)?),
    ];
    let mut moving = Vec::new();
    let mut any = false;
    for (side, cluster) in sides {
        let Some(cluster) = cluster else { continue };
        any = true;
        for master in &cluster.masters {
            let Ok(state) = &master.state else { continue };
            for m in &state.moves {
                let peer = cluster
                    .seed
                    .map
                    .nodes()
                    .find(|n| n.id == m.peer)
                    .map_or_else(|| m.peer.clone(), |n| n.addr());
                let (verb, preposition) = match m.direction {
                    MoveDirection::Migrating => ("migrating", "to"),
                    MoveDirection::Importing => ("importing", "from"),
                };
                moving.push(format!(
                    "slot {} is {verb} on the {side}'s {} ({preposition} {peer})",
                    m.slot,
                    master.node.addr()
                ));
            }
        }
    }
    let details = json!({ "moving": moving });
    if !any {
        return pass(id, "no cluster on either side", details);
    }
    if moving.is_empty() {
        return pass(id, "no slot is being imported or migrated", details);
    }
    fail(
        id,
        format!(
            "{}; a slot in motion has keys on two nodes: let the resharding finish \
             (`redis-cli --cluster check <node>`) or close it (`redis-cli --cluster fix <node>`)",
            moving.join("; ")
        ),
        details,
    )
}

/// `cluster.databases`: a cluster holds db 0 only, so a source with keys elsewhere must say
/// where they go. Sending several databases into one may make keys collide, so it is never
/// assumed: each database besides 0 that the filter lets through must be mapped to 0 by name.
pub fn databases(inputs: &Inputs) -> Verdict {
    let id = "cluster.databases";
    let target = cluster_of(inputs.target)?;
    let source_info = inputs.source.need_info()?;
    let options = &inputs.spec.options;
    let selected = |db: u32| options.filter.dbs.is_empty() || options.filter.dbs.contains(&db);
    let elsewhere: Vec<u32> = source_info
        .keyspace
        .iter()
        .filter(|(db, stats)| **db != 0 && stats.keys > 0 && selected(**db))
        .map(|(db, _)| *db)
        .collect();
    let details = json!({
        "target_cluster": target.is_some(),
        "source_dbs_besides_0": elsewhere,
        "db_map": options.db_map,
    });
    if target.is_none() {
        return pass(
            id,
            "the target is not a cluster: every key can keep its database",
            details,
        );
    }
    let unmapped: Vec<String> = elsewhere
        .iter()
        .filter(|db| options.db_map.get(db) != Some(&0))
        .map(u32::to_string)
        .collect();
    let elsewhere_to_0 = options
        .db_map
        .iter()
        .any(|(from, to)| *from != 0 && *to != 0);
    if unmapped.is_empty() && !elsewhere_to_0 {
        return pass(
            id,
            match elsewhere.len() {
                0 => {
                    "the source's keys are all in db 0, the only database of a cluster".to_string()
                }
                _ => format!(
                    "options.db_map sends db {} into db 0, the only database of a cluster",
                    elsewhere
                        .iter()
                        .map(u32::to_string)
                        .collect::<Vec<_>>()
                        .join(", ")
                ),
            },
            details,
        );
    }
    let mut problems = Vec::new();
    if !unmapped.is_empty() {
        problems.push(format!(
            "the source holds keys in db {} and options.db_map does not send {} to db 0",
            unmapped.join(", "),
            if unmapped.len() == 1 { "it" } else { "them" }
        ));
    }
    if elsewhere_to_0 {
        problems.push("options.db_map sends a database to a number other than 0".to_string());
    }
    fail(
        id,
        format!(
            "the target is a cluster, which has only db 0: {}; map each database onto db 0 \
             explicitly (e.g. {{\"0\": 0, \"1\": 0, \"2\": 0}}: keys from several databases must not \
             collide), leave it out with options.filter.dbs, or move those keys first",
            problems.join("; ")
        ),
        details,
    )
}

/// `cluster.transactions`: a source transaction whose keys span target slots cannot stay atomic
/// on a cluster target (a cluster refuses `MULTI` across slots). The engine applies such a
/// transaction slot by slot and records each split (`TransactionSplit`); this check says so
/// before the start, with what the source's own counters say of its use of `MULTI`.
pub fn transactions(inputs: &Inputs) -> Verdict {
    let id = "cluster.transactions";
    let source = cluster_of(inputs.source)?;
    let target = cluster_of(inputs.target)?;
    let details = |multi: Option<u64>| json!({ "source_multi_calls": multi });
    if target.is_none() {
        return pass(
            id,
            "the target is not a cluster: transactions stay whole",
            details(None),
        );
    }
    if source.is_some() {
        return pass(
            id,
            "the source is a cluster too: its transactions already keep to one slot, and stay \
             whole on the target",
            details(None),
        );
    }
    if inputs.spec.mode != Mode::Live {
        return pass(
            id,
            "a snapshot copies keys, not transactions: nothing is split",
            details(None),
        );
    }
    let info = inputs.source.need_info()?;
    let multi = info
        .get("cmdstat_multi")
        .and_then(|stats| stats.split(',').find_map(|f| f.strip_prefix("calls=")))
        .and_then(|calls| calls.parse::<u64>().ok());
    let used = match multi {
        Some(0) | None => "the source has run no MULTI since it started".to_string(),
        Some(1) => "the source has run MULTI once since it started".to_string(),
        Some(n) => format!("the source has run MULTI {n} times since it started"),
    };
    warn(
        id,
        format!(
            "{used}; a streamed MULTI/EXEC whose keys fall in more than one target slot cannot \
             stay atomic on a cluster: Ferry applies it slot by slot, each slot's part whole, \
             and records each split as a TransactionSplit event; keep the keys of a \
             transaction in one slot with a hash tag ({{user:1}}:a, {{user:1}}:b) to avoid it"
        ),
        details(multi),
    )
}

/// A target node that receives keys: its address, the slots it serves, its `INFO`.
type Receiver<'a> = (String, Vec<(Slot, Slot)>, &'a Info);

/// `cluster.memory`: each target master has room for the keys of the slots it will serve.
pub fn memory(inputs: &Inputs) -> Verdict {
    let id = "cluster.memory";
    let source = cluster_of(inputs.source)?;
    let target = cluster_of(inputs.target)?;
    if source.is_none() && target.is_none() {
        return pass(
            id,
            "no cluster on either side (see capacity.memory)",
            json!({}),
        );
    }
    let source_info = inputs.source.need_info()?;
    let target_info = inputs.target.need_info()?;
    let whole: Vec<(Slot, Slot)> = vec![(0, SLOTS - 1)];
    // (slot ranges, dataset bytes) of every source shard.
    let mut shards: Vec<(Vec<(Slot, Slot)>, u64)> = Vec::new();
    match source {
        None => shards.push((whole.clone(), dataset_bytes(source_info))),
        Some(cluster) => {
            for (shard, master) in cluster.seed.map.shards.iter().zip(&cluster.masters) {
                let Ok(state) = &master.state else {
                    return warn(
                        id,
                        format!(
                            "not checked: the source's master {} did not answer (see cluster.coverage)",
                            master.node.addr()
                        ),
                        json!({}),
                    );
                };
                shards.push((shard.ranges.clone(), dataset_bytes(&state.info)));
            }
        }
    }
    // Every target node that will receive keys: (addr, slot ranges, INFO).
    let mut nodes: Vec<Receiver> = Vec::new();
    match target {
        None => nodes.push((inputs.target.url.addr(), whole, target_info)),
        Some(cluster) => {
            for (shard, master) in cluster.seed.map.shards.iter().zip(&cluster.masters) {
                let Ok(state) = &master.state else {
                    return warn(
                        id,
                        format!(
                            "not checked: the target's master {} did not answer (see cluster.coverage)",
                            master.node.addr()
                        ),
                        json!({}),
                    );
                };
                nodes.push((master.node.addr(), shard.ranges.clone(), &state.info));
            }
        }
    }
    let ranges: Vec<Vec<(Slot, Slot)>> = nodes.iter().map(|(_, r, _)| r.clone()).collect();
    let incoming = bytes_per_node(&shards, &ranges);
    let mut short = Vec::new();
    let mut unlimited = Vec::new();
    let mut rows = Vec::new();
    for ((addr, _, info), dataset) in nodes.iter().zip(incoming) {
        let needed = dataset + dataset * MEMORY_MARGIN_PERCENT / 100;
        let used = info.num("used_memory").unwrap_or(0);
        let maxmemory = info.num("maxmemory").unwrap_or(0);
        let limit = if maxmemory > 0 {
            maxmemory
        } else {
            info.num("total_system_memory").unwrap_or(0)
        };
        let headroom = limit.saturating_sub(used);
        rows.push(json!({
            "addr": addr, "needed_bytes": needed, "used_memory": used,
            "maxmemory": maxmemory, "headroom_bytes": headroom,
        }));
        if limit == 0 {
            unlimited.push(addr.clone());
        } else if needed > headroom {
            short.push(format!(
                "{addr} needs about {} but has {} free under its {}",
                human(needed),
                human(headroom),
                if maxmemory > 0 {
                    "maxmemory"
                } else {
                    "system memory"
                }
            ));
        }
    }
    let details = json!({ "margin_percent": MEMORY_MARGIN_PERCENT, "nodes": rows });
    if !short.is_empty() {
        return fail(
            id,
            format!(
                "the source's keys, placed by slot, do not fit: {}; raise maxmemory on those \
                 masters or add masters to the target",
                short.join("; ")
            ),
            details,
        );
    }
    if !unlimited.is_empty() {
        return warn(
            id,
            format!(
                "{} report neither maxmemory nor their system memory; make sure they have room",
                unlimited.join(", ")
            ),
            details,
        );
    }
    pass(
        id,
        "every target node has room for the keys of the slots it serves",
        details,
    )
}

/// The bytes each target node receives: each source shard's dataset spread evenly over its slots
/// (the best a count of bytes per shard can say), summed over the slots each node serves.
pub(crate) fn bytes_per_node(
    source_shards: &[(Vec<(Slot, Slot)>, u64)],
    target_nodes: &[Vec<(Slot, Slot)>],
) -> Vec<u64> {
    let mut owner = vec![usize::MAX; SLOTS as usize];
    for (index, ranges) in target_nodes.iter().enumerate() {
        for &(a, b) in ranges {
            for slot in a..=b {
                owner[slot as usize] = index;
            }
        }
    }
    let mut per_node = vec![0f64; target_nodes.len()];
    for (ranges, bytes) in source_shards {
        let slots: u64 = ranges.iter().map(|(a, b)| u64::from(b - a) + 1).sum();
        if slots == 0 {
            continue;
        }
        let per_slot = *bytes as f64 / slots as f64;
        for &(a, b) in ranges {
            for slot in a..=b {
                if let Some(total) = per_node.get_mut(owner[slot as usize]) {
                    *total += per_slot;
                }
            }
        }
    }
    per_node.into_iter().map(|b| b.ceil() as u64).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_source_shards_bytes_follow_its_slots_to_the_target_nodes() {
        // Source: one shard of 0-8191 with 8192 bytes, one of 8192-16383 with 16384 bytes.
        let source = [(vec![(0, 8191)], 8192), (vec![(8192, 16383)], 16384)];
        // Target: 0-4095 | 4096-12287 | 12288-16383.
        let target = [vec![(0, 4095)], vec![(4096, 12287)], vec![(12288, 16383)]];
        assert_eq!(
            bytes_per_node(&source, &target),
            vec![4096, 4096 + 8192, 8192]
        );
        // A standalone source spreads over every slot; a standalone target takes them all.
        let whole = [(vec![(0, SLOTS - 1)], 16384 * 3)];
        assert_eq!(
            bytes_per_node(&whole, &target),
            vec![4096 * 3, 8192 * 3, 4096 * 3]
        );
        assert_eq!(
            bytes_per_node(&source, &[vec![(0, SLOTS - 1)]]),
            vec![24576]
        );
    }
}
