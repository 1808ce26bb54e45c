//! Authentication, exposure, and secret redaction.

use std::sync::Arc;

use ferry::app::{Application, StartupError};
use ferry::config::ConfigError;
use serde_json::{json, Value};

use crate::common::redis::RedisServer;
use crate::helpers::{
    assert_problem, captured_logs, settings_for, spawn_app, spawn_app_with_token,
};

#[tokio::test]
async fn with_tokens_configured_v1_needs_a_valid_bearer_token_and_the_name_is_the_actor() {
    let mut app = spawn_app_with_token("ops-bot", "FERRY_TEST_TOKEN_AUTH", "tok-123").await;
    let problem = assert_problem(app.get("/v1/migrations").await, 401).await;
    assert!(
        problem["detail"].as_str().unwrap().contains("Bearer"),
        "{problem}"
    );
    app.token = Some("wrong".into());
    let response = app.get("/v1/migrations").await;
    assert_eq!(response.headers()["www-authenticate"], "Bearer");
    assert_problem(response, 401).await;
    app.token = None;
    assert_eq!(
        app.get("/healthz").await.status(),
        200,
        "health needs no token"
    );
    assert_eq!(
        app.get("/openapi.json").await.status(),
        200,
        "the spec needs no token"
    );

    app.token = Some("tok-123".into());
    let id = app
        .create("redis://127.0.0.1:1", "redis://127.0.0.1:2")
        .await["id"]
        .as_str()
        .unwrap()
        .to_string();
    assert_eq!(app.action(&id, "cancel").await.status(), 202);
    let page: Value = app
        .get(&format!("/v1/migrations/{id}/events"))
        .await
        .json()
        .await
        .unwrap();
    let actors: Vec<&str> = page["events"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["actor"].as_str().unwrap())
        .collect();
    assert_eq!(actors, ["ops-bot (admin)", "ops-bot (admin)"]);
}

#[tokio::test]
async fn a_public_listen_address_without_tokens_refuses_to_start() {
    let dir = tempfile::tempdir().unwrap();
    let mut settings = settings_for(dir.path());
    settings.listen = "0.0.0.0:0".into();
    match Application::build(&settings).await {
        Err(StartupError::Config(ConfigError::InsecureListen(_))) => {}
        Err(other) => panic!("wrong error: {other}"),
        Ok(_) => panic!("started on 0.0.0.0 without a token"),
    }
    let message = ConfigError::InsecureListen("0.0.0.0:8080".parse().unwrap()).to_string();
    assert!(
        message.contains("[[auth.tokens]]"),
        "the message says how to fix it: {message}"
    );
}

#[tokio::test]
async fn a_token_whose_variable_is_unset_refuses_to_start() {
    let dir = Arc::new(tempfile::tempdir().unwrap());
    let mut settings = settings_for(dir.path());
    settings.auth.tokens = vec![ferry::config::TokenSetting {
        name: "ci".into(),
        token_env: "FERRY_TEST_TOKEN_NEVER_SET".into(),
        role: ferry::config::Role::Viewer,
    }];
    assert!(matches!(
        Application::build(&settings).await,
        Err(StartupError::Config(ConfigError::TokenMissing { .. }))
    ));
}

/// The password goes in through create and patch, through validation against a server that
/// requires it, through an error; it must come out nowhere: not in any response, event, log
/// line, or in clear in the data dir.
#[tokio::test]
async fn no_password_appears_in_any_response_event_log_or_file() {
    const PASSWORD: &str = "Sup3r-s3cret-pw-1";
    const OTHER: &str = "An0ther-s3cret-pw-2";
    let source = RedisServer::start("7.2");
    crate::lifecycle::require_password(&source, PASSWORD);
    let target = RedisServer::start("7.0");
    let app = spawn_app().await;
    let source_url = format!("redis://default:{PASSWORD}@127.0.0.1:{}", source.port);
    let mut bodies = Vec::new();

    let response = app
        .post_json(
            "/v1/migrations",
            &json!({"source": {"url": source_url}, "target": {"url": target.url()}}),
        )
        .await;
    assert_eq!(response.status(), 201);
    let view: Value = response.json().await.unwrap();
    let id = view["id"].as_str().unwrap().to_string();
    assert_eq!(
        view["source"]["url"],
        format!("redis://default:***@127.0.0.1:{}", source.port)
    );
    bodies.push(view.to_string());

    let report = app.action(&id, "validate").await.text().await.unwrap();
    assert!(
        report.contains("\"passed"),
        "the stored password works: {report}"
    );
    bodies.push(report);
    // A wrong password: the failure message must not quote it either.
    let wrong = format!("redis://default:{OTHER}@127.0.0.1:{}", source.port);
    let response = app
        .patch_json(
            &format!("/v1/migrations/{id}"),
            &json!({"source": {"url": wrong}}),
        )
        .await;
    bodies.push(response.text().await.unwrap());
    bodies.push(app.action(&id, "validate").await.text().await.unwrap());
    // Passwords in bad input.
    for bad in [
        json!({"source": {"url": format!("redis://u:{OTHER}@h:99999")}, "target": {"url": "redis://h:1"}}),
        json!({"source": {"url": "redis://h:1"}, "target": {"url": "redis://h:2"}, "mode": format!("redis://u:{OTHER}@h:1")}),
        json!({"source": {"url": "redis://h:1"}, "target": {"url": "redis://h:2"}, "options": {"backup": format!("redis://u:{OTHER}@h:1")}}),
    ] {
        bodies.push(
            app.post_json("/v1/migrations", &bad)
                .await
                .text()
                .await
                .unwrap(),
        );
    }
    for path in [
        format!("/v1/migrations/{id}"),
        "/v1/migrations".to_string(),
        format!("/v1/migrations/{id}/events?limit=1000"),
        "/v1/events?limit=1000".to_string(),
    ] {
        bodies.push(app.get(&path).await.text().await.unwrap());
    }
    bodies.push(app.action(&id, "cancel").await.text().await.unwrap());

    for body in &bodies {
        assert!(
            !body.contains(PASSWORD) && !body.contains(OTHER),
            "a response leaks: {body}"
        );
    }
    let events = &bodies[bodies.len() - 2];
    assert!(
        events.contains("***"),
        "events carry the redacted URL: {events}"
    );
    let logs = captured_logs();
    assert!(!logs.is_empty(), "logs were captured");
    assert!(
        !logs.contains(PASSWORD) && !logs.contains(OTHER),
        "a log line leaks a password"
    );

    let dir = app.path();
    let (_, _dir_guard) = app.stop().await;
    for entry in walk(&dir) {
        let bytes = std::fs::read(&entry).unwrap();
        for secret in [PASSWORD, OTHER] {
            assert!(
                !bytes.windows(secret.len()).any(|w| w == secret.as_bytes()),
                "{} holds a password in clear",
                entry.display()
            );
        }
    }
}

fn walk(dir: &std::path::Path) -> Vec<std::path::PathBuf> {
    let mut files = Vec::new();
    for entry in std::fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        if path.is_dir() {
            files.extend(walk(&path));
        } else {
            files.push(path);
        }
    }
    files
}
