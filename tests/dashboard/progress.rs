//! Truthful progress, as a new user sees it: the phase says what the source is doing during its
//! diskless-sync delay, a diskless snapshot's % and ETA are estimates that say so, the live phase
//! has a lag in seconds and an apply rate, and the same numbers reach `/metrics`.

use std::time::Duration;

use serde_json::{json, Value};

use crate::common::redis::RedisServer;
use crate::helpers::app;
use crate::metrics::{parse, value};

const WAIT: Duration = Duration::from_secs(60);

fn seed(server: &RedisServer, n: usize) {
    let mut conn = server.conn();
    for chunk in (0..n).collect::<Vec<_>>().chunks(1000) {
        let mut pipe = redis::pipe();
        for i in chunk {
            pipe.cmd("SET")
                .arg(format!("k:{i}"))
                .arg("x".repeat(100))
                .ignore();
        }
        pipe.query::<()>(&mut conn).unwrap();
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_phase_names_the_sync_delay_and_progress_says_what_is_estimated() {
    let source = RedisServer::start_with(
        "7.2",
        &[
            "--repl-diskless-sync-delay",
            "3",
            "--rdb-key-save-delay",
            "100",
        ],
    );
    let target = RedisServer::start("7.2");
    seed(&source, 20_000);
    let app = app().await;
    let response = app
        .post_json(
            "/v1/migrations",
            // The restore path: its progress (estimates, apply rate, lag in seconds) is what this shows.
            &json!({"source": {"url": source.url()}, "target": {"url": target.url()}, "mode": "live",
                "options": {"transfer": "restore"}}),
        )
        .await;
    let id = response.json::<Value>().await.unwrap()["id"]
        .as_str()
        .unwrap()
        .to_string();
    let report: Value = app
        .post(&format!("/v1/migrations/{id}/validate"))
        .await
        .json()
        .await
        .unwrap();
    let delay = report["checks"]
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["id"] == "source.sync_delay")
        .expect("the sync delay check")
        .clone();
    assert_eq!(delay["status"], "warn", "{delay}");
    assert_eq!(
        app.post(&format!("/v1/migrations/{id}/start"))
            .await
            .status(),
        202
    );

    // Within the 3 s delay the phase says so (not `backup`: the empty target needs no restore point).
    let waiting = app
        .wait_for(&id, WAIT, |v| {
            v["phase_detail"]
                .as_str()
                .is_some_and(|d| d.contains("repl-diskless-sync-delay 3 s"))
        })
        .await;
    assert_eq!(waiting["phase"], "snapshot", "{waiting:#}");
    assert_eq!(waiting["progress"]["keys_total"], 20_000, "{waiting:#}");

    // Diskless: the size is unknown, so % and ETA are estimates, and say so.
    let copying = app
        .wait_for(&id, WAIT, |v| {
            v["progress"]["keys_written"].as_u64().unwrap_or(0) > 0 && v["phase"] == "snapshot"
        })
        .await;
    let p = &copying["progress"];
    assert_eq!(p["estimated"], true, "{copying:#}");
    assert!(
        p["percent"].as_f64().is_some_and(|x| x > 0.0 && x < 100.0),
        "{copying:#}"
    );
    assert!(
        p["rdb_bytes_total"].as_u64().is_some(),
        "an estimated total: {copying:#}"
    );
    assert!(
        copying["phase_detail"]
            .as_str()
            .unwrap()
            .contains("estimated"),
        "{copying:#}"
    );

    // Live: lag in seconds and an apply rate, in the view and in /metrics.
    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let writer = {
        let stop = stop.clone();
        let mut conn = source.conn();
        std::thread::spawn(move || {
            while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                let _: Result<(), _> = redis::cmd("INCR").arg("counter").query(&mut conn);
                std::thread::sleep(Duration::from_millis(5));
            }
        })
    };
    let live = app
        .wait_for(&id, WAIT, |v| {
            v["phase"] == "streaming" && v["progress"]["apply_rate"].as_f64().is_some()
        })
        .await;
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    writer.join().unwrap();
    assert!(
        live["progress"]["lag_seconds"].as_f64().is_some(),
        "{live:#}"
    );
    assert_eq!(live["progress"]["estimated"], false);
    assert_eq!(live["progress"]["percent"], 100.0);
    let metrics = parse(&app.get("/metrics").await.text().await.unwrap());
    let migration = format!("migration=\"{id}\"");
    for name in [
        "ferry_migration_lag_bytes",
        "ferry_migration_lag_seconds",
        "ferry_migration_apply_rate",
        "ferry_migration_keys_done",
        "ferry_migration_snapshot_total_bytes",
    ] {
        assert!(
            value(&metrics, name, &[&migration]).is_some(),
            "{name} for the running migration"
        );
    }
    assert_eq!(
        value(
            &metrics,
            "ferry_migration_state",
            &[&migration, "state=\"migrating\""]
        ),
        Some(1.0)
    );

    // Cancelled: recorded, and the offset key goes with it.
    assert_eq!(
        app.post(&format!("/v1/migrations/{id}/cancel"))
            .await
            .status(),
        202
    );
    app.wait_for(&id, WAIT, |v| v["state"] == "cancelled").await;
    assert_eq!(
        target
            .cli(&["EXISTS", &format!("ferry:offset:{id}")])
            .trim(),
        "0"
    );
}
