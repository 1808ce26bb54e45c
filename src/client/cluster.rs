//! Asking a cluster node about its cluster: the slot map and the slots it is moving.
//!
//! Any node can answer for the whole cluster, so the URL of a migration names one seed node and
//! the rest is discovered. `CLUSTER SHARDS` (Redis/Valkey ≥ 7.0) is asked first, then
//! `CLUSTER SLOTS` (6.2, where SHARDS is an unknown subcommand). The parsing is
//! [`crate::cluster`]'s; this module only carries the questions.

use thiserror::Error;

use super::{ClientError, Conn};
use crate::cluster::{parse_nodes, ClusterError, Node, SlotMap, SlotMove};
use crate::resp::Frame;
use crate::spec::Endpoint;
use crate::transport::Peer;

/// Why a node's view of its cluster could not be read.
#[derive(Debug, Error)]
pub enum DiscoveryError {
    #[error(transparent)]
    Client(#[from] ClientError),
    #[error("{addr} refused `{command}`: {reply}")]
    Refused {
        addr: String,
        command: &'static str,
        reply: String,
    },
    #[error(transparent)]
    Malformed(#[from] ClusterError),
}

/// A slot map and the command that gave it.
#[derive(Debug, Clone)]
pub struct Discovered {
    pub map: SlotMap,
    /// `CLUSTER SHARDS` or `CLUSTER SLOTS`.
    pub command: &'static str,
}

/// The node's view of the cluster. Nodes listed without an address take `conn`'s host.
pub async fn slot_map(conn: &mut Conn) -> Result<Discovered, DiscoveryError> {
    let seed_host = seed_host(conn.addr());
    match conn.call(&["CLUSTER", "SHARDS"]).await? {
        Frame::Error(e) if is_unknown_command(&e) => {}
        Frame::Error(e) => return Err(refused(conn, "CLUSTER SHARDS", &e)),
        reply => {
            return Ok(Discovered {
                map: SlotMap::from_shards(&reply, &seed_host)?,
                command: "CLUSTER SHARDS",
            })
        }
    }
    match conn.call(&["CLUSTER", "SLOTS"]).await? {
        Frame::Error(e) => Err(refused(conn, "CLUSTER SLOTS", &e)),
        reply => Ok(Discovered {
            map: SlotMap::from_slots(&reply, &seed_host)?,
            command: "CLUSTER SLOTS",
        }),
    }
}

/// The slots this node is importing or migrating right now (its own `CLUSTER NODES` line).
pub async fn slot_moves(conn: &mut Conn) -> Result<Vec<SlotMove>, DiscoveryError> {
    let text = match conn.call(&["CLUSTER", "NODES"]).await? {
        Frame::Error(e) => return Err(refused(conn, "CLUSTER NODES", &e)),
        Frame::Bulk(b) | Frame::Simple(b) => String::from_utf8_lossy(&b).into_owned(),
        other => {
            return Err(ClusterError::Malformed {
                command: "CLUSTER NODES",
                detail: format!("expected text, got {}", other.describe()),
            }
            .into())
        }
    };
    Ok(parse_nodes(&text)?
        .into_iter()
        .filter(|line| line.is_myself())
        .flat_map(|line| line.moves)
        .collect())
}

/// The server that holds `key` behind `target`: `target` itself when it is not a cluster node
/// (or serves the key's slot), else the master the cluster names in its `MOVED` answer. One
/// `EXISTS` asks it: no `INFO` and no slot map, so the lease's first look at a target costs one
/// round trip. For the callers that speak plain commands about one key (the lease,
/// [`super::lease`]) and would otherwise be answered `MOVED`.
pub async fn key_peer(target: &Peer, key: &[u8]) -> Result<Peer, DiscoveryError> {
    let mut conn = Conn::connect(target).await?;
    match conn.call(&[b"EXISTS".as_slice(), key]).await? {
        Frame::Error(e) => match crate::cluster::Redirect::parse(&e, &target.url().host) {
            Some(crate::cluster::Redirect::Moved { host, port, .. }) => Ok(target.at(&host, port)),
            _ => Err(refused(&conn, "EXISTS", &e)),
        },
        _ => Ok(target.clone()),
    }
}

/// The endpoint of another node of the same cluster: its address, the seed's credentials and
/// TLS settings (a cluster shares its users and its certificate authority).
pub fn node_endpoint(seed: &Endpoint, node: &Node) -> Endpoint {
    let mut endpoint = seed.clone();
    endpoint.url.host = node.host.clone();
    endpoint.url.port = node.port;
    endpoint
}

/// Every master of the cluster `target` belongs to, dialled with `target`'s credentials and TLS
/// client ([`Peer::at`]); `None` when `target` is not a cluster node. What reads, counts or
/// cleans a whole target (its keys before the first write, Ferry's offset keys) asks every
/// master, since each holds only the keys of its slots.
pub async fn master_peers(target: &Peer) -> Result<Option<Vec<Peer>>, DiscoveryError> {
    let mut conn = Conn::connect(target).await?;
    if conn.info("cluster").await?.get("cluster_enabled") != Some("1") {
        return Ok(None);
    }
    let map = slot_map(&mut conn).await?.map;
    Ok(Some(
        map.masters()
            .map(|node| target.at(&node.host, node.port))
            .collect(),
    ))
}

/// The host part of `host:port` (an IPv6 address keeps its colons).
fn seed_host(addr: &str) -> String {
    match addr.rsplit_once(':') {
        Some((host, _)) => host
            .trim_start_matches('[')
            .trim_end_matches(']')
            .to_string(),
        None => addr.to_string(),
    }
}

fn is_unknown_command(error: &[u8]) -> bool {
    let text = String::from_utf8_lossy(error).to_ascii_lowercase();
    text.contains("unknown subcommand") || text.contains("unknown command")
}

fn refused(conn: &Conn, command: &'static str, error: &[u8]) -> DiscoveryError {
    DiscoveryError::Refused {
        addr: conn.addr().to_string(),
        command,
        reply: String::from_utf8_lossy(error).into_owned(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_seed_host_is_the_address_without_its_port() {
        assert_eq!(seed_host("10.0.0.1:7000"), "10.0.0.1");
        assert_eq!(seed_host("[::1]:7000"), "::1");
        assert!(is_unknown_command(
            b"ERR unknown subcommand 'SHARDS'. Try CLUSTER HELP."
        ));
        assert!(!is_unknown_command(b"NOPERM this user has no permissions"));
    }
}
