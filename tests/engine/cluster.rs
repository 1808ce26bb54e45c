//! Redis Cluster in the engine. The routed cluster client (`client::routed::ClusterConn`)
//! against real clusters: every command lands on the master of its slot, and a slot migrated
//! under it is followed through `ASK` (half-way, transactions included) and `MOVED` (done), with
//! nothing written twice or lost. And the engine's own refusal of a dry run with a cluster on
//! either side, before anything is written or read.

use ferry::client::routed::ClusterConn;
use ferry::cluster::{key_slot, SlotBatches, SlotOffsets, SlotTags};
use ferry::redis_url::RedisUrl;
use ferry::resp::Frame;
use ferry::spec::Endpoint;

use ferry::spec::{Mode, OnConflict, Verify};

use crate::common::cluster::RedisCluster;
use crate::common::redis::RedisServer;
use crate::helpers::*;

fn endpoint(url: &str) -> Endpoint {
    Endpoint {
        url: RedisUrl::parse(url).unwrap(),
        tls: None,
    }
}

fn ok(frame: &Frame) -> bool {
    matches!(frame, Frame::Simple(s) if s.as_ref() == b"OK")
}

#[tokio::test]
async fn routed_writes_land_on_the_master_of_each_slot() {
    let cluster = RedisCluster::start("7.4", 3, 0);
    let mut routed = ClusterConn::connect(&endpoint(&cluster.url()))
        .await
        .unwrap();
    assert_eq!(routed.map().shards.len(), 3);
    for i in 0..300 {
        let key = format!("k:{i}");
        let reply = routed
            .call_key(key.as_bytes(), &["SET", &key, &format!("v{i}")])
            .await
            .unwrap();
        assert!(ok(&reply), "{reply:?}");
    }
    for i in 0..300 {
        let key = format!("k:{i}");
        let value: String = redis::cmd("GET")
            .arg(&key)
            .query(&mut cluster.node(cluster.master_of(&key)).conn())
            .unwrap();
        assert_eq!(value, format!("v{i}"));
    }
    let sizes = routed.call_each_master(&["DBSIZE"]).await;
    let total: i64 = sizes
        .iter()
        .map(|(_, r)| r.as_ref().unwrap().as_int().unwrap())
        .sum();
    assert_eq!((sizes.len(), total), (3, 300));
    assert_eq!((routed.asks, routed.refreshes), (0, 0));
}

fn count_in(node: &crate::common::redis::RedisServer, slot: &str) -> i64 {
    node.cli(&["CLUSTER", "COUNTKEYSINSLOT", slot])
        .trim()
        .parse()
        .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ask_and_moved_are_followed_while_a_slot_migrates() {
    let cluster = RedisCluster::start("7.4", 3, 0);
    let mut routed = ClusterConn::connect(&endpoint(&cluster.url()))
        .await
        .unwrap();
    let slot = 4242u16;
    let tag = SlotTags::get().tag(slot).to_string();
    let key = |name: &str| format!("{{{tag}}}:{name}");
    assert_eq!(key_slot(key("x").as_bytes()), slot);
    let from_port = cluster.master_of(&key("x"));
    let to_port = *cluster
        .master_ports()
        .iter()
        .find(|p| **p != from_port)
        .unwrap();
    let (from, to) = (cluster.node(from_port), cluster.node(to_port));
    let id = |n: &crate::common::redis::RedisServer| n.cli(&["CLUSTER", "MYID"]).trim().to_string();
    let (from_id, to_id) = (id(from), id(to));

    let set = |name: &str| vec!["SET".to_string(), key(name), name.to_string()];
    assert!(ok(&routed
        .call_key(key("old").as_bytes(), &set("old"))
        .await
        .unwrap()));

    // Half-way: the slot is migrating on `from`, importing on `to`.
    let s = slot.to_string();
    assert_eq!(
        to.cli(&["CLUSTER", "SETSLOT", &s, "IMPORTING", &from_id])
            .trim(),
        "OK"
    );
    assert_eq!(
        from.cli(&["CLUSTER", "SETSLOT", &s, "MIGRATING", &to_id])
            .trim(),
        "OK"
    );
    // A key `from` still holds is served there; a new one is asked for on `to`.
    assert!(ok(&routed
        .call_key(key("old").as_bytes(), &set("old"))
        .await
        .unwrap()));
    assert_eq!(routed.asks, 0);
    assert!(ok(&routed
        .call_key(key("new").as_bytes(), &set("new"))
        .await
        .unwrap()));
    assert_eq!(routed.asks, 1);
    // A transaction of one slot (a batch and its offset key) writes new keys: the importing node
    // answers TRYAGAIN until the slot's migration ends, so it waits, whole, and then lands.
    let offset_key = format!("ferry:offset:{{{tag}}}:m");
    let batch: Vec<Vec<String>> = vec![
        vec!["MULTI".into()],
        set("tx"),
        vec!["SET".into(), offset_key.clone(), "r:10:0".into()],
        vec!["EXEC".into()],
    ];
    let pending = tokio::spawn(async move {
        let replies = routed.call_slot_batch(slot, &batch).await;
        (routed, replies)
    });
    tokio::time::sleep(std::time::Duration::from_millis(700)).await;
    assert!(!pending.is_finished(), "the transaction waits for the slot");
    assert_eq!(
        count_in(to, &s) + count_in(from, &s),
        2,
        "nothing of it applied yet"
    );

    // Done: the old key moves, the slot is `to`'s on every master.
    let migrated = from.cli(&[
        "MIGRATE",
        "127.0.0.1",
        &to_port.to_string(),
        &key("old"),
        "0",
        "5000",
    ]);
    assert_eq!(migrated.trim(), "OK");
    for port in cluster.master_ports() {
        let node = cluster.node(port);
        assert_eq!(
            node.cli(&["CLUSTER", "SETSLOT", &s, "NODE", &to_id]).trim(),
            "OK"
        );
    }
    let (mut routed, replies) = pending.await.unwrap();
    let replies = replies.unwrap();
    match &replies[3] {
        Frame::Array(done) => assert!(done.len() == 2 && done.iter().all(ok), "{replies:?}"),
        other => panic!("EXEC answered {other:?}"),
    }
    // The stale map met MOVED once the slot was `to`'s, and was read again.
    assert!(routed.refreshes >= 1);
    let owner = routed.map().shard_of(slot).unwrap();
    assert_eq!(routed.map().shards[owner].master.port, to_port);
    assert!(ok(&routed
        .call_key(key("after").as_bytes(), &set("after"))
        .await
        .unwrap()));

    // Every key of the slot is on `to`, once; none stayed behind.
    let count = |node: &crate::common::redis::RedisServer| -> i64 {
        node.cli(&["CLUSTER", "COUNTKEYSINSLOT", &s])
            .trim()
            .parse()
            .unwrap()
    };
    assert_eq!((count(to), count(from)), (5, 0));
    let mut conn = to.conn();
    for name in ["old", "new", "tx", "after"] {
        let value: String = redis::cmd("GET").arg(key(name)).query(&mut conn).unwrap();
        assert_eq!(value, name);
    }
    let offset: String = redis::cmd("GET").arg(&offset_key).query(&mut conn).unwrap();
    assert_eq!(offset, "r:10:0");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_engine_refuses_a_dry_run_with_a_cluster_on_either_side_before_writing() {
    let cluster = RedisCluster::start("7.4", 3, 0);
    let standalone = RedisServer::start_with("7.4", &["--repl-diskless-sync-delay", "0"]);
    populate(&standalone, 1);
    let seed = &cluster.nodes[0];
    // Either side moves (tests/engine/cluster_source.rs, cluster_target.rs); a dry run reads
    // one standalone source and is refused with a cluster on either side.
    for (source, target, side, mode) in [
        (seed, &standalone, "source", Mode::DryRun),
        (&standalone, seed, "target", Mode::DryRun),
    ] {
        let run = start(
            spec(
                source,
                target,
                mode,
                options(OnConflict::Fail, Verify::Full),
            ),
            quick(),
        );
        let (result, events) = run.finish().await;
        let err = result.expect_err("a cluster is refused");
        assert_eq!(err.code(), "unsupported", "{err}");
        let message = err.to_string();
        assert!(
            message.contains("dry run") && message.contains(side),
            "{message}"
        );
        assert!(events.is_empty(), "nothing happened before: {events:?}");
    }
    // Nothing reached the cluster.
    let sizes: Vec<String> = cluster.nodes.iter().map(|n| n.cli(&["DBSIZE"])).collect();
    assert!(sizes.iter().all(|s| s.trim() == "0"), "{sizes:?}");
}

const N: i64 = 6000;
const COUNTERS: i64 = 400;
const FLUSH: i64 = 250;

fn counter(i: i64) -> String {
    format!("c:{}", i % COUNTERS)
}

/// Applies offsets `range` as a stream of `INCR`s, flush by flush (each flush's slot batches
/// pipelined per node), skipping what `done` covers; with `stop_after` it applies only that many
/// slot batches of the last flush (a crash mid-flush).
async fn apply(
    routed: &mut ClusterConn,
    range: std::ops::RangeInclusive<i64>,
    done: &SlotOffsets,
    stop_after: Option<usize>,
) {
    let mut batches = SlotBatches::default();
    let end = *range.end();
    for i in range {
        let key = counter(i);
        let slot = key_slot(key.as_bytes());
        if !done.applied(slot, i) {
            let command = vec![bytes::Bytes::from("INCR"), bytes::Bytes::from(key)];
            batches.push(slot, command);
        }
        if i % FLUSH == 0 || i == end {
            let mut slots = batches.take();
            if let (Some(n), true) = (stop_after, i == end) {
                slots.truncate(n);
            }
            routed
                .apply_slot_batches(slots, "m", &format!("r:{i}:0"))
                .await
                .unwrap();
        }
    }
}

/// Every counter holds exactly the number of `INCR`s the stream had for it.
async fn assert_counters(routed: &mut ClusterConn) {
    for c in 0..COUNTERS {
        let key = format!("c:{c}");
        let value = routed
            .call_key(key.as_bytes(), &["GET", &key])
            .await
            .unwrap();
        let value: i64 = std::str::from_utf8(value.as_bytes().expect("a counter"))
            .unwrap()
            .parse()
            .unwrap();
        assert_eq!(value, N / COUNTERS, "{key}");
    }
}

/// The exactly-once core of a cluster target: a stream of non-idempotent commands (INCR) is
/// applied in per-slot `MULTI`s that also set each slot's offset key (pipelined per node), while
/// `redis-cli --cluster reshard` moves 300 slots under it; the writer "crashes" half-way through
/// a flush, and a restarted one resumes from a lagging checkpoint, skipping per slot what the
/// keys say is applied. Every counter ends exactly right.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn per_slot_batches_apply_exactly_once_across_a_resharding_and_a_restart() {
    const CRASH_AT: i64 = 4000;
    const CHECKPOINT: i64 = 3500;
    let cluster = RedisCluster::start("7.4", 3, 0);
    let seed = endpoint(&cluster.url());
    let mut routed = ClusterConn::connect(&seed).await.unwrap();
    let ports = cluster.master_ports();
    let id = |p: u16| cluster.node(p).cli(&["CLUSTER", "MYID"]).trim().to_string();
    let (from_id, to_id) = (id(ports[0]), id(ports[1]));
    let cli = crate::common::redis::binary("7.4", "redis-cli");
    let seed_addr = format!("127.0.0.1:{}", ports[0]);
    let reshard = std::thread::spawn(move || {
        std::process::Command::new(cli)
            .args([
                "--cluster",
                "reshard",
                &seed_addr,
                "--cluster-from",
                &from_id,
            ])
            .args([
                "--cluster-to",
                &to_id,
                "--cluster-slots",
                "300",
                "--cluster-yes",
            ])
            .output()
            .expect("run redis-cli --cluster reshard")
    });

    apply(&mut routed, 1..=CRASH_AT, &SlotOffsets::default(), Some(60)).await;
    let followed = routed.asks + routed.refreshes;
    drop(routed);

    // The restart: a new client, the lagging checkpoint, the slots' own keys.
    let mut routed = ClusterConn::connect(&seed).await.unwrap();
    let keys = routed.read_slot_offsets("m").await.unwrap();
    assert!(
        keys.iter().any(|(_, o)| *o == CRASH_AT),
        "the half flush left keys"
    );
    let done = SlotOffsets::new(CHECKPOINT, keys);
    assert_eq!(done.resume_from(), CHECKPOINT);
    apply(&mut routed, CHECKPOINT + 1..=N, &done, None).await;
    let followed = followed + routed.asks + routed.refreshes;

    let out = reshard.join().unwrap();
    assert!(
        out.status.success(),
        "reshard: {}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(followed > 0, "the writes met the resharding (MOVED or ASK)");
    assert_counters(&mut routed).await;
    // Every slot that received commands holds its offset key; the last flush reached N.
    let keys = routed.read_slot_offsets("m").await.unwrap();
    let slots: std::collections::HashSet<u16> = (0..COUNTERS)
        .map(|c| key_slot(format!("c:{c}").as_bytes()))
        .collect();
    let keyed: std::collections::HashSet<u16> = keys.iter().map(|(s, _)| *s).collect();
    assert_eq!(keyed, slots);
    assert!(keys.iter().all(|(_, o)| *o > CHECKPOINT && *o <= N));
    assert!(keys.iter().any(|(_, o)| *o == N));
    let sizes = routed.call_each_master(&["DBSIZE"]).await;
    let total: i64 = sizes
        .iter()
        .map(|(_, r)| r.as_ref().unwrap().as_int().unwrap())
        .sum();
    assert_eq!(total as usize, COUNTERS as usize + slots.len());
}

/// A target master fails over (`CLUSTER FAILOVER` on its replica) in the middle of the stream:
/// the old master answers MOVED, the map is read again, and every counter ends exact.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn per_slot_batches_survive_a_target_failover() {
    let cluster = RedisCluster::start("7.4", 3, 1);
    let mut routed = ClusterConn::connect(&endpoint(&cluster.url()))
        .await
        .unwrap();
    let none = SlotOffsets::default();
    apply(&mut routed, 1..=N / 2, &none, None).await;
    let replica = cluster.replica_ports()[0];
    let node = cluster.node(replica);
    assert_eq!(node.cli(&["CLUSTER", "FAILOVER"]).trim(), "OK");
    apply(&mut routed, N / 2 + 1..=N, &none, None).await;
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
    assert_counters(&mut routed).await;
    // The client now knows the promoted replica as a master.
    assert!(routed.map().masters().any(|m| m.port == replica));
    assert!(routed.refreshes >= 1);
}

/// The keys Ferry finds in a replicated command are the ones the server itself names
/// (`COMMAND GETKEYS`), for the write commands a stream carries.
#[test]
fn stream_command_keys_match_command_getkeys() {
    let server = RedisServer::start("7.4");
    let commands = [
        "SET a 1 EX 10",
        "SETEX a 10 v",
        "APPEND a x",
        "INCRBY a 2",
        "DEL a b c",
        "UNLINK a b",
        "EXPIRE a 10",
        "PEXPIREAT a 1",
        "PERSIST a",
        "MSET a 1 b 2 c 3",
        "MSETNX a 1 b 2",
        "RENAME a b",
        "RENAMENX a b",
        "COPY a b REPLACE",
        "HSET h f v g w",
        "HDEL h f",
        "LPUSH l a b",
        "LMOVE l m LEFT RIGHT",
        "RPOPLPUSH l m",
        "LMPOP 2 l m LEFT",
        "SADD s a",
        "SMOVE s t a",
        "SINTERSTORE d s t u",
        "SUNIONSTORE d s t",
        "ZADD z 1 a",
        "ZUNIONSTORE d 2 z y WEIGHTS 1 2",
        "ZINTERSTORE d 2 z y",
        "ZDIFFSTORE d 2 z y",
        "ZRANGESTORE d z 0 -1",
        "ZMPOP 2 z y MIN",
        "PFADD p a",
        "PFMERGE d p q",
        "BITOP AND d a b c",
        "SETRANGE a 1 x",
        "XADD x * f v",
        "XTRIM x MAXLEN 10",
        "GEOADD g 1 2 m",
        "GEOSEARCHSTORE d g FROMLONLAT 1 2 BYRADIUS 1 km",
        "SORT l STORE d",
        "EVAL return 2 a b x y",
        "FCALL f 1 a x",
        "RESTORE a 0 payload",
        "PUBLISH ch msg",
        "FLUSHALL",
        "SELECT 0",
        "PING",
    ];
    let mut conn = server.conn();
    let mut keyless = Vec::new();
    for command in commands {
        let args: Vec<bytes::Bytes> = command
            .split(' ')
            .map(|w| bytes::Bytes::from(w.to_string()))
            .collect();
        let ours: Vec<String> = ferry::cluster::command_keys(&args)
            .into_iter()
            .map(|k| String::from_utf8(k.to_vec()).unwrap())
            .collect();
        let mut getkeys = redis::cmd("COMMAND");
        getkeys.arg("GETKEYS");
        for word in command.split(' ') {
            getkeys.arg(word);
        }
        // A keyless command is an error to GETKEYS ("no key arguments").
        let theirs: Vec<String> = getkeys.query(&mut conn).unwrap_or_default();
        assert_eq!(ours, theirs, "{command}");
        if theirs.is_empty() {
            keyless.push(command);
        }
    }
    assert_eq!(keyless, ["PUBLISH ch msg", "FLUSHALL", "SELECT 0", "PING"]);
}
