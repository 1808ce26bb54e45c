//! Facts about a cluster side: its slot map, as the seed node sees it, and for every master what
//! the cluster checks need (reachable, its own view of the map, slots it is moving, memory, keys).
//!
//! On a target, the lease (`ferry:lease`) is read on the master serving its slot: one key for the
//! whole cluster, which every writer of any of its masters takes first, so it covers them all.
//!
//! Gathered only when the seed's `INFO` says `cluster_enabled:1`. The masters are asked
//! concurrently, within what is left of the side's budget, so a cluster of any size keeps
//! validation inside its time limit.

use futures::future::join_all;

use super::conn::{connect, Admin, ConnectOptions};
use super::error::{CallError, Side};
use super::facts::read_lease;
use crate::client::cluster::{node_endpoint, slot_map, slot_moves, Discovered};
use crate::client::Info;
use crate::cluster::{key_slot, Node, SlotMove};
use crate::model::{LeaseHolder, LEASE_KEY};
use crate::spec::Endpoint;
use crate::transport::Peer;

/// What validation knows about a cluster side.
#[derive(Debug, Clone)]
pub struct ClusterFacts {
    /// The seed node's view: the map every other view is compared with.
    pub seed: Discovered,
    /// One entry per master of the seed's map, in shard order.
    pub masters: Vec<MasterFacts>,
    /// Every replica the seed lists, and whether it answered (connect, AUTH, PING).
    pub replicas: Vec<(Node, Result<(), String>)>,
}

/// One master, and what asking it gave.
#[derive(Debug, Clone)]
pub struct MasterFacts {
    pub node: Node,
    pub slots: u32,
    /// Why the master could not be asked, as the report should say it.
    pub state: Result<MasterState, String>,
}

#[derive(Debug, Clone)]
pub struct MasterState {
    /// `INFO` (default sections: memory, keyspace, replication…).
    pub info: Info,
    /// Its own `CLUSTER NODES` line's importing/migrating slots.
    pub moves: Vec<SlotMove>,
    /// Whether its slot map gives every slot to the same master as the seed's.
    pub agrees: bool,
    /// The target's lease, read on the master serving `ferry:lease`'s slot (`None` elsewhere).
    pub lease: Option<Result<Option<LeaseHolder>, CallError>>,
}

impl ClusterFacts {
    /// The lease as the master serving its slot holds it; a failure names that master.
    pub fn lease(&self) -> Result<Option<LeaseHolder>, CallError> {
        let slot = key_slot(LEASE_KEY.as_bytes());
        let owner = self.seed.map.shard_of(slot).map(|i| &self.masters[i]);
        match owner.map(|m| (m, &m.state)) {
            Some((
                _,
                Ok(MasterState {
                    lease: Some(lease), ..
                }),
            )) => lease.clone(),
            Some((master, Err(why))) => Err(CallError::Unexpected {
                command: "GET ferry:lease".into(),
                detail: format!(
                    "{} (serving slot {slot}) did not answer: {why}",
                    master.node.addr()
                ),
            }),
            _ => Err(CallError::Unexpected {
                command: "GET ferry:lease".into(),
                detail: format!("no master serves slot {slot}"),
            }),
        }
    }

    /// Masters that could not be asked, as `addr: why`.
    pub fn unreachable(&self) -> Vec<String> {
        self.masters
            .iter()
            .filter_map(|m| {
                m.state
                    .as_ref()
                    .err()
                    .map(|e| format!("{}: {e}", m.node.addr()))
            })
            .collect()
    }
}

/// Reads the cluster facts of a side whose seed answered `cluster_enabled:1`.
pub async fn gather(
    side: Side,
    endpoint: &Endpoint,
    admin: &Admin,
    options: &ConnectOptions,
) -> Result<ClusterFacts, CallError> {
    let seed = {
        let limit = admin.remaining();
        let mut conn = admin.conn().await;
        match tokio::time::timeout(limit, slot_map(&mut conn)).await {
            Ok(Ok(seed)) => seed,
            Ok(Err(e)) => {
                return Err(CallError::Server {
                    command: "CLUSTER SHARDS".into(),
                    detail: crate::client::scrub(&e.to_string(), &endpoint.url),
                })
            }
            Err(_) => {
                return Err(CallError::Timeout {
                    command: "CLUSTER SHARDS".into(),
                    millis: limit.as_millis() as u64,
                })
            }
        }
    };
    let budget = admin.budget_left();
    let per_master = ConnectOptions {
        budget,
        ..options.clone()
    };
    let lease_slot = key_slot(LEASE_KEY.as_bytes());
    let asked = seed.map.shards.iter().map(|shard| {
        let node = shard.master.clone();
        let holds_lease = side == Side::Target && shard.serves(lease_slot);
        let slots = shard.slot_count();
        let endpoint = node_endpoint(endpoint, &node);
        let options = per_master.clone();
        let seed_map = &seed.map;
        async move {
            let state = match tokio::time::timeout(
                budget,
                ask_master(&endpoint, &options, seed_map, holds_lease),
            )
            .await
            {
                Ok(state) => state,
                Err(_) => Err(format!("no answer within {} ms", budget.as_millis())),
            };
            MasterFacts { node, slots, state }
        }
    });
    let replica_nodes: Vec<Node> = seed
        .map
        .shards
        .iter()
        .flat_map(|s| s.replicas.iter().cloned())
        .collect();
    let pinged = replica_nodes.into_iter().map(|node| {
        let endpoint = node_endpoint(endpoint, &node);
        let options = per_master.clone();
        async move {
            let answer = async {
                let peer = Peer::new(&endpoint).map_err(|e| e.to_string())?;
                connect(&peer, &options)
                    .await
                    .map(|_| ())
                    .map_err(|e| e.to_string())
            };
            let answered = match tokio::time::timeout(budget, answer).await {
                Ok(answered) => answered,
                Err(_) => Err(format!("no answer within {} ms", budget.as_millis())),
            };
            (node, answered)
        }
    });
    let (masters, replicas) = tokio::join!(join_all(asked), join_all(pinged));
    Ok(ClusterFacts {
        seed,
        masters,
        replicas,
    })
}

async fn ask_master(
    endpoint: &Endpoint,
    options: &ConnectOptions,
    seed_map: &crate::cluster::SlotMap,
    holds_lease: bool,
) -> Result<MasterState, String> {
    let peer = Peer::new(endpoint).map_err(|e| e.to_string())?;
    let admin = connect(&peer, options).await.map_err(|e| e.to_string())?;
    let info = admin
        .call("INFO", &[b"INFO".as_slice()])
        .await
        .map_err(|e| e.to_string())?;
    let info = match info.as_bytes() {
        Some(text) => Info::parse(&String::from_utf8_lossy(text)),
        None => return Err(format!("INFO answered {}", info.describe())),
    };
    let limit = admin.remaining();
    let mut conn = admin.conn().await;
    let asked = async {
        let view = slot_map(&mut conn).await?;
        let moves = slot_moves(&mut conn).await?;
        Ok::<_, crate::client::cluster::DiscoveryError>((view, moves))
    };
    let (view, moves) = tokio::time::timeout(limit, asked)
        .await
        .map_err(|_| format!("no answer within {} ms", limit.as_millis()))?
        .map_err(|e| crate::client::scrub(&e.to_string(), &endpoint.url))?;
    drop(conn);
    let lease = if holds_lease {
        Some(read_lease(&admin).await)
    } else {
        None
    };
    Ok(MasterState {
        info,
        moves,
        agrees: view.map.same_owners(seed_map),
        lease,
    })
}
