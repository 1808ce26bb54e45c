//! Event store benchmarks: durable append throughput (with and without concurrency, i.e. with and
//! without group commit sharing flushes), the start-up fold of a million events, and the size of
//! that log on disk.
//!
//! Run with `cargo bench --bench store`. The fold's log is built once per run in a temp dir, from
//! the real mix of a migration's history: creation, a validation report of every check, the
//! snapshot's progress, a live phase of checkpoints, cutover, a verification report, completion.
//! Its size is printed (`store size: …`) before the fold is timed.

use std::time::{Duration, Instant};

use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use ferry::jobs::fold_all;
use ferry::model::{CheckResult, CheckStatus, EventKind, ValidationReport, VerificationReport};
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
        schedule: Default::default(),
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

/// The validation report of a healthy pair: every check, with messages and measured values of
/// the sizes real ones have.
fn validation_report() -> ValidationReport {
    let ids = [
        "source.connect",
        "target.connect",
        "distinct_servers",
        "transfer.tls",
        "source.replication",
        "source.role",
        "target.writable",
        "versions",
        "databases",
        "target.conflicts",
        "capacity.memory",
        "capacity.disk",
        "source.output_buffer",
        "source.backlog",
        "source.sync_delay",
        "modules",
        "keyspace_notifications",
        "maxmemory_policy",
        "persistence",
    ];
    ValidationReport::from_checks(
        ids.iter()
            .map(|id| CheckResult {
                id: id.to_string(),
                status: CheckStatus::Pass,
                message: format!(
                    "{id}: what was found on both servers, in one line that says what to do when it is not a pass"
                ),
                details: Some(serde_json::json!({"source": "10.0.0.1:6379", "latency_ms": 1,
                    "value_bytes": 268435456, "limit_bytes": 1073741824})),
            })
            .collect(),
    )
}

/// One migration's history of `n` events in the real mix: 30 % snapshot progress, the rest
/// checkpoints of the live phase (both about one a second), and the once-only events.
fn history(id: Uuid, n: u64) -> Vec<NewEvent> {
    let event = |actor: &str, kind| NewEvent::migration(id, actor, kind);
    let mut out = vec![
        event(
            "api",
            EventKind::MigrationCreated {
                spec: Box::new(spec()),
            },
        ),
        event("api", EventKind::ValidationStarted {}),
        event(
            "api",
            EventKind::ValidationCompleted {
                report: validation_report(),
            },
        ),
        event("api", EventKind::MigrationStarted {}),
        event(
            "engine",
            EventKind::SnapshotRequested {
                diskless: Some(true),
                delay_secs: Some(5),
                keys_estimate: Some(1_000_000),
            },
        ),
        event(
            "engine",
            EventKind::SnapshotStarted {
                replid: "8371b4fb1155b71f4a04d3e1bc3e18c4a990aeeb".into(),
                offset: 1,
                diskless: true,
                rdb_bytes_total: None,
                redo: None,
                keys_total: None,
            },
        ),
    ];
    let tail = 6;
    let progress_events = n * 3 / 10;
    for i in 0..progress_events {
        out.push(event("engine", progress(i)));
    }
    out.push(event(
        "engine",
        EventKind::SnapshotCompleted {
            rdb_bytes: progress_events * 65536,
            keys_written: progress_events * 100,
            keys_skipped: 0,
            keys_expired: 0,
            keys_empty: 0,
            keys_rewritten: 0,
            duration_ms: progress_events * 1000,
        },
    ));
    out.push(event(
        "engine",
        EventKind::StreamingStarted {
            replid: "8371b4fb1155b71f4a04d3e1bc3e18c4a990aeeb".into(),
            offset: 1,
        },
    ));
    let mut i = 0;
    while (out.len() as u64) < n - tail {
        out.push(event("engine", checkpoint(i)));
        i += 1;
    }
    out.push(event(
        "api",
        EventKind::CutoverStarted {
            pause_source_writes: false,
        },
    ));
    out.push(event(
        "engine",
        EventKind::VerificationCompleted {
            report: VerificationReport {
                mode: ferry::spec::Verify::Sample,
                checked: 1000,
                missing: 0,
                different: 0,
                extra: 0,
                problems: vec![],
            },
        },
    ));
    out.push(event(
        "engine",
        EventKind::CutoverCompleted {
            final_offset: i as i64 * 1024,
        },
    ));
    out.push(event("engine", EventKind::MigrationCompleted {}));
    while (out.len() as u64) < n {
        out.push(event("engine", checkpoint(i)));
        i += 1;
    }
    out
}

/// The bytes under `dir`, as `du` counts them.
fn disk_usage(dir: &std::path::Path) -> u64 {
    let mut total = 0;
    for entry in std::fs::read_dir(dir).into_iter().flatten().flatten() {
        let meta = entry.metadata().expect("metadata");
        total += if meta.is_dir() {
            disk_usage(&entry.path())
        } else {
            use std::os::unix::fs::MetadataExt;
            meta.blocks() * 512
        };
    }
    total
}

/// Every file under `dir` with its length.
fn walk(dir: &std::path::Path) -> Vec<(std::path::PathBuf, u64)> {
    let mut out = Vec::new();
    for entry in std::fs::read_dir(dir).into_iter().flatten().flatten() {
        let meta = entry.metadata().expect("metadata");
        if meta.is_dir() {
            out.extend(walk(&entry.path()));
        } else {
            out.push((entry.path(), meta.len()));
        }
    }
    out
}

/// Where the log's live bytes are, by key kind, against what sled holds in its files: keys and
/// values of the single events (`e`), the per-migration index (`m`) and the sealed chunks (`c`),
/// and the chunks' size before LZ4.
fn print_breakdown(log_dir: &std::path::Path, events: u64) {
    // The store's writer thread lets go of the directory a moment after the last handle drops.
    let db = (0..200)
        .find_map(|_| {
            sled::Config::new()
                .path(log_dir)
                .use_compression(true)
                .open()
                .map_err(|_| std::thread::sleep(Duration::from_millis(50)))
                .ok()
        })
        .expect("open sled");
    let tree = db.open_tree("events").expect("events tree");
    // sled writes a page bigger than a quarter of a segment (128 kB) to a file of its own.
    let files = walk(log_dir);
    let blobs: Vec<u64> = files
        .iter()
        .filter(|(path, _)| path.parent().is_some_and(|p| p.ends_with("blobs")))
        .map(|(_, len)| *len)
        .collect();
    let segments: u64 = files
        .iter()
        .filter(|(path, _)| path.ends_with("db"))
        .map(|(_, len)| len)
        .sum();
    eprintln!(
        "  sled's files: segments (db) {segments} bytes, {} blob files of {} bytes",
        blobs.len(),
        blobs.iter().sum::<u64>()
    );
    let mut by_prefix = std::collections::BTreeMap::<u8, (u64, u64, u64)>::new();
    let mut unpacked = 0u64;
    for entry in tree.iter() {
        let (key, value) = entry.expect("entry");
        let slot = by_prefix.entry(key[0]).or_default();
        slot.0 += 1;
        slot.1 += key.len() as u64;
        slot.2 += value.len() as u64;
        if matches!(key[0], b'c' | b's') && value.first() == Some(&0xFF) {
            unpacked += lz4_flex::decompress_size_prepended(&value[1..])
                .expect("chunk")
                .len() as u64;
        }
    }
    let live: u64 = by_prefix.values().map(|(_, k, v)| k + v).sum();
    for (prefix, (count, keys, values)) in &by_prefix {
        eprintln!(
            "  '{}': {count} entries, {keys} key bytes, {values} value bytes ({:.0} B per event)",
            *prefix as char,
            (keys + values) as f64 / events as f64
        );
    }
    eprintln!(
        "  chunks unpack to {unpacked} bytes; live keys+values {live} bytes; sled's count {}",
        db.size_on_disk().expect("size")
    );
}

/// Opens a log of one million events (1,000 migrations × 1,000 events of the real mix), prints
/// its size on disk, and folds it.
///
/// Under `cargo test --all-targets` (criterion's test mode: no `--bench` argument) the log has
/// 10,000 events, so the suite checks that the bench works without spending minutes building it.
/// `FERRY_FOLD_MIGRATIONS=100` builds a log of that many migrations instead (a quicker look at
/// the breakdown, which [`print_breakdown`] prints after the size).
fn fold_million(c: &mut Criterion) {
    let full = std::env::args().any(|a| a == "--bench");
    let migrations: u64 = std::env::var("FERRY_FOLD_MIGRATIONS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(if full { 1_000 } else { 10 });
    const PER_MIGRATION: u64 = 1_000;
    let rt = runtime();
    let dir = tempfile::tempdir().expect("temp dir");
    rt.block_on(async {
        let store = Store::open(dir.path()).expect("open store");
        eprintln!("building a log of {} events…", migrations * PER_MIGRATION);
        // As engines append: many migrations at once, a few events at a time each, so group
        // commits interleave them the way a busy server's log does.
        const AT_ONCE: u64 = 50;
        for wave in (0..migrations).step_by(AT_ONCE as usize) {
            let tasks: Vec<_> = (wave..(wave + AT_ONCE).min(migrations))
                .map(|_| {
                    let store = store.clone();
                    tokio::spawn(async move {
                        let id = Uuid::now_v7();
                        for batch in history(id, PER_MIGRATION).chunks(8) {
                            store.append(batch.to_vec()).await.expect("append");
                        }
                    })
                })
                .collect();
            for task in tasks {
                task.await.expect("append task");
            }
        }
    });
    let events = migrations * PER_MIGRATION;
    {
        // Reopened first, as a restart would: what sled keeps once the writes settle.
        let store = Store::open(dir.path()).expect("reopen");
        let sled_bytes = store.size_on_disk().expect("size");
        drop(store);
        let files = disk_usage(dir.path());
        let per_million = |b: u64| b as f64 * 1e6 / events as f64 / 1e6;
        eprintln!(
            "store size: {events} events, {files} bytes in files ({:.0} MB per million events), \
             sled's own count {sled_bytes} bytes ({:.0} MB per million)",
            per_million(files),
            per_million(sled_bytes)
        );
        print_breakdown(&dir.path().join("log"), events);
    }
    {
        // One start-up, split: sled's open (its recovery) and Ferry's fold, which is what
        // `ferry_store_fold_seconds` reports.
        wait_until_unlocked(&dir.path().join("log"));
        let started = Instant::now();
        let store = Store::open(dir.path()).expect("open store");
        let opened = started.elapsed();
        let (_, stats) = fold_all(&store).expect("fold");
        eprintln!(
            "start-up: open {:.0} ms, fold {:.0} ms",
            opened.as_secs_f64() * 1e3,
            stats.elapsed.as_secs_f64() * 1e3
        );
    }
    let mut group = c.benchmark_group("store_fold");
    group.sample_size(10);
    group.measurement_time(Duration::from_secs(20));
    group.throughput(Throughput::Elements(events));
    // Open and fold, as at start-up. Not the drop: closing is not start-up, and waiting for the
    // previous handle's lock inside the next open would be counted too.
    group.bench_function("open_and_fold_1m_events", |b| {
        b.iter_custom(|iters| {
            let mut total = Duration::ZERO;
            for _ in 0..iters {
                wait_until_unlocked(&dir.path().join("log"));
                let started = Instant::now();
                let store = Store::open(dir.path()).expect("open store");
                let (folded, stats) = fold_all(&store).expect("fold");
                total += started.elapsed();
                assert_eq!(stats.events, events);
                assert_eq!(folded.migrations.len() as u64, migrations);
            }
            total
        })
    });
    group.finish();
}

/// Waits, untimed, until nothing holds sled's lock on the log (an exclusive `flock` of its `db`
/// file): a dropped store's threads let go of it a moment after the last handle.
fn wait_until_unlocked(log_dir: &std::path::Path) {
    use rustix::fs::{flock, FlockOperation};
    let file = std::fs::File::open(log_dir.join("db")).expect("sled's db file");
    for _ in 0..2_000 {
        if flock(&file, FlockOperation::NonBlockingLockExclusive).is_ok() {
            flock(&file, FlockOperation::Unlock).expect("unlock");
            return;
        }
        std::thread::sleep(Duration::from_millis(5));
    }
    panic!("sled's lock on {log_dir:?} was not released within 10 s");
}

criterion_group!(benches, append_throughput, fold_million);
criterion_main!(benches);
