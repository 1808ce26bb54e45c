//! The `tls.*` checks against real TLS servers (Debian's redis-server 7.0) with certificates the
//! harness makes: each way a TLS connection goes wrong is refused under its own check id, with
//! the fix in the message, and nothing secret in the report.

use ferry::spec::{Endpoint, MigrationSpec, Source, TlsSettings};

use crate::common::tls::{ClientAuth, Pki, ServerCert, TlsServer};
use crate::helpers::*;

/// A spec from `source` to `target` with the given `tls` settings (JSON) on each side.
fn tls_spec(
    source: &str,
    source_tls: Option<serde_json::Value>,
    target: &str,
    target_tls: Option<serde_json::Value>,
) -> MigrationSpec {
    let mut spec = spec(source, target, json!({}));
    let settings =
        |v: Option<serde_json::Value>| v.map(|v| serde_json::from_value::<TlsSettings>(v).unwrap());
    let source_url = spec.source.url().unwrap().clone();
    spec.source = Source::Server(
        Endpoint {
            url: source_url,
            tls: settings(source_tls),
        },
        Default::default(),
        Default::default(),
    );
    spec.target.tls = settings(target_tls);
    spec
}

async fn report_for(spec: &MigrationSpec) -> ValidationReport {
    let data_dir = tempfile::tempdir().unwrap();
    run_with(spec, &ValidateContext::new(data_dir.path())).await
}

/// The `tls.*` checks other than `except` pass or are skipped: one failure reads as one failure.
fn only_failing_tls_check(report: &ValidationReport, except: &str) {
    for c in report
        .checks
        .iter()
        .filter(|c| c.id.starts_with("tls.") && c.id != except)
    {
        assert_ne!(c.status, CheckStatus::Fail, "{}: {}", c.id, pretty(report));
    }
}

#[tokio::test]
async fn rediss_with_the_private_ca_passes_and_each_certificate_problem_has_its_own_check() {
    let pki = Pki::make();
    let good = TlsServer::start(&pki, ServerCert::Good, ClientAuth::No);
    let plain = RedisServer::start("7.2");

    // The private CA given: everything passes, and the session is described.
    let report = report_for(&tls_spec(
        &good.url(),
        Some(pki.trust()),
        &plain.url(),
        None,
    ))
    .await;
    expect(
        &report,
        "source.connect",
        CheckStatus::Pass,
        &["Redis 7.0", "TLS"],
    );
    let session = &check(&report, "source.connect").details.as_ref().unwrap()["tls_session"];
    assert!(
        session["protocol"].as_str().unwrap().starts_with("TLSv1_"),
        "{session}"
    );
    assert!(session["certificate_not_after"].is_string(), "{session}");
    for id in [
        "tls.files",
        "tls.protocol",
        "tls.handshake",
        "tls.chain",
        "tls.hostname",
        "tls.expiry",
        "tls.client_certificate",
        "tls.verification",
    ] {
        expect(&report, id, CheckStatus::Pass, &[]);
    }

    // No CA file: the system's roots do not know the private CA.
    let report = report_for(&tls_spec(&good.url(), None, &plain.url(), None)).await;
    expect(
        &report,
        "tls.chain",
        CheckStatus::Fail,
        &["source", "not trusted", "tls.ca_file"],
    );
    expect(
        &report,
        "source.connect",
        CheckStatus::Fail,
        &["not trusted"],
    );
    expect(
        &report,
        "tls.hostname",
        CheckStatus::Skipped,
        &["source.connect"],
    );
    only_failing_tls_check(&report, "tls.chain");

    // A server certificate for another name; then the same with `server_name` set to it.
    let wrong_host = TlsServer::start(&pki, ServerCert::WrongHost, ClientAuth::No);
    let report = report_for(&tls_spec(
        &wrong_host.url(),
        Some(pki.trust()),
        &plain.url(),
        None,
    ))
    .await;
    expect(
        &report,
        "tls.hostname",
        CheckStatus::Fail,
        &["127.0.0.1", "tls.server_name"],
    );
    only_failing_tls_check(&report, "tls.hostname");
    let named = json!({"ca_file": pki.path_str("ca.pem"), "server_name": "wrong.example"});
    let report = report_for(&tls_spec(
        &wrong_host.url(),
        Some(named),
        &plain.url(),
        None,
    ))
    .await;
    expect(&report, "tls.hostname", CheckStatus::Pass, &[]);
    expect(&report, "source.connect", CheckStatus::Pass, &[]);
    drop(wrong_host);

    // An expired certificate fails; one that expires in five days warns with its date.
    let expired = TlsServer::start(&pki, ServerCert::Expired, ClientAuth::No);
    let report = report_for(&tls_spec(
        &plain.url(),
        None,
        &expired.url(),
        Some(pki.trust()),
    ))
    .await;
    expect(
        &report,
        "tls.expiry",
        CheckStatus::Fail,
        &["target", "expired", "renew"],
    );
    only_failing_tls_check(&report, "tls.expiry");
    drop(expired);
    let soon = TlsServer::start(&pki, ServerCert::ExpiresSoon, ClientAuth::No);
    let report = report_for(&tls_spec(
        &plain.url(),
        None,
        &soon.url(),
        Some(pki.trust()),
    ))
    .await;
    expect(
        &report,
        "tls.expiry",
        CheckStatus::Warn,
        &["target's certificate expires in", "renew"],
    );
    expect(&report, "target.connect", CheckStatus::Pass, &[]);
}

#[tokio::test]
async fn mutual_tls_without_a_certificate_or_with_one_from_another_ca_is_refused_by_name() {
    let pki = Pki::make();
    let mtls = TlsServer::start(&pki, ServerCert::Good, ClientAuth::Required);
    let plain = RedisServer::start("7.2");

    let report = report_for(&tls_spec(
        &mtls.url(),
        Some(pki.trust()),
        &plain.url(),
        None,
    ))
    .await;
    expect(
        &report,
        "tls.client_certificate",
        CheckStatus::Fail,
        &[
            "requires a client certificate",
            "tls.cert_file",
            "tls.key_file",
        ],
    );
    only_failing_tls_check(&report, "tls.client_certificate");

    let rogue = json!({
        "ca_file": pki.path_str("ca.pem"),
        "cert_file": pki.path_str("rogue-client.pem"),
        "key_file": pki.path_str("rogue-client.key"),
    });
    let report = report_for(&tls_spec(&mtls.url(), Some(rogue), &plain.url(), None)).await;
    expect(
        &report,
        "tls.client_certificate",
        CheckStatus::Fail,
        &[
            "refused Ferry's client certificate",
            "signed by a CA the server trusts",
        ],
    );

    let report = report_for(&tls_spec(
        &mtls.url(),
        Some(pki.mutual()),
        &plain.url(),
        None,
    ))
    .await;
    expect(&report, "tls.client_certificate", CheckStatus::Pass, &[]);
    expect(&report, "source.connect", CheckStatus::Pass, &["TLS"]);
    let text = serde_json::to_string(&report).unwrap();
    let key = std::fs::read_to_string(pki.path("client.key")).unwrap();
    let key_body = key.lines().nth(1).unwrap();
    assert!(!text.contains(key_body), "key material in the report");
}

#[tokio::test]
async fn the_wrong_scheme_for_a_port_is_a_protocol_mismatch_both_ways() {
    let pki = Pki::make();
    let tls = TlsServer::start(&pki, ServerCert::Good, ClientAuth::No);
    let plain = RedisServer::start("7.2");

    // redis:// to the TLS port: the server closes without a word; Ferry names the fix.
    let started = Instant::now();
    let report = report_for(&tls_spec(
        &tls.plain_url_to_tls_port(),
        None,
        &plain.url(),
        None,
    ))
    .await;
    expect(
        &report,
        "tls.protocol",
        CheckStatus::Fail,
        &["source", "speaks TLS only", "rediss://"],
    );
    expect(&report, "source.connect", CheckStatus::Fail, &["rediss://"]);
    only_failing_tls_check(&report, "tls.protocol");

    // rediss:// to a plain port: no TLS answer; Ferry probes and says it speaks plain Redis.
    let plain_as_tls = format!("rediss://127.0.0.1:{}", plain.port);
    let report = report_for(&tls_spec(
        &tls.url(),
        Some(pki.trust()),
        &plain_as_tls,
        None,
    ))
    .await;
    expect(
        &report,
        "tls.protocol",
        CheckStatus::Fail,
        &["target", "does not speak TLS", "plain Redis", "redis://"],
    );
    expect(&report, "source.connect", CheckStatus::Pass, &["TLS"]);
    assert!(
        started.elapsed() < Duration::from_secs(20),
        "took {:?}",
        started.elapsed()
    );
}

#[tokio::test]
async fn unusable_tls_files_are_named_and_skipping_verification_is_a_warning() {
    let pki = Pki::make();
    let tls = TlsServer::start(&pki, ServerCert::Good, ClientAuth::No);
    let plain = RedisServer::start("7.2");

    let missing = json!({"ca_file": pki.path_str("nowhere.pem")});
    let report = report_for(&tls_spec(&tls.url(), Some(missing), &plain.url(), None)).await;
    expect(
        &report,
        "tls.files",
        CheckStatus::Fail,
        &["CA file", "nowhere.pem", "does not exist"],
    );
    only_failing_tls_check(&report, "tls.files");

    // `tls` settings on a plain URL: accepted as written, refused before dialing, by name.
    let report = report_for(&tls_spec(
        &plain.url(),
        Some(pki.trust()),
        &tls.url(),
        Some(pki.trust()),
    ))
    .await;
    expect(
        &report,
        "tls.files",
        CheckStatus::Fail,
        &["source", "rediss://"],
    );
    expect(&report, "target.connect", CheckStatus::Pass, &["TLS"]);

    // A certificate where the key should be, and an encrypted key: both said plainly.
    let not_a_key = json!({
        "ca_file": pki.path_str("ca.pem"),
        "cert_file": pki.path_str("client.pem"),
        "key_file": pki.path_str("client.pem"),
    });
    let report = report_for(&tls_spec(&tls.url(), Some(not_a_key), &plain.url(), None)).await;
    expect(
        &report,
        "tls.files",
        CheckStatus::Fail,
        &["key file", "holds no private key"],
    );
    let encrypted = pki.path("encrypted.key");
    std::fs::write(
        &encrypted,
        "-----BEGIN ENCRYPTED PRIVATE KEY-----\nMIIBvTBXBgkqhkiG9w0BBQ0wSjApBgkqhkiG9w0BBQwwHAQI\n-----END ENCRYPTED PRIVATE KEY-----\n",
    )
    .unwrap();
    let with_passphrase = json!({
        "ca_file": pki.path_str("ca.pem"),
        "cert_file": pki.path_str("client.pem"),
        "key_file": encrypted.to_str().unwrap(),
    });
    let report = report_for(&tls_spec(
        &tls.url(),
        Some(with_passphrase),
        &plain.url(),
        None,
    ))
    .await;
    expect(
        &report,
        "tls.files",
        CheckStatus::Fail,
        &["encrypted", "decrypt it"],
    );
    assert!(!serde_json::to_string(&report)
        .unwrap()
        .contains("MIIBvTBXBgkqhkiG9w0BBQ0"));

    // insecure_skip_verify, asked for by name: it connects, and it is a warning.
    let unchecked = json!({"insecure_skip_verify": true});
    let report = report_for(&tls_spec(&tls.url(), Some(unchecked), &plain.url(), None)).await;
    expect(&report, "source.connect", CheckStatus::Pass, &["TLS"]);
    expect(
        &report,
        "tls.verification",
        CheckStatus::Warn,
        &["source", "not checked", "tls.ca_file"],
    );
    assert_ne!(report.status, ReportStatus::Failed, "{}", pretty(&report));
}
