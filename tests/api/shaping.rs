//! Shaping options through the API (issue #19): what the schema rules out is a 400 problem naming
//! the field, a rule between fields fails validation naming it, and a filtered migration run by the real app shows its options, the transfer it
//! chose, and what it left behind.

use std::time::Duration;

use serde_json::{json, Value};

use crate::common::redis::RedisServer;
use crate::helpers::{assert_problem, spawn_app, TestApp};

fn spec(options: Value, mode: &str) -> Value {
    json!({"source": {"url": "redis://127.0.0.1:7001"}, "target": {"url": "redis://127.0.0.1:7002"},
           "mode": mode, "options": options})
}

#[tokio::test]
async fn bad_shaping_options_are_refused_naming_the_field() {
    let app = spawn_app().await;
    // What the OpenAPI document itself rules out (types, database numbers, field names and
    // types): a 400 at once.
    let form = [
        (
            json!({"filter": {"types": ["string", "strings"]}}),
            "options.filter.types[1]",
            "`strings`",
        ),
        (json!({"filter": {"dbs": [-1]}}), "options.filter.dbs", ""),
        (
            json!({"filter": {"colour": "red"}}),
            "options.filter.colour",
            "",
        ),
        (json!({"db_map": {"x": 0}}), "options.db_map.x", ""),
        (json!({"db_map": {"3": -1}}), "options.db_map.3", ""),
        (
            json!({"rename": [{"from_prefix": "a:"}]}),
            "options.rename[0]",
            "",
        ),
        (json!({"rename": [["a:", "b:"]]}), "options.rename[0]", ""),
        // (The path stops at `options`: the object-only rule reads it as a whole.)
        (
            json!({"limits": [null, null]}),
            "options",
            "expected an object",
        ),
        (
            json!({"flush_passthrough": "yes"}),
            "options.flush_passthrough",
            "",
        ),
    ];
    for (options, field, fragment) in form {
        let response = app
            .post_json("/v1/migrations", &spec(options.clone(), "snapshot"))
            .await;
        let problem = assert_problem(response, 400).await;
        assert_eq!(problem["field"], field, "{options}: {problem}");
        assert!(
            problem["detail"].as_str().unwrap().contains(fragment),
            "{options}: {problem}"
        );
    }
    // Rules between fields (or over a glob's syntax, which no schema states): the request is
    // accepted as schema-valid, validation's `filter.matches` fails naming the field (without
    // reaching any server), and the engine refuses it too.
    let rules = [
        (
            json!({"filter": {"types": ["string"]}}),
            "live",
            "options.filter.types",
            "snapshot",
        ),
        (
            json!({"filter": {"include": ["user:[ab"]}}),
            "snapshot",
            "options.filter.include[0]",
            "no closing",
        ),
        (
            json!({"filter": {"exclude": ["tmp\\"]}}),
            "snapshot",
            "options.filter.exclude[0]",
            "lone",
        ),
        (
            json!({"db_map": {"3": 0}}),
            "snapshot",
            "options.db_map.3",
            "merged",
        ),
        (
            json!({"filter": {"dbs": [3]}, "db_map": {"4": 0}}),
            "snapshot",
            "options.db_map.4",
            "leaves it out",
        ),
        (
            json!({"rename": [{"from_prefix": "a:", "to_prefix": "b:"}, {"from_prefix": "a:x", "to_prefix": "c:"}]}),
            "snapshot",
            "options.rename[1].from_prefix",
            "first matching prefix wins",
        ),
        (
            json!({"filter": {"dbs": [0]}, "transfer": "relay"}),
            "snapshot",
            "options.transfer",
            "relay",
        ),
        (
            json!({"rename": [{"from_prefix": "a:", "to_prefix": "b:"}]}),
            "dry_run",
            "mode",
            "dry run",
        ),
    ];
    for (options, mode, field, fragment) in rules {
        let response = app
            .post_json("/v1/migrations", &spec(options.clone(), mode))
            .await;
        assert_eq!(response.status(), 201, "{options}");
        let id = response.json::<Value>().await.unwrap()["id"]
            .as_str()
            .unwrap()
            .to_string();
        assert_filter_check_fails(&app, &id, field, fragment).await;
    }
    // The scan reader does not shape (yet): refused by name at validation, not ignored.
    let scan = json!({"source": {"url": "redis://127.0.0.1:7001", "read": "scan"},
        "target": {"url": "redis://127.0.0.1:7002"}, "options": {"filter": {"include": ["a*"]}}});
    let response = app.post_json("/v1/migrations", &scan).await;
    assert_eq!(response.status(), 201);
    let id = response.json::<Value>().await.unwrap()["id"]
        .as_str()
        .unwrap()
        .to_string();
    assert_filter_check_fails(&app, &id, "source.read", "scan reader").await;
    // A URL's `/3` points at the options that do choose databases.
    let response = app
        .post_json(
            "/v1/migrations",
            &json!({"source": {"url": "redis://127.0.0.1:7001/3"}, "target": {"url": "redis://127.0.0.1:7002"}}),
        )
        .await;
    let problem = assert_problem(response, 400).await;
    let detail = problem["detail"].as_str().unwrap();
    assert!(
        detail.contains("options.filter.dbs") && detail.contains("options.db_map"),
        "{detail}"
    );

    // The README's example is accepted as written.
    let readme = json!({
      "source": {"url": "redis://10.0.0.1:6379"}, "target": {"url": "redis://10.0.0.2:6379"}, "mode": "live",
      "options": {"filter": {"dbs": [0, 3], "include": ["user:*", "order:*"], "exclude": ["user:tmp:*"]},
                  "db_map": {"3": 1}, "rename": [{"from_prefix": "user:", "to_prefix": "u:"}]}});
    let response = app.post_json("/v1/migrations", &readme).await;
    assert_eq!(response.status(), 201);
    let created: Value = response.json().await.unwrap();
    assert_eq!(created["options"]["db_map"], json!({"3": 1}));

    // A PATCH that makes a valid spec unworkable is judged the same way: validation names it.
    let created: Value = app
        .post_json(
            "/v1/migrations",
            &spec(json!({"filter": {"types": ["hash"]}}), "snapshot"),
        )
        .await
        .json()
        .await
        .unwrap();
    let id = created["id"].as_str().unwrap();
    assert_eq!(created["options"]["filter"]["types"], json!(["hash"]));
    let response = app
        .patch_json(&format!("/v1/migrations/{id}"), &json!({"mode": "live"}))
        .await;
    assert_eq!(response.status(), 200);
    assert_filter_check_fails(&app, id, "options.filter.types", "snapshot").await;
    let response = app
        .patch_json(
            &format!("/v1/migrations/{id}"),
            &json!({"mode": "snapshot", "options": {"filter": {"include": ["user:*"]}, "rename": [{"from_prefix": "user:", "to_prefix": "u:"}]}}),
        )
        .await;
    assert_eq!(response.status(), 200);
    let view = app.view(id).await;
    assert_eq!(
        view["options"]["filter"],
        json!({"dbs": [], "include": ["user:*"], "exclude": [], "types": []})
    );
    assert_eq!(view["options"]["rename"][0]["to_prefix"], "u:");
}

/// Validates migration `id` and asserts that `filter.matches` failed naming `field`, with
/// `fragment` in its message, and that the migration did not pass validation.
async fn assert_filter_check_fails(app: &TestApp, id: &str, field: &str, fragment: &str) {
    let response = app.action(id, "validate").await;
    assert_eq!(response.status(), 200, "{id}");
    let report: Value = response.json().await.unwrap();
    let check = report["checks"]
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["id"] == "filter.matches")
        .unwrap_or_else(|| panic!("no filter.matches check: {report}"))
        .clone();
    assert_eq!(check["status"], "fail", "{check}");
    let message = check["message"].as_str().unwrap();
    assert!(message.contains(&format!("`{field}`")), "{check}");
    assert!(message.contains(fragment), "{check}");
    assert_eq!(app.view(id).await["state"], "validation_failed", "{id}");
}

/// A filtered migration through the real app and supervisor: `auto` takes the restore path and
/// says why, the target gets exactly the renamed keys that pass, and the view and the event log
/// say what stayed behind.
#[tokio::test]
async fn a_filtered_migration_runs_through_the_app_and_reports_what_it_left() {
    let app = spawn_app().await;
    let source = RedisServer::start_with("7.2", &["--repl-diskless-sync-delay", "0"]);
    let target = RedisServer::start("7.2");
    for i in 0..10 {
        source.cli(&["SET", &format!("user:{i}"), &i.to_string()]);
        source.cli(&["SET", &format!("cache:{i}"), "x"]);
    }
    let body = json!({"source": {"url": source.url()}, "target": {"url": target.url()},
        "options": {"filter": {"include": ["user:*"]}, "rename": [{"from_prefix": "user:", "to_prefix": "u:"}],
                    "verify": "full", "backup": false}});
    let created: Value = app
        .post_json("/v1/migrations", &body)
        .await
        .json()
        .await
        .unwrap();
    let id = created["id"].as_str().unwrap().to_string();
    let report: Value = app.action(&id, "validate").await.json().await.unwrap();
    let matches = report["checks"]
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["id"] == "filter.matches")
        .unwrap();
    assert_eq!(matches["status"], "pass", "{report:#}");
    assert!(
        matches["message"]
            .as_str()
            .unwrap()
            .contains("selects 10 of 20 keys"),
        "{matches}"
    );
    assert_eq!(app.action(&id, "start").await.status(), 202);
    let view = app
        .wait_for(&id, Duration::from_secs(60), |v| {
            ["completed", "failed"].contains(&v["state"].as_str().unwrap_or_default())
        })
        .await;
    assert_eq!(view["state"], "completed", "{view:#}");
    assert_eq!(view["transfer"]["transfer"], "restore", "{view:#}");
    assert!(
        view["transfer"]["reason"]
            .as_str()
            .unwrap()
            .contains("filter, db_map or rename"),
        "{view:#}"
    );
    assert_eq!(
        view["filtered"],
        json!({"snapshot_keys": 10, "stream_commands": 0})
    );
    let events: Value = app
        .get("/v1/events?type=KeysFiltered")
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(
        events["events"].as_array().map(Vec::len),
        Some(1),
        "{events}"
    );
    assert_eq!(
        events["events"][0]["data"],
        json!({"snapshot_keys": 10, "stream_commands": 0})
    );
    assert_eq!(target.cli(&["DBSIZE"]).trim(), "10");
    assert_eq!(target.cli(&["GET", "u:3"]).trim(), "3");
    let verification: Value = app
        .get(&format!("/v1/migrations/{id}/verification"))
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(verification["checked"], 10, "{verification}");
    assert_eq!(verification["missing"], 0);
}
