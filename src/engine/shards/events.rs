//! A cluster source's events: every fact of a shard run goes out wrapped in its shard
//! (`ShardEvent`), and the migration-wide facts are derived from all shards, once each.
//!
//! The fold and the API read the migration-wide events as they read a standalone migration's
//! (`SnapshotStarted` opens the copy, `SnapshotCompleted` closes it, `StreamingStarted` means the
//! stream is followed, `VerificationCompleted` is the verdict), so each is emitted only when it is
//! true of the whole source: the copy has started when the first shard's has, it is complete when
//! every shard's is, and so on. What is per shard (replication ids, offsets) is in the shard's own
//! wrapped events; the derived ones carry the first shard's, or sums where sums mean something.

use crate::model::{EventKind, ShardRef, VerificationReport};

/// Problem keys kept in the merged report (as a single verification keeps).
const MAX_PROBLEMS: usize = 100;

/// What is known of one shard in this run.
#[derive(Debug, Default, Clone)]
pub(super) struct ShardState {
    pub snapshot_started: bool,
    pub snapshot_done: Option<[u64; 7]>,
    pub streaming: bool,
    /// The lag of its last checkpoint.
    pub lag: Option<u64>,
    /// A checkpoint at lag 0 was seen since the cutover was triggered.
    pub caught_up_in_cutover: bool,
    pub verification: Option<VerificationReport>,
    pub final_offset: Option<i64>,
    pub finished: bool,
}

/// Turns the shards' events into the migration's.
#[derive(Debug, Default)]
pub(super) struct Aggregator {
    pub shards: Vec<ShardState>,
    requested: bool,
    started: bool,
    completed: bool,
    streaming: bool,
    /// The cutover was triggered on the shards.
    pub cutting_over: bool,
}

impl Aggregator {
    pub fn new(shards: usize) -> Aggregator {
        Aggregator {
            shards: vec![ShardState::default(); shards],
            ..Aggregator::default()
        }
    }

    /// The events to record for `event` of shard `i` (read from `node`): the wrapped fact, and any
    /// migration-wide fact it completes.
    pub fn on_event(&mut self, i: usize, node: ShardRef, event: EventKind) -> Vec<EventKind> {
        let mut derived = Vec::new();
        let s = &mut self.shards[i];
        match &event {
            EventKind::SnapshotRequested { diskless, .. } if !self.requested => {
                self.requested = true;
                derived.push(EventKind::SnapshotRequested {
                    diskless: *diskless,
                    delay_secs: None,
                    keys_estimate: None,
                });
            }
            EventKind::SnapshotStarted {
                replid,
                offset,
                diskless,
                redo,
                ..
            } => {
                s.snapshot_started = true;
                s.snapshot_done = None;
                if !self.started {
                    self.started = true;
                    derived.push(EventKind::SnapshotStarted {
                        replid: replid.clone(),
                        offset: *offset,
                        diskless: *diskless,
                        rdb_bytes_total: None,
                        redo: redo.clone(),
                        keys_total: None,
                    });
                }
            }
            EventKind::SnapshotCompleted {
                rdb_bytes,
                keys_written,
                keys_skipped,
                keys_expired,
                keys_rewritten,
                duration_ms,
                keys_empty,
            } => {
                s.snapshot_done = Some([
                    *rdb_bytes,
                    *keys_written,
                    *keys_skipped,
                    *keys_expired,
                    *keys_rewritten,
                    *duration_ms,
                    *keys_empty,
                ]);
            }
            EventKind::StreamingStarted { .. } => s.streaming = true,
            EventKind::Checkpoint { lag_bytes, .. } => {
                s.lag = *lag_bytes;
                if self.cutting_over && *lag_bytes == Some(0) {
                    s.caught_up_in_cutover = true;
                }
            }
            EventKind::VerificationCompleted { report } => s.verification = Some(report.clone()),
            EventKind::CutoverCompleted { final_offset } => s.final_offset = Some(*final_offset),
            _ => {}
        }
        let mut out = vec![EventKind::ShardEvent {
            shard: node,
            event: Box::new(event),
        }];
        out.append(&mut derived);
        // Once every shard has its copy (or continued without one), the copy is complete.
        if self.started
            && !self.completed
            && self
                .shards
                .iter()
                .all(|s| s.snapshot_done.is_some() || (!s.snapshot_started && s.streaming))
        {
            self.completed = true;
            let mut sum = [0u64; 7];
            for done in self.shards.iter().filter_map(|s| s.snapshot_done) {
                for (total, n) in sum.iter_mut().zip(done) {
                    *total += n;
                }
            }
            // The shards copy in parallel: the copy took as long as the slowest.
            sum[5] = self
                .shards
                .iter()
                .filter_map(|s| s.snapshot_done.map(|d| d[5]))
                .max()
                .unwrap_or(0);
            out.push(EventKind::SnapshotCompleted {
                rdb_bytes: sum[0],
                keys_written: sum[1],
                keys_skipped: sum[2],
                keys_expired: sum[3],
                keys_rewritten: sum[4],
                duration_ms: sum[5],
                keys_empty: sum[6],
            });
        }
        if !self.streaming && self.all_streaming() {
            self.streaming = true;
            if let Some(EventKind::ShardEvent { event, .. }) = out.first() {
                if let EventKind::StreamingStarted { replid, offset } = event.as_ref() {
                    out.push(EventKind::StreamingStarted {
                        replid: replid.clone(),
                        offset: *offset,
                    });
                }
            }
        }
        out
    }

    pub fn all_streaming(&self) -> bool {
        self.shards.iter().all(|s| s.streaming)
    }

    /// Every shard streams and its last checkpoint says it has caught up.
    pub fn all_caught_up(&self) -> bool {
        self.shards
            .iter()
            .all(|s| s.streaming && s.lag == Some(0) && !s.finished)
    }

    /// Every shard reached the cutover's goal (or already ended).
    pub fn all_reached_goal(&self) -> bool {
        self.shards
            .iter()
            .all(|s| s.caught_up_in_cutover || s.finished)
    }

    pub fn all_finished(&self) -> bool {
        self.shards.iter().all(|s| s.finished)
    }

    /// The shards' verification reports as one (`None` when no shard verified).
    pub fn merged_verification(&self) -> Option<VerificationReport> {
        let mut reports = self.shards.iter().filter_map(|s| s.verification.as_ref());
        let mut merged = reports.next()?.clone();
        for r in reports {
            merged.checked += r.checked;
            merged.missing += r.missing;
            merged.different += r.different;
            merged.extra += r.extra;
            merged.problems.extend(r.problems.iter().cloned());
        }
        merged.problems.truncate(MAX_PROBLEMS);
        Some(merged)
    }

    /// The migration's final offset: the sum of the shards' (each shard has its own offsets;
    /// the sum only grows as they do).
    pub fn final_offset(&self) -> i64 {
        self.shards.iter().filter_map(|s| s.final_offset).sum()
    }
}

#[cfg(test)]
mod tests {
    use super::Aggregator;
    use crate::model::{EventKind, ShardRef};

    fn node(i: usize) -> ShardRef {
        ShardRef {
            name: format!("s{i}"),
            node_id: format!("{i:040}"),
            addr: format!("127.0.0.1:{}", 7000 + i),
        }
    }

    fn completed(keys: u64, ms: u64) -> EventKind {
        EventKind::SnapshotCompleted {
            rdb_bytes: keys * 10,
            keys_written: keys,
            keys_skipped: 0,
            keys_expired: 1,
            keys_rewritten: 0,
            duration_ms: ms,
            keys_empty: 0,
        }
    }

    fn started() -> EventKind {
        EventKind::SnapshotStarted {
            replid: "r".into(),
            offset: 1,
            diskless: true,
            rdb_bytes_total: None,
            redo: None,
            keys_total: None,
        }
    }

    fn types(events: &[EventKind]) -> Vec<&'static str> {
        events.iter().map(|e| e.type_name()).collect()
    }

    #[test]
    fn migration_wide_facts_come_once_when_true_of_every_shard() {
        let mut agg = Aggregator::new(2);
        assert_eq!(
            types(&agg.on_event(0, node(0), started())),
            ["ShardEvent", "SnapshotStarted"]
        );
        assert_eq!(types(&agg.on_event(1, node(1), started())), ["ShardEvent"]);
        assert_eq!(
            types(&agg.on_event(0, node(0), completed(10, 50))),
            ["ShardEvent"]
        );
        let last = agg.on_event(1, node(1), completed(5, 80));
        assert_eq!(types(&last), ["ShardEvent", "SnapshotCompleted"]);
        assert!(matches!(
            last[1],
            EventKind::SnapshotCompleted {
                keys_written: 15,
                keys_expired: 2,
                rdb_bytes: 150,
                duration_ms: 80,
                ..
            }
        ));
        let streaming = || EventKind::StreamingStarted {
            replid: "r".into(),
            offset: 9,
        };
        assert_eq!(
            types(&agg.on_event(0, node(0), streaming())),
            ["ShardEvent"]
        );
        assert_eq!(
            types(&agg.on_event(1, node(1), streaming())),
            ["ShardEvent", "StreamingStarted"]
        );
        assert!(agg.all_streaming());
        for i in 0..2 {
            agg.on_event(
                i,
                node(i),
                EventKind::CutoverCompleted { final_offset: 100 },
            );
        }
        assert_eq!(agg.final_offset(), 200);
    }
}
