//! The audit chain in the log: where it begins (its genesis) and the walk that checks it.
//!
//! The writer ([`super::group_commit`]) links every event it stores to the one before it (see
//! [`crate::model::audit`]). A log written before the chain existed has events without hashes;
//! the first time such a log opens, the store hashes those events in order and records the
//! result as the genesis: `{seq, prev_hash}`, where `seq` is the first event that will carry its
//! own hashes and `prev_hash` the hash of everything before it. So old events are covered from
//! then on too: changing one later breaks the link at the genesis. A new log's genesis is
//! `{seq: 1, prev_hash: 0…0}`.

use chrono::Utc;
use serde::{Deserialize, Serialize};

use super::{read_after, StoreError};
use crate::model::audit::{chain_hash, AuditReport, AuditStatus};
use crate::model::Digest32;

/// Key of the genesis record in the log tree (no event prefix starts with `g`).
const GENESIS_KEY: &[u8] = b"genesis";

/// Where the chain begins. See the module docs.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Genesis {
    /// The first event stored with its own hashes.
    pub seq: u64,
    /// That event's `prev_hash`: 64 zeros, or the hash of the events before it.
    pub prev_hash: Digest32,
    /// When the genesis was recorded (microseconds since the epoch).
    pub at_micros: i64,
}

/// Reads the genesis, recording it first if the log has none; returns it with the hash the next
/// appended event links to (the head). Called once, at open, before the writer starts.
pub(super) fn open_chain(
    db: &sled::Db,
    log: &sled::Tree,
    last_seq: u64,
) -> Result<(Genesis, Digest32), StoreError> {
    if let Some(bytes) = log.get(GENESIS_KEY)? {
        let genesis: Genesis = serde_json::from_slice(&bytes).map_err(|e| StoreError::Decode {
            seq: 0,
            message: format!("the chain's genesis record cannot be read: {e}"),
        })?;
        let head = if last_seq >= genesis.seq {
            let last = read_after(log, last_seq - 1, 1, None)?;
            last.first()
                .and_then(|e| e.chain)
                .map(|c| c.hash)
                .ok_or(StoreError::Decode {
                    seq: last_seq,
                    message: "the last event carries no hash although it follows the genesis"
                        .into(),
                })?
        } else {
            genesis.prev_hash
        };
        return Ok((genesis, head));
    }
    // A new log, or one from before the chain: hash what is there, then record the genesis.
    let mut head = Digest32::ZERO;
    let mut after = 0;
    loop {
        let page = read_after(log, after, 4096, None)?;
        let Some(last) = page.last() else { break };
        after = last.seq;
        for event in &page {
            head = chain_hash(&head, event);
        }
    }
    let genesis = Genesis {
        seq: after + 1,
        prev_hash: head,
        at_micros: Utc::now().timestamp_micros(),
    };
    let bytes = serde_json::to_vec(&genesis).map_err(|e| StoreError::Encode(e.to_string()))?;
    log.insert(GENESIS_KEY, bytes)?;
    db.flush()?;
    if after > 0 {
        tracing::info!(
            events = after,
            genesis_seq = genesis.seq,
            prev_hash = %head,
            "the event log predates the audit chain: its events are hashed into the chain's genesis"
        );
    }
    Ok((genesis, head))
}

/// Walks the whole log from the first event and checks every link: the events before the
/// genesis must hash to its `prev_hash`, and every later event must carry the previous hash and
/// its own correct hash. Stops at the first broken link, naming its `seq`.
pub(super) fn verify(log: &sled::Tree, genesis: Genesis) -> Result<AuditReport, StoreError> {
    let mut report = AuditReport {
        status: AuditStatus::Intact,
        events: 0,
        head_seq: 0,
        head_hash: Digest32::ZERO,
        genesis_seq: genesis.seq,
        genesis_prev_hash: genesis.prev_hash,
        first_broken_seq: None,
        problem: None,
    };
    let mut head = Digest32::ZERO;
    let mut after = 0;
    loop {
        let page = match read_after(log, after, 1024, None) {
            Ok(page) => page,
            Err(StoreError::Decode { seq, message }) => {
                let seq = if seq == 0 { after + 1 } else { seq };
                return Ok(report.broken(seq, format!("event {seq} cannot be read: {message}")));
            }
            Err(StoreError::Missing { seq }) => {
                return Ok(report.broken(seq, format!("event {seq} is missing from the log")))
            }
            Err(other) => return Err(other),
        };
        let Some(last) = page.last() else { break };
        after = last.seq;
        for event in &page {
            let seq = event.seq;
            if seq == genesis.seq && head != genesis.prev_hash {
                return Ok(report.broken(
                    seq,
                    format!(
                        "the events before seq {seq} (the chain's genesis) no longer hash to the \
                         genesis' prev_hash: one of them was changed, added or removed"
                    ),
                ));
            }
            let computed = chain_hash(&head, event);
            if seq >= genesis.seq {
                let Some(link) = event.chain else {
                    return Ok(report.broken(seq, format!("event {seq} carries no hash")));
                };
                if link.prev_hash != head {
                    return Ok(report.broken(
                        seq,
                        format!(
                            "event {seq}'s prev_hash is not the hash of event {}: an event \
                             before it was replaced or removed",
                            seq - 1
                        ),
                    ));
                }
                if link.hash != computed {
                    return Ok(report.broken(
                        seq,
                        format!("event {seq} does not match its hash: it was changed after it was stored"),
                    ));
                }
            }
            head = computed;
            report.events += 1;
            report.head_seq = seq;
            report.head_hash = head;
        }
    }
    if report.head_seq + 1 < genesis.seq {
        let (head, seq) = (report.head_seq, report.head_seq + 1);
        return Ok(report.broken(
            seq,
            format!(
                "the log ends at seq {head} but its genesis was recorded after seq {}",
                genesis.seq - 1
            ),
        ));
    }
    Ok(report)
}
