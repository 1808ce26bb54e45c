//! `source.read: scan` through the real app: a source that refuses SYNC/PSYNC is migrated live
//! by the real supervisor and engine, and what the user sees says how it was read.

use std::time::Duration;

use serde_json::{json, Value};

use crate::common::redis::RedisServer;
use crate::helpers::spawn_app;

const WAIT: Duration = Duration::from_secs(60);

fn notify_setting(server: &RedisServer) -> String {
    server.config_get("notify-keyspace-events")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_source_without_psync_is_migrated_live_by_scan_through_the_api() {
    let source = RedisServer::start_without_sync("7.2");
    let target = RedisServer::start("7.2");
    let mut c = source.conn();
    let mut pipe = redis::pipe();
    for i in 0..200 {
        pipe.cmd("SET").arg(format!("key:{i}")).arg(i).ignore();
    }
    pipe.query::<()>(&mut c).unwrap();

    let app = spawn_app().await;
    let created: Value = app
        .post_json(
            "/v1/migrations",
            &json!({"source": {"url": source.url(), "read": "scan"},
                    "target": {"url": target.url()}, "mode": "live",
                    "options": {"set_keyspace_notifications": true}}),
        )
        .await
        .json()
        .await
        .unwrap();
    let id = created["id"].as_str().unwrap().to_string();
    assert_eq!(created["source"]["read"], "scan", "{created:#}");
    let report: Value = app.action(&id, "validate").await.json().await.unwrap();
    assert_ne!(report["status"], "failed", "{report:#}");
    let read = report["checks"]
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["id"] == "source.read")
        .unwrap();
    assert_eq!(read["status"], "warn", "{read:#}");
    assert_eq!(app.action(&id, "start").await.status(), 202);

    let view = app
        .wait_for(&id, WAIT, |v| {
            v["phase"] == "streaming" && v["progress"]["lag_keys"].is_u64()
        })
        .await;
    assert_eq!(view["transfer"]["transfer"], "restore", "{view:#}");
    assert_eq!(notify_setting(&source), "AE");
    // Changes after the scan reach the target through the notifications.
    let _: () = redis::cmd("SET")
        .arg("late")
        .arg("1")
        .query(&mut c)
        .unwrap();
    let _: () = redis::cmd("DEL").arg("key:7").query(&mut c).unwrap();
    assert_eq!(app.action(&id, "cutover").await.status(), 202);
    let view = app.wait_for(&id, WAIT, |v| v["state"] == "completed").await;
    assert_eq!(view["progress"]["lag_keys"], 0, "{view:#}");

    let mut t = target.conn();
    let late: Option<String> = redis::cmd("GET").arg("late").query(&mut t).unwrap();
    assert_eq!(late.as_deref(), Some("1"));
    let gone: Option<String> = redis::cmd("GET").arg("key:7").query(&mut t).unwrap();
    assert_eq!(gone, None);
    let keys: Vec<String> = redis::cmd("KEYS").arg("*").query(&mut t).unwrap();
    let data: Vec<&String> = keys.iter().filter(|k| !k.starts_with("ferry:")).collect();
    assert_eq!(data.len(), 200, "199 of the 200 keys, plus `late`");
    assert_eq!(notify_setting(&source), "", "put back");

    let types = app.event_types(&id).await;
    for expected in [
        "ScanStarted",
        "KeyspaceNotificationsSet",
        "ScanCheckpoint",
        "VerificationCompleted",
        "CutoverCompleted",
        "KeyspaceNotificationsRestored",
        "MigrationCompleted",
    ] {
        assert!(
            types.iter().any(|t| t == expected),
            "{expected} in {types:?}"
        );
    }
}
