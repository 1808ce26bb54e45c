//! Event store benchmarks: durable append throughput (with and without concurrency, i.e. with and
//! without group commit sharing flushes) and the start-up fold of a million events.
//!
//! Run with `cargo bench --bench store`. The fold's log is built once per run in a temp dir.

use std::time::{Duration, Instant};

use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use ferry::jobs::fold_all;
use ferry::model::EventKind;
use ferry::redis_url::RedisUrl;
use ferry::spec::{Endpoint, MigrationSpec, Mode, Options};
use ferry::store::{NewEvent, Store};
use uuid::Uuid;

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("tokio runtime")
}

fn checkpoint(i: u64) -> EventKind {
    EventKind::Checkpoint {
        replid: "8371b4fb1155b71f4a04d3e1bc3e18c4a990aeeb".into(),
        applied_offset: i as i64 * 1024,
        commands_streamed: i * 10,
        lag_bytes: Some(i % 4096),
        bytes_streamed: None,
    }
}

fn progress(i: u64) -> EventKind {
    EventKind::SnapshotProgress {
        rdb_bytes_read: i * 65536,
        rdb_bytes_total: Some(1 << 34),
        keys_written: i * 100,
        keys_skipped: 0,
        keys_expired: i,
    }
}

fn spec() -> MigrationSpec {
    MigrationSpec {
        name: Some("bench".into()),
        source: Endpoint::new(RedisUrl::parse("redis://default:pw@10.0.0.1:6379").expect("url"))
            .into(),
        target: Endpoint::new(RedisUrl::parse("redis://10.0.0.2:6379").expect("url")),
        mode: Mode::Live,
        options: Options::default(),
    }
}

/// `concurrency` tasks each appending single events, one durable append at a time.
fn append_throughput(c: &mut Criterion) {
    let rt = runtime();
    let mut group = c.benchmark_group("store_append_durable");
    group.sample_size(10);
    group.measurement_time(Duration::from_secs(10));
    for concurrency in [1usize, 64, 256] {
        let dir = tempfile::tempdir().expect("temp dir");
        let store = Store::open(dir.path()).expect("open store");
        let per_task = if concurrency == 1 {
            200
        } else {
            8_000 / concurrency
        };
        group.throughput(Throughput::Elements((per_task * concurrency) as u64));
        group.bench_function(format!("{concurrency}_concurrent_appenders"), |b| {
            b.iter_custom(|iters| {
                let mut total = Duration::ZERO;
                for _ in 0..iters {
                    let started = Instant::now();
                    rt.block_on(async {
                        let tasks: Vec<_> = (0..concurrency)
                            .map(|t| {
                                let store = store.clone();
                                tokio::spawn(async move {
                                    let id = Uuid::now_v7();
                                    for i in 0..per_task {
                                        let kind = checkpoint((t * per_task + i) as u64);
                                        store
                                            .append_one(NewEvent::migration(id, "engine", kind))
                                            .await
                                            .expect("append");
                                    }
                                })
                            })
                            .collect();
                        for t in tasks {
                            t.await.expect("task");
                        }
                    });
                    total += started.elapsed();
                }
                total
            })
        });
    }
    group.finish();
}

/// Opens a log of one million events (1,000 migrations × 1,000 events) and folds it.
///
/// Under `cargo test --all-targets` (criterion's test mode: no `--bench` argument) the log has
/// 10,000 events, so the suite checks that the bench works without spending minutes building it.
fn fold_million(c: &mut Criterion) {
    let full = std::env::args().any(|a| a == "--bench");
    let migrations: u64 = if full { 1_000 } else { 10 };
    const PER_MIGRATION: u64 = 1_000;
    let rt = runtime();
    let dir = tempfile::tempdir().expect("temp dir");
    rt.block_on(async {
        let store = Store::open(dir.path()).expect("open store");
        for m in 0..migrations {
            let id = Uuid::now_v7();
            let mut batch = vec![
                NewEvent::migration(id, "api", EventKind::MigrationCreated { spec: spec() }),
                NewEvent::migration(id, "api", EventKind::MigrationStarted {}),
            ];
            for i in 2..PER_MIGRATION {
                let kind = if i < PER_MIGRATION / 2 {
                    progress(i)
                } else {
                    checkpoint(i)
                };
                batch.push(NewEvent::migration(id, "engine", kind));
            }
            store.append(batch).await.expect("append");
            if m == 0 {
                eprintln!("building a log of {} events…", migrations * PER_MIGRATION);
            }
        }
    });
    let mut group = c.benchmark_group("store_fold");
    group.sample_size(10);
    group.measurement_time(Duration::from_secs(20));
    group.throughput(Throughput::Elements(migrations * PER_MIGRATION));
    group.bench_function("open_and_fold_1m_events", |b| {
        b.iter(|| {
            let store = Store::open(dir.path()).expect("open store");
            let (folded, stats) = fold_all(&store).expect("fold");
            assert_eq!(stats.events, migrations * PER_MIGRATION);
            assert_eq!(folded.migrations.len() as u64, migrations);
            drop(store);
        })
    });
    group.finish();
}

criterion_group!(benches, append_throughput, fold_million);
criterion_main!(benches);
