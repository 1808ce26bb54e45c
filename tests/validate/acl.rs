//! `acl.users`: the source's ACL users against the target's, per `options.acl`, naming users and
//! never a password or its hash.

use crate::helpers::*;

fn acl(server: &RedisServer, args: &[&str]) {
    let _: () = redis::cmd("ACL")
        .arg(args)
        .query(&mut server.conn())
        .unwrap();
}

fn app_hash(server: &RedisServer) -> String {
    let lines: Vec<String> = redis::cmd("ACL")
        .arg("LIST")
        .query(&mut server.conn())
        .unwrap();
    let line = lines.iter().find(|l| l.starts_with("user app ")).unwrap();
    line.split(' ').find(|r| r.starts_with('#')).unwrap()[1..].to_string()
}

#[tokio::test]
async fn acl_users_warn_under_ignore_fail_a_differing_user_under_copy_and_pass_replace() {
    let source = RedisServer::start("7.2");
    let target = RedisServer::start("7.2");
    acl(
        &source,
        &["SETUSER", "app", "on", ">app-secret", "~app:*", "+@read"],
    );
    acl(&source, &["SETUSER", "batch", "on", ">b", "~*", "+@all"]);
    let (s, t) = (source.url(), target.url());

    let report = validate(&s, &t).await;
    expect(
        &report,
        "acl.users",
        CheckStatus::Warn,
        &["lacks 2", "`app`", "`batch`", "`copy`"],
    );

    let report = validate_with(&s, &t, json!({"acl": "copy"})).await;
    expect(
        &report,
        "acl.users",
        CheckStatus::Pass,
        &["2 user(s) to create"],
    );

    acl(
        &target,
        &["SETUSER", "app", "on", ">other", "~other:*", "+get"],
    );
    acl(&target, &["SETUSER", "batch", "on", ">b", "~*", "+@all"]);
    let report = validate_with(&s, &t, json!({"acl": "copy"})).await;
    expect(
        &report,
        "acl.users",
        CheckStatus::Fail,
        &["`app`", "other rules", "`replace`"],
    );
    assert!(!check(&report, "acl.users").message.contains("batch"));
    assert_eq!(report.status, ReportStatus::Failed);
    let json = pretty(&report);
    assert!(!json.contains(&app_hash(&source)), "{json}");
    assert!(!json.contains(&app_hash(&target)), "{json}");

    let report = validate_with(&s, &t, json!({"acl": "replace"})).await;
    expect(
        &report,
        "acl.users",
        CheckStatus::Pass,
        &["0 user(s) to create, 1 to replace, 1 already equal"],
    );
    // Under ignore, users present on both sides pass, whatever their rules.
    let report = validate(&s, &t).await;
    expect(&report, "acl.users", CheckStatus::Pass, &["2 compared"]);
}

#[tokio::test]
async fn copy_without_the_acl_command_fails_and_ignore_does_not_care() {
    let source = RedisServer::start("7.2");
    let target = RedisServer::start("7.2");
    for s in [&source, &target] {
        acl(
            s,
            &["SETUSER", "mover", "on", ">pw", "~*", "&*", "+@all", "-acl"],
        );
    }
    let url = |s: &RedisServer| format!("redis://mover:pw@127.0.0.1:{}", s.port);
    let report = validate_with(&url(&source), &url(&target), json!({"acl": "copy"})).await;
    expect(
        &report,
        "acl.users",
        CheckStatus::Fail,
        &["ACL LIST", "+acl"],
    );
    let report = validate(&url(&source), &url(&target)).await;
    expect(&report, "acl.users", CheckStatus::Pass, &["not compared"]);
}
