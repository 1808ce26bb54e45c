//! [`ClusterConn`]: one admin connection per master of a cluster, each command sent to the master
//! that serves its slot, redirections followed.
//!
//! The slot map is discovered from the seed (any node) and refreshed when a node answers `MOVED`
//! (the slot has a new owner for good). `ASK` (a slot half-way through a migration) sends the
//! command once more to the importing node after `ASKING`, leaving the map alone; `TRYAGAIN` and
//! `CLUSTERDOWN` wait briefly and retry, for up to 30 s (a lost connection is not retried: the
//! batch may have been applied; [`ClusterConn::apply_slot_batch`] asks the slot's offset key): a transaction of new keys in a slot being
//! migrated is answered `TRYAGAIN` by the importing node until that slot's migration ends, so a
//! per-slot batch waits for a resharding of its slot rather than split. A batch ([`ClusterConn::call_slot_batch`]) is retried
//! whole, so it must be a transaction (`MULTI … EXEC`, where a redirected command aborts the
//! `EXEC` and nothing is applied) or idempotent.

use std::collections::HashMap;
use std::time::Duration;

use thiserror::Error;

use super::cluster::{node_endpoint, slot_map, DiscoveryError};
use super::{ClientError, Conn};
use crate::cluster::offsets::{offset_key_pattern, parse_offset_value};
use crate::cluster::{key_slot, offset_key, Node, Redirect, Role, Slot, SlotMap};
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
    #[error("no node of the cluster answered")]
    NoNode,
    #[error("slot {slot}'s batch was refused by {addr}: {reply}")]
    Refused {
        slot: Slot,
        addr: String,
        reply: String,
    },
    #[error("slot {slot} was still redirected after {}s (last: {last})", REDIRECT_BUDGET.as_secs())]
    TooManyRedirects { slot: Slot, last: String },
}

/// One slot's commands of a flush.
pub type SlotBatch = (Slot, Vec<Vec<bytes::Bytes>>);

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

    /// The node this connection was discovered from (its endpoint carries the credentials and
    /// TLS settings every node shares).
    pub fn seed(&self) -> &Endpoint {
        &self.seed
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
        Err(last.unwrap_or(RoutedError::NoNode))
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
            let addr = match (&ask, &self.owners[slot as usize]) {
                (Some(addr), _) | (None, Some(addr)) => addr.clone(),
                (None, None) => {
                    // A hole in the map: a view taken mid-failover; read it again shortly.
                    last = "no master serves the slot".into();
                    tokio::time::sleep(RETRY_PAUSE).await;
                    self.refresh().await.ok();
                    continue;
                }
            };
            let asking = ask.is_some();
            let sent = {
                let conn = match self.conn_to(&addr).await {
                    Ok(conn) => conn,
                    Err(e) => {
                        // A node gone (a failover): the next try goes where the map says now.
                        self.refresh().await.ok();
                        return Err(e);
                    }
                };
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
                    // The connection broke with the batch possibly applied: not retried here
                    // (a transaction is not idempotent); the map is read again for the caller.
                    self.conns.remove(&addr);
                    self.refresh().await.ok();
                    return Err(e.into());
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

    /// Applies one slot's commands and sets that slot's offset key to `offset_value`, in one
    /// `MULTI`: the target holds both or neither (see [`crate::cluster::offsets`]). When the
    /// connection breaks (a target failover, a restart), the slot's offset key says whether the
    /// batch got in: it holds `offset_value` exactly when it did (each flush's value is unique),
    /// so the batch is sent again only when it did not.
    pub async fn apply_slot_batch(
        &mut self,
        slot: Slot,
        commands: &[Vec<bytes::Bytes>],
        migration: &str,
        offset_value: &str,
    ) -> Result<(), RoutedError> {
        self.apply_or_check(slot, commands, migration, offset_value, false)
            .await
    }

    /// [`ClusterConn::apply_slot_batch`], starting with the offset key's answer when `lost`
    /// (an earlier send of this batch may have been applied).
    async fn apply_or_check(
        &mut self,
        slot: Slot,
        commands: &[Vec<bytes::Bytes>],
        migration: &str,
        offset_value: &str,
        lost: bool,
    ) -> Result<(), RoutedError> {
        let deadline = tokio::time::Instant::now() + REDIRECT_BUDGET;
        let mut checked = lost;
        loop {
            if checked {
                match self.slot_holds(slot, migration, offset_value).await? {
                    Some(true) => return Ok(()),
                    Some(false) => {}
                    // Not known yet (the node is still away): never send blind.
                    None if tokio::time::Instant::now() < deadline => {
                        tokio::time::sleep(RETRY_PAUSE).await;
                        continue;
                    }
                    None => {
                        return Err(RoutedError::TooManyRedirects {
                            slot,
                            last: "the offset key could not be read after a lost connection".into(),
                        })
                    }
                }
            }
            match self
                .apply_once(slot, commands, migration, offset_value)
                .await
            {
                Err(RoutedError::Client(e)) if tokio::time::Instant::now() < deadline => {
                    tracing::warn!(slot, error = %e, "a slot batch lost its connection; checking its offset key");
                    tokio::time::sleep(RETRY_PAUSE).await;
                    checked = true;
                }
                other => return other,
            }
        }
    }

    /// Whether `slot`'s offset key holds `offset_value` (its batch is applied); `None` while the
    /// node cannot be asked.
    async fn slot_holds(
        &mut self,
        slot: Slot,
        migration: &str,
        offset_value: &str,
    ) -> Result<Option<bool>, RoutedError> {
        let key = offset_key(slot, migration);
        match self.call_key(key.as_bytes(), &["GET", key.as_str()]).await {
            Ok(value) => Ok(Some(
                value
                    .as_bytes()
                    .is_some_and(|v| v.as_ref() == offset_value.as_bytes()),
            )),
            Err(RoutedError::Client(_)) => Ok(None),
            Err(e) => Err(e),
        }
    }

    async fn apply_once(
        &mut self,
        slot: Slot,
        commands: &[Vec<bytes::Bytes>],
        migration: &str,
        offset_value: &str,
    ) -> Result<(), RoutedError> {
        let key = offset_key(slot, migration);
        let mut batch: Vec<Vec<&[u8]>> = Vec::with_capacity(commands.len() + 3);
        batch.push(vec![b"MULTI".as_slice()]);
        batch.extend(
            commands
                .iter()
                .map(|c| c.iter().map(|a| a.as_ref()).collect()),
        );
        batch.push(vec![
            b"SET".as_slice(),
            key.as_bytes(),
            offset_value.as_bytes(),
        ]);
        batch.push(vec![b"EXEC".as_slice()]);
        let replies = self.call_slot_batch(slot, &batch).await?;
        let addr = self.owners[slot as usize].clone().unwrap_or_default();
        let refused = |reply: String| RoutedError::Refused {
            slot,
            addr: addr.clone(),
            reply,
        };
        match replies.last() {
            Some(Frame::Array(results)) => match results.iter().find_map(Frame::as_error) {
                None => Ok(()),
                Some(e) => Err(refused(String::from_utf8_lossy(e).into_owned())),
            },
            Some(other) => {
                // EXECABORT names the queued command that was refused: report that one.
                let first = replies
                    .iter()
                    .find_map(Frame::as_error)
                    .map(|e| String::from_utf8_lossy(e).into_owned());
                Err(refused(first.unwrap_or_else(|| other.describe())))
            }
            None => Err(refused("no reply".into())),
        }
    }

    /// Applies many slots' batches of one flush (each with its offset key, each in its own
    /// `MULTI`): every node's transactions go as one pipeline, the nodes in parallel. A batch
    /// that meets a redirection, or whose node's connection broke, is then applied alone
    /// through [`ClusterConn::apply_slot_batch`] (which asks its offset key after a loss).
    pub async fn apply_slot_batches(
        &mut self,
        batches: Vec<SlotBatch>,
        migration: &str,
        offset_value: &str,
    ) -> Result<(), RoutedError> {
        let mut by_node: HashMap<String, Vec<SlotBatch>> = HashMap::new();
        let mut again = Vec::new();
        for (slot, commands) in batches {
            match self.owners[slot as usize].clone() {
                Some(addr) => by_node.entry(addr).or_default().push((slot, commands)),
                // Unserved in this view (mid-failover): applied alone, once the map has it.
                None => again.push(((slot, commands), false)),
            }
        }
        for addr in by_node.keys() {
            self.conn_to(addr).await?;
        }
        let mut sending = Vec::with_capacity(by_node.len());
        for (addr, list) in by_node {
            let mut conn = self.conns.remove(&addr).expect("connected above");
            sending.push(async move {
                let keys: Vec<String> = list
                    .iter()
                    .map(|(s, _)| offset_key(*s, migration))
                    .collect();
                let mut pipeline: Vec<Vec<&[u8]>> = Vec::new();
                for ((_, commands), key) in list.iter().zip(&keys) {
                    pipeline.push(vec![b"MULTI".as_slice()]);
                    pipeline.extend(
                        commands
                            .iter()
                            .map(|c| c.iter().map(|a| a.as_ref()).collect()),
                    );
                    pipeline.push(vec![
                        b"SET".as_slice(),
                        key.as_bytes(),
                        offset_value.as_bytes(),
                    ]);
                    pipeline.push(vec![b"EXEC".as_slice()]);
                }
                let replies = conn.call_many(&pipeline).await;
                (addr, conn, list, replies)
            });
        }
        for (addr, conn, list, replies) in futures::future::join_all(sending).await {
            let replies = match replies {
                Ok(replies) => {
                    self.conns.insert(addr.clone(), conn);
                    replies
                }
                Err(e) => {
                    tracing::warn!(%addr, error = %e, "a node's pipeline lost its connection");
                    again.extend(list.into_iter().map(|b| (b, true)));
                    continue;
                }
            };
            let mut replies = replies.into_iter();
            for (slot, commands) in list {
                let mine: Vec<Frame> = replies.by_ref().take(commands.len() + 3).collect();
                let host = addr.rsplit_once(':').map_or(addr.as_str(), |(h, _)| h);
                let redirected = mine
                    .iter()
                    .filter_map(Frame::as_error)
                    .any(|e| Redirect::parse(e, host).is_some());
                match mine.last() {
                    _ if redirected => again.push(((slot, commands), false)),
                    Some(Frame::Array(results)) => {
                        if let Some(e) = results.iter().find_map(Frame::as_error) {
                            return Err(RoutedError::Refused {
                                slot,
                                addr: addr.clone(),
                                reply: String::from_utf8_lossy(e).into_owned(),
                            });
                        }
                    }
                    other => {
                        let first = mine.iter().find_map(Frame::as_error);
                        return Err(RoutedError::Refused {
                            slot,
                            addr: addr.clone(),
                            reply: first.map_or_else(
                                || other.map_or("no reply".into(), Frame::describe),
                                |e| String::from_utf8_lossy(e).into_owned(),
                            ),
                        });
                    }
                }
            }
        }
        if again.iter().any(|(_, lost)| *lost) {
            self.refresh().await.ok();
        }
        for ((slot, commands), lost) in again {
            self.apply_or_check(slot, &commands, migration, offset_value, lost)
                .await?;
        }
        Ok(())
    }

    /// Every offset key of `migration` on the cluster, as `(slot, offset)`; keys that do not hold
    /// an offset (a snapshot marker) are left out.
    pub async fn read_slot_offsets(
        &mut self,
        migration: &str,
    ) -> Result<Vec<(Slot, i64)>, RoutedError> {
        let pattern = offset_key_pattern(migration);
        let masters: Vec<String> = self.map.masters().map(Node::addr).collect();
        let mut keys = Vec::new();
        for addr in masters {
            let conn = self.conn_to(&addr).await?;
            let mut cursor = b"0".to_vec();
            loop {
                let reply = conn
                    .call(&[
                        b"SCAN".as_slice(),
                        &cursor,
                        b"MATCH",
                        pattern.as_bytes(),
                        b"COUNT",
                        b"1000",
                    ])
                    .await?;
                let Frame::Array(parts) = reply else {
                    return Err(RoutedError::Refused {
                        slot: 0,
                        addr: addr.clone(),
                        reply: format!("SCAN answered {}", reply.describe()),
                    });
                };
                let mut parts = parts.into_iter();
                let next = parts
                    .next()
                    .and_then(|f| f.as_bytes().cloned())
                    .unwrap_or_default();
                if let Some(Frame::Array(found)) = parts.next() {
                    keys.extend(found.into_iter().filter_map(|f| f.as_bytes().cloned()));
                }
                if next.as_ref() == b"0" || next.is_empty() {
                    break;
                }
                cursor = next.to_vec();
            }
        }
        let mut offsets = Vec::with_capacity(keys.len());
        for key in keys {
            let value = self.call_key(&key, &[b"GET".as_slice(), &key]).await?;
            let Some(value) = value.as_bytes() else {
                continue;
            };
            if let Some((_, offset)) = parse_offset_value(&String::from_utf8_lossy(value)) {
                offsets.push((key_slot(&key), offset));
            }
        }
        Ok(offsets)
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
