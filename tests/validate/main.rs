//! Validation against real redis-server processes: every fail and warn path the issue lists is
//! provoked on purpose, and each must answer with the right check id, status and advice.
//!
//! - `connect`: reachability, authentication, TLS, one server under two names.
//! - `source`: replication rights, role, output buffer and backlog under load, field-TTL sampling.
//! - `target`: writability, capacity, databases, modules, versions, conflicts, configuration.
//! - `faults`: unreachable and stalled servers, and the time validation takes then.
//! - `tls`: the `tls.*` checks against real TLS servers (chain, host name, expiry, mutual TLS,
//!   protocol mismatch, files, skipped verification).

#[path = "../common/mod.rs"]
mod common;

mod acl;
mod cluster;
mod connect;
mod faults;
mod helpers;
mod scan;
mod source;
mod target;
mod tls;

use helpers::*;

#[tokio::test]
async fn a_healthy_pair_passes_every_check() {
    // Without the delay a diskless source forks at once (the default 5 s is a warning).
    let source = RedisServer::start_with("7.2", &["--repl-diskless-sync-delay", "0"]);
    let target = RedisServer::start("7.2");
    set_many(&source, 0, 100, 10);
    set_many(&source, 3, 10, 10);
    // `run` measures Ferry's disk at ./data, the wrapper the spine uses before it knows data_dir.
    let report = run(&spec(&source.url(), &target.url(), json!({}))).await;
    for c in &report.checks {
        assert_eq!(c.status, CheckStatus::Pass, "{}", pretty(&report));
    }
    assert_eq!(report.status, ReportStatus::Passed);
    expect(&report, "source.connect", CheckStatus::Pass, &["Redis 7.2"]);
    let acl = &check(&report, "target.writable").details.as_ref().unwrap()["acl"];
    assert_eq!(acl["RESTORE"], "allowed", "ACL DRYRUN ran on 7.2: {acl}");
}
