//! The options that shape when and how fast a migration runs: rate limits and the schedule
//! (issue #19). Plain types and their checks, like the rest of [`crate::spec`].

use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use super::{MigrationSpec, Transfer};

/// Caps on what Ferry writes to the target, enforced by a token bucket in front of the target
/// writer (`engine::rate`), for the snapshot and the live stream alike. `null` is unlimited.
///
/// *Ops* are the data commands sent: each `RESTORE`, each command of a value rewritten as
/// commands (chunks of a big key), each streamed command. Ferry's own wrapper of a streamed
/// batch (`MULTI`, the offset key's `SET`, `EXEC`) and its `SELECT`s are not counted: they are
/// under 1% of a batch and a user cannot relate them to the source's workload. *Bytes* are the
/// bytes of those commands as sent (RESP-encoded). A limit is a promise about the target's load;
/// the HA guard may slow Ferry further but never lifts a limit set here.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(default, deny_unknown_fields)]
#[schema(example = json!({"max_bytes_per_sec": 10485760, "max_ops_per_sec": 5000}))]
pub struct Limits {
    /// Most bytes per second written to the target (at least 1024); `null`: unlimited.
    #[schema(minimum = 1024)]
    pub max_bytes_per_sec: Option<u64>,
    /// Most commands per second written to the target (at least 1); `null`: unlimited.
    #[schema(minimum = 1)]
    pub max_ops_per_sec: Option<u64>,
}

impl Limits {
    /// Whether any limit is set.
    pub fn any(&self) -> bool {
        self.max_bytes_per_sec.is_some() || self.max_ops_per_sec.is_some()
    }

    /// Refuses limits that would stall the migration: 0 ops, or fewer bytes a second than one
    /// small command needs.
    pub fn check(&self) -> Result<(), SpecError> {
        if self.max_ops_per_sec == Some(0) {
            return Err(SpecError::new(
                "options.limits.max_ops_per_sec",
                "`options.limits.max_ops_per_sec` must be at least 1 (or null for unlimited)",
            ));
        }
        // The schema says int64 (JSON's widest integer most clients read): a larger number is
        // refused rather than taken as a u64 the document does not promise.
        let too_big = |v: Option<u64>| v.is_some_and(|v| v > i64::MAX as u64);
        for (field, value) in [
            ("options.limits.max_ops_per_sec", self.max_ops_per_sec),
            ("options.limits.max_bytes_per_sec", self.max_bytes_per_sec),
        ] {
            if too_big(value) {
                return Err(SpecError::new(
                    field,
                    format!(
                        "`{field}` must be at most {} (or null for unlimited)",
                        i64::MAX
                    ),
                ));
            }
        }
        if self.max_bytes_per_sec.is_some_and(|b| b < 1024) {
            return Err(SpecError::new(
                "options.limits.max_bytes_per_sec",
                "`options.limits.max_bytes_per_sec` must be at least 1024 (or null for \
                 unlimited): a lower cap would take seconds for a single command",
            ));
        }
        Ok(())
    }
}

/// When a migration starts by itself and when it may cut over. Instants are absolute
/// (RFC 3339 with an offset, `2026-03-01T02:00:00+01:00`): a migration is a one-off event, and
/// an absolute instant cannot be read two ways across time zones or a DST change, where a
/// recurring local-time window could.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(default, deny_unknown_fields)]
// Far-future instants: a window that has ended is refused, and an example must stay valid.
#[schema(example = json!({"start_at": "2099-03-01T01:00:00Z",
    "cutover_window": {"from": "2099-03-01T02:00:00Z", "to": "2099-03-01T03:00:00Z"}}))]
pub struct Schedule {
    /// A validated migration starts by itself at this instant (actor `scheduler`); `null`:
    /// it starts when asked (`POST …/start`).
    #[schema(value_type = Option<String>, format = DateTime)]
    pub start_at: Option<chrono::DateTime<chrono::Utc>>,
    /// `auto_cutover` cuts over only inside this window, and a manual cutover outside it needs
    /// `{"force": true}`; `null`: any time.
    #[serde(deserialize_with = "super::object_or_null")]
    pub cutover_window: Option<CutoverWindow>,
}

/// A span of time, `from` (inclusive) to `to` (exclusive).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CutoverWindow {
    #[schema(value_type = String, format = DateTime)]
    pub from: chrono::DateTime<chrono::Utc>,
    #[schema(value_type = String, format = DateTime)]
    pub to: chrono::DateTime<chrono::Utc>,
}

impl CutoverWindow {
    pub fn contains(&self, at: chrono::DateTime<chrono::Utc>) -> bool {
        self.from <= at && at < self.to
    }
}

impl Schedule {
    pub fn is_empty(&self) -> bool {
        self.start_at.is_none() && self.cutover_window.is_none()
    }

    /// Whether a cutover at `at` is inside the window (always, without one).
    pub fn cutover_allowed(&self, at: chrono::DateTime<chrono::Utc>) -> bool {
        self.cutover_window.is_none_or(|w| w.contains(at))
    }

    /// Refuses a window that ends before it begins, or that has ended by `now` (it could never
    /// be used: the migration would stream until someone forced a cutover).
    pub fn check(&self, now: chrono::DateTime<chrono::Utc>) -> Result<(), SpecError> {
        let Some(w) = self.cutover_window else {
            return Ok(());
        };
        if w.to <= w.from {
            return Err(SpecError::new(
                "schedule.cutover_window.to",
                format!(
                    "`schedule.cutover_window.to` ({}) must be after `from` ({})",
                    w.to.to_rfc3339(),
                    w.from.to_rfc3339()
                ),
            ));
        }
        if w.to <= now {
            return Err(SpecError::new(
                "schedule.cutover_window.to",
                format!(
                    "the cutover window ended at {} (it is {} now); give a window in the future, \
                     or remove `schedule.cutover_window`",
                    w.to.to_rfc3339(),
                    now.to_rfc3339()
                ),
            ));
        }
        Ok(())
    }
}

/// A spec value that cannot work: the field to fix and what to do.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SpecError {
    pub field: &'static str,
    pub detail: String,
}

impl SpecError {
    fn new(field: &'static str, detail: impl Into<String>) -> Self {
        SpecError {
            field,
            detail: detail.into(),
        }
    }
}

impl MigrationSpec {
    /// Checks the limits and the schedule against the clock `now`.
    pub fn check_limits_and_schedule(
        &self,
        now: chrono::DateTime<chrono::Utc>,
    ) -> Result<(), SpecError> {
        self.options.limits.check()?;
        if self.options.limits.any() && self.options.transfer == Transfer::Relay {
            return Err(SpecError::new(
                "options.limits",
                "`options.limits` caps the writes Ferry makes, but with `transfer: relay` the \
                 target loads the source's RDB and stream by itself, at its own pace; use \
                 `transfer: restore` (or `auto`, which then restores) with limits",
            ));
        }
        self.schedule.check(now)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::TimeZone;

    fn t(secs: i64) -> chrono::DateTime<chrono::Utc> {
        chrono::Utc.with_ymd_and_hms(2026, 1, 1, 0, 0, 0).unwrap() + chrono::Duration::seconds(secs)
    }

    fn spec(extra: serde_json::Value) -> MigrationSpec {
        let mut body = serde_json::json!({"source": {"url": "redis://a:1"},
            "target": {"url": "redis://b:2"}});
        for (k, v) in extra.as_object().unwrap() {
            body[k] = v.clone();
        }
        serde_json::from_value(body).unwrap()
    }

    #[test]
    fn windows_and_limits_that_cannot_work_are_refused_by_field() {
        let window = |from, to| {
            spec(
                serde_json::json!({"schedule": {"cutover_window": {"from": t(from), "to": t(to)}}}),
            )
        };
        assert!(window(10, 20).check_limits_and_schedule(t(0)).is_ok());
        let backwards = window(20, 10).check_limits_and_schedule(t(0)).unwrap_err();
        assert_eq!(backwards.field, "schedule.cutover_window.to");
        let ended = window(10, 20).check_limits_and_schedule(t(20)).unwrap_err();
        assert!(ended.detail.contains("ended"), "{}", ended.detail);

        let limited = |options: serde_json::Value| spec(serde_json::json!({"options": options}));
        let zero = limited(serde_json::json!({"limits": {"max_ops_per_sec": 0}}));
        assert_eq!(
            zero.check_limits_and_schedule(t(0)).unwrap_err().field,
            "options.limits.max_ops_per_sec"
        );
        let tiny = limited(serde_json::json!({"limits": {"max_bytes_per_sec": 10}}));
        assert!(tiny.check_limits_and_schedule(t(0)).is_err());
        let relay =
            limited(serde_json::json!({"transfer": "relay", "limits": {"max_ops_per_sec": 10}}));
        let refused = relay.check_limits_and_schedule(t(0)).unwrap_err();
        assert_eq!(refused.field, "options.limits");
        assert!(
            refused.detail.contains("transfer: restore"),
            "{}",
            refused.detail
        );
    }

    #[test]
    fn instants_need_an_offset_and_read_back_as_utc() {
        let with_offset =
            spec(serde_json::json!({"schedule": {"start_at": "2026-03-01T02:00:00+01:00"}}));
        assert_eq!(
            with_offset.schedule.start_at,
            Some(t(0) + chrono::Duration::days(59) + chrono::Duration::hours(1))
        );
        let written = serde_json::to_value(&with_offset).unwrap();
        assert_eq!(written["schedule"]["start_at"], "2026-03-01T01:00:00Z");
        let no_offset = serde_json::from_value::<MigrationSpec>(serde_json::json!({
            "source": {"url": "redis://a:1"}, "target": {"url": "redis://b:2"},
            "schedule": {"start_at": "2026-03-01T02:00:00"}}));
        assert!(no_offset.is_err());
        let empty = spec(serde_json::json!({}));
        assert!(serde_json::to_value(&empty)
            .unwrap()
            .get("schedule")
            .is_none());
    }
}
