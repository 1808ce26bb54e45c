//! The shards of a Redis Cluster source, as the view shows them, and where each resumes.
//!
//! Each shard runs its own replication link, so its facts arrive wrapped (`ShardEvent`): this fold
//! keeps one [`ShardProgress`] per shard (phase, bytes, keys, lag, offsets, and the node it is read
//! from), and the migration's overall figures as the sums over the shards while they copy and
//! stream. The migration-wide events the engine derives once (`SnapshotStarted`,
//! `SnapshotCompleted`, …) fold through the ordinary arms.
//!
//! A shard's `Checkpoint` is its resume point ([`Migration::shard_resume`]); a new snapshot of
//! that shard (`SnapshotStarted`) forgets it, as the migration's own resume point is forgotten:
//! the offset belongs to the old copy. A restarted engine hands each shard its own point.

use serde::Serialize;
use utoipa::ToSchema;

use super::Migration;
use crate::model::{EventKind, ResumePoint, ShardRef};

/// One shard of a cluster source.
#[derive(Debug, Clone, Default, PartialEq, Serialize, ToSchema)]
pub struct ShardProgress {
    /// `s<first slot>`: stable across failovers.
    pub name: String,
    /// The node the shard is read from (its master, or a replica with `source.prefer: replica`).
    pub node_id: String,
    pub addr: String,
    /// `snapshot`, `streaming`, `verifying` or `done`.
    pub phase: String,
    pub rdb_bytes_read: u64,
    pub keys_written: u64,
    pub commands_streamed: u64,
    pub lag_bytes: Option<u64>,
    /// The shard's replication id and the offset the target has applied from it.
    pub replid: Option<String>,
    pub applied_offset: Option<i64>,
    /// Links of this shard lost and resumed.
    pub link_reconnects: u64,
}

fn entry<'a>(shards: &'a mut Vec<ShardProgress>, shard: &ShardRef) -> &'a mut ShardProgress {
    let at = match shards.iter().position(|s| s.name == shard.name) {
        Some(at) => at,
        None => {
            shards.push(ShardProgress {
                name: shard.name.clone(),
                ..ShardProgress::default()
            });
            shards.len() - 1
        }
    };
    let s = &mut shards[at];
    s.node_id = shard.node_id.clone();
    s.addr = shard.addr.clone();
    s
}

/// Folds one shard's fact.
pub(super) fn fold(m: &mut Migration, shard: &ShardRef, kind: &EventKind) {
    let p = &mut m.view.progress;
    let s = entry(&mut p.shards, shard);
    match kind {
        EventKind::SnapshotStarted { replid, .. } => {
            s.phase = "snapshot".into();
            s.rdb_bytes_read = 0;
            s.keys_written = 0;
            s.replid = Some(replid.clone());
            s.applied_offset = None;
            m.shard_resume.remove(&shard.name);
        }
        EventKind::SnapshotProgress {
            rdb_bytes_read,
            keys_written,
            ..
        } => {
            s.rdb_bytes_read = *rdb_bytes_read;
            s.keys_written = *keys_written;
        }
        EventKind::SnapshotCompleted {
            rdb_bytes,
            keys_written,
            ..
        } => {
            s.rdb_bytes_read = *rdb_bytes;
            s.keys_written = *keys_written;
            s.phase = "verifying".into();
        }
        EventKind::StreamingStarted { replid, offset } => {
            s.phase = "streaming".into();
            s.replid = Some(replid.clone());
            s.applied_offset = Some(*offset);
        }
        EventKind::Checkpoint {
            replid,
            applied_offset,
            commands_streamed,
            lag_bytes,
            ..
        } => {
            s.replid = Some(replid.clone());
            s.applied_offset = Some(*applied_offset);
            s.commands_streamed = *commands_streamed;
            if s.phase != "done" {
                s.phase = "streaming".into();
            }
            s.lag_bytes = *lag_bytes;
            m.shard_resume.insert(
                shard.name.clone(),
                ResumePoint {
                    replid: replid.clone(),
                    applied_offset: *applied_offset,
                },
            );
        }
        EventKind::LinkResumed { .. } => s.link_reconnects += 1,
        EventKind::VerificationCompleted { .. } => s.phase = "verifying".into(),
        EventKind::CutoverCompleted { final_offset } => {
            s.phase = "done".into();
            s.applied_offset = Some(*final_offset);
            s.lag_bytes = Some(0);
        }
        _ => {}
    }
    overall(m);
}

/// A failover: the shard is read from another node from now on.
pub(super) fn failed_over(m: &mut Migration, to: &ShardRef) {
    entry(&mut m.view.progress.shards, to);
}

/// The migration's figures as the sums over its shards.
fn overall(m: &mut Migration) {
    let p = &mut m.view.progress;
    let shards = &p.shards;
    p.rdb_bytes_read = Some(shards.iter().map(|s| s.rdb_bytes_read).sum());
    p.keys_written = Some(shards.iter().map(|s| s.keys_written).sum());
    if shards
        .iter()
        .any(|s| s.phase == "streaming" || s.phase == "done")
    {
        p.commands_streamed = Some(shards.iter().map(|s| s.commands_streamed).sum());
        p.lag_bytes = shards
            .iter()
            .map(|s| s.lag_bytes)
            .sum::<Option<u64>>()
            .or(p.lag_bytes);
    }
    let reconnects: u64 = shards.iter().map(|s| s.link_reconnects).sum();
    if reconnects > 0 {
        p.link_reconnects = Some(reconnects);
    }
}

#[cfg(test)]
mod tests {
    use chrono::{TimeZone, Utc};
    use uuid::Uuid;

    use crate::aggregate::migration::fold::apply;
    use crate::model::{AggregateType, Event, EventKind, ResumePoint, ShardRef};
    use crate::redis_url::RedisUrl;
    use crate::spec::{Endpoint, MigrationSpec, Mode, Options};

    fn shard(name: &str, port: u16) -> ShardRef {
        ShardRef {
            name: name.into(),
            node_id: format!("{port:040}"),
            addr: format!("127.0.0.1:{port}"),
        }
    }

    fn wrapped(name: &str, port: u16, event: EventKind) -> EventKind {
        EventKind::ShardEvent {
            shard: shard(name, port),
            event: Box::new(event),
        }
    }

    fn checkpoint(replid: &str, applied_offset: i64, commands: u64, lag: u64) -> EventKind {
        EventKind::Checkpoint {
            replid: replid.into(),
            applied_offset,
            commands_streamed: commands,
            lag_bytes: Some(lag),
            bytes_streamed: None,
        }
    }

    #[test]
    fn shard_events_give_per_shard_progress_sums_and_resume_points() {
        let spec = MigrationSpec {
            name: None,
            source: Endpoint::new(RedisUrl::parse("redis://127.0.0.1:1").unwrap()).into(),
            target: Endpoint::new(RedisUrl::parse("redis://127.0.0.1:2").unwrap()),
            mode: Mode::Live,
            options: Options::default(),
            schedule: Default::default(),
        };
        let started = |replid: &str| EventKind::SnapshotStarted {
            replid: replid.into(),
            offset: 0,
            diskless: true,
            rdb_bytes_total: None,
            redo: None,
            keys_total: None,
        };
        let kinds = vec![
            EventKind::MigrationCreated {
                spec: Box::new(spec),
            },
            wrapped("s0", 7000, started("a")),
            wrapped("s5461", 7001, started("b")),
            wrapped("s0", 7000, checkpoint("a", 100, 10, 5)),
            wrapped("s5461", 7001, checkpoint("b", 200, 20, 7)),
            // The shard s5461 copies again: its resume point belonged to the old copy.
            wrapped("s5461", 7001, started("c")),
            EventKind::ShardFailedOver {
                shard: "s0".into(),
                from: shard("s0", 7000),
                to: shard("s0", 7003),
            },
        ];
        let t0 = Utc.with_ymd_and_hms(2026, 1, 1, 0, 0, 0).unwrap();
        let id = Uuid::now_v7();
        let mut state = None;
        for (i, kind) in kinds.into_iter().enumerate() {
            let event = Event {
                seq: i as u64 + 1,
                aggregate_type: AggregateType::Migration,
                aggregate_id: id,
                at: t0 + chrono::Duration::seconds(i as i64),
                actor: "engine".into(),
                kind,
                chain: None,
            };
            state = Some(apply(state, &event).unwrap());
        }
        let m = state.unwrap();
        let shards = &m.view.progress.shards;
        assert_eq!(shards.len(), 2);
        assert_eq!(
            (shards[0].name.as_str(), shards[0].addr.as_str()),
            ("s0", "127.0.0.1:7003")
        );
        assert_eq!(shards[0].applied_offset, Some(100));
        assert_eq!(shards[1].phase, "snapshot");
        assert_eq!(m.view.progress.commands_streamed, Some(30));
        assert_eq!(
            m.shard_resume.into_iter().collect::<Vec<_>>(),
            vec![(
                "s0".to_string(),
                ResumePoint {
                    replid: "a".into(),
                    applied_offset: 100
                }
            )]
        );
    }
}
