//! The relay transfer end to end through the HTTP API and through `ferry migrate`: the choice is
//! validated, shown in the view and recorded, the data arrives, and the target ends up a
//! standalone server again.

use std::process::Command;
use std::time::Duration;

use serde_json::{json, Value};

use crate::common::redis::RedisServer;
use crate::helpers::spawn_app;

fn fill(server: &RedisServer, n: usize) {
    let mut pipe = redis::pipe();
    for i in 0..n {
        pipe.cmd("SET").arg(format!("k:{i}")).arg(i).ignore();
        pipe.cmd("HSET")
            .arg(format!("h:{}", i % 10))
            .arg(format!("f{i}"))
            .arg(i)
            .ignore();
    }
    pipe.query::<()>(&mut server.conn()).unwrap();
}

fn dbsize(server: &RedisServer) -> i64 {
    redis::cmd("DBSIZE").query(&mut server.conn()).unwrap()
}

fn role(server: &RedisServer) -> String {
    let info: String = redis::cmd("INFO")
        .arg("replication")
        .query(&mut server.conn())
        .unwrap();
    info.lines()
        .find_map(|l| l.strip_prefix("role:"))
        .unwrap_or_default()
        .trim()
        .to_string()
}

fn check<'a>(report: &'a Value, id: &str) -> &'a Value {
    report["checks"]
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["id"] == id)
        .unwrap_or_else(|| panic!("no check {id} in {report:#}"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_relay_runs_end_to_end_through_the_api() {
    let source = RedisServer::start_with("7.2", &["--repl-diskless-sync-delay", "0"]);
    let target = RedisServer::start("7.2");
    fill(&source, 2000);
    let app = spawn_app().await;
    let response = app
        .post_json(
            "/v1/migrations",
            &json!({"source": {"url": source.url()}, "target": {"url": target.url()},
                    "options": {"verify": "full"}}),
        )
        .await;
    assert_eq!(response.status(), 201);
    let view: Value = response.json().await.unwrap();
    assert_eq!(view["options"]["transfer"], "auto", "the default");
    let id = view["id"].as_str().unwrap().to_string();

    let report: Value = app.action(&id, "validate").await.json().await.unwrap();
    assert_ne!(report["status"], "failed", "{report:#}");
    let transfer = check(&report, "transfer");
    assert!(
        transfer["message"]
            .as_str()
            .unwrap()
            .contains("replicates through Ferry"),
        "{transfer:#}"
    );
    for id in [
        "relay.commands",
        "relay.versions",
        "relay.target_empty",
        "relay.reachable",
        "relay.tls",
    ] {
        assert_eq!(
            check(&report, id)["details"]["met"],
            true,
            "{id}: {report:#}"
        );
    }

    assert_eq!(app.action(&id, "start").await.status(), 202);
    let done = app
        .wait_for(&id, Duration::from_secs(90), |v| {
            v["state"] == "completed" || v["state"] == "failed"
        })
        .await;
    assert_eq!(done["state"], "completed", "{done:#}");
    assert_eq!(done["transfer"]["transfer"], "relay", "{done:#}");
    assert!(done["transfer"]["reason"]
        .as_str()
        .unwrap()
        .starts_with("auto:"));
    assert_eq!(done["progress"]["keys_total"], dbsize(&source));
    let types = app.event_types(&id).await;
    for kind in [
        "TransferChosen",
        "SnapshotCompleted",
        "TargetReleased",
        "VerificationCompleted",
    ] {
        assert!(types.iter().any(|t| t == kind), "{kind} in {types:?}");
    }
    assert_eq!(dbsize(&target), dbsize(&source));
    assert_eq!(role(&target), "master");
    // The target held this migration's lease, which Redis counts: with `on-empty-db` it wrote
    // the RDB to disk before loading it. Its own log says how it loaded.
    let log = std::fs::read_to_string(target.dir().join("redis.log")).unwrap();
    assert!(
        log.contains("with EOF to parser") && !log.contains("with EOF to disk"),
        "the target loads straight from the socket: {log}"
    );
    let diskless_load: Vec<String> = redis::cmd("CONFIG")
        .arg("GET")
        .arg("repl-diskless-load")
        .query(&mut target.conn())
        .unwrap();
    assert_eq!(diskless_load[1], "disabled", "its own setting is back");
    let h: Vec<String> = redis::cmd("HVALS")
        .arg("h:3")
        .query(&mut target.conn())
        .unwrap();
    assert_eq!(h.len(), 200);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_explicit_relay_into_a_target_with_keys_fails_validation_naming_the_check() {
    let source = RedisServer::start("7.2");
    let target = RedisServer::start("7.2");
    fill(&source, 10);
    fill(&target, 3);
    let app = spawn_app().await;
    let response = app
        .post_json(
            "/v1/migrations",
            &json!({"source": {"url": source.url()}, "target": {"url": target.url()},
                    "options": {"transfer": "relay", "on_conflict": "replace"}}),
        )
        .await;
    let id = response.json::<Value>().await.unwrap()["id"]
        .as_str()
        .unwrap()
        .to_string();
    let report: Value = app.action(&id, "validate").await.json().await.unwrap();
    assert_eq!(report["status"], "failed", "{report:#}");
    let empty = check(&report, "relay.target_empty");
    assert_eq!(empty["status"], "fail", "{empty:#}");
    assert!(
        empty["message"].as_str().unwrap().contains("on_conflict"),
        "{empty:#}"
    );
    assert_eq!(check(&report, "transfer")["status"], "fail");
    // auto, on the same target, passes and says why it restores.
    let patched = app
        .patch_json(
            &format!("/v1/migrations/{id}"),
            &json!({"options": {"transfer": "auto"}}),
        )
        .await;
    assert_eq!(patched.status(), 200);
    let report: Value = app.action(&id, "validate").await.json().await.unwrap();
    assert_ne!(report["status"], "failed", "{report:#}");
    let empty = check(&report, "relay.target_empty");
    assert!(
        empty["message"]
            .as_str()
            .unwrap()
            .contains("auto uses restore"),
        "{empty:#}"
    );
}

#[test]
fn ferry_migrate_relays_and_says_so() {
    let source = RedisServer::start_with("7.2", &["--repl-diskless-sync-delay", "0"]);
    let target = RedisServer::start("7.2");
    fill(&source, 500);
    let data_dir = tempfile::tempdir().unwrap();
    let out = Command::new(env!("CARGO_BIN_EXE_ferry"))
        .args([
            "migrate",
            "--source",
            &source.url(),
            "--target",
            &target.url(),
        ])
        .args([
            "--transfer",
            "relay",
            "--verify",
            "full",
            "--no-backup",
            "--data-dir",
        ])
        .arg(data_dir.path())
        .env("FERRY_CONFIG", "/dev/null")
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{stdout}{stderr}");
    assert!(
        stdout.contains("transfer relay: transfer relay was requested"),
        "{stdout}"
    );
    assert!(
        stdout.contains("target released (snapshot loaded)"),
        "{stdout}"
    );
    assert!(
        stdout.contains("0 missing, 0 different, 0 extra"),
        "{stdout}"
    );
    assert_eq!(dbsize(&target), dbsize(&source));
    assert_eq!(role(&target), "master");
}
