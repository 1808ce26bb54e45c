//! Progress as the view shows it: what is known, what is estimated (and says so), and the rates
//! derived from the checkpoints. All of it is computed from events and their times, so a restart
//! shows the same numbers.

use std::collections::VecDeque;

use chrono::{DateTime, Utc};
use serde::Serialize;
use utoipa::ToSchema;

use crate::model::Link;

/// Progress of the transfer. Every field is `null` until the engine has reported it.
#[derive(Debug, Clone, Default, PartialEq, Serialize, ToSchema)]
#[schema(example = json!({"rdb_bytes_total": 1048576, "rdb_bytes_read": 524288, "keys_written": 1200,
    "keys_skipped": 0, "keys_total": 2400, "estimated": false, "commands_streamed": null,
    "lag_bytes": null, "lag_seconds": null, "apply_rate": null, "link_reconnects": 0,
    "percent": 50.0, "eta_seconds": 4, "lag_keys": null}))]
pub struct Progress {
    /// The RDB's size: exact when the source sends it from disk; while a diskless source streams
    /// it (size unknown until the end), an estimate from the bytes per key so far and
    /// `keys_total` (`estimated` is then `true`).
    pub rdb_bytes_total: Option<u64>,
    pub rdb_bytes_read: Option<u64>,
    pub keys_written: Option<u64>,
    pub keys_skipped: Option<u64>,
    /// The keys the source held when the snapshot was requested (`INFO keyspace`): an estimate
    /// of the snapshot's keys until it completes, then the keys it held.
    pub keys_total: Option<u64>,
    /// `true` while `percent`, `eta_seconds` and `rdb_bytes_total` are estimates (a diskless
    /// snapshot, measured against `keys_total`).
    pub estimated: bool,
    pub commands_streamed: Option<u64>,
    /// The source's replication offset minus the offset the target has applied.
    pub lag_bytes: Option<u64>,
    /// How long ago the source was where the target is now, from the checkpoints (about one a
    /// second): 0 when caught up.
    pub lag_seconds: Option<f64>,
    /// Commands applied per second over the last 10 s of checkpoints.
    pub apply_rate: Option<f64>,
    /// Links (source or target) lost and resumed since the migration started.
    pub link_reconnects: Option<u64>,
    /// Share of the snapshot transferred, 0–100.
    pub percent: Option<f64>,
    /// Estimated seconds until the snapshot is transferred, from the rate so far; never less
    /// than what is left at the rate limits (`options.limits`).
    pub eta_seconds: Option<u64>,
    /// What holds the write rate down now: `max_ops_per_sec` or `max_bytes_per_sec` (the rate
    /// measured since the last report is within 10% of that limit), `ha_guard` (the HA guard
    /// slowed Ferry down: see the `Throttled` event), or `null`.
    pub throttled_by: Option<String>,
    /// `source.read: scan`: keys known changed on the source and not yet copied again (the lag
    /// of a scan reader, which has no replication offset); `null` for replication.
    pub lag_keys: Option<u64>,
    /// A Redis Cluster source: each shard's own progress (empty for a single server).
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub shards: Vec<super::ShardProgress>,
}

/// A scan reader's lag in seconds is unknown; it is 0 when no changed key waits.
pub(super) fn scan_caught_up(progress: &mut Progress, dirty_keys: u64) {
    progress.lag_seconds = (dirty_keys == 0).then_some(0.0);
}

/// How far back checkpoints are kept for the lag in seconds: a lag longer than this reads as
/// at least this long.
const HISTORY_SECS: i64 = 900;
/// The window of the apply rate.
const RATE_WINDOW_SECS: i64 = 10;

/// One checkpoint, as the rates need it.
#[derive(Debug, Clone, Copy, PartialEq)]
struct Sample {
    at: DateTime<Utc>,
    /// Where the source was: the applied offset plus the lag.
    source_offset: i64,
    commands: u64,
}

/// Recent checkpoints of one engine run (the counters restart with each run).
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Rates {
    samples: VecDeque<Sample>,
}

impl Rates {
    /// Forgets the samples: a new run (or a new link) counts from zero again.
    pub fn reset(&mut self) {
        self.samples.clear();
    }

    /// Records a checkpoint and fills the lag in seconds and the apply rate.
    pub fn checkpoint(
        &mut self,
        progress: &mut Progress,
        at: DateTime<Utc>,
        applied: i64,
        commands: u64,
        lag: Option<u64>,
    ) {
        let Some(lag) = lag else {
            progress.lag_seconds = None;
            return;
        };
        if self.samples.back().is_some_and(|s| s.commands > commands) {
            self.reset();
        }
        let source_offset = applied.saturating_add(i64::try_from(lag).unwrap_or(i64::MAX));
        self.samples.push_back(Sample {
            at,
            source_offset,
            commands,
        });
        let horizon = at - chrono::Duration::seconds(HISTORY_SECS);
        while self.samples.front().is_some_and(|s| s.at < horizon) {
            self.samples.pop_front();
        }
        progress.lag_seconds = Some(self.lag_seconds(at, applied, lag));
        progress.apply_rate = self.apply_rate(at, commands);
    }

    /// When did the source reach `applied`? Between the last sample that was short of it and the
    /// first that was past it (offsets only grow, so a binary search finds them); linear in
    /// between. Before the oldest sample kept, the lag is at least that old.
    fn lag_seconds(&self, now: DateTime<Utc>, applied: i64, lag: u64) -> f64 {
        if lag == 0 {
            return 0.0;
        }
        let first_past = self.samples.partition_point(|s| s.source_offset < applied);
        let Some(past) = self.samples.get(first_past) else {
            return 0.0;
        };
        let reached = match first_past.checked_sub(1).and_then(|i| self.samples.get(i)) {
            Some(short) if past.source_offset > short.source_offset => {
                let share = (applied - short.source_offset) as f64
                    / (past.source_offset - short.source_offset) as f64;
                let span = (past.at - short.at).num_microseconds().unwrap_or(0) as f64;
                short.at + chrono::Duration::microseconds((span * share) as i64)
            }
            _ => past.at,
        };
        ((now - reached).num_milliseconds().max(0) as f64 / 1000.0 * 10.0).round() / 10.0
    }

    fn apply_rate(&self, now: DateTime<Utc>, commands: u64) -> Option<f64> {
        let since = now - chrono::Duration::seconds(RATE_WINDOW_SECS);
        let oldest = self.samples.partition_point(|s| s.at < since);
        let first = self.samples.get(oldest)?;
        let secs = (now - first.at).num_milliseconds() as f64 / 1000.0;
        if secs <= 0.0 {
            return None;
        }
        Some(((commands.saturating_sub(first.commands)) as f64 / secs).round())
    }
}

/// The snapshot's share and size while its total is unknown (diskless): keys written against
/// the keys the source held, and the bytes per key so far. Held below 100 % until it completes,
/// since keys written after the fork make the estimate short.
pub fn estimate_snapshot(progress: &mut Progress) {
    let (Some(total), Some(written), Some(read)) = (
        progress.keys_total.filter(|t| *t > 0),
        progress.keys_written,
        progress.rdb_bytes_read,
    ) else {
        return;
    };
    let done = written + progress.keys_skipped.unwrap_or(0);
    progress.estimated = true;
    progress.percent = Some((done as f64 * 100.0 / total as f64).min(99.0));
    if done > 0 {
        let per_key = read as f64 / done as f64;
        progress.rdb_bytes_total = Some((per_key * total as f64).max(read as f64) as u64);
    }
}

/// Seconds left when `percent` of the work took from `started` to `now`.
pub fn eta(started: DateTime<Utc>, now: DateTime<Utc>, percent: f64) -> Option<u64> {
    let elapsed = (now - started).num_milliseconds();
    if elapsed <= 0 || percent <= 0.0 {
        return None;
    }
    let left = elapsed as f64 * (100.0 - percent.min(100.0)) / percent;
    Some((left / 1000.0).ceil() as u64)
}

/// What the migration waits for after asking the source for its snapshot.
pub fn waiting_for_snapshot(diskless: Option<bool>, delay_secs: Option<u64>) -> String {
    match (diskless, delay_secs) {
        (Some(true), Some(delay)) if delay > 0 => format!(
            "waiting for the source's snapshot (repl-diskless-sync-delay {delay} s: the source \
             waits that long before it forks, so that other replicas can share the fork)"
        ),
        (Some(true), _) => "waiting for the source's snapshot (it forks and streams it)".into(),
        (Some(false), _) => {
            "waiting for the source's snapshot (it writes its RDB file to disk first)".into()
        }
        (None, _) => "waiting for the source's snapshot".into(),
    }
}

/// What the migration is doing while it copies the snapshot.
pub fn copying(diskless: bool, total: Option<u64>) -> String {
    match total {
        Some(total) if !diskless => format!("copying the source's snapshot ({total} bytes)"),
        _ => "copying the source's snapshot (streamed diskless: its size is unknown until the \
              end, so % and ETA are estimated from the source's key count)"
            .into(),
    }
}

pub fn link_name(link: Link) -> &'static str {
    match link {
        Link::Source => "source",
        Link::Target => "target",
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::TimeZone;

    fn t(secs: i64) -> DateTime<Utc> {
        Utc.with_ymd_and_hms(2026, 1, 1, 0, 0, 0).unwrap() + chrono::Duration::seconds(secs)
    }

    /// The source writes 1000 bytes a second from offset 0; the target applies 500 a second, so
    /// it falls behind by one more second every two.
    #[test]
    fn the_lag_in_seconds_is_when_the_source_was_where_the_target_is() {
        let mut rates = Rates::default();
        let mut p = Progress::default();
        for s in 0..=20 {
            let applied = s * 500;
            let source = s * 1000;
            rates.checkpoint(
                &mut p,
                t(s),
                applied,
                s as u64 * 50,
                Some((source - applied) as u64),
            );
        }
        // At 20 s the target holds 10,000 bytes: the source was there at 10 s.
        assert_eq!(p.lag_seconds, Some(10.0));
        assert_eq!(p.apply_rate, Some(50.0));
        rates.checkpoint(&mut p, t(21), 21_000, 1100, Some(0));
        assert_eq!(p.lag_seconds, Some(0.0));
    }

    #[test]
    fn a_new_run_restarts_the_rate() {
        let mut rates = Rates::default();
        let mut p = Progress::default();
        rates.checkpoint(&mut p, t(0), 0, 1000, Some(0));
        rates.checkpoint(&mut p, t(1), 10, 5, Some(0));
        assert_eq!(
            p.apply_rate, None,
            "one sample of the new run is no rate yet"
        );
        rates.checkpoint(&mut p, t(2), 20, 25, Some(0));
        assert_eq!(p.apply_rate, Some(20.0));
    }

    #[test]
    fn a_diskless_snapshot_is_estimated_from_the_key_count_and_says_so() {
        let mut p = Progress {
            keys_total: Some(1000),
            keys_written: Some(250),
            keys_skipped: Some(0),
            rdb_bytes_read: Some(25_000),
            ..Progress::default()
        };
        estimate_snapshot(&mut p);
        assert!(p.estimated);
        assert_eq!(p.percent, Some(25.0));
        assert_eq!(p.rdb_bytes_total, Some(100_000));
        assert_eq!(eta(t(0), t(10), 25.0), Some(30));
        p.keys_written = Some(5000);
        estimate_snapshot(&mut p);
        assert_eq!(p.percent, Some(99.0), "never 100 % before the end");
    }

    #[test]
    fn the_wait_names_the_delay() {
        assert!(waiting_for_snapshot(Some(true), Some(5)).contains("repl-diskless-sync-delay 5 s"));
        assert!(waiting_for_snapshot(Some(false), None).contains("disk"));
    }
}
