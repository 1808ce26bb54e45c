//! Rate limits (`options.limits`) and the HA guard, against real servers: the rate measured on
//! the target stays within 10% of the limit, an unlimited copy of the same data is many times
//! faster (so the limited one cannot pass by accident), a live change applies at once, and a
//! replica of the source that really lags makes Ferry slow down and then recover.

use std::time::{Duration, Instant};

use ferry::engine::ha_guard::GuardSettings;
use ferry::engine::Tuning;
use ferry::model::EventKind;
use ferry::spec::{Limits, Mode, OnConflict, Verify};

use crate::common::redis::RedisServer;
use crate::helpers::*;

/// A source holding `keys` keys of `value_bytes` each (`DEBUG POPULATE`).
fn populated(keys: u64, value_bytes: u64) -> RedisServer {
    let source = RedisServer::start_with(
        "7.2",
        &[
            "--repl-diskless-sync-delay",
            "0",
            "--enable-debug-command",
            "yes",
        ],
    );
    let _: () = redis::cmd("DEBUG")
        .arg("POPULATE")
        .arg(keys)
        .arg("key")
        .arg(value_bytes)
        .query(&mut source.conn())
        .unwrap();
    source
}

/// A stat of the target's `INFO stats`.
fn stat(server: &RedisServer, name: &str) -> u64 {
    let info: String = redis::cmd("INFO")
        .arg("stats")
        .query(&mut server.conn())
        .unwrap();
    info.lines()
        .find_map(|l| l.strip_prefix(&format!("{name}:")))
        .and_then(|v| v.trim().parse().ok())
        .unwrap_or_else(|| panic!("no {name} in INFO stats"))
}

/// Copies `source` into a new target with `limits`; returns the snapshot's keys, its duration
/// and the bytes the target received meanwhile (its own `total_net_input_bytes`).
async fn copy(source: &RedisServer, limits: Limits) -> (u64, Duration, u64) {
    let target = RedisServer::start("7.2");
    let before = stat(&target, "total_net_input_bytes");
    let mut opts = options(OnConflict::Fail, Verify::None);
    opts.limits = limits;
    let run = start(spec(source, &target, Mode::Snapshot, opts), quick());
    let (result, events) = run.finish().await;
    result.unwrap();
    let received = stat(&target, "total_net_input_bytes") - before;
    let (written, skipped) = completed_counts(&events);
    assert_eq!(skipped, 0);
    let ms = events
        .iter()
        .find_map(|e| match e {
            EventKind::SnapshotCompleted { duration_ms, .. } => Some(*duration_ms),
            _ => None,
        })
        .unwrap();
    assert_same(source, &target, 1);
    (written, Duration::from_millis(ms), received)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn max_ops_per_sec_holds_the_snapshot_within_ten_percent() {
    let source = populated(10_000, 16);
    let (keys, limited, _) = copy(
        &source,
        Limits {
            max_ops_per_sec: Some(2000),
            max_bytes_per_sec: None,
        },
    )
    .await;
    assert_eq!(keys, 10_000);
    let rate = keys as f64 / limited.as_secs_f64();
    eprintln!("max_ops_per_sec 2000: {keys} keys in {limited:?} = {rate:.0}/s");
    assert!(
        (1800.0..=2200.0).contains(&rate),
        "{keys} keys in {limited:?}: {rate:.0}/s against a limit of 2000/s"
    );
    let (_, unlimited, _) = copy(&source, Limits::default()).await;
    eprintln!("unlimited: {unlimited:?}");
    assert!(
        unlimited * 4 < limited,
        "unlimited {unlimited:?} is not much faster than limited {limited:?}: the limit did not bind"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn max_bytes_per_sec_holds_the_snapshot_within_ten_percent() {
    // 5000 values of 1000 incompressible bytes (the RDB would compress `DEBUG POPULATE`'s
    // padding away): about 5.2 MB of RESTOREs, 5.2 s at 1 MB/s.
    let source = populated(0, 0);
    let mut seed = 0x9e37_79b9_7f4a_7c15u64;
    let mut pipe = redis::pipe();
    for i in 0..5000 {
        let value: Vec<u8> = (0..1000)
            .map(|_| {
                seed ^= seed << 13;
                seed ^= seed >> 7;
                seed ^= seed << 17;
                seed as u8
            })
            .collect();
        pipe.cmd("SET").arg(format!("key:{i}")).arg(value).ignore();
    }
    pipe.query::<()>(&mut source.conn()).unwrap();
    let (keys, limited, received) = copy(
        &source,
        Limits {
            max_ops_per_sec: None,
            max_bytes_per_sec: Some(1_000_000),
        },
    )
    .await;
    assert_eq!(keys, 5000);
    assert!(received > 5_000_000, "the target received {received} bytes");
    let rate = received as f64 / limited.as_secs_f64();
    eprintln!("max_bytes_per_sec 1000000: {received} B in {limited:?} = {rate:.0} B/s");
    assert!(
        (900_000.0..=1_100_000.0).contains(&rate),
        "{received} bytes in {limited:?}: {rate:.0} B/s against a limit of 1,000,000 B/s"
    );
    let (_, unlimited, _) = copy(&source, Limits::default()).await;
    assert!(
        unlimited * 4 < limited,
        "unlimited {unlimited:?} is not much faster than limited {limited:?}"
    );
}

/// Commands streamed per second between two checkpoints at least `span` apart, from `from` on.
async fn streamed_rate(run: &Running, span: Duration) -> f64 {
    let count = |run: &Running| {
        run.events()
            .iter()
            .rev()
            .find_map(|e| match e {
                EventKind::Checkpoint {
                    commands_streamed, ..
                } => Some(*commands_streamed),
                _ => None,
            })
            .unwrap_or(0)
    };
    // Wait for a fresh checkpoint so the counts are the engine's, not stale.
    let first = count(run);
    let deadline = Instant::now() + Duration::from_secs(10);
    while count(run) == first {
        assert!(Instant::now() < deadline, "no checkpoint");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    let (start, at) = (count(run), Instant::now());
    tokio::time::sleep(span).await;
    let now = count(run);
    while count(run) == now {
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    (count(run) - start) as f64 / at.elapsed().as_secs_f64()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_live_change_of_the_limit_applies_to_the_running_stream() {
    let source = RedisServer::start_with("7.2", &["--repl-diskless-sync-delay", "0"]);
    let target = RedisServer::start("7.2");
    let mut opts = options(OnConflict::Fail, Verify::Full);
    opts.limits.max_ops_per_sec = Some(300);
    let run = start(spec(&source, &target, Mode::Live, opts), quick());
    run.wait_for("StreamingStarted", |e| {
        matches!(e, EventKind::StreamingStarted { .. })
    })
    .await;
    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let writer = spawn_writer(&source, stop.clone());
    let slow = streamed_rate(&run, Duration::from_secs(2)).await;
    run.controls.limits.send_replace(Some(Limits {
        max_ops_per_sec: Some(1500),
        max_bytes_per_sec: None,
    }));
    tokio::time::sleep(Duration::from_millis(300)).await;
    let fast = streamed_rate(&run, Duration::from_secs(2)).await;
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    let written = writer.join().unwrap();
    eprintln!("live: {slow:.0}/s at 300/s, then {fast:.0}/s at 1500/s");
    assert!(
        (270.0..=330.0).contains(&slow),
        "{slow:.0}/s streamed at a limit of 300/s"
    );
    assert!(
        (1350.0..=1650.0).contains(&fast),
        "{fast:.0}/s streamed at a limit of 1500/s (the writer made {written} rounds)"
    );
    // Lifted altogether, the stream catches up, and the target holds the source's data.
    run.controls.limits.send_replace(Some(Limits::default()));
    run.wait_for("a checkpoint with zero lag", |e| {
        matches!(e, EventKind::Checkpoint { lag_bytes: Some(0), commands_streamed, .. } if *commands_streamed > 0)
    })
    .await;
    run.controls.cutover.cancel();
    let (result, _) = run.finish().await;
    result.unwrap();
    assert_same(&source, &target, 16);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_lagging_replica_of_the_source_throttles_ferry_until_it_recovers() {
    let source = RedisServer::start_with("7.2", &["--repl-diskless-sync-delay", "0"]);
    let port = source.port.to_string();
    let replica = RedisServer::start_with(
        "7.2",
        &[
            "--replicaof",
            "127.0.0.1",
            &port,
            "--enable-debug-command",
            "yes",
        ],
    );
    // The replica is in sync before the migration starts.
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let info: String = redis::cmd("INFO")
            .arg("replication")
            .query(&mut source.conn())
            .unwrap();
        if info.contains(&format!("port={},state=online", replica.port)) {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "the replica did not sync: {info}"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    let target = RedisServer::start("7.2");
    let tuning = Tuning {
        ha_guard: GuardSettings {
            interval: Duration::from_millis(300),
            replica_lag_secs: 2,
            min_ops_per_sec: 100,
        },
        ..quick()
    };
    let run = start(
        spec(
            &source,
            &target,
            Mode::Live,
            options(OnConflict::Fail, Verify::Full),
        ),
        tuning,
    );
    run.wait_for("StreamingStarted", |e| {
        matches!(e, EventKind::StreamingStarted { .. })
    })
    .await;
    assert!(
        !run.names().contains(&"Throttled"),
        "{:?}: no replica lags yet",
        run.names()
    );
    // The replica stops answering (and acknowledging) for 5 s: its lag on the source grows.
    let replica_url = replica.url();
    let sleeper = std::thread::spawn(move || {
        let mut c = redis::Client::open(replica_url)
            .unwrap()
            .get_connection()
            .unwrap();
        let _: () = redis::cmd("DEBUG")
            .arg("SLEEP")
            .arg(5)
            .query(&mut c)
            .unwrap();
    });
    run.wait_for("Throttled", |e| matches!(e, EventKind::Throttled { .. }))
        .await;
    sleeper.join().unwrap();
    run.wait_for("ThrottleLifted", |e| {
        matches!(e, EventKind::ThrottleLifted { .. })
    })
    .await;
    let throttled = run
        .events()
        .into_iter()
        .find_map(|e| match e {
            EventKind::Throttled {
                reason,
                ops_per_sec,
            } => Some((reason, ops_per_sec)),
            _ => None,
        })
        .unwrap();
    assert!(
        throttled
            .0
            .contains(&format!("replica 127.0.0.1:{}", replica.port)),
        "{throttled:?}"
    );
    assert_eq!(throttled.1, 100, "an idle stream is held at the floor");
    // The migration itself went on: writes made now still arrive.
    let _: () = redis::cmd("SET")
        .arg("after")
        .arg("1")
        .query(&mut source.conn())
        .unwrap();
    run.wait_for("a checkpoint with zero lag", |e| {
        matches!(e, EventKind::Checkpoint { lag_bytes: Some(0), commands_streamed, .. } if *commands_streamed > 0)
    })
    .await;
    run.controls.cutover.cancel();
    let (result, events) = run.finish().await;
    result.unwrap();
    assert!(
        !names(&events).contains(&"HaGuardBlind"),
        "{:?}",
        names(&events)
    );
    assert_same(&source, &target, 16);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_guard_the_source_refuses_says_once_that_it_is_blind() {
    let source = RedisServer::start_with("7.2", &["--repl-diskless-sync-delay", "0"]);
    let _: () = redis::cmd("ACL")
        .arg(&[
            "SETUSER", "mover", "on", ">pw", "~*", "&*", "+@all", "-config", "-client",
        ])
        .query(&mut source.conn())
        .unwrap();
    let _: () = redis::cmd("SET")
        .arg("k")
        .arg("v")
        .query(&mut source.conn())
        .unwrap();
    let target = RedisServer::start("7.2");
    let url = format!("redis://mover:pw@127.0.0.1:{}", source.port);
    let tuning = Tuning {
        ha_guard: GuardSettings {
            interval: Duration::from_millis(100),
            ..GuardSettings::default()
        },
        ..quick()
    };
    let run = start(
        spec(
            url.as_str(),
            &target,
            Mode::Live,
            options(OnConflict::Fail, Verify::Full),
        ),
        tuning,
    );
    run.wait_for("HaGuardBlind", |e| {
        matches!(e, EventKind::HaGuardBlind { .. })
    })
    .await;
    // Several more looks: still said once.
    tokio::time::sleep(Duration::from_millis(800)).await;
    run.controls.cutover.cancel();
    let (result, events) = run.finish().await;
    result.unwrap();
    let blind: Vec<&String> = events
        .iter()
        .filter_map(|e| match e {
            EventKind::HaGuardBlind { reason } => Some(reason),
            _ => None,
        })
        .collect();
    assert_eq!(blind.len(), 1, "{blind:?}");
    assert!(blind[0].contains("CONFIG GET"), "{}", blind[0]);
    assert!(!blind[0].contains("pw"), "no password in {}", blind[0]);
    assert_same(&source, &target, 16);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ferrys_buffer_near_its_limit_makes_the_guard_warn_with_the_fix() {
    // A small replica output buffer, and a writer far faster than Ferry's limit: what Ferry
    // does not read piles up on the source.
    let source = RedisServer::start_with(
        "7.2",
        &[
            "--repl-diskless-sync-delay",
            "0",
            "--client-output-buffer-limit",
            "replica 4mb 0 0",
            "--repl-backlog-size",
            "64mb",
        ],
    );
    let target = RedisServer::start("7.2");
    let tuning = Tuning {
        ha_guard: GuardSettings {
            interval: Duration::from_millis(50),
            ..GuardSettings::default()
        },
        ..quick()
    };
    let mut opts = options(OnConflict::Fail, Verify::None);
    opts.limits.max_ops_per_sec = Some(20);
    let run = start(spec(&source, &target, Mode::Live, opts), tuning);
    run.wait_for("StreamingStarted", |e| {
        matches!(e, EventKind::StreamingStarted { .. })
    })
    .await;
    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let writing = stop.clone();
    let url = source.url();
    let writer = std::thread::spawn(move || {
        let mut c = redis::Client::open(url).unwrap().get_connection().unwrap();
        let value = vec![b'x'; 20_000];
        let mut n = 0u64;
        while !writing.load(std::sync::atomic::Ordering::Relaxed) && n < 20_000 {
            let _: () = redis::cmd("SET")
                .arg(format!("big:{}", n % 100))
                .arg(&value)
                .query(&mut c)
                .unwrap();
            n += 1;
            std::thread::sleep(Duration::from_millis(2));
        }
    });
    run.wait_for("SourceBufferNearLimit", |e| {
        matches!(e, EventKind::SourceBufferNearLimit { .. })
    })
    .await;
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    writer.join().unwrap();
    let warning = run
        .events()
        .into_iter()
        .find_map(|e| match e {
            EventKind::SourceBufferNearLimit {
                used_bytes,
                limit_bytes,
                advice,
            } => Some((used_bytes, limit_bytes, advice)),
            _ => None,
        })
        .unwrap();
    eprintln!("buffer warning: {warning:?}");
    assert_eq!(warning.1, 4 * 1024 * 1024);
    assert!(warning.0 * 10 >= warning.1 * 7, "{warning:?}");
    assert!(warning.2.contains("max_ops_per_sec is 20"), "{warning:?}");
    run.controls.cancel.cancel();
    let (result, _) = run.finish().await;
    assert!(
        matches!(result, Err(ferry::engine::EngineError::Cancelled)),
        "{result:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_scan_reader_obeys_the_limit_too() {
    let source = populated(6000, 16);
    source.cli(&["CONFIG", "SET", "notify-keyspace-events", "KEA"]);
    let target = RedisServer::start("7.2");
    let mut opts = options(OnConflict::Fail, Verify::None);
    opts.limits.max_ops_per_sec = Some(2000);
    let mut spec = spec(&source, &target, Mode::Snapshot, opts);
    let endpoint = spec.source.endpoint().unwrap().clone();
    spec.source = ferry::spec::Source::Server(
        endpoint,
        ferry::spec::SourceRead::Scan,
        ferry::spec::Prefer::Master,
    );
    let run = start(spec, quick());
    let (result, events) = run.finish().await;
    result.unwrap_or_else(|e| panic!("{e}; events: {:?}", names(&events)));
    let (keys, ms) = events
        .iter()
        .find_map(|e| match e {
            EventKind::SnapshotCompleted {
                keys_written,
                duration_ms,
                ..
            } => Some((*keys_written, *duration_ms)),
            _ => None,
        })
        .unwrap();
    assert_eq!(keys, 6000);
    let rate = keys as f64 * 1000.0 / ms as f64;
    eprintln!("scan reader at 2000/s: {keys} keys in {ms} ms = {rate:.0}/s");
    assert!((1800.0..=2200.0).contains(&rate), "{rate:.0}/s");
    assert_same(&source, &target, 1);
}
