//! The backups page in a real browser, used as a person would: capture a server's backup,
//! download its file, upload that file back as a second backup, restore it into another server
//! (flushing it, after a confirmation that names that server), then roll back a failed migration
//! from its page. Every step is checked against the servers and the API, not just the page.

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use fantoccini::Locator;
use serde_json::{json, Value};

use crate::browser::{dbsize, seed, Browser};
use crate::common::app::TestApp;
use crate::common::redis::RedisServer;

const WAIT: Duration = Duration::from_secs(60);

/// The backup labelled `label`, once the API lists it.
async fn backup_labelled(app: &TestApp, label: &str) -> Value {
    let deadline = Instant::now() + WAIT;
    loop {
        let list: Value = app
            .get("/v1/backups?limit=1000")
            .await
            .json()
            .await
            .unwrap();
        if let Some(found) = list["backups"]
            .as_array()
            .unwrap()
            .iter()
            .find(|b| b["label"] == label)
        {
            return found.clone();
        }
        assert!(
            Instant::now() < deadline,
            "no backup labelled {label:?}: {list:#}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// The file the browser saved as `name`, once it is complete (Chromium writes `*.crdownload`
/// first and renames it when done).
async fn downloaded(dir: &Path, name: &str) -> PathBuf {
    let path = dir.join(name);
    let deadline = Instant::now() + WAIT;
    loop {
        let partial = std::fs::read_dir(dir)
            .unwrap()
            .flatten()
            .any(|e| e.file_name().to_string_lossy().ends_with(".crdownload"));
        if path.exists() && !partial {
            return path;
        }
        let seen: Vec<_> = std::fs::read_dir(dir)
            .unwrap()
            .flatten()
            .map(|e| e.file_name())
            .collect();
        assert!(
            Instant::now() < deadline,
            "{name} never landed in {dir:?}: {seen:?}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

fn has_key(server: &RedisServer, key: &str) -> bool {
    redis::cmd("EXISTS")
        .arg(key)
        .query::<i64>(&mut server.conn())
        .unwrap()
        == 1
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_person_captures_downloads_uploads_restores_and_rolls_back_with_the_dashboard() {
    let origin = RedisServer::start_with("7.2", &["--repl-diskless-sync-delay", "0"]);
    let target = RedisServer::start_with("7.2", &["--repl-diskless-sync-delay", "0"]);
    seed(&origin, "origin", 2_000);
    seed(&target, "target", 300);
    let app: TestApp = crate::helpers::app().await;
    let browser = Browser::start().await;
    let c = &browser.client;
    c.goto(&format!("{}/#/backups", app.address)).await.unwrap();
    browser
        .wait_text("#backups tbody", "the empty list", |t| {
            t.contains("No backups yet")
        })
        .await;

    // Capture: the confirmation names the server that will fork.
    browser.fill("#capture-server", &origin.url()).await;
    browser.fill("#capture-label", "origin before").await;
    browser.click("#capture-form button[type='submit']").await;
    browser.confirm_naming(&origin.url()).await;
    let captured = backup_labelled(&app, "origin before").await;
    let captured_id = captured["id"].as_str().unwrap().to_string();
    let row = format!("#backups tr[data-id='{captured_id}']");
    browser
        .wait_text(&row, "the capture completes", |t| t.contains("completed"))
        .await;

    // Download: the file the browser saves is the backup's file, byte for byte.
    browser
        .click(&format!("button[data-download='{captured_id}']"))
        .await;
    let file = downloaded(&browser.downloads, &format!("{captured_id}.rdb")).await;
    let saved = std::fs::read(&file).unwrap();
    let served = app
        .get(&format!("/v1/backups/{captured_id}/download"))
        .await
        .bytes()
        .await
        .unwrap();
    assert!(saved.starts_with(b"REDIS"), "an RDB file");
    assert_eq!(
        saved,
        served.to_vec(),
        "the saved file is the backup's file"
    );

    // Upload that file back as a second backup.
    c.find(Locator::Css("#upload-file"))
        .await
        .unwrap()
        .send_keys(file.to_str().unwrap())
        .await
        .unwrap();
    browser.fill("#upload-label", "uploaded copy").await;
    browser.click("#upload-form button[type='submit']").await;
    let uploaded = backup_labelled(&app, "uploaded copy").await;
    let uploaded_id = uploaded["id"].as_str().unwrap().to_string();
    browser
        .wait_text(
            &format!("#backups tr[data-id='{uploaded_id}']"),
            "the upload is listed as completed",
            |t| t.contains("completed"),
        )
        .await;
    browser.screenshot("7-backups").await;

    // Restore the uploaded copy into the target, flushing it: the confirmation names the target.
    browser
        .click(&format!("button[data-restore='{uploaded_id}']"))
        .await;
    let form = format!("restore-{uploaded_id}");
    browser
        .fill(&format!("#{form}-target"), &target.url())
        .await;
    browser.choose(&format!("#{form}-conflict"), "flush").await;
    browser
        .click(&format!("#{form}-form button[type='submit']"))
        .await;
    let warning = browser
        .wait_text("#confirm-text", "the restore confirmation", |t| {
            t.contains(&target.url())
        })
        .await;
    assert!(warning.contains("deleted first"), "{warning}");
    browser.screenshot("8-restore-confirmation").await;
    browser.click("#confirm-ok").await;
    browser
        .wait_text("#restores tbody", "the restore completes", |t| {
            t.contains(&uploaded_id) && t.contains("completed")
        })
        .await;
    assert_eq!(dbsize(&target), 2_000, "the target holds the backup's keys");
    assert!(has_key(&target, "origin:1999") && !has_key(&target, "target:0"));

    // A migration into that target fails its verification (the target holds keys the source
    // lacks); its page offers the rollback to the restore point taken before it wrote.
    let fresh = RedisServer::start_with("7.2", &["--repl-diskless-sync-delay", "0"]);
    seed(&fresh, "fresh", 50);
    let created: Value = app
        .post_json(
            "/v1/migrations",
            &json!({"name": "into the restored target", "source": {"url": fresh.url()},
                "target": {"url": target.url()},
                "options": {"on_conflict": "replace", "verify": "full", "backup": true}}),
        )
        .await
        .json()
        .await
        .unwrap();
    let mid = created["id"].as_str().expect("a migration id").to_string();
    assert_eq!(app.action(&mid, "validate").await.status(), 200);
    assert_eq!(app.action(&mid, "start").await.status(), 202);
    let view = app
        .wait_for(&mid, WAIT, |v| {
            ["completed", "failed", "cancelled"].contains(&v["state"].as_str().unwrap_or_default())
        })
        .await;
    assert_eq!(view["state"], "failed", "{view:#}");
    assert!(
        has_key(&target, "fresh:0"),
        "the migration wrote to the target"
    );

    c.goto(&format!("{}/#/migrations/{mid}", app.address))
        .await
        .unwrap();
    browser.click("#rollback").await;
    browser.confirm_naming(&target.url()).await;
    let deadline = Instant::now() + WAIT;
    let restore_id = loop {
        let view = app.view(&mid).await;
        if let Some(id) = view["rollback"]["restore_id"].as_str() {
            break id.to_string();
        }
        assert!(Instant::now() < deadline, "no rollback started: {view:#}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    c.goto(&format!("{}/#/backups", app.address)).await.unwrap();
    let restored = browser
        .wait_text(
            &format!("#restores tr[data-id='{restore_id}']"),
            "the rollback completes",
            |t| t.contains("completed"),
        )
        .await;
    assert!(restored.contains("rollback of"), "{restored}");
    // The migration page left behind hears the rollback's last events after the person moved
    // on; it once redrew itself over this page. A second later, this is still the backups page.
    tokio::time::sleep(Duration::from_secs(1)).await;
    let heading = c
        .find(Locator::Css("h1"))
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert_eq!(
        heading, "Backups and restores",
        "another page drew over this one"
    );
    browser.screenshot("9-rolled-back").await;
    browser.close().await;

    // The target is as the migration found it: the backup's keys, none of the migration's.
    assert_eq!(dbsize(&target), 2_000);
    assert!(has_key(&target, "origin:0") && !has_key(&target, "fresh:0"));
    assert_eq!(app.view(&mid).await["rolled_back"], true);
    let chain: Value = app.get("/v1/audit/verify").await.json().await.unwrap();
    assert_eq!(chain["status"], "intact", "{chain}");
}
