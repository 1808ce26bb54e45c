//! Bad input: every kind gets problem+json naming what to fix; never a 500.

use serde_json::{json, Value};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

use crate::helpers::{assert_problem, spawn_app};

fn spec_with(extra: Value) -> Value {
    let mut spec = json!({"source": {"url": "redis://127.0.0.1:7001"}, "target": {"url": "redis://127.0.0.1:7002"}});
    for (k, v) in extra.as_object().unwrap() {
        spec[k] = v.clone();
    }
    spec
}

#[tokio::test]
async fn bad_bodies_get_400_naming_the_field() {
    let app = spawn_app().await;
    let cases = [
        (spec_with(json!({"speed": 9})), "speed"),
        (spec_with(json!({"mode": "fast"})), "mode"),
        (
            spec_with(json!({"options": {"verify": "everything"}})),
            "options.verify",
        ),
        (
            spec_with(json!({"options": {"on_conflict": "merge"}})),
            "options.on_conflict",
        ),
        (
            spec_with(json!({"options": {"backup": "yes"}})),
            "options.backup",
        ),
        (
            spec_with(json!({"options": {"turbo": true}})),
            "options.turbo",
        ),
        (
            spec_with(json!({"source": {"url": "http://127.0.0.1:1"}})),
            "source.url",
        ),
        (
            spec_with(json!({"target": {"url": "redis://h:99999"}})),
            "target.url",
        ),
        (
            spec_with(json!({"target": {"url": "redis://h:1/notadb"}})),
            "target.url",
        ),
        (
            spec_with(json!({"source": {"url": "redis://h:1", "tls": true}})),
            "source.tls",
        ),
        (
            spec_with(json!({"target": {"url": "redis://h:1", "tls": [null, null]}})),
            "target.tls",
        ),
        (
            spec_with(json!({"source": {"url": "redis://h:1", "tls": [null, null]}})),
            "source.tls",
        ),
        (
            spec_with(json!({"source": {"rdb": ["0192f3a4-5b6c-7d8e-9f00-112233445566"]}})),
            "source.rdb",
        ),
        (spec_with(json!({"name": 5})), "name"),
        (json!({"source": {"url": "redis://h:1"}}), "target"),
        (json!([1, 2]), "body"),
    ];
    for (body, field) in cases {
        let problem = assert_problem(app.post_json("/v1/migrations", &body).await, 400).await;
        assert_eq!(problem["field"], field, "{body} → {problem}");
        assert!(
            problem["detail"]
                .as_str()
                .unwrap()
                .contains(field.rsplit('.').next().unwrap()),
            "the detail names the field: {problem}"
        );
    }
    for raw in ["{", "", "not json", "{\"source\": }"] {
        let problem = assert_problem(app.post_raw("/v1/migrations", raw).await, 400).await;
        assert_eq!(problem["field"], "body", "{raw:?} → {problem}");
    }
    let listed: Value = app.get("/v1/migrations").await.json().await.unwrap();
    assert_eq!(listed["migrations"], json!([]), "nothing was created");
}

#[tokio::test]
async fn bad_patches_get_400_and_unknown_ids_404() {
    let app = spawn_app().await;
    let id = app
        .create("redis://127.0.0.1:7001", "redis://127.0.0.1:7002")
        .await["id"]
        .as_str()
        .unwrap()
        .to_string();
    let path = format!("/v1/migrations/{id}");
    let problem = assert_problem(
        app.patch_json(&path, &json!({"state": "validated"})).await,
        400,
    )
    .await;
    assert_eq!(problem["field"], "state");
    let problem = assert_problem(
        app.patch_json(&path, &json!({"options": {"verify": 1}}))
            .await,
        400,
    )
    .await;
    assert_eq!(problem["field"], "options.verify");
    let problem = assert_problem(
        app.patch_json(&path, &json!({"target": {"url": "ftp://x"}}))
            .await,
        400,
    )
    .await;
    assert_eq!(problem["field"], "target.url");
    assert_eq!(app.view(&id).await["state"], "configured");

    let unknown = "01936f5e-8a4b-7c2d-9e1f-0a1b2c3d4e5f";
    for path in [
        format!("/v1/migrations/{unknown}"),
        format!("/v1/migrations/{unknown}/events"),
        format!("/v1/migrations/{unknown}/verification"),
    ] {
        assert_problem(app.get(&path).await, 404).await;
    }
    for action in ["validate", "start", "cutover", "cancel"] {
        assert_problem(
            app.post(&format!("/v1/migrations/{unknown}/{action}"))
                .await,
            404,
        )
        .await;
    }
    assert_problem(
        app.patch_json(&format!("/v1/migrations/{unknown}"), &json!({}))
            .await,
        404,
    )
    .await;
    let problem = assert_problem(app.get("/v1/migrations/not-a-uuid").await, 400).await;
    assert_eq!(problem["field"], "id");
    assert_problem(app.get("/v1/nothing-here").await, 404).await;
}

#[tokio::test]
async fn bad_query_parameters_get_400() {
    let app = spawn_app().await;
    for (path, field) in [
        ("/v1/migrations?state=sleeping", "state"),
        ("/v1/migrations?colour=red", "colour"),
        ("/v1/events?type=MigrationExploded", "type"),
        ("/v1/events?limit=0", "limit"),
        ("/v1/events?limit=5000", "limit"),
        ("/v1/events?after=-1", "after"),
    ] {
        let problem = assert_problem(app.get(path).await, 400).await;
        assert!(
            problem["field"].as_str().is_some_and(|f| f == field)
                || problem["detail"].as_str().unwrap().contains(field),
            "{path} → {problem}"
        );
    }
}

#[tokio::test]
async fn an_oversized_body_gets_413() {
    let app = spawn_app().await;
    let huge = format!(
        "{{\"name\": \"{}\", \"source\": {{\"url\": \"redis://h:1\"}}, \"target\": {{\"url\": \"redis://h:2\"}}}}",
        "x".repeat(200 * 1024)
    );
    assert_problem(app.post_raw("/v1/migrations", huge.clone()).await, 413).await;
    // Also without a Content-Length: a chunked body is cut off at the limit.
    let mut stream = tokio::net::TcpStream::connect(("127.0.0.1", app.port))
        .await
        .unwrap();
    let mut request = String::from(
        "POST /v1/migrations HTTP/1.1\r\nHost: localhost\r\nContent-Type: application/json\r\n\
         Transfer-Encoding: chunked\r\nConnection: close\r\n\r\n",
    );
    for chunk in huge.as_bytes().chunks(8192) {
        request.push_str(&format!(
            "{:x}\r\n{}\r\n",
            chunk.len(),
            String::from_utf8_lossy(chunk)
        ));
    }
    request.push_str("0\r\n\r\n");
    // The server may answer and close before reading everything; a write error is fine then.
    let _ = stream.write_all(request.as_bytes()).await;
    let mut answer = Vec::new();
    let _ = stream.read_to_end(&mut answer).await;
    let answer = String::from_utf8_lossy(&answer);
    assert!(answer.starts_with("HTTP/1.1 413"), "{answer}");
    assert!(answer.contains("application/problem+json"), "{answer}");
}
