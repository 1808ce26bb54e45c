//! The 36 ordered pairs of {Redis 6.2, 7.0, 7.2, 7.4, 8.2, Valkey 9.1}, each in `snapshot` and
//! in `live` mode: 72 runs.
//!
//! A pair whose target cannot hold part of the dataset is first refused, with the reason, by
//! validation; the engine started anyway must stop naming what it cannot carry. Then the user's
//! way out is taken: function libraries are removed on the source, and hash field TTLs are let
//! go with `drop_field_ttls` (validation then only warns); the rest must move. Every run prints a
//! `MATRIX |` line for the table.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Instant;

use ferry::model::EventKind;
use ferry::spec::Mode;

use crate::common::redis::{server_version, RedisServer};
use crate::compare::{differences, key_count};
use crate::dataset::{has_field_ttls, has_functions, populate, server_args, strip_functions};
use crate::runner::{
    assert_not_refused, assert_refused, keys_rewritten, spec, start, tuning, verification,
};
use crate::writer::spawn_writer;

fn rdb(version: &str) -> u16 {
    server_version(version).rdb_version()
}

fn start_server(version: &str, diskless: bool) -> RedisServer {
    let args = server_args(version, diskless);
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    RedisServer::start_with(version, &args)
}

/// What the target cannot hold of this source's dataset, as (validation fragment, engine fragment).
fn unportable(from: &str, to: &str) -> Vec<(&'static str, &'static str)> {
    let mut out = vec![];
    if has_functions(from) && !has_functions(to) {
        out.push(("function librar", "functions"));
    }
    if has_field_ttls(from) && !has_field_ttls(to) {
        out.push(("hash field TTLs", "hash field expiries"));
    }
    out
}

/// Runs one pair in one mode; returns the outcome for the table.
async fn run_pair(from: &str, to: &str, mode: Mode) -> String {
    let started = Instant::now();
    let live = mode == Mode::Live;
    // Live runs use diskless sync, snapshot runs a disk-based one: both transfers are covered.
    let source = start_server(from, live);
    let target = start_server(to, false);
    populate(&source);
    let mut spec = spec(&source, &target, mode);
    let refusals = unportable(from, to);
    let mut outcome = String::new();
    if refusals.is_empty() {
        assert_not_refused(&spec, "versions").await;
    } else {
        let reasons: Vec<&str> = refusals.iter().map(|r| r.0).collect();
        let message = assert_refused(&spec, "versions", &reasons).await;
        // Started anyway, the engine must stop and say why, not drop what it cannot carry.
        let (result, _) = start(spec.clone(), tuning()).finish().await;
        let err = result.expect_err("the engine refuses what the target cannot hold");
        assert_eq!(err.code(), "unsupported", "{err}");
        assert!(
            refusals.iter().any(|r| err.to_string().contains(r.1)),
            "the engine's error names the feature: {err}"
        );
        let what: Vec<&str> = refusals.iter().map(|r| r.1).collect();
        println!("MATRIX-REASON | {from} -> {to} | {message}");
        let mut ways = vec![];
        if has_functions(from) && !has_functions(to) {
            strip_functions(&source);
            ways.push("functions removed");
        }
        if has_field_ttls(from) && !has_field_ttls(to) {
            spec.options.drop_field_ttls = true;
            ways.push("drop_field_ttls");
        }
        outcome = format!(
            "refused by `versions` ({}), engine stopped `unsupported`; with {}: ",
            what.join(" + "),
            ways.join(" + ")
        );
        target.cli(&["FLUSHALL"]);
        target.cli(&["FUNCTION", "FLUSH"]);
        assert_not_refused(&spec, "versions").await;
    }

    let result = if live {
        let stop = Arc::new(AtomicBool::new(false));
        let writer = spawn_writer(
            &source,
            has_functions(from) && has_functions(to),
            has_field_ttls(from),
            stop.clone(),
        );
        let run = start(spec, tuning());
        run.wait_for("StreamingStarted", |e| {
            matches!(e, EventKind::StreamingStarted { .. })
        })
        .await;
        run.wait_for("200 streamed commands", |e| {
            matches!(e, EventKind::Checkpoint { commands_streamed, .. } if *commands_streamed > 200)
        })
        .await;
        stop.store(true, Ordering::Relaxed);
        let rounds = tokio::task::spawn_blocking(move || writer.join())
            .await
            .unwrap()
            .expect("the writer did not panic");
        assert!(
            rounds >= 20,
            "the writer wrote during the migration: {rounds}"
        );
        run.controls.cutover.cancel();
        run.finish().await
    } else {
        start(spec, tuning()).finish().await
    };
    let (result, events) = result;
    if let Err(e) = result {
        // Say what differs by this binary's own reading too: it names the detail.
        let diff = differences(&source, &target);
        panic!(
            "{from} -> {to} {mode:?}: {e} ({}); the judge sees:\n{}",
            e.code(),
            diff.join("\n")
        );
    }
    let report = verification(&events).expect("VerificationCompleted");
    assert!(report.is_clean() && report.checked > 50, "{report:?}");
    let rewritten = keys_rewritten(&events).expect("SnapshotCompleted");
    let downgrade = rdb(to) < rdb(from);
    if server_version(from).fork != server_version(to).fork {
        // Across forks only the hashes with field TTLs differ in encoding (Redis 24/25,
        // Valkey 22); everything else is relabelled with a version the target accepts.
        if has_field_ttls(from) {
            assert!(
                rewritten > 0,
                "{from} -> {to}: field-TTL hashes were rewritten"
            );
        } else {
            assert_eq!(
                rewritten, 0,
                "{from} -> {to}: the target restores every payload"
            );
        }
    } else if downgrade && (rdb(to) < 10 || rdb(from) >= 11) {
        // 7.x into 6.2: listpack types; 7.2+ into 7.0: set listpacks and stream listpacks v3.
        assert!(rewritten > 0, "{from} -> {to}: values were rewritten");
    } else if !downgrade {
        assert_eq!(
            rewritten, 0,
            "{from} -> {to}: the target restores every payload"
        );
    }
    let diff = differences(&source, &target);
    assert!(
        diff.is_empty(),
        "{from} -> {to} {mode:?}: {} differences:\n{}",
        diff.len(),
        diff.join("\n")
    );
    let rows = if live {
        crate::new_commands::rows_of(from).len()
    } else {
        0
    };
    let new_commands = if rows > 0 {
        format!(", {rows} new-command rows")
    } else {
        String::new()
    };
    format!(
        "{outcome}pass ({} keys, {rewritten} rewritten{new_commands})",
        key_count(&source)
    ) + &format!(" | {:.1}s", started.elapsed().as_secs_f64())
}

async fn both_modes(from: &str, to: &str) {
    let _shared = crate::MACHINE.read().await;
    for mode in [Mode::Snapshot, Mode::Live] {
        let line = run_pair(from, to, mode).await;
        println!("MATRIX | {from} -> {to} | {mode:?} | {line}");
    }
}

macro_rules! pairs {
    ($($name:ident: $from:literal -> $to:literal;)*) => {$(
        #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
        async fn $name() {
            both_modes($from, $to).await;
        }
    )*};
}

pairs! {
    from_6_2_to_6_2: "6.2" -> "6.2";
    from_6_2_to_7_0: "6.2" -> "7.0";
    from_6_2_to_7_2: "6.2" -> "7.2";
    from_6_2_to_7_4: "6.2" -> "7.4";
    from_6_2_to_8_2: "6.2" -> "8.2";
    from_6_2_to_valkey_9_1: "6.2" -> "valkey-9.1";
    from_7_0_to_6_2: "7.0" -> "6.2";
    from_7_0_to_7_0: "7.0" -> "7.0";
    from_7_0_to_7_2: "7.0" -> "7.2";
    from_7_0_to_7_4: "7.0" -> "7.4";
    from_7_0_to_8_2: "7.0" -> "8.2";
    from_7_0_to_valkey_9_1: "7.0" -> "valkey-9.1";
    from_7_2_to_6_2: "7.2" -> "6.2";
    from_7_2_to_7_0: "7.2" -> "7.0";
    from_7_2_to_7_2: "7.2" -> "7.2";
    from_7_2_to_7_4: "7.2" -> "7.4";
    from_7_2_to_8_2: "7.2" -> "8.2";
    from_7_2_to_valkey_9_1: "7.2" -> "valkey-9.1";
    from_7_4_to_6_2: "7.4" -> "6.2";
    from_7_4_to_7_0: "7.4" -> "7.0";
    from_7_4_to_7_2: "7.4" -> "7.2";
    from_7_4_to_7_4: "7.4" -> "7.4";
    from_7_4_to_8_2: "7.4" -> "8.2";
    from_7_4_to_valkey_9_1: "7.4" -> "valkey-9.1";
    from_8_2_to_6_2: "8.2" -> "6.2";
    from_8_2_to_7_0: "8.2" -> "7.0";
    from_8_2_to_7_2: "8.2" -> "7.2";
    from_8_2_to_7_4: "8.2" -> "7.4";
    from_8_2_to_8_2: "8.2" -> "8.2";
    from_8_2_to_valkey_9_1: "8.2" -> "valkey-9.1";
    from_valkey_9_1_to_6_2: "valkey-9.1" -> "6.2";
    from_valkey_9_1_to_7_0: "valkey-9.1" -> "7.0";
    from_valkey_9_1_to_7_2: "valkey-9.1" -> "7.2";
    from_valkey_9_1_to_7_4: "valkey-9.1" -> "7.4";
    from_valkey_9_1_to_8_2: "valkey-9.1" -> "8.2";
    from_valkey_9_1_to_valkey_9_1: "valkey-9.1" -> "valkey-9.1";
}

/// The matrix's own judge is not vacuous: after a clean copy, each detail a careless migration
/// would lose (a PEL delivery count, a group's entries-read, a score's last bit, a field expiry,
/// a stream's last id, a TTL, a function library) is changed on the target, and each is found.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_judge_finds_each_detail_a_careless_copy_would_lose() {
    let source = start_server("7.4", false);
    let target = start_server("7.4", false);
    populate(&source);
    let (result, _) = start(spec(&source, &target, Mode::Snapshot), tuning())
        .finish()
        .await;
    result.expect("a clean copy first");
    assert!(differences(&source, &target).is_empty());
    let changes: [&[&str]; 7] = [
        &["XCLAIM", "x:main", "g1", "bob", "0", "2-1"],
        &[
            "XGROUP",
            "SETID",
            "x:main",
            "g3",
            "10-1",
            "ENTRIESREAD",
            "3",
        ],
        &["ZADD", "z:small", "XX", "0.10000000000000002", "z0"],
        &["HPEXPIRE", "hf:small", "999999", "FIELDS", "1", "a"],
        &["XSETID", "x:emptied", "6-6"],
        &["PEXPIRE", "s:px", "100000"],
        &["FUNCTION", "DELETE", "ferrymatrix"],
    ];
    for change in changes {
        target.cli(change);
    }
    let found = differences(&source, &target).join("\n");
    for what in [
        "`x:main`",
        "`z:small`",
        "`hf:small`",
        "`x:emptied`",
        "`s:px`",
        "function libraries differ",
    ] {
        assert!(found.contains(what), "{what} not found in:\n{found}");
    }
    // Both stream changes are in x:main: undo the PEL one and the entries-read one must show.
    source.cli(&["XCLAIM", "x:main", "g1", "bob", "0", "2-1"]);
    let found = differences(&source, &target).join("\n");
    assert!(found.contains("`x:main`"), "entries-read: {found}");
}
