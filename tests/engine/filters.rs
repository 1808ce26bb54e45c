//! Shaping a migration (issue #19): a filter (databases, globs, types), a db map and prefix
//! renames, in the snapshot and in the live stream, against real servers. Each test states the
//! target it expects key by key and compares it with what the target holds, read by the test's
//! own reader (`dump_all`), and checks the engine's verification through the same filter.

use std::time::{Duration, Instant};

use ferry::engine::EngineError;
use ferry::model::{EventKind, VerificationReport};
use ferry::shape::{KeyFilter, Rename};
use ferry::spec::{Mode, OnConflict, Options, Verify};

use crate::common::redis::RedisServer;
use crate::helpers::*;

fn source() -> RedisServer {
    RedisServer::start_with("7.2", &["--repl-diskless-sync-delay", "0"])
}

fn globs(patterns: &[&str]) -> Vec<String> {
    patterns.iter().map(|p| p.to_string()).collect()
}

fn rename(from: &str, to: &str) -> Vec<Rename> {
    vec![Rename {
        from_prefix: from.into(),
        to_prefix: to.into(),
    }]
}

/// The one verification report of a run.
fn report(events: &[EventKind]) -> VerificationReport {
    events
        .iter()
        .find_map(|e| match e {
            EventKind::VerificationCompleted { report } => Some(report.clone()),
            _ => None,
        })
        .expect("VerificationCompleted")
}

/// The last `KeysFiltered` totals.
fn filtered(events: &[EventKind]) -> (u64, u64) {
    events
        .iter()
        .rev()
        .find_map(|e| match e {
            EventKind::KeysFiltered {
                snapshot_keys,
                stream_commands,
            } => Some((*snapshot_keys, *stream_commands)),
            _ => None,
        })
        .expect("KeysFiltered")
}

/// What the target must hold: the source's keys through `keep`, which gives a key's target db and
/// name (or `None` for a key that stays behind), plus `extra` keys the target had of its own.
fn expected(
    source: &Snapshot,
    extra: &Snapshot,
    keep: impl Fn(u32, &str) -> Option<(u32, String)>,
) -> Snapshot {
    let mut out = extra.clone();
    for ((db, key), value) in source {
        if let Some((to_db, to_key)) = keep(*db, std::str::from_utf8(key).unwrap()) {
            out.insert((to_db, to_key.into_bytes()), value.clone());
        }
    }
    out
}

/// Asserts the target holds exactly `want`: the same keys, types and values, TTLs within 3 s.
fn assert_holds(target: &RedisServer, want: &Snapshot) {
    let have = dump_all(target, 16);
    let show = |s: &Snapshot| -> Vec<String> {
        s.keys()
            .map(|(db, k)| format!("{db}/{}", String::from_utf8_lossy(k)))
            .collect()
    };
    assert_eq!(show(&have), show(want), "the target's keys");
    for (key, (kind, value, ttl)) in want {
        let (tkind, tvalue, tttl) = &have[key];
        assert_eq!(kind, tkind, "type of {key:?}");
        assert!(value == tvalue, "value of {key:?} ({kind}) differs");
        assert_eq!(*ttl == -1, *tttl == -1, "TTL presence of {key:?}");
        if *ttl >= 0 {
            assert!((ttl - tttl).abs() < 3000, "TTL of {key:?}: {ttl} vs {tttl}");
        }
    }
}

/// The filter, map and rename of the snapshot test.
fn shaped_options(verify: Verify) -> Options {
    Options {
        filter: KeyFilter {
            dbs: vec![0, 3],
            include: globs(&["user:*", "order:*"]),
            exclude: globs(&["user:tmp:*"]),
            types: globs(&["string", "hash", "list"]),
        },
        db_map: [(3, 1)].into_iter().collect(),
        rename: rename("user:", "u:"),
        ..options(OnConflict::Fail, verify)
    }
}

/// A snapshot through every kind of filter, a db map and a rename: the target holds exactly the
/// keys that pass, under their new names and dbs, with their values and TTLs, next to the key it
/// had of its own; a big key goes through the chunked path under its new name; verification
/// `full` compares exactly those keys and passes, and `KeysFiltered` counts what stayed behind.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_snapshot_moves_exactly_the_filtered_keys_renamed_and_mapped() {
    let source = source();
    let target = RedisServer::start("7.2");
    let big = "x".repeat(300_000);
    for args in [
        vec!["SET", "user:1", "one", "PX", "100000"],
        vec!["HSET", "user:2", "name", "ada", "age", "36"],
        vec!["SET", "user:tmp:1", "scratch"],
        vec!["RPUSH", "order:1", "a", "b", "c"],
        vec!["ZADD", "user:3", "1", "m"],
        vec!["SET", "cart:1", "outside"],
    ] {
        source.cli(&args);
    }
    {
        // Too long for a command line: through a connection.
        let mut c = source.conn();
        for key in ["user:big", "skip:big"] {
            let _: () = redis::cmd("SET").arg(key).arg(&big).query(&mut c).unwrap();
        }
    }
    source.cli(&["-n", "3", "SET", "user:9", "nine"]);
    source.cli(&["-n", "3", "SADD", "user:set", "s"]);
    source.cli(&["-n", "3", "SET", "cart:9", "outside"]);
    source.cli(&["-n", "5", "SET", "user:5", "db five is not in the filter"]);
    target.cli(&["SET", "keep:me", "the target's own"]);
    let before_source = dump_all(&source, 16);
    let target_own = dump_all(&target, 16);

    let mut tuning = quick();
    tuning.big_key_bytes = 64 * 1024;
    tuning.rewrite_chunk_bytes = 50_000;
    let run = start(
        spec(
            &source,
            &target,
            Mode::Snapshot,
            shaped_options(Verify::Full),
        ),
        tuning,
    );
    let (result, events) = run.finish().await;
    result.unwrap();

    let want = expected(&before_source, &target_own, |db, key| {
        let moves = [0, 3].contains(&db)
            && (key.starts_with("user:") || key.starts_with("order:"))
            && !key.starts_with("user:tmp:")
            && !["user:3", "user:set"].contains(&key); // a zset and a set: types left out
        moves.then(|| {
            let db = if db == 3 { 1 } else { db };
            (db, key.replacen("user:", "u:", 1))
        })
    });
    assert_eq!(
        want.len(),
        6,
        "keep:me, u:1, u:2, order:1, u:big (db 0), u:9 (db 1)"
    );
    assert_holds(&target, &want);

    let report = report(&events);
    assert!(report.is_clean(), "{report:?}");
    assert_eq!(
        report.checked, 5,
        "exactly the keys that moved were compared"
    );
    assert_eq!(report.extra, 0, "the target's own key is not extra");
    // user:tmp:1, user:3, cart:1, skip:big (db 0), user:set, cart:9 (db 3), user:5 (db 5).
    assert_eq!(filtered(&events), (7, 0));
}

/// Sample verification through the shape, and the shaped transfer choice: `auto` takes the
/// restore path and says why.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sample_verification_compares_through_the_filter_and_auto_does_not_relay() {
    let source = source();
    let target = RedisServer::start("7.2");
    for i in 0..50 {
        source.cli(&["SET", &format!("user:{i}"), &i.to_string()]);
        source.cli(&["SET", &format!("other:{i}"), "x"]);
    }
    let mut opts = shaped_options(Verify::Sample);
    opts.transfer = ferry::spec::Transfer::Auto;
    opts.filter.types.clear();
    let run = start(spec(&source, &target, Mode::Snapshot, opts), quick());
    let (result, events) = run.finish().await;
    result.unwrap();
    let chosen = events.iter().find_map(|e| match e {
        EventKind::TransferChosen {
            transfer, reason, ..
        } => Some((*transfer, reason.clone())),
        _ => None,
    });
    let (transfer, reason) = chosen.expect("TransferChosen");
    assert_eq!(transfer, ferry::spec::TransferKind::Restore);
    assert!(reason.contains("filter, db_map or rename"), "{reason}");
    let report = report(&events);
    assert!(report.is_clean(), "{report:?}");
    assert_eq!(
        report.checked, 50,
        "the sample found every key that passes, and only those"
    );
    assert_eq!(target.cli(&["DBSIZE"]).trim(), "50");
    assert_eq!(get(&target, 0, "u:7").as_deref(), Some("7"));
}

fn live_options(passthrough: bool) -> Options {
    Options {
        filter: KeyFilter {
            dbs: vec![0, 2],
            include: globs(&["in:*"]),
            ..KeyFilter::default()
        },
        db_map: [(2, 4)].into_iter().collect(),
        rename: rename("in:", "moved:"),
        flush_passthrough: passthrough,
        ..options(OnConflict::Replace, Verify::Full)
    }
}

async fn streaming(run: &Running) {
    run.wait_for("StreamingStarted", |e| {
        matches!(e, EventKind::StreamingStarted { .. })
    })
    .await;
}

/// Waits until the target holds `key` in `db` (the stream got that far).
async fn until_applied(target: &RedisServer, db: u32, key: &str) {
    let deadline = Instant::now() + Duration::from_secs(20);
    while get(target, db, key).is_none() {
        assert!(
            Instant::now() < deadline,
            "{key} (db {db}) never reached the target"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// A write load touching keys on both sides of the filter, in three databases and inside
/// transactions: after the cutover the target holds exactly the source's keys that pass, renamed
/// and in their mapped dbs, verification `full` passes through the filter, and every dropped
/// write is counted, exactly.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_live_stream_applies_what_passes_and_counts_what_it_drops() {
    let source = source();
    let target = RedisServer::start("7.2");
    source.cli(&["SET", "in:seed", "0"]);
    source.cli(&["SET", "out:seed", "0"]);
    let run = start(
        spec(&source, &target, Mode::Live, live_options(false)),
        quick(),
    );
    streaming(&run).await;
    let rounds = 60u64;
    {
        let mut c = source.conn();
        for i in 0..rounds {
            let _: () = redis::cmd("SELECT").arg(0).query(&mut c).unwrap();
            let _: () = redis::cmd("SET")
                .arg(format!("in:{}", i % 7))
                .arg(i)
                .arg("EX")
                .arg(500)
                .query(&mut c)
                .unwrap();
            let _: () = redis::cmd("SET")
                .arg(format!("out:{i}"))
                .arg(i)
                .query(&mut c)
                .unwrap();
            let _: i64 = redis::cmd("INCR").arg("in:counter").query(&mut c).unwrap();
            let _: i64 = redis::cmd("HSET")
                .arg("out:h")
                .arg(i)
                .arg(i)
                .query(&mut c)
                .unwrap();
            // One transaction, one command on each side: the in-side one is applied, the other
            // dropped (each command is judged whole).
            let _: () = redis::pipe()
                .atomic()
                .cmd("RPUSH")
                .arg("in:list")
                .arg(i)
                .cmd("SET")
                .arg("out:tx")
                .arg(i)
                .query(&mut c)
                .unwrap();
            if i % 5 == 0 {
                let _: i64 = redis::cmd("DEL")
                    .arg(format!("in:{}", (i + 3) % 7))
                    .query(&mut c)
                    .unwrap();
            }
            let _: () = redis::cmd("SELECT").arg(2).query(&mut c).unwrap();
            let _: i64 = redis::cmd("SADD")
                .arg("in:db2")
                .arg(i)
                .query(&mut c)
                .unwrap();
            let _: () = redis::cmd("SELECT").arg(1).query(&mut c).unwrap();
            let _: () = redis::cmd("SET")
                .arg("in:db1")
                .arg(i)
                .query(&mut c)
                .unwrap();
        }
        let _: () = redis::cmd("SELECT").arg(0).query(&mut c).unwrap();
        let _: () = redis::cmd("SET")
            .arg("in:last")
            .arg("done")
            .query(&mut c)
            .unwrap();
    }
    until_applied(&target, 0, "moved:last").await;
    run.controls.cutover.cancel();
    let (result, events) = run.finish().await;
    result.unwrap();

    let want = expected(&dump_all(&source, 16), &Snapshot::new(), |db, key| {
        let moves = [0, 2].contains(&db) && key.starts_with("in:");
        moves.then(|| {
            (
                if db == 2 { 4 } else { db },
                key.replacen("in:", "moved:", 1),
            )
        })
    });
    assert!(want.len() >= 5, "{want:?}");
    assert_holds(&target, &want);
    let report = report(&events);
    assert!(report.is_clean(), "{report:?}");
    assert_eq!(report.checked, want.len() as u64);
    // Per round: SET out:i, HSET out:h, SET out:tx (inside the transaction), SET in:db1 (db 1).
    assert_eq!(
        filtered(&events),
        (1, rounds * 4),
        "out:seed, and four writes a round"
    );
}

/// Runs a live migration with `live_options`, writes `before` (which must land), then `command`;
/// returns the engine's failure and the target.
async fn stopped_by(
    command: &[&str],
    setup: &[&[&str]],
) -> (EngineError, RedisServer, RedisServer) {
    let source = source();
    let target = RedisServer::start("7.2");
    for args in setup {
        source.cli(args);
    }
    let run = start(
        spec(&source, &target, Mode::Live, live_options(false)),
        quick(),
    );
    streaming(&run).await;
    source.cli(&["SET", "in:before", "1"]);
    until_applied(&target, 0, "moved:before").await;
    let _ = source.cli(command);
    let (result, events) = run.finish().await;
    match result {
        Err(e) => (e, source, target),
        Ok(()) => panic!(
            "the migration went on after {command:?}: {:?}",
            names(&events)
        ),
    }
}

fn message(e: &EngineError) -> String {
    assert_eq!(e.code(), "filtered_command", "{e}");
    e.to_string()
}

/// A command with keys on both sides of the filter stops the migration, naming the command and
/// which keys are in and out; nothing of it is applied (not even the in-side half), and a
/// transaction holding one is not applied either.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_command_across_the_filter_stops_the_migration_and_nothing_of_it_lands() {
    let (e, _source, target) = stopped_by(&["MSET", "in:1", "a", "out:1", "b"], &[]).await;
    let text = message(&e);
    assert!(
        text.starts_with("MSET touches keys on both sides"),
        "{text}"
    );
    assert!(
        text.contains("`in:1` (db 0) in, `out:1` (db 0) out"),
        "{text}"
    );
    assert_eq!(get(&target, 0, "moved:1"), None);
    assert_eq!(get(&target, 0, "out:1"), None);

    let (e, source, target) =
        stopped_by(&["RENAME", "in:x", "out:x"], &[&["SET", "in:x", "v"]]).await;
    let text = message(&e);
    assert!(text.starts_with("RENAME touches keys"), "{text}");
    assert_eq!(
        get(&source, 0, "out:x").as_deref(),
        Some("v"),
        "the source renamed it"
    );
    assert_eq!(
        get(&target, 0, "moved:x").as_deref(),
        Some("v"),
        "not applied: still there"
    );
    assert_eq!(get(&target, 0, "out:x"), None);

    // A script reaches the stream as its effects (Redis 5+), wrapped in MULTI … EXEC: its MSET
    // is judged like any other, and its SET before it does not land either.
    let (e, _source, target) = stopped_by(
        &[
            "EVAL",
            "redis.call('SET', KEYS[1], 't'); redis.call('MSET', KEYS[2], 'a', KEYS[3], 'b')",
            "3",
            "in:t1",
            "in:t2",
            "out:t2",
        ],
        &[],
    )
    .await;
    let text = message(&e);
    assert!(text.starts_with("MSET touches keys"), "{text}");
    assert_eq!(
        get(&target, 0, "moved:t1"),
        None,
        "no part of the script landed"
    );
    assert_eq!(get(&target, 0, "moved:t2"), None);
}

/// The same inside `MULTI … EXEC`: the transaction's in-side command does not land either.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_transaction_holding_a_command_across_the_filter_is_not_applied_in_part() {
    let source = source();
    let target = RedisServer::start("7.2");
    let run = start(
        spec(&source, &target, Mode::Live, live_options(false)),
        quick(),
    );
    streaming(&run).await;
    source.cli(&["SET", "in:before", "1"]);
    until_applied(&target, 0, "moved:before").await;
    {
        let mut c = source.conn();
        let _: () = redis::pipe()
            .atomic()
            .cmd("SET")
            .arg("in:t1")
            .arg("1")
            .cmd("MSET")
            .arg("in:t2")
            .arg("a")
            .arg("out:t2")
            .arg("b")
            .query(&mut c)
            .unwrap();
    }
    let (result, _) = run.finish().await;
    let e = result.expect_err("the migration stops at the transaction");
    assert!(message(&e).starts_with("MSET touches keys"), "{e}");
    assert_eq!(
        get(&target, 0, "moved:t1"),
        None,
        "the transaction's first command did not land"
    );
    assert_eq!(get(&source, 0, "in:t1").as_deref(), Some("1"));
}

/// `FLUSHDB` under a filter stops the migration before it deletes anything, saying how to let it
/// through; with `flush_passthrough` it empties the mapped database (source db 2 → target db 4)
/// and nothing else, and a `FLUSHDB` of a database the filter leaves out is dropped.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn flushdb_under_a_filter_stops_unless_passed_through_to_the_mapped_db() {
    let (e, _source, target) = stopped_by(&["FLUSHDB"], &[&["SET", "in:kept", "1"]]).await;
    let text = message(&e);
    assert!(text.contains("FLUSHDB"), "{text}");
    assert!(text.contains("flush_passthrough"), "{text}");
    assert_eq!(
        get(&target, 0, "moved:kept").as_deref(),
        Some("1"),
        "nothing was flushed"
    );

    let source = source();
    let target = RedisServer::start("7.2");
    source.cli(&["-n", "2", "SET", "in:a", "1"]);
    source.cli(&["SET", "in:b", "1"]);
    target.cli(&["-n", "5", "SET", "theirs", "kept"]);
    let run = start(
        spec(&source, &target, Mode::Live, live_options(true)),
        quick(),
    );
    streaming(&run).await;
    source.cli(&["-n", "1", "FLUSHDB"]); // db 1 is outside the filter: dropped
    source.cli(&["-n", "2", "FLUSHDB"]);
    source.cli(&["SET", "in:after", "1"]);
    until_applied(&target, 0, "moved:after").await;
    run.controls.cutover.cancel();
    let (result, events) = run.finish().await;
    result.unwrap();
    assert_eq!(
        target.cli(&["-n", "4", "DBSIZE"]).trim(),
        "0",
        "db 2's image flushed"
    );
    assert_eq!(
        get(&target, 0, "moved:b").as_deref(),
        Some("1"),
        "db 0 untouched"
    );
    assert_eq!(get(&target, 5, "theirs").as_deref(), Some("kept"));
    assert_eq!(filtered(&events), (0, 1), "the FLUSHDB of db 1");
    let report = report(&events);
    assert!(report.is_clean(), "{report:?}");
}

/// A type filter cannot be kept by the live stream: refused before anything is written.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_type_filter_is_refused_in_live_mode_before_writing() {
    let source = source();
    let target = RedisServer::start("7.2");
    source.cli(&["SET", "in:1", "v"]);
    let mut opts = live_options(false);
    opts.filter.types = globs(&["string"]);
    let (result, _) = start(spec(&source, &target, Mode::Live, opts), quick())
        .finish()
        .await;
    match result {
        Err(EngineError::Unsupported(m)) => assert!(m.contains("options.filter.types"), "{m}"),
        other => panic!("expected a refusal, got {other:?}"),
    }
    assert_eq!(target.cli(&["DBSIZE"]).trim(), "0");
}

/// A broken replication link mid-stream, in a mapped database: the source continues by partial
/// resync without sending `SELECT` again, so the resumed writer must know the stream is still in
/// source db 2 (what the offset key records) and write to target db 4, not db 2.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_resumed_stream_stays_in_the_mapped_database() {
    let source = source();
    let target = RedisServer::start("7.2");
    let run = start(
        spec(&source, &target, Mode::Live, live_options(false)),
        quick(),
    );
    streaming(&run).await;
    let mut c = source.conn();
    let _: () = redis::cmd("SELECT").arg(2).query(&mut c).unwrap();
    let _: () = redis::cmd("SET").arg("in:a").arg(1).query(&mut c).unwrap();
    until_applied(&target, 4, "moved:a").await;
    source.cli(&["CLIENT", "KILL", "TYPE", "replica"]);
    run.wait_for("LinkResumed", |e| {
        matches!(e, EventKind::LinkResumed { .. })
    })
    .await;
    // Same connection, same db: the stream carries no new SELECT.
    let _: () = redis::cmd("SET").arg("in:b").arg(2).query(&mut c).unwrap();
    let _: () = redis::cmd("SET").arg("out:b").arg(2).query(&mut c).unwrap();
    until_applied(&target, 4, "moved:b").await;
    run.controls.cutover.cancel();
    let (result, events) = run.finish().await;
    result.unwrap();
    assert_eq!(
        get(&target, 2, "moved:b"),
        None,
        "nothing went to the unmapped db"
    );
    assert_eq!(target.cli(&["-n", "2", "DBSIZE"]).trim(), "0");
    assert_eq!(filtered(&events).1, 1, "out:b");
    assert!(report(&events).is_clean());
}

/// A job that crashed mid-stream in a mapped database and is started again from its checkpoint
/// (a restart of Ferry): the offset key recorded the *source's* db, so the restarted job writes
/// what the source did meanwhile (no new `SELECT`) to the mapped db, and counts on from the
/// dropped writes it had reported.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_restarted_job_resumes_in_the_mapped_database_and_counts_on() {
    let source = source();
    let target = RedisServer::start("7.2");
    let s = spec(&source, &target, Mode::Live, live_options(false));
    let run = start(s.clone(), quick());
    streaming(&run).await;
    let mut c = source.conn();
    let _: () = redis::cmd("SELECT").arg(2).query(&mut c).unwrap();
    let _: () = redis::cmd("SET").arg("in:a").arg(1).query(&mut c).unwrap();
    let _: () = redis::cmd("SET").arg("out:a").arg(1).query(&mut c).unwrap();
    until_applied(&target, 4, "moved:a").await;
    run.wait_for("the drop reported", |e| {
        matches!(
            e,
            EventKind::KeysFiltered {
                stream_commands: 1,
                ..
            }
        )
    })
    .await;
    run.wait_for("a checkpoint at zero lag", |e| {
        matches!(
            e,
            EventKind::Checkpoint {
                lag_bytes: Some(0),
                ..
            }
        )
    })
    .await;
    let (replid, applied) = run
        .events()
        .iter()
        .rev()
        .find_map(|e| match e {
            EventKind::Checkpoint {
                replid,
                applied_offset,
                ..
            } => Some((replid.clone(), *applied_offset)),
            _ => None,
        })
        .unwrap();
    let migration_id = run.migration_id;
    run.task.abort();
    let _ = run.task.await;

    let _: () = redis::cmd("SET").arg("in:b").arg(2).query(&mut c).unwrap();
    let _: () = redis::cmd("SET").arg("out:b").arg(2).query(&mut c).unwrap();
    let (tx, mut rx) = tokio::sync::mpsc::channel(64);
    let controls = ferry::engine::Controls::default();
    let job = ferry::engine::EngineJob {
        resume: Some(ferry::model::ResumePoint {
            replid,
            applied_offset: applied,
        }),
        transfer: Some(ferry::engine::PriorTransfer {
            kind: ferry::spec::TransferKind::Restore,
            relay_target: None,
        }),
        filtered: (0, 1),
        ..ferry::engine::EngineJob::new(migration_id, s)
    };
    let task = tokio::spawn(ferry::engine::run_with(job, tx, controls.clone(), quick()));
    until_applied(&target, 4, "moved:b").await;
    controls.cutover.cancel();
    let mut events = vec![];
    while let Some(e) = rx.recv().await {
        events.push(e);
    }
    task.await.unwrap().unwrap();
    assert!(
        matches!(
            events.first(),
            Some(EventKind::LinkResumed {
                kind: ferry::model::ResumeKind::Partial,
                ..
            })
        ),
        "{:?}",
        names(&events)
    );
    assert_eq!(target.cli(&["-n", "2", "DBSIZE"]).trim(), "0");
    assert_eq!(
        filtered(&events),
        (0, 2),
        "out:a before the crash, out:b after"
    );
    assert!(report(&events).is_clean());
}

/// Two source databases merged on purpose (`db_map` names both): their keys meet in one target
/// database, verification compares each against its own source db, and a key both hold is a
/// conflict like any other (`fail` stops, naming it).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_databases_merged_on_purpose_land_together_and_collide_by_the_policy() {
    let source = source();
    let target = RedisServer::start("7.2");
    source.cli(&["SET", "a", "from db 0"]);
    source.cli(&["-n", "3", "SET", "b", "from db 3"]);
    let merged = Options {
        db_map: [(0, 0), (3, 0)].into_iter().collect(),
        ..options(OnConflict::Fail, Verify::Full)
    };
    let run = start(
        spec(&source, &target, Mode::Snapshot, merged.clone()),
        quick(),
    );
    let (result, events) = run.finish().await;
    result.unwrap();
    assert_eq!(get(&target, 0, "a").as_deref(), Some("from db 0"));
    assert_eq!(get(&target, 0, "b").as_deref(), Some("from db 3"));
    assert_eq!(target.cli(&["-n", "3", "DBSIZE"]).trim(), "0");
    let report = report(&events);
    assert!(report.is_clean(), "{report:?}");
    assert_eq!(report.checked, 2);

    let target = RedisServer::start("7.2");
    source.cli(&["-n", "3", "SET", "a", "also in db 3"]);
    let (result, _) = start(spec(&source, &target, Mode::Snapshot, merged), quick())
        .finish()
        .await;
    match result {
        Err(EngineError::BusyKey { db, key }) => assert_eq!((db, key.as_str()), (0, "a")),
        other => panic!("expected the collision to stop the copy, got {other:?}"),
    }
}
