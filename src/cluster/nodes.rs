//! `CLUSTER NODES`: the one reply that says which slots a node is moving right now.
//!
//! `CLUSTER SHARDS` and `CLUSTER SLOTS` show who serves a slot, not that it is half-way to another
//! node. A slot being resharded is listed on its node's own line (`myself`) as `[slot->-<id>]`
//! (migrating away) or `[slot-<-<id>]` (importing). A migration must not start while one is: keys
//! of that slot live on two nodes and the answer to a read depends on timing.

use super::slot::{Slot, SLOTS};
use super::ClusterError;

/// A slot in the middle of a move, as the node that reported it sees it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SlotMove {
    pub slot: Slot,
    /// The node id at the other end of the move.
    pub peer: String,
    pub direction: MoveDirection,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MoveDirection {
    Migrating,
    Importing,
}

/// One line of `CLUSTER NODES`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NodeLine {
    pub id: String,
    /// `host:port` (the bus port and host name after `@` are dropped).
    pub addr: String,
    pub flags: Vec<String>,
    /// The master's id, for a replica.
    pub master: Option<String>,
    pub ranges: Vec<(Slot, Slot)>,
    pub moves: Vec<SlotMove>,
}

impl NodeLine {
    pub fn is_myself(&self) -> bool {
        self.flags.iter().any(|f| f == "myself")
    }

    pub fn has_flag(&self, flag: &str) -> bool {
        self.flags.iter().any(|f| f == flag)
    }
}

/// Parses a `CLUSTER NODES` reply (one line per node).
pub fn parse_nodes(text: &str) -> Result<Vec<NodeLine>, ClusterError> {
    let malformed = |detail: String| ClusterError::Malformed {
        command: "CLUSTER NODES",
        detail,
    };
    let mut lines = Vec::new();
    for line in text.lines().map(str::trim).filter(|l| !l.is_empty()) {
        let fields: Vec<&str> = line.split(' ').collect();
        if fields.len() < 8 {
            return Err(malformed(format!(
                "a line of {} fields: {line}",
                fields.len()
            )));
        }
        let addr = fields[1].split(['@', ',']).next().unwrap_or_default();
        let mut node = NodeLine {
            id: fields[0].to_string(),
            addr: addr.to_string(),
            flags: fields[2].split(',').map(str::to_string).collect(),
            master: (fields[3] != "-").then(|| fields[3].to_string()),
            ranges: Vec::new(),
            moves: Vec::new(),
        };
        for item in &fields[8..] {
            if let Some(moving) = item.strip_prefix('[').and_then(|i| i.strip_suffix(']')) {
                node.moves.push(slot_move(moving).map_err(malformed)?);
            } else {
                let (a, b) = item.split_once('-').unwrap_or((item, item));
                node.ranges
                    .push((number(a).map_err(malformed)?, number(b).map_err(malformed)?));
            }
        }
        lines.push(node);
    }
    Ok(lines)
}

fn slot_move(text: &str) -> Result<SlotMove, String> {
    let (slot, peer, direction) = if let Some((slot, peer)) = text.split_once("->-") {
        (slot, peer, MoveDirection::Migrating)
    } else if let Some((slot, peer)) = text.split_once("-<-") {
        (slot, peer, MoveDirection::Importing)
    } else {
        return Err(format!("unreadable slot move [{text}]"));
    };
    Ok(SlotMove {
        slot: number(slot)?,
        peer: peer.to_string(),
        direction,
    })
}

fn number(text: &str) -> Result<Slot, String> {
    text.parse::<Slot>()
        .ok()
        .filter(|s| *s < SLOTS)
        .ok_or_else(|| format!("`{text}` is not a slot"))
}
