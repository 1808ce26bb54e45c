//! Migrations over TLS with least-privileged ACL users, through the real binary: `rediss://` →
//! `rediss://` live with a kill -9 of Ferry while streaming, plain → TLS and TLS → plain, a
//! backup and a restore over TLS, and `ferry migrate` (snapshot) over TLS. Every Redis link Ferry
//! opens (validation, replication, target writer, verification, capture, restore) speaks TLS to
//! Debian's redis-server 7.0, and every one authenticates as the minimal user that
//! `GET /v1/guide/redis` prints. The servers' plain ports serve only this test's own setup and
//! comparison.

use std::time::{Duration, Instant};

use serde_json::{json, Value};

use crate::common::redis::RedisServer;
use crate::common::tls::{ClientAuth, Pki, ServerCert, TlsServer};
use crate::harness::{assert_converged, seed, Ferry, Load, WAIT};

/// Creates `user` with password `password` on `server` from the guide's `ACL SETUSER` line for
/// `side` (7.0+), exactly as printed: the guide's lines are what is being proven sufficient.
async fn create_minimal_user(
    ferry: &Ferry,
    server: &RedisServer,
    side: &str,
    user: &str,
    password: &str,
) {
    let (status, guide) = ferry.get("/v1/guide/redis").await;
    assert_eq!(status, 200, "{guide:#}");
    let line = guide["users"]
        .as_array()
        .expect("guide users")
        .iter()
        .find(|u| u["server"] == side && u["versions"] == "7.0 and later")
        .and_then(|u| u["setuser"].as_str())
        .expect("a setuser line")
        .replace("ferry-source", user)
        .replace("ferry-target", user)
        .replace(">CHANGE-ME", &format!(">{password}"));
    let words: Vec<&str> = line.split_whitespace().collect();
    let mut cmd = redis::cmd(words[0]);
    for word in &words[1..] {
        cmd.arg(*word);
    }
    let _: () = cmd
        .query(&mut server.conn())
        .unwrap_or_else(|e| panic!("`{line}` on {side}: {e}"));
}

fn counters(events: &[Value], kind: &str) -> Value {
    events
        .iter()
        .rev()
        .find(|e| e["type"] == kind)
        .map(|e| e["data"].clone())
        .unwrap_or(Value::Null)
}

/// Creates and validates a migration; the report must not fail, and the checks named must pass.
async fn create_and_validate(ferry: &Ferry, spec: Value, must_pass: &[&str]) -> String {
    let (status, view) = ferry.post("/v1/migrations", Some(spec)).await;
    assert_eq!(status, 201, "create: {view:#}");
    let id = view["id"].as_str().expect("id").to_string();
    let (status, report) = ferry
        .post(&format!("/v1/migrations/{id}/validate"), None)
        .await;
    assert_eq!(status, 200, "{report:#}");
    assert_ne!(report["status"], "failed", "validation: {report:#}");
    for wanted in must_pass {
        let check = report["checks"]
            .as_array()
            .unwrap()
            .iter()
            .find(|c| c["id"] == *wanted)
            .unwrap_or_else(|| panic!("no check {wanted}: {report:#}"));
        assert_eq!(check["status"], "pass", "{wanted}: {report:#}");
    }
    id
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rediss_to_rediss_live_with_minimal_users_survives_kill9_while_streaming() {
    let pki = Pki::make();
    // The source wants a client certificate (mutual TLS); the target only serves TLS.
    let source = TlsServer::start(&pki, ServerCert::Good, ClientAuth::Required);
    let target = TlsServer::start(&pki, ServerCert::Good, ClientAuth::No);
    seed(&source.server, 3000);
    let mut ferry = Ferry::start().await;
    create_minimal_user(&ferry, &source.server, "source", "ferry-src", "s3cret-src").await;
    create_minimal_user(&ferry, &target.server, "target", "ferry-dst", "s3cret-dst").await;
    let spec = json!({
        "source": {"url": format!("rediss://ferry-src:s3cret-src@127.0.0.1:{}", source.tls_port),
                   "tls": pki.mutual()},
        "target": {"url": format!("rediss://ferry-dst:s3cret-dst@127.0.0.1:{}", target.tls_port),
                   "tls": pki.trust()},
        "mode": "live",
        "options": {"verify": "full", "on_conflict": "fail"}
    });
    let checks = [
        "source.connect",
        "target.connect",
        "tls.chain",
        "tls.client_certificate",
        "source.permissions",
        "target.permissions",
    ];
    let id = create_and_validate(&ferry, spec, &checks).await;
    let (status, body) = ferry
        .post(&format!("/v1/migrations/{id}/start"), None)
        .await;
    assert_eq!(status, 202, "start: {body:#}");
    ferry.wait_streaming(&id).await;
    let events = ferry.events(&id).await;
    let snapshot = counters(&events, "SnapshotCompleted");
    // 3000 strings and 50 lists, every one written, none skipped or rewritten.
    assert_eq!(snapshot["keys_written"], 3050, "{snapshot:#}");
    assert_eq!(snapshot["keys_skipped"], 0, "{snapshot:#}");

    let load = Load::start(&source.server);
    load.wait_more(300).await;
    ferry.kill9();
    load.wait_more(200).await;
    ferry.restart().await;
    let deadline = Instant::now() + WAIT;
    while !ferry
        .link_events(&id)
        .await
        .iter()
        .any(|e| e == "LinkResumed:source:partial")
    {
        assert!(
            Instant::now() < deadline,
            "no partial resume over TLS: {:?}\n{}",
            ferry.link_events(&id).await,
            ferry.log()
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let writes = load.stop();
    assert!(writes > 500, "the load wrote {writes} commands");
    let report = ferry.cut_over(&id).await;
    assert_converged(&report, &source.server, &target.server);
    let keys: u64 = redis::cmd("DBSIZE")
        .query(&mut source.server.conn())
        .unwrap();
    assert_eq!(
        report["checked"], keys,
        "full verification checks every key: {report:#}"
    );
    // No secret in what the API shows: passwords and key material stay out of events.
    let text = serde_json::to_string(&ferry.events(&id).await).unwrap();
    assert!(!text.contains("s3cret"), "a password in the events");
    let key = std::fs::read_to_string(pki.path("client.key")).unwrap();
    assert!(
        !text.contains(key.lines().nth(1).unwrap()),
        "key material in the events"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn plain_to_tls_and_tls_to_plain_snapshots_and_a_backup_restored_over_tls() {
    let pki = Pki::make();
    let plain = RedisServer::start("7.0");
    let tls = TlsServer::start(&pki, ServerCert::Good, ClientAuth::No);
    seed(&plain, 1000);
    let ferry = Ferry::start().await;

    // plain → TLS, snapshot.
    let spec = json!({
        "source": {"url": plain.url()},
        "target": {"url": tls.url(), "tls": pki.trust()},
        "options": {"verify": "full", "backup": false}
    });
    let id = create_and_validate(&ferry, spec, &["tls.chain", "tls.protocol"]).await;
    let (status, body) = ferry
        .post(&format!("/v1/migrations/{id}/start"), None)
        .await;
    assert_eq!(status, 202, "{body:#}");
    ferry
        .wait_for(&id, "completed", |v| v["state"] == "completed")
        .await;
    let events = ferry.events(&id).await;
    // The relay's listener serves plain TCP: a rediss:// target takes the restore path.
    let chosen = counters(&events, "TransferChosen");
    assert_eq!(chosen["transfer"], "restore", "{chosen:#}");
    assert!(
        chosen["reason"].as_str().unwrap().contains("rediss://"),
        "{chosen:#}"
    );
    assert_eq!(counters(&events, "SnapshotCompleted")["keys_written"], 1050);
    assert_converged(
        &counters(&events, "VerificationCompleted")["report"],
        &plain,
        &tls.server,
    );

    // TLS → plain, into a fresh server.
    let back = RedisServer::start("7.0");
    let spec = json!({
        "source": {"url": tls.url(), "tls": pki.trust()},
        "target": {"url": back.url()},
        "options": {"verify": "full", "backup": false}
    });
    let id = create_and_validate(&ferry, spec, &["tls.chain"]).await;
    ferry
        .post(&format!("/v1/migrations/{id}/start"), None)
        .await;
    ferry
        .wait_for(&id, "completed", |v| v["state"] == "completed")
        .await;
    let events = ferry.events(&id).await;
    // A rediss:// source is no obstacle to the relay: Ferry reads it over TLS and relays.
    let chosen = counters(&events, "TransferChosen");
    assert_eq!(chosen["transfer"], "relay", "{chosen:#}");
    assert_eq!(counters(&events, "SnapshotCompleted")["keys_written"], 1050);
    assert_converged(
        &counters(&events, "VerificationCompleted")["report"],
        &tls.server,
        &back,
    );

    // A backup captured over TLS, restored over TLS into another TLS server.
    let (status, backup) = ferry
        .post(
            "/v1/backups",
            Some(json!({"server": {"url": tls.url(), "tls": pki.trust()}})),
        )
        .await;
    assert_eq!(status, 202, "{backup:#}");
    let backup_id = backup["id"].as_str().unwrap().to_string();
    let deadline = Instant::now() + WAIT;
    loop {
        let (_, b) = ferry.get(&format!("/v1/backups/{backup_id}")).await;
        if b["status"] == "completed" {
            break;
        }
        assert!(
            b["status"] == "running" && Instant::now() < deadline,
            "{b:#}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let other = TlsServer::start(&pki, ServerCert::Good, ClientAuth::No);
    let (status, restore) = ferry
        .post(
            &format!("/v1/backups/{backup_id}/restore"),
            Some(json!({"target": {"url": other.url(), "tls": pki.trust()}})),
        )
        .await;
    assert_eq!(status, 202, "{restore:#}");
    let restore_id = restore["id"].as_str().unwrap().to_string();
    let deadline = Instant::now() + WAIT;
    loop {
        let (_, r) = ferry.get(&format!("/v1/restores/{restore_id}")).await;
        if r["state"] == "completed" {
            break;
        }
        assert!(
            r["state"] == "running" && Instant::now() < deadline,
            "{r:#}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(crate::harness::differences(&plain, &other.server).is_empty());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ferry_migrate_copies_over_tls_with_its_tls_flags() {
    let pki = Pki::make();
    let source = TlsServer::start(&pki, ServerCert::Good, ClientAuth::Required);
    let target = TlsServer::start(&pki, ServerCert::Good, ClientAuth::No);
    seed(&source.server, 500);
    let data = tempfile::tempdir().unwrap();
    let output = std::process::Command::new(env!("CARGO_BIN_EXE_ferry"))
        .args([
            "migrate",
            "--source",
            &source.url(),
            "--target",
            &target.url(),
        ])
        .args(["--verify", "full", "--no-backup"])
        .args(["--source-ca-file", &pki.path_str("ca.pem")])
        .args(["--source-cert-file", &pki.path_str("client.pem")])
        .args(["--source-key-file", &pki.path_str("client.key")])
        .args(["--target-ca-file", &pki.path_str("ca.pem")])
        .arg("--data-dir")
        .arg(data.path())
        .env("FERRY_CONFIG", "/dev/null")
        .output()
        .expect("run ferry migrate");
    let stdout = String::from_utf8_lossy(&output.stdout);
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        output.status.success(),
        "ferry migrate failed:\n{stdout}\n{stderr}"
    );
    assert!(crate::harness::differences(&source.server, &target.server).is_empty());
    let keys: u64 = redis::cmd("DBSIZE")
        .query(&mut target.server.conn())
        .unwrap();
    assert_eq!(keys, 550);

    // Without the client certificate the same command refuses, naming the fix.
    let refused = std::process::Command::new(env!("CARGO_BIN_EXE_ferry"))
        .args([
            "migrate",
            "--source",
            &source.url(),
            "--target",
            &target.url(),
        ])
        .args(["--no-backup", "--on-conflict", "replace"])
        .args(["--source-ca-file", &pki.path_str("ca.pem")])
        .args(["--target-ca-file", &pki.path_str("ca.pem")])
        .arg("--data-dir")
        .arg(data.path())
        .env("FERRY_CONFIG", "/dev/null")
        .output()
        .expect("run ferry migrate");
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&refused.stdout),
        String::from_utf8_lossy(&refused.stderr)
    );
    assert!(!refused.status.success(), "{text}");
    assert!(text.contains("tls.client_certificate"), "{text}");
}
