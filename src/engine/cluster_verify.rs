//! Verification against a Redis Cluster target.
//!
//! Counts: the source's keys (per db, those the shape sends) against the keys of every master
//! summed (`DBSIZE`; for one shard of a cluster source, `CLUSTER COUNTKEYSINSLOT` of its slots),
//! minus Ferry's own bookkeeping there (`ferry:*`: the lease, the base key
//! and the per-slot offset keys, found by `SCAN MATCH` on each master). Keys: `sample` takes
//! keys at random from the source (`RANDOMKEY`, each db's share of the sample size), `full`
//! walks the source with `SCAN`; each key is compared with its target name on the master of
//! its slot (routed, redirections followed): present, same `DUMP` body (the payload without its
//! version and CRC trailer), TTLs within the tolerance. The type-aware fallback of the
//! standalone verifier (values equal but encoded differently) is not applied here: a cluster
//! target of another version than the source may report such keys as different.

use std::collections::{BTreeMap, HashMap};

use bytes::Bytes;

use super::super::error::EngineError;
use super::super::Tuning;
use super::routed;
use crate::client::cluster::node_endpoint;
use crate::client::routed::ClusterConn;
use crate::client::Conn;
use crate::cluster::Node;
use crate::model::{Difference, ProblemKey, VerificationReport};
use crate::resp::Frame;
use crate::spec::Verify;
use crate::transport::Peer;

/// Problem keys listed in the report.
const MAX_PROBLEMS: usize = 100;

pub(super) struct Verifier<'a> {
    pub source: &'a mut Conn,
    pub target: &'a mut ClusterConn,
    pub tuning: &'a Tuning,
    pub mode: Verify,
    pub shape: &'a crate::shape::Shape,
    /// Plain connections to the target's masters by address, for the type-aware comparison
    /// (made when first needed).
    pub masters: HashMap<String, Conn>,
}

/// A plain connection to each master of the cluster `conn` sees (SCAN and DBSIZE are per node).
async fn master_conns(
    conn: &ClusterConn,
    seed: &crate::spec::Endpoint,
) -> Result<Vec<Conn>, EngineError> {
    let masters: Vec<Node> = conn.map().masters().cloned().collect();
    let mut conns = Vec::with_capacity(masters.len());
    for node in masters {
        let peer = Peer::new(&node_endpoint(seed, &node))
            .map_err(|e| EngineError::target(crate::client::ClientError::Connect(e)))?;
        conns.push(Conn::connect(&peer).await.map_err(EngineError::target)?);
    }
    Ok(conns)
}

/// Every key matching `pattern` on every master.
pub(super) async fn scan_all(
    conn: &mut ClusterConn,
    pattern: &str,
) -> Result<Vec<Bytes>, EngineError> {
    let seed = conn.seed().clone();
    let mut keys = Vec::new();
    for mut master in master_conns(conn, &seed).await? {
        keys.extend(scan_node(&mut master, pattern).await?);
    }
    Ok(keys)
}

async fn scan_node(conn: &mut Conn, pattern: &str) -> Result<Vec<Bytes>, EngineError> {
    let mut keys = Vec::new();
    let mut cursor = b"0".to_vec();
    loop {
        let reply = conn
            .call_ok(&[
                b"SCAN".as_slice(),
                &cursor,
                b"MATCH",
                pattern.as_bytes(),
                b"COUNT",
                b"1000",
            ])
            .await
            .map_err(EngineError::target)?;
        let (next, found) = scan_reply(reply).ok_or_else(|| {
            EngineError::TargetLinkLost(format!("{} answered SCAN with no cursor", conn.addr()))
        })?;
        keys.extend(found);
        if next == b"0" {
            return Ok(keys);
        }
        cursor = next;
    }
}

/// The keys of every master that are data (all but `ferry:*`), summed (a cluster has only db 0).
pub(super) async fn data_keys(conn: &mut ClusterConn) -> Result<u64, EngineError> {
    let seed = conn.seed().clone();
    let mut total = 0u64;
    for mut master in master_conns(conn, &seed).await? {
        let size = master
            .call_ok(&["DBSIZE"])
            .await
            .map_err(EngineError::target)?
            .as_int()
            .unwrap_or(0)
            .max(0) as u64;
        let own = scan_node(&mut master, "ferry:*").await?.len() as u64;
        total += size.saturating_sub(own);
    }
    Ok(total)
}

/// The data keys (all but `ferry:*`) of the slots in `ranges` only: what one shard of a cluster
/// source wrote into a cluster target that also holds the other shards' keys. Each slot is
/// counted on the master serving it (`CLUSTER COUNTKEYSINSLOT`, pipelined per master), and
/// Ferry's own keys of those slots are taken off.
pub(super) async fn data_keys_in(
    conn: &mut ClusterConn,
    ranges: &[(u16, u16)],
) -> Result<u64, EngineError> {
    let inside = |slot: u16| ranges.iter().any(|&(a, b)| (a..=b).contains(&slot));
    let seed = conn.seed().clone();
    let shards = conn.map().shards.clone();
    let mut total = 0u64;
    for shard in shards {
        let slots: Vec<u16> = shard
            .ranges
            .iter()
            .flat_map(|&(a, b)| a..=b)
            .filter(|s| inside(*s))
            .collect();
        if slots.is_empty() {
            continue;
        }
        let peer = Peer::new(&node_endpoint(&seed, &shard.master))
            .map_err(|e| EngineError::target(crate::client::ClientError::Connect(e)))?;
        let mut master = Conn::connect(&peer).await.map_err(EngineError::target)?;
        for chunk in slots.chunks(1000) {
            let commands: Vec<Vec<String>> = chunk
                .iter()
                .map(|s| vec!["CLUSTER".into(), "COUNTKEYSINSLOT".into(), s.to_string()])
                .collect();
            for reply in master
                .call_many(&commands)
                .await
                .map_err(EngineError::target)?
            {
                match reply {
                    Frame::Integer(n) => total += n.max(0) as u64,
                    other => {
                        return Err(EngineError::TargetLinkLost(format!(
                            "{} answered CLUSTER COUNTKEYSINSLOT with {other:?}",
                            master.addr()
                        )))
                    }
                }
            }
        }
        let own = scan_node(&mut master, "ferry:*")
            .await?
            .iter()
            .filter(|k| inside(crate::cluster::key_slot(k)))
            .count() as u64;
        total = total.saturating_sub(own);
    }
    Ok(total)
}

/// [`super::super::resume::sweep`] on every master of a cluster: the keys neither `written` by
/// the redone snapshot nor held `before` the migration (nor `ferry:*`), deleted on the master
/// that holds them, one key per `DEL` (a cluster refuses a `DEL` across slots).
pub(super) async fn sweep(
    conn: &mut ClusterConn,
    written: &super::super::resume::KeySet,
    before: &super::super::resume::KeySet,
    shape: &crate::shape::Shape,
) -> Result<u64, EngineError> {
    let seed = conn.seed().clone();
    let mut removed = 0u64;
    for mut master in master_conns(conn, &seed).await? {
        let stale: Vec<Bytes> = scan_node(&mut master, "*")
            .await?
            .into_iter()
            .filter(|k| {
                !k.starts_with(crate::model::BOOKKEEPING_PREFIX)
                    && !written.contains(0, k)
                    && !before.contains(0, k)
                    && (shape.is_identity() || shape.may_have_written(0, k))
            })
            .collect();
        for chunk in stale.chunks(1000) {
            let dels: Vec<Vec<&[u8]>> = chunk.iter().map(|k| vec![b"DEL".as_slice(), k]).collect();
            for reply in master.call_many(&dels).await.map_err(EngineError::target)? {
                removed += reply.as_int().unwrap_or(0).max(0) as u64;
            }
        }
    }
    Ok(removed)
}

/// `(next cursor, keys)` of a SCAN reply.
fn scan_reply(reply: Frame) -> Option<(Vec<u8>, Vec<Bytes>)> {
    let Frame::Array(mut parts) = reply else {
        return None;
    };
    let (Some(Frame::Array(keys)), Some(next)) = (parts.pop(), parts.pop()) else {
        return None;
    };
    let next = next.as_bytes()?.to_vec();
    Some((
        next,
        keys.into_iter()
            .filter_map(|k| k.as_bytes().cloned())
            .collect(),
    ))
}

fn dump_body(reply: &Frame) -> Option<&[u8]> {
    match reply {
        Frame::Bulk(b) if b.len() >= 10 => Some(&b[..b.len() - 10]),
        _ => None,
    }
}

impl Verifier<'_> {
    pub async fn run(mut self) -> Result<VerificationReport, EngineError> {
        let mut report = VerificationReport {
            mode: self.mode,
            checked: 0,
            missing: 0,
            different: 0,
            extra: 0,
            problems: vec![],
        };
        let info = self
            .source
            .info("keyspace")
            .await
            .map_err(EngineError::source)?;
        let source_dbs: BTreeMap<u32, u64> = info
            .keyspace
            .iter()
            .filter(|(db, _)| self.shape.db_in(**db))
            .map(|(db, stats)| (*db, stats.keys))
            .collect();
        let source_total: u64 = source_dbs.values().sum();
        let mut missing_seen = 0u64;
        for (&db, &count) in &source_dbs {
            self.source.select(db).await.map_err(EngineError::source)?;
            let keys = match self.mode {
                Verify::Full => self.scan_source().await?,
                _ => {
                    let share = if source_total == 0 {
                        0
                    } else {
                        (self.tuning.sample_keys as u64 * count).div_ceil(source_total)
                    };
                    self.sample_source(share.min(count) as usize).await?
                }
            };
            for key in keys {
                if !self.shape.key_in(db, &key) {
                    continue;
                }
                let target_key = self.shape.target_key(&key);
                if let Some(difference) = self.compare(&key, &target_key).await? {
                    if difference == Difference::Missing {
                        missing_seen += 1;
                        report.missing += 1;
                    } else {
                        report.different += 1;
                    }
                    if report.problems.len() < MAX_PROBLEMS {
                        report.problems.push(ProblemKey {
                            db,
                            key: String::from_utf8_lossy(&key).into_owned(),
                            difference,
                        });
                    }
                }
                report.checked += 1;
            }
        }
        // Counts are comparable when no key stays behind (a filter makes the source's count
        // say nothing about the target's).
        if !self.shape.filters() {
            // One shard of a cluster source answers for its own slots only.
            let target_count = match self.shape.slots() {
                Some(ranges) => data_keys_in(self.target, ranges).await?,
                None => data_keys(self.target).await?,
            };
            let expected = source_total.saturating_sub(missing_seen);
            if self.mode != Verify::Full && source_total > target_count {
                let gone = source_total - target_count;
                report.missing += gone.saturating_sub(missing_seen);
            }
            let extra = target_count.saturating_sub(match self.mode {
                Verify::Full => expected,
                _ => source_total,
            });
            if extra > 0 {
                report.extra += extra;
                if report.problems.len() < MAX_PROBLEMS {
                    report.problems.push(ProblemKey {
                        db: 0,
                        key: format!("({extra} keys)"),
                        difference: Difference::Extra,
                    });
                }
            }
        }
        Ok(report)
    }

    async fn scan_source(&mut self) -> Result<Vec<Bytes>, EngineError> {
        let mut keys = Vec::new();
        let mut cursor = b"0".to_vec();
        loop {
            let reply = self
                .source
                .call_ok(&[b"SCAN".as_slice(), &cursor, b"COUNT", b"1000"])
                .await
                .map_err(EngineError::source)?;
            let (next, found) = scan_reply(reply)
                .ok_or_else(|| EngineError::SourceError("SCAN returned a bad reply".into()))?;
            keys.extend(found);
            if next == b"0" {
                return Ok(keys);
            }
            cursor = next;
        }
    }

    async fn sample_source(&mut self, n: usize) -> Result<Vec<Bytes>, EngineError> {
        let mut keys = std::collections::BTreeSet::new();
        // Random picks repeat: a few more tries than keys wanted.
        for _ in 0..n.saturating_mul(2) {
            if keys.len() >= n {
                break;
            }
            let reply = self
                .source
                .call_ok(&["RANDOMKEY"])
                .await
                .map_err(EngineError::source)?;
            match reply.as_bytes() {
                Some(key) => keys.insert(key.clone()),
                None => break,
            };
        }
        Ok(keys.into_iter().collect())
    }

    /// One key on both sides: `None` when it matches (or the source no longer has it).
    async fn compare(
        &mut self,
        key: &Bytes,
        target_key: &Bytes,
    ) -> Result<Option<Difference>, EngineError> {
        let source = self
            .source
            .call_many(&[vec![b"DUMP".as_slice(), key], vec![b"PTTL".as_slice(), key]])
            .await
            .map_err(EngineError::source)?;
        let Some(source_body) = dump_body(&source[0]) else {
            // Expired or deleted while we compare: not a problem.
            return Ok(None);
        };
        let slot = crate::cluster::key_slot(target_key);
        let target = self
            .target
            .call_slot_batch(
                slot,
                &[
                    vec![b"DUMP".as_slice(), target_key],
                    vec![b"PTTL".as_slice(), target_key],
                ],
            )
            .await
            .map_err(routed)?;
        let Some(target_body) = target.first().and_then(dump_body) else {
            return Ok(Some(Difference::Missing));
        };
        if source_body != target_body && !self.same_value(key, target_key).await? {
            return Ok(Some(Difference::Value));
        }
        let ttl = |f: Option<&Frame>| f.and_then(Frame::as_int).unwrap_or(-1);
        let (s, t) = (ttl(source.get(1)), ttl(target.get(1)));
        let same_ttl = match (s >= 0, t >= 0) {
            (true, true) => (s - t).abs() <= self.tuning.ttl_tolerance_ms,
            (false, false) => true,
            _ => false,
        };
        Ok((!same_ttl).then_some(Difference::Ttl))
    }

    /// Whether two values whose `DUMP`s differ are the same anyway (a set or hash encoded in
    /// another order after `RESTORE`): the standalone verifier's version-independent reading
    /// ([`super::super::verify::canonical`]), on the master that serves the key.
    async fn same_value(&mut self, key: &Bytes, target_key: &Bytes) -> Result<bool, EngineError> {
        let slot = crate::cluster::key_slot(target_key);
        let map = self.target.map();
        let Some(shard) = map.shard_of(slot) else {
            return Ok(false);
        };
        let node = map.shards[shard].master.clone();
        if !self.masters.contains_key(&node.addr()) {
            let peer = Peer::new(&node_endpoint(self.target.seed(), &node))
                .map_err(|e| EngineError::target(crate::client::ClientError::Connect(e)))?;
            let conn = Conn::connect(&peer).await.map_err(EngineError::target)?;
            self.masters.insert(node.addr(), conn);
        }
        let Some(target) = self.masters.get_mut(&node.addr()) else {
            return Ok(false);
        };
        let kind = |f: Frame| {
            f.as_bytes()
                .map(|b| String::from_utf8_lossy(b).into_owned())
        };
        let source_kind = kind(
            self.source
                .call_ok(&[b"TYPE".as_slice(), key])
                .await
                .map_err(EngineError::source)?,
        );
        let target_kind = kind(
            target
                .call_ok(&[b"TYPE".as_slice(), target_key])
                .await
                .map_err(EngineError::target)?,
        );
        let (Some(source_kind), Some(target_kind)) = (source_kind, target_kind) else {
            return Ok(false);
        };
        if source_kind != target_kind {
            return Ok(false);
        }
        let canonical = super::super::verify::canonical;
        let source_value = canonical(self.source, &source_kind, key, true)
            .await
            .map_err(EngineError::source)?;
        let target_value = canonical(target, &target_kind, target_key, true)
            .await
            .map_err(EngineError::target)?;
        Ok(source_value.is_some() && source_value == target_value)
    }
}
