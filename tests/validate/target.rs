//! The target side: writability, room, databases, modules, versions, conflicts, settings.

use crate::helpers::*;

#[tokio::test]
async fn a_tiny_maxmemory_fails_and_an_evicting_policy_warns() {
    let source = RedisServer::start("7.2");
    set_many(&source, 0, 1000, 4096);
    let tiny = RedisServer::start_with("7.2", &["--maxmemory", "1mb"]);
    let report = validate(&source.url(), &tiny.url()).await;
    expect(
        &report,
        "capacity.memory",
        CheckStatus::Fail,
        &["free under its maxmemory", "CONFIG SET maxmemory"],
    );

    let evicting = RedisServer::start_with(
        "7.2",
        &["--maxmemory", "1gb", "--maxmemory-policy", "allkeys-lru"],
    );
    let report = validate(&source.url(), &evicting.url()).await;
    expect(
        &report,
        "capacity.memory",
        CheckStatus::Warn,
        &["allkeys-lru", "noeviction"],
    );
    expect(
        &report,
        "maxmemory_policy",
        CheckStatus::Warn,
        &["noeviction", "allkeys-lru"],
    );
}

#[tokio::test]
async fn a_read_only_replica_target_fails_and_a_replica_source_is_fine() {
    let master = RedisServer::start("7.2");
    let replica = RedisServer::start_with(
        "7.2",
        &["--replicaof", "127.0.0.1", &master.port.to_string()],
    );
    wait_for(
        "the replica's link to come up",
        Duration::from_secs(30),
        || info_field(&replica, "replication", "master_link_status") == "up",
    );
    let other = RedisServer::start("7.2");

    let report = validate(&other.url(), &replica.url()).await;
    expect(
        &report,
        "target.writable",
        CheckStatus::Fail,
        &["read-only replica", "REPLICAOF NO ONE"],
    );

    let report = validate(&replica.url(), &other.url()).await;
    expect(
        &report,
        "source.role",
        CheckStatus::Pass,
        &["replica of", "fine"],
    );
}

#[tokio::test]
async fn a_module_missing_on_the_target_warns_naming_it() {
    let (_module_dir, rejson) = loadable_module("7.4", "rejson.so");
    let rejson = rejson.as_str();
    let source = RedisServer::start_with("7.4", &["--loadmodule", rejson]);
    let _: () = redis::cmd("JSON.SET")
        .arg(&["doc", "$", r#"{"a":1}"#])
        .query(&mut source.conn())
        .unwrap();
    let bare = RedisServer::start("7.4");
    let report = validate(&source.url(), &bare.url()).await;
    // A warning: the engine stops at the first ReJSON key, naming it (tests/matrix/modules.rs).
    expect(
        &report,
        "modules",
        CheckStatus::Warn,
        &["ReJSON", "loadmodule", "stops at the first"],
    );

    let equipped = RedisServer::start_with("7.4", &["--loadmodule", rejson]);
    let report = validate(&source.url(), &equipped.url()).await;
    expect(&report, "modules", CheckStatus::Pass, &[]);
}

#[tokio::test]
async fn db_5_on_the_source_with_two_databases_on_the_target_fails() {
    let source = RedisServer::start("7.0");
    set_many(&source, 5, 3, 8);
    let target = RedisServer::start_with("7.0", &["--databases", "2"]);
    let report = validate(&source.url(), &target.url()).await;
    expect(
        &report,
        "databases",
        CheckStatus::Fail,
        &["db 5", "only 2 databases", "databases 6"],
    );
}

#[tokio::test]
async fn an_older_target_warns_and_hash_field_ttls_fail() {
    let source = RedisServer::start("7.4");
    set_many(&source, 0, 10, 8);
    let target = RedisServer::start("7.0");
    let report = validate(&source.url(), &target.url()).await;
    expect(
        &report,
        "versions",
        CheckStatus::Warn,
        &["older than the source", "rewritten as commands"],
    );
    assert_eq!(
        report.status,
        ReportStatus::PassedWithWarnings,
        "{}",
        pretty(&report)
    );

    let mut conn = source.conn();
    let _: () = redis::cmd("HSET")
        .arg(&["h", "f", "v", "g", "w"])
        .query(&mut conn)
        .unwrap();
    let _: Vec<i64> = redis::cmd("HEXPIRE")
        .arg(&["h", "1000", "FIELDS", "1", "f"])
        .query(&mut conn)
        .unwrap();
    let report = validate(&source.url(), &target.url()).await;
    expect(
        &report,
        "versions",
        CheckStatus::Fail,
        &["1 key on the source", "hash field TTLs", "7.4"],
    );

    // The same key moving to another 7.4 is fine.
    let peer = RedisServer::start("7.4");
    let report = validate(&source.url(), &peer.url()).await;
    expect(&report, "versions", CheckStatus::Pass, &[]);
}

#[tokio::test]
async fn a_non_empty_target_fails_with_on_conflict_fail_and_warns_otherwise() {
    let source = RedisServer::start("7.2");
    let target = RedisServer::start("7.2");
    set_many(&target, 0, 4, 8);
    set_many(&target, 3, 2, 8);
    let report = validate(&source.url(), &target.url()).await;
    expect(
        &report,
        "target.conflicts",
        CheckStatus::Fail,
        &["6 keys", "db0: 4", "db3: 2", "on_conflict"],
    );
    let report = validate_with(
        &source.url(),
        &target.url(),
        json!({"on_conflict": "replace"}),
    )
    .await;
    expect(
        &report,
        "target.conflicts",
        CheckStatus::Warn,
        &["overwritten"],
    );
    let report = validate_with(
        &source.url(),
        &target.url(),
        json!({"on_conflict": "flush"}),
    )
    .await;
    expect(
        &report,
        "target.conflicts",
        CheckStatus::Warn,
        &["flushed", "restore point"],
    );
}

#[tokio::test]
async fn configuration_differences_warn_and_list_both_values() {
    let source = RedisServer::start_with(
        "7.2",
        &["--notify-keyspace-events", "Ex", "--appendonly", "yes"],
    );
    let target = RedisServer::start("7.2");
    let report = validate(&source.url(), &target.url()).await;
    expect(
        &report,
        "keyspace_notifications",
        CheckStatus::Warn,
        &["`xE`", "notify-keyspace-events"],
    );
    expect(
        &report,
        "persistence",
        CheckStatus::Warn,
        &["appendonly `yes` on the source, `no` on the target"],
    );
}

#[tokio::test]
async fn a_persisting_local_target_has_its_disk_measured() {
    let source = RedisServer::start("7.2");
    let target = RedisServer::start_with("7.2", &["--save", "3600 1"]);
    let report = validate(&source.url(), &target.url()).await;
    let disk = check(&report, "capacity.disk");
    assert_eq!(disk.status, CheckStatus::Pass, "{}", pretty(&report));
    let details = disk.details.as_ref().unwrap();
    assert!(
        details["target"]["free_bytes"].as_u64().unwrap() > 0,
        "{details}"
    );
    assert!(
        details["ferry"]["free_bytes"].as_u64().unwrap() > 0,
        "{details}"
    );
    assert_eq!(details["target"]["dir"], target.dir().to_str().unwrap());
}

#[tokio::test]
async fn a_renamed_config_command_makes_dependent_checks_warn_instead_of_guess() {
    let source = RedisServer::start("7.2");
    let target = RedisServer::start_with("7.2", &["--rename-command", "CONFIG", "\"\""]);
    let report = validate(&source.url(), &target.url()).await;
    for id in ["databases", "keyspace_notifications", "persistence"] {
        expect(
            &report,
            id,
            CheckStatus::Warn,
            &["not checked", "CONFIG GET", "renamed or disabled"],
        );
    }
    // What INFO alone can answer still passes.
    expect(&report, "target.writable", CheckStatus::Pass, &[]);
    expect(&report, "maxmemory_policy", CheckStatus::Pass, &[]);
    expect(
        &report,
        "capacity.disk",
        CheckStatus::Warn,
        &["cannot tell whether the target persists"],
    );
}

/// A filter is validated through what it does: `filter.matches` counts the source keys it
/// selects (and warns at none, a glob typo), and `databases` judges the dbs the data lands in
/// after the map, not the source's numbers.
#[tokio::test]
async fn a_filter_is_counted_and_mapped_databases_are_judged_on_the_target() {
    let source = RedisServer::start("7.2");
    set_many(&source, 0, 30, 8);
    set_many(&source, 5, 3, 8);
    let target = RedisServer::start_with("7.2", &["--databases", "2"]);

    // db 5 lands in db 1 (with db 1's own keys, mapped on purpose): 2 databases are enough.
    let options = json!({"filter": {"include": ["key:1*"]}, "db_map": {"5": 1, "1": 1}});
    let report = validate_with(&source.url(), &target.url(), options).await;
    // key:1 and key:10–key:19 in db 0, key:1 in db 5.
    expect(
        &report,
        "filter.matches",
        CheckStatus::Pass,
        &["selects 12 of 33 keys"],
    );
    expect(&report, "databases", CheckStatus::Pass, &[]);

    let typo = json!({"filter": {"include": ["Key:*"]}});
    let report = validate_with(&source.url(), &target.url(), typo).await;
    expect(
        &report,
        "filter.matches",
        CheckStatus::Warn,
        &["selects no key", "case-sensitive"],
    );
    expect(
        &report,
        "databases",
        CheckStatus::Fail,
        &["db 5", "options.db_map"],
    );

    let types = json!({"filter": {"types": ["hash"]}});
    let report = validate_with(&source.url(), &target.url(), types).await;
    expect(
        &report,
        "filter.matches",
        CheckStatus::Warn,
        &["selects no key among 33"],
    );

    let mapped_too_high = json!({"filter": {"dbs": [5]}, "db_map": {"5": 7}});
    let report = validate_with(&source.url(), &target.url(), mapped_too_high).await;
    expect(
        &report,
        "databases",
        CheckStatus::Fail,
        &["db 7", "only 2 databases"],
    );
    expect(
        &report,
        "filter.matches",
        CheckStatus::Pass,
        &["selects 3 of 3 keys"],
    );
}
