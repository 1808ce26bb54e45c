//! Watching a cluster source's slot map while its shards are migrated: a failover is followed, a
//! resharding stops the migration.
//!
//! Each shard is identified by the slots it served when the migration started. About once a
//! second the map is read again (from any node that answers) and each shard is looked up by its
//! first slot:
//! - the same slots under another master: a failover. It is recorded (`ShardFailedOver`, old and
//!   new node), and the cutover pauses the new master. The shard's link needs nothing: after
//!   `CLUSTER FAILOVER` the old master is a replica of the new one and, with psync2, lets the link
//!   continue (`+CONTINUE <new replid>`), and a link that breaks resumes from the target's offset
//!   key as always.
//! - other slots (a slot gone to another shard, or come from one): a resharding
//!   ([`EngineError::SourceResharded`], naming the first such slot). Keys moving between shards
//!   arrive on two independent links (a `DEL` on one, a `RESTORE` on the other) in an order
//!   nobody can know afterwards, so the migration stops instead of risking a silent loss.
//! - a slot being moved (`CLUSTER SETSLOT … MIGRATING`/`IMPORTING` on a master): the same, before
//!   its first key moves.

use crate::client::cluster::{node_endpoint, slot_map, slot_moves};
use crate::client::Conn;
use crate::cluster::{Node, Slot, SlotMap};
use crate::engine::error::EngineError;
use crate::spec::Endpoint;
use crate::transport::Peer;

use super::Plan;

/// The watcher's connections, kept between rounds.
#[derive(Default)]
pub(super) struct Watch {
    conn: Option<Conn>,
    /// A connection to each master, by address (for `CLUSTER NODES`).
    masters: std::collections::HashMap<String, Conn>,
}

/// What a round found.
pub(super) enum Change {
    /// Shard `i` is now served by `master` (a failover).
    FailedOver { shard: usize, master: Node },
}

impl Watch {
    /// Reads the slot map from any node of `plans` (the seed first); `None` when no node
    /// answered (a node restarting is not a resharding: the next round asks again).
    pub async fn map(&mut self, seed: &Endpoint, plans: &[Plan]) -> Option<SlotMap> {
        if let Some(conn) = self.conn.as_mut() {
            if let Some(map) = full_map(conn, &seed.url.host).await {
                return Some(map);
            }
            self.conn = None;
        }
        let mut candidates = vec![seed.clone()];
        for plan in plans {
            candidates.push(node_endpoint(seed, &plan.master));
            candidates.push(node_endpoint(seed, &plan.read));
        }
        for endpoint in candidates {
            let Ok(peer) = Peer::new(&endpoint) else {
                continue;
            };
            let Ok(Ok(mut conn)) =
                tokio::time::timeout(std::time::Duration::from_secs(2), Conn::connect(&peer)).await
            else {
                continue;
            };
            if let Some(map) = full_map(&mut conn, &seed.url.host).await {
                self.conn = Some(conn);
                return Some(map);
            }
        }
        None
    }
}

/// The node's slot map, covering every slot. Right after a failover, Redis 7.4's `CLUSTER SHARDS`
/// can list the shard under its failed master, which has no slots any more, and so leave the
/// shard's slots out: `CLUSTER SLOTS` (who serves each slot) is asked then.
pub(super) async fn full_map(conn: &mut Conn, host: &str) -> Option<SlotMap> {
    let map = slot_map(conn).await.ok()?.map;
    if map.coverage().is_full() {
        return Some(map);
    }
    let reply = conn.call(&["CLUSTER", "SLOTS"]).await.ok()?;
    SlotMap::from_slots(&reply, host).ok()
}

/// Compares the map with the shards as they started: failovers to follow, or the resharding.
pub(super) fn compare(map: &SlotMap, plans: &[Plan]) -> Result<Vec<Change>, EngineError> {
    let mut changes = Vec::new();
    for (i, plan) in plans.iter().enumerate() {
        let first = plan.ranges[0].0;
        let Some(now) = map.shard_of(first).map(|at| &map.shards[at]) else {
            // Unserved for a moment (a failover in progress): judged in a later round.
            continue;
        };
        if let Some(slot) = first_difference(&plan.ranges, &now.ranges) {
            let detail = if plan.serves(slot) {
                format!(
                    "of shard {} ({}) is now served by another shard",
                    plan.name,
                    plan.master.addr()
                )
            } else {
                format!(
                    "moved into shard {} ({}), which did not serve it when the migration started",
                    plan.name,
                    now.master.addr()
                )
            };
            return Err(EngineError::SourceResharded { slot, detail });
        }
        if now.master.id != plan.master.id && now.master.healthy {
            changes.push(Change::FailedOver {
                shard: i,
                master: now.master.clone(),
            });
        }
    }
    Ok(changes)
}

/// The first slot in one set of ranges and not the other.
fn first_difference(a: &[(Slot, Slot)], b: &[(Slot, Slot)]) -> Option<Slot> {
    let serves =
        |ranges: &[(Slot, Slot)], s: Slot| ranges.iter().any(|&(x, y)| (x..=y).contains(&s));
    let lowest = a.iter().chain(b).map(|r| r.0).min()?;
    let highest = a.iter().chain(b).map(|r| r.1).max()?;
    (lowest..=highest).find(|&s| serves(a, s) != serves(b, s))
}

impl Watch {
    /// A slot one of the masters is moving out or in right now (`CLUSTER SETSLOT … MIGRATING`
    /// or `IMPORTING`), as a resharding error. A master that does not answer is asked again in
    /// the next round.
    pub async fn moving_slot(
        &mut self,
        seed: &Endpoint,
        plans: &[Plan],
    ) -> Result<(), EngineError> {
        for plan in plans {
            let addr = plan.master.addr();
            if !self.masters.contains_key(&addr) {
                let Ok(peer) = Peer::new(&node_endpoint(seed, &plan.master)) else {
                    continue;
                };
                let Ok(Ok(conn)) =
                    tokio::time::timeout(std::time::Duration::from_secs(2), Conn::connect(&peer))
                        .await
                else {
                    continue;
                };
                self.masters.insert(addr.clone(), conn);
            }
            let Some(conn) = self.masters.get_mut(&addr) else {
                continue;
            };
            let moves = match slot_moves(conn).await {
                Ok(moves) => moves,
                Err(_) => {
                    self.masters.remove(&addr);
                    continue;
                }
            };
            if let Some(found) = moves.into_iter().next() {
                let what = match found.direction {
                    crate::cluster::MoveDirection::Migrating => "migrating to",
                    crate::cluster::MoveDirection::Importing => "importing from",
                };
                return Err(EngineError::SourceResharded {
                    slot: found.slot,
                    detail: format!(
                        "is being moved: master {addr} of shard {} is {what} node {}",
                        plan.name, found.peer
                    ),
                });
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::first_difference;

    #[test]
    fn the_first_slot_served_by_one_side_only() {
        assert_eq!(first_difference(&[(0, 5460)], &[(0, 5460)]), None);
        assert_eq!(first_difference(&[(0, 5460)], &[(1, 5460)]), Some(0));
        assert_eq!(
            first_difference(&[(0, 5460)], &[(0, 5460), (6000, 6000)]),
            Some(6000)
        );
        assert_eq!(first_difference(&[(0, 10), (12, 20)], &[(0, 20)]), Some(11));
    }
}
