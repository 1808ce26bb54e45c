//! A Redis Cluster as the TARGET of a standalone source (issue #16): the engine's own writer
//! routes every key to the master of its slot, streams in per-slot transactions with per-slot
//! offset keys, and verifies through the routed client. Every test compares the data with its own
//! reader (each master read directly), not only through the engine's verifier.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use ferry::model::EventKind;
use ferry::spec::{Mode, OnConflict, Verify};

use crate::common::cluster::RedisCluster;
use crate::common::redis::RedisServer;
use crate::helpers::*;

/// Every key of every master of `cluster`, db 0, as one comparable snapshot; panics when a key
/// sits on a master that does not serve its slot (a node refuses to hold such a key anyway,
/// so this also proves each read went to the right node).
fn cluster_dump(cluster: &RedisCluster) -> (Snapshot, Vec<(String, u16)>) {
    let mut all = Snapshot::new();
    let mut placed = Vec::new();
    for port in cluster.master_ports() {
        for (key, value) in dump_all(cluster.node(port), 1) {
            let name = String::from_utf8_lossy(&key.1).into_owned();
            placed.push((name.clone(), port));
            assert!(
                all.insert(key, value).is_none(),
                "`{name}` is on one master"
            );
        }
    }
    (all, placed)
}

/// The source's db `db` keys as the cluster holds them (db 0).
fn source_dump(source: &RedisServer, dbs: u32) -> Snapshot {
    dump_all(source, dbs)
        .into_iter()
        .map(|((_, key), value)| ((0, key), value))
        .collect()
}

/// The source's and the cluster's data are the same, key by key (TTLs within 2 s), and no
/// key of Ferry's bookkeeping is left on any master.
fn assert_cluster_same(source: &RedisServer, dbs: u32, cluster: &RedisCluster) {
    // The cluster first, then the source right after: TTLs are read close together.
    let (actual, placed) = cluster_dump(cluster);
    let expected = source_dump(source, dbs);
    let strip = |s: &Snapshot| -> Vec<(Vec<u8>, String, Vec<Vec<u8>>)> {
        s.iter()
            .map(|((_, k), (t, v, _))| (k.clone(), t.clone(), v.clone()))
            .collect()
    };
    let (e, a) = (strip(&expected), strip(&actual));
    if e != a {
        let missing: Vec<String> = expected
            .keys()
            .filter(|k| !actual.contains_key(*k))
            .take(10)
            .map(|k| String::from_utf8_lossy(&k.1).into_owned())
            .collect();
        let extra: Vec<String> = actual
            .keys()
            .filter(|k| !expected.contains_key(*k))
            .take(10)
            .map(|k| String::from_utf8_lossy(&k.1).into_owned())
            .collect();
        panic!(
            "source {} keys, cluster {} keys; missing {missing:?}, extra {extra:?}",
            expected.len(),
            actual.len()
        );
    }
    for (name, port) in placed.iter().filter(|(n, _)| n.is_ascii()).take(300) {
        assert_eq!(
            cluster.master_of(name),
            *port,
            "`{name}` is on its slot's master"
        );
    }
    for (key, (_, _, ttl)) in &expected {
        let (_, _, got) = &actual[key];
        assert!(
            (*ttl < 0) == (*got < 0) && (ttl - got).abs() <= 2000,
            "TTL of {:?}: {ttl} vs {got}",
            String::from_utf8_lossy(&key.1)
        );
    }
}

fn clean_verification(events: &[EventKind]) -> ferry::model::VerificationReport {
    let report = events
        .iter()
        .find_map(|e| match e {
            EventKind::VerificationCompleted { report } => Some(report.clone()),
            _ => None,
        })
        .expect("VerificationCompleted");
    assert!(report.is_clean(), "{report:?}");
    assert!(report.checked > 0, "{report:?}");
    report
}

fn standalone_source() -> RedisServer {
    RedisServer::start_with("7.4", &["--repl-diskless-sync-delay", "0"])
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn standalone_to_cluster_snapshot_puts_every_key_on_its_slots_master() {
    let cluster = RedisCluster::start("7.4", 3, 0);
    let source = standalone_source();
    let keys = populate(&source, 1);
    let run = start(
        spec(
            &source,
            &cluster.url(),
            Mode::Snapshot,
            options(OnConflict::Fail, Verify::Full),
        ),
        quick(),
    );
    let (result, events) = run.finish().await;
    result.unwrap_or_else(|e| panic!("{e}; events {:?}", names(&events)));
    let (written, skipped) = completed_counts(&events);
    assert_eq!((written, skipped), (keys, 0));
    let report = clean_verification(&events);
    assert_eq!(report.checked, keys);
    assert_cluster_same(&source, 1, &cluster);
    assert_eq!(cluster.keys(), keys, "exactly the source's keys");
    cluster.assert_no_bookkeeping();
    // The function library is on every master (any of them may run an FCALL).
    for port in cluster.master_ports() {
        assert_eq!(function_names(cluster.node(port)), function_names(&source));
    }
    assert!(names(&events).contains(&"TransferChosen"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn three_source_databases_go_to_db_0_of_the_cluster_by_the_db_map() {
    let cluster = RedisCluster::start("7.4", 3, 0);
    let source = standalone_source();
    let mut c = source.conn();
    for db in 0..3 {
        let _: () = redis::cmd("SELECT").arg(db).query(&mut c).unwrap();
        let mut p = redis::pipe();
        for i in 0..200 {
            p.cmd("SET").arg(format!("db{db}:s:{i}")).arg(i).ignore();
        }
        p.cmd("HSET")
            .arg(format!("db{db}:hash"))
            .arg(&["a", "1", "b", "2"])
            .ignore();
        p.cmd("RPUSH")
            .arg(format!("db{db}:list"))
            .arg(&[1, 2, 3])
            .ignore();
        p.cmd("SET")
            .arg(format!("db{db}:ttl"))
            .arg("x")
            .arg("PX")
            .arg(600_000)
            .ignore();
        p.query::<()>(&mut c).unwrap();
    }
    let mut opts = options(OnConflict::Fail, Verify::Full);
    opts.db_map = [(0, 0), (1, 0), (2, 0)].into_iter().collect();
    let run = start(spec(&source, &cluster.url(), Mode::Snapshot, opts), quick());
    let (result, events) = run.finish().await;
    result.unwrap_or_else(|e| panic!("{e}; events {:?}", names(&events)));
    assert_eq!(completed_counts(&events), (3 * 203, 0));
    assert_eq!(clean_verification(&events).checked, 3 * 203);
    assert_cluster_same(&source, 3, &cluster);
    assert_eq!(cluster.keys(), 3 * 203);
    cluster.assert_no_bookkeeping();

    // Without the map, a source db other than 0 cannot go anywhere on a cluster: stopped, named.
    let other = RedisCluster::start("7.4", 3, 0);
    let run = start(
        spec(
            &source,
            &other.url(),
            Mode::Snapshot,
            options(OnConflict::Fail, Verify::Full),
        ),
        quick(),
    );
    let (result, _) = run.finish().await;
    let err = result.expect_err("db 1 has nowhere to go");
    assert_eq!(err.code(), "unsupported");
    assert!(err.to_string().contains("db_map"), "{err}");
}

/// Writes to the source until `stop`: INCR counters over many slots, and a MULTI/EXEC whose two
/// INCRs are in different slots. Returns how many rounds it made.
fn spawn_counters(source: &RedisServer, stop: Arc<AtomicBool>) -> std::thread::JoinHandle<u64> {
    let url = source.url();
    std::thread::spawn(move || {
        let mut c = redis::Client::open(url).unwrap().get_connection().unwrap();
        let mut n = 0u64;
        while !stop.load(Ordering::Relaxed) {
            let _: i64 = redis::cmd("INCR")
                .arg(format!("c:{}", n % 300))
                .query(&mut c)
                .unwrap();
            if n % 5 == 0 {
                let _: () = redis::pipe()
                    .atomic()
                    .cmd("INCR")
                    .arg(format!("tx:a:{}", n % 50))
                    .cmd("INCRBY")
                    .arg(format!("tx:b:{}", n % 70))
                    .arg(3)
                    .query(&mut c)
                    .unwrap();
            }
            if n % 7 == 0 {
                // Split per slot: keys of several slots, each deleted alone.
                let _: i64 = redis::cmd("DEL")
                    .arg(format!("gone:{}", n % 11))
                    .arg(format!("gone:{}", n % 13))
                    .query(&mut c)
                    .unwrap();
                let _: () = redis::cmd("MSET")
                    .arg(format!("gone:{}", n % 11))
                    .arg(n)
                    .arg(format!("gone:{}", n % 13))
                    .arg(n)
                    .query(&mut c)
                    .unwrap();
            }
            n += 1;
        }
        n
    })
}

fn splits(events: &[EventKind]) -> usize {
    events
        .iter()
        .filter(|e| {
            matches!(e, EventKind::TransactionSplit { slots, commands, .. }
                if slots.len() >= 2 && *commands >= 2)
        })
        .count()
}

/// Live mode into a cluster, under a write load; `reshard`: `redis-cli --cluster reshard` moves
/// 500 slots between two target masters while the stream runs.
async fn live_into_cluster(reshard: bool) {
    let cluster = RedisCluster::start("7.4", 3, 0);
    let source = standalone_source();
    let mut c = source.conn();
    for i in 0..2000 {
        let _: () = redis::cmd("SET")
            .arg(format!("pre:{i}"))
            .arg(i)
            .query(&mut c)
            .unwrap();
    }
    let stop = Arc::new(AtomicBool::new(false));
    let writer = spawn_counters(&source, stop.clone());
    let opts = options(OnConflict::Fail, Verify::Full);
    let run = start(spec(&source, &cluster.url(), Mode::Live, opts), quick());
    run.wait_for("StreamingStarted", |e| {
        matches!(e, EventKind::StreamingStarted { .. })
    })
    .await;
    let resharding = reshard.then(|| {
        let ports = cluster.master_ports();
        let id = |p: u16| cluster.node(p).cli(&["CLUSTER", "MYID"]).trim().to_string();
        let (from_id, to_id) = (id(ports[0]), id(ports[1]));
        let cli = crate::common::redis::binary("7.4", "redis-cli");
        let seed = format!("127.0.0.1:{}", ports[0]);
        std::thread::spawn(move || {
            std::process::Command::new(cli)
                .args(["--cluster", "reshard", &seed, "--cluster-from", &from_id])
                .args([
                    "--cluster-to",
                    &to_id,
                    "--cluster-slots",
                    "500",
                    "--cluster-yes",
                ])
                .output()
                .expect("run redis-cli --cluster reshard")
        })
    });
    run.wait_for("a checkpoint past 1500 commands", |e| {
        matches!(e, EventKind::Checkpoint { commands_streamed, .. } if *commands_streamed > 1500)
    })
    .await;
    if let Some(resharding) = resharding {
        let out = resharding.join().unwrap();
        assert!(
            out.status.success(),
            "reshard: {}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        // Writes go on after the slots moved: the stream follows the new owners.
        tokio::time::sleep(std::time::Duration::from_millis(500)).await;
    }
    stop.store(true, Ordering::Relaxed);
    let rounds = writer.join().unwrap();
    assert!(rounds > 300, "the writer made progress: {rounds}");
    run.controls.cutover.cancel();
    let (result, events) = run.finish().await;
    result.unwrap_or_else(|e| panic!("{e}; events {:?}", names(&events)));
    clean_verification(&events);
    assert_cluster_same(&source, 1, &cluster);
    // Every counter exact: INCRs neither lost nor applied twice.
    let mut src = source.conn();
    for i in 0..300 {
        let key = format!("c:{i}");
        let want: i64 = redis::cmd("GET").arg(&key).query(&mut src).unwrap();
        let got: i64 = redis::cmd("GET")
            .arg(&key)
            .query(&mut cluster.node(cluster.master_of(&key)).conn())
            .unwrap();
        assert_eq!(got, want, "{key}");
    }
    assert!(
        splits(&events) > 0,
        "MULTI/EXEC over two slots is recorded as split"
    );
    assert_eq!(names(&events).last(), Some(&"CutoverCompleted"));
    cluster.assert_no_bookkeeping();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn live_into_a_cluster_keeps_counters_exact_and_records_split_transactions() {
    live_into_cluster(false).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn live_into_a_cluster_survives_a_resharding_of_the_target() {
    live_into_cluster(true).await;
}

/// A command whose keys are in different target slots and that cannot be split (RENAME) stops
/// the migration, naming it, instead of being applied in pieces.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_cross_slot_rename_stops_the_stream_naming_it() {
    let cluster = RedisCluster::start("7.4", 3, 0);
    let source = standalone_source();
    let mut c = source.conn();
    let _: () = redis::cmd("SET").arg("from").arg(1).query(&mut c).unwrap();
    assert_ne!(
        ferry::cluster::key_slot(b"from"),
        ferry::cluster::key_slot(b"elsewhere")
    );
    let run = start(
        spec(
            &source,
            &cluster.url(),
            Mode::Live,
            options(OnConflict::Fail, Verify::Full),
        ),
        quick(),
    );
    run.wait_for("StreamingStarted", |e| {
        matches!(e, EventKind::StreamingStarted { .. })
    })
    .await;
    let _: () = redis::cmd("RENAME")
        .arg("from")
        .arg("elsewhere")
        .query(&mut c)
        .unwrap();
    let (result, _) = run.finish().await;
    let err = result.expect_err("RENAME across slots is refused");
    assert_eq!(err.code(), "unsupported");
    assert!(err.to_string().contains("RENAME"), "{err}");
}

/// A target master fails over (`CLUSTER FAILOVER` on its replica) while the stream runs: the
/// routed writer follows the new master, and every counter ends exact.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn live_into_a_cluster_survives_a_target_failover() {
    let cluster = RedisCluster::start("7.4", 3, 1);
    let source = standalone_source();
    let stop = Arc::new(AtomicBool::new(false));
    let writer = spawn_counters(&source, stop.clone());
    let run = start(
        spec(
            &source,
            &cluster.url(),
            Mode::Live,
            options(OnConflict::Fail, Verify::Full),
        ),
        quick(),
    );
    run.wait_for("a checkpoint past 500 commands", |e| {
        matches!(e, EventKind::Checkpoint { commands_streamed, .. } if *commands_streamed > 500)
    })
    .await;
    let replica = cluster.replica_ports()[0];
    let node = cluster.node(replica);
    assert_eq!(node.cli(&["CLUSTER", "FAILOVER"]).trim(), "OK");
    // A manual failover gives up after 5 s on a loaded machine: ask again, up to three times.
    let mut asked = 1;
    let mut since = std::time::Instant::now();
    while !node.cli(&["INFO", "replication"]).contains("role:master") {
        if since.elapsed() > std::time::Duration::from_secs(7) {
            assert!(asked < 3, "the replica was not promoted");
            assert_eq!(node.cli(&["CLUSTER", "FAILOVER"]).trim(), "OK");
            asked += 1;
            since = std::time::Instant::now();
        }
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
    cluster.wait_ready(std::time::Duration::from_secs(20));
    // The stream goes on after the failover, into the promoted master too.
    tokio::time::sleep(std::time::Duration::from_millis(800)).await;
    stop.store(true, Ordering::Relaxed);
    writer.join().unwrap();
    run.controls.cutover.cancel();
    let (result, events) = run.finish().await;
    result.unwrap_or_else(|e| panic!("{e}; events {:?}", names(&events)));
    clean_verification(&events);
    assert_cluster_same(&source, 1, &cluster);
    let mut src = source.conn();
    for i in 0..300 {
        let key = format!("c:{i}");
        let want: i64 = redis::cmd("GET").arg(&key).query(&mut src).unwrap();
        let got: i64 = redis::cmd("GET")
            .arg(&key)
            .query(&mut cluster.node(cluster.master_of(&key)).conn())
            .unwrap();
        assert_eq!(got, want, "{key}");
    }
    cluster.assert_no_bookkeeping();
}

/// The lease key of a cluster target lives on the master of its slot: resolved from a seed that
/// does not serve it, taken there with the lease's own compare-and-set (no `MOVED`).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_lease_of_a_cluster_target_is_taken_on_the_master_of_its_slot() {
    use ferry::client::lease::{acquire, LeaseToken, LEASE_TTL};
    use ferry::model::{LeaseOwner, LeaseVerdict, LEASE_KEY};
    let cluster = RedisCluster::start("7.4", 3, 0);
    let owner_port = cluster.master_of(LEASE_KEY);
    let seed = cluster
        .master_ports()
        .into_iter()
        .find(|p| *p != owner_port)
        .unwrap();
    let url = ferry::redis_url::RedisUrl::parse(&cluster.node(seed).url()).unwrap();
    let peer = ferry::transport::Peer::from_url(&url).unwrap();
    let resolved = ferry::client::cluster::key_peer(&peer, LEASE_KEY.as_bytes())
        .await
        .unwrap();
    assert_eq!(resolved.url().port, owner_port);
    let mut conn = ferry::client::Conn::connect(&resolved).await.unwrap();
    let owner = LeaseOwner {
        instance: uuid::Uuid::now_v7(),
        kind: ferry::model::AggregateType::Migration,
        id: uuid::Uuid::now_v7(),
        actor: "test".into(),
    };
    let token = LeaseToken::new(owner, LEASE_TTL);
    acquire(&mut conn, &token, |found| {
        assert!(found.is_none());
        LeaseVerdict::Take
    })
    .await
    .unwrap();
    let held: String = redis::cmd("GET")
        .arg(LEASE_KEY)
        .query(&mut cluster.node(owner_port).conn())
        .unwrap();
    assert_eq!(held, token.value);
}

/// 64 hex characters that do not compress (an RDB compresses repeated text to almost nothing).
fn noise(seed: usize) -> String {
    let mut x = (seed as u64).wrapping_mul(0x9e37_79b9_7f4a_7c15) | 1;
    (0..4)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            format!("{x:016x}")
        })
        .collect()
}

/// Keys above the big-key threshold are written as chunked commands, each routed to the key's
/// master; under `on_conflict: fail` their existence is asked there too (not on the seed, which
/// would answer MOVED), and a second copy into the same cluster stops on the first key it meets.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn big_keys_are_chunked_into_their_masters_and_conflicts_are_named() {
    let cluster = RedisCluster::start("7.4", 3, 0);
    let source = standalone_source();
    let mut c = source.conn();
    for k in 0..6 {
        let items: Vec<String> = (0..3000).map(|i| noise(k * 10_000 + i)).collect();
        let _: () = redis::cmd("RPUSH")
            .arg(format!("big:list:{k}"))
            .arg(&items)
            .query(&mut c)
            .unwrap();
        let mut fields = vec![];
        for i in 0..3000 {
            fields.push(format!("f{i}"));
            fields.push(noise(k * 10_000 + i + 5000));
        }
        let _: () = redis::cmd("HSET")
            .arg(format!("big:hash:{k}"))
            .arg(&fields)
            .query(&mut c)
            .unwrap();
    }
    let tuning = ferry::engine::Tuning {
        big_key_bytes: 64 * 1024,
        rewrite_chunk_bytes: 16 * 1024,
        ..quick()
    };
    let spec = spec(
        &source,
        &cluster.url(),
        Mode::Snapshot,
        options(OnConflict::Fail, Verify::Full),
    );
    let run = start(spec.clone(), tuning.clone());
    let (result, events) = run.finish().await;
    result.unwrap_or_else(|e| panic!("{e}; events {:?}", names(&events)));
    assert_eq!(clean_verification(&events).checked, 12);
    assert_cluster_same(&source, 1, &cluster);
    assert_eq!(cluster.keys(), 12);
    // Written in chunks: many RPUSH/HSET calls summed over the masters, no RESTORE of them.
    let calls = |command: &str| -> u64 {
        cluster
            .master_ports()
            .iter()
            .map(|p| {
                let stats = cluster.node(*p).cli(&["INFO", "commandstats"]);
                stats
                    .lines()
                    .find_map(|l| l.strip_prefix(&format!("cmdstat_{command}:calls=")))
                    .and_then(|rest| rest.split(',').next()?.parse::<u64>().ok())
                    .unwrap_or(0)
            })
            .sum()
    };
    let (rpush, hset) = (calls("rpush"), calls("hset"));
    assert!(
        rpush > 6 && hset > 6,
        "chunked writes: {rpush} RPUSH, {hset} HSET, {} RESTORE",
        calls("restore")
    );
    assert_eq!(calls("restore"), 0);

    let run = start(spec, tuning);
    let (result, _) = run.finish().await;
    let err = result.expect_err("the keys exist on the cluster now");
    assert_eq!(err.code(), "busy_key", "{err}");
    assert!(err.to_string().contains("big:"), "{err}");
}

/// What a cluster target does not take in this build is refused before anything is written,
/// naming the option.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn options_a_cluster_target_does_not_take_are_refused_before_writing() {
    let cluster = RedisCluster::start("7.4", 3, 0);
    let source = standalone_source();
    let _: () = redis::cmd("SET")
        .arg("k")
        .arg(1)
        .query(&mut source.conn())
        .unwrap();
    let base = options(OnConflict::Fail, Verify::Full);
    let cases: Vec<(&str, ferry::spec::Options)> = vec![
        (
            "options.transfer relay",
            ferry::spec::Options {
                transfer: ferry::spec::Transfer::Relay,
                ..base.clone()
            },
        ),
        (
            "options.on_conflict flush",
            ferry::spec::Options {
                on_conflict: OnConflict::Flush,
                ..base.clone()
            },
        ),
        (
            "options.on_conflict skip",
            ferry::spec::Options {
                on_conflict: OnConflict::Skip,
                ..base.clone()
            },
        ),
        (
            "options.acl copy/replace",
            ferry::spec::Options {
                acl: ferry::spec::AclMode::Copy,
                ..base.clone()
            },
        ),
    ];
    for (option, opts) in cases {
        let run = start(spec(&source, &cluster.url(), Mode::Snapshot, opts), quick());
        let (result, events) = run.finish().await;
        let err = result.expect_err(option);
        assert_eq!(err.code(), "unsupported", "{option}: {err}");
        assert!(err.to_string().contains(option), "{err}");
        assert!(events.is_empty(), "{option}: {events:?}");
    }
    assert_eq!(cluster.keys(), 0, "nothing was written");
}
