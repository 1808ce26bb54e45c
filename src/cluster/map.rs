//! The slot map: which shard (a master and its replicas) serves each slot, parsed from a node's
//! `CLUSTER SHARDS` (Redis/Valkey ≥ 7.0) or `CLUSTER SLOTS` (6.2) reply.
//!
//! A map is one node's view. It is built from frames, not from a connection, so validation and
//! the engine read the same parse and unit tests can feed it replies by hand.

use std::collections::BTreeMap;
use std::fmt;

use super::slot::{Slot, SLOTS};
use super::ClusterError;
use crate::resp::Frame;

/// A node's role in its shard.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Role {
    Master,
    Replica,
}

/// One node of a shard.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Node {
    /// The 40-character node id (`CLUSTER MYID`).
    pub id: String,
    pub host: String,
    pub port: u16,
    pub role: Role,
    /// `false` when the cluster marked the node `failed` or `loading` (`health` in `CLUSTER
    /// SHARDS`); `CLUSTER SLOTS` lists only nodes it can serve from, so always `true` there.
    pub healthy: bool,
}

impl Node {
    /// `host:port`, as events and messages name a node.
    pub fn addr(&self) -> String {
        format!("{}:{}", self.host, self.port)
    }
}

/// A master, its replicas and the slots the master serves.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Shard {
    pub master: Node,
    pub replicas: Vec<Node>,
    /// Inclusive ranges, sorted.
    pub ranges: Vec<(Slot, Slot)>,
}

impl Shard {
    /// How many slots the shard serves.
    pub fn slot_count(&self) -> u32 {
        self.ranges
            .iter()
            .map(|(a, b)| u32::from(*b) - u32::from(*a) + 1)
            .sum()
    }

    pub fn serves(&self, slot: Slot) -> bool {
        self.ranges.iter().any(|(a, b)| (*a..=*b).contains(&slot))
    }
}

/// Slots no master serves, or served by two: what makes a cluster unusable for a migration.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Coverage {
    /// Ranges of slots no shard serves (the cluster answers `CLUSTERDOWN` or refuses keys there).
    pub unserved: Vec<(Slot, Slot)>,
    /// Slots more than one shard claims (a view taken mid-change).
    pub doubly_served: Vec<Slot>,
}

impl Coverage {
    pub fn is_full(&self) -> bool {
        self.unserved.is_empty() && self.doubly_served.is_empty()
    }
}

/// Which shard serves each slot, as one node sees it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SlotMap {
    /// Ordered by the master's first slot, so that shard `0` is the same shard on every read.
    pub shards: Vec<Shard>,
}

impl SlotMap {
    /// Parses a `CLUSTER SHARDS` reply. Nodes that name no address (`ip` empty or `?`) take
    /// `seed_host`: the host the question was asked of.
    pub fn from_shards(reply: &Frame, seed_host: &str) -> Result<SlotMap, ClusterError> {
        let malformed = |detail: String| ClusterError::Malformed {
            command: "CLUSTER SHARDS",
            detail,
        };
        let Frame::Array(entries) = reply else {
            return Err(malformed(format!("expected an array, got {}", kind(reply))));
        };
        let mut shards = Vec::new();
        for entry in entries {
            let fields = pairs(entry).map_err(malformed)?;
            let mut ranges = Vec::new();
            if let Some(Frame::Array(bounds)) = fields.get("slots") {
                for pair in bounds.chunks(2) {
                    let [start, end] = pair else {
                        return Err(malformed("an odd number of slot bounds".into()));
                    };
                    ranges.push((
                        slot(start).map_err(malformed)?,
                        slot(end).map_err(malformed)?,
                    ));
                }
            }
            let Some(Frame::Array(nodes)) = fields.get("nodes") else {
                return Err(malformed("a shard without `nodes`".into()));
            };
            let mut master = None;
            let mut replicas = Vec::new();
            for node in nodes {
                let node = shard_node(node, seed_host).map_err(malformed)?;
                match node.role {
                    // A failed master stays listed after its replica took over; the live one
                    // wins, and the other is kept with the replicas (unhealthy, never read).
                    Role::Master if master.is_none() || node.healthy => {
                        replicas.extend(master.replace(node));
                    }
                    _ => replicas.push(node),
                }
            }
            // A shard made only of replicas, or whose master serves no slot (a node just added,
            // or a replica still listed in a shard of its own right after joining), holds no
            // key to read or write: it is no shard of the map (as in `CLUSTER SLOTS`).
            let Some(master) = master else { continue };
            if ranges.is_empty() {
                continue;
            }
            replicas.retain(|r| r.id != master.id);
            ranges.sort_unstable();
            shards.push(Shard {
                master,
                replicas,
                ranges,
            });
        }
        Ok(SlotMap::ordered(shards))
    }

    /// Parses a `CLUSTER SLOTS` reply (6.2's only structured view): one entry per contiguous
    /// range, `[start, end, master, replica…]`, each node `[ip, port, id, …]`.
    pub fn from_slots(reply: &Frame, seed_host: &str) -> Result<SlotMap, ClusterError> {
        let malformed = |detail: String| ClusterError::Malformed {
            command: "CLUSTER SLOTS",
            detail,
        };
        let Frame::Array(entries) = reply else {
            return Err(malformed(format!("expected an array, got {}", kind(reply))));
        };
        let mut by_master: BTreeMap<String, Shard> = BTreeMap::new();
        for entry in entries {
            let Frame::Array(parts) = entry else {
                return Err(malformed(format!("a range entry is {}", kind(entry))));
            };
            let [start, end, master, replicas @ ..] = parts.as_slice() else {
                return Err(malformed("a range entry without a master".into()));
            };
            let range = (
                slot(start).map_err(malformed)?,
                slot(end).map_err(malformed)?,
            );
            let master = slots_node(master, Role::Master, seed_host).map_err(malformed)?;
            let shard = by_master.entry(master.id.clone()).or_insert_with(|| Shard {
                master,
                replicas: Vec::new(),
                ranges: Vec::new(),
            });
            shard.ranges.push(range);
            for replica in replicas {
                let replica = slots_node(replica, Role::Replica, seed_host).map_err(malformed)?;
                if !shard.replicas.iter().any(|r| r.id == replica.id) {
                    shard.replicas.push(replica);
                }
            }
        }
        let shards = by_master
            .into_values()
            .map(|mut shard| {
                shard.ranges.sort_unstable();
                shard
            })
            .collect();
        Ok(SlotMap::ordered(shards))
    }

    fn ordered(mut shards: Vec<Shard>) -> SlotMap {
        shards.sort_by_key(|s| (s.ranges.first().map_or(SLOTS, |r| r.0), s.master.id.clone()));
        SlotMap { shards }
    }

    /// The shard serving `slot`, by index into [`SlotMap::shards`].
    pub fn shard_of(&self, slot: Slot) -> Option<usize> {
        self.shards.iter().position(|s| s.serves(slot))
    }

    /// The masters, in shard order.
    pub fn masters(&self) -> impl Iterator<Item = &Node> {
        self.shards.iter().map(|s| &s.master)
    }

    /// Every node, masters and replicas.
    pub fn nodes(&self) -> impl Iterator<Item = &Node> {
        self.shards
            .iter()
            .flat_map(|s| std::iter::once(&s.master).chain(&s.replicas))
    }

    /// Which slots are unserved or served twice.
    pub fn coverage(&self) -> Coverage {
        let mut owners = vec![0u8; SLOTS as usize];
        for shard in &self.shards {
            for &(a, b) in &shard.ranges {
                for s in a..=b.min(SLOTS - 1) {
                    owners[s as usize] = owners[s as usize].saturating_add(1);
                }
            }
        }
        let mut coverage = Coverage::default();
        let mut slot = 0usize;
        while slot < owners.len() {
            if owners[slot] == 0 {
                let start = slot;
                while slot + 1 < owners.len() && owners[slot + 1] == 0 {
                    slot += 1;
                }
                coverage.unserved.push((start as Slot, slot as Slot));
            } else if owners[slot] > 1 {
                coverage.doubly_served.push(slot as Slot);
            }
            slot += 1;
        }
        coverage
    }

    /// Whether two views give every slot to the same master (by node id).
    pub fn same_owners(&self, other: &SlotMap) -> bool {
        (0..SLOTS).all(|s| {
            let mine = self.shard_of(s).map(|i| &self.shards[i].master.id);
            let theirs = other.shard_of(s).map(|i| &other.shards[i].master.id);
            mine == theirs
        })
    }
}

/// Ranges as people write them: `0-5460,10923`.
pub struct Ranges<'a>(pub &'a [(Slot, Slot)]);

impl fmt::Display for Ranges<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, (a, b)) in self.0.iter().enumerate() {
            if i > 0 {
                f.write_str(",")?;
            }
            if a == b {
                write!(f, "{a}")?;
            } else {
                write!(f, "{a}-{b}")?;
            }
        }
        Ok(())
    }
}

fn kind(frame: &Frame) -> &'static str {
    match frame {
        Frame::Simple(_) => "a simple string",
        Frame::Error(_) => "an error",
        Frame::Integer(_) => "an integer",
        Frame::Bulk(_) => "a bulk string",
        Frame::Null => "null",
        Frame::Array(_) => "an array",
    }
}

fn text(frame: &Frame) -> Result<String, String> {
    frame
        .as_bytes()
        .map(|b| String::from_utf8_lossy(b).into_owned())
        .ok_or_else(|| format!("expected a string, got {}", kind(frame)))
}

fn int(frame: &Frame) -> Result<i64, String> {
    match frame {
        Frame::Integer(n) => Ok(*n),
        other => text(other)?
            .parse()
            .map_err(|_| format!("expected a number, got {other:?}")),
    }
}

fn slot(frame: &Frame) -> Result<Slot, String> {
    let n = int(frame)?;
    if (0..i64::from(SLOTS)).contains(&n) {
        Ok(n as Slot)
    } else {
        Err(format!("slot {n} is out of range"))
    }
}

/// A flat `[name, value, name, value…]` array (RESP2's rendering of a map) as a map.
fn pairs(frame: &Frame) -> Result<BTreeMap<String, &Frame>, String> {
    let Frame::Array(items) = frame else {
        return Err(format!("expected a name/value array, got {}", kind(frame)));
    };
    if items.len() % 2 != 0 {
        return Err("a name/value array of odd length".into());
    }
    items
        .chunks(2)
        .map(|pair| Ok((text(&pair[0])?, &pair[1])))
        .collect()
}

fn host_or_seed(host: String, seed_host: &str) -> String {
    if host.is_empty() || host == "?" {
        seed_host.to_string()
    } else {
        host
    }
}

fn port(n: i64) -> Result<u16, String> {
    u16::try_from(n)
        .ok()
        .filter(|p| *p != 0)
        .ok_or_else(|| format!("port {n} is out of range"))
}

fn shard_node(frame: &Frame, seed_host: &str) -> Result<Node, String> {
    let fields = pairs(frame)?;
    let get = |name: &str| fields.get(name).copied();
    let id = text(get("id").ok_or("a node without `id`")?)?;
    // A TLS-only cluster names `tls-port` and no `port`.
    let port_frame = get("port")
        .filter(|p| int(p).map(|n| n != 0).unwrap_or(false))
        .or(get("tls-port"))
        .ok_or_else(|| format!("node {id} has no port"))?;
    let host = match get("ip") {
        Some(ip) => text(ip)?,
        None => get("endpoint").map(text).transpose()?.unwrap_or_default(),
    };
    let role = match get("role").map(text).transpose()?.as_deref() {
        Some("master") => Role::Master,
        Some("replica" | "slave") => Role::Replica,
        other => return Err(format!("node {id} has role {other:?}")),
    };
    // `online`, `failed` or `loading`: only an online node answers for its slots.
    let healthy = matches!(
        get("health").map(text).transpose()?.as_deref(),
        None | Some("online")
    );
    Ok(Node {
        id,
        host: host_or_seed(host, seed_host),
        port: port(int(port_frame)?)?,
        role,
        healthy,
    })
}

fn slots_node(frame: &Frame, role: Role, seed_host: &str) -> Result<Node, String> {
    let Frame::Array(parts) = frame else {
        return Err(format!("a node is {}", kind(frame)));
    };
    let [host, port_frame, id, ..] = parts.as_slice() else {
        return Err("a node without ip, port and id".into());
    };
    Ok(Node {
        id: text(id)?,
        host: host_or_seed(text(host)?, seed_host),
        port: port(int(port_frame)?)?,
        role,
        healthy: true,
    })
}
