//! The shards of a cluster source as the migration starts: what it refuses, which shards there
//! are (by the slots they serve), and which node of each is read.

use std::time::Duration;

use crate::client::cluster::{node_endpoint, slot_map};
use crate::client::Conn;
use crate::cluster::{Node, Slot};
use crate::engine::{EngineError, EngineJob};
use crate::model::ShardRef;
use crate::spec::{Endpoint, Mode, OnConflict, Prefer, SourceRead, Transfer};
use crate::transport::Peer;

use super::follow;

/// One shard as the migration follows it.
#[derive(Debug, Clone)]
pub(crate) struct Plan {
    pub name: String,
    pub ranges: Vec<(Slot, Slot)>,
    /// Its master now (changes with a failover).
    pub master: Node,
    /// The node its run reads from.
    pub read: Node,
}

impl Plan {
    pub fn serves(&self, slot: Slot) -> bool {
        self.ranges.iter().any(|&(a, b)| (a..=b).contains(&slot))
    }

    pub fn node_ref(&self) -> ShardRef {
        ShardRef {
            name: self.name.clone(),
            node_id: self.read.id.clone(),
            addr: self.read.addr(),
        }
    }
}

/// What a cluster source cannot do (yet), each with the field to change.
pub(super) fn refuse(job: &EngineJob) -> Result<(), EngineError> {
    let spec = &job.spec;
    let why = if spec.mode == Mode::DryRun {
        "a dry run of a Redis Cluster source is not supported yet; run a snapshot migration \
         into a scratch target instead"
    } else if spec.source.read() == SourceRead::Scan {
        "`source.read: scan` is not supported for a Redis Cluster source: each shard is read over \
         its own replication link; use `source.read: replication`"
    } else if spec.options.on_conflict == OnConflict::Flush {
        "`on_conflict: flush` is not supported for a Redis Cluster source: each shard's run would \
         empty the target the others write to; empty the target first and use `fail` or \
         `replace`"
    } else if spec.options.transfer == Transfer::Relay {
        "`transfer: relay` is not supported for a Redis Cluster source: a relay replicates one \
         server into one target; use `transfer: restore` (or `auto`)"
    } else if spec.schedule.cutover_window.is_some() {
        "`schedule.cutover_window` is not supported for a Redis Cluster source: the cutover over \
         every master does not wait for a window yet; cut over by hand (POST …/cutover) inside \
         your window, without auto_cutover"
    } else {
        return Ok(());
    };
    Err(EngineError::Unsupported(why.into()))
}

/// The shards of the cluster at `seed`, each with the node to read it from.
pub(super) async fn discover(seed: &Endpoint, prefer: Prefer) -> Result<Vec<Plan>, EngineError> {
    let peer = Peer::new(seed).map_err(|e| EngineError::source(e.into()))?;
    let mut conn = Conn::connect(&peer).await.map_err(EngineError::source)?;
    let map = match follow::full_map(&mut conn, &seed.url.host).await {
        Some(map) => map,
        None => {
            slot_map(&mut conn)
                .await
                .map_err(|e| {
                    EngineError::SourceError(format!("reading the source's slot map: {e}"))
                })?
                .map
        }
    };
    let coverage = map.coverage();
    if !coverage.is_full() {
        return Err(EngineError::Unsupported(format!(
            "the source cluster does not serve every slot exactly once (unserved: {}, served \
             twice: {:?}); fix the cluster first",
            crate::cluster::Ranges(&coverage.unserved),
            coverage.doubly_served
        )));
    }
    let mut plans: Vec<Plan> = Vec::new();
    for s in map.shards.into_iter().filter(|s| !s.ranges.is_empty()) {
        let read = match prefer {
            Prefer::Replica => linked_replica(seed, &s.replicas).await,
            Prefer::Master => None,
        }
        .unwrap_or_else(|| s.master.clone());
        plans.push(Plan {
            name: format!("s{}", s.ranges[0].0),
            ranges: s.ranges,
            master: s.master,
            read,
        });
    }
    plans.sort_by_key(|p| p.ranges[0].0);
    Ok(plans)
}

/// A replica of the shard whose link to its master is up (`INFO replication`), healthy ones
/// first. `CLUSTER SHARDS` calls a replica `loading` until its offset is gossiped non-zero, which
/// a replica of a master that has had no write yet never is, so its health alone cannot say.
async fn linked_replica(seed: &Endpoint, replicas: &[Node]) -> Option<Node> {
    let mut candidates: Vec<&Node> = replicas.iter().collect();
    candidates.sort_by_key(|r| !r.healthy);
    for replica in candidates {
        let Ok(peer) = Peer::new(&node_endpoint(seed, replica)) else {
            continue;
        };
        let Ok(Ok(mut conn)) =
            tokio::time::timeout(Duration::from_secs(2), Conn::connect(&peer)).await
        else {
            continue;
        };
        let Ok(info) = conn.info("replication").await else {
            continue;
        };
        if info.get("master_link_status") == Some("up") {
            return Some(replica.clone());
        }
    }
    None
}
