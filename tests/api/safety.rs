//! Hostile or careless input (finding 7) and one writer per target (finding 3), through the real
//! HTTP app: non-JSON bodies, browser requests on loopback, passwords with `+` and `&`, URLs that
//! name a database, PATCH that would reuse a stored password, and the lease's `force`.

use std::time::Duration;

use serde_json::{json, Value};

use crate::common::redis::RedisServer;
use crate::helpers::{assert_problem, spawn_app, spawn_app_with_token, TestApp};

async fn migrations(app: &TestApp) -> Value {
    app.get("/v1/migrations")
        .await
        .json::<Value>()
        .await
        .unwrap()["migrations"]
        .clone()
}

/// A browser may send `text/plain` (or no type) to any site without asking first; such a body
/// was parsed as JSON. Now it gets 415 and nothing is created.
#[tokio::test]
async fn a_body_not_sent_as_json_gets_415_and_creates_nothing() {
    let app = spawn_app().await;
    let body = r#"{"source":{"url":"redis://127.0.0.1:1"},"target":{"url":"redis://127.0.0.1:2"}}"#;
    for content_type in [
        Some("text/plain"),
        Some("application/x-www-form-urlencoded"),
        None,
    ] {
        let mut request = app
            .request(reqwest::Method::POST, "/v1/migrations")
            .body(body);
        if let Some(t) = content_type {
            request = request.header("content-type", t);
        }
        let response = request.send().await.unwrap();
        let problem = assert_problem(response, 415).await;
        assert!(
            problem["detail"]
                .as_str()
                .unwrap()
                .contains("application/json"),
            "{problem}"
        );
    }
    assert_eq!(migrations(&app).await, json!([]));
    let upload = app
        .request(reqwest::Method::POST, "/v1/backups/upload")
        .header("content-type", "text/plain")
        .body("REDIS0009")
        .send()
        .await
        .unwrap();
    assert_problem(upload, 415).await;
}

/// Without tokens, on loopback, a page on another site could drive Ferry (cross-site requests)
/// or read its answers (DNS rebinding). Such requests get 403; Ferry's own origin is served.
#[tokio::test]
async fn on_loopback_without_tokens_a_foreign_host_or_origin_gets_403() {
    let app = spawn_app().await;
    let foreign_host = app
        .request(reqwest::Method::GET, "/v1/migrations")
        .header("host", format!("evil.example:{}", app.port))
        .send()
        .await
        .unwrap();
    let problem = assert_problem(foreign_host, 403).await;
    assert!(
        problem["detail"].as_str().unwrap().contains("evil.example"),
        "{problem}"
    );
    let cross_site = app
        .request(reqwest::Method::POST, "/v1/migrations")
        .header("origin", "http://evil.example")
        .json(&json!({"source": {"url": "redis://127.0.0.1:1"}, "target": {"url": "redis://127.0.0.1:2"}}))
        .send()
        .await
        .unwrap();
    assert_problem(cross_site, 403).await;
    assert_eq!(
        migrations(&app).await,
        json!([]),
        "the refused request created nothing"
    );
    let own = app
        .request(reqwest::Method::GET, "/v1/migrations")
        .header("origin", format!("http://127.0.0.1:{}", app.port))
        .send()
        .await
        .unwrap();
    assert_eq!(own.status(), 200, "Ferry's own origin is served");
    let localhost = app
        .request(reqwest::Method::GET, "/readyz")
        .header("host", format!("localhost:{}", app.port))
        .send()
        .await
        .unwrap();
    assert_eq!(localhost.status(), 200);

    // With tokens, a page cannot send the token: names other than loopback ones are fine.
    let mut guarded = spawn_app_with_token("ops", "FERRY_TEST_TOKEN_BROWSER", "tok-b").await;
    guarded.token = Some("tok-b".into());
    let response = guarded
        .request(reqwest::Method::GET, "/v1/migrations")
        .header("host", "ferry.internal.example")
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
}

/// Passwords were form-decoded: a raw `+` became a space and `&` cut the password short, so a
/// server with such a password could not be reached. They are percent-decoded now.
#[tokio::test]
async fn a_password_with_plus_and_ampersand_reaches_the_server_as_typed() {
    let source = RedisServer::start_with("7.2", &["--requirepass", "p+a&ss w"]);
    let target = RedisServer::start("7.2");
    let app = spawn_app().await;
    let url = format!("redis://:p+a&ss%20w@127.0.0.1:{}", source.port);
    let view = app.create(&url, &target.url()).await;
    let id = view["id"].as_str().unwrap();
    let report: Value = app.action(id, "validate").await.json().await.unwrap();
    let connect = report["checks"]
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["id"] == "source.connect")
        .cloned()
        .unwrap();
    assert_eq!(connect["status"], "pass", "{connect:#}");
}

/// `redis://host:port/3` was documented, yet every database was copied under its own number.
/// A URL naming one is refused by name; databases are chosen with `options.filter.dbs` and
/// `options.db_map` (tests/api/shaping.rs), in one place only.
#[tokio::test]
async fn a_url_that_names_a_database_is_refused_with_the_field() {
    let app = spawn_app().await;
    for (source, target, field) in [
        (
            "redis://127.0.0.1:7001/3",
            "redis://127.0.0.1:7002",
            "source.url",
        ),
        (
            "redis://127.0.0.1:7001",
            "redis://127.0.0.1:7002/5",
            "target.url",
        ),
    ] {
        let response = app
            .post_json(
                "/v1/migrations",
                &json!({"source": {"url": source}, "target": {"url": target}}),
            )
            .await;
        let problem = assert_problem(response, 400).await;
        assert_eq!(problem["field"], field, "{problem}");
        assert!(
            problem["detail"].as_str().unwrap().contains("database"),
            "{problem}"
        );
    }
    let response = app
        .post_json(
            "/v1/backups",
            &json!({"server": {"url": "redis://127.0.0.1:7001/2"}}),
        )
        .await;
    assert_eq!(assert_problem(response, 400).await["field"], "server.url");
    assert_eq!(migrations(&app).await, json!([]));
}

/// PATCH kept the stored source password when the target changed: a caller could point a
/// migration at a server of theirs and pull data from a source whose password they never saw.
/// Now such a PATCH is refused (409, naming the field whose password to send again).
#[tokio::test]
async fn patch_never_reuses_a_stored_password_for_another_server() {
    let source = RedisServer::start_with("7.2", &["--requirepass", "src-secret"]);
    let target = RedisServer::start_with("7.2", &["--requirepass", "tgt-secret"]);
    let theirs = RedisServer::start("7.2");
    let app = spawn_app().await;
    let source_url = format!("redis://:src-secret@127.0.0.1:{}", source.port);
    let target_url = format!("redis://:tgt-secret@127.0.0.1:{}", target.port);
    let id = app.create(&source_url, &target_url).await["id"]
        .as_str()
        .unwrap()
        .to_string();
    let path = format!("/v1/migrations/{id}");

    // Another destination without the source's password: refused, naming the field.
    let response = app
        .patch_json(&path, &json!({"target": {"url": theirs.url()}}))
        .await;
    let problem = assert_problem(response, 409).await;
    assert_eq!(problem["field"], "source.url", "{problem}");
    // The redacted form for another server: refused too, not tried as the password `***`.
    let redacted_elsewhere = format!("redis://:***@127.0.0.1:{}", theirs.port);
    let response = app
        .patch_json(&path, &json!({"target": {"url": redacted_elsewhere}}))
        .await;
    assert_problem(response, 409).await;
    // Another source without the target's password: refused.
    let response = app
        .patch_json(&path, &json!({"source": {"url": theirs.url()}}))
        .await;
    assert_eq!(assert_problem(response, 409).await["field"], "target.url");
    // Sending the other end's password proves the caller knows it.
    let response = app
        .patch_json(
            &path,
            &json!({"target": {"url": theirs.url()}, "source": {"url": source_url}}),
        )
        .await;
    assert_eq!(response.status(), 200);
    // The same server with `***` keeps its password, as before.
    let same = format!("redis://:***@127.0.0.1:{}", source.port);
    let response = app
        .patch_json(&path, &json!({"source": {"url": same}, "name": "renamed"}))
        .await;
    assert_eq!(response.status(), 200);
    let report: Value = app.action(&id, "validate").await.json().await.unwrap();
    let connect = report["checks"]
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["id"] == "source.connect")
        .cloned()
        .unwrap();
    assert_eq!(connect["status"], "pass", "{connect:#}");
}

/// Finding 3: one writer per target. A second Ferry (another instance) is refused with 409
/// naming the holder; `force=true` takes the lease over and records it, and the first writer
/// stops at its next renewal instead of writing on.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn force_takes_a_lease_over_records_it_and_stops_the_other_writer() {
    let source = RedisServer::start_with("7.2", &["--repl-diskless-sync-delay", "0"]);
    let target = RedisServer::start("7.2");
    source.cli(&["SET", "k", "v"]);
    let (first, second) = (spawn_app().await, spawn_app().await);
    // The restore path: a relay's target is a read-only replica that holds no lease to take
    // over (it refuses every other writer by its role instead).
    let live = json!({"source": {"url": source.url()}, "target": {"url": target.url()},
        "mode": "live", "options": {"on_conflict": "replace", "verify": "none",
        "transfer": "restore"}});
    let mut ids = vec![];
    for app in [&first, &second] {
        let response = app.post_json("/v1/migrations", &live).await;
        let id = response.json::<Value>().await.unwrap()["id"]
            .as_str()
            .unwrap()
            .to_string();
        assert_eq!(app.action(&id, "validate").await.status(), 200);
        ids.push(id);
    }
    let (one, two) = (&ids[0], &ids[1]);
    assert_eq!(first.action(one, "start").await.status(), 202);
    first
        .wait_for(one, Duration::from_secs(60), |v| v["phase"] == "streaming")
        .await;
    let events: Value = first
        .get(&format!("/v1/migrations/{one}/events"))
        .await
        .json()
        .await
        .unwrap();
    assert!(
        events["events"]
            .as_array()
            .unwrap()
            .iter()
            .any(|e| e["type"] == "LeaseAcquired"),
        "{events:#}"
    );

    let problem = assert_problem(second.action(two, "start").await, 409).await;
    assert!(
        problem["detail"].as_str().unwrap().contains(one.as_str()),
        "{problem}"
    );
    // A restore into the target is a writer too: refused while the lease is held.
    let backup: Value = second
        .post_json("/v1/backups", &json!({"server": {"url": source.url()}}))
        .await
        .json()
        .await
        .unwrap();
    let backup_id = backup["id"].as_str().unwrap().to_string();
    let deadline = std::time::Instant::now() + Duration::from_secs(60);
    loop {
        let b: Value = second
            .get(&format!("/v1/backups/{backup_id}"))
            .await
            .json()
            .await
            .unwrap();
        if b["status"] == "completed" {
            break;
        }
        assert!(std::time::Instant::now() < deadline, "{b:#}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let restore = second
        .post_json(
            &format!("/v1/backups/{backup_id}/restore"),
            &json!({"target": {"url": target.url()}, "on_conflict": "replace"}),
        )
        .await;
    let problem = assert_problem(restore, 409).await;
    assert!(
        problem["detail"].as_str().unwrap().contains(one.as_str()),
        "{problem}"
    );

    let response = second
        .post(&format!("/v1/migrations/{two}/start?force=true"))
        .await;
    assert_eq!(response.status(), 202);
    let events: Value = second
        .get(&format!("/v1/migrations/{two}/events"))
        .await
        .json()
        .await
        .unwrap();
    let taken = events["events"]
        .as_array()
        .unwrap()
        .iter()
        .find(|e| e["type"] == "LeaseAcquired")
        .cloned()
        .expect("LeaseAcquired");
    assert!(
        taken["data"]["took_over"]
            .as_str()
            .unwrap()
            .contains(one.as_str()),
        "{taken:#}"
    );
    // The first writer loses the lease at its next renewal (every 5 s) and stops.
    let view = first
        .wait_for(one, Duration::from_secs(30), |v| v["state"] != "migrating")
        .await;
    assert_eq!(view["state"], "failed", "{view:#}");
    assert_eq!(view["error"]["code"], "lease_lost", "{view:#}");
    assert!(view["error"]["message"]
        .as_str()
        .unwrap()
        .contains(two.as_str()));
    assert_eq!(second.action(two, "cancel").await.status(), 202);
}
