//! Validation against real redis-server processes: every fail and warn path the issue lists is
//! provoked on purpose, and each must answer with the right check id, status and advice.

#[path = "../common/mod.rs"]
mod common;

use std::net::TcpListener;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use common::redis::{free_port, modules_dir, RedisServer};
use ferry::spec::MigrationSpec;
use ferry::store::event::{CheckResult, CheckStatus, ReportStatus, ValidationReport};
use ferry::validate::checks::ALL;
use ferry::validate::{run, run_with, ValidateContext};
use serde_json::json;

fn spec(source: &str, target: &str, options: serde_json::Value) -> MigrationSpec {
    serde_json::from_value(json!({
        "source": { "url": source },
        "target": { "url": target },
        "options": options,
    }))
    .expect("a valid spec")
}

async fn validate(source: &str, target: &str) -> ValidationReport {
    validate_with(source, target, json!({})).await
}

async fn validate_with(source: &str, target: &str, options: serde_json::Value) -> ValidationReport {
    let data_dir = tempfile::tempdir().expect("temp data_dir");
    let report = run_with(
        &spec(source, target, options),
        &ValidateContext::new(data_dir.path()),
    )
    .await;
    assert_eq!(
        report
            .checks
            .iter()
            .map(|c| c.id.as_str())
            .collect::<Vec<_>>(),
        ALL.iter().map(|c| c.id).collect::<Vec<_>>(),
        "every check id appears once, in order"
    );
    report
}

/// The check `id`, or a panic that shows the whole report.
fn check<'a>(report: &'a ValidationReport, id: &str) -> &'a CheckResult {
    report
        .checks
        .iter()
        .find(|c| c.id == id)
        .unwrap_or_else(|| panic!("no check {id} in {}", pretty(report)))
}

fn pretty(report: &ValidationReport) -> String {
    serde_json::to_string_pretty(report).unwrap()
}

/// Asserts the check's status and that its message contains every fragment.
fn expect(report: &ValidationReport, id: &str, status: CheckStatus, fragments: &[&str]) {
    let found = check(report, id);
    assert_eq!(found.status, status, "{id}: {}", pretty(report));
    for fragment in fragments {
        assert!(
            found.message.contains(fragment),
            "{id} message should contain {fragment:?}: {}",
            found.message
        );
    }
}

fn set_many(server: &RedisServer, db: u32, count: usize, value_len: usize) {
    let mut conn = server.conn();
    let value = "v".repeat(value_len);
    let mut pipe = redis::pipe();
    pipe.cmd("SELECT").arg(db).ignore();
    for i in 0..count {
        pipe.cmd("SET").arg(format!("key:{i}")).arg(&value).ignore();
    }
    pipe.query::<()>(&mut conn).expect("load keys");
}

fn info_field(server: &RedisServer, section: &str, field: &str) -> String {
    let info: String = redis::cmd("INFO")
        .arg(section)
        .query(&mut server.conn())
        .unwrap();
    info.lines()
        .find_map(|l| l.strip_prefix(&format!("{field}:")))
        .unwrap_or_default()
        .trim()
        .to_string()
}

/// Polls `condition` until it holds, or panics with `what` after `timeout`.
fn wait_for(what: &str, timeout: Duration, mut condition: impl FnMut() -> bool) {
    let deadline = Instant::now() + timeout;
    while !condition() {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(50));
    }
}

#[tokio::test]
async fn a_healthy_pair_passes_every_check() {
    let source = RedisServer::start("7.2");
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
        CheckStatus::Fail,
        &["not checked", "target is unreachable"],
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

#[tokio::test]
async fn a_renamed_psync_warns_with_the_alternatives() {
    // `rename-command PSYNC ""` disables PSYNC, as managed services do.
    let source = RedisServer::start_with("7.4", &["--rename-command", "PSYNC", "\"\""]);
    let target = RedisServer::start("7.4");
    let report = validate(&source.url(), &target.url()).await;
    expect(
        &report,
        "source.replication",
        CheckStatus::Warn,
        &["PSYNC is renamed or disabled", "replica", "RDB"],
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
        CheckStatus::Warn,
        &["PSYNC is renamed or disabled"],
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
}

#[tokio::test]
async fn a_tiny_maxmemory_fails_and_an_evicting_policy_warns() {
    let source = RedisServer::start("7.2");
    set_many(&source, 0, 1000, 4096);
    let tiny = RedisServer::start_with("7.2", &["--maxmemory", "1mb"]);
    let report = validate(&source.url(), &tiny.url()).await;
    expect(
        &report,
        "capacity.memory",
        CheckStatus::Fail,
        &["free under its maxmemory", "CONFIG SET maxmemory"],
    );

    let evicting = RedisServer::start_with(
        "7.2",
        &["--maxmemory", "1gb", "--maxmemory-policy", "allkeys-lru"],
    );
    let report = validate(&source.url(), &evicting.url()).await;
    expect(
        &report,
        "capacity.memory",
        CheckStatus::Warn,
        &["allkeys-lru", "noeviction"],
    );
    expect(
        &report,
        "maxmemory_policy",
        CheckStatus::Warn,
        &["noeviction", "allkeys-lru"],
    );
}

#[tokio::test]
async fn a_read_only_replica_target_fails_and_a_replica_source_is_fine() {
    let master = RedisServer::start("7.2");
    let replica = RedisServer::start_with(
        "7.2",
        &["--replicaof", "127.0.0.1", &master.port.to_string()],
    );
    wait_for(
        "the replica's link to come up",
        Duration::from_secs(30),
        || info_field(&replica, "replication", "master_link_status") == "up",
    );
    let other = RedisServer::start("7.2");

    let report = validate(&other.url(), &replica.url()).await;
    expect(
        &report,
        "target.writable",
        CheckStatus::Fail,
        &["read-only replica", "REPLICAOF NO ONE"],
    );

    let report = validate(&replica.url(), &other.url()).await;
    expect(
        &report,
        "source.role",
        CheckStatus::Pass,
        &["replica of", "fine"],
    );
}

#[tokio::test]
async fn a_cluster_enabled_source_fails() {
    let source = RedisServer::start_with("7.0", &["--cluster-enabled", "yes"]);
    let target = RedisServer::start("7.0");
    let report = validate(&source.url(), &target.url()).await;
    expect(
        &report,
        "source.role",
        CheckStatus::Fail,
        &["cluster mode", "not support"],
    );
}

/// A copy of a Redis Stack module that redis-server will load: the installed `.so` files lack the
/// execute bit, and redis-server refuses modules without it.
fn loadable_module(version: &str, file: &str) -> (tempfile::TempDir, String) {
    use std::os::unix::fs::PermissionsExt;
    let dir = tempfile::tempdir().unwrap();
    let copy = dir.path().join(file);
    std::fs::copy(modules_dir(version).join(file), &copy).expect("copy the module");
    std::fs::set_permissions(&copy, std::fs::Permissions::from_mode(0o755)).unwrap();
    let path = copy.to_str().unwrap().to_string();
    (dir, path)
}

#[tokio::test]
async fn a_module_missing_on_the_target_fails_naming_it() {
    let (_module_dir, rejson) = loadable_module("7.4", "rejson.so");
    let rejson = rejson.as_str();
    let source = RedisServer::start_with("7.4", &["--loadmodule", rejson]);
    let _: () = redis::cmd("JSON.SET")
        .arg(&["doc", "$", r#"{"a":1}"#])
        .query(&mut source.conn())
        .unwrap();
    let bare = RedisServer::start("7.4");
    let report = validate(&source.url(), &bare.url()).await;
    expect(
        &report,
        "modules",
        CheckStatus::Fail,
        &["ReJSON", "loadmodule"],
    );

    let equipped = RedisServer::start_with("7.4", &["--loadmodule", rejson]);
    let report = validate(&source.url(), &equipped.url()).await;
    expect(&report, "modules", CheckStatus::Pass, &[]);
}

#[tokio::test]
async fn db_5_on_the_source_with_two_databases_on_the_target_fails() {
    let source = RedisServer::start("7.0");
    set_many(&source, 5, 3, 8);
    let target = RedisServer::start_with("7.0", &["--databases", "2"]);
    let report = validate(&source.url(), &target.url()).await;
    expect(
        &report,
        "databases",
        CheckStatus::Fail,
        &["db 5", "only 2 databases", "databases 6"],
    );
}

#[tokio::test]
async fn an_older_target_warns_and_hash_field_ttls_fail() {
    let source = RedisServer::start("7.4");
    set_many(&source, 0, 10, 8);
    let target = RedisServer::start("7.0");
    let report = validate(&source.url(), &target.url()).await;
    expect(
        &report,
        "versions",
        CheckStatus::Warn,
        &["older than the source", "rewritten as commands"],
    );
    assert_eq!(
        report.status,
        ReportStatus::PassedWithWarnings,
        "{}",
        pretty(&report)
    );

    let mut conn = source.conn();
    let _: () = redis::cmd("HSET")
        .arg(&["h", "f", "v", "g", "w"])
        .query(&mut conn)
        .unwrap();
    let _: Vec<i64> = redis::cmd("HEXPIRE")
        .arg(&["h", "1000", "FIELDS", "1", "f"])
        .query(&mut conn)
        .unwrap();
    let report = validate(&source.url(), &target.url()).await;
    expect(
        &report,
        "versions",
        CheckStatus::Fail,
        &["1 keys", "hash field TTLs", "7.4"],
    );

    // The same key moving to another 7.4 is fine.
    let peer = RedisServer::start("7.4");
    let report = validate(&source.url(), &peer.url()).await;
    expect(&report, "versions", CheckStatus::Pass, &[]);
}

#[tokio::test]
async fn a_non_empty_target_fails_with_on_conflict_fail_and_warns_otherwise() {
    let source = RedisServer::start("7.2");
    let target = RedisServer::start("7.2");
    set_many(&target, 0, 4, 8);
    set_many(&target, 3, 2, 8);
    let report = validate(&source.url(), &target.url()).await;
    expect(
        &report,
        "target.conflicts",
        CheckStatus::Fail,
        &["6 keys", "db0: 4", "db3: 2", "on_conflict"],
    );
    let report = validate_with(
        &source.url(),
        &target.url(),
        json!({"on_conflict": "replace"}),
    )
    .await;
    expect(
        &report,
        "target.conflicts",
        CheckStatus::Warn,
        &["overwritten"],
    );
    let report = validate_with(
        &source.url(),
        &target.url(),
        json!({"on_conflict": "flush"}),
    )
    .await;
    expect(
        &report,
        "target.conflicts",
        CheckStatus::Warn,
        &["flushed", "restore point"],
    );
}

#[tokio::test]
async fn configuration_differences_warn_and_list_both_values() {
    let source = RedisServer::start_with(
        "7.2",
        &["--notify-keyspace-events", "Ex", "--appendonly", "yes"],
    );
    let target = RedisServer::start("7.2");
    let report = validate(&source.url(), &target.url()).await;
    expect(
        &report,
        "keyspace_notifications",
        CheckStatus::Warn,
        &["`xE`", "notify-keyspace-events"],
    );
    expect(
        &report,
        "persistence",
        CheckStatus::Warn,
        &["appendonly `yes` on the source, `no` on the target"],
    );
}

#[tokio::test]
async fn a_persisting_local_target_has_its_disk_measured() {
    let source = RedisServer::start("7.2");
    let target = RedisServer::start_with("7.2", &["--save", "3600 1"]);
    let report = validate(&source.url(), &target.url()).await;
    let disk = check(&report, "capacity.disk");
    assert_eq!(disk.status, CheckStatus::Pass, "{}", pretty(&report));
    let details = disk.details.as_ref().unwrap();
    assert!(
        details["target"]["free_bytes"].as_u64().unwrap() > 0,
        "{details}"
    );
    assert!(
        details["ferry"]["free_bytes"].as_u64().unwrap() > 0,
        "{details}"
    );
    assert_eq!(details["target"]["dir"], target.dir().to_str().unwrap());
}

#[tokio::test]
async fn a_renamed_config_command_makes_dependent_checks_warn_instead_of_guess() {
    let source = RedisServer::start("7.2");
    let target = RedisServer::start_with("7.2", &["--rename-command", "CONFIG", "\"\""]);
    let report = validate(&source.url(), &target.url()).await;
    for id in ["databases", "keyspace_notifications", "persistence"] {
        expect(
            &report,
            id,
            CheckStatus::Warn,
            &["not checked", "CONFIG GET", "renamed or disabled"],
        );
    }
    // What INFO alone can answer still passes.
    expect(&report, "target.writable", CheckStatus::Pass, &[]);
    expect(&report, "maxmemory_policy", CheckStatus::Pass, &[]);
    expect(
        &report,
        "capacity.disk",
        CheckStatus::Warn,
        &["cannot tell whether the target persists"],
    );
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

/// A listener that accepts TCP connections (the kernel does) but never reads or answers: a hung
/// server or a black-holing middlebox, on loopback.
fn blackhole() -> (TcpListener, String) {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let url = format!(
        "redis://127.0.0.1:{}",
        listener.local_addr().unwrap().port()
    );
    (listener, url)
}

#[tokio::test]
async fn two_unreachable_servers_answer_within_ten_seconds() {
    let (_source_hole, source_url) = blackhole();
    let (_target_hole, target_url) = blackhole();
    let started = Instant::now();
    let report = validate(&source_url, &target_url).await;
    let elapsed = started.elapsed();
    eprintln!("two black-holed servers: validation answered in {elapsed:?}");
    assert!(elapsed <= Duration::from_secs(10), "took {elapsed:?}");
    expect(
        &report,
        "source.connect",
        CheckStatus::Fail,
        &["no answer", "within 3s"],
    );
    expect(
        &report,
        "target.connect",
        CheckStatus::Fail,
        &["no answer", "within 3s"],
    );
    for c in &report.checks {
        assert_eq!(c.status, CheckStatus::Fail, "{}", pretty(&report));
    }

    // A closed port is refused at once and says so.
    let closed = format!("redis://127.0.0.1:{}", free_port());
    let started = Instant::now();
    let report = validate(&closed, &target_url).await;
    eprintln!("closed port + black hole: {:?}", started.elapsed());
    assert!(started.elapsed() <= Duration::from_secs(10));
    expect(&report, "source.connect", CheckStatus::Fail, &["refused"]);
}

/// A private CA and a server certificate for 127.0.0.1 it signed, made with the `openssl` CLI.
struct TestCerts {
    dir: tempfile::TempDir,
}

impl TestCerts {
    fn make() -> Self {
        let dir = tempfile::tempdir().unwrap();
        let run = |args: &[&str]| {
            let out = std::process::Command::new("openssl")
                .args(args)
                .current_dir(dir.path())
                .output()
                .expect("run `openssl` (install it: apt-get install openssl)");
            assert!(
                out.status.success(),
                "openssl {args:?}: {}",
                String::from_utf8_lossy(&out.stderr)
            );
        };
        let ec = [
            "-newkey",
            "ec",
            "-pkeyopt",
            "ec_paramgen_curve:prime256v1",
            "-nodes",
        ];
        run(&[
            &["req", "-x509"][..],
            &ec,
            &[
                "-keyout",
                "ca.key",
                "-out",
                "ca.pem",
                "-days",
                "2",
                "-subj",
                "/CN=ferry-test-ca",
            ],
        ]
        .concat());
        run(&[
            &["req"][..],
            &ec,
            &[
                "-keyout",
                "server.key",
                "-out",
                "server.csr",
                "-subj",
                "/CN=localhost",
            ],
        ]
        .concat());
        std::fs::write(
            dir.path().join("ext.cnf"),
            "subjectAltName=IP:127.0.0.1,DNS:localhost\nbasicConstraints=CA:FALSE\n\
             keyUsage=digitalSignature\nextendedKeyUsage=serverAuth\n",
        )
        .unwrap();
        run(&[
            "x509",
            "-req",
            "-in",
            "server.csr",
            "-CA",
            "ca.pem",
            "-CAkey",
            "ca.key",
            "-CAcreateserial",
            "-out",
            "server.pem",
            "-days",
            "2",
            "-extfile",
            "ext.cnf",
        ]);
        TestCerts { dir }
    }

    fn path(&self, file: &str) -> String {
        self.dir.path().join(file).to_str().unwrap().to_string()
    }
}

#[tokio::test]
async fn rediss_urls_connect_over_tls_and_an_untrusted_certificate_fails_naming_tls() {
    let certs = TestCerts::make();
    let tls_port = free_port().to_string();
    let (cert, key, ca) = (
        certs.path("server.pem"),
        certs.path("server.key"),
        certs.path("ca.pem"),
    );
    let server = RedisServer::start_with(
        "7.2",
        &[
            "--tls-port",
            &tls_port,
            "--tls-cert-file",
            &cert,
            "--tls-key-file",
            &key,
            "--tls-ca-cert-file",
            &ca,
            "--tls-auth-clients",
            "no",
        ],
    );
    let plain_target = RedisServer::start("7.2");
    let rediss = format!("rediss://127.0.0.1:{tls_port}");
    let data_dir = tempfile::tempdir().unwrap();
    let spec = spec(&rediss, &plain_target.url(), json!({}));

    let mut ctx = ValidateContext::new(data_dir.path());
    ctx.tls_ca_file = Some(ca.clone().into());
    let report = run_with(&spec, &ctx).await;
    expect(
        &report,
        "source.connect",
        CheckStatus::Pass,
        &["Redis 7.2", "TLS"],
    );
    assert_eq!(
        check(&report, "source.connect").details.as_ref().unwrap()["tls"],
        true
    );
    expect(&report, "distinct_servers", CheckStatus::Pass, &[]);
    drop(server);

    // Without the private CA the server's certificate is not trusted.
    let server = RedisServer::start_with(
        "7.2",
        &[
            "--tls-port",
            &tls_port,
            "--tls-cert-file",
            &cert,
            "--tls-key-file",
            &key,
            "--tls-ca-cert-file",
            &ca,
            "--tls-auth-clients",
            "no",
        ],
    );
    let report = run_with(&spec, &ValidateContext::new(data_dir.path())).await;
    eprintln!("untrusted: {}", check(&report, "source.connect").message);
    expect(
        &report,
        "source.connect",
        CheckStatus::Fail,
        &["TLS", "certificate"],
    );
    drop(server);
}

/// A server that completes the client handshake (`CLIENT SETINFO`, `AUTH`, `PING`) and then never
/// answers again: the "alive but stalled" fault, which no real redis-server can be made to show on
/// cue. It speaks just enough RESP to get there.
fn stalled_server() -> String {
    use std::io::{Read, Write};
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let url = format!(
        "redis://127.0.0.1:{}",
        listener.local_addr().unwrap().port()
    );
    std::thread::spawn(move || {
        for stream in listener.incoming() {
            let Ok(mut stream) = stream else { return };
            std::thread::spawn(move || {
                let mut pending = Vec::new();
                let mut buf = [0u8; 4096];
                let mut stalled = false;
                while let Ok(n) = stream.read(&mut buf) {
                    if n == 0 {
                        return;
                    }
                    pending.extend_from_slice(&buf[..n]);
                    // Each command is an array whose first bulk string is the name.
                    while let Some((name, used)) = first_command(&pending) {
                        pending.drain(..used);
                        let reply: &[u8] = match name.to_ascii_uppercase().as_str() {
                            _ if stalled => continue,
                            "PING" => b"+PONG\r\n",
                            "CLIENT" | "AUTH" | "SELECT" => b"+OK\r\n",
                            _ => {
                                stalled = true;
                                continue;
                            }
                        };
                        let _ = stream.write_all(reply);
                    }
                }
            });
        }
    });
    url
}

/// Parses one complete RESP array of bulk strings: its first element and the bytes it used.
fn first_command(bytes: &[u8]) -> Option<(String, usize)> {
    let line_end = |from: usize| {
        bytes[from..]
            .windows(2)
            .position(|w| w == b"\r\n")
            .map(|p| from + p)
    };
    let end = line_end(0)?;
    let count: usize = std::str::from_utf8(bytes.get(1..end)?).ok()?.parse().ok()?;
    let mut at = end + 2;
    let mut name = None;
    for _ in 0..count {
        let len_end = line_end(at)?;
        let len: usize = std::str::from_utf8(&bytes[at + 1..len_end])
            .ok()?
            .parse()
            .ok()?;
        let start = len_end + 2;
        let item = bytes.get(start..start + len)?;
        name.get_or_insert_with(|| String::from_utf8_lossy(item).into_owned());
        at = start + len + 2;
    }
    (at <= bytes.len()).then(|| (name.unwrap_or_default(), at))
}

#[tokio::test]
async fn a_server_that_stalls_after_the_handshake_is_bounded_too() {
    let source = stalled_server();
    let target = stalled_server();
    let started = Instant::now();
    let report = validate(&source, &target).await;
    let elapsed = started.elapsed();
    eprintln!("two stalled servers: validation answered in {elapsed:?}");
    assert!(elapsed <= Duration::from_secs(10), "took {elapsed:?}");
    expect(&report, "source.connect", CheckStatus::Pass, &[]);
    expect(
        &report,
        "distinct_servers",
        CheckStatus::Fail,
        &["not checked", "`INFO` got no answer", "stalled"],
    );
    expect(
        &report,
        "modules",
        CheckStatus::Fail,
        &["`MODULE LIST` got no answer"],
    );
    assert_eq!(report.status, ReportStatus::Failed);
}

#[tokio::test]
async fn sampling_finds_hash_field_ttls_where_info_does_not_count_them() {
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
        tls_root_pem: None,
    };
    let url = ferry::redis_url::RedisUrl::parse(&server.url()).unwrap();
    let admin = connect(&url, &options)
        .await
        .unwrap_or_else(|e| panic!("connect: {e}"));
    let sample = sample_field_ttls(&admin, &[0, 2], 0).await.unwrap();
    assert_eq!(sample.hashes_sampled, 10);
    assert_eq!(sample.with_field_ttls, 1, "only h3 in db 2 has a field TTL");
    // The connection is back on its own db.
    let dbsize: i64 = admin.call("DBSIZE", redis::cmd("DBSIZE")).await.unwrap();
    assert_eq!(dbsize, 6);
}
