//! kill -9 of the real `ferry serve` while it streams a Redis Cluster into another, under a write
//! load on every source master: the restarted service resumes every shard (each from its own
//! checkpoint and per-slot offset keys, by partial resync), and after the cutover every counter
//! on the target cluster is exact (none lost, none applied twice) and the two clusters hold the
//! same keys.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use serde_json::json;

use crate::common::cluster::RedisCluster;
use crate::common::cluster_load::{populate_cluster, spawn_counters, Routed};
use crate::harness::{Ferry, WAIT};

/// Every key of every master of `cluster` with its value as `redis-cli --scan` + DUMP-free reads
/// see it: type and a stable rendering, for comparing two clusters.
fn contents(cluster: &RedisCluster) -> std::collections::BTreeMap<String, String> {
    let mut all = std::collections::BTreeMap::new();
    for port in cluster.master_ports() {
        let node = cluster.node(port);
        let mut conn = node.conn();
        let keys: Vec<String> = redis::cmd("KEYS").arg("*").query(&mut conn).unwrap();
        for key in keys.into_iter().filter(|k| !k.starts_with("ferry:")) {
            let kind: String = redis::cmd("TYPE").arg(&key).query(&mut conn).unwrap();
            let value = match kind.as_str() {
                "string" => redis::cmd("GET")
                    .arg(&key)
                    .query::<String>(&mut conn)
                    .unwrap(),
                "hash" => format!(
                    "{:?}",
                    redis::cmd("HGETALL")
                        .arg(&key)
                        .query::<std::collections::BTreeMap<String, String>>(&mut conn)
                        .unwrap()
                ),
                "list" => format!(
                    "{:?}",
                    redis::cmd("LRANGE")
                        .arg(&key)
                        .arg(0)
                        .arg(-1)
                        .query::<Vec<String>>(&mut conn)
                        .unwrap()
                ),
                "set" => {
                    let mut members: Vec<String> =
                        redis::cmd("SMEMBERS").arg(&key).query(&mut conn).unwrap();
                    members.sort();
                    format!("{members:?}")
                }
                "zset" => format!(
                    "{:?}",
                    redis::cmd("ZRANGE")
                        .arg(&key)
                        .arg(0)
                        .arg(-1)
                        .arg("WITHSCORES")
                        .query::<Vec<String>>(&mut conn)
                        .unwrap()
                ),
                other => other.to_string(),
            };
            assert!(
                all.insert(key.clone(), format!("{kind}:{value}")).is_none(),
                "`{key}` on two masters"
            );
        }
    }
    all
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kill9_of_ferry_while_a_cluster_streams_into_a_cluster_then_every_counter_is_exact() {
    let source = RedisCluster::start("7.4", 3, 0);
    let target = RedisCluster::start("7.4", 3, 0);
    populate_cluster(&source, 900);
    let mut ferry = Ferry::start().await;
    let stop = Arc::new(AtomicBool::new(false));
    let writer = spawn_counters(&source, stop.clone());
    let spec = json!({
        "source": {"url": source.url()},
        "target": {"url": target.url()},
        "mode": "live",
        "options": {"verify": "full", "on_conflict": "fail"}
    });
    let (status, view) = ferry.post("/v1/migrations", Some(spec)).await;
    assert_eq!(status, 201, "create: {view:#}");
    let id = view["id"].as_str().unwrap().to_string();
    let (_, report) = ferry
        .post(&format!("/v1/migrations/{id}/validate"), None)
        .await;
    assert_ne!(report["status"], "failed", "validation: {report:#}");
    let (status, body) = ferry
        .post(&format!("/v1/migrations/{id}/start"), None)
        .await;
    assert_eq!(status, 202, "start: {body:#}");
    let view = ferry
        .wait_for(&id, "every shard streaming and checkpointed", |v| {
            let shards = v["progress"]["shards"]
                .as_array()
                .cloned()
                .unwrap_or_default();
            v["phase"] == "streaming"
                && shards.len() == 3
                && shards
                    .iter()
                    .all(|s| s["applied_offset"].as_i64().unwrap_or(0) > 0)
        })
        .await;
    assert_eq!(view["progress"]["shards"].as_array().unwrap().len(), 3);
    tokio::time::sleep(Duration::from_millis(700)).await;
    ferry.kill9();
    // The source takes writes while Ferry is down.
    tokio::time::sleep(Duration::from_millis(700)).await;
    ferry.restart().await;
    let deadline = Instant::now() + WAIT;
    loop {
        let events = ferry.events(&id).await;
        let partial = events
            .iter()
            .filter(|e| {
                e["type"] == "ShardEvent"
                    && e["data"]["event"]["type"] == "LinkResumed"
                    && e["data"]["event"]["data"]["kind"] == "partial"
            })
            .count();
        if partial >= 3 {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "every shard resumes by partial resync: {events:#?}\nferry log:\n{}",
            ferry.log()
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let events = ferry.events(&id).await;
    let redone = events.iter().filter(|e| {
        e["type"] == "ShardEvent"
            && e["data"]["event"]["type"] == "SnapshotStarted"
            && e["data"]["event"]["data"]["redo"].is_string()
    });
    assert_eq!(redone.count(), 0, "no shard copied its snapshot again");
    tokio::time::sleep(Duration::from_millis(500)).await;
    stop.store(true, Ordering::Relaxed);
    let counts = writer.join().unwrap();
    assert!(
        counts.iter().sum::<i64>() > 100,
        "the writer wrote: {counts:?}"
    );
    let report = ferry.cut_over(&id).await;
    assert_eq!(
        (
            report["missing"].as_u64(),
            report["different"].as_u64(),
            report["extra"].as_u64()
        ),
        (Some(0), Some(0), Some(0)),
        "{report:#}"
    );
    let mut routed = Routed::new(&target);
    for (c, n) in counts.iter().enumerate() {
        let key = format!("c:{c}");
        let got: Option<i64> = routed.run(&key, redis::cmd("GET").arg(&key));
        assert_eq!(got.unwrap_or(0), *n, "counter {key}");
    }
    let (from, to) = (contents(&source), contents(&target));
    assert_eq!(from.len(), to.len(), "as many keys");
    assert!(from == to, "the same keys and values");
    target.assert_no_bookkeeping();
}
