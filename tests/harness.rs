//! The harness itself: every supported version starts, answers, and restarts on the same port.

mod common;

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
