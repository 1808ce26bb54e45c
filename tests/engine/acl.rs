//! `options.acl`: the source's ACL users carried over to the target before the first write,
//! passwords as their hashes, never in clear (and never in an event).

use ferry::model::acl::AclUserStatus;
use ferry::model::EventKind;
use ferry::spec::{AclMode, Mode, OnConflict, Options, Verify};

use crate::common::redis::RedisServer;
use crate::helpers::*;

fn acl(server: &RedisServer, args: &[&str]) {
    let _: () = redis::cmd("ACL")
        .arg(args)
        .query(&mut server.conn())
        .unwrap_or_else(|e| panic!("ACL {args:?}: {e}"));
}

/// The `ACL LIST` line of `user`.
fn line(server: &RedisServer, user: &str) -> Option<String> {
    let lines: Vec<String> = redis::cmd("ACL")
        .arg("LIST")
        .query(&mut server.conn())
        .unwrap();
    lines
        .into_iter()
        .find(|l| l.starts_with(&format!("user {user} ")))
}

/// The password hash of `user` (`#…`), as ACL LIST prints it.
fn hash_of(server: &RedisServer, user: &str) -> String {
    line(server, user)
        .unwrap()
        .split(' ')
        .find(|r| r.starts_with('#'))
        .unwrap()
        .to_string()
}

fn auth_works(server: &RedisServer, user: &str, password: &str) -> bool {
    redis::cmd("AUTH")
        .arg(user)
        .arg(password)
        .query::<()>(&mut server.conn())
        .is_ok()
}

/// A source with two application users (one with a 7.0 selector) and some data.
fn source_with_users(version: &str) -> RedisServer {
    let source = RedisServer::start_with(version, &["--repl-diskless-sync-delay", "0"]);
    acl(
        &source,
        &[
            "SETUSER",
            "app",
            "on",
            ">app-secret",
            "~app:*",
            "+@read",
            "+set",
        ],
    );
    acl(
        &source,
        &[
            "SETUSER",
            "report",
            "on",
            ">report-secret",
            "~r:*",
            "+get",
            "(~x:* +hget)",
        ],
    );
    let _: () = redis::cmd("SET")
        .arg("app:1")
        .arg("v")
        .query(&mut source.conn())
        .unwrap();
    source
}

fn acl_options(mode: AclMode) -> Options {
    Options {
        acl: mode,
        ..options(OnConflict::Fail, Verify::Full)
    }
}

async fn migrate(
    source: &RedisServer,
    target: &RedisServer,
    mode: AclMode,
) -> (Result<(), ferry::engine::EngineError>, Vec<EventKind>) {
    start(
        spec(source, target, Mode::Snapshot, acl_options(mode)),
        quick(),
    )
    .finish()
    .await
}

#[tokio::test(flavor = "multi_thread")]
async fn copy_creates_the_source_users_with_their_passwords_and_rules() {
    let source = source_with_users("7.2");
    let target = RedisServer::start("7.2");
    let (result, events) = migrate(&source, &target, AclMode::Copy).await;
    result.unwrap_or_else(|e| panic!("{e}"));
    let kinds = names(&events);
    assert_eq!(kinds[..2], ["AclDiffed", "AclCopied"], "{kinds:?}");
    let Some(EventKind::AclCopied {
        created,
        replaced,
        skipped,
    }) = events.get(1)
    else {
        unreachable!()
    };
    assert_eq!(created, &["app", "report"]);
    assert!(replaced.is_empty());
    assert_eq!(skipped, &["default"]);
    for (user, password) in [("app", "app-secret"), ("report", "report-secret")] {
        assert_eq!(line(&target, user), line(&source, user), "{user}");
        assert!(auth_works(&target, user, password), "{user}");
    }
    assert!(!auth_works(&target, "app", "wrong"));
    // The hashes are in no event.
    let json = serde_json::to_string(&events).unwrap();
    for user in ["app", "report"] {
        let hash = hash_of(&source, user);
        assert!(!json.contains(&hash[1..]), "{user}'s hash in the events");
    }
    assert!(!json.contains("secret"));
    assert_same(&source, &target, 1);

    // Run again (a restarted job does): everything is equal now, and nothing is written twice.
    let _: () = redis::cmd("FLUSHALL").query(&mut target.conn()).unwrap();
    let (result, events) = migrate(&source, &target, AclMode::Copy).await;
    result.unwrap_or_else(|e| panic!("{e}"));
    let Some(EventKind::AclDiffed { report }) = events.first() else {
        unreachable!()
    };
    assert_eq!(report.count(AclUserStatus::Equal), 2);
    let Some(EventKind::AclCopied { created, .. }) = events.get(1) else {
        unreachable!()
    };
    assert!(created.is_empty());
}

#[tokio::test(flavor = "multi_thread")]
async fn copy_refuses_a_differing_user_and_replace_overwrites_it() {
    let source = source_with_users("7.2");
    let target = RedisServer::start("7.2");
    acl(
        &target,
        &["SETUSER", "app", "on", ">other", "~other:*", "+get"],
    );
    let before = line(&target, "app");
    let (result, events) = migrate(&source, &target, AclMode::Copy).await;
    let err = result.unwrap_err();
    assert_eq!(err.code(), "acl_refused");
    assert!(err.to_string().contains("`app`"), "{err}");
    assert_eq!(names(&events), ["AclDiffed"]);
    assert_eq!(line(&target, "app"), before, "refused: unchanged");
    assert_eq!(line(&target, "report"), None, "nothing was created either");
    let dbsize: i64 = redis::cmd("DBSIZE").query(&mut target.conn()).unwrap();
    assert_eq!(dbsize, 0, "no data was written");

    let (result, events) = migrate(&source, &target, AclMode::Replace).await;
    result.unwrap_or_else(|e| panic!("{e}"));
    let Some(EventKind::AclCopied {
        created, replaced, ..
    }) = events.get(1)
    else {
        unreachable!()
    };
    assert_eq!(created, &["report"]);
    assert_eq!(replaced, &["app"]);
    assert_eq!(line(&target, "app"), line(&source, "app"));
    assert!(auth_works(&target, "app", "app-secret"));
    assert!(!auth_works(&target, "app", "other"));
    let json = serde_json::to_string(&events).unwrap();
    assert!(!json.contains(&hash_of(&source, "app")[1..]));
}

#[tokio::test(flavor = "multi_thread")]
async fn a_rule_the_target_refuses_fails_naming_the_user_not_its_password() {
    // A 7.2 selector means nothing to 6.2.
    let source = source_with_users("7.2");
    let target = RedisServer::start("6.2");
    let (result, _events) = migrate(&source, &target, AclMode::Copy).await;
    let err = result.unwrap_err();
    assert_eq!(err.code(), "acl_refused");
    let text = err.to_string();
    assert!(text.contains("`report`"), "{text}");
    assert!(!text.contains(&hash_of(&source, "report")[1..]), "{text}");
}

#[tokio::test(flavor = "multi_thread")]
async fn a_dry_run_records_the_acl_diff_and_changes_no_user() {
    let source = source_with_users("7.2");
    let target = RedisServer::start("7.2");
    let options = Options {
        write_probe: false,
        ..acl_options(AclMode::Copy)
    };
    let (result, events) = start(spec(&source, &target, Mode::DryRun, options), quick())
        .finish()
        .await;
    result.unwrap_or_else(|e| panic!("{e}"));
    let Some(EventKind::AclDiffed { report }) = events
        .iter()
        .find(|e| matches!(e, EventKind::AclDiffed { .. }))
    else {
        panic!("{:?}", names(&events))
    };
    assert_eq!(report.count(AclUserStatus::Missing), 2);
    assert!(!names(&events).contains(&"AclCopied"));
    assert_eq!(line(&target, "app"), None);
    assert_eq!(line(&target, "report"), None);
}
