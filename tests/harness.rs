//! The harness itself: every supported version starts, answers, and restarts on the same port.

mod common;

use common::redis::{RedisServer, VERSIONS};

#[test]
fn every_supported_version_starts_and_reports_its_version() {
    for version in VERSIONS {
        let server = RedisServer::start(version);
        let info: String = redis::cmd("INFO")
            .arg("server")
            .query(&mut server.conn())
            .unwrap();
        assert!(
            info.contains(&format!("redis_version:{version}")),
            "expected {version}: {info}"
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
