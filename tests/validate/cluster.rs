//! The `cluster.*` checks against real clusters: discovery from any node (CLUSTER SHARDS on 7.x,
//! CLUSTER SLOTS on 6.2), the topology described with the mismatch explained and the options a
//! cluster does not carry refused by name, slots in motion and unserved slots named, databases a
//! cluster cannot hold unless `db_map` sends them to 0, transactions that would be split, memory
//! per master.

use super::helpers::*;
use crate::common::cluster::RedisCluster;

fn masters_of(report: &ValidationReport, side: &str) -> Vec<serde_json::Value> {
    let details = check(report, "cluster.mode").details.clone().unwrap();
    details[side]["masters"]
        .as_array()
        .cloned()
        .unwrap_or_default()
}

#[tokio::test]
async fn a_cluster_target_named_by_a_replica_is_discovered_and_described_with_the_topology() {
    let source = RedisServer::start("7.4");
    set_many(&source, 0, 50, 10);
    set_many(&source, 2, 5, 10);
    let cluster = RedisCluster::start("7.4", 3, 1);
    // Any node is a seed, a replica included.
    let seed = cluster.replica_ports()[0];
    let report = validate(&source.url(), &cluster.node(seed).url()).await;
    expect(
        &report,
        "cluster.mode",
        CheckStatus::Pass,
        &[
            "the source is a standalone server",
            "the target is a Redis Cluster of 3 masters (found with CLUSTER SHARDS)",
            "routed by slot",
            "cluster-enabled differs",
        ],
    );
    let masters = masters_of(&report, "target");
    let mut ports: Vec<u16> = masters
        .iter()
        .map(|m| {
            m["addr"]
                .as_str()
                .unwrap()
                .rsplit(':')
                .next()
                .unwrap()
                .parse()
                .unwrap()
        })
        .collect();
    ports.sort_unstable();
    let mut expected = cluster.master_ports();
    expected.sort_unstable();
    assert_eq!(ports, expected);
    let slots: u64 = masters.iter().map(|m| m["slots"].as_u64().unwrap()).sum();
    assert_eq!(slots, 16384);
    assert!(masters.iter().all(|m| m["replicas"] == 1), "{masters:?}");
    expect(
        &report,
        "cluster.coverage",
        CheckStatus::Pass,
        &["all 16384 slots are served and every node answers"],
    );
    expect(
        &report,
        "cluster.slots_stable",
        CheckStatus::Pass,
        &["no slot is being imported or migrated"],
    );
    expect(
        &report,
        "cluster.databases",
        CheckStatus::Fail,
        &["keys in db 2", "options.db_map"],
    );
    // A snapshot splits no transaction.
    expect(
        &report,
        "cluster.transactions",
        CheckStatus::Pass,
        &["snapshot"],
    );
    expect(
        &report,
        "cluster.memory",
        CheckStatus::Pass,
        &["every target node has room"],
    );
    let memory = check(&report, "cluster.memory").details.clone().unwrap();
    assert_eq!(memory["nodes"].as_array().unwrap().len(), 3);
    expect(
        &report,
        "target.writable",
        CheckStatus::Pass,
        &["cluster.*"],
    );
    assert_eq!(report.status, ReportStatus::Failed);
    expect(
        &report,
        "target.in_use",
        CheckStatus::Pass,
        &["lease `ferry:lease` is free"],
    );

    // The lease is one key of the cluster, read on the master serving its slot, whichever node
    // the URL names.
    let holder = cluster.node(cluster.master_of("ferry:lease"));
    let _: () = redis::cmd("SET")
        .arg("ferry:lease")
        .arg("someone else")
        .arg("PX")
        .arg(60_000)
        .query(&mut holder.conn())
        .unwrap();
    for port in cluster.master_ports() {
        let report = validate(&source.url(), &cluster.node(port).url()).await;
        expect(&report, "target.in_use", CheckStatus::Warn, &["in use by"]);
        let details = check(&report, "target.in_use").details.clone().unwrap();
        assert_eq!(details["lease"], "someone else");
    }

    // A replica that does not answer is named; it serves no slot, so it only warns.
    let mut cluster = cluster;
    let gone = cluster.replica_ports()[1];
    cluster
        .nodes
        .iter_mut()
        .find(|n| n.port == gone)
        .unwrap()
        .kill();
    let master = cluster.master_ports()[0];
    let report = validate(&source.url(), &cluster.node(master).url()).await;
    expect(
        &report,
        "cluster.coverage",
        CheckStatus::Warn,
        &[
            &format!("the target's replica 127.0.0.1:{gone}"),
            "every master answers",
        ],
    );
}

#[tokio::test]
async fn a_6_2_cluster_source_is_discovered_with_cluster_slots() {
    let cluster = RedisCluster::start("6.2", 3, 0);
    let target = RedisServer::start("6.2");
    let report = validate(&cluster.url(), &target.url()).await;
    expect(
        &report,
        "cluster.mode",
        CheckStatus::Pass,
        &[
            "the source is a Redis Cluster of 3 masters (found with CLUSTER SLOTS)",
            "the target is a standalone server",
            "one replication link per source master",
            "written to db 0 of the target",
        ],
    );
    assert_eq!(masters_of(&report, "source").len(), 3);
    expect(
        &report,
        "cluster.coverage",
        CheckStatus::Pass,
        &["all 16384"],
    );
    expect(&report, "cluster.memory", CheckStatus::Pass, &["room"]);
    expect(&report, "source.role", CheckStatus::Pass, &["cluster.*"]);
}

#[tokio::test]
async fn a_slot_in_motion_and_an_unserved_slot_are_named() {
    let cluster = RedisCluster::start("7.0", 3, 0);
    let ports = cluster.master_ports();
    let seed = cluster.node(ports[0]);
    let other = cluster.node(ports[1]);
    let other_id = other.cli(&["CLUSTER", "MYID"]).trim().to_string();
    // Two slots the seed serves: one starts migrating to `other`, one is released.
    let seed_port = ports[0].to_string();
    let owned: Vec<u16> = (0..16384u16)
        .filter(|s| {
            let key = format!("{{{}}}", ferry::cluster::SlotTags::get().tag(*s));
            cluster.master_of(&key).to_string() == seed_port
        })
        .take(2)
        .collect();
    let (moving, released) = (owned[0], owned[1]);
    let reply = seed.cli(&[
        "CLUSTER",
        "SETSLOT",
        &moving.to_string(),
        "MIGRATING",
        &other_id,
    ]);
    assert_eq!(reply.trim(), "OK");
    assert_eq!(
        seed.cli(&["CLUSTER", "DELSLOTS", &released.to_string()])
            .trim(),
        "OK"
    );
    let report = validate(&seed.url(), &other.url()).await;
    expect(
        &report,
        "cluster.slots_stable",
        CheckStatus::Fail,
        &[
            &format!(
                "slot {moving} is migrating on the source's 127.0.0.1:{} (to 127.0.0.1:{})",
                ports[0], ports[1]
            ),
            "redis-cli --cluster fix",
        ],
    );
    expect(
        &report,
        "cluster.coverage",
        CheckStatus::Fail,
        &[&format!("no master of the source serves slots {released}")],
    );
}

#[tokio::test]
async fn db_map_sends_other_databases_into_a_clusters_db_0_only_when_it_says_so() {
    let source = RedisServer::start("7.4");
    set_many(&source, 0, 20, 10);
    set_many(&source, 1, 20, 10);
    set_many(&source, 2, 20, 10);
    let cluster = RedisCluster::start("7.4", 3, 0);
    let only_1 = validate_with(&source.url(), &cluster.url(), json!({"db_map": {"1": 0}})).await;
    expect(
        &only_1,
        "cluster.databases",
        CheckStatus::Fail,
        &["keys in db 2", "does not send it to db 0"],
    );
    let elsewhere = validate_with(
        &source.url(),
        &cluster.url(),
        json!({"db_map": {"1": 0, "2": 3}}),
    )
    .await;
    expect(
        &elsewhere,
        "cluster.databases",
        CheckStatus::Fail,
        &["other than 0"],
    );
    let both = validate_with(
        &source.url(),
        &cluster.url(),
        json!({"db_map": {"0": 0, "1": 0, "2": 0}}),
    )
    .await;
    expect(
        &both,
        "cluster.databases",
        CheckStatus::Pass,
        &["db_map sends db 1, 2 into db 0"],
    );
    // A filter that leaves db 2 out needs no rule for it.
    let filtered = validate_with(
        &source.url(),
        &cluster.url(),
        json!({"db_map": {"0": 0, "1": 0}, "filter": {"dbs": [0, 1]}}),
    )
    .await;
    expect(&filtered, "cluster.databases", CheckStatus::Pass, &["db 1"]);
}

#[tokio::test]
async fn options_a_cluster_does_not_carry_fail_cluster_mode_by_name() {
    let source = RedisServer::start("7.4");
    set_many(&source, 0, 20, 10);
    let cluster = RedisCluster::start("7.4", 3, 0);
    let relay = validate_with(
        &source.url(),
        &cluster.url(),
        json!({"transfer": "relay", "on_conflict": "flush"}),
    )
    .await;
    expect(
        &relay,
        "cluster.mode",
        CheckStatus::Fail,
        &[
            "transfer `relay`",
            "on_conflict `flush`",
            "use `restore` or `auto`",
        ],
    );
    // A target that holds keys and a restore point asked for (the default): refused, with
    // the way out named; without a restore point it passes.
    let _: () = redis::cmd("SET")
        .arg("kept")
        .arg("1")
        .query(&mut cluster.node(cluster.master_of("kept")).conn())
        .unwrap();
    let backup = validate(&source.url(), &cluster.url()).await;
    expect(
        &backup,
        "cluster.mode",
        CheckStatus::Fail,
        &["restore point of a cluster target", "options.backup false"],
    );
    let no_backup = validate_with(&source.url(), &cluster.url(), json!({"backup": false})).await;
    expect(
        &no_backup,
        "cluster.mode",
        CheckStatus::Pass,
        &["routed by slot"],
    );
    // A cluster source read by SCAN is refused.
    let target = RedisServer::start("7.4");
    let mut scan = spec(&cluster.url(), &target.url(), json!({}));
    scan.source = ferry::spec::Source::Server(
        scan.source.endpoint().unwrap().clone(),
        ferry::spec::SourceRead::Scan,
        ferry::spec::Prefer::Master,
    );
    let data_dir = tempfile::tempdir().unwrap();
    let report = run_with(&scan, &ValidateContext::new(data_dir.path())).await;
    expect(
        &report,
        "cluster.mode",
        CheckStatus::Fail,
        &["source.read `scan`"],
    );
}

#[tokio::test]
async fn a_live_migration_into_a_cluster_warns_that_cross_slot_transactions_are_split() {
    let source = RedisServer::start("7.4");
    let _: () = redis::pipe()
        .atomic()
        .set("a", 1)
        .set("b", 2)
        .query(&mut source.conn())
        .unwrap();
    let cluster = RedisCluster::start("7.4", 3, 0);
    let mut live = spec(&source.url(), &cluster.url(), json!({}));
    live.mode = ferry::spec::Mode::Live;
    let data_dir = tempfile::tempdir().unwrap();
    let report = run_with(&live, &ValidateContext::new(data_dir.path())).await;
    expect(
        &report,
        "cluster.transactions",
        CheckStatus::Warn,
        &[
            "has run MULTI once",
            "slot by slot",
            "TransactionSplit",
            "hash tag",
        ],
    );
    // Cluster to cluster: the source's transactions already keep to one slot.
    let other = RedisCluster::start("7.4", 3, 0);
    let mut both = spec(&other.url(), &cluster.url(), json!({}));
    both.mode = ferry::spec::Mode::Live;
    let report = run_with(&both, &ValidateContext::new(data_dir.path())).await;
    expect(
        &report,
        "cluster.transactions",
        CheckStatus::Pass,
        &["source is a cluster too"],
    );
}
