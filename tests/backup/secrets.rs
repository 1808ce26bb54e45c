//! Passwords reach the servers, never the log, the views or the HTTP answers.

use serde_json::json;

use crate::common::app::{captured_logs, spawn_app};
use crate::common::redis::RedisServer;
use crate::helpers::{restore, take_backup};

const PASSWORD: &str = "backup-s3cret-pw";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn backup_and_restore_with_passwords_never_show_them() {
    let args = ["--requirepass", PASSWORD, "--repl-diskless-sync-delay", "0"];
    let source = RedisServer::start_with("7.2", &args);
    let target = RedisServer::start_with("7.2", &args);
    let url = |s: &RedisServer| format!("redis://:{PASSWORD}@127.0.0.1:{}", s.port);
    let mut c = redis::Client::open(url(&source))
        .unwrap()
        .get_connection()
        .unwrap();
    let _: () = redis::cmd("SET").arg("k").arg("v").query(&mut c).unwrap();

    let app = spawn_app().await;
    let view = take_backup(&app, &url(&source)).await;
    assert!(view["server"].as_str().unwrap().contains("***"), "{view}");
    let id = view["id"].as_str().unwrap();
    let restored = restore(&app, id, &url(&target), "fail").await;
    assert_eq!(restored["outcome"]["keys_written"], 1);
    let mut t = redis::Client::open(url(&target))
        .unwrap()
        .get_connection()
        .unwrap();
    let value: String = redis::cmd("GET").arg("k").query(&mut t).unwrap();
    assert_eq!(value, "v");

    // A refused request quotes nothing of the URL's password either.
    let refused = app
        .post_json(
            "/v1/backups",
            &json!({"server": {"url": format!("redis://:{PASSWORD}@127.0.0.1:1")}}),
        )
        .await;
    let refused = crate::common::app::assert_problem(refused, 409).await;

    let events = app.get("/v1/events?limit=1000").await.text().await.unwrap();
    let list = app.get("/v1/backups").await.text().await.unwrap();
    for (what, text) in [
        ("events", events),
        ("list", list),
        ("refusal", refused.to_string()),
        ("logs", captured_logs()),
    ] {
        assert!(
            !text.contains(PASSWORD),
            "the password leaked into the {what}: {text}"
        );
    }
}
