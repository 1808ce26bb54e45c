//! The TLS side of [`super::Peer`]: a rustls client configuration built once from an endpoint's
//! [`TlsSettings`] (files read and checked up front), and the translation of rustls' failures into
//! the [`ConnectError`]s that validation names (chain, host name, expiry, client certificate,
//! protocol).
//!
//! Key material never reaches a message: file problems are described in our own words, never by
//! quoting the PEM parser (whose errors can include a line of the file).

use std::path::Path;
use std::sync::{Arc, LazyLock};

use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::crypto::{CryptoProvider, WebPkiSupportedAlgorithms};
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName, UnixTime};
use rustls::{
    AlertDescription, CertificateError, ClientConfig, DigitallySignedStruct, RootCertStore,
};

use super::ConnectError;
use crate::spec::TlsSettings;

/// A loaded TLS client: what every connection to one server shares.
#[derive(Debug)]
pub(super) struct TlsClient {
    pub config: Arc<ClientConfig>,
    /// The name checked in the server's certificate and sent as SNI.
    pub server_name: ServerName<'static>,
    /// The same, for messages.
    pub name: String,
    /// Whether a client certificate is offered (to tell "none given" from "refused").
    pub offers_certificate: bool,
    /// `insecure_skip_verify`: any server certificate is accepted.
    pub skips_verification: bool,
}

/// The provider every TLS connection uses (ring: it builds without cmake).
fn provider() -> Arc<CryptoProvider> {
    static PROVIDER: LazyLock<Arc<CryptoProvider>> =
        LazyLock::new(|| Arc::new(rustls::crypto::ring::default_provider()));
    PROVIDER.clone()
}

/// The system's roots, read once per process (`rustls-native-certs`, which honours
/// `SSL_CERT_FILE`): reading the bundle costs milliseconds, and every reconnect would pay it.
fn system_roots() -> Arc<RootCertStore> {
    static ROOTS: LazyLock<Arc<RootCertStore>> = LazyLock::new(|| {
        let mut store = RootCertStore::empty();
        for cert in rustls_native_certs::load_native_certs().certs {
            let _ = store.add(cert);
        }
        Arc::new(store)
    });
    ROOTS.clone()
}

impl TlsClient {
    /// Reads the files `settings` names and builds the client for a server at `host`.
    pub fn load(settings: &TlsSettings, host: &str) -> Result<TlsClient, ConnectError> {
        let name = settings.server_name.as_deref().unwrap_or(host);
        let server_name =
            ServerName::try_from(name.to_string()).map_err(|_| ConnectError::TlsFile {
                what: "server name",
                path: name.to_string(),
                problem: "is not a DNS name or an IP address; set `tls.server_name`".into(),
            })?;
        let builder = ClientConfig::builder_with_provider(provider())
            .with_safe_default_protocol_versions()
            .map_err(|e| ConnectError::TlsFile {
                what: "protocol versions",
                path: String::new(),
                problem: e.to_string(),
            })?;
        let builder = if settings.insecure_skip_verify {
            builder
                .dangerous()
                .with_custom_certificate_verifier(Arc::new(AcceptAnyCertificate {
                    algorithms: provider().signature_verification_algorithms,
                }))
        } else {
            let roots = match &settings.ca_file {
                Some(path) => Arc::new(read_ca_file(path)?),
                None => system_roots(),
            };
            builder.with_root_certificates(roots)
        };
        let (config, offers_certificate) = match (&settings.cert_file, &settings.key_file) {
            (Some(cert), Some(key)) => {
                let chain = read_certificates(cert, "client certificate file")?;
                let key_der = read_private_key(key)?;
                let config = builder.with_client_auth_cert(chain, key_der).map_err(|e| {
                    ConnectError::TlsFile {
                        what: "client certificate and key",
                        path: format!("{} + {}", cert.display(), key.display()),
                        problem: format!(
                            "do not go together ({e}); give the key of that certificate"
                        ),
                    }
                })?;
                (config, true)
            }
            _ => (builder.with_no_client_auth(), false),
        };
        Ok(TlsClient {
            config: Arc::new(config),
            server_name,
            name: name.to_string(),
            offers_certificate,
            skips_verification: settings.insecure_skip_verify,
        })
    }
}

/// A server configuration for HTTPS (the API's `[http.tls]`), from a PEM certificate chain and
/// its key, with the same provider and the same careful file errors as the client side.
pub fn server_config(
    cert_file: &Path,
    key_file: &Path,
) -> Result<Arc<rustls::ServerConfig>, ConnectError> {
    let chain = read_certificates(cert_file, "certificate file")?;
    let key = read_private_key(key_file)?;
    let config = rustls::ServerConfig::builder_with_provider(provider())
        .with_safe_default_protocol_versions()
        .map_err(|e| ConnectError::TlsFile {
            what: "protocol versions",
            path: String::new(),
            problem: e.to_string(),
        })?
        .with_no_client_auth()
        .with_single_cert(chain, key)
        .map_err(|e| ConnectError::TlsFile {
            what: "certificate and key",
            path: format!("{} + {}", cert_file.display(), key_file.display()),
            problem: format!("do not go together ({e}); give the key of that certificate"),
        })?;
    Ok(Arc::new(config))
}

fn read_file(path: &Path, what: &'static str) -> Result<Vec<u8>, ConnectError> {
    std::fs::read(path).map_err(|e| ConnectError::TlsFile {
        what,
        path: path.display().to_string(),
        problem: match e.kind() {
            std::io::ErrorKind::NotFound => "does not exist; fix the path".to_string(),
            std::io::ErrorKind::PermissionDenied => {
                "cannot be read by Ferry's user; fix its permissions".to_string()
            }
            _ => format!("cannot be read ({e})"),
        },
    })
}

fn not_pem(path: &Path, what: &'static str, expected: &str) -> ConnectError {
    ConnectError::TlsFile {
        what,
        path: path.display().to_string(),
        problem: format!("holds no {expected}; give a PEM file (-----BEGIN …-----)"),
    }
}

fn read_certificates(
    path: &Path,
    what: &'static str,
) -> Result<Vec<CertificateDer<'static>>, ConnectError> {
    let pem = read_file(path, what)?;
    let certs: Vec<CertificateDer<'static>> = CertificateDer::pem_slice_iter(&pem)
        .collect::<Result<_, _>>()
        .map_err(|_| not_pem(path, what, "readable PEM certificate"))?;
    if certs.is_empty() {
        return Err(not_pem(path, what, "certificate"));
    }
    Ok(certs)
}

fn read_ca_file(path: &Path) -> Result<RootCertStore, ConnectError> {
    let what = "CA file";
    let mut store = RootCertStore::empty();
    for cert in read_certificates(path, what)? {
        store.add(cert).map_err(|e| ConnectError::TlsFile {
            what,
            path: path.display().to_string(),
            problem: format!("holds a certificate that cannot be a trust anchor ({e})"),
        })?;
    }
    Ok(store)
}

fn read_private_key(path: &Path) -> Result<PrivateKeyDer<'static>, ConnectError> {
    let what = "key file";
    let pem = read_file(path, what)?;
    // Never pass the parser's error on: it may quote a line of the key.
    PrivateKeyDer::from_pem_slice(&pem).map_err(|_| {
        let encrypted = pem.windows(9).any(|w| w == b"ENCRYPTED");
        ConnectError::TlsFile {
            what,
            path: path.display().to_string(),
            problem: if encrypted {
                "is encrypted with a passphrase, which Ferry does not take (it would have to \
                 keep the passphrase); decrypt it (`openssl pkey -in KEY -out KEY.plain`), \
                 readable by Ferry's user only"
                    .to_string()
            } else {
                "holds no private key; give a PEM key (PKCS#8, PKCS#1 or SEC1)".to_string()
            },
        }
    })
}

/// What went wrong in a TLS exchange, in the terms of the checks.
pub(super) fn classify(error: &rustls::Error, addr: &str, client: &TlsClient) -> ConnectError {
    let addr = addr.to_string();
    let name = client.name.clone();
    match error {
        rustls::Error::InvalidCertificate(cert) => match cert {
            CertificateError::NotValidForName | CertificateError::NotValidForNameContext { .. } => {
                ConnectError::TlsHostname {
                    addr,
                    name,
                    detail: error.to_string(),
                }
            }
            CertificateError::Expired
            | CertificateError::ExpiredContext { .. }
            | CertificateError::NotValidYet
            | CertificateError::NotValidYetContext { .. } => ConnectError::TlsExpired {
                addr,
                detail: error.to_string(),
            },
            _ => ConnectError::TlsChain {
                addr,
                detail: error.to_string(),
            },
        },
        rustls::Error::AlertReceived(alert) => {
            let about_client_certificate = matches!(
                alert,
                AlertDescription::CertificateRequired
                    | AlertDescription::HandshakeFailure
                    | AlertDescription::UnknownCA
                    | AlertDescription::BadCertificate
                    | AlertDescription::CertificateUnknown
                    | AlertDescription::UnsupportedCertificate
                    | AlertDescription::AccessDenied
                    | AlertDescription::DecryptError
            );
            match (about_client_certificate, client.offers_certificate) {
                (true, false) if !matches!(alert, AlertDescription::DecryptError) => {
                    ConnectError::TlsClientCertMissing { addr }
                }
                (true, true) => ConnectError::TlsClientCertRejected {
                    addr,
                    detail: format!("the server answered `{alert:?}`"),
                },
                _ => ConnectError::Tls {
                    addr,
                    detail: error.to_string(),
                },
            }
        }
        rustls::Error::InvalidMessage(_) => ConnectError::TlsNotSpoken {
            addr,
            detail: "its answer is not TLS".into(),
        },
        _ => ConnectError::Tls {
            addr,
            detail: error.to_string(),
        },
    }
}

/// The rustls error inside an I/O error from tokio-rustls, if that is what it is.
pub(super) fn rustls_error(error: &std::io::Error) -> Option<&rustls::Error> {
    error.get_ref()?.downcast_ref::<rustls::Error>()
}

/// A configuration that completes any handshake, for probing whether a port speaks TLS at all.
pub(super) fn probe_config() -> Arc<ClientConfig> {
    static CONFIG: LazyLock<Arc<ClientConfig>> = LazyLock::new(|| {
        let config = ClientConfig::builder_with_provider(provider())
            .with_safe_default_protocol_versions()
            .map(|b| {
                b.dangerous()
                    .with_custom_certificate_verifier(Arc::new(AcceptAnyCertificate {
                        algorithms: provider().signature_verification_algorithms,
                    }))
                    .with_no_client_auth()
            })
            .unwrap_or_else(|e| panic!("the ring provider supports TLS 1.2 and 1.3: {e}"));
        Arc::new(config)
    });
    CONFIG.clone()
}

/// `insecure_skip_verify`: accepts any certificate, but still checks that the server holds the
/// key of the certificate it presents (the handshake signatures), as rustls' own verifier does.
#[derive(Debug)]
struct AcceptAnyCertificate {
    algorithms: WebPkiSupportedAlgorithms,
}

impl ServerCertVerifier for AcceptAnyCertificate {
    fn verify_server_cert(
        &self,
        _end_entity: &CertificateDer<'_>,
        _intermediates: &[CertificateDer<'_>],
        _server_name: &ServerName<'_>,
        _ocsp_response: &[u8],
        _now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        Ok(ServerCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls12_signature(message, cert, dss, &self.algorithms)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(message, cert, dss, &self.algorithms)
    }

    fn supported_verify_schemes(&self) -> Vec<rustls::SignatureScheme> {
        self.algorithms.supported_schemes()
    }
}
