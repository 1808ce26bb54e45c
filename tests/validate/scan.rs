//! `source.read: scan`: the check names what is given up, fails until the source publishes
//! keyspace notifications (naming the `CONFIG SET`), and passes the checks only a replication
//! link needs.

use ferry::spec::{Source, SourceRead, Transfer};

use crate::helpers::*;

/// A source that refuses replication, as managed services do.
pub fn no_sync_source(version: &str) -> RedisServer {
    RedisServer::start_with(
        version,
        &[
            "--rename-command",
            "SYNC",
            "",
            "--rename-command",
            "PSYNC",
            "",
        ],
    )
}

async fn validate_scan(
    source: &RedisServer,
    target: &RedisServer,
    options: serde_json::Value,
) -> ValidationReport {
    let mut spec = spec(&source.url(), &target.url(), options);
    let endpoint = spec.source.endpoint().unwrap().clone();
    spec.source = Source::Server(endpoint, SourceRead::Scan, ferry::spec::Prefer::Master);
    let data_dir = tempfile::tempdir().unwrap();
    run_with(&spec, &ValidateContext::new(data_dir.path())).await
}

#[tokio::test]
async fn scan_without_notifications_fails_naming_the_config_set_and_the_option() {
    let source = no_sync_source("7.2");
    let target = RedisServer::start("7.2");
    let report = validate_scan(&source, &target, json!({})).await;
    expect(
        &report,
        "source.read",
        CheckStatus::Fail,
        &[
            "CONFIG SET notify-keyspace-events EA",
            "options.set_keyspace_notifications",
        ],
    );
    // What only a replication link needs does not apply; relay is not offered.
    for id in [
        "source.replication",
        "source.output_buffer",
        "source.backlog",
        "source.sync_delay",
    ] {
        expect(&report, id, CheckStatus::Pass, &["source.read: scan"]);
    }
    expect(&report, "transfer", CheckStatus::Pass, &["restore"]);
    assert_eq!(
        check(&report, "source.permissions").status,
        CheckStatus::Pass,
        "{}",
        pretty(&report)
    );

    // Ferry may set them: the check no longer fails, and says what is lost and what it will set.
    let report = validate_scan(
        &source,
        &target,
        json!({"set_keyspace_notifications": true}),
    )
    .await;
    expect(
        &report,
        "source.read",
        CheckStatus::Warn,
        &[
            "sets notify-keyspace-events to `EA`",
            "no order across keys",
            "atomically",
            "at-most-once",
            "FLUSHDB",
            "TTLs",
            "verify: full",
        ],
    );
    let details = check(&report, "source.read").details.clone().unwrap();
    assert_eq!(details["guarantees_lost"].as_array().unwrap().len(), 7);
    // Validation only looks: the source's setting is unchanged.
    assert_eq!(notify_setting(&source), "");

    // Set by hand: passes the notification part without the option.
    source.cli(&["CONFIG", "SET", "notify-keyspace-events", "KEA"]);
    let report = validate_scan(&source, &target, json!({})).await;
    expect(
        &report,
        "source.read",
        CheckStatus::Warn,
        &["keyspace notifications (`AKE`)"],
    );

    // An explicit relay cannot read by SCAN.
    let report = validate_scan(&source, &target, json!({"transfer": Transfer::Relay})).await;
    expect(
        &report,
        "transfer",
        CheckStatus::Fail,
        &["source.read scan"],
    );
}

#[tokio::test]
async fn the_replication_reader_against_a_source_without_psync_fails_naming_scan() {
    let source = no_sync_source("7.2");
    let target = RedisServer::start("7.2");
    let report = validate(&source.url(), &target.url()).await;
    expect(
        &report,
        "source.replication",
        CheckStatus::Fail,
        &[
            "PSYNC is renamed or disabled",
            "so is SYNC",
            "`source.read: \"scan\"`",
        ],
    );
    expect(&report, "source.read", CheckStatus::Pass, &["replication"]);
}

pub fn notify_setting(server: &RedisServer) -> String {
    let reply: Vec<String> = redis::cmd("CONFIG")
        .arg("GET")
        .arg("notify-keyspace-events")
        .query(&mut server.conn())
        .unwrap();
    reply.get(1).cloned().unwrap_or_default()
}

/// A scan reader's user needs PSUBSCRIBE on the key-event channels, not PSYNC: the permissions
/// follow `source.read`.
#[tokio::test]
async fn scan_needs_the_key_event_channels_and_not_psync() {
    let source = RedisServer::start("7.2");
    let target = RedisServer::start("7.2");
    source.cli(&["CONFIG", "SET", "notify-keyspace-events", "EA"]);
    for rules in [
        // The replication commands refused, the channels granted exactly.
        vec![
            "scanner",
            "on",
            ">pw",
            "~*",
            "+@all",
            "-psync",
            "-sync",
            "-replconf",
            "resetchannels",
            "&__keyevent@*__:*",
        ],
        // No subscription.
        vec!["nosub", "on", ">pw", "~*", "+@all", "-psubscribe"],
    ] {
        let _: () = redis::cmd("ACL")
            .arg("SETUSER")
            .arg(&rules)
            .query(&mut source.conn())
            .unwrap();
    }
    for (user, ok) in [("scanner", true), ("nosub", false)] {
        let url = format!("redis://{user}:pw@127.0.0.1:{}", source.port);
        let mut spec = spec(&url, &target.url(), json!({}));
        let endpoint = spec.source.endpoint().unwrap().clone();
        spec.source = Source::Server(endpoint, SourceRead::Scan, ferry::spec::Prefer::Master);
        let data_dir = tempfile::tempdir().unwrap();
        let report = run_with(&spec, &ValidateContext::new(data_dir.path())).await;
        if ok {
            expect(&report, "source.permissions", CheckStatus::Pass, &[]);
            expect(&report, "source.read", CheckStatus::Warn, &["read by SCAN"]);
        } else {
            expect(
                &report,
                "source.permissions",
                CheckStatus::Fail,
                &["PSUBSCRIBE", "&__keyevent@*__:*"],
            );
            expect(&report, "source.read", CheckStatus::Fail, &["PSUBSCRIBE"]);
        }
    }
}
