//! Token roles (401 without a valid token, 403 with a role too small, the role in the actor) and
//! HTTPS for the API (`[http.tls]`, and plain HTTP beyond loopback refused at start).

use std::sync::Arc;

use ferry::app::{Application, StartupError};
use ferry::config::{ConfigError, Role};
use serde_json::Value;

use crate::common::tls::Pki;
use crate::helpers::{assert_problem, settings_for, spawn_app_with_tokens, spawn_https_app};

#[tokio::test]
async fn each_role_reaches_what_it_may_and_a_smaller_one_gets_403_problem_json() {
    let mut app = spawn_app_with_tokens(&[
        (
            "dashboard",
            "FERRY_TEST_ROLE_VIEWER",
            "view-1",
            Role::Viewer,
        ),
        (
            "ops-bot",
            "FERRY_TEST_ROLE_OPERATOR",
            "oper-1",
            Role::Operator,
        ),
        ("oncall", "FERRY_TEST_ROLE_ADMIN", "admin-1", Role::Admin),
    ])
    .await;
    assert_problem(app.get("/v1/migrations").await, 401).await;

    // The operator runs migrations; the actor carries name and role.
    app.token = Some("oper-1".into());
    let created = app
        .create("redis://127.0.0.1:1", "redis://127.0.0.1:2")
        .await;
    let id = created["id"].as_str().unwrap().to_string();
    assert_eq!(app.action(&id, "cancel").await.status(), 202);

    // The viewer reads everything but may change nothing.
    app.token = Some("view-1".into());
    assert_eq!(app.get("/v1/migrations").await.status(), 200);
    assert_eq!(app.get(&format!("/v1/migrations/{id}")).await.status(), 200);
    assert_eq!(app.get("/v1/guide/redis").await.status(), 200);
    assert_eq!(app.get("/v1/backups").await.status(), 200);
    let problem = assert_problem(app.action(&id, "validate").await, 403).await;
    let detail = problem["detail"].as_str().unwrap();
    assert!(
        detail.contains("`operator`") && detail.contains("`viewer`"),
        "{problem}"
    );
    assert_eq!(problem["type"], "urn:ferry:problem:forbidden");
    let backup = "0192f3a4-5b6c-7d8e-9f00-112233445566";
    let problem = assert_problem(
        app.get(&format!("/v1/backups/{backup}/download")).await,
        403,
    )
    .await;
    assert!(
        problem["detail"].as_str().unwrap().contains("`admin`"),
        "{problem}"
    );

    // The operator may not roll back or delete: those are the admin's.
    app.token = Some("oper-1".into());
    assert_problem(app.action(&id, "rollback").await, 403).await;
    assert_problem(app.delete(&format!("/v1/backups/{backup}")).await, 403).await;

    // The admin passes the role check (and meets the real answer: no such backup).
    app.token = Some("admin-1".into());
    assert_problem(app.delete(&format!("/v1/backups/{backup}")).await, 404).await;

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
    assert_eq!(actors, ["ops-bot (operator)", "ops-bot (operator)"]);
}

#[tokio::test]
async fn the_api_serves_https_and_refuses_plain_http_beyond_loopback() {
    let pki = Pki::make();
    let app = spawn_https_app(
        &pki.path("server.pem"),
        &pki.path("server.key"),
        &pki.path("ca.pem"),
    )
    .await;
    assert!(app.address.starts_with("https://"));
    assert_eq!(app.get("/healthz").await.status(), 200);
    assert_eq!(app.get("/v1/guide/redis").await.status(), 200);
    // Plain HTTP to the HTTPS port gets no HTTP answer.
    let plain = reqwest::Client::new()
        .get(format!("http://127.0.0.1:{}/healthz", app.port))
        .send()
        .await;
    assert!(plain.map(|r| !r.status().is_success()).unwrap_or(true));

    // Beyond loopback, with a token but without TLS: refused at start, saying why.
    std::env::set_var("FERRY_TEST_TOKEN_PUBLIC", "t-public");
    let dir = Arc::new(tempfile::tempdir().unwrap());
    let mut settings = settings_for(dir.path());
    settings.listen = "0.0.0.0:0".into();
    settings.auth.tokens = vec![ferry::config::TokenSetting {
        name: "ci".into(),
        token_env: "FERRY_TEST_TOKEN_PUBLIC".into(),
        role: Role::Viewer,
    }];
    match Application::build(&settings).await {
        Err(StartupError::Config(e @ ConfigError::PlainHttp(_))) => {
            let text = e.to_string();
            assert!(
                text.contains("in clear") && text.contains("[http.tls]"),
                "{text}"
            );
        }
        Err(other) => panic!("wrong error: {other}"),
        Ok(_) => panic!("served plain HTTP on 0.0.0.0"),
    }
    // A key file that is not there stops the start, naming it.
    settings.http.tls = Some(ferry::config::HttpTlsSettings {
        cert_file: pki.path("server.pem"),
        key_file: pki.path("missing.key"),
    });
    match Application::build(&settings).await {
        Err(e @ StartupError::HttpTls(_)) => {
            assert!(e.to_string().contains("missing.key"), "{e}");
        }
        Err(other) => panic!("wrong error: {other}"),
        Ok(_) => panic!("started without its key"),
    }
    // With the certificate and key: it starts.
    settings.http.tls = Some(ferry::config::HttpTlsSettings {
        cert_file: pki.path("server.pem"),
        key_file: pki.path("server.key"),
    });
    let app = Application::build(&settings)
        .await
        .expect("HTTPS on 0.0.0.0");
    drop(app);
}
