//! Verification: does the target hold what the source holds?
//!
//! `sample` compares per-db key counts and a random sample of keys; `full` compares every key of
//! the source. A key matches when its type is the same, its value is the same, and its TTL is
//! within a tolerance (clocks move while we compare). Values are compared cheaply first: the
//! bodies of `DUMP` (payload without the 10-byte version+CRC trailer) are equal when both servers
//! encode the value alike. When they are not (different versions, or an encoding that converged
//! differently under live writes), a type-aware comparison decides: sorted members for sets and
//! hashes, exact doubles for zset scores, entries and groups for streams, and the modules' own
//! read commands for the Redis Stack types ([`modules`]).
//!
//! A key above the big-key threshold is never DUMPed or read whole: that would block both servers
//! for as long as serializing it takes (~350 ms for 50 MB), the very stall the snapshot avoided
//! by writing it in chunks. It is compared in pages instead ([`paged`]).
//!
//! A key the source no longer has (it expired during the check) is not a problem.

use std::collections::{BTreeMap, HashSet};

use bytes::Bytes;

pub(super) mod file;
mod modules;
mod paged;
mod shaped;

use super::error::{show_key, EngineError};
use super::{Servers, Tuning};
use crate::client::Conn;
use crate::model::{Difference, ProblemKey, VerificationReport};
use crate::resp::Frame;
use crate::spec::Verify;
use paged::Pages;

/// Problem keys listed in the report.
const MAX_PROBLEMS: usize = 100;

/// Bytes of values (by `MEMORY USAGE`) fetched with DUMP in one pipelined group.
const DUMP_BUDGET: u64 = 8 * 1024 * 1024;

pub(crate) struct Verifier<'a> {
    pub source: &'a mut Conn,
    pub target: &'a mut Conn,
    pub servers: &'a Servers,
    pub tuning: &'a Tuning,
    pub mode: Verify,
    /// Ferry's offset key on the target, left out of the counts.
    pub offset_key: Option<&'a [u8]>,
    /// Keys seen in the snapshot (a relay samples them from the RDB it relays), per db: the
    /// sample starts with them, topped up with `RANDOMKEY`.
    pub sample_hint: Option<&'a BTreeMap<u32, Vec<Bytes>>>,
    /// The migration's filter, db map and renames: what is compared, and under which names
    /// ([`shaped`]).
    pub shape: &'a crate::shape::Shape,
}

fn src_err(e: crate::client::ClientError) -> EngineError {
    EngineError::source(e)
}

fn tgt_err(e: crate::client::ClientError) -> EngineError {
    EngineError::target(e)
}

/// How many of Ferry's bookkeeping keys db 0 of `target` holds: the lease, and `offset_key`
/// when given. They are not data, so key counts leave them out. Leaves the connection in db 0.
pub(crate) async fn bookkeeping_keys(
    target: &mut Conn,
    offset_key: Option<&[u8]>,
) -> Result<u64, crate::client::ClientError> {
    target.select(0).await?;
    let mut args: Vec<&[u8]> = vec![b"EXISTS", crate::model::LEASE_KEY.as_bytes()];
    args.extend(offset_key);
    let n = target.call_ok(&args).await?.as_int().unwrap_or(0);
    Ok(n.max(0) as u64)
}

/// `db3:keys=10,expires=2,avg_ttl=0` lines of `INFO keyspace` → db → key count.
async fn keyspace(conn: &mut Conn) -> Result<BTreeMap<u32, u64>, crate::client::ClientError> {
    let info = conn.info("keyspace").await?;
    Ok(info
        .keyspace
        .iter()
        .map(|(db, stats)| (*db, stats.keys))
        .collect())
}

impl Verifier<'_> {
    pub async fn run(mut self) -> Result<VerificationReport, EngineError> {
        if !self.shape.is_identity() {
            return self.run_shaped().await;
        }
        let mut report = VerificationReport {
            mode: self.mode,
            checked: 0,
            missing: 0,
            different: 0,
            extra: 0,
            problems: vec![],
        };
        let source_dbs = keyspace(self.source).await.map_err(src_err)?;
        let mut target_dbs = keyspace(self.target).await.map_err(tgt_err)?;
        // Ferry's own offset key (db 0, see `resume`) and the lease are not part of the data.
        let own = bookkeeping_keys(self.target, self.offset_key)
            .await
            .map_err(tgt_err)?;
        if let Some(count) = target_dbs.get_mut(&0) {
            *count = count.saturating_sub(own);
        }
        let total: u64 = source_dbs.values().sum();
        // The databases the source has. A database only the target has was not touched by
        // the migration (`flush` empties only what the snapshot writes to), so it is not judged.
        let dbs: Vec<u32> = source_dbs.keys().copied().collect();
        for db in dbs {
            let source_count = source_dbs.get(&db).copied().unwrap_or(0);
            let target_count = target_dbs.get(&db).copied().unwrap_or(0);
            self.source.select(db).await.map_err(src_err)?;
            self.target.select(db).await.map_err(tgt_err)?;
            // Full mode walks the source with SCAN and checks each batch as it comes, so memory
            // stays at one batch whatever the size of the database. (SCAN may return a key twice
            // while the source rehashes; such a key is simply checked twice.)
            let mut missing_here = 0u64;
            match self.mode {
                Verify::Full => {
                    let mut cursor = b"0".to_vec();
                    loop {
                        let (next, batch) = self.scan_batch(&cursor).await?;
                        self.check_batch(db, &batch, &batch, &mut report, &mut missing_here)
                            .await?;
                        if next == b"0" {
                            break;
                        }
                        cursor = next;
                    }
                }
                _ => {
                    let share = if total == 0 {
                        0
                    } else {
                        ((self.tuning.sample_keys as u64 * source_count).div_ceil(total)) as usize
                    };
                    let keys = self.sample(db, share.min(source_count as usize)).await?;
                    for batch in keys.chunks(1000) {
                        self.check_batch(db, batch, batch, &mut report, &mut missing_here)
                            .await?;
                    }
                }
            }
            // Keys on the target that the source does not have: the target holds the source's
            // keys minus the missing ones, plus the extra ones. In sample mode only the counts
            // are known.
            let extra = match self.mode {
                Verify::Full => {
                    target_count.saturating_sub(source_count.saturating_sub(missing_here))
                }
                _ => target_count.saturating_sub(source_count),
            };
            if self.mode != Verify::Full && source_count > target_count {
                report.missing += source_count - target_count;
                if report.problems.len() < MAX_PROBLEMS {
                    report.problems.push(ProblemKey {
                        db,
                        key: format!("({} keys)", source_count - target_count),
                        difference: Difference::Missing,
                    });
                }
            }
            if extra > 0 {
                report.extra += extra;
                if report.problems.len() < MAX_PROBLEMS {
                    report.problems.push(ProblemKey {
                        db,
                        key: format!("({extra} keys)"),
                        difference: Difference::Extra,
                    });
                }
            }
        }
        Ok(report)
    }

    /// One SCAN step on the source: the next cursor and a batch of keys.
    async fn scan_batch(&mut self, cursor: &[u8]) -> Result<(Vec<u8>, Vec<Bytes>), EngineError> {
        let reply = self
            .source
            .call_ok(&[b"SCAN".as_slice(), cursor, b"COUNT", b"1000"])
            .await
            .map_err(src_err)?;
        let Frame::Array(mut parts) = reply else {
            return Err(EngineError::SourceError("SCAN returned no array".into()));
        };
        let (Some(Frame::Array(batch)), Some(next)) = (parts.pop(), parts.pop()) else {
            return Err(EngineError::SourceError("SCAN returned a bad array".into()));
        };
        let next = next
            .as_bytes()
            .map(|b| b.to_vec())
            .unwrap_or_else(|| b"0".to_vec());
        let keys = batch
            .into_iter()
            .filter_map(|f| f.as_bytes().cloned())
            .collect();
        Ok((next, keys))
    }

    /// Checks a batch of keys with a few pipelined round trips per side: type, TTL and size of
    /// every key first, then their DUMPs in groups bounded by [`DUMP_BUDGET`] bytes (so a batch
    /// of big values is never held in memory at once). A key above the big-key threshold is not
    /// DUMPed (that would block both servers for as long as serializing it takes) but compared
    /// in pages ([`paged`]).
    /// `target_keys[i]` is the target's name of `keys[i]` (the same unless the migration renames);
    /// both connections are on the right databases already.
    async fn check_batch(
        &mut self,
        db: u32,
        keys: &[Bytes],
        target_keys: &[Bytes],
        report: &mut VerificationReport,
        missing_here: &mut u64,
    ) -> Result<(), EngineError> {
        let meta = |keys: &[Bytes]| -> Vec<Vec<Bytes>> {
            keys.iter()
                .flat_map(|k| {
                    [
                        vec![Bytes::from_static(b"TYPE"), k.clone()],
                        vec![Bytes::from_static(b"PTTL"), k.clone()],
                        // The default sampling estimates: `SAMPLES 0` would walk every element.
                        vec![
                            Bytes::from_static(b"MEMORY"),
                            Bytes::from_static(b"USAGE"),
                            k.clone(),
                        ],
                    ]
                })
                .collect()
        };
        let source_meta = Meta::parse(self.source.call_many(&meta(keys)).await.map_err(src_err)?);
        let target_meta = Meta::parse(
            self.target
                .call_many(&meta(target_keys))
                .await
                .map_err(tgt_err)?,
        );
        let big_key_bytes = self.tuning.big_key_bytes as u64;
        let (big, small): (Vec<usize>, Vec<usize>) = (0..keys.len()).partition(|&i| {
            source_meta[i].size.max(target_meta[i].size) > big_key_bytes
                && paged_kind(&source_meta[i].kind)
        });
        for at in big {
            let outcome = self
                .judge_paged(
                    &keys[at],
                    &target_keys[at],
                    &source_meta[at],
                    &target_meta[at],
                )
                .await?;
            record(db, &keys[at], outcome, report, missing_here);
        }
        let mut start = 0;
        while start < small.len() {
            let mut end = start;
            let mut budget = 0u64;
            while end < small.len() && (end == start || budget < DUMP_BUDGET) {
                let i = small[end];
                budget += source_meta[i].size.max(target_meta[i].size);
                end += 1;
            }
            fn dumps<'k>(keys: &'k [Bytes], at: &[usize]) -> Vec<Vec<&'k [u8]>> {
                at.iter()
                    .map(|&i| vec![b"DUMP".as_slice(), &keys[i][..]])
                    .collect()
            }
            let at = &small[start..end];
            let source_dumps = self
                .source
                .call_many(&dumps(keys, at))
                .await
                .map_err(src_err)?;
            let target_dumps = self
                .target
                .call_many(&dumps(target_keys, at))
                .await
                .map_err(tgt_err)?;
            for (i, (s_dump, t_dump)) in source_dumps.into_iter().zip(target_dumps).enumerate() {
                let at = small[start + i];
                let outcome = self
                    .judge(
                        &keys[at],
                        &target_keys[at],
                        &source_meta[at],
                        &target_meta[at],
                        s_dump,
                        t_dump,
                    )
                    .await?;
                record(db, &keys[at], outcome, report, missing_here);
            }
            start = end;
        }
        Ok(())
    }

    #[allow(clippy::too_many_arguments)]
    async fn judge(
        &mut self,
        key: &Bytes,
        target_key: &Bytes,
        source: &Meta,
        target: &Meta,
        source_dump: Frame,
        target_dump: Frame,
    ) -> Result<Outcome, EngineError> {
        if let Some(outcome) = presence(source, target) {
            return Ok(outcome);
        }
        let same_bytes = match (dump_body(&source_dump), dump_body(&target_dump)) {
            (Some(s), Some(t)) => s == t,
            _ => false,
        };
        if !same_bytes {
            // Hash field TTLs exist from Redis 7.4 (RDB 12) on.
            let field_ttls = self.servers.target.has_field_ttls();
            let source_value = canonical(self.source, &source.kind, key, field_ttls)
                .await
                .map_err(src_err)?;
            let target_value = canonical(self.target, &target.kind, target_key, field_ttls)
                .await
                .map_err(tgt_err)?;
            // No type-aware form (some module types): the DUMP comparison was the only test.
            if source_value.is_none() || source_value != target_value {
                // The key may have expired on the source meanwhile.
                if key_type(self.source, key).await.map_err(src_err)? == "none" {
                    return Ok(Outcome::Gone);
                }
                return Ok(Outcome::Differs(Difference::Value));
            }
        }
        Ok(self.ttl_outcome(source, target))
    }

    /// [`judge`](Self::judge) for a big key: values compared in pages, never in one command.
    async fn judge_paged(
        &mut self,
        key: &Bytes,
        target_key: &Bytes,
        source: &Meta,
        target: &Meta,
    ) -> Result<Outcome, EngineError> {
        if let Some(outcome) = presence(source, target) {
            return Ok(outcome);
        }
        let field_ttls = self.servers.target.has_field_ttls();
        let pages = Pages {
            items: self.tuning.rewrite_chunk_items,
            bytes: self.tuning.rewrite_chunk_bytes,
            field_ttls,
        };
        let same = paged::same_value(
            self.source,
            self.target,
            &source.kind,
            key,
            target_key,
            pages,
        )
        .await?
        .unwrap_or(false);
        // A stream's groups are small summaries: their canonical form is cheap.
        let same = same
            && (source.kind != "stream"
                || stream_groups(self.source, key).await.map_err(src_err)?
                    == stream_groups(self.target, target_key)
                        .await
                        .map_err(tgt_err)?);
        if !same {
            if key_type(self.source, key).await.map_err(src_err)? == "none" {
                return Ok(Outcome::Gone);
            }
            return Ok(Outcome::Differs(Difference::Value));
        }
        Ok(self.ttl_outcome(source, target))
    }

    fn ttl_outcome(&self, source: &Meta, target: &Meta) -> Outcome {
        let ttl_ok = match (source.ttl, target.ttl) {
            (-2, _) => return Outcome::Gone,
            (-1, -1) => true,
            (s, t) if s >= 0 && t >= 0 => (s - t).abs() <= self.tuning.ttl_tolerance_ms,
            _ => false,
        };
        if ttl_ok {
            Outcome::Same
        } else {
            Outcome::Differs(Difference::Ttl)
        }
    }

    async fn sample(&mut self, db: u32, n: usize) -> Result<Vec<Bytes>, EngineError> {
        let mut seen = HashSet::new();
        if let Some(hinted) = self.sample_hint.and_then(|h| h.get(&db)) {
            seen.extend(hinted.iter().take(n).cloned());
        }
        for _ in 0..n * 2 {
            if seen.len() >= n {
                break;
            }
            match self.source.call_ok(&["RANDOMKEY"]).await.map_err(src_err)? {
                Frame::Bulk(k) => {
                    seen.insert(k);
                }
                _ => break,
            }
        }
        Ok(seen.into_iter().collect())
    }
}

/// The outcome decided by presence and type alone, if any.
fn presence(source: &Meta, target: &Meta) -> Option<Outcome> {
    if source.kind == "none" {
        return Some(Outcome::Gone);
    }
    if target.kind == "none" {
        return Some(Outcome::Differs(Difference::Missing));
    }
    if source.kind != target.kind {
        return Some(Outcome::Differs(Difference::Type));
    }
    None
}

/// Types [`paged`] can read in pages (module values cannot).
fn paged_kind(kind: &str) -> bool {
    matches!(kind, "string" | "list" | "set" | "zset" | "hash" | "stream")
}

enum Outcome {
    Same,
    Gone,
    Differs(Difference),
}

async fn key_type(conn: &mut Conn, key: &[u8]) -> Result<String, crate::client::ClientError> {
    let reply = conn.call_ok(&[b"TYPE".as_slice(), key]).await?;
    Ok(reply
        .as_bytes()
        .map(|b| String::from_utf8_lossy(b).into_owned())
        .unwrap_or_default())
}

/// The DUMP payload without its version and CRC trailer (10 bytes), which differ by server version.
fn dump_body(reply: &Frame) -> Option<&[u8]> {
    match reply {
        Frame::Bulk(b) if b.len() >= 10 => Some(&b[..b.len() - 10]),
        _ => None,
    }
}

/// Type, TTL and approximate size of one key, from one pipelined round trip.
struct Meta {
    kind: String,
    ttl: i64,
    size: u64,
}

impl Meta {
    /// Groups replies of `TYPE`, `PTTL`, `MEMORY USAGE` (three per key) into one `Meta` per key.
    fn parse(replies: Vec<Frame>) -> Vec<Meta> {
        replies
            .chunks(3)
            .map(|r| Meta {
                kind: r[0]
                    .as_bytes()
                    .map(|b| String::from_utf8_lossy(b).into_owned())
                    .unwrap_or_default(),
                ttl: r.get(1).and_then(Frame::as_int).unwrap_or(-2),
                size: r.get(2).and_then(Frame::as_int).unwrap_or(0).max(0) as u64,
            })
            .collect()
    }
}

/// Adds a key's outcome to the report.
fn record(
    db: u32,
    key: &Bytes,
    outcome: Outcome,
    report: &mut VerificationReport,
    missing_here: &mut u64,
) {
    let difference = match outcome {
        Outcome::Gone => return,
        Outcome::Same => None,
        Outcome::Differs(d) => Some(d),
    };
    report.checked += 1;
    let Some(d) = difference else {
        return;
    };
    if d == Difference::Missing {
        report.missing += 1;
        *missing_here += 1;
    } else {
        report.different += 1;
    }
    if report.problems.len() < MAX_PROBLEMS {
        report.problems.push(ProblemKey {
            db,
            key: show_key(key),
            difference: d,
        });
    }
}

/// A version-independent rendering of a value, or `None` for types we cannot read generically.
pub(crate) async fn canonical(
    conn: &mut Conn,
    kind: &str,
    key: &[u8],
    field_ttls: bool,
) -> Result<Option<Vec<Bytes>>, crate::client::ClientError> {
    let k = key;
    let mut out = vec![];
    match kind {
        "string" => flatten(conn.call_ok(&[b"GET".as_slice(), k]).await?, &mut out),
        "list" => flatten(
            conn.call_ok(&[b"LRANGE".as_slice(), k, b"0", b"-1"])
                .await?,
            &mut out,
        ),
        "set" => {
            elements(conn.call_ok(&[b"SMEMBERS".as_slice(), k]).await?, &mut out);
            out.sort();
        }
        "hash" => {
            let mut flat = vec![];
            elements(conn.call_ok(&[b"HGETALL".as_slice(), k]).await?, &mut flat);
            let mut pairs: Vec<(Bytes, Bytes)> = flat
                .chunks(2)
                .filter_map(|p| Some((p.first()?.clone(), p.get(1)?.clone())))
                .collect();
            pairs.sort();
            if field_ttls && !pairs.is_empty() {
                // Absolute expiry of every field; a server without field TTLs (< 7.4) answers
                // an error, which means "no TTLs" (-1), as on a server that has none set.
                let count = pairs.len().to_string();
                let mut args: Vec<&[u8]> = vec![b"HPEXPIRETIME", k, b"FIELDS", count.as_bytes()];
                args.extend(pairs.iter().map(|(f, _)| &f[..]));
                let expiries = match conn.call(&args).await? {
                    Frame::Array(items) => items.iter().map(|i| i.as_int().unwrap_or(-1)).collect(),
                    _ => vec![-1; pairs.len()],
                };
                for ((f, v), at) in pairs.into_iter().zip(expiries) {
                    out.push(f);
                    out.push(v);
                    out.push(Bytes::from(at.to_string()));
                }
            } else {
                for (f, v) in pairs {
                    out.push(f);
                    out.push(v);
                }
            }
        }
        "zset" => {
            let mut flat = vec![];
            elements(
                conn.call_ok(&[b"ZRANGE".as_slice(), k, b"0", b"-1", b"WITHSCORES"])
                    .await?,
                &mut flat,
            );
            // Versions print doubles differently (%.17g vs shortest): compare the numbers.
            for pair in flat.chunks(2) {
                if let [member, score] = pair {
                    out.push(member.clone());
                    let parsed = std::str::from_utf8(score)
                        .ok()
                        .and_then(|s| s.parse::<f64>().ok())
                        .map(|f| f.to_bits().to_string())
                        .unwrap_or_else(|| String::from_utf8_lossy(score).into_owned());
                    out.push(Bytes::from(parsed));
                }
            }
        }
        "stream" => {
            flatten(
                conn.call_ok(&[b"XRANGE".as_slice(), k, b"-", b"+"]).await?,
                &mut out,
            );
            out.extend(stream_groups(conn, k).await?);
        }
        module => return modules::canonical(conn, module, key).await,
    }
    Ok(Some(out))
}

/// A stream's consumer groups, by the fields every version reports (entries-read and lag came
/// in 7.0).
async fn stream_groups(
    conn: &mut Conn,
    key: &[u8],
) -> Result<Vec<Bytes>, crate::client::ClientError> {
    let mut out = vec![];
    let groups = conn.call_ok(&[b"XINFO".as_slice(), b"GROUPS", key]).await?;
    if let Frame::Array(groups) = groups {
        for group in groups {
            let mut fields = vec![];
            elements(group, &mut fields);
            for pair in fields.chunks(2) {
                if let [name, value] = pair {
                    if matches!(
                        &name[..],
                        b"name" | b"pending" | b"last-delivered-id" | b"consumers"
                    ) {
                        out.push(name.clone());
                        out.push(value.clone());
                    }
                }
            }
        }
    }
    Ok(out)
}

/// The elements of an array reply, flattened (without the array's own length marker).
fn elements(frame: Frame, out: &mut Vec<Bytes>) {
    match frame {
        Frame::Array(items) => {
            for item in items {
                flatten(item, out);
            }
        }
        other => flatten(other, out),
    }
}

/// Renders a reply as a sequence of byte strings; nested arrays keep a `*N` marker so that
/// structure differences show.
fn flatten(frame: Frame, out: &mut Vec<Bytes>) {
    match frame {
        Frame::Simple(b) | Frame::Bulk(b) => out.push(b),
        Frame::Integer(i) => out.push(Bytes::from(i.to_string())),
        Frame::Null => out.push(Bytes::from_static(b"(nil)")),
        Frame::Error(e) => out.push(e),
        Frame::Array(items) => {
            out.push(Bytes::from(format!("*{}", items.len())));
            for item in items {
                flatten(item, out);
            }
        }
    }
}
