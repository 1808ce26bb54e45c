//! Settings from `config.toml`, overridden by `FERRY_*` environment variables.
//!
//! Precedence, lowest first: built-in defaults, the config file (`--config PATH`, else
//! `FERRY_CONFIG`, else `./config.toml` if present), then `FERRY_LISTEN` and `FERRY_DATA_DIR`.
//! Unknown keys are refused, so a typo is an error rather than a silently ignored setting.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use serde::Deserialize;
use thiserror::Error;

use crate::redis_url::Secret;

#[derive(Debug, Error)]
pub enum ConfigError {
    #[error("cannot read the config file {path}: {source}")]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("the config file {path} is invalid: {message}")]
    Parse { path: PathBuf, message: String },
    #[error("listen address `{0}` is not host:port (e.g. 127.0.0.1:8080)")]
    Listen(String),
    #[error("auth token `{name}` reads its value from ${env}, which is not set (or empty)")]
    TokenMissing { name: String, env: String },
    #[error(
        "refusing to listen on {0} without an API token: anyone who can reach it could start and \
         cancel migrations. Add an [[auth.tokens]] entry (name, token_env) to the config, or \
         listen on a loopback address such as 127.0.0.1"
    )]
    InsecureListen(SocketAddr),
    #[error(
        "refusing to serve plain HTTP on {0}: bearer tokens and Redis passwords would cross the \
         network in clear. Set [http.tls] cert_file and key_file to serve HTTPS, listen on a \
         loopback address (behind a TLS-terminating proxy on this host), or, if the network is \
         trusted, set allow_plain_http = true under [http]"
    )]
    PlainHttp(SocketAddr),
}

/// The API's own transport: HTTPS, or plain HTTP where that is safe or explicitly allowed.
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct HttpSettings {
    /// Serve HTTPS with this certificate and key.
    pub tls: Option<HttpTlsSettings>,
    /// Serve plain HTTP on a non-loopback address anyway (a trusted network, or TLS terminated
    /// by a proxy on another host). Off by default.
    pub allow_plain_http: bool,
}

/// `[http.tls]`: the server certificate (PEM, with its chain) and its unencrypted private key.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct HttpTlsSettings {
    pub cert_file: PathBuf,
    pub key_file: PathBuf,
}

/// Log output format.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum LogFormat {
    /// Human-readable, for a terminal.
    #[default]
    Pretty,
    /// One JSON object per line, for log shippers.
    Json,
}

#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct LogSettings {
    pub format: LogFormat,
    /// tracing-subscriber filter directives; `RUST_LOG` wins when set.
    pub filter: String,
}

impl Default for LogSettings {
    fn default() -> Self {
        LogSettings {
            format: LogFormat::Pretty,
            filter: "info".into(),
        }
    }
}

/// A configured token, read from its environment variable: who it names, its value and its role.
#[derive(Clone, Debug)]
pub struct Token {
    pub name: String,
    pub secret: Secret,
    pub role: Role,
}

/// What a token may do. Each role includes the ones before it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Role {
    /// Reads: every `GET` except backup downloads (a backup holds the whole dataset).
    Viewer,
    /// Runs migrations (create, change, validate, start, cut over, cancel) and takes backups.
    Operator,
    /// What can destroy or expose data: rollback, restore, delete and download backups.
    Admin,
}

impl Role {
    pub fn as_str(self) -> &'static str {
        match self {
            Role::Viewer => "viewer",
            Role::Operator => "operator",
            Role::Admin => "admin",
        }
    }
}

impl std::fmt::Display for Role {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// One API token: its name (the events' actor), the environment variable holding it, and its
/// role. The role is required: a token without one would have to default to something, and
/// neither "everything" nor "nothing" is a safe guess.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TokenSetting {
    pub name: String,
    pub token_env: String,
    pub role: Role,
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct AuthSettings {
    pub tokens: Vec<TokenSetting>,
}

#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Settings {
    /// Where the API listens, `host:port`. Port 0 picks a free port (tests).
    pub listen: String,
    /// Event log, encrypted credentials, backups.
    pub data_dir: PathBuf,
    /// The largest request body accepted; larger ones get 413.
    pub max_body_bytes: usize,
    /// The largest backup stored, in bytes (free disk space applies too); none by default.
    pub backup_max_bytes: Option<u64>,
    /// The largest RDB accepted by `POST /v1/backups/upload`, in bytes.
    pub upload_max_bytes: u64,
    /// Seconds between the heartbeat comments of an idle event stream (SSE).
    pub sse_heartbeat_secs: u64,
    /// How many uploads may run at once (more get 503).
    pub upload_concurrency: usize,
    /// The largest string an RDB may decompress to (LZF); a bigger claim is refused as corrupt.
    pub max_decompressed_bytes: u64,
    /// The free space kept in `data_dir`: below it Ferry is not ready and refuses new work (507).
    pub min_free_bytes: u64,
    pub log: LogSettings,
    pub auth: AuthSettings,
    pub http: HttpSettings,
    /// The replication listener of `transfer: relay`.
    pub relay: crate::relay::RelaySettings,
    pub transfer: TransferSettings,
}

/// `[transfer]`: bounds of the copy itself.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct TransferSettings {
    /// The largest value Ferry holds whole in memory, in bytes. Big values stream through in
    /// chunks (a string as `SETRANGE`s, a collection's elements as they are parsed); only an
    /// LZF-compressed string, a stream, a module value or a compact encoding must be whole, and
    /// one over this size fails the job with its key named, rather than exhausting memory.
    pub max_whole_value_bytes: u64,
    /// The HA guard slows Ferry's writes down while a replica of the source lags more than this
    /// many seconds (`lag` in the source's `INFO replication`); 0 turns the guard off.
    pub ha_guard_replica_lag_secs: u64,
    /// The HA guard never slows Ferry below this many commands a second.
    pub ha_guard_min_ops_per_sec: u64,
}

impl Default for TransferSettings {
    fn default() -> Self {
        TransferSettings {
            // Redis' own proto-max-bulk-len: no single value of a default server is larger.
            max_whole_value_bytes: 512 * 1024 * 1024,
            ha_guard_replica_lag_secs: 10,
            ha_guard_min_ops_per_sec: 100,
        }
    }
}

impl Default for Settings {
    fn default() -> Self {
        Settings {
            listen: "127.0.0.1:8080".into(),
            data_dir: PathBuf::from("./data"),
            max_body_bytes: 64 * 1024,
            backup_max_bytes: None,
            upload_max_bytes: 1 << 30,
            sse_heartbeat_secs: 15,
            upload_concurrency: 2,
            max_decompressed_bytes: 512 << 20,
            min_free_bytes: 256 << 20,
            log: LogSettings::default(),
            auth: AuthSettings::default(),
            http: HttpSettings::default(),
            relay: crate::relay::RelaySettings::default(),
            transfer: TransferSettings::default(),
        }
    }
}

impl Settings {
    /// Loads the settings: defaults, then the file, then the environment.
    pub fn load(path: Option<&Path>) -> Result<Settings, ConfigError> {
        let explicit = path
            .map(Path::to_path_buf)
            .or_else(|| std::env::var_os("FERRY_CONFIG").map(PathBuf::from));
        let mut settings = match explicit {
            Some(path) => Self::from_file(&path)?,
            None if Path::new("config.toml").exists() => Self::from_file(Path::new("config.toml"))?,
            None => Settings::default(),
        };
        if let Some(listen) = std::env::var("FERRY_LISTEN").ok().filter(|s| !s.is_empty()) {
            settings.listen = listen;
        }
        if let Some(dir) = std::env::var_os("FERRY_DATA_DIR").filter(|s| !s.is_empty()) {
            settings.data_dir = PathBuf::from(dir);
        }
        if let Some(bind) = std::env::var("FERRY_RELAY_BIND")
            .ok()
            .filter(|s| !s.is_empty())
        {
            settings.relay.bind = bind;
        }
        if let Some(advertise) = std::env::var("FERRY_RELAY_ADVERTISE")
            .ok()
            .filter(|s| !s.is_empty())
        {
            settings.relay.advertise = Some(advertise);
        }
        Ok(settings)
    }

    pub fn from_file(path: &Path) -> Result<Settings, ConfigError> {
        let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
            path: path.to_path_buf(),
            source,
        })?;
        toml::from_str(&text).map_err(|e| ConfigError::Parse {
            path: path.to_path_buf(),
            message: e.to_string(),
        })
    }

    /// The listen address, parsed.
    pub fn listen_addr(&self) -> Result<SocketAddr, ConfigError> {
        self.listen
            .parse()
            .map_err(|_| ConfigError::Listen(self.listen.clone()))
    }

    /// Reads each token from its environment variable.
    pub fn tokens(&self) -> Result<Vec<Token>, ConfigError> {
        self.auth
            .tokens
            .iter()
            .map(|t| {
                let value = std::env::var(&t.token_env).ok().filter(|v| !v.is_empty());
                value
                    .map(|v| Token {
                        name: t.name.clone(),
                        secret: Secret::new(v),
                        role: t.role,
                    })
                    .ok_or_else(|| ConfigError::TokenMissing {
                        name: t.name.clone(),
                        env: t.token_env.clone(),
                    })
            })
            .collect()
    }

    /// Refuses a non-loopback listen address without tokens, or without TLS (unless plain HTTP
    /// is explicitly allowed).
    pub fn check_exposure(&self, tokens: &[Token]) -> Result<SocketAddr, ConfigError> {
        let addr = self.listen_addr()?;
        if addr.ip().is_loopback() {
            return Ok(addr);
        }
        if tokens.is_empty() {
            return Err(ConfigError::InsecureListen(addr));
        }
        if self.http.tls.is_none() && !self.http.allow_plain_http {
            return Err(ConfigError::PlainHttp(addr));
        }
        Ok(addr)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_shipped_config_file_parses_to_the_defaults() {
        let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("config.toml");
        assert_eq!(Settings::from_file(&path).unwrap(), Settings::default());
    }

    #[test]
    fn unknown_keys_are_refused() {
        let err = toml::from_str::<Settings>("listn = \"x\"").unwrap_err();
        assert!(err.to_string().contains("listn"), "{err}");
    }

    #[test]
    fn a_public_address_needs_a_token() {
        let settings = Settings {
            listen: "0.0.0.0:8080".into(),
            ..Settings::default()
        };
        assert!(matches!(
            settings.check_exposure(&[]),
            Err(ConfigError::InsecureListen(_))
        ));
        let token = Token {
            name: "ops".into(),
            secret: Secret::new("t"),
            role: Role::Viewer,
        };
        let tokens = [token];
        // A token, but plain HTTP beyond loopback: refused, saying why and how to fix it.
        let err = settings.check_exposure(&tokens).unwrap_err();
        assert!(matches!(err, ConfigError::PlainHttp(_)));
        assert!(err.to_string().contains("[http.tls]"), "{err}");
        assert!(err.to_string().contains("allow_plain_http"), "{err}");
        let allowed = Settings {
            http: HttpSettings {
                allow_plain_http: true,
                ..HttpSettings::default()
            },
            ..settings.clone()
        };
        assert!(allowed.check_exposure(&tokens).is_ok());
        let https = Settings {
            http: HttpSettings {
                tls: Some(HttpTlsSettings {
                    cert_file: "c.pem".into(),
                    key_file: "k.pem".into(),
                }),
                allow_plain_http: false,
            },
            ..settings
        };
        assert!(https.check_exposure(&tokens).is_ok());
        assert!(Settings::default().check_exposure(&[]).is_ok());
    }
}
