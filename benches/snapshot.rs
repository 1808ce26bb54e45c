//! End-to-end snapshot throughput on this machine: Ferry's engine against Redis' own full sync
//! (`REPLICAOF` into an empty server), on the same source, in the same run.
//!
//! Dataset (kept small enough for CI-class machines): 200,000 strings of 64 bytes plus 20,000 each
//! of hashes (10 fields), lists (10), sets (10) and zsets (10); 280,000 keys. Set
//! `FERRY_BENCH_KEYS` to scale the string count.
//!
//! This needs the test servers (`scripts/install-redis.sh`); it reuses the test harness.
//!
//! Measured on the 2-core build machine (release, Redis 7.2 → 7.2, 280,000 keys, 2026-11-25;
//! medians; the machine is shared, so only ratios within one run mean anything):
//!
//! | | run 1 | run 2 | run 3 (fast CRC64 merged) |
//! |---|---|---|---|
//! | Ferry snapshot (diskless source) | 399 ms | 264 ms | 331 ms |
//! | native REPLICAOF, diskless | 356 ms | 261 ms | 380 ms |
//! | native REPLICAOF, disk-based | 413 ms | 302 ms | 443 ms |
//! | Ferry snapshot + `verify: full` | | 1.43 s | 1.66 s |
//!
//! Ferry/native disk-based: 0.97×, 0.88×, 0.75×; Ferry/native diskless: 1.12×, 1.01×, 0.87×.
//! Peak RSS of the whole bench process (engine, runtime, criterion) stayed at 10–14 MB.
//!
//! `live_apply` (200,000 pipelined SETs on the source while streaming; time from the first write
//! until the replica side has applied the last one; `FERRY_BENCH_TRACE=1` prints each run):
//! Ferry median 549 ms, native replica 669 ms (samples: the load itself takes 250–800 ms here;
//! Ferry finishes 5–290 ms after the load, a native replica 3 ms after it, except that the native
//! replica stalled for ~1 s in 6 of 17 runs). Profiling the first version of this bench showed
//! Ferry waiting a whole second before the first command: a diskless master starts the stream
//! on the first ACK after it has reaped its RDB child, so the link now ACKs every 50 ms until
//! the stream flows.

#[path = "../tests/common/redis.rs"]
mod redis_harness;

use std::time::{Duration, Instant};

use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use ferry::engine::{self, Controls, EngineJob, Tuning};
use ferry::redis_url::RedisUrl;
use ferry::spec::{Endpoint, MigrationSpec, Mode, OnConflict, Options, Verify};
use redis_harness::RedisServer;

const FILL: &str = r#"
for i = 1, tonumber(ARGV[1]) do
  redis.call('HSET', 'h:'..i, 'f1','v1','f2','v2','f3','v3','f4','v4','f5','v5','f6','v6','f7','v7','f8','v8','f9','v9','f10','v10')
  redis.call('RPUSH', 'l:'..i, 1,2,3,4,5,6,7,8,9,10)
  redis.call('SADD', 's:'..i, 'a','b','c','d','e','f','g','h','i','j')
  redis.call('ZADD', 'z:'..i, 1,'a',2,'b',3,'c',4,'d',5,'e',6,'f',7,'g',8,'h',9,'i',10,'j')
end
return 1
"#;

fn wait_synced(replica: &RedisServer) {
    let deadline = Instant::now() + Duration::from_secs(300);
    loop {
        let info = replica.cli(&["INFO", "replication"]);
        let loading = replica.cli(&["INFO", "persistence"]);
        if info.contains("master_link_status:up") && loading.contains("loading:0") {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "native replica never synced: {info}"
        );
        std::thread::sleep(Duration::from_millis(5));
    }
}

fn snapshot(c: &mut Criterion) {
    let strings: u64 = std::env::var("FERRY_BENCH_KEYS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(200_000);
    let source = RedisServer::start_with("7.2", &["--repl-diskless-sync-delay", "0"]);
    let target = RedisServer::start("7.2");
    source.cli(&["DEBUG", "POPULATE", &strings.to_string(), "k", "64"]);
    source.cli(&["EVAL", FILL, "0", &(strings / 10).to_string()]);
    let keys = strings + 4 * (strings / 10);
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    let spec = MigrationSpec {
        name: None,
        source: Endpoint::new(RedisUrl::parse(&source.url()).unwrap()).into(),
        target: Endpoint::new(RedisUrl::parse(&target.url()).unwrap()),
        mode: Mode::Snapshot,
        options: Options {
            on_conflict: OnConflict::Replace,
            backup: false,
            verify: Verify::None,
            transfer: ferry::spec::Transfer::Restore,
            ..Options::default()
        },
        schedule: Default::default(),
    };

    let mut group = c.benchmark_group("snapshot");
    group.sample_size(10);
    group.throughput(Throughput::Elements(keys));
    group.bench_function("ferry_diskless", |b| {
        b.iter(|| {
            target.cli(&["FLUSHALL"]);
            let (tx, mut rx) = tokio::sync::mpsc::channel(1024);
            let job = EngineJob::new(uuid::Uuid::now_v7(), spec.clone());
            rt.block_on(async {
                let drain = tokio::spawn(async move { while rx.recv().await.is_some() {} });
                engine::run_with(job, tx, Controls::default(), Tuning::default())
                    .await
                    .unwrap();
                drain.await.unwrap();
            });
        })
    });
    // Snapshot + full verification (every key compared), to show what `verify: full` costs.
    let mut verified = spec.clone();
    verified.options.verify = Verify::Full;
    group.bench_function("ferry_diskless_verify_full", |b| {
        b.iter(|| {
            target.cli(&["FLUSHALL"]);
            let (tx, mut rx) = tokio::sync::mpsc::channel(1024);
            let job = EngineJob::new(uuid::Uuid::now_v7(), verified.clone());
            rt.block_on(async {
                let drain = tokio::spawn(async move { while rx.recv().await.is_some() {} });
                engine::run_with(job, tx, Controls::default(), Tuning::default())
                    .await
                    .unwrap();
                drain.await.unwrap();
            });
        })
    });
    for (name, diskless) in [
        ("native_replicaof_diskless", "yes"),
        ("native_replicaof_disk", "no"),
    ] {
        source.cli(&["CONFIG", "SET", "repl-diskless-sync", diskless]);
        group.bench_function(name, |b| {
            b.iter(|| {
                target.cli(&["FLUSHALL"]);
                target.cli(&["REPLICAOF", "127.0.0.1", &source.port.to_string()]);
                wait_synced(&target);
                target.cli(&["REPLICAOF", "NO", "ONE"]);
            })
        });
    }
    group.finish();
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    if let Some(hwm) = status.lines().find(|l| l.starts_with("VmHWM")) {
        println!("bench process peak RSS (engine + criterion): {hwm}");
    }
}

/// Writes `n` SETs to the source in pipelined batches (the load the replica side must keep up
/// with), and returns the source's offset afterwards.
fn load(source: &RedisServer, n: u64) -> i64 {
    let mut conn = source.conn();
    let value = "v".repeat(64);
    let mut i = 0;
    while i < n {
        let mut pipe = redis::pipe();
        for j in i..(i + 1000).min(n) {
            pipe.cmd("SET")
                .arg(format!("live:{}", j % 50_000))
                .arg(&value)
                .ignore();
        }
        pipe.query::<()>(&mut conn).unwrap();
        i += 1000;
    }
    master_offset(source)
}

fn master_offset(source: &RedisServer) -> i64 {
    let info = source.cli(&["INFO", "replication"]);
    info.lines()
        .find_map(|l| l.strip_prefix("master_repl_offset:"))
        .and_then(|v| v.trim().parse().ok())
        .unwrap_or(0)
}

/// Live apply: time from the start of a burst of 200,000 SETs on the source until the replica
/// side has applied all of it, for Ferry's streaming and for a native replica.
fn live(c: &mut Criterion) {
    const WRITES: u64 = 200_000;
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    let mut group = c.benchmark_group("live_apply");
    group.sample_size(10);
    group.throughput(Throughput::Elements(WRITES));
    group.bench_function("ferry", |b| {
        b.iter_custom(|iters| {
            let mut total = Duration::ZERO;
            for _ in 0..iters {
                let source = RedisServer::start_with("7.2", &["--repl-diskless-sync-delay", "0"]);
                let target = RedisServer::start("7.2");
                let spec = MigrationSpec {
                    name: None,
                    source: Endpoint::new(RedisUrl::parse(&source.url()).unwrap()).into(),
                    target: Endpoint::new(RedisUrl::parse(&target.url()).unwrap()),
                    mode: Mode::Live,
                    options: Options {
                        verify: Verify::None,
                        backup: false,
                        transfer: ferry::spec::Transfer::Restore,
                        ..Options::default()
                    },
                    schedule: Default::default(),
                };
                let tuning = Tuning {
                    report_interval: Duration::from_millis(5),
                    ..Tuning::default()
                };
                total += rt.block_on(async {
                    let (tx, mut rx) = tokio::sync::mpsc::channel(4096);
                    let controls = Controls::default();
                    let job = EngineJob::new(uuid::Uuid::now_v7(), spec);
                    let task = tokio::spawn(engine::run_with(job, tx, controls.clone(), tuning));
                    while let Some(e) = rx.recv().await {
                        if matches!(e, ferry::model::EventKind::StreamingStarted { .. }) {
                            break;
                        }
                    }
                    let started = Instant::now();
                    let src = &source;
                    let goal = tokio::task::block_in_place(|| load(src, WRITES));
                    let loaded = started.elapsed();
                    while let Some(e) = rx.recv().await {
                        if let ferry::model::EventKind::Checkpoint {
                            applied_offset,
                            lag_bytes,
                            ..
                        } = e
                        {
                            if std::env::var_os("FERRY_BENCH_TRACE").is_some() {
                                eprintln!(
                                    "  {:?} applied {applied_offset} goal {goal} lag {lag_bytes:?}",
                                    started.elapsed()
                                );
                            }
                            if applied_offset >= goal {
                                break;
                            }
                        }
                    }
                    let elapsed = started.elapsed();
                    if std::env::var_os("FERRY_BENCH_TRACE").is_some() {
                        eprintln!("ferry: load {loaded:?}, applied all {elapsed:?}");
                    }
                    controls.cancel.cancel();
                    while rx.recv().await.is_some() {}
                    let _ = task.await;
                    elapsed
                });
            }
            total
        })
    });
    group.bench_function("native_replica", |b| {
        b.iter_custom(|iters| {
            let mut total = Duration::ZERO;
            for _ in 0..iters {
                let source = RedisServer::start_with("7.2", &["--repl-diskless-sync-delay", "0"]);
                let replica = RedisServer::start("7.2");
                replica.cli(&["REPLICAOF", "127.0.0.1", &source.port.to_string()]);
                wait_synced(&replica);
                let started = Instant::now();
                let goal = load(&source, WRITES);
                let loaded = started.elapsed();
                loop {
                    let info = replica.cli(&["INFO", "replication"]);
                    let applied: i64 = info
                        .lines()
                        .find_map(|l| l.strip_prefix("slave_repl_offset:"))
                        .and_then(|v| v.trim().parse().ok())
                        .unwrap_or(0);
                    if applied >= goal {
                        break;
                    }
                    std::thread::sleep(Duration::from_millis(1));
                }
                if std::env::var_os("FERRY_BENCH_TRACE").is_some() {
                    eprintln!(
                        "native: load {loaded:?}, applied all {:?}",
                        started.elapsed()
                    );
                }
                total += started.elapsed();
            }
            total
        })
    });
    group.finish();
}

criterion_group!(benches, snapshot, live);
criterion_main!(benches);
