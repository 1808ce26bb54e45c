//! Progress under rate limits: the ETA no shorter than the limits allow, and which limit holds
//! the rate down now. Pure functions of the events, like the rest of the view.

use chrono::{DateTime, Utc};

use super::{Migration, Progress};
use crate::model::EventKind;
use crate::spec::Limits;

/// Folds the events of rate limits, the HA guard and the schedule.
pub fn apply_fact(m: &mut Migration, kind: &EventKind) {
    let v = &mut m.view;
    match kind {
        EventKind::LimitsChanged { limits } => {
            v.options.limits = *limits;
            name_throttle(&mut v.progress, limits, m.guard_throttled);
        }
        EventKind::Throttled { .. } => {
            m.guard_throttled = true;
            v.progress.throttled_by = Some(HA_GUARD.into());
        }
        EventKind::ThrottleLifted { .. } => {
            m.guard_throttled = false;
            if v.progress.throttled_by.as_deref() == Some(HA_GUARD) {
                v.progress.throttled_by = None;
            }
        }
        EventKind::HaGuardBlind { .. }
        | EventKind::SourceBufferNearLimit { .. }
        | EventKind::ScheduledStart { .. }
        | EventKind::CutoverForced { .. } => {}
        EventKind::CutoverDeferred { opens_at } => {
            v.cutover_waits_until = Some(*opens_at);
            if v.state.is_running() {
                v.phase_detail = Some(format!(
                    "the target has caught up; the automatic cutover waits for the cutover \
                 window opening at {}",
                    opens_at.to_rfc3339()
                ));
            }
        }
        EventKind::CutoverWindowMissed { closed_at } => {
            v.cutover_waits_until = None;
            if v.state.is_running() {
                v.phase_detail = Some(format!(
                    "applying the source's writes as they happen; the cutover window closed at \
                 {} without a cutover, and Ferry never cuts over by itself outside it: cut \
                 over with {{\"force\": true}} when ready",
                    closed_at.to_rfc3339()
                ));
            }
        }
        _ => {}
    }
}

/// `throttled_by` while the HA guard slows Ferry down.
pub const HA_GUARD: &str = "ha_guard";

/// A limit "binds" when the measured rate is within this share of it.
const BINDING_SHARE: f64 = 0.9;

/// After a snapshot progress report: raises the ETA to what is left at the limits, and notes
/// whether a limit binds (the rate since the previous report, `last`, against each limit).
/// RDB bytes stand in for command bytes (a RESTORE carries the value as the RDB holds it, plus a
/// few dozen bytes), so a bytes limit counts as binding from 80% of it.
pub fn snapshot_progress(
    p: &mut Progress,
    limits: &Limits,
    last: Option<(DateTime<Utc>, u64, u64)>,
    now: (DateTime<Utc>, u64, u64),
) {
    let (at, keys, bytes) = now;
    let keys_left = p.keys_total.map(|t| t.saturating_sub(keys));
    let bytes_left = p
        .rdb_bytes_total
        .map(|t| t.saturating_sub(p.rdb_bytes_read.unwrap_or(0)));
    let at_limit = |left: Option<u64>, limit: Option<u64>| match (left, limit) {
        (Some(left), Some(limit)) if limit > 0 => Some(left.div_ceil(limit)),
        _ => None,
    };
    let floor = at_limit(keys_left, limits.max_ops_per_sec)
        .into_iter()
        .chain(at_limit(bytes_left, limits.max_bytes_per_sec))
        .max();
    if let (Some(floor), Some(eta)) = (floor, p.eta_seconds) {
        p.eta_seconds = Some(eta.max(floor));
    }
    p.throttled_by = None;
    let Some((then, keys_then, bytes_then)) = last else {
        return;
    };
    let secs = (at - then).num_milliseconds() as f64 / 1000.0;
    if secs <= 0.0 {
        return;
    }
    let ops_rate = keys.saturating_sub(keys_then) as f64 / secs;
    let bytes_rate = bytes.saturating_sub(bytes_then) as f64 / secs;
    p.throttled_by = if limits
        .max_ops_per_sec
        .is_some_and(|l| ops_rate >= l as f64 * BINDING_SHARE)
    {
        Some("max_ops_per_sec".into())
    } else if limits
        .max_bytes_per_sec
        .is_some_and(|l| bytes_rate >= l as f64 * (BINDING_SHARE - 0.1))
    {
        Some("max_bytes_per_sec".into())
    } else {
        None
    };
}

/// Names what holds the rate down: the HA guard first (it is the lower cap while it acts),
/// then, while streaming, `max_ops_per_sec` when the apply rate is within 10% of it.
pub fn name_throttle(p: &mut Progress, limits: &Limits, guard: bool) {
    if guard {
        p.throttled_by = Some(HA_GUARD.into());
        return;
    }
    if p.throttled_by.as_deref() == Some(HA_GUARD) {
        p.throttled_by = None;
    }
    if let (Some(rate), Some(limit)) = (p.apply_rate, limits.max_ops_per_sec) {
        p.throttled_by =
            (rate >= limit as f64 * BINDING_SHARE).then(|| "max_ops_per_sec".to_string());
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::TimeZone;

    fn t(secs: i64) -> DateTime<Utc> {
        Utc.with_ymd_and_hms(2026, 1, 1, 0, 0, 0).unwrap() + chrono::Duration::seconds(secs)
    }

    #[test]
    fn the_eta_is_never_shorter_than_the_limit_allows_and_names_it() {
        let limits = Limits {
            max_ops_per_sec: Some(1000),
            max_bytes_per_sec: None,
        };
        let mut p = Progress {
            keys_total: Some(10_000),
            rdb_bytes_total: Some(1_000_000),
            rdb_bytes_read: Some(200_000),
            eta_seconds: Some(2),
            ..Progress::default()
        };
        snapshot_progress(
            &mut p,
            &limits,
            Some((t(1), 1000, 100_000)),
            (t(2), 2000, 200_000),
        );
        assert_eq!(p.eta_seconds, Some(8), "8000 keys left at 1000/s");
        assert_eq!(p.throttled_by.as_deref(), Some("max_ops_per_sec"));
        snapshot_progress(
            &mut p,
            &limits,
            Some((t(2), 2000, 200_000)),
            (t(3), 2500, 250_000),
        );
        assert_eq!(p.throttled_by, None, "500/s is not held down by 1000/s");
        name_throttle(&mut p, &limits, true);
        assert_eq!(p.throttled_by.as_deref(), Some(HA_GUARD));
    }

    #[test]
    fn a_bytes_limit_binds_on_the_snapshot_bytes() {
        let limits = Limits {
            max_ops_per_sec: None,
            max_bytes_per_sec: Some(100_000),
        };
        let mut p = Progress {
            rdb_bytes_total: Some(1_000_000),
            rdb_bytes_read: Some(190_000),
            eta_seconds: Some(1),
            ..Progress::default()
        };
        snapshot_progress(
            &mut p,
            &limits,
            Some((t(1), 10, 100_000)),
            (t(2), 19, 190_000),
        );
        assert_eq!(p.eta_seconds, Some(9));
        assert_eq!(p.throttled_by.as_deref(), Some("max_bytes_per_sec"));
    }
}
