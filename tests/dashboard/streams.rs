//! `GET /v1/events/stream` and `GET /v1/migrations/{id}/events/stream`, read as a client would.

use std::time::Duration;

use serde_json::json;

use crate::common::app::assert_problem;
use crate::helpers::{app, Message, Sse};

const WAIT: Duration = Duration::from_secs(10);

async fn create(app: &crate::common::app::TestApp, name: &str) -> String {
    let response = app
        .post_json(
            "/v1/migrations",
            &json!({"name": name, "source": {"url": "redis://127.0.0.1:1"}, "target": {"url": "redis://127.0.0.1:2"}}),
        )
        .await;
    assert_eq!(response.status(), 201);
    let view: serde_json::Value = response.json().await.unwrap();
    view["id"].as_str().unwrap().to_string()
}

#[tokio::test]
async fn a_stream_replays_after_a_seq_follows_live_and_resumes_with_last_event_id() {
    let app = app().await;
    let first = create(&app, "one").await;
    let patched = app
        .patch_json(
            &format!("/v1/migrations/{first}"),
            &json!({"name": "one, renamed"}),
        )
        .await;
    assert_eq!(patched.status(), 200);

    let mut stream = Sse::open(&app, "/v1/events/stream?after=0", None).await;
    assert_eq!(stream.next(WAIT).await, Some(Message::Retry(2000)));
    let (id, event) = stream.next_event(WAIT).await;
    assert_eq!((id, event["type"].as_str()), (1, Some("MigrationCreated")));
    assert_eq!(event["seq"], 1);
    assert_eq!(event["aggregate_id"], first.as_str());
    assert!(
        event["hash"].as_str().is_some_and(|h| h.len() == 64),
        "{event}"
    );
    let (id, event) = stream.next_event(WAIT).await;
    assert_eq!((id, event["type"].as_str()), (2, Some("MigrationUpdated")));
    let second_hash = event["hash"].clone();

    // Live: an event recorded now arrives without asking.
    let second = create(&app, "two").await;
    let (id, event) = stream.next_event(WAIT).await;
    assert_eq!(
        (id, event["aggregate_id"].as_str()),
        (3, Some(second.as_str()))
    );
    assert_eq!(
        event["prev_hash"], second_hash,
        "the chain links the live event"
    );
    // Idle: a heartbeat comment within the (test's 1 s) interval.
    assert_eq!(
        stream.next(WAIT).await,
        Some(Message::Comment("heartbeat".into()))
    );
    drop(stream);

    // A reconnect with Last-Event-ID 2 continues with 3: nothing missed, nothing twice.
    let mut resumed = Sse::open(&app, "/v1/events/stream?after=0", Some("2")).await;
    let (id, _) = resumed.next_event(WAIT).await;
    assert_eq!(id, 3);

    // Without `after` the stream starts from now.
    let mut from_now = Sse::open(&app, "/v1/events/stream", None).await;
    let third = create(&app, "three").await;
    let (id, event) = from_now.next_event(WAIT).await;
    assert_eq!(
        (id, event["aggregate_id"].as_str()),
        (4, Some(third.as_str()))
    );

    // A type filter.
    let mut updates = Sse::open(
        &app,
        "/v1/events/stream?after=0&type=MigrationUpdated",
        None,
    )
    .await;
    let (id, _) = updates.next_event(WAIT).await;
    assert_eq!(id, 2);
}

#[tokio::test]
async fn a_migration_stream_carries_that_migration_only() {
    let app = app().await;
    let a = create(&app, "a").await;
    let b = create(&app, "b").await;
    let mut stream = Sse::open(
        &app,
        &format!("/v1/migrations/{a}/events/stream?after=0"),
        None,
    )
    .await;
    let (id, event) = stream.next_event(WAIT).await;
    assert_eq!((id, event["aggregate_id"].as_str()), (1, Some(a.as_str())));
    // b changes, then a: only a's event comes.
    app.patch_json(&format!("/v1/migrations/{b}"), &json!({"name": "b2"}))
        .await;
    app.patch_json(&format!("/v1/migrations/{a}"), &json!({"name": "a2"}))
        .await;
    let (id, event) = stream.next_event(WAIT).await;
    assert_eq!(id, 4);
    assert_eq!(event["aggregate_id"], a.as_str());
    assert_eq!(event["type"], "MigrationUpdated");
}

#[tokio::test]
async fn bad_stream_requests_are_problems_that_name_the_fix() {
    let app = app().await;
    let response = app
        .client
        .get(format!("{}/v1/events/stream", app.address))
        .header("Last-Event-ID", "yesterday")
        .send()
        .await
        .unwrap();
    let problem = assert_problem(response, 400).await;
    assert_eq!(problem["field"], "Last-Event-ID");
    let problem = assert_problem(app.get("/v1/events/stream?type=Nope").await, 400).await;
    assert_eq!(problem["field"], "type");
    let missing = uuid::Uuid::now_v7();
    assert_problem(
        app.get(&format!("/v1/migrations/{missing}/events/stream"))
            .await,
        404,
    )
    .await;
}

#[tokio::test]
async fn stopping_the_app_ends_its_open_streams_and_releases_the_store() {
    let app = app().await;
    let mut stream = Sse::open(&app, "/v1/events/stream", None).await;
    let started = std::time::Instant::now();
    let app = app.restart().await;
    assert!(
        started.elapsed() < Duration::from_secs(8),
        "a graceful stop waited {:?} for an open stream",
        started.elapsed()
    );
    loop {
        match stream.next(WAIT).await {
            None => break,
            Some(Message::Comment(_)) | Some(Message::Retry(_)) => continue,
            Some(other) => panic!("unexpected {other:?}"),
        }
    }
    assert_eq!(app.get("/v1/migrations").await.status(), 200);
}
