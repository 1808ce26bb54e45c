//! Snapshot mode: every type, several DBs, TTLs, across versions (RESTORE and the rewrite path),
//! big keys as chunked commands, functions and hash field TTLs.

use std::time::{Duration, Instant};

use ferry::model::EventKind;
use ferry::spec::{Mode, OnConflict, Verify};

use crate::common::redis::RedisServer;
use crate::helpers::*;

async fn snapshot_copies_everything(from: &str, to: &str, diskless: bool) {
    let source = RedisServer::start_with(
        from,
        &[
            "--databases",
            "4",
            "--repl-diskless-sync",
            if diskless { "yes" } else { "no" },
            "--repl-diskless-sync-delay",
            "0",
        ],
    );
    let target = RedisServer::start_with(to, &["--databases", "4"]);
    let keys = populate(&source, 3);
    let run = start(
        spec(
            &source,
            &target,
            Mode::Snapshot,
            options(OnConflict::Fail, Verify::Full),
        ),
        quick(),
    );
    let (result, events) = run.finish().await;
    result.unwrap_or_else(|e| panic!("{from} -> {to}: {e} ({})", e.code()));
    assert_same(&source, &target, 4);
    assert_eq!(
        names(&events)
            .into_iter()
            .filter(|n| *n != "SnapshotProgress")
            .collect::<Vec<_>>(),
        [
            "TransferChosen",
            "SnapshotRequested",
            "SnapshotStarted",
            "SnapshotCompleted",
            "VerificationCompleted"
        ]
    );
    let Some(EventKind::SnapshotStarted {
        diskless: was_diskless,
        rdb_bytes_total,
        ..
    }) = events
        .iter()
        .find(|e| matches!(e, EventKind::SnapshotStarted { .. }))
    else {
        unreachable!()
    };
    assert_eq!(*was_diskless, diskless);
    assert_eq!(rdb_bytes_total.is_some(), !diskless);
    let completed = events.iter().find_map(|e| match e {
        EventKind::SnapshotCompleted {
            keys_written,
            keys_rewritten,
            keys_expired,
            rdb_bytes,
            ..
        } => Some((*keys_written, *keys_rewritten, *keys_expired, *rdb_bytes)),
        _ => None,
    });
    let (written, _rewritten, expired, rdb_bytes) = completed.unwrap();
    assert_eq!(written, keys, "every key was written");
    assert_eq!(expired, 0);
    assert!(rdb_bytes > 1_200_000, "{rdb_bytes}");
    let report = events.iter().find_map(|e| match e {
        EventKind::VerificationCompleted { report } => Some(report.clone()),
        _ => None,
    });
    let report = report.unwrap();
    assert!(report.is_clean(), "{report:?}");
    assert_eq!(report.checked, keys);
    if from != "6.2" && to != "6.2" {
        assert_eq!(function_names(&target), ["ferrylib"]);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn snapshot_of_every_type_in_several_dbs_with_ttls_same_version_diskless() {
    snapshot_copies_everything("7.2", "7.2", true).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn snapshot_from_a_disk_based_6_2_source_into_7_4() {
    snapshot_copies_everything("6.2", "7.4", false).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn snapshot_from_7_4_into_6_2_rewrites_what_6_2_cannot_restore() {
    let source = RedisServer::start_with(
        "7.4",
        &["--databases", "4", "--repl-diskless-sync-delay", "0"],
    );
    let target = RedisServer::start_with("6.2", &["--databases", "4"]);
    populate(&source, 2);
    // Functions do not exist on 6.2: drop the library so the rest can move.
    source.cli(&["FUNCTION", "FLUSH"]);
    let run = start(
        spec(
            &source,
            &target,
            Mode::Snapshot,
            options(OnConflict::Fail, Verify::Full),
        ),
        quick(),
    );
    let (result, events) = run.finish().await;
    result.unwrap();
    assert_same(&source, &target, 4);
    let rewritten = events.iter().find_map(|e| match e {
        EventKind::SnapshotCompleted { keys_rewritten, .. } => Some(*keys_rewritten),
        _ => None,
    });
    assert!(
        rewritten.unwrap() > 10,
        "listpack-encoded values went as commands: {rewritten:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_function_library_cannot_go_to_a_6_2_target_and_the_error_says_so() {
    let source = RedisServer::start_with("7.2", &["--repl-diskless-sync-delay", "0"]);
    let target = RedisServer::start("6.2");
    populate(&source, 1);
    let run = start(
        spec(
            &source,
            &target,
            Mode::Snapshot,
            options(OnConflict::Fail, Verify::Full),
        ),
        quick(),
    );
    let (result, _) = run.finish().await;
    let err = result.expect_err("functions need 7.0");
    assert_eq!(err.code(), "unsupported");
    assert!(err.to_string().contains("functions"), "{err}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn big_keys_over_the_threshold_go_as_chunked_commands_while_the_target_keeps_answering() {
    let source = RedisServer::start_with("7.2", &["--repl-diskless-sync-delay", "0"]);
    let target = RedisServer::start("7.2");
    let mut c = source.conn();
    // A ~6 MB list and hash of incompressible values, with a 256 KB threshold.
    let mut seed = 0x2545_f491_4f6c_dd1du64;
    let mut noise = move || {
        (0..12)
            .map(|_| {
                seed ^= seed << 13;
                seed ^= seed >> 7;
                seed ^= seed << 17;
                format!("{seed:016x}")
            })
            .collect::<String>()
    };
    for batch in 0..30 {
        let items: Vec<String> = (0..1000)
            .map(|i| format!("{batch}-{i}-{}", noise()))
            .collect();
        let _: () = redis::cmd("RPUSH")
            .arg("big:list")
            .arg(&items)
            .query(&mut c)
            .unwrap();
        let mut pairs = vec![];
        for i in 0..1000 {
            pairs.push(format!("f{batch}-{i}"));
            pairs.push(noise());
        }
        let _: () = redis::cmd("HSET")
            .arg("big:hash")
            .arg(&pairs)
            .query(&mut c)
            .unwrap();
    }
    let _: () = redis::cmd("SET")
        .arg("small")
        .arg("1")
        .query(&mut c)
        .unwrap();
    // The target logs every command slower than 100 ms: none of ours may be. (The proof of
    // chunking is the command count below; time on a loaded 2-core machine is only a guard.)
    target.cli(&["CONFIG", "SET", "slowlog-log-slower-than", "100000"]);
    target.cli(&["SLOWLOG", "RESET"]);
    let tuning = ferry::engine::Tuning {
        big_key_bytes: 256 * 1024,
        rewrite_chunk_bytes: 64 * 1024,
        ..quick()
    };
    let run = start(
        spec(
            &source,
            &target,
            Mode::Snapshot,
            options(OnConflict::Fail, Verify::Full),
        ),
        tuning,
    );
    // Meanwhile the target answers PING quickly.
    let mut probe = target.conn();
    let mut worst = Duration::ZERO;
    while !run.task.is_finished() {
        let t = Instant::now();
        let _: String = redis::cmd("PING").query(&mut probe).unwrap();
        worst = worst.max(t.elapsed());
        tokio::time::sleep(Duration::from_millis(2)).await;
    }
    let (result, events) = run.finish().await;
    result.unwrap();
    // (Generous: on a loaded 2-core machine scheduling alone can delay a PING.)
    assert!(worst < Duration::from_millis(500), "PING took {worst:?}");
    let slow = target.cli(&["SLOWLOG", "GET", "10"]);
    let slow_writes: Vec<&str> = slow
        .lines()
        .filter(|l| ["RPUSH", "HSET", "RESTORE", "rpush", "hset", "restore"].contains(l))
        .collect();
    assert!(
        slow_writes.is_empty(),
        "commands over 100 ms on the target: {slow}"
    );
    // ~6 MB per key in 64 KB chunks: dozens of RPUSH and HSET calls, never one whole-key write.
    let stats = target.cli(&["INFO", "commandstats"]);
    let calls = |command: &str| -> u64 {
        stats
            .lines()
            .find_map(|l| l.strip_prefix(&format!("cmdstat_{command}:calls=")))
            .and_then(|rest| rest.split(',').next())
            .and_then(|n| n.parse().ok())
            .unwrap_or(0)
    };
    assert!(
        calls("rpush") >= 40 && calls("hset") >= 40,
        "big keys were not written in chunks: {stats}"
    );
    assert_same(&source, &target, 1);
    let rewritten = events.iter().find_map(|e| match e {
        EventKind::SnapshotCompleted {
            keys_rewritten,
            keys_written,
            ..
        } => Some((*keys_rewritten, *keys_written)),
        _ => None,
    });
    assert_eq!(rewritten, Some((2, 3)));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hash_field_ttls_move_from_7_4_to_7_4_and_are_verified() {
    let source = RedisServer::start_with("7.4", &["--repl-diskless-sync-delay", "0"]);
    let target = RedisServer::start("7.4");
    populate(&source, 1);
    hash_with_field_ttls(&source);
    let run = start(
        spec(
            &source,
            &target,
            Mode::Snapshot,
            options(OnConflict::Fail, Verify::Full),
        ),
        quick(),
    );
    let (result, _) = run.finish().await;
    result.unwrap();
    let expiries = field_expiries(&target);
    assert_eq!(expiries, field_expiries(&source));
    assert!(expiries[0] > 0 && expiries[2] == -1, "{expiries:?}");
    assert_same(&source, &target, 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hash_field_ttls_cannot_go_to_7_2_and_the_error_names_the_key() {
    let source = RedisServer::start_with("7.4", &["--repl-diskless-sync-delay", "0"]);
    let target = RedisServer::start("7.2");
    hash_with_field_ttls(&source);
    let run = start(
        spec(
            &source,
            &target,
            Mode::Snapshot,
            options(OnConflict::Fail, Verify::Full),
        ),
        quick(),
    );
    let (result, _) = run.finish().await;
    let err = result.expect_err("7.2 has no field TTLs");
    assert_eq!(err.code(), "unsupported");
    assert!(err.to_string().contains("hash:fttl"), "{err}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn module_keys_move_by_restore_and_fail_loudly_when_the_target_lacks_the_module() {
    let json = crate::common::redis::modules_dir("7.4").join("rejson.so");
    let json = json.to_str().unwrap();
    let source = RedisServer::start_with(
        "7.4",
        &["--repl-diskless-sync-delay", "0", "--loadmodule", json],
    );
    let with_module = RedisServer::start_with("7.4", &["--loadmodule", json]);
    let without = RedisServer::start("7.4");
    let mut c = source.conn();
    let _: () = redis::cmd("JSON.SET")
        .arg("doc")
        .arg("$")
        .arg(r#"{"a":[1,2,{"b":"c"}]}"#)
        .query(&mut c)
        .unwrap();
    let _: () = redis::cmd("SET")
        .arg("plain")
        .arg("1")
        .query(&mut c)
        .unwrap();

    let run = start(
        spec(
            &source,
            &with_module,
            Mode::Snapshot,
            options(OnConflict::Fail, Verify::Full),
        ),
        quick(),
    );
    let (result, _) = run.finish().await;
    result.unwrap();
    let copied: String = redis::cmd("JSON.GET")
        .arg("doc")
        .arg("$")
        .query(&mut with_module.conn())
        .unwrap();
    assert_eq!(copied, r#"[{"a":[1,2,{"b":"c"}]}]"#);

    let run = start(
        spec(
            &source,
            &without,
            Mode::Snapshot,
            options(OnConflict::Fail, Verify::Full),
        ),
        quick(),
    );
    let (result, _) = run.finish().await;
    let err = result.expect_err("a module key is never dropped silently");
    // Stopped before the RESTORE, naming module and key (the target's MODULE LIST lacks it).
    assert_eq!(err.code(), "unsupported");
    assert!(
        err.to_string().contains("`doc`") && err.to_string().contains("`ReJSON` module"),
        "{err}"
    );
}
