//! The servers fail under a running Ferry: the source restarts, the target restarts.

use std::time::{Duration, Instant};

use crate::common::redis::RedisServer;
use crate::harness::{assert_converged, seed, Ferry, Load, WAIT};

async fn wait_link_event(ferry: &Ferry, id: &str, wanted: &str) {
    let deadline = Instant::now() + WAIT;
    while !ferry.link_events(id).await.iter().any(|e| e == wanted) {
        assert!(
            Instant::now() < deadline,
            "no {wanted}: {:?}\n{}",
            ferry.link_events(id).await,
            ferry.log()
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_restarted_source_is_resumed_by_partial_resync() {
    let mut source = RedisServer::start_with("7.2", &["--repl-diskless-sync-delay", "0"]);
    let target = RedisServer::start("7.2");
    seed(&source, 500);
    let ferry = Ferry::start().await;
    let load = Load::start(&source);
    let id = ferry.start_live(&source, &target).await;
    ferry.wait_streaming(&id).await;
    load.wait_more(300).await;
    load.stop();
    // A source without persistence forgets its replid; SAVE keeps replid and offset in the RDB
    // it reloads, so it can continue where Ferry stopped.
    assert!(source.cli(&["SAVE"]).contains("OK"), "SAVE failed");
    source.restart();
    let load = Load::start(&source);
    wait_link_event(&ferry, &id, "LinkLost:source:").await;
    wait_link_event(&ferry, &id, "LinkResumed:source:partial").await;
    load.wait_more(300).await;
    let ops = load.stop();
    let report = ferry.cut_over(&id).await;
    assert_converged(&report, &source, &target);
    eprintln!(
        "source restart: resumed {:?}, {ops} load rounds after, 0 differences",
        ferry.link_events(&id).await
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_restarted_target_gets_the_in_flight_window_again_without_gap_or_duplicate() {
    let source = RedisServer::start_with("7.2", &["--repl-diskless-sync-delay", "0"]);
    // The target keeps what it acknowledged (AOF, fsync always): the offset key in it says
    // exactly which writes survived the restart.
    let mut target =
        RedisServer::start_with("7.2", &["--appendonly", "yes", "--appendfsync", "always"]);
    seed(&source, 500);
    let ferry = Ferry::start().await;
    let load = Load::start(&source);
    let id = ferry.start_live(&source, &target).await;
    ferry.wait_streaming(&id).await;
    load.wait_more(300).await;
    target.restart();
    wait_link_event(&ferry, &id, "LinkLost:target:").await;
    wait_link_event(&ferry, &id, "LinkResumed:target:partial").await;
    load.wait_more(300).await;
    let ops = load.stop();
    let report = ferry.cut_over(&id).await;
    assert_converged(&report, &source, &target);
    eprintln!("target restart: 1 restart survived, {ops} load rounds, 0 differences");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_target_restarted_mid_snapshot_gets_the_snapshot_again() {
    let source = RedisServer::start_with(
        "7.2",
        &[
            "--repl-diskless-sync-delay",
            "0",
            "--rdb-key-save-delay",
            "1000",
        ],
    );
    // No persistence: the restarted target comes back empty.
    let mut target = RedisServer::start("7.2");
    seed(&source, 3000);
    let ferry = Ferry::start().await;
    let load = Load::start(&source);
    let id = ferry.start_live(&source, &target).await;
    ferry
        .wait_for(&id, "keys written by the snapshot", |v| {
            v["phase"] == "snapshot" && v["progress"]["keys_written"].as_u64().unwrap_or(0) > 0
        })
        .await;
    target.restart();
    wait_link_event(&ferry, &id, "LinkLost:target:").await;
    wait_link_event(&ferry, &id, "LinkResumed:source:full").await;
    ferry.wait_streaming(&id).await;
    load.wait_more(200).await;
    let ops = load.stop();
    let report = ferry.cut_over(&id).await;
    assert_converged(&report, &source, &target);
    eprintln!("target restart mid-snapshot: snapshot redone, {ops} load rounds, 0 differences");
}
