//! `source.read: scan` against sources that refuse SYNC/PSYNC (`rename-command SYNC ""`,
//! `rename-command PSYNC ""`): the copy under a write load, big keys read in chunks, values the
//! target cannot take as payloads, and the source's notification setting put back on every path.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use ferry::engine::{EngineJob, TargetBefore, Tuning};
use ferry::model::EventKind;
use ferry::spec::{MigrationSpec, Mode, OnConflict, Source, SourceRead, Verify};

use crate::common::redis::RedisServer;
use crate::helpers::*;

/// A source that refuses replication, as managed services do.
fn no_sync_source(version: &str) -> RedisServer {
    RedisServer::start_without_sync(version)
}

fn scan_spec(
    source: &RedisServer,
    target: &RedisServer,
    mode: Mode,
    set_notify: bool,
) -> MigrationSpec {
    let mut opts = options(OnConflict::Fail, Verify::None);
    opts.set_keyspace_notifications = set_notify;
    let mut spec = spec(source, target, mode, opts);
    let endpoint = spec.source.endpoint().unwrap().clone();
    spec.source = Source::Server(endpoint, SourceRead::Scan, ferry::spec::Prefer::Master);
    spec
}

/// Small thresholds, so that ordinary test keys are "big" and read in chunks.
fn chunky() -> Tuning {
    let mut tuning = quick();
    tuning.big_key_bytes = 2048;
    tuning.rewrite_chunk_items = 7;
    tuning.rewrite_chunk_bytes = 1000;
    tuning.scan.batch = 10;
    tuning
}

fn notify_setting(server: &RedisServer) -> String {
    server.config_get("notify-keyspace-events")
}

fn verification(events: &[EventKind]) -> ferry::model::VerificationReport {
    events
        .iter()
        .find_map(|e| match e {
            EventKind::VerificationCompleted { report } => Some(report.clone()),
            _ => None,
        })
        .expect("VerificationCompleted")
}

fn rewritten(events: &[EventKind]) -> u64 {
    events
        .iter()
        .find_map(|e| match e {
            EventKind::SnapshotCompleted { keys_rewritten, .. } => Some(*keys_rewritten),
            _ => None,
        })
        .expect("SnapshotCompleted")
}

/// Writes that a scan must follow through notifications: a big hash that grows, keys that
/// expire within the copy, keys deleted while the scan runs (`doomed:*`, made beforehand).
fn spawn_scan_load(source: &RedisServer, stop: Arc<AtomicBool>) -> std::thread::JoinHandle<u64> {
    let client = source.client();
    std::thread::spawn(move || {
        let mut c = client.get_connection().unwrap();
        let mut n = 0u64;
        while !stop.load(Ordering::Relaxed) {
            let _: () = redis::pipe()
                .cmd("HSET")
                .arg("grow:hash")
                .arg(format!("f{n}"))
                .arg("v".repeat(40))
                .ignore()
                .cmd("SET")
                .arg(format!("exp:{n}"))
                .arg(n)
                .arg("PX")
                .arg(100 + (n % 200))
                .ignore()
                .cmd("DEL")
                .arg(format!("doomed:{}", n % 400))
                .ignore()
                .cmd("SELECT")
                .arg(1)
                .ignore()
                .cmd("INCR")
                .arg("db1:counter")
                .ignore()
                .cmd("SELECT")
                .arg(0)
                .ignore()
                .query(&mut c)
                .unwrap();
            n += 1;
            std::thread::sleep(Duration::from_millis(2));
        }
        n
    })
}

/// The test: a source without SYNC/PSYNC, live, under writes of every kind (sets,
/// deletes, expiries, a big hash growing while it is read in chunks, keys deleted during the
/// scan), then cutover: 0 differences, key for key, and the source's setting put back.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_source_without_sync_is_copied_live_by_scan_under_writes() {
    let source = no_sync_source("7.2");
    let target = RedisServer::start("7.2");
    populate(&source, 2);
    {
        let mut c = source.conn();
        let mut p = redis::pipe();
        for i in 0..400 {
            p.cmd("SET").arg(format!("doomed:{i}")).arg(i).ignore();
        }
        for i in 0..300 {
            p.cmd("HSET")
                .arg("grow:hash")
                .arg(format!("seed{i}"))
                .arg(i)
                .ignore();
        }
        p.query::<()>(&mut c).unwrap();
    }
    assert_eq!(notify_setting(&source), "");
    let stop = Arc::new(AtomicBool::new(false));
    let writer = spawn_writer(&source, stop.clone());
    let load = spawn_scan_load(&source, stop.clone());

    let mut spec = scan_spec(&source, &target, Mode::Live, true);
    spec.options.pause_source_writes_on_cutover = true;
    spec.options.pause_during_verification = true;
    let run = start(spec, chunky());
    run.wait_for("StreamingStarted", |e| {
        matches!(e, EventKind::StreamingStarted { .. })
    })
    .await;
    // Ferry turned the notifications on for the copy.
    assert_eq!(notify_setting(&source), "AE");
    tokio::time::sleep(Duration::from_millis(1500)).await;
    stop.store(true, Ordering::Relaxed);
    let written = writer.join().unwrap() + load.join().unwrap();
    assert!(
        written > 50,
        "the load wrote while the scan ran ({written} rounds)"
    );
    // The short-lived `exp:*` keys end on both sides first: a key that expires between the
    // verifier's look at the source and at the target would read as missing (the shared
    // verifier's race, not the copy's). The last writes' changes are copied meanwhile, and
    // the cutover drains what is left.
    tokio::time::sleep(Duration::from_millis(400)).await;
    run.controls.cutover.cancel();
    let (result, events) = run.finish().await;
    result.unwrap_or_else(|e| panic!("{e}; events: {:?}", names(&events)));

    let report = verification(&events);
    assert_eq!(
        report.mode,
        Verify::Full,
        "a scan cutover always verifies every key"
    );
    assert!(report.is_clean(), "{report:?}");
    // Our own comparison, key for key: the same keys, values and TTLs on both sides.
    tokio::time::sleep(Duration::from_millis(400)).await;
    let mut c = source.conn();
    let mut surviving = 0u64;
    for db in 0..2 {
        let _: () = redis::cmd("SELECT").arg(db).query(&mut c).unwrap();
        surviving += redis::cmd("DBSIZE").query::<u64>(&mut c).unwrap();
    }
    // (The short-lived `exp:*` keys the verification saw may have expired since.)
    assert!(
        report.checked >= surviving && surviving > 150,
        "every key was compared: {report:?}, {surviving} on the source"
    );
    assert_same(&source, &target, 2);
    assert_eq!(function_names(&source), function_names(&target));
    let names = names(&events);
    for expected in [
        "ScanStarted",
        "KeyspaceNotificationsSet",
        "SnapshotStarted",
        "SnapshotCompleted",
        "StreamingStarted",
        "ScanCheckpoint",
        "VerificationCompleted",
        "CutoverCompleted",
        "KeyspaceNotificationsRestored",
    ] {
        assert!(names.contains(&expected), "{expected} in {names:?}");
    }
    assert!(events.iter().any(|e| matches!(
        e,
        EventKind::KeyspaceNotificationsSet { previous, set } if previous.is_empty() && set == "EA"
    )));
    // Changed keys were copied again, and none was left waiting at the end.
    let (dirty, recopied) = events
        .iter()
        .rev()
        .find_map(|e| match e {
            EventKind::ScanCheckpoint {
                dirty_keys,
                keys_recopied,
                ..
            } => Some((*dirty_keys, *keys_recopied)),
            _ => None,
        })
        .unwrap();
    assert_eq!(dirty, 0);
    assert!(recopied > 100, "{recopied} keys copied again");
    assert_eq!(notify_setting(&source), "", "the setting is put back");
    // The pause was released, and the offset key is gone.
    source_writes_succeed_promptly(&source);
    let marks: Vec<String> = redis::cmd("KEYS")
        .arg("ferry:*")
        .query(&mut target.conn())
        .unwrap();
    assert!(marks.is_empty(), "{marks:?}");
}

/// Snapshot mode, big keys of every type read in chunks: exact copies.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn big_keys_of_every_type_are_read_in_chunks() {
    let source = no_sync_source("7.4");
    let target = RedisServer::start("7.4");
    source.cli(&["CONFIG", "SET", "notify-keyspace-events", "KEA"]);
    populate(&source, 2);
    hash_with_field_ttls(&source);
    // A big hash with field TTLs: read with HSCAN, its TTLs with HPEXPIRETIME.
    {
        let mut c = source.conn();
        let fields: Vec<String> = (0..400)
            .flat_map(|i| [format!("k{i}"), "w".repeat(30)])
            .collect();
        let _: () = redis::cmd("HSET")
            .arg("hash:big:fttl")
            .arg(&fields)
            .query(&mut c)
            .unwrap();
        let _: Vec<i64> = redis::cmd("HPEXPIRE")
            .arg("hash:big:fttl")
            .arg(900_000)
            .arg("FIELDS")
            .arg(3)
            .arg(&["k1", "k200", "k399"])
            .query(&mut c)
            .unwrap();
    }
    let run = start(scan_spec(&source, &target, Mode::Snapshot, false), chunky());
    let (result, events) = run.finish().await;
    result.unwrap_or_else(|e| panic!("{e}; events: {:?}", names(&events)));
    assert_same(&source, &target, 2);
    assert_eq!(function_names(&source), function_names(&target));
    let expiries = |s: &RedisServer| -> Vec<i64> {
        redis::cmd("HPEXPIRETIME")
            .arg("hash:big:fttl")
            .arg("FIELDS")
            .arg(4)
            .arg(&["k1", "k200", "k399", "k2"])
            .query(&mut s.conn())
            .unwrap()
    };
    assert_eq!(expiries(&source), expiries(&target));
    assert_eq!(expiries(&target)[3], -1);
    assert_eq!(field_expiries(&source), field_expiries(&target));
    // Per db: str:long, list:big, set:big, zset:big, hash:big; str:huge and hash:big:fttl in db 0.
    assert_eq!(rewritten(&events), 12, "the big keys went in chunks");
    assert!(verification(&events).is_clean());
    // Set by hand, left as it was.
    assert_eq!(notify_setting(&source), "AKE");
}

/// A 7.2 source's payloads (listpack types) that a 6.2 target cannot RESTORE are decoded and
/// written as commands.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn payloads_the_target_cannot_take_are_rewritten() {
    let source = no_sync_source("7.2");
    let target = RedisServer::start("6.2");
    source.cli(&["CONFIG", "SET", "notify-keyspace-events", "EA"]);
    let mut c = source.conn();
    let _: () = redis::pipe()
        .cmd("HSET")
        .arg("h")
        .arg(&["a", "1", "b", "2"])
        .ignore()
        .cmd("ZADD")
        .arg("z")
        .arg(&["1.5", "m", "2", "n"])
        .ignore()
        .cmd("RPUSH")
        .arg("l")
        .arg(&["x", "y"])
        .ignore()
        .cmd("SADD")
        .arg("s")
        .arg(&["p", "q"])
        .ignore()
        .cmd("XADD")
        .arg("x")
        .arg("1-1")
        .arg("f")
        .arg("v")
        .ignore()
        .cmd("SET")
        .arg("plain")
        .arg("v")
        .arg("PX")
        .arg(600_000)
        .ignore()
        .cmd("SADD")
        .arg("ints")
        .arg(&[1, 2, 3])
        .ignore()
        .query(&mut c)
        .unwrap();
    let run = start(scan_spec(&source, &target, Mode::Snapshot, false), quick());
    let (result, events) = run.finish().await;
    result.unwrap_or_else(|e| panic!("{e}; events: {:?}", names(&events)));
    assert_same(&source, &target, 1);
    // Hash, zset, list, listpack set and stream are types 6.2 does not know; the string and
    // the intset go as RESTORE.
    assert_eq!(rewritten(&events), 5);
}

/// Cancelled while following changes: the setting Ferry changed is put back.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_cancel_puts_the_notification_setting_back() {
    let source = no_sync_source("7.2");
    let target = RedisServer::start("7.2");
    source.cli(&["CONFIG", "SET", "notify-keyspace-events", "Kx"]);
    // The server prints its flags in its own order.
    let before = notify_setting(&source);
    assert_eq!(before, "xK");
    source.cli(&["SET", "a", "1"]);
    let run = start(scan_spec(&source, &target, Mode::Live, true), quick());
    run.wait_for("StreamingStarted", |e| {
        matches!(e, EventKind::StreamingStarted { .. })
    })
    .await;
    assert_eq!(notify_setting(&source), "AKE");
    let events = wait_until_cancelled(run).await;
    assert_eq!(notify_setting(&source), before);
    assert!(events.iter().any(|e| matches!(
        e,
        EventKind::KeyspaceNotificationsRestored { value } if *value == before
    )));
}

/// Without the option, the engine refuses to start and names the fix; nothing is written.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn without_notifications_the_engine_names_the_config_set() {
    let source = no_sync_source("7.2");
    let target = RedisServer::start("7.2");
    source.cli(&["SET", "a", "1"]);
    let run = start(scan_spec(&source, &target, Mode::Snapshot, false), quick());
    let (result, _) = run.finish().await;
    let message = result.unwrap_err().to_string();
    assert!(
        message.contains("CONFIG SET notify-keyspace-events EA"),
        "{message}"
    );
    assert_eq!(notify_setting(&source), "");
    let keys: Vec<String> = redis::cmd("KEYS")
        .arg("*")
        .query(&mut target.conn())
        .unwrap();
    assert!(keys.is_empty(), "{keys:?}");
}

/// A job that died after setting the notifications (its cleanup never ran) is restarted: it
/// copies every key again over its own earlier copies and puts the recorded setting back.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_restarted_job_redoes_the_scan_and_puts_the_setting_back() {
    let source = no_sync_source("7.2");
    let target = RedisServer::start("7.2");
    populate(&source, 1);
    let spec = scan_spec(&source, &target, Mode::Live, true);
    let first = start(spec.clone(), quick());
    first
        .wait_for("StreamingStarted", |e| {
            matches!(e, EventKind::StreamingStarted { .. })
        })
        .await;
    // A crash: the engine's future is dropped without its cleanup.
    first.task.abort();
    assert_eq!(notify_setting(&source), "AE");
    source.cli(&["DEL", "str:raw"]);
    source.cli(&["SET", "after", "crash"]);

    let (tx, mut rx) = tokio::sync::mpsc::channel(64);
    let controls = ferry::engine::Controls::default();
    let job = EngineJob {
        notifications_before: Some(String::new()),
        before: TargetBefore::Empty,
        ..EngineJob::new(first.migration_id, spec)
    };
    let mut tuning = quick();
    tuning.scan.batch = 7;
    let task = tokio::spawn(ferry::engine::run_with(job, tx, controls.clone(), tuning));
    let mut events = vec![];
    while let Some(e) = rx.recv().await {
        let streaming = matches!(e, EventKind::StreamingStarted { .. });
        events.push(e);
        if streaming {
            controls.cutover.cancel();
        }
    }
    task.await
        .unwrap()
        .unwrap_or_else(|e| panic!("{e}; {:?}", names(&events)));
    assert!(events
        .iter()
        .any(|e| matches!(e, EventKind::SnapshotStarted { redo: Some(_), .. })));
    assert!(
        !events
            .iter()
            .any(|e| matches!(e, EventKind::KeyspaceNotificationsSet { .. })),
        "the first run's record stands"
    );
    assert_same(&source, &target, 1);
    assert_eq!(notify_setting(&source), "");
}

fn redone_reasons(events: &[EventKind]) -> Vec<String> {
    events
        .iter()
        .filter_map(|e| match e {
            EventKind::ScanRedone { reason } => Some(reason.clone()),
            _ => None,
        })
        .collect()
}

/// Notifications are at-most-once: a killed subscriber connection, and more changed keys than
/// the dirty-key bound, each make the reader copy every key again (and sweep the copies of keys
/// deleted meanwhile), saying why.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_lost_subscriber_or_too_many_changes_mean_scanning_again() {
    let source = no_sync_source("7.2");
    let target = RedisServer::start("7.2");
    source.cli(&["CONFIG", "SET", "notify-keyspace-events", "EA"]);
    for i in 0..100 {
        source.cli(&["SET", &format!("k{i}"), "v"]);
    }
    let (tx, mut rx) = tokio::sync::mpsc::channel(256);
    let controls = ferry::engine::Controls::default();
    let job = EngineJob {
        before: TargetBefore::Empty,
        ..EngineJob::new(
            uuid::Uuid::now_v7(),
            scan_spec(&source, &target, Mode::Live, false),
        )
    };
    let mut tuning = quick();
    tuning.scan.max_dirty = 50;
    let task = tokio::spawn(ferry::engine::run_with(job, tx, controls.clone(), tuning));
    let mut events = vec![];
    let mut next = |events: &mut Vec<EventKind>| {
        let e = rx.try_recv().ok();
        events.extend(e.clone());
        e
    };
    let deadline = std::time::Instant::now() + Duration::from_secs(60);
    let wait = |events: &Vec<EventKind>, what: &str| {
        assert!(
            std::time::Instant::now() < deadline,
            "no {what}: {:?}",
            names(events)
        );
    };
    while !events
        .iter()
        .any(|e| matches!(e, EventKind::StreamingStarted { .. }))
    {
        if next(&mut events).is_none() {
            wait(&events, "StreamingStarted");
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    }
    // The subscriber is cut off; a delete and a write happen while nobody listens.
    let killed = source.cli(&["CLIENT", "KILL", "TYPE", "pubsub"]);
    assert_eq!(killed.trim(), "1", "Ferry's subscriber was killed");
    source.cli(&["DEL", "k7"]);
    source.cli(&["SET", "during", "outage"]);
    while redone_reasons(&events).is_empty() {
        if next(&mut events).is_none() {
            wait(&events, "ScanRedone");
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    }
    assert!(
        redone_reasons(&events)[0].contains("connection"),
        "{:?}",
        redone_reasons(&events)
    );
    // More changed keys at once than the bound of 50.
    let mut mset = vec!["MSET".to_string()];
    for i in 0..1000 {
        mset.extend([format!("burst:{i}"), i.to_string()]);
    }
    let args: Vec<&str> = mset.iter().map(String::as_str).collect();
    source.cli(&args);
    while !redone_reasons(&events).iter().any(|r| r.contains("bound")) {
        if next(&mut events).is_none() {
            wait(&events, "ScanRedone for the bound");
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    }
    controls.cutover.cancel();
    while let Some(e) = rx.recv().await {
        events.push(e);
    }
    task.await
        .unwrap()
        .unwrap_or_else(|e| panic!("{e}; {:?}", names(&events)));
    assert_same(&source, &target, 1);
    assert_eq!(get(&target, 0, "k7"), None);
    assert_eq!(get(&target, 0, "during").as_deref(), Some("outage"));
    assert!(verification(&events).is_clean());
}

/// The oldest supported source (6.2: no functions, no field TTLs) and Valkey, each into a
/// server of its own kind, with big keys in chunks: exact copies.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn redis_6_2_and_valkey_sources_are_copied_by_scan() {
    for version in ["6.2", "valkey-9.1"] {
        let source = no_sync_source(version);
        let target = RedisServer::start(version);
        source.cli(&["CONFIG", "SET", "notify-keyspace-events", "EA"]);
        let mut c = source.conn();
        let many: Vec<String> = (0..500).map(|i| format!("member-{i}")).collect();
        let pairs: Vec<String> = (0..500)
            .flat_map(|i| [format!("{i}.5"), format!("m{i}")])
            .collect();
        let _: () = redis::pipe()
            .cmd("SET")
            .arg("small")
            .arg("v")
            .arg("PX")
            .arg(600_000)
            .ignore()
            .cmd("SET")
            .arg("big:string")
            .arg("s".repeat(9000))
            .ignore()
            .cmd("RPUSH")
            .arg("big:list")
            .arg(&many)
            .ignore()
            .cmd("SADD")
            .arg("big:set")
            .arg(&many)
            .ignore()
            .cmd("ZADD")
            .arg("big:zset")
            .arg(&pairs)
            .ignore()
            .cmd("HSET")
            .arg("big:hash")
            .arg(&pairs)
            .ignore()
            .cmd("PEXPIRE")
            .arg("big:hash")
            .arg(600_000)
            .ignore()
            .cmd("HSET")
            .arg("small:hash")
            .arg(&["a", "1"])
            .ignore()
            .cmd("XADD")
            .arg("stream")
            .arg("1-1")
            .arg("f")
            .arg("v")
            .ignore()
            .query(&mut c)
            .unwrap();
        let (result, events) = start(scan_spec(&source, &target, Mode::Snapshot, false), chunky())
            .finish()
            .await;
        result.unwrap_or_else(|e| panic!("{version}: {e}; events: {:?}", names(&events)));
        assert_same(&source, &target, 1);
        assert_eq!(
            rewritten(&events),
            5,
            "{version}: the five big keys in chunks"
        );
        assert!(verification(&events).is_clean(), "{version}");
    }
}

/// `auto_cutover`: once no changed key waits, the reader cuts over by itself (and says so).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn auto_cutover_happens_once_no_changed_key_waits() {
    let source = no_sync_source("7.2");
    let target = RedisServer::start("7.2");
    source.cli(&["CONFIG", "SET", "notify-keyspace-events", "EA"]);
    populate(&source, 1);
    let mut spec = scan_spec(&source, &target, Mode::Live, false);
    spec.options.auto_cutover = true;
    spec.options.pause_source_writes_on_cutover = true;
    let (result, events) = start(spec, quick()).finish().await;
    result.unwrap_or_else(|e| panic!("{e}; events: {:?}", names(&events)));
    let names = names(&events);
    let at = |kind: &str| names.iter().position(|n| *n == kind).unwrap_or(usize::MAX);
    assert!(at("StreamingStarted") < at("CutoverStarted"), "{names:?}");
    assert!(at("CutoverStarted") < at("CutoverCompleted"), "{names:?}");
    assert!(events.iter().any(|e| matches!(
        e,
        EventKind::CutoverStarted {
            pause_source_writes: true
        }
    )));
    assert_same(&source, &target, 1);
    source_writes_succeed_promptly(&source);
}
