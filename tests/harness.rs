//! The harness itself: every supported version starts, answers, and restarts on the same port.

mod common;

use common::cluster::RedisCluster;
use common::redis::{server_version, RedisServer, VERSIONS};

#[test]
fn every_supported_version_starts_and_reports_its_version() {
    for version in VERSIONS {
        let server = RedisServer::start(version);
        let info: String = redis::cmd("INFO")
            .arg("server")
            .query(&mut server.conn())
            .unwrap();
        // Valkey keeps `redis_version:7.2.4` and reports its own in `valkey_version`.
        let field = match version.strip_prefix("valkey-") {
            Some(v) => format!("valkey_version:{v}"),
            None => format!("redis_version:{version}"),
        };
        assert!(info.contains(&field), "expected {version}: {info}");
        let parsed = ferry::rdb::version::ServerVersion::from_info(|name| {
            info.lines()
                .find_map(|l| l.trim_end().strip_prefix(name)?.strip_prefix(':'))
        })
        .expect("INFO names the server");
        let wanted = server_version(version);
        assert_eq!(
            (parsed.fork, parsed.major, parsed.minor),
            (wanted.fork, wanted.major, wanted.minor),
            "{version}"
        );
    }
}

#[test]
fn a_killed_server_restarts_on_the_same_port() {
    let mut server = RedisServer::start("7.0");
    let port = server.port;
    server.kill();
    server.restart();
    assert_eq!(server.port, port);
    let pong: String = redis::cmd("PING").query(&mut server.conn()).unwrap();
    assert_eq!(pong, "PONG");
}

/// A 3-master cluster forms on free ports, every node agrees, and Ferry's slot of a key (CRC16
/// with hash tags) is the one the server computes, for plain keys, tags, and the per-slot tags.
#[test]
fn a_cluster_forms_and_ferry_computes_the_servers_key_slots() {
    let cluster = RedisCluster::start("7.4", 3, 0);
    assert_eq!(cluster.master_ports().len(), 3);
    let mut conn = cluster.nodes[0].conn();
    let mut keys: Vec<String> = (0..500).map(|i| format!("key:{i}")).collect();
    keys.extend(["{user1}.a", "x{}y", "a{b", "{}", "foo{{bar}}zap", "é{ü}"].map(String::from));
    let tags = ferry::cluster::SlotTags::get();
    keys.extend(
        (0..16384u16)
            .step_by(97)
            .map(|s| format!("ferry:offset:{{{}}}:m", tags.tag(s))),
    );
    let mut pipe = redis::pipe();
    for key in &keys {
        pipe.cmd("CLUSTER").arg("KEYSLOT").arg(key);
    }
    let theirs: Vec<u16> = pipe.query(&mut conn).unwrap();
    let ours: Vec<u16> = keys
        .iter()
        .map(|k| ferry::cluster::key_slot(k.as_bytes()))
        .collect();
    assert_eq!(ours, theirs);
    // The master of a key is one of the three, and a write there lands.
    let port = cluster.master_of("key:1");
    let _: () = redis::cmd("SET")
        .arg("key:1")
        .arg("v")
        .query(&mut cluster.node(port).conn())
        .unwrap();
}

/// 6.2 (no cluster-port setting, bus = port + 10000) forms with a replica per master.
#[test]
fn a_6_2_cluster_with_replicas_forms() {
    let cluster = RedisCluster::start("6.2", 3, 1);
    assert_eq!(cluster.master_ports().len(), 3);
    assert_eq!(cluster.replica_ports().len(), 3);
}
