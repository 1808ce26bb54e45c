//! [`ClusterConn`]: one admin connection per master of a cluster, each command sent to the master
//! that serves its slot, redirections followed.
//!
//! The slot map is discovered from the seed (any node) and refreshed when a node answers `MOVED`
//! (the slot has a new owner for good). `ASK` (a slot half-way through a migration) sends the
//! command once more to the importing node after `ASKING`, leaving the map alone; `TRYAGAIN` and
//! `CLUSTERDOWN` wait briefly and retry, for up to 30 s: a transaction of new keys in a slot being
//! migrated is answered `TRYAGAIN` by the importing node until that slot's migration ends, so a
//! per-slot batch waits for a resharding of its slot rather than split. A batch ([`ClusterConn::call_slot_batch`]) is retried
//! whole, so it must be a transaction (`MULTI … EXEC`, where a redirected command aborts the
//! `EXEC` and nothing is applied) or idempotent.

use std::collections::HashMap;
use std::time::Duration;

use thiserror::Error;

use super::cluster::{node_endpoint, slot_map, DiscoveryError};
use super::{ClientError, Conn};
use crate::cluster::{key_slot, Node, Redirect, Role, Slot, SlotMap};
use crate::resp::Frame;
use crate::spec::Endpoint;
use crate::transport::Peer;

/// How long one command may keep being redirected or told to retry: a slot being migrated
/// answers `TRYAGAIN` to a transaction whose keys are not all on one side yet, until the
/// migration of that slot ends (seconds for `redis-cli --cluster reshard`).
const REDIRECT_BUDGET: Duration = Duration::from_secs(30);
/// How long to wait before retrying after `TRYAGAIN` or `CLUSTERDOWN`.
const RETRY_PAUSE: Duration = Duration::from_millis(100);

#[derive(Debug, Error)]
pub enum RoutedError {
    #[error(transparent)]
    Client(#[from] ClientError),
    #[error(transparent)]
    Discovery(#[from] DiscoveryError),
    #[error("no master serves slot {slot}; the cluster's slot map has a hole")]
    Unserved { slot: Slot },
    #[error("slot {slot} was still redirected after {}s (last: {last})", REDIRECT_BUDGET.as_secs())]
    TooManyRedirects { slot: Slot, last: String },
}

/// Connections to the masters of one cluster, routed by slot.
pub struct ClusterConn {
    seed: Endpoint,
    map: SlotMap,
    /// The master serving each slot, as `host:port`.
    owners: Vec<Option<String>>,
    conns: HashMap<String, Conn>,
    /// How many `MOVED` answers made the map be read again.
    pub refreshes: u64,
    /// How many commands or batches followed an `ASK`.
    pub asks: u64,
}

impl ClusterConn {
    /// Discovers the cluster from `seed` (any node of it).
    pub async fn connect(seed: &Endpoint) -> Result<ClusterConn, RoutedError> {
        let mut conn = Conn::connect(&peer(seed)?).await?;
        let discovered = slot_map(&mut conn).await?;
        let mut routed = ClusterConn {
            seed: seed.clone(),
            map: discovered.map,
            owners: Vec::new(),
            conns: HashMap::new(),
            refreshes: 0,
            asks: 0,
        };
        routed.index();
        routed.conns.insert(conn.addr().to_string(), conn);
        Ok(routed)
    }

    /// The slot map in use.
    pub fn map(&self) -> &SlotMap {
        &self.map
    }

    fn index(&mut self) {
        self.owners = (0..crate::cluster::SLOTS)
            .map(|slot| {
                self.map
                    .shard_of(slot)
                    .map(|i| self.map.shards[i].master.addr())
            })
            .collect();
    }

    /// Reads the slot map again, from any master that answers (the seed may be the one gone).
    pub async fn refresh(&mut self) -> Result<(), RoutedError> {
        self.refreshes += 1;
        let mut candidates: Vec<String> = self.map.masters().map(Node::addr).collect();
        candidates.push(format!("{}:{}", self.seed.url.host, self.seed.url.port));
        let mut last = None;
        for addr in candidates {
            let conn = match self.conn_to(&addr).await {
                Ok(conn) => conn,
                Err(e) => {
                    last = Some(e);
                    continue;
                }
            };
            match slot_map(conn).await {
                Ok(discovered) => {
                    self.map = discovered.map;
                    self.index();
                    return Ok(());
                }
                Err(e) => {
                    self.conns.remove(&addr);
                    last = Some(e.into());
                }
            }
        }
        Err(last.unwrap_or(RoutedError::Unserved { slot: 0 }))
    }

    async fn conn_to(&mut self, addr: &str) -> Result<&mut Conn, RoutedError> {
        if !self.conns.contains_key(addr) {
            let (host, port) = addr.rsplit_once(':').unwrap_or((addr, "0"));
            let node = Node {
                id: String::new(),
                host: host.to_string(),
                port: port.parse().unwrap_or(0),
                role: Role::Master,
                healthy: true,
            };
            let conn = Conn::connect(&peer(&node_endpoint(&self.seed, &node))?).await?;
            self.conns.insert(addr.to_string(), conn);
        }
        Ok(self.conns.get_mut(addr).expect("inserted above"))
    }

    /// Runs one command on the master of `key`'s slot.
    pub async fn call_key<A: AsRef<[u8]>>(
        &mut self,
        key: &[u8],
        args: &[A],
    ) -> Result<Frame, RoutedError> {
        let command: Vec<&[u8]> = args.iter().map(AsRef::as_ref).collect();
        let mut replies = self.call_slot_batch(key_slot(key), &[command]).await?;
        Ok(replies.pop().unwrap_or(Frame::Null))
    }

    /// Sends `commands` as one pipeline to the master of `slot` and returns their replies. When
    /// any reply is a redirection, the whole batch is sent again where it points (see the module
    /// doc: a batch must be a transaction or idempotent).
    pub async fn call_slot_batch<A: AsRef<[u8]>>(
        &mut self,
        slot: Slot,
        commands: &[Vec<A>],
    ) -> Result<Vec<Frame>, RoutedError> {
        let mut ask: Option<String> = None;
        let mut last = String::new();
        let deadline = tokio::time::Instant::now() + REDIRECT_BUDGET;
        while tokio::time::Instant::now() < deadline {
            let addr = match &ask {
                Some(addr) => addr.clone(),
                None => self.owners[slot as usize]
                    .clone()
                    .ok_or(RoutedError::Unserved { slot })?,
            };
            let asking = ask.is_some();
            let sent = {
                let conn = self.conn_to(&addr).await?;
                let mut batch: Vec<Vec<&[u8]>> = Vec::with_capacity(commands.len() + 1);
                if asking {
                    batch.push(vec![b"ASKING".as_slice()]);
                }
                batch.extend(
                    commands
                        .iter()
                        .map(|c| c.iter().map(AsRef::as_ref).collect()),
                );
                conn.call_many(&batch).await
            };
            let mut replies = match sent {
                Ok(replies) => replies,
                Err(e) => {
                    // A dead node: forget the connection and the map; the next try asks again.
                    self.conns.remove(&addr);
                    last = e.to_string();
                    ask = None;
                    tokio::time::sleep(RETRY_PAUSE).await;
                    self.refresh().await.ok();
                    continue;
                }
            };
            if asking {
                replies.remove(0);
            }
            let host = addr.rsplit_once(':').map_or(addr.as_str(), |(h, _)| h);
            let redirect = replies
                .iter()
                .filter_map(Frame::as_error)
                .find_map(|e| Redirect::parse(e, host));
            match redirect {
                None => return Ok(replies),
                Some(Redirect::Moved { host, port, .. }) => {
                    last = format!("MOVED to {host}:{port}");
                    ask = None;
                    self.refresh().await?;
                }
                Some(Redirect::Ask { host, port, .. }) => {
                    last = format!("ASK {host}:{port}");
                    self.asks += 1;
                    ask = Some(format!("{host}:{port}"));
                }
                Some(Redirect::TryAgain | Redirect::ClusterDown) => {
                    last = "TRYAGAIN/CLUSTERDOWN".into();
                    ask = None;
                    tokio::time::sleep(RETRY_PAUSE).await;
                }
            }
        }
        Err(RoutedError::TooManyRedirects { slot, last })
    }

    /// Runs one command on every master (DBSIZE, FLUSHDB, FUNCTION LOAD…), in shard order.
    pub async fn call_each_master<A: AsRef<[u8]>>(
        &mut self,
        args: &[A],
    ) -> Vec<(String, Result<Frame, RoutedError>)> {
        let masters: Vec<String> = self.map.masters().map(Node::addr).collect();
        let mut replies = Vec::with_capacity(masters.len());
        for addr in masters {
            let reply = match self.conn_to(&addr).await {
                Ok(conn) => conn.call(args).await.map_err(RoutedError::from),
                Err(e) => Err(e),
            };
            replies.push((addr, reply));
        }
        replies
    }
}

fn peer(endpoint: &Endpoint) -> Result<Peer, RoutedError> {
    Peer::new(endpoint).map_err(|e| RoutedError::Client(ClientError::Connect(e)))
}
