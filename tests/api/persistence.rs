//! Restart persistence: stop the app, start it on the same data dir, and the same state and
//! history are there; and a kill -9 loses no acknowledged event.

use std::time::{Duration, Instant};

use serde_json::{json, Value};

use crate::common::ferry::Ferry;
use crate::common::redis::RedisServer;
use crate::helpers::spawn_app;

#[tokio::test]
async fn state_and_history_survive_a_restart() {
    let (source, target) = (RedisServer::start("7.4"), RedisServer::start("7.4"));
    let app = spawn_app().await;
    let validated = app.create(&source.url(), &target.url()).await["id"]
        .as_str()
        .unwrap()
        .to_string();
    assert_eq!(app.action(&validated, "validate").await.status(), 200);
    let cancelled = app.create(&source.url(), &target.url()).await["id"]
        .as_str()
        .unwrap()
        .to_string();
    assert_eq!(app.action(&cancelled, "cancel").await.status(), 202);
    let configured = app.create(&source.url(), &target.url()).await["id"]
        .as_str()
        .unwrap()
        .to_string();

    let list_before: Value = app.get("/v1/migrations").await.json().await.unwrap();
    let log_before: Value = app.get("/v1/events?limit=1000").await.json().await.unwrap();
    let app = app.restart().await;
    let list_after: Value = app.get("/v1/migrations").await.json().await.unwrap();
    let log_after: Value = app.get("/v1/events?limit=1000").await.json().await.unwrap();
    assert_eq!(list_after, list_before);
    assert_eq!(log_after, log_before);
    assert_eq!(app.view(&validated).await["state"], "validated");
    assert_eq!(app.view(&cancelled).await["state"], "cancelled");
    assert_eq!(app.view(&configured).await["state"], "configured");

    // The restarted app carries on: new events continue the sequence, the credentials still work.
    let next_seq = log_before["next_after"].as_u64().unwrap() + 1;
    let response = app.action(&validated, "start").await;
    assert_eq!(response.status(), 202);
    let page: Value = app
        .get(&format!("/v1/events?after={}", next_seq - 1))
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(page["events"][0]["seq"], next_seq);
    assert_eq!(page["events"][0]["type"], "MigrationStarted");
    // One writer per target: the other migration into it is validated once this one has ended.
    app.wait_for(&validated, Duration::from_secs(60), |v| {
        ["completed", "failed"].contains(&v["state"].as_str().unwrap_or_default())
    })
    .await;
    let report: Value = app
        .action(&configured, "validate")
        .await
        .json()
        .await
        .unwrap();
    assert_ne!(report["status"], "failed", "{report:#}");
}

/// The real binary, killed with SIGKILL while appends are in flight, then restarted: every
/// acknowledged migration is there and the log has no gaps.
#[tokio::test]
async fn a_kill_9_loses_no_acknowledged_event() {
    let mut ferry = Ferry::start().await;
    let body =
        json!({"source": {"url": "redis://127.0.0.1:1"}, "target": {"url": "redis://127.0.0.1:2"}});
    let acknowledged = std::sync::Arc::new(std::sync::Mutex::new(Vec::<String>::new()));
    let writers: Vec<_> = (0..16)
        .map(|_| {
            let (client, url, body, acked) = (
                ferry.http.clone(),
                ferry.url("/v1/migrations"),
                body.clone(),
                acknowledged.clone(),
            );
            tokio::spawn(async move {
                loop {
                    let Ok(response) = client.post(&url).json(&body).send().await else {
                        return;
                    };
                    if response.status() != 201 {
                        return;
                    }
                    let Ok(view) = response.json::<Value>().await else {
                        return;
                    };
                    acked
                        .lock()
                        .unwrap()
                        .push(view["id"].as_str().unwrap().to_string());
                }
            })
        })
        .collect();
    // Past 1,024 events the writer seals chunks too, so the kill can land in a seal as well.
    let deadline = Instant::now() + Duration::from_secs(60);
    while acknowledged.lock().unwrap().len() < 1500 {
        assert!(Instant::now() < deadline, "too few creates acknowledged");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    ferry.kill9();
    for w in writers {
        w.await.unwrap();
    }
    let acknowledged = acknowledged.lock().unwrap().clone();

    ferry.restart().await;
    // Every page of the list, following `next_after`.
    let mut stored = std::collections::HashSet::new();
    let mut path = "/v1/migrations?limit=1000".to_string();
    loop {
        let (status, page) = ferry.get(&path).await;
        assert_eq!(status, 200, "{page:#}");
        for m in page["migrations"].as_array().unwrap() {
            stored.insert(m["id"].as_str().unwrap().to_string());
        }
        match page["next_after"].as_str() {
            Some(next) => path = format!("/v1/migrations?limit=1000&after={next}"),
            None => break,
        }
    }
    let lost: Vec<&String> = acknowledged
        .iter()
        .filter(|id| !stored.contains(*id))
        .collect();
    assert!(
        lost.is_empty(),
        "{} acknowledged migrations lost: {lost:?}",
        lost.len()
    );
    let mut after = 0;
    loop {
        let (_, page) = ferry
            .get(&format!("/v1/events?after={after}&limit=1000"))
            .await;
        let events = page["events"].as_array().unwrap();
        if events.is_empty() {
            break;
        }
        for e in events {
            after += 1;
            assert_eq!(e["seq"], after, "the log has a gap");
        }
    }
    assert_eq!(
        after as usize,
        stored.len(),
        "one MigrationCreated per stored migration"
    );
}
