//! Dry run and ACL users through the HTTP API and `ferry migrate --dry-run`: the report in the
//! view, nothing taken or written on the target, and no password hash anywhere in the JSON.

use std::process::Command;
use std::time::Duration;

use serde_json::{json, Value};

use crate::common::app::spawn_app;
use crate::common::dry_run::{self as data, target_state};
use crate::common::redis::RedisServer;
use ferry::model::dry_run::DryRunReport;

#[tokio::test(flavor = "multi_thread")]
async fn a_dry_run_through_the_api_shows_its_report_and_takes_nothing() {
    let app = spawn_app().await;
    let source = data::source();
    let target = data::target();
    data::populate(&source);
    let before = target_state(&target);
    let response = app
        .post_json(
            "/v1/migrations",
            &json!({"source": {"url": source.url()}, "target": {"url": target.url()},
                "mode": "dry_run"}),
        )
        .await;
    assert_eq!(response.status(), 201);
    let view: Value = response.json().await.unwrap();
    let id = view["id"].as_str().unwrap().to_string();
    assert_eq!(view["options"]["write_probe"], true, "{view:#}");
    assert_eq!(view["options"]["acl"], "ignore");

    // Field TTLs into 7.2 would fail a migration's validation; a dry run is where they are
    // counted, so they only warn here.
    let validated = app.action(&id, "validate").await;
    assert_eq!(validated.status(), 200);
    let report: Value = validated.json().await.unwrap();
    assert_ne!(report["status"], "failed", "{report:#}");
    let softened: Vec<&str> = report["checks"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|c| {
            c["status"] == "warn"
                && c["message"]
                    .as_str()
                    .unwrap()
                    .contains("a dry run writes nothing")
        })
        .map(|c| c["id"].as_str().unwrap())
        .collect();
    assert_eq!(softened, ["versions", "target.conflicts"], "{report:#}");
    assert_eq!(app.action(&id, "start").await.status(), 202);
    let view = app
        .wait_for(&id, Duration::from_secs(60), |v| {
            v["state"] == "completed" || v["state"] == "failed"
        })
        .await;
    assert_eq!(view["state"], "completed", "{view:#}");
    assert!(
        view.get("lease").is_none(),
        "a dry run takes no lease: {view:#}"
    );
    assert!(view.get("backup_id").is_none());
    let report: DryRunReport = serde_json::from_value(view["dry_run_report"].clone()).unwrap();
    data::assert_report(&report);
    assert_eq!(report.probe.keys_written, 2000);
    assert_eq!(report.probe.keys_removed, 2000);

    let types = app.event_types(&id).await;
    for absent in [
        "LeaseAcquired",
        "BackupStarted",
        "TargetInventoried",
        "SnapshotCompleted",
    ] {
        assert!(!types.iter().any(|t| t == absent), "{absent} in {types:?}");
    }
    assert_eq!(types.iter().filter(|t| *t == "DryRunCompleted").count(), 1);
    let listed: Value = app
        .get("/v1/events?type=DryRunCompleted")
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(listed["events"].as_array().unwrap().len(), 1, "{listed:#}");

    let after = target_state(&target);
    assert_eq!(after.contents, before.contents);
    assert_eq!(after.keyspace, before.keyspace);
    assert_eq!(
        after.ferry_keys,
        Vec::<String>::new(),
        "no lease, no offset key"
    );
    assert_eq!(
        after.changes - before.changes,
        4000,
        "the probe's changes only"
    );
}

#[test]
fn ferry_migrate_dry_run_prints_the_report_as_text_and_as_json() {
    let source = data::source();
    let target = data::target();
    data::populate(&source);
    let before = target_state(&target);
    let run = |json: bool| {
        let data_dir = tempfile::tempdir().unwrap();
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_ferry"));
        cmd.args(["migrate", "--dry-run", "--no-write-probe", "--source"])
            .arg(source.url())
            .args(["--target", &target.url(), "--data-dir"])
            .arg(data_dir.path())
            .env("FERRY_CONFIG", "/dev/null");
        if json {
            cmd.arg("--json");
        }
        let out = cmd.output().unwrap();
        let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
        let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
        assert!(out.status.success(), "{stdout}{stderr}");
        stdout
    };
    let text = run(false);
    for fragment in [
        "dry run completed: 12 keys (2 expired",
        "big:str",
        "CANNOT TAKE (field TTLs): 1 key",
        "`hash:fttl` (db 0)",
        "CANNOT TAKE (over proto-max-bulk-len): 1 key",
        "ETA:",
        "not even a probe",
    ] {
        assert!(text.contains(fragment), "{fragment:?} in:\n{text}");
    }
    let json = run(true);
    let line = json
        .lines()
        .find(|l| l.contains("\"DryRunCompleted\""))
        .unwrap_or_else(|| panic!("no DryRunCompleted line in {json}"));
    let event: Value = serde_json::from_str(line).unwrap();
    let report: DryRunReport = serde_json::from_value(event["data"]["report"].clone()).unwrap();
    data::assert_report(&report);
    assert_eq!(
        target_state(&target),
        before,
        "no probe: nothing changed at all"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn acl_copy_through_the_api_shows_no_password_hash_anywhere() {
    let app = spawn_app().await;
    let source = RedisServer::start_with("7.2", &["--repl-diskless-sync-delay", "0"]);
    let target = RedisServer::start("7.2");
    let _: () = redis::cmd("ACL")
        .arg(&["SETUSER", "app", "on", ">app-secret", "~app:*", "+@read"])
        .query(&mut source.conn())
        .unwrap();
    let lines: Vec<String> = redis::cmd("ACL")
        .arg("LIST")
        .query(&mut source.conn())
        .unwrap();
    let hash = lines
        .iter()
        .find(|l| l.starts_with("user app "))
        .and_then(|l| l.split(' ').find(|r| r.starts_with('#')))
        .unwrap()[1..]
        .to_string();
    let response = app
        .post_json(
            "/v1/migrations",
            &json!({"source": {"url": source.url()}, "target": {"url": target.url()},
                "options": {"acl": "copy", "backup": false}}),
        )
        .await;
    assert_eq!(response.status(), 201);
    let id = response.json::<Value>().await.unwrap()["id"]
        .as_str()
        .unwrap()
        .to_string();
    assert_eq!(app.action(&id, "validate").await.status(), 200);
    assert_eq!(app.action(&id, "start").await.status(), 202);
    let view = app
        .wait_for(&id, Duration::from_secs(60), |v| {
            v["state"] == "completed" || v["state"] == "failed"
        })
        .await;
    assert_eq!(view["state"], "completed", "{view:#}");
    let users = view["acl_users"]["users"].as_array().unwrap();
    let app_user = users.iter().find(|u| u["user"] == "app").unwrap();
    assert_eq!(app_user["status"], "missing", "{view:#}");
    let auth = redis::cmd("AUTH")
        .arg("app")
        .arg("app-secret")
        .query::<()>(&mut target.conn());
    assert!(auth.is_ok(), "{auth:?}");
    let events = app.get("/v1/events?limit=1000").await.text().await.unwrap();
    assert!(events.contains("AclCopied"), "{events}");
    for text in [events, view.to_string()] {
        assert!(!text.contains(&hash), "the hash is out: {text}");
        assert!(!text.contains("app-secret"));
    }
}

/// A dry run that a restart of Ferry interrupts mid-read runs again from the start and reports
/// once; it leaves no key, no lease and no probe behind.
#[tokio::test(flavor = "multi_thread")]
async fn a_dry_run_interrupted_by_a_restart_runs_again_and_leaves_nothing() {
    let source = RedisServer::start_with(
        "7.2",
        &[
            "--repl-diskless-sync",
            "yes",
            "--repl-diskless-sync-delay",
            "0",
            "--rdbcompression",
            "no",
            "--rdb-key-save-delay",
            "10000",
        ],
    );
    let target = RedisServer::start("7.2");
    let mut c = source.conn();
    for i in 0..300 {
        let _: () = redis::cmd("SET")
            .arg(format!("k:{i}"))
            .arg(format!("{i}-{}", "abcdefghij".repeat(200)))
            .query(&mut c)
            .unwrap();
    }
    let before = target_state(&target);
    let app = spawn_app().await;
    let response = app
        .post_json(
            "/v1/migrations",
            &json!({"source": {"url": source.url()}, "target": {"url": target.url()},
                "mode": "dry_run"}),
        )
        .await;
    let id = response.json::<Value>().await.unwrap()["id"]
        .as_str()
        .unwrap()
        .to_string();
    assert_eq!(app.action(&id, "validate").await.status(), 200);
    assert_eq!(app.action(&id, "start").await.status(), 202);
    app.wait_for(&id, Duration::from_secs(30), |v| {
        v["state"] == "migrating" && v["progress"]["rdb_bytes_read"].as_u64().unwrap_or(0) > 0
    })
    .await;
    let app = app.restart().await;
    let view = app
        .wait_for(&id, Duration::from_secs(60), |v| {
            v["state"] == "completed" || v["state"] == "failed"
        })
        .await;
    assert_eq!(view["state"], "completed", "{view:#}");
    assert_eq!(view["dry_run_report"]["keys"], 300, "{view:#}");
    assert_eq!(view["dry_run_report"]["probe"]["keys_removed"], 2000);
    let types = app.event_types(&id).await;
    assert_eq!(types.iter().filter(|t| *t == "DryRunCompleted").count(), 1);
    // Read twice: once cut short by the restart, once to the end.
    assert_eq!(
        types.iter().filter(|t| *t == "SnapshotStarted").count(),
        2,
        "{types:?}"
    );
    assert!(!types.iter().any(|t| t == "LeaseAcquired"), "{types:?}");
    let after = target_state(&target);
    assert_eq!(after.contents, before.contents);
    assert_eq!(after.ferry_keys, Vec::<String>::new());
}

#[tokio::test]
async fn acl_copy_from_an_rdb_file_is_refused_by_name() {
    let app = spawn_app().await;
    let response = app
        .post_json(
            "/v1/migrations",
            &json!({"source": {"rdb": {"backup_id": "0192f3a4-5b6c-7d8e-9f00-112233445566"}},
                "target": {"url": "redis://127.0.0.1:7002"}, "options": {"acl": "copy"}}),
        )
        .await;
    let problem = crate::common::app::assert_problem(response, 400).await;
    assert!(
        problem["detail"].as_str().unwrap().contains("options.acl"),
        "{problem}"
    );
}

#[tokio::test]
async fn a_dry_run_of_a_scan_source_is_refused_by_name() {
    let app = spawn_app().await;
    let response = app
        .post_json(
            "/v1/migrations",
            &json!({"source": {"url": "redis://127.0.0.1:7001", "read": "scan"},
                "target": {"url": "redis://127.0.0.1:7002"}, "mode": "dry_run"}),
        )
        .await;
    let problem = crate::common::app::assert_problem(response, 400).await;
    assert!(
        problem["detail"].as_str().unwrap().contains("source.read"),
        "{problem}"
    );
}
