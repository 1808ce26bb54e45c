//! The `ferry` binary's other commands.

use std::process::Command;

use crate::common::redis::RedisServer;

#[test]
fn ferry_openapi_prints_the_committed_document() {
    let out = Command::new(env!("CARGO_BIN_EXE_ferry"))
        .arg("openapi")
        .output()
        .unwrap();
    assert!(out.status.success());
    assert_eq!(
        String::from_utf8(out.stdout).unwrap(),
        ferry::api::openapi_json()
    );
}

#[test]
fn ferry_migrate_records_the_run_and_exits_by_its_outcome() {
    let (source, target) = (RedisServer::start("7.2"), RedisServer::start("7.2"));
    crate::lifecycle::require_password(&source, "cli-pw-77");
    let data_dir = tempfile::tempdir().unwrap();
    let out = Command::new(env!("CARGO_BIN_EXE_ferry"))
        .args([
            "migrate",
            "--source",
            &format!("redis://:cli-pw-77@127.0.0.1:{}", source.port),
        ])
        .args(["--target", &target.url(), "--no-backup", "--data-dir"])
        .arg(data_dir.path())
        .env("FERRY_CONFIG", "/dev/null")
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        !stdout.contains("cli-pw-77") && !stderr.contains("cli-pw-77"),
        "{stdout}{stderr}"
    );
    assert!(stdout.contains("[pass] source.connect"), "{stdout}{stderr}");
    assert!(stdout.contains("MigrationStarted"), "{stdout}{stderr}");
    if out.status.success() {
        assert!(stdout.contains("MigrationCompleted"), "{stdout}");
    } else {
        // Until the engine lands, the run ends in a clear failure.
        assert!(stderr.contains("engine_unavailable"), "{stdout}{stderr}");
    }
    // The run is recorded in the local store.
    assert!(data_dir.path().join("log").exists());
}

#[test]
fn ferry_migrate_refuses_a_bad_url_without_echoing_it() {
    let out = Command::new(env!("CARGO_BIN_EXE_ferry"))
        .args([
            "migrate",
            "--source",
            "http://u:leak-me@h:1",
            "--target",
            "redis://h:2",
        ])
        .env("FERRY_CONFIG", "/dev/null")
        .output()
        .unwrap();
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("--source"), "{stderr}");
    assert!(!stderr.contains("leak-me"), "{stderr}");
}
