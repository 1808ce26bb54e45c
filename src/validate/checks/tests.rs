//! The decision logic on hand-made facts: the paths real servers cannot easily be pushed into
//! (a remote target, a full disk, a broken master link, module version skew…). The integration
//! tests in `tests/validate` provoke the others on real servers.

use std::path::PathBuf;
use std::time::Duration;

use serde_json::json;

use super::*;
use crate::client::{Config, Info};
use crate::redis_url::RedisUrl;
use crate::validate::facts::{Connected, FieldTtlSample, Module, ReplicationCommands};

const MB: u64 = 1024 * 1024;

fn server(side: Side, host: &str, info: &str, config: &[(&str, &str)]) -> ServerFacts {
    let defaults = [
        ("databases", "16"),
        ("save", ""),
        ("appendonly", "no"),
        ("appendfsync", "everysec"),
        ("notify-keyspace-events", ""),
        ("dir", "/var/lib/redis"),
        (
            "client-output-buffer-limit",
            "normal 0 0 0 slave 268435456 67108864 60 pubsub 33554432 8388608 60",
        ),
    ];
    let mut pairs: Vec<String> = Vec::new();
    for (name, value) in defaults.iter().chain(config.iter()) {
        pairs.push(name.to_string());
        pairs.push(value.to_string());
    }
    let base =
        "redis_version:7.2.4\nrole:master\nused_memory:1000000\nused_memory_dataset:500000\n\
                maxmemory:0\nmaxmemory_policy:noeviction\ntotal_system_memory:8000000000\n\
                repl_backlog_size:1048576\ninstantaneous_input_kbps:0.00\nconnected_slaves:0\n";
    ServerFacts {
        side,
        url: RedisUrl::parse(&format!("redis://{host}:6379")).unwrap(),
        tls_unverified: false,
        gathered_at: chrono::Utc::now(),
        connect: Ok(Connected {
            latency: Duration::from_millis(1),
            user: "default".into(),
            tls: None,
        }),
        // Later lines override earlier ones, so a test's `info` wins over the base.
        info: Ok(Info::parse(&format!("{base}{info}"))),
        config: Ok(Config::from_pairs(pairs)),
        modules: Ok(Vec::new()),
        replication_commands: Ok(ReplicationCommands {
            psync: true,
            sync: true,
        }),
        acl: Vec::new(),
        relay_acl: Vec::new(),
        replicaof: None,
        field_ttl_sample: None,
        function_libraries: None,
        lease: (side == Side::Target).then_some(Ok(None)),
        cluster: None,
        acl_users: None,
    }
}

fn local(free: u64, target_dir_free: Option<u64>) -> LocalFacts {
    LocalFacts {
        data_dir: PathBuf::from("/srv/ferry/data"),
        data_dir_free: Ok(free),
        target_dir_free: target_dir_free.map(Ok),
    }
}

fn decide(
    id: &str,
    source: &ServerFacts,
    target: &ServerFacts,
    local: &LocalFacts,
    options: serde_json::Value,
) -> CheckResult {
    let spec: MigrationSpec = serde_json::from_value(json!({
        "source": {"url": "redis://s:1"}, "target": {"url": "redis://t:2"}, "options": options,
    }))
    .unwrap();
    let relay = crate::relay::RelaySettings::default();
    let inputs = Inputs {
        spec: &spec,
        source,
        target,
        local,
        relay: &relay,
        filter_sample: None,
    };
    run_all(&inputs).into_iter().find(|c| c.id == id).unwrap()
}

fn verdict(id: &str, source: &ServerFacts, target: &ServerFacts) -> CheckResult {
    decide(
        id,
        source,
        target,
        &local(100 * 1024 * MB, Some(100 * 1024 * MB)),
        json!({}),
    )
}

fn src(info: &str, config: &[(&str, &str)]) -> ServerFacts {
    server(Side::Source, "127.0.0.1", info, config)
}

fn tgt(info: &str, config: &[(&str, &str)]) -> ServerFacts {
    server(Side::Target, "127.0.0.1", info, config)
}

#[test]
fn an_unlimited_output_buffer_passes_even_under_heavy_writes() {
    let source = src(
        "instantaneous_input_kbps:50000.0\n",
        &[(
            "client-output-buffer-limit",
            "normal 0 0 0 replica 0 0 0 pubsub 0 0 0",
        )],
    );
    let result = verdict("source.output_buffer", &source, &tgt("", &[]));
    assert_eq!(result.status, CheckStatus::Pass, "{result:?}");
}

#[test]
fn a_soft_limit_only_counts_when_the_sync_outlasts_its_seconds() {
    // 1 MB/s for the minimum 5 s sync, doubled: 10 MB needed. Soft 8 MB for 60 s never triggers,
    // the 256 MB hard limit covers it.
    let busy = "instantaneous_input_kbps:1024.0\n";
    let lenient = src(
        busy,
        &[("client-output-buffer-limit", "replica 256mb 8mb 60")],
    );
    assert_eq!(
        verdict("source.output_buffer", &lenient, &tgt("", &[])).status,
        CheckStatus::Pass
    );
    // The same soft limit over 1 s disconnects the replica.
    let strict = src(
        busy,
        &[("client-output-buffer-limit", "replica 256mb 8mb 1")],
    );
    let result = verdict("source.output_buffer", &strict, &tgt("", &[]));
    assert_eq!(result.status, CheckStatus::Warn, "{result:?}");
    assert!(
        result.message.contains("replica 10mb 10mb 0"),
        "{}",
        result.message
    );
}

#[test]
fn the_backlog_passes_without_writes_and_warns_under_load() {
    let quiet = verdict("source.backlog", &src("", &[]), &tgt("", &[]));
    assert_eq!(quiet.status, CheckStatus::Pass);
    assert!(quiet.message.contains("no writes"), "{}", quiet.message);
    let busy = verdict(
        "source.backlog",
        &src("instantaneous_input_kbps:100.0\n", &[]),
        &tgt("", &[]),
    );
    assert_eq!(busy.status, CheckStatus::Warn);
    assert!(busy.message.contains("~10s"), "{}", busy.message);
}

#[test]
fn a_replica_source_with_a_broken_master_link_warns() {
    let source = src(
        "role:slave\nmaster_host:10.0.0.9\nmaster_port:6379\nmaster_link_status:down\n",
        &[],
    );
    let result = verdict("source.role", &source, &tgt("", &[]));
    assert_eq!(result.status, CheckStatus::Warn);
    assert!(
        result.message.contains("10.0.0.9:6379"),
        "{}",
        result.message
    );
}

#[test]
fn min_replicas_to_write_without_replicas_makes_the_target_unwritable() {
    let target = tgt("connected_slaves:0\n", &[("min-replicas-to-write", "1")]);
    let result = verdict("target.writable", &src("", &[]), &target);
    assert_eq!(result.status, CheckStatus::Fail);
    assert!(
        result.message.contains("min-replicas-to-write"),
        "{}",
        result.message
    );
}

#[test]
fn function_libraries_refuse_a_target_older_than_7_0_and_join_field_ttls() {
    let mut with_functions = src("redis_version:7.2.4\n", &[]);
    with_functions.function_libraries = Some(Ok(2));
    let result = verdict(
        "versions",
        &with_functions,
        &tgt("redis_version:6.2.14\n", &[]),
    );
    assert_eq!(result.status, CheckStatus::Fail);
    assert!(
        result.message.contains("2 function libraries") && result.message.contains("7.0"),
        "{}",
        result.message
    );
    // 7.0 holds functions: only the downgrade's usual warning remains.
    let result = verdict(
        "versions",
        &with_functions,
        &tgt("redis_version:7.0.15\n", &[]),
    );
    assert_eq!(result.status, CheckStatus::Warn, "{result:?}");

    // Both at once: one failing verdict that names both.
    let mut both = src(
        "redis_version:7.4.1\ndb0:keys=5,expires=0,avg_ttl=0,subexpiry=1\n",
        &[],
    );
    both.function_libraries = Some(Ok(1));
    let result = verdict("versions", &both, &tgt("redis_version:6.2.14\n", &[]));
    assert_eq!(result.status, CheckStatus::Fail);
    assert!(
        result.message.contains("1 function library") && result.message.contains("hash field TTLs"),
        "{}",
        result.message
    );
}

#[test]
fn hash_field_ttls_decide_between_fail_warn_and_pass() {
    let with_ttls = src(
        "redis_version:7.4.1\ndb0:keys=5,expires=0,avg_ttl=0,subexpiry=3\n",
        &[],
    );
    let old_target = tgt("redis_version:7.2.4\n", &[]);
    let result = verdict("versions", &with_ttls, &old_target);
    assert_eq!(result.status, CheckStatus::Fail);
    assert!(result.message.contains("3 keys"), "{}", result.message);

    // A 7.4-class source that does not count them (a fork, say): cannot tell, so warn.
    let silent = src("redis_version:7.4.1\ndb0:keys=5,expires=0,avg_ttl=0\n", &[]);
    let result = verdict("versions", &silent, &old_target);
    assert_eq!(result.status, CheckStatus::Warn);
    assert!(
        result.message.contains("does not report"),
        "{}",
        result.message
    );

    // Where the count is missing, a sample decides: found ones fail, none found only warns.
    let mut sampled = silent.clone();
    sampled.field_ttl_sample = Some(Ok(FieldTtlSample {
        hashes_sampled: 40,
        with_field_ttls: 2,
    }));
    let result = verdict("versions", &sampled, &old_target);
    assert_eq!(result.status, CheckStatus::Fail);
    assert!(
        result.message.contains("2 of 40 sampled hashes"),
        "{}",
        result.message
    );
    sampled.field_ttl_sample = Some(Ok(FieldTtlSample {
        hashes_sampled: 40,
        with_field_ttls: 0,
    }));
    let result = verdict("versions", &sampled, &old_target);
    assert_eq!(result.status, CheckStatus::Warn);
    assert!(
        result.message.contains("none of 40 sampled hashes"),
        "{}",
        result.message
    );

    // A count with a sample that found none: Redis 7.4 keeps counting after HPERSIST, so warn.
    let mut stale = with_ttls.clone();
    stale.field_ttl_sample = Some(Ok(FieldTtlSample {
        hashes_sampled: 5,
        with_field_ttls: 0,
    }));
    let result = verdict("versions", &stale, &old_target);
    assert_eq!(result.status, CheckStatus::Warn, "{result:?}");
    assert!(result.message.contains("HPERSIST"), "{}", result.message);
    // … and one that found some confirms the count.
    stale.field_ttl_sample = Some(Ok(FieldTtlSample {
        hashes_sampled: 5,
        with_field_ttls: 1,
    }));
    let result = verdict("versions", &stale, &old_target);
    assert_eq!(result.status, CheckStatus::Fail, "{result:?}");
    assert!(result.message.contains("3 keys"), "{}", result.message);

    // Upgrades are fine.
    let result = verdict(
        "versions",
        &src("redis_version:6.2.5\n", &[]),
        &tgt("redis_version:7.4.1\n", &[]),
    );
    assert_eq!(result.status, CheckStatus::Pass, "{result:?}");
}

#[test]
fn without_maxmemory_the_host_memory_is_compared_and_only_warns() {
    let source = src(&format!("used_memory_dataset:{}\n", 6 * 1024 * MB), &[]);
    let target = tgt(&format!("total_system_memory:{}\n", 4 * 1024 * MB), &[]);
    let result = verdict("capacity.memory", &source, &target);
    assert_eq!(result.status, CheckStatus::Warn);
    assert!(
        result.message.contains("total_system_memory"),
        "{}",
        result.message
    );
}

#[test]
fn a_remote_persisting_target_warns_with_the_size_it_needs() {
    let source = src(&format!("used_memory_dataset:{}\n", 100 * MB), &[]);
    let remote = server(Side::Target, "10.1.2.3", "", &[("save", "3600 1")]);
    let result = decide(
        "capacity.disk",
        &source,
        &remote,
        &local(10 * 1024 * MB, None),
        json!({}),
    );
    assert_eq!(result.status, CheckStatus::Warn, "{result:?}");
    assert!(
        result.message.contains("another host"),
        "{}",
        result.message
    );
    assert!(result.message.contains("200.0 MiB"), "{}", result.message);
}

#[test]
fn full_disks_fail_for_the_target_dir_and_for_ferrys_data_dir() {
    let source = src(&format!("used_memory_dataset:{}\n", 100 * MB), &[]);
    let persisting = tgt("", &[("appendonly", "yes")]);
    let result = decide(
        "capacity.disk",
        &source,
        &persisting,
        &local(10 * 1024 * MB, Some(50 * MB)),
        json!({}),
    );
    assert_eq!(result.status, CheckStatus::Fail);
    assert!(
        result
            .message
            .starts_with("the target's dir /var/lib/redis has 50.0 MiB free"),
        "{}",
        result.message
    );

    // A non-empty target with backup on needs room for its restore point in data_dir.
    let full = tgt(
        &format!(
            "used_memory_dataset:{}\ndb0:keys=10,expires=0,avg_ttl=0\n",
            500 * MB
        ),
        &[],
    );
    let result = decide(
        "capacity.disk",
        &source,
        &full,
        &local(300 * MB, None),
        json!({"on_conflict": "replace"}),
    );
    assert_eq!(result.status, CheckStatus::Fail, "{result:?}");
    assert!(
        result.message.contains("Ferry's data_dir"),
        "{}",
        result.message
    );
    let result = decide(
        "capacity.disk",
        &source,
        &full,
        &local(300 * MB, None),
        json!({"on_conflict": "replace", "backup": false}),
    );
    assert_eq!(result.status, CheckStatus::Pass, "{result:?}");
}

#[test]
fn skip_and_replace_only_warn_about_existing_keys() {
    let target = tgt("db1:keys=7,expires=0,avg_ttl=0\n", &[]);
    let facts = local(100 * 1024 * MB, None);
    let skip = decide(
        "target.conflicts",
        &src("", &[]),
        &target,
        &facts,
        json!({"on_conflict": "skip"}),
    );
    assert_eq!(skip.status, CheckStatus::Warn);
    assert!(skip.message.contains("db1: 7"), "{}", skip.message);
}

#[test]
fn keyspace_notification_classes_compare_as_sets() {
    let source = src("", &[("notify-keyspace-events", "AKE")]);
    let target = tgt("", &[("notify-keyspace-events", "KEA")]);
    assert_eq!(
        verdict("keyspace_notifications", &source, &target).status,
        CheckStatus::Pass
    );
}

#[test]
fn an_older_module_on_the_target_warns() {
    let mut source = src("", &[]);
    source.modules = Ok(vec![Module {
        name: "bf".into(),
        version: Some(20612),
    }]);
    let mut target = tgt("", &[]);
    target.modules = Ok(vec![Module {
        name: "bf".into(),
        version: Some(20407),
    }]);
    let result = verdict("modules", &source, &target);
    assert_eq!(result.status, CheckStatus::Warn);
    assert!(
        result.message.contains("bf (20407 < 20612)"),
        "{}",
        result.message
    );
}

#[test]
fn a_fact_that_could_not_be_read_warns_and_names_the_command() {
    let mut target = tgt("", &[]);
    target.modules = Err(CallError::Unavailable {
        command: "MODULE LIST".into(),
    });
    let mut source = src("", &[]);
    source.modules = Ok(vec![Module {
        name: "ReJSON".into(),
        version: Some(1),
    }]);
    let result = verdict("modules", &source, &target);
    assert_eq!(result.status, CheckStatus::Warn);
    assert!(
        result
            .message
            .contains("`MODULE LIST` is renamed or disabled"),
        "{}",
        result.message
    );
}

const VALKEY_9: &str = "redis_version:7.2.4\nserver_name:valkey\nvalkey_version:9.1.2\n";

#[test]
fn valkey_is_known_by_its_own_version_and_counts_field_ttls_its_own_way() {
    let source = src(
        &format!("{VALKEY_9}db0:keys=5,expires=0,avg_ttl=0,keys_with_volatile_items=2\n"),
        &[],
    );
    // Valkey's redis_version says 7.2.4, but it has field TTLs: 7.4 takes them, 7.2 cannot.
    let result = verdict("versions", &source, &tgt("redis_version:7.4.1\n", &[]));
    assert_eq!(result.status, CheckStatus::Warn, "{result:?}");
    assert!(
        result.message.contains("Valkey 9.1.2") && result.message.contains("crosses forks"),
        "{}",
        result.message
    );
    let old = tgt("redis_version:7.2.4\n", &[]);
    let result = verdict("versions", &source, &old);
    assert_eq!(result.status, CheckStatus::Fail, "{result:?}");
    assert!(
        result.message.contains("2 keys") && result.message.contains("hash field TTLs"),
        "{}",
        result.message
    );
    assert!(
        result.message.contains("drop_field_ttls"),
        "{}",
        result.message
    );
    // Opting in turns the refusal into a warning that says what is lost.
    let result = decide(
        "versions",
        &source,
        &old,
        &local(100 * 1024 * MB, Some(100 * 1024 * MB)),
        json!({ "drop_field_ttls": true }),
    );
    assert_eq!(result.status, CheckStatus::Warn, "{result:?}");
    assert!(
        result.message.contains("without TTLs"),
        "{}",
        result.message
    );
    // Redis 8.2 into Valkey 9.1: another fork, both hold field TTLs.
    let result = verdict(
        "versions",
        &src(
            "redis_version:8.2.3\ndb0:keys=5,expires=0,avg_ttl=0,subexpiry=2\n",
            &[],
        ),
        &tgt(VALKEY_9, &[]),
    );
    assert_eq!(result.status, CheckStatus::Warn, "{result:?}");
}

#[test]
fn a_built_in_module_missing_on_the_target_warns_and_valkeys_lua_is_no_module_at_all() {
    let module = |name: &str| Module {
        name: name.into(),
        version: Some(1),
    };
    let mut source = src("redis_version:8.2.3\n", &[]);
    source.modules = Ok(vec![module("vectorset")]);
    let result = verdict("modules", &source, &tgt("redis_version:7.4.1\n", &[]));
    assert_eq!(result.status, CheckStatus::Warn, "{result:?}");
    assert!(
        result.message.contains("vectorset") && result.message.contains("stops at the first"),
        "{}",
        result.message
    );
    let mut source = src(VALKEY_9, &[]);
    source.modules = Ok(vec![module("lua")]);
    let result = verdict("modules", &source, &tgt("redis_version:7.2.4\n", &[]));
    assert_eq!(result.status, CheckStatus::Pass, "{result:?}");
}
