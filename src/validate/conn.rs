//! Admin connections for validation: redis-rs, a timeout on everything, and errors without secrets.
//!
//! One multiplexed connection per server carries every admin command, so the independent ones
//! (INFO, CONFIG GET, MODULE LIST, COMMAND INFO) travel concurrently over one socket. Every await is
//! bounded twice: redis-rs' own connection and response timeouts, and a `tokio::time::timeout`
//! around the whole call, because a server that accepts TCP but never answers (a stopped process,
//! a black-holing firewall) must cost us seconds, not the endpoint.
//!
//! redis-rs error texts are not part of our contract and could one day include connection details,
//! so [`Admin::call`] and [`connect`] classify errors into [`CallError`] / [`ConnectError`] and scrub
//! the password from any text they pass on.

use std::time::{Duration, Instant};

use redis::aio::MultiplexedConnection;
use redis::{AsyncConnectionConfig, ErrorKind, FromRedisValue, RedisError, ServerErrorKind};

use super::error::{CallError, ConnectError};
use crate::redis_url::RedisUrl;

/// A connected server, and what connecting taught us.
pub struct Admin {
    conn: MultiplexedConnection,
    url: RedisUrl,
    call_timeout: Duration,
    /// No call may run past this instant: the budget of the whole gathering, whatever the rounds.
    deadline: Instant,
    /// Round trip of the first PING, after the handshake.
    pub latency: Duration,
}

/// How to connect: the time limits, and which certificate authority to trust for `rediss://`.
#[derive(Debug, Clone)]
pub struct ConnectOptions {
    /// For the whole handshake: TCP, TLS, AUTH and a first PING.
    pub connect_timeout: Duration,
    /// For each admin command afterwards.
    pub call_timeout: Duration,
    /// For everything with one server, connecting included: the calls of a server that answers,
    /// but slowly, share it, so several rounds of calls cannot add up past it.
    pub budget: Duration,
    /// Which certificate authorities `rediss://` servers are checked against.
    pub tls_roots: TlsRoots,
}

/// The trust anchors for TLS connections.
#[derive(Debug, Clone)]
pub enum TlsRoots {
    /// The system's roots (`rustls-native-certs`, which also honours `SSL_CERT_FILE`).
    System,
    /// PEM certificates of a private CA.
    Pem(Vec<u8>),
    /// The configured CA file could not be read: TLS connections fail and say why.
    Unreadable { path: String, detail: String },
}

/// Connects, authenticates and PINGs within the connect timeout.
pub async fn connect(url: &RedisUrl, options: &ConnectOptions) -> Result<Admin, ConnectError> {
    let addr = url.addr();
    let deadline = Instant::now() + options.budget;
    let connect_timeout = options.connect_timeout.min(options.budget);
    let call_timeout = options.call_timeout;
    let attempt = async {
        let client = match (&options.tls_roots, url.tls) {
            (TlsRoots::Pem(pem), true) => redis::Client::build_with_tls(
                url.expose_url(),
                redis::TlsCertificates {
                    client_tls: None,
                    root_cert: Some(pem.clone()),
                },
            ),
            (TlsRoots::Unreadable { path, detail }, true) => {
                return Err(ConnectError::TlsCaFile {
                    path: path.clone(),
                    detail: detail.clone(),
                })
            }
            _ => redis::Client::open(url.expose_url()),
        }
        .map_err(|e| classify_connect(&addr, url, connect_timeout, &e))?;
        let config = AsyncConnectionConfig::new()
            .set_connection_timeout(Some(connect_timeout))
            .set_response_timeout(Some(call_timeout));
        let mut conn = client
            .get_multiplexed_async_connection_with_config(&config)
            .await
            .map_err(|e| classify_connect(&addr, url, connect_timeout, &e))?;
        let started = Instant::now();
        redis::cmd("PING")
            .query_async::<String>(&mut conn)
            .await
            .map_err(|e| classify_connect(&addr, url, connect_timeout, &e))?;
        Ok(Admin {
            conn,
            url: url.clone(),
            call_timeout,
            deadline,
            latency: started.elapsed(),
        })
    };
    match tokio::time::timeout(connect_timeout, attempt).await {
        Ok(result) => result,
        Err(_) => Err(ConnectError::Timeout {
            addr,
            secs: connect_timeout.as_secs(),
        }),
    }
}

impl Admin {
    /// Runs one command under the call timeout. `label` names it in messages (e.g. `CONFIG GET`).
    pub async fn call<T: FromRedisValue>(
        &self,
        label: &str,
        cmd: redis::Cmd,
    ) -> Result<T, CallError> {
        // A clone of a multiplexed connection is a cheap handle onto the same socket.
        let mut conn = self.conn.clone();
        let limit = self
            .call_timeout
            .min(self.deadline.saturating_duration_since(Instant::now()));
        let timed_out = || CallError::Timeout {
            command: label.to_string(),
            millis: limit.as_millis() as u64,
        };
        match tokio::time::timeout(limit, cmd.query_async::<T>(&mut conn)).await {
            Ok(Ok(value)) => Ok(value),
            Ok(Err(e)) if e.is_timeout() => Err(timed_out()),
            Ok(Err(e)) => Err(classify_call(label, &self.url, &e)),
            Err(_) => Err(timed_out()),
        }
    }

    /// The user name the URL authenticates as (`default` when it names none), for `ACL DRYRUN`.
    pub fn user(&self) -> &str {
        self.url.username.as_deref().unwrap_or("default")
    }
}

fn classify_connect(
    addr: &str,
    url: &RedisUrl,
    connect_timeout: Duration,
    e: &RedisError,
) -> ConnectError {
    let addr = addr.to_string();
    if is_auth_error(e) {
        return ConnectError::Auth;
    }
    if e.is_connection_refusal() {
        return ConnectError::Refused { addr };
    }
    if e.is_timeout() {
        return ConnectError::Timeout {
            addr,
            secs: connect_timeout.as_secs(),
        };
    }
    let detail = scrub(&e.to_string(), url);
    if url.tls && looks_like_tls(&detail) {
        return ConnectError::Tls { addr, detail };
    }
    ConnectError::Other { addr, detail }
}

fn classify_call(label: &str, url: &RedisUrl, e: &RedisError) -> CallError {
    let command = label.to_string();
    let detail = scrub(&e.to_string(), url);
    match e.kind() {
        ErrorKind::Server(ServerErrorKind::NoPerm) => CallError::Denied { command, detail },
        _ if detail.contains("unknown command") => CallError::Unavailable { command },
        _ if detail.contains("NOPERM") => CallError::Denied { command, detail },
        ErrorKind::Server(_) | ErrorKind::Extension => CallError::Server { command, detail },
        _ => CallError::Unexpected { command, detail },
    }
}

fn is_auth_error(e: &RedisError) -> bool {
    if e.kind() == ErrorKind::AuthenticationFailed {
        return true;
    }
    let text = e.to_string();
    [
        "WRONGPASS",
        "NOAUTH",
        "invalid password",
        "invalid username-password",
    ]
    .iter()
    .any(|marker| text.contains(marker))
}

fn looks_like_tls(detail: &str) -> bool {
    let lower = detail.to_ascii_lowercase();
    ["tls", "certificate", "handshake", "ssl"]
        .iter()
        .any(|marker| lower.contains(marker))
}

/// Removes the password from a text that came from outside our code.
fn scrub(text: &str, url: &RedisUrl) -> String {
    match url.password.as_ref().map(|p| p.expose()) {
        Some(password) if !password.is_empty() => text.replace(password, "***"),
        _ => text.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn scrub_removes_the_password_wherever_it_appears() {
        let url = RedisUrl::parse("redis://u:hunter2@h:1").unwrap();
        assert_eq!(scrub("bad hunter2 here hunter2", &url), "bad *** here ***");
        let no_password = RedisUrl::parse("redis://h:1").unwrap();
        assert_eq!(scrub("as is", &no_password), "as is");
    }
}
