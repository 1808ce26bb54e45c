//! The migration page shows a dry run's report as tables (counts per db and type, the biggest
//! keys, what the target cannot take).

use std::time::Duration;

use serde_json::{json, Value};

use crate::browser::Browser;
use crate::common::dry_run as data;
use crate::helpers::app;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_migration_page_shows_the_dry_run_report() {
    let source = data::source();
    let target = data::target();
    data::populate(&source);
    let app = app().await;
    let response = app
        .post_json(
            "/v1/migrations",
            &json!({"source": {"url": source.url()}, "target": {"url": target.url()},
                "mode": "dry_run", "options": {"write_probe": false}}),
        )
        .await;
    let id = response.json::<Value>().await.unwrap()["id"]
        .as_str()
        .unwrap()
        .to_string();
    assert_eq!(app.action(&id, "validate").await.status(), 200);
    assert_eq!(app.action(&id, "start").await.status(), 202);
    app.wait_for(&id, Duration::from_secs(60), |v| v["state"] == "completed")
        .await;

    let browser = Browser::start().await;
    browser
        .client
        .goto(&format!("{}/#/migrations/{id}", app.address))
        .await
        .unwrap();
    let summary = browser
        .wait_text("#dry-run-summary", "the dry run's summary", |t| {
            t.contains("12 keys")
        })
        .await;
    assert!(summary.contains("2 expired"), "{summary}");
    let cells = browser
        .wait_text("#dry-run-databases", "the counts per db and type", |t| {
            t.contains("stream")
        })
        .await;
    assert!(cells.contains("db 0 string 6"), "{cells}");
    let biggest = browser
        .wait_text("#dry-run-biggest", "the biggest keys", |t| !t.is_empty())
        .await;
    assert!(biggest.contains("db 0 big:str"), "{biggest}");
    let cannot = browser
        .wait_text("#dry-run-cannot-take", "what the target cannot take", |t| {
            !t.is_empty()
        })
        .await;
    assert!(
        cannot.contains("field ttls") && cannot.contains("hash:fttl"),
        "{cannot}"
    );
    browser.close().await;
}
