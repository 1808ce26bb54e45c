//! kill -9 of Ferry during a relay: the target, a replica of Ferry, loses its master; the
//! restarted Ferry points it at its new listener and the target resumes with its own
//! `PSYNC <replid> <offset>`, which Ferry forwards to the source. No offset of Ferry's is
//! involved: exactly-once is the source's and the target's own replication.

use std::time::{Duration, Instant};

use serde_json::json;

use crate::common::redis::RedisServer;
use crate::harness::{assert_converged, seed, Ferry, Load, WAIT};

fn info_field(server: &RedisServer, section: &str, field: &str) -> String {
    let text: String = redis::cmd("INFO")
        .arg(section)
        .query(&mut server.conn())
        .unwrap();
    text.lines()
        .find_map(|l| l.strip_prefix(&format!("{field}:")))
        .unwrap_or_default()
        .trim()
        .to_string()
}

fn config(server: &RedisServer, name: &str) -> String {
    let pair: Vec<String> = redis::cmd("CONFIG")
        .arg("GET")
        .arg(name)
        .query(&mut server.conn())
        .unwrap();
    pair.get(1).cloned().unwrap_or_default()
}

/// The target is standalone again, with its settings as before the relay.
fn assert_released(target: &RedisServer) {
    assert_eq!(info_field(target, "replication", "role"), "master");
    assert_eq!(config(target, "masterauth"), "");
    assert_eq!(config(target, "repl-diskless-load"), "disabled");
}

async fn wait_for_event(
    ferry: &Ferry,
    id: &str,
    what: &str,
    pred: impl Fn(&serde_json::Value) -> bool,
) {
    let deadline = Instant::now() + WAIT;
    loop {
        let events = ferry.events(id).await;
        if events.iter().any(&pred) {
            return;
        }
        let kinds: Vec<_> = events.iter().map(|e| e["type"].clone()).collect();
        assert!(
            Instant::now() < deadline,
            "no {what}: {kinds:?}\n{}",
            ferry.log()
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kill9_during_a_relay_snapshot_and_while_streaming_then_the_copy_is_exact() {
    // 1 ms per key while the source saves: the kill lands inside the relayed snapshot.
    let source = RedisServer::start_with(
        "7.2",
        &[
            "--repl-diskless-sync-delay",
            "0",
            "--rdb-key-save-delay",
            "1000",
        ],
    );
    let target = RedisServer::start("7.2");
    seed(&source, 4000);
    let mut ferry = Ferry::start().await;
    let load = Load::start(&source);
    let id = ferry
        .start_live_with(&source, &target, json!({"transfer": "relay"}))
        .await;
    ferry
        .wait_for(&id, "the relayed snapshot", |v| {
            v["phase"] == "snapshot" && v["progress"]["rdb_bytes_read"].is_u64()
        })
        .await;
    // The source saves ~4000 keys at 1 ms each (about 3.5 s): a second in, the target is
    // loading what Ferry relays.
    // (Nothing asks the target anything here: a loading replica answers only between chunks.)
    tokio::time::sleep(Duration::from_secs(1)).await;
    ferry.kill9();
    ferry.restart().await;
    ferry.wait_streaming(&id).await;
    let view = ferry.view(&id).await;
    assert_eq!(view["transfer"]["transfer"], "relay", "{view:#}");
    let events = ferry.events(&id).await;
    let snapshots = events
        .iter()
        .filter(|e| e["type"] == "SnapshotStarted")
        .count();
    let kinds: Vec<_> = events
        .iter()
        .map(|e| format!("{} {}", e["at"], e["type"]))
        .collect();
    assert_eq!(
        snapshots,
        2,
        "the interrupted load is redone once: {kinds:?}\n{}",
        ferry.log()
    );

    load.wait_more(300).await;
    ferry.kill9();
    // While Ferry is down the target cannot follow; the backlog (1 MB) holds what it misses.
    load.wait_more(200).await;
    ferry.restart().await;
    wait_for_event(&ferry, &id, "a partial resume of the relay", |e| {
        e["type"] == "LinkResumed" && e["data"]["kind"] == "partial"
    })
    .await;
    load.wait_more(200).await;
    let ops = load.stop();
    let report = ferry.cut_over(&id).await;
    assert_converged(&report, &source, &target);
    assert_released(&target);
    // Exact counts: every INCR of the load is in the target's counters, once.
    let sum = |s: &RedisServer| -> i64 {
        (0..20)
            .map(|k| {
                redis::cmd("GET")
                    .arg(format!("counter:{k}"))
                    .query::<Option<i64>>(&mut s.conn())
                    .unwrap()
                    .unwrap_or(0)
            })
            .sum()
    };
    assert_eq!(
        sum(&target),
        ops as i64,
        "one INCR per load round, none twice"
    );
    assert_eq!(sum(&source), sum(&target));
    eprintln!("relay: 2 kills survived, {ops} load rounds, 0 differences, counters exact");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_relay_cancelled_after_a_restart_releases_the_target() {
    let source = RedisServer::start_with("7.2", &["--repl-diskless-sync-delay", "0"]);
    let target = RedisServer::start("7.2");
    seed(&source, 200);
    let mut ferry = Ferry::start().await;
    let id = ferry
        .start_live_with(&source, &target, json!({"transfer": "relay"}))
        .await;
    ferry.wait_streaming(&id).await;
    ferry.kill9();
    // Ferry is gone: the target still replicates from its dead address.
    assert_eq!(info_field(&target, "replication", "role"), "slave");
    ferry.restart().await;
    ferry.wait_streaming(&id).await;
    let (status, body) = ferry
        .post(&format!("/v1/migrations/{id}/cancel"), None)
        .await;
    assert_eq!(status, 202, "cancel: {body:#}");
    ferry
        .wait_for(&id, "cancelled", |v| v["state"] == "cancelled")
        .await;
    assert_released(&target);
    let released = ferry
        .events(&id)
        .await
        .iter()
        .any(|e| e["type"] == "TargetReleased");
    assert!(released, "the release is recorded");
    // The target kept the data it had and accepts writes again.
    let _: () = redis::cmd("SET")
        .arg("after")
        .arg("1")
        .query(&mut target.conn())
        .expect("the released target accepts writes");
}
