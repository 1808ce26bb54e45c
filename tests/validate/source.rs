//! The source side: replication rights, role, and the buffers a long sync needs.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use crate::helpers::*;

#[tokio::test]
async fn a_renamed_psync_fails_naming_the_scan_reader_and_the_alternatives() {
    // `rename-command PSYNC ""` disables PSYNC, as managed services do.
    let source = RedisServer::start_with("7.4", &["--rename-command", "PSYNC", "\"\""]);
    let target = RedisServer::start("7.4");
    let report = validate(&source.url(), &target.url()).await;
    expect(
        &report,
        "source.replication",
        CheckStatus::Fail,
        &[
            "PSYNC is renamed or disabled",
            "`source.read: \"scan\"`",
            "replica",
            "RDB",
        ],
    );
    let details = check(&report, "source.replication")
        .details
        .clone()
        .unwrap();
    assert_eq!(details["psync"], false);
    assert_eq!(details["sync"], true);

    // Same on 6.2, which has no ACL DRYRUN: COMMAND INFO alone tells.
    let old = RedisServer::start_with("6.2", &["--rename-command", "PSYNC", "\"\""]);
    let report = validate(&old.url(), &target.url()).await;
    expect(
        &report,
        "source.replication",
        CheckStatus::Fail,
        &["PSYNC is renamed or disabled", "source.read"],
    );
}

#[tokio::test]
async fn an_acl_user_without_psync_or_restore_rights_is_named() {
    let server = RedisServer::start("7.2");
    let target = RedisServer::start("7.2");
    for s in [&server, &target] {
        let _: () = redis::cmd("ACL")
            .arg(&[
                "SETUSER", "limited", "on", ">pw", "~*", "+@all", "-psync", "-restore",
            ])
            .query(&mut s.conn())
            .unwrap();
    }
    let report = validate(
        &format!("redis://limited:pw@127.0.0.1:{}", server.port),
        &format!("redis://limited:pw@127.0.0.1:{}", target.port),
    )
    .await;
    expect(
        &report,
        "source.replication",
        CheckStatus::Warn,
        &["`limited`", "PSYNC", "+psync"],
    );
    expect(
        &report,
        "target.writable",
        CheckStatus::Fail,
        &["`limited`", "RESTORE", "+restore"],
    );
    expect(&report, "source.permissions", CheckStatus::Fail, &["PSYNC"]);
    expect(
        &report,
        "target.permissions",
        CheckStatus::Fail,
        &["RESTORE"],
    );
}

/// Runs a guide line (`ACL SETUSER …`) on `server`, with `user` and password `pw`.
fn setuser(server: &RedisServer, line: &str, user: &str) {
    let line = line
        .replace("ferry-source", user)
        .replace("ferry-target", user)
        .replace(">CHANGE-ME", ">pw");
    let words: Vec<&str> = line.split_whitespace().collect();
    let mut cmd = redis::cmd(words[0]);
    for word in &words[1..] {
        cmd.arg(*word);
    }
    let _: () = cmd
        .query(&mut server.conn())
        .unwrap_or_else(|e| panic!("`{line}` on {}: {e}", server.version));
}

/// The guide's minimal users pass `*.permissions` on 6.2 (ACL GETUSER + COMMAND INFO) and on 7.x
/// (ACL DRYRUN); taking one right away fails, naming it and the line that grants it.
#[tokio::test]
async fn the_guides_minimal_users_pass_and_a_missing_right_is_named_on_6_2_and_7_2() {
    let users = ferry::validate::guide::users();
    for version in ["6.2", "7.2"] {
        let versions = if version == "6.2" {
            "6.2"
        } else {
            "7.0 and later"
        };
        let line = |server: &str| {
            users
                .iter()
                .find(|u| u.server == server && u.versions == versions)
                .map(|u| u.setuser.clone())
                .expect("a guide line")
        };
        let source = RedisServer::start(version);
        let target = RedisServer::start(version);
        setuser(&source, &line("source"), "mover");
        setuser(&target, &line("target"), "mover");
        let source_url = format!("redis://mover:pw@127.0.0.1:{}", source.port);
        let target_url = format!("redis://mover:pw@127.0.0.1:{}", target.port);
        let report = validate(&source_url, &target_url).await;
        for id in [
            "source.permissions",
            "target.permissions",
            "source.replication",
        ] {
            expect(&report, id, CheckStatus::Pass, &[]);
        }
        assert_ne!(
            report.status,
            ReportStatus::Failed,
            "{version}: {}",
            pretty(&report)
        );

        let _: () = redis::cmd("ACL")
            .arg(&["SETUSER", "mover", "-psync"])
            .query(&mut source.conn())
            .unwrap();
        let _: () = redis::cmd("ACL")
            .arg(&["SETUSER", "mover", "-multi"])
            .query(&mut target.conn())
            .unwrap();
        let report = validate(&source_url, &target_url).await;
        expect(
            &report,
            "source.permissions",
            CheckStatus::Fail,
            &["`mover`", "PSYNC", "ACL SETUSER mover on", "+psync"],
        );
        expect(
            &report,
            "target.permissions",
            CheckStatus::Fail,
            &["`mover`", "MULTI", "+multi"],
        );
    }
}

#[tokio::test]
async fn a_cluster_enabled_source_fails() {
    let source = RedisServer::start_with("7.0", &["--cluster-enabled", "yes"]);
    let target = RedisServer::start("7.0");
    let report = validate(&source.url(), &target.url()).await;
    // A lone cluster node with no slots (no shard yet): described as a topology Ferry moves,
    // and refused because nothing is served.
    expect(
        &report,
        "cluster.mode",
        CheckStatus::Pass,
        &["the source is a Redis Cluster of 0 masters"],
    );
    expect(
        &report,
        "cluster.coverage",
        CheckStatus::Fail,
        &["no master of the source serves slots 0-16383"],
    );
    expect(&report, "source.role", CheckStatus::Pass, &["cluster.*"]);
}

#[tokio::test]
async fn a_busy_source_with_small_buffers_warns_about_the_output_buffer_and_the_backlog() {
    let source = RedisServer::start_with(
        "7.2",
        &[
            "--client-output-buffer-limit",
            "replica",
            "256kb",
            "128kb",
            "1",
            "--repl-backlog-size",
            "16kb",
        ],
    );
    let target = RedisServer::start("7.2");
    // A steady write load (~ a few MB/s) until the report is in.
    let stop = Arc::new(AtomicBool::new(false));
    let writer = {
        let stop = stop.clone();
        let mut conn = source.conn();
        std::thread::spawn(move || {
            let value = "x".repeat(1024);
            while !stop.load(Ordering::Relaxed) {
                let mut pipe = redis::pipe();
                for i in 0..50 {
                    pipe.cmd("SET")
                        .arg(format!("load:{i}"))
                        .arg(&value)
                        .ignore();
                }
                pipe.query::<()>(&mut conn).expect("write load");
            }
        })
    };
    wait_for(
        "the source to report a write rate",
        Duration::from_secs(30),
        || {
            info_field(&source, "stats", "instantaneous_input_kbps")
                .parse::<f64>()
                .unwrap_or(0.0)
                > 100.0
        },
    );
    let report = validate(&source.url(), &target.url()).await;
    stop.store(true, Ordering::Relaxed);
    writer.join().unwrap();
    expect(
        &report,
        "source.output_buffer",
        CheckStatus::Warn,
        &["endless", "client-output-buffer-limit"],
    );
    expect(
        &report,
        "source.backlog",
        CheckStatus::Warn,
        &["repl-backlog-size", "CONFIG SET"],
    );
}

#[tokio::test]
async fn sampling_finds_hash_field_ttls_where_info_does_not_count_them() {
    use ferry::transport::Peer;
    use ferry::validate::conn::{connect, ConnectOptions};
    use ferry::validate::facts::sample_field_ttls;
    // Redis 7.4 counts them (subexpiry), so the sampler is exercised directly: it is what
    // validation falls back to on a server that does not.
    let server = RedisServer::start("7.4");
    let mut conn = server.conn();
    for db in [0, 2] {
        let _: () = redis::cmd("SELECT").arg(db).query(&mut conn).unwrap();
        for i in 0..5 {
            let _: () = redis::cmd("HSET")
                .arg(&[&format!("h{i}"), "a", "1", "b", "2"])
                .query(&mut conn)
                .unwrap();
        }
        let _: () = redis::cmd("SET")
            .arg(&["plain", "x"])
            .query(&mut conn)
            .unwrap();
    }
    let _: Vec<i64> = redis::cmd("HEXPIRE")
        .arg(&["h3", "1000", "FIELDS", "1", "b"])
        .query(&mut conn)
        .unwrap();
    let options = ConnectOptions {
        connect_timeout: Duration::from_secs(5),
        call_timeout: Duration::from_secs(5),
        budget: Duration::from_secs(20),
    };
    let url = ferry::redis_url::RedisUrl::parse(&server.url()).unwrap();
    let admin = connect(&Peer::from_url(&url).unwrap(), &options)
        .await
        .unwrap_or_else(|e| panic!("connect: {e}"));
    let sample = sample_field_ttls(&admin, &[0, 2], 0).await.unwrap();
    assert_eq!(sample.hashes_sampled, 10);
    assert_eq!(sample.with_field_ttls, 1, "only h3 in db 2 has a field TTL");
    // The connection is back on its own db.
    let dbsize = admin.call("DBSIZE", &[b"DBSIZE"]).await.unwrap();
    assert_eq!(dbsize.as_int(), Some(6));
}

#[tokio::test]
async fn a_diskless_sync_delay_warns_with_its_fix_and_a_disk_based_source_passes() {
    // Redis 7.0+ defaults: repl-diskless-sync yes, repl-diskless-sync-delay 5.
    let source = RedisServer::start("7.2");
    let target = RedisServer::start("7.2");
    let report = validate(&source.url(), &target.url()).await;
    expect(
        &report,
        "source.sync_delay",
        CheckStatus::Warn,
        &[
            "repl-diskless-sync-delay (5 s)",
            "CONFIG SET repl-diskless-sync-delay 0",
        ],
    );
    let disk = RedisServer::start_with("7.2", &["--repl-diskless-sync", "no"]);
    let report = validate(&disk.url(), &target.url()).await;
    expect(
        &report,
        "source.sync_delay",
        CheckStatus::Pass,
        &["to disk first"],
    );
}
