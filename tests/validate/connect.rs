//! `source.connect`, `target.connect`, `distinct_servers`: authentication, identity (TLS: `tls.rs`).

use crate::helpers::*;

#[tokio::test]
async fn a_wrong_password_fails_with_authentication_failed_and_never_shows_a_password() {
    let right = "correct-horse-battery";
    let wrong = "wrong-horse-staple";
    // The harness probes readiness with an unauthenticated PING, so the password is set after start.
    let source = RedisServer::start("7.0");
    let target = RedisServer::start("6.2");
    for server in [&source, &target] {
        let _: () = redis::cmd("CONFIG")
            .arg(&["SET", "requirepass", right])
            .query(&mut server.conn())
            .unwrap();
    }
    let source_url = format!("redis://:{right}@127.0.0.1:{}", source.port);
    let target_url = format!("redis://:{wrong}@127.0.0.1:{}", target.port);
    let report = validate(&source_url, &target_url).await;
    expect(&report, "source.connect", CheckStatus::Pass, &[]);
    expect(
        &report,
        "target.connect",
        CheckStatus::Fail,
        &["authentication failed"],
    );
    expect(
        &report,
        "capacity.memory",
        CheckStatus::Skipped,
        &["not checked", "target is unreachable"],
    );
    assert_eq!(
        check(&report, "capacity.memory").details.as_ref().unwrap()["waits_on"],
        "target.connect"
    );
    assert_eq!(report.status, ReportStatus::Failed);
    let text = serde_json::to_string(&report).unwrap();
    assert!(!text.contains(right), "the right password leaked: {text}");
    assert!(!text.contains(wrong), "the wrong password leaked: {text}");

    // A named ACL user with the wrong password on 7.x: the same answer.
    let named = format!("redis://default:{wrong}@127.0.0.1:{}", source.port);
    let report = validate(&named, &source_url).await;
    expect(
        &report,
        "source.connect",
        CheckStatus::Fail,
        &["authentication failed"],
    );
    assert!(!serde_json::to_string(&report).unwrap().contains(wrong));
}

#[tokio::test]
async fn the_same_server_under_two_names_fails_distinct_servers() {
    let server = RedisServer::start("7.2");
    let report = validate(&server.url(), &format!("redis://localhost:{}", server.port)).await;
    expect(
        &report,
        "distinct_servers",
        CheckStatus::Fail,
        &["same server", "run_id"],
    );
    assert_eq!(report.status, ReportStatus::Failed);
}

/// A port where something other than Redis answers (here: an HTTP server's refusal), and a
/// database index the server does not have: both said in plain words.
#[tokio::test]
async fn a_non_redis_port_and_a_missing_database_are_said_plainly() {
    use std::io::{Read, Write};
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let http = format!(
        "redis://127.0.0.1:{}",
        listener.local_addr().unwrap().port()
    );
    std::thread::spawn(move || {
        for stream in listener.incoming() {
            let Ok(mut stream) = stream else { return };
            let mut buf = [0u8; 1024];
            let _ = stream.read(&mut buf);
            let _ = stream.write_all(b"HTTP/1.1 400 Bad Request\r\nContent-Length: 0\r\n\r\n");
        }
    });
    let target = RedisServer::start("7.2");
    let report = validate(&http, &target.url()).await;
    expect(
        &report,
        "source.connect",
        CheckStatus::Fail,
        &[
            "something other than Redis answers",
            "HTTP/1.1 400",
            "check the port",
        ],
    );

    let missing_db = format!("{}/40", target.url());
    let report = validate(&missing_db, &target.url()).await;
    expect(
        &report,
        "source.connect",
        CheckStatus::Fail,
        &[
            "database 40 does not exist on that server",
            "it has 16 databases",
        ],
    );
}
