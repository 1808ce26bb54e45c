//! Where a job continues after a crash or a broken link, and how a redone snapshot leaves the
//! target right.
//!
//! ## The offset key
//! While streaming, every batch the writer sends is one transaction on the target that also sets
//! `ferry:offset:<migration id>` (db 0) to `<replid>:<offset>`, the replication offset the batch
//! reaches. Data and offset therefore change together or not at all: whatever happens to Ferry
//! (kill -9 between "applied" and "checkpoint recorded") or to the target (restart from its
//! AOF/RDB), the key says exactly which writes the data holds. On resume the engine takes the
//! later of the last `Checkpoint` and the key (they differ only by batches applied after the last
//! checkpoint, or by PINGs that count toward the offset but write nothing), and asks the source to
//! continue right after it: no write is applied twice, none is skipped.
//!
//! Before a snapshot writes its first key the key is set to `snapshot`: a job that finds that mark
//! was interrupted mid-snapshot, so its target holds part of a copy and the snapshot is redone. A
//! checkpoint with no key at all means the target lost what we wrote (restarted without
//! persistence): the snapshot is redone too. Verification ignores the key; cutover removes it.
//!
//! ## A redone snapshot
//! The target then already holds keys from the earlier attempt, some of which the source may have
//! deleted since, beside the keys it held before the migration. Before the migration's first write
//! Ferry records those (`TargetInventoried`; their names in an inventory file, see
//! [`super::inventory`]), so a redo can tell them apart:
//!
//! - a key the target held before keeps the conflict policy: `skip` leaves it, `fail` stops on it,
//!   exactly as in the first attempt;
//! - any other key on the target is the migration's own earlier copy: it is replaced;
//! - once the snapshot is applied, the keys that are neither in the new snapshot nor held before
//!   the migration (nor Ferry's `ferry:*` bookkeeping, its own or another migration's) are deleted
//!   ([`KeySet`], [`sweep`]): what the source deleted meanwhile does not survive.
//!
//! The sweep runs before the stream resumes. What this cannot tell apart: a key some application
//! created on the target *during* the migration counts as the migration's own (the lease keeps
//! other Ferry writers out, not applications). Without an inventory (a migration started before
//! inventories existed) nothing is redone: the migration fails and offers the rollback.

use std::collections::hash_map::RandomState;
use std::collections::HashSet;
use std::hash::BuildHasher;

use bytes::Bytes;
use uuid::Uuid;

use super::ResumePoint;
use crate::client::{ClientError, Conn};
use crate::model::BOOKKEEPING_PREFIX;
use crate::resp::Frame;
use crate::transport::Peer;

/// The value of the offset key while a snapshot is being written.
pub const SNAPSHOT_MARK: &str = "snapshot";

/// The name of a migration's offset key (db 0 of the target).
pub fn offset_key(migration: Uuid) -> Bytes {
    Bytes::from(format!("ferry:offset:{migration}"))
}

/// What the target's offset key says.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TargetMark {
    Absent,
    /// A snapshot was being written.
    Snapshot,
    /// The applied point, and the db the stream is in there.
    Applied(ResumePoint, u32),
    /// A value we did not write.
    Unreadable(String),
}

/// Reads the offset key (leaves the connection on db 0).
pub async fn read_mark(target: &mut Conn, key: &[u8]) -> Result<TargetMark, ClientError> {
    target.select(0).await?;
    let reply = target.call_ok(&[b"GET".as_slice(), key]).await?;
    let Some(value) = reply.as_bytes() else {
        return Ok(TargetMark::Absent);
    };
    let value = String::from_utf8_lossy(value).into_owned();
    Ok(parse_mark(&value))
}

pub(crate) fn parse_mark(value: &str) -> TargetMark {
    if value == SNAPSHOT_MARK {
        return TargetMark::Snapshot;
    }
    let mut parts = value.rsplitn(3, ':');
    let (db, offset, replid) = (parts.next(), parts.next(), parts.next());
    let parsed = match (replid, offset, db) {
        (Some(replid), Some(offset), Some(db)) => offset
            .parse::<i64>()
            .ok()
            .zip(db.parse::<u32>().ok())
            .map(|(o, d)| (replid, o, d)),
        _ => None,
    };
    match parsed {
        Some((replid, applied_offset, db)) if !replid.is_empty() => TargetMark::Applied(
            ResumePoint {
                replid: replid.to_string(),
                applied_offset,
            },
            db,
        ),
        _ => TargetMark::Unreadable(value.to_string()),
    }
}

/// The value of the offset key for an applied point.
pub fn mark_value(replid: &str, offset: i64, db: u32) -> String {
    format!("{replid}:{offset}:{db}")
}

/// Sets the offset key (db 0).
pub async fn write_mark(target: &mut Conn, key: &[u8], value: &str) -> Result<(), ClientError> {
    target.select(0).await?;
    target
        .call_ok(&[b"SET".as_slice(), key, value.as_bytes()])
        .await
        .map(|_| ())
}

/// Removes the offset key at the end of a migration.
pub async fn remove_mark(target: &mut Conn, key: &[u8]) -> Result<(), ClientError> {
    target.select(0).await?;
    target.call_ok(&[b"DEL".as_slice(), key]).await.map(|_| ())
}

/// How a job starts, from its last checkpoint and the target's mark.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Start {
    /// Ask the source to continue from here; `None`: a full sync.
    pub resume: Option<ResumePoint>,
    /// Why a full sync redoes work already done (the target holds an earlier copy).
    pub redo: Option<String>,
    /// The db the stream is in at `resume` (a partial resync sends no `SELECT` first).
    pub db: u32,
}

/// Combines the checkpoint from the log with the key on the target (see the module docs).
pub fn decide(checkpoint: Option<ResumePoint>, mark: TargetMark) -> Start {
    match (checkpoint, mark) {
        (_, TargetMark::Snapshot) => Start {
            db: 0,
            resume: None,
            redo: Some("the previous snapshot was interrupted; copying it again".into()),
        },
        (Some(cp), TargetMark::Applied(key, db)) => Start {
            db,
            resume: Some(if key.applied_offset > cp.applied_offset {
                key
            } else {
                cp
            }),
            redo: None,
        },
        (None, TargetMark::Applied(key, db)) => Start {
            db,
            resume: Some(key),
            redo: None,
        },
        (Some(cp), TargetMark::Absent) => Start {
            db: 0,
            resume: None,
            redo: Some(format!(
                "the target no longer holds the offset key (checkpoint at offset {}): it lost \
                 data, so the snapshot is copied again",
                cp.applied_offset
            )),
        },
        (Some(_), TargetMark::Unreadable(v)) | (None, TargetMark::Unreadable(v)) => Start {
            db: 0,
            resume: None,
            redo: Some(format!(
                "the offset key holds `{}`, not an offset; copying the snapshot again",
                v.chars().take(60).collect::<String>()
            )),
        },
        (None, TargetMark::Absent) => Start {
            db: 0,
            resume: None,
            redo: None,
        },
    }
}

/// A set of (db, key) as 64-bit hashes: the keys a redone snapshot wrote, or those the target held
/// before the migration. 8 bytes a key. A collision between a stale key and a member only spares
/// the stale key (odds of about n²/2⁶⁵); the hash is keyed at random per process, so no input can
/// aim for one.
#[derive(Default)]
pub struct KeySet {
    hasher: RandomState,
    hashes: HashSet<u64>,
}

impl KeySet {
    fn hash(&self, db: u32, key: &[u8]) -> u64 {
        self.hasher.hash_one((db, key))
    }

    pub fn insert(&mut self, db: u32, key: &[u8]) {
        let h = self.hash(db, key);
        self.hashes.insert(h);
    }

    pub fn contains(&self, db: u32, key: &[u8]) -> bool {
        self.hashes.contains(&self.hash(db, key))
    }
}

/// Deletes the target keys that are the migration's own earlier copies and that the redone
/// snapshot did not write: neither `written` nor held `before` the migration, nor bookkeeping
/// (`ferry:*`). Returns how many were deleted.
pub async fn sweep(
    target: &mut Conn,
    written: &KeySet,
    before: &KeySet,
    shape: &crate::shape::Shape,
) -> Result<u64, ClientError> {
    let info = target.info("keyspace").await?;
    let dbs: Vec<u32> = info.keyspace.keys().copied().collect();
    let mut removed = 0;
    for db in dbs {
        target.select(db).await?;
        let mut cursor: Vec<u8> = b"0".to_vec();
        loop {
            let reply = target
                .call_ok(&[b"SCAN".as_slice(), &cursor, b"COUNT", b"1000"])
                .await?;
            let (next, keys) = scan_reply(reply).ok_or_else(|| ClientError::NotRedis {
                addr: target.addr().to_string(),
                detail: "SCAN returned an unexpected reply".into(),
            })?;
            let stale: Vec<Bytes> = keys
                .into_iter()
                .filter(|k| {
                    !k.starts_with(BOOKKEEPING_PREFIX)
                        && !written.contains(db, k)
                        && !before.contains(db, k)
                        // Only what a copy through the migration's filter could have written.
                        && (shape.is_identity() || shape.may_have_written(db, k))
                })
                .collect();
            if !stale.is_empty() {
                let mut del: Vec<&[u8]> = vec![b"DEL"];
                del.extend(stale.iter().map(|k| &k[..]));
                if let Some(n) = target.call_ok(&del).await?.as_int() {
                    removed += n.max(0) as u64;
                }
            }
            if next == b"0" {
                break;
            }
            cursor = next;
        }
    }
    Ok(removed)
}

/// The cursor and keys of a `SCAN` reply.
pub(crate) fn scan_reply(reply: Frame) -> Option<(Vec<u8>, Vec<Bytes>)> {
    let Frame::Array(mut parts) = reply else {
        return None;
    };
    if parts.len() != 2 {
        return None;
    }
    let keys = match parts.pop()? {
        Frame::Array(items) => items
            .into_iter()
            .filter_map(|f| f.as_bytes().cloned())
            .collect(),
        _ => return None,
    };
    let cursor = parts.pop()?.as_bytes()?.to_vec();
    Some((cursor, keys))
}

/// Whether `target` carries migration `id`'s offset key, i.e. the engine wrote to it already.
/// `None` when the target could not be asked within `timeout`.
pub async fn target_marked(
    target: &crate::transport::Peer,
    id: uuid::Uuid,
    timeout: std::time::Duration,
) -> Option<bool> {
    let probe = async {
        let mut conn = Conn::connect(target).await.ok()?;
        let key = offset_key(id);
        match conn.call(&[&b"EXISTS"[..], &key[..]]).await.ok()? {
            Frame::Integer(n) => Some(n > 0),
            _ => None,
        }
    };
    tokio::time::timeout(timeout, probe).await.ok().flatten()
}

/// Removes every offset key of migration `id` from `target`, so that a failed or cancelled
/// migration leaves nothing behind: `ferry:offset:<id>`, a cluster source's shard keys
/// `ferry:offset:<id>:<shard>`, and on a cluster target every per-slot and base key of every
/// scope (`ferry:offset:{<tag>}:<id>…`), found with `SCAN` on every master and deleted one by one
/// (a cluster refuses a `DEL` across slots). `None` when the target could not be reached, or
/// walked, within `timeout`.
pub async fn clear_mark(target: &Peer, id: uuid::Uuid, timeout: std::time::Duration) -> Option<()> {
    let attempt = async {
        let mut conn = Conn::connect(target).await.ok()?;
        remove_mark(&mut conn, &offset_key(id)).await.ok()?;
        let nodes = crate::client::cluster::master_peers(target)
            .await
            .ok()?
            .unwrap_or_else(|| vec![target.clone()]);
        let pattern = format!("ferry:offset:*{id}*");
        for node in nodes {
            let mut conn = Conn::connect(&node).await.ok()?;
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
                    .ok()?;
                let (next, keys) = scan_reply(reply)?;
                if !keys.is_empty() {
                    let dels: Vec<Vec<&[u8]>> = keys
                        .iter()
                        .map(|k| vec![b"DEL".as_slice(), &k[..]])
                        .collect();
                    conn.call_many(&dels).await.ok()?;
                }
                if next == b"0" {
                    break;
                }
                cursor = next;
            }
        }
        Some(())
    };
    tokio::time::timeout(timeout, attempt).await.ok().flatten()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn point(replid: &str, applied_offset: i64) -> ResumePoint {
        ResumePoint {
            replid: replid.into(),
            applied_offset,
        }
    }

    #[test]
    fn the_later_of_checkpoint_and_key_wins() {
        let later_key = decide(Some(point("a", 10)), TargetMark::Applied(point("b", 20), 3));
        assert_eq!(later_key.resume, Some(point("b", 20)));
        assert_eq!(later_key.db, 3);
        let later_cp = decide(Some(point("a", 30)), TargetMark::Applied(point("a", 20), 1));
        assert_eq!(later_cp.resume, Some(point("a", 30)));
        assert_eq!(later_cp.db, 1);
        assert_eq!(later_cp.redo, None);
    }

    #[test]
    fn an_interrupted_snapshot_or_a_lost_key_is_redone() {
        for (cp, mark) in [
            (None, TargetMark::Snapshot),
            (Some(point("a", 5)), TargetMark::Snapshot),
            (Some(point("a", 5)), TargetMark::Absent),
            (None, parse_mark("garbage")),
        ] {
            let start = decide(cp, mark);
            assert_eq!(start.resume, None);
            assert!(start.redo.is_some());
        }
        assert_eq!(decide(None, TargetMark::Absent).redo, None);
    }

    #[test]
    fn marks_parse() {
        assert_eq!(parse_mark("snapshot"), TargetMark::Snapshot);
        assert_eq!(
            parse_mark(&mark_value("abc", 42, 5)),
            TargetMark::Applied(point("abc", 42), 5)
        );
        assert!(matches!(parse_mark(":42:0"), TargetMark::Unreadable(_)));
        assert!(matches!(parse_mark("abc:42"), TargetMark::Unreadable(_)));
    }

    #[test]
    fn key_set_tells_keys_apart_by_db() {
        let mut set = KeySet::default();
        set.insert(0, b"k");
        assert!(set.contains(0, b"k"));
        assert!(!set.contains(1, b"k"));
        assert!(!set.contains(0, b"other"));
    }
}
