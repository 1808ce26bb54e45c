//! Failures are typed and named, and never leak a password.

use ferry::spec::{Mode, OnConflict, Verify};

use crate::common::redis::RedisServer;
use crate::helpers::*;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn authenticated_servers_work_and_a_wrong_password_fails_without_leaking_it() {
    let source = RedisServer::start_with("7.2", &["--repl-diskless-sync-delay", "0"]);
    let target = RedisServer::start("7.2");
    source.cli(&[
        "ACL",
        "SETUSER",
        "mover",
        "on",
        ">src-secret-1",
        "+@all",
        "~*",
    ]);
    target.cli(&["CONFIG", "SET", "requirepass", "tgt-secret-2"]);
    populate(&source, 1);
    let mut s = spec(
        &source,
        &target,
        Mode::Snapshot,
        options(OnConflict::Fail, Verify::Full),
    );
    s.source = ferry::spec::Source::from(ferry::spec::Endpoint::new(
        ferry::redis_url::RedisUrl::parse(&format!(
            "redis://mover:src-secret-1@127.0.0.1:{}",
            source.port
        ))
        .unwrap(),
    ));
    s.target.url = ferry::redis_url::RedisUrl::parse(&format!(
        "redis://:tgt-secret-2@127.0.0.1:{}",
        target.port
    ))
    .unwrap();
    let (result, _) = start(s.clone(), quick()).finish().await;
    result.unwrap();

    s.source = ferry::spec::Source::from(ferry::spec::Endpoint::new(
        ferry::redis_url::RedisUrl::parse(&format!(
            "redis://mover:not-it-3@127.0.0.1:{}",
            source.port
        ))
        .unwrap(),
    ));
    let (result, events) = start(s, quick()).finish().await;
    let err = result.expect_err("a wrong password fails");
    assert_eq!(err.code(), "auth_failed");
    let shown = format!("{err} {err:?} {events:?}");
    for secret in ["src-secret-1", "tgt-secret-2", "not-it-3"] {
        assert!(!shown.contains(secret), "{secret} leaked: {shown}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_unreachable_source_fails_with_source_unreachable() {
    let target = RedisServer::start("7.2");
    let mut s = spec(
        &target,
        &target,
        Mode::Snapshot,
        options(OnConflict::Fail, Verify::None),
    );
    s.source = ferry::spec::Source::from(ferry::spec::Endpoint::new(
        ferry::redis_url::RedisUrl::parse(&format!(
            "redis://127.0.0.1:{}",
            crate::common::redis::free_port()
        ))
        .unwrap(),
    ));
    let (result, events) = start(s, quick()).finish().await;
    assert_eq!(result.unwrap_err().code(), "source_unreachable");
    assert!(events.is_empty(), "{events:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_user_without_psync_gets_replication_refused() {
    let source = RedisServer::start("7.2");
    let target = RedisServer::start("7.2");
    source.cli(&[
        "ACL", "SETUSER", "reader", "on", ">pw", "+@all", "-psync", "-sync", "~*",
    ]);
    let mut s = spec(
        &source,
        &target,
        Mode::Snapshot,
        options(OnConflict::Fail, Verify::None),
    );
    s.source = ferry::spec::Source::from(ferry::spec::Endpoint::new(
        ferry::redis_url::RedisUrl::parse(&format!("redis://reader:pw@127.0.0.1:{}", source.port))
            .unwrap(),
    ));
    let (result, _) = start(s, quick()).finish().await;
    let err = result.unwrap_err();
    assert_eq!(err.code(), "replication_refused", "{err}");
    assert!(err.to_string().contains("PSYNC"), "{err}");
    // And it names the reader that needs no replication.
    assert!(err.to_string().contains("`source.read: \"scan\"`"), "{err}");
}
