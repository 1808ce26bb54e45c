//! A cluster target through the HTTP API, as the README's curl example does it: the migration is
//! created, validation describes the cluster and refuses it, and start is refused.

use serde_json::{json, Value};

use crate::common::app::spawn_app;
use crate::common::cluster::RedisCluster;
use crate::common::redis::RedisServer;

#[tokio::test(flavor = "multi_thread")]
async fn a_cluster_target_is_described_and_refused_and_cannot_start() {
    let app = spawn_app().await;
    let source = RedisServer::start("7.4");
    let cluster = RedisCluster::start("7.4", 3, 0);
    let response = app
        .post_json(
            "/v1/migrations",
            &json!({"source": {"url": source.url()}, "target": {"url": cluster.url()},
                "mode": "live"}),
        )
        .await;
    assert_eq!(response.status(), 201);
    let view: Value = response.json().await.unwrap();
    let id = view["id"].as_str().unwrap().to_string();

    let response = app.action(&id, "validate").await;
    assert_eq!(response.status(), 200);
    let report: Value = response.json().await.unwrap();
    assert_eq!(report["status"], "failed", "{report:#}");
    let check = |id: &str| -> Value {
        report["checks"]
            .as_array()
            .unwrap()
            .iter()
            .find(|c| c["id"] == id)
            .cloned()
            .unwrap_or_else(|| panic!("no {id} in {report:#}"))
    };
    let mode = check("cluster.mode");
    assert_eq!(mode["status"], "fail");
    let message = mode["message"].as_str().unwrap();
    assert!(
        message.contains("the target is a Redis Cluster of 3 masters (found with CLUSTER SHARDS)")
            && message.contains("issue #16"),
        "{message}"
    );
    assert_eq!(
        mode["details"]["target"]["masters"]
            .as_array()
            .unwrap()
            .len(),
        3
    );
    assert_eq!(check("cluster.coverage")["status"], "pass");

    let response = app.action(&id, "start").await;
    assert_eq!(response.status(), 409);
    let view: Value = app
        .get(&format!("/v1/migrations/{id}"))
        .await
        .json()
        .await
        .unwrap();
    assert_ne!(view["state"], "validated", "{view:#}");
    let sizes: Vec<String> = cluster.nodes.iter().map(|n| n.cli(&["DBSIZE"])).collect();
    assert!(sizes.iter().all(|s| s.trim() == "0"), "{sizes:?}");
}
