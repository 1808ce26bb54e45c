//! TLS for tests: a private PKI made at run time with `rcgen` (nothing is committed), and
//! redis-server processes that speak TLS with it.
//!
//! [`Pki::make`] writes, into a temp dir, a CA and what it signed (a server certificate for
//! `127.0.0.1`/`localhost`, a client certificate), a second CA with its own client certificate
//! (the "wrong CA"), and server certificates that are expired, for another host name, or about to
//! expire. [`TlsServer`] starts Debian's redis-server 7.0 (built with TLS) with a TLS port; it
//! keeps a plain port too, only for the tests' own setup and assertions (redis-rs speaks no TLS
//! here): Ferry is given the TLS port.
#![allow(dead_code)]

use std::path::PathBuf;

use rcgen::{
    BasicConstraints, CertificateParams, DistinguishedName, DnType, ExtendedKeyUsagePurpose, IsCa,
    KeyPair, KeyUsagePurpose, SanType,
};

use super::redis::{free_port, RedisServer};

/// The version with TLS built in (Debian's package).
pub const TLS_VERSION: &str = "7.0";

/// Which server certificate a [`TlsServer`] presents.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ServerCert {
    /// Valid for 127.0.0.1 and localhost, for a year.
    Good,
    /// Valid for 127.0.0.1, but its validity ended yesterday.
    Expired,
    /// Valid only for `wrong.example`.
    WrongHost,
    /// Valid for 127.0.0.1, for five more days.
    ExpiresSoon,
}

/// Whether the server asks for a client certificate (`tls-auth-clients`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ClientAuth {
    No,
    Required,
}

/// A private PKI on disk.
pub struct Pki {
    pub dir: tempfile::TempDir,
}

fn ca_params(name: &str) -> CertificateParams {
    let mut params = CertificateParams::new(Vec::<String>::new()).expect("CA params");
    let mut dn = DistinguishedName::new();
    dn.push(DnType::CommonName, name);
    params.distinguished_name = dn;
    params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    params.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign];
    params.not_before = rcgen::date_time_ymd(2020, 1, 1);
    params.not_after = rcgen::date_time_ymd(2099, 1, 1);
    params
}

/// A calendar day, as `rcgen::date_time_ymd` takes it.
type Day = (i32, u8, u8);

/// The day `days` from today (negative: in the past).
fn days_from_today(days: i64) -> Day {
    use chrono::Datelike;
    let day = chrono::Utc::now().date_naive() + chrono::Duration::days(days);
    (day.year(), day.month() as u8, day.day() as u8)
}

fn leaf_params(
    common_name: &str,
    names: &[SanType],
    purpose: ExtendedKeyUsagePurpose,
    valid: (Day, Day),
) -> CertificateParams {
    let mut params = CertificateParams::new(Vec::<String>::new()).expect("leaf params");
    let mut dn = DistinguishedName::new();
    dn.push(DnType::CommonName, common_name);
    params.distinguished_name = dn;
    params.subject_alt_names = names.to_vec();
    params.key_usages = vec![
        KeyUsagePurpose::DigitalSignature,
        KeyUsagePurpose::KeyEncipherment,
    ];
    params.extended_key_usages = vec![purpose];
    let ((y1, m1, d1), (y2, m2, d2)) = valid;
    params.not_before = rcgen::date_time_ymd(y1, m1, d1);
    params.not_after = rcgen::date_time_ymd(y2, m2, d2);
    params
}

impl Pki {
    pub fn make() -> Pki {
        let dir = tempfile::Builder::new()
            .prefix("ferry-pki-")
            .tempdir()
            .expect("temp dir for the test PKI");
        let write = |name: &str, text: &str| {
            std::fs::write(dir.path().join(name), text).expect("write a PEM file");
        };
        let ca_key = KeyPair::generate().expect("CA key");
        let ca = ca_params("ferry-test-ca")
            .self_signed(&ca_key)
            .expect("self-sign the CA");
        write("ca.pem", &ca.pem());
        let other_key = KeyPair::generate().expect("other CA key");
        let other = ca_params("some-other-ca")
            .self_signed(&other_key)
            .expect("self-sign the other CA");
        write("other-ca.pem", &other.pem());

        let here = [
            SanType::IpAddress("127.0.0.1".parse().expect("ip")),
            SanType::DnsName("localhost".try_into().expect("dns")),
        ];
        let year = (days_from_today(-1), days_from_today(365));
        let servers = [
            ("server", &here[..], year),
            (
                "expired",
                &here[..],
                (days_from_today(-30), days_from_today(-1)),
            ),
            (
                "wrong-host",
                &[SanType::DnsName("wrong.example".try_into().expect("dns"))][..],
                year,
            ),
            (
                "expires-soon",
                &here[..],
                (days_from_today(-1), days_from_today(5)),
            ),
        ];
        for (name, names, valid) in servers {
            let key = KeyPair::generate().expect("server key");
            let cert = leaf_params(name, names, ExtendedKeyUsagePurpose::ServerAuth, valid)
                .signed_by(&key, &ca, &ca_key)
                .expect("sign a server certificate");
            write(&format!("{name}.pem"), &cert.pem());
            write(&format!("{name}.key"), &key.serialize_pem());
        }
        for (name, issuer, issuer_key) in [
            ("client", &ca, &ca_key),
            ("rogue-client", &other, &other_key),
        ] {
            let key = KeyPair::generate().expect("client key");
            let cert = leaf_params(name, &[], ExtendedKeyUsagePurpose::ClientAuth, year)
                .signed_by(&key, issuer, issuer_key)
                .expect("sign a client certificate");
            write(&format!("{name}.pem"), &cert.pem());
            write(&format!("{name}.key"), &key.serialize_pem());
        }
        Pki { dir }
    }

    /// The path of one of the files (`ca.pem`, `client.key`, …).
    pub fn path(&self, file: &str) -> PathBuf {
        self.dir.path().join(file)
    }

    pub fn path_str(&self, file: &str) -> String {
        self.path(file)
            .to_str()
            .expect("utf-8 temp path")
            .to_string()
    }

    /// `tls` settings (JSON) trusting this PKI's CA.
    pub fn trust(&self) -> serde_json::Value {
        serde_json::json!({ "ca_file": self.path_str("ca.pem") })
    }

    /// `tls` settings trusting the CA and presenting the good client certificate.
    pub fn mutual(&self) -> serde_json::Value {
        serde_json::json!({
            "ca_file": self.path_str("ca.pem"),
            "cert_file": self.path_str("client.pem"),
            "key_file": self.path_str("client.key"),
        })
    }

    /// The same, as typed settings.
    pub fn settings(&self, mutual: bool) -> ferry::spec::TlsSettings {
        serde_json::from_value(if mutual { self.mutual() } else { self.trust() })
            .expect("valid TLS settings")
    }
}

/// A redis-server with a TLS port (and a plain port for the tests' own use).
pub struct TlsServer {
    pub server: RedisServer,
    pub tls_port: u16,
}

impl TlsServer {
    /// Starts Debian's redis-server 7.0 with `cert` on a TLS port, asking for client
    /// certificates as `auth` says, replicating over TLS too (`tls-replication yes`).
    pub fn start(pki: &Pki, cert: ServerCert, auth: ClientAuth) -> TlsServer {
        Self::start_with(pki, cert, auth, &[])
    }

    pub fn start_with(pki: &Pki, cert: ServerCert, auth: ClientAuth, extra: &[&str]) -> TlsServer {
        let name = match cert {
            ServerCert::Good => "server",
            ServerCert::Expired => "expired",
            ServerCert::WrongHost => "wrong-host",
            ServerCert::ExpiresSoon => "expires-soon",
        };
        let tls_port = free_port();
        let (cert_file, key_file, ca_file) = (
            pki.path_str(&format!("{name}.pem")),
            pki.path_str(&format!("{name}.key")),
            pki.path_str("ca.pem"),
        );
        let tls_port_text = tls_port.to_string();
        let mut args = vec![
            "--tls-port",
            &tls_port_text,
            "--tls-cert-file",
            &cert_file,
            "--tls-key-file",
            &key_file,
            "--tls-ca-cert-file",
            &ca_file,
            "--tls-auth-clients",
            match auth {
                ClientAuth::No => "no",
                ClientAuth::Required => "yes",
            },
            "--tls-replication",
            "yes",
        ];
        args.extend_from_slice(extra);
        // A redis-server built without TLS refuses `--tls-port`, and the harness panics with its
        // log: loud, as a missing binary is.
        let server = RedisServer::start_with(TLS_VERSION, &args);
        TlsServer { server, tls_port }
    }

    /// `rediss://127.0.0.1:<tls port>`
    pub fn url(&self) -> String {
        format!("rediss://127.0.0.1:{}", self.tls_port)
    }

    /// The same port as `redis://`, which is the wrong protocol for it.
    pub fn plain_url_to_tls_port(&self) -> String {
        format!("redis://127.0.0.1:{}", self.tls_port)
    }
}
