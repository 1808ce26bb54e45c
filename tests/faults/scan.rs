//! kill -9 of Ferry while a scan reader (`source.read: scan`) follows a source without
//! SYNC/PSYNC: the restarted job copies every key again over its own earlier copies, puts the
//! source's notification setting back at its end (the first run recorded it), and converges.

use serde_json::json;

use crate::common::redis::RedisServer;
use crate::harness::{assert_converged, seed, Ferry, Load};

fn notify_setting(server: &RedisServer) -> String {
    server.config_get("notify-keyspace-events")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kill9_while_a_scan_reader_follows_then_the_job_completes_and_puts_the_setting_back() {
    let source = RedisServer::start_without_sync("7.2");
    let target = RedisServer::start("7.2");
    source.cli(&["CONFIG", "SET", "notify-keyspace-events", "Kg"]);
    let before = notify_setting(&source);
    seed(&source, 500);
    let mut ferry = Ferry::start().await;
    let load = Load::start(&source);
    let spec = json!({
        "source": {"url": source.url(), "read": "scan"},
        "target": {"url": target.url()},
        "mode": "live",
        "options": {"set_keyspace_notifications": true, "on_conflict": "fail"}
    });
    let (status, view) = ferry.post("/v1/migrations", Some(spec)).await;
    assert_eq!(status, 201, "{view:#}");
    let id = view["id"].as_str().unwrap().to_string();
    let (_, report) = ferry
        .post(&format!("/v1/migrations/{id}/validate"), None)
        .await;
    assert_ne!(report["status"], "failed", "{report:#}");
    let (status, body) = ferry
        .post(&format!("/v1/migrations/{id}/start"), None)
        .await;
    assert_eq!(status, 202, "{body:#}");
    ferry.wait_streaming(&id).await;
    assert_ne!(notify_setting(&source), before, "Ferry set it");
    load.wait_more(200).await;

    ferry.kill9();
    // Nothing put it back: the process died.
    assert_ne!(notify_setting(&source), before);
    load.wait_more(200).await;
    ferry.restart().await;
    // The view may still say `streaming` from before the kill: wait for the new run's own.
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(60);
    let events = loop {
        let events = ferry.events(&id).await;
        if events
            .iter()
            .filter(|e| e["type"] == "StreamingStarted")
            .count()
            == 2
        {
            break events;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "no second StreamingStarted: {events:#?}"
        );
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    };
    let count = |kind: &str| events.iter().filter(|e| e["type"] == kind).count();
    assert_eq!(count("ScanStarted"), 2, "scanned again after the restart");
    assert_eq!(
        count("KeyspaceNotificationsSet"),
        1,
        "the first run's record stands"
    );
    assert!(
        events
            .iter()
            .any(|e| e["type"] == "SnapshotStarted" && e["data"]["redo"].is_string()),
        "the second scan says it redoes the copy: {events:#?}"
    );
    load.wait_more(200).await;
    let ops = load.stop();
    let report = ferry.cut_over(&id).await;
    assert_eq!(report["mode"], "full", "{report:#}");
    assert_converged(&report, &source, &target);
    assert_eq!(
        notify_setting(&source),
        before,
        "put back after the restart"
    );
    let events = ferry.events(&id).await;
    assert!(events
        .iter()
        .any(|e| e["type"] == "KeyspaceNotificationsRestored"
            && e["data"]["value"] == before.as_str()));
    eprintln!("kill -9 of a scan reader: {ops} load rounds, 0 differences");
}
