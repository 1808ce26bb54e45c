//! Given events, when folded, then the view says…

use chrono::{Duration, TimeZone};

use super::*;
use crate::aggregate::Action;
use crate::model::{AggregateType, CheckResult, CheckStatus};
use crate::redis_url::RedisUrl;

fn spec(mode: Mode) -> MigrationSpec {
    MigrationSpec {
        name: Some("n".into()),
        source: Endpoint::new(RedisUrl::parse("redis://u:secret@127.0.0.1:1").unwrap()).into(),
        target: Endpoint::new(RedisUrl::parse("redis://127.0.0.1:2").unwrap()),
        mode,
        options: Options::default(),
        schedule: Default::default(),
    }
}

fn fold(kinds: Vec<EventKind>) -> Migration {
    let id = Uuid::now_v7();
    let t0 = Utc.with_ymd_and_hms(2026, 1, 1, 0, 0, 0).unwrap();
    let mut state = None;
    for (i, kind) in kinds.into_iter().enumerate() {
        let event = Event {
            seq: i as u64 + 1,
            aggregate_type: AggregateType::Migration,
            aggregate_id: id,
            at: t0 + Duration::seconds(i as i64),
            actor: "api".into(),
            kind,
            chain: None,
        };
        state = Some(apply(state, &event).unwrap());
    }
    state.unwrap()
}

fn report(status: CheckStatus) -> ValidationReport {
    ValidationReport::from_checks(vec![CheckResult {
        id: "source.connect".into(),
        status,
        message: "m".into(),
        details: None,
    }])
}

#[test]
fn a_created_migration_is_configured_with_a_redacted_source() {
    let m = fold(vec![EventKind::MigrationCreated {
        spec: Box::new(spec(Mode::Snapshot)),
    }]);
    assert_eq!(m.view.state, State::Configured);
    assert_eq!(
        m.view.source.url().unwrap().to_string(),
        "redis://u:***@127.0.0.1:1"
    );
    assert_eq!(m.view.progress, Progress::default());
    assert_eq!(m.version, 1);
}

#[test]
fn validation_results_decide_between_validated_and_validation_failed() {
    let created = EventKind::MigrationCreated {
        spec: Box::new(spec(Mode::Snapshot)),
    };
    let warned = fold(vec![
        created.clone(),
        EventKind::ValidationStarted {},
        EventKind::ValidationCompleted {
            report: report(CheckStatus::Warn),
        },
    ]);
    assert_eq!(warned.view.state, State::Validated);
    let failed = fold(vec![
        created.clone(),
        EventKind::ValidationStarted {},
        EventKind::ValidationCompleted {
            report: report(CheckStatus::Fail),
        },
    ]);
    assert_eq!(failed.view.state, State::ValidationFailed);
    assert!(failed.view.validation.is_some());
}

#[test]
fn an_update_sends_the_migration_back_to_configured_and_drops_the_report() {
    let m = fold(vec![
        EventKind::MigrationCreated {
            spec: Box::new(spec(Mode::Snapshot)),
        },
        EventKind::ValidationStarted {},
        EventKind::ValidationCompleted {
            report: report(CheckStatus::Pass),
        },
        EventKind::MigrationUpdated {
            spec: Box::new(spec(Mode::Live)),
        },
    ]);
    assert_eq!(m.view.state, State::Configured);
    assert_eq!(m.view.mode, Mode::Live);
    assert_eq!(m.view.validation, None);
}

#[test]
fn snapshot_progress_gives_percent_and_eta_and_checkpoints_give_a_resume_point() {
    let m = fold(vec![
        EventKind::MigrationCreated {
            spec: Box::new(spec(Mode::Live)),
        },
        EventKind::MigrationStarted {},
        EventKind::SnapshotStarted {
            replid: "r".into(),
            offset: 0,
            diskless: false,
            rdb_bytes_total: Some(1000),
            redo: None,
            keys_total: None,
        },
        // one second after the start, a quarter is read: three more seconds to go
        EventKind::SnapshotProgress {
            rdb_bytes_read: 250,
            rdb_bytes_total: Some(1000),
            keys_written: 10,
            keys_skipped: 1,
            keys_expired: 0,
        },
    ]);
    assert_eq!(m.view.phase, Some(Phase::Snapshot));
    assert_eq!(m.view.progress.percent, Some(25.0));
    assert_eq!(m.view.progress.eta_seconds, Some(3));
    assert_eq!(m.view.progress.keys_written, Some(10));
    assert_eq!(m.view.progress.commands_streamed, None);

    let mut events = vec![
        EventKind::MigrationCreated {
            spec: Box::new(spec(Mode::Live)),
        },
        EventKind::MigrationStarted {},
        EventKind::SnapshotCompleted {
            rdb_bytes: 1000,
            keys_written: 40,
            keys_skipped: 0,
            keys_expired: 0,
            keys_rewritten: 0,
            duration_ms: 5,
            keys_empty: 0,
        },
        EventKind::StreamingStarted {
            replid: "r".into(),
            offset: 10,
        },
        EventKind::Checkpoint {
            replid: "r".into(),
            applied_offset: 77,
            commands_streamed: 5,
            lag_bytes: Some(3),
            bytes_streamed: None,
        },
    ];
    let m = fold(events.clone());
    assert_eq!(m.view.phase, Some(Phase::Streaming));
    assert_eq!(m.view.progress.lag_bytes, Some(3));
    assert_eq!(
        m.resume,
        Some(ResumePoint {
            replid: "r".into(),
            applied_offset: 77
        })
    );
    events.push(EventKind::CutoverStarted {
        pause_source_writes: false,
    });
    events.push(EventKind::MigrationCompleted {});
    let m = fold(events);
    assert_eq!((m.view.state, m.view.phase), (State::Completed, None));
}

#[test]
fn a_failure_is_shown_with_its_code() {
    let m = fold(vec![
        EventKind::MigrationCreated {
            spec: Box::new(spec(Mode::Snapshot)),
        },
        EventKind::MigrationStarted {},
        EventKind::MigrationFailed {
            code: "engine_unavailable".into(),
            message: "no engine".into(),
        },
    ]);
    assert_eq!(m.view.state, State::Failed);
    assert_eq!(m.view.error.as_ref().unwrap().code, "engine_unavailable");
}

#[test]
fn events_of_an_unknown_migration_and_double_creation_are_refused() {
    let event = Event {
        seq: 1,
        aggregate_type: AggregateType::Migration,
        aggregate_id: Uuid::now_v7(),
        at: Utc::now(),
        actor: "api".into(),
        kind: EventKind::MigrationStarted {},
        chain: None,
    };
    assert!(matches!(
        apply(None, &event),
        Err(FoldError::NotCreated { .. })
    ));
    let created = fold(vec![EventKind::MigrationCreated {
        spec: Box::new(spec(Mode::Snapshot)),
    }]);
    let again = Event {
        kind: EventKind::MigrationCreated {
            spec: Box::new(spec(Mode::Snapshot)),
        },
        ..event
    };
    assert!(matches!(
        apply(Some(created), &again),
        Err(FoldError::CreatedTwice { .. })
    ));
}

#[test]
fn a_final_migration_with_a_restore_point_allows_rollback_until_one_runs() {
    let backup_id = Uuid::now_v7();
    let restore_id = Uuid::now_v7();
    let mut kinds = vec![
        EventKind::MigrationCreated {
            spec: Box::new(spec(Mode::Snapshot)),
        },
        EventKind::MigrationStarted {},
        EventKind::BackupCompleted {
            backup_id,
            bytes: 10,
            details: None,
        },
        EventKind::MigrationFailed {
            code: "x".into(),
            message: "m".into(),
        },
    ];
    let failed = fold(kinds.clone());
    assert_eq!(failed.view.allowed_actions, vec![Action::Rollback]);
    kinds.push(EventKind::RollbackRequested {
        restore_id,
        backup_id,
    });
    let rolling = fold(kinds.clone());
    assert!(rolling.view.allowed_actions.is_empty());
    kinds.push(EventKind::RollbackEnded {
        restore_id,
        restored: true,
    });
    let done = fold(kinds);
    assert_eq!(done.view.rolled_back, Some(true));
    assert_eq!(done.view.allowed_actions, vec![Action::Rollback]);
}

/// Logs from before restores were resources recorded a rollback's restore events under the
/// migration's id: they still say whether it rolled back.
#[test]
fn a_rollback_of_the_first_format_still_folds() {
    let backup_id = Uuid::now_v7();
    let m = fold(vec![
        EventKind::MigrationCreated {
            spec: Box::new(spec(Mode::Snapshot)),
        },
        EventKind::MigrationCancelled { reason: None },
        EventKind::RestoreStarted {
            backup_id,
            target: "redis://127.0.0.1:2".into(),
            on_conflict: crate::spec::OnConflict::Replace,
            for_migration: None,
        },
        EventKind::RestoreFailed {
            backup_id,
            code: "target_unreachable".into(),
            message: "m".into(),
        },
    ]);
    assert_eq!(m.view.rolled_back, Some(false));
}

#[test]
fn starting_with_an_unchecked_certificate_records_tls_verification_skipped() {
    use crate::aggregate::migration::{decide, Command};
    use crate::model::Link;
    let mut unchecked = spec(Mode::Snapshot);
    unchecked.target = Endpoint {
        url: RedisUrl::parse("rediss://127.0.0.1:2").unwrap(),
        tls: Some(crate::spec::TlsSettings {
            insecure_skip_verify: true,
            ..Default::default()
        }),
    };
    let validated = |spec: MigrationSpec| {
        fold(vec![
            EventKind::MigrationCreated {
                spec: Box::new(spec),
            },
            EventKind::ValidationStarted {},
            EventKind::ValidationCompleted {
                report: report(CheckStatus::Warn),
            },
        ])
    };
    let events = decide(&validated(unchecked), Command::Start).unwrap();
    assert_eq!(
        events,
        vec![
            EventKind::MigrationStarted {},
            EventKind::TlsVerificationSkipped {
                link: Link::Target,
                addr: "127.0.0.1:2".into(),
            },
        ]
    );
    let events = decide(&validated(spec(Mode::Snapshot)), Command::Start).unwrap();
    assert_eq!(events, vec![EventKind::MigrationStarted {}]);
}

/// A live migration validated with `schedule`, optionally started.
fn scheduled(schedule: crate::spec::Schedule, started: bool) -> Migration {
    let mut spec = spec(Mode::Live);
    spec.schedule = schedule;
    let mut kinds = vec![
        EventKind::MigrationCreated {
            spec: Box::new(spec),
        },
        EventKind::ValidationStarted {},
        EventKind::ValidationCompleted {
            report: report(CheckStatus::Pass),
        },
    ];
    if started {
        kinds.push(EventKind::MigrationStarted {});
    }
    fold(kinds)
}

#[test]
fn a_scheduled_start_is_shown_and_only_the_current_schedule_starts_it() {
    use crate::aggregate::migration::{decide, Command};
    let t = |s: i64| Utc.with_ymd_and_hms(2026, 1, 1, 0, 0, 0).unwrap() + Duration::seconds(s);
    let schedule = crate::spec::Schedule {
        start_at: Some(t(100)),
        cutover_window: None,
    };
    let m = scheduled(schedule, false);
    assert_eq!(m.view.scheduled_start, Some(t(100)));
    let events = decide(
        &m,
        Command::StartScheduled {
            armed_for: t(100),
            now: t(103),
        },
    )
    .unwrap();
    assert_eq!(
        events,
        vec![
            EventKind::MigrationStarted {},
            EventKind::ScheduledStart {
                start_at: t(100),
                late_secs: 3
            }
        ]
    );
    let stale = decide(
        &m,
        Command::StartScheduled {
            armed_for: t(50),
            now: t(103),
        },
    )
    .unwrap_err();
    assert!(stale.to_string().contains("schedule changed"), "{stale}");
}

#[test]
fn a_cutover_outside_the_window_needs_force_and_limits_change_only_while_running() {
    use crate::aggregate::migration::{decide, Command};
    use crate::spec::{CutoverWindow, Limits, Schedule, TransferKind};
    let t = |s: i64| Utc.with_ymd_and_hms(2026, 1, 1, 0, 0, 0).unwrap() + Duration::seconds(s);
    let window = CutoverWindow {
        from: t(100),
        to: t(200),
    };
    let m = scheduled(
        Schedule {
            start_at: None,
            cutover_window: Some(window),
        },
        true,
    );
    let early = decide(
        &m,
        Command::Cutover {
            force: false,
            now: t(99),
        },
    )
    .unwrap_err();
    assert!(
        early.to_string().contains("outside the cutover window"),
        "{early}"
    );
    let forced = decide(
        &m,
        Command::Cutover {
            force: true,
            now: t(99),
        },
    )
    .unwrap();
    assert_eq!(
        forced,
        vec![
            EventKind::CutoverForced { window },
            EventKind::CutoverStarted {
                pause_source_writes: true
            }
        ]
    );
    let inside = decide(
        &m,
        Command::Cutover {
            force: false,
            now: t(150),
        },
    )
    .unwrap();
    assert_eq!(inside.len(), 1, "no CutoverForced inside the window");

    let limits = Limits {
        max_ops_per_sec: Some(10),
        max_bytes_per_sec: None,
    };
    let changed = decide(&m, Command::ChangeLimits { limits }).unwrap();
    assert_eq!(changed, vec![EventKind::LimitsChanged { limits }]);
    let not_running = scheduled(Schedule::default(), false);
    assert!(decide(&not_running, Command::ChangeLimits { limits }).is_err());
    let mut relay = m.clone();
    let relay_id = relay.view.id;
    fold_into(
        &mut relay,
        &Event {
            seq: 99,
            aggregate_type: AggregateType::Migration,
            aggregate_id: relay_id,
            at: t(10),
            actor: "engine".into(),
            kind: EventKind::TransferChosen {
                transfer: TransferKind::Relay,
                reason: "test".into(),
                relay_target: None,
            },
            chain: None,
        },
    );
    let refused = decide(&relay, Command::ChangeLimits { limits }).unwrap_err();
    assert!(refused.to_string().contains("relay"), "{refused}");
    // Lifting every limit of a relay is no change it cannot honour.
    assert!(decide(
        &relay,
        Command::ChangeLimits {
            limits: Limits::default()
        }
    )
    .is_ok());
}

#[test]
fn limits_changed_and_the_guard_show_in_the_view() {
    use crate::spec::Limits;
    let limits = Limits {
        max_ops_per_sec: Some(500),
        max_bytes_per_sec: None,
    };
    let mut m = scheduled(crate::spec::Schedule::default(), true);
    let at = m.view.updated_at;
    let mut apply = |kind: EventKind| {
        fold_into(
            &mut m,
            &Event {
                seq: 100,
                aggregate_type: AggregateType::Migration,
                aggregate_id: Uuid::nil(),
                at,
                actor: "api".into(),
                kind,
                chain: None,
            },
        );
    };
    apply(EventKind::LimitsChanged { limits });
    apply(EventKind::Throttled {
        reason: "lag".into(),
        ops_per_sec: 100,
    });
    assert_eq!(m.view.options.limits, limits);
    assert_eq!(m.view.progress.throttled_by.as_deref(), Some("ha_guard"));
    fold_into(
        &mut m,
        &Event {
            seq: 101,
            aggregate_type: AggregateType::Migration,
            aggregate_id: Uuid::nil(),
            at,
            actor: "engine".into(),
            kind: EventKind::ThrottleLifted {
                reason: "ok".into(),
            },
            chain: None,
        },
    );
    assert_eq!(m.view.progress.throttled_by, None);
}

#[test]
fn a_scan_reader_shows_its_lag_in_keys_and_remembers_the_setting_to_put_back() {
    let created = EventKind::MigrationCreated {
        spec: Box::new(spec(Mode::Live)),
    };
    let set = |previous: &str| EventKind::KeyspaceNotificationsSet {
        previous: previous.into(),
        set: "EA".into(),
    };
    let m = fold(vec![
        created.clone(),
        set("Kx"),
        // A restarted engine never records its own setting as the one to put back.
        set("EA"),
        EventKind::ScanStarted {
            keys_total: Some(10),
            notify: "EA".into(),
        },
        EventKind::ScanCheckpoint {
            dirty_keys: 3,
            keys_recopied: 7,
            keys_deleted: 1,
        },
    ]);
    assert_eq!(m.keyspace_notifications_before.as_deref(), Some("Kx"));
    assert_eq!(m.view.progress.lag_keys, Some(3));
    assert_eq!(m.view.progress.commands_streamed, Some(7));
    assert_eq!(m.view.progress.lag_seconds, None);
    assert_eq!(m.view.progress.keys_total, Some(10));

    let m = fold(vec![
        created,
        set("Kx"),
        EventKind::ScanCheckpoint {
            dirty_keys: 0,
            keys_recopied: 7,
            keys_deleted: 1,
        },
        EventKind::KeyspaceNotificationsRestored { value: "Kx".into() },
    ]);
    assert_eq!(m.keyspace_notifications_before, None);
    assert_eq!(m.view.progress.lag_seconds, Some(0.0));
}
