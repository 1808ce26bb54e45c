//! Clusters through the HTTP API, as the README's curl example does it: a standalone source with
//! keys in two databases into a cluster (validation describes the cluster and asks for a
//! `db_map`; with it, the migration runs live, cuts over and leaves every key on the master of
//! its slot), and a cluster source whose view shows each shard's progress.

use std::time::Duration;

use serde_json::{json, Value};

use crate::common::app::spawn_app;
use crate::common::cluster::RedisCluster;
use crate::common::redis::RedisServer;

fn check(report: &Value, id: &str) -> Value {
    report["checks"]
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["id"] == id)
        .cloned()
        .unwrap_or_else(|| panic!("no {id} in {report:#}"))
}

#[tokio::test(flavor = "multi_thread")]
async fn a_standalone_source_moves_into_a_cluster_once_db_map_says_where_db_1_goes() {
    let app = spawn_app().await;
    let source = RedisServer::start("7.4");
    for i in 0..300 {
        source.cli(&["SET", &format!("user:{i}"), "v"]);
    }
    for i in 0..100 {
        source.cli(&["-n", "1", "SET", &format!("session:{i}"), "s"]);
    }
    let cluster = RedisCluster::start("7.4", 3, 0);
    let body = |options: Value| {
        json!({"source": {"url": source.url()}, "target": {"url": cluster.url()},
            "mode": "live", "options": options})
    };
    let created: Value = app
        .post_json("/v1/migrations", &body(json!({})))
        .await
        .json()
        .await
        .unwrap();
    let id = created["id"].as_str().unwrap().to_string();
    let report: Value = app.action(&id, "validate").await.json().await.unwrap();
    assert_eq!(report["status"], "failed", "{report:#}");
    let mode = check(&report, "cluster.mode");
    assert_eq!(mode["status"], "pass", "{mode:#}");
    assert!(mode["message"]
        .as_str()
        .unwrap()
        .contains("the target is a Redis Cluster of 3 masters"));
    let databases = check(&report, "cluster.databases");
    assert_eq!(databases["status"], "fail", "{databases:#}");
    assert!(databases["message"].as_str().unwrap().contains("db 1"));
    assert_eq!(app.action(&id, "start").await.status(), 409);

    // With the explicit map, it runs.
    let created: Value = app
        .post_json(
            "/v1/migrations",
            &body(json!({"db_map": {"0": 0, "1": 0}, "auto_cutover": true})),
        )
        .await
        .json()
        .await
        .unwrap();
    let id = created["id"].as_str().unwrap().to_string();
    let report: Value = app.action(&id, "validate").await.json().await.unwrap();
    assert_ne!(report["status"], "failed", "{report:#}");
    assert_eq!(check(&report, "cluster.transactions")["status"], "warn");
    assert_eq!(app.action(&id, "start").await.status(), 202);
    let view = app
        .wait_for(&id, Duration::from_secs(60), |v| {
            ["completed", "failed", "cancelled"].contains(&v["state"].as_str().unwrap_or(""))
        })
        .await;
    assert_eq!(view["state"], "completed", "{view:#}");
    assert_eq!(cluster.keys(), 400);
    for i in [0, 17, 299] {
        let key = format!("user:{i}");
        let master = cluster.node(cluster.master_of(&key));
        assert_eq!(master.cli(&["GET", &key]).trim(), "v");
    }
}
