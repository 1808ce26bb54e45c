//! Opening a connection to a Redis server: TCP, optionally TLS, then AUTH. Used by both the admin
//! client ([`crate::client`]) and the replica handshake ([`crate::replication`]), so a transport
//! feature (TLS roots, client certificates, ACL users) is added here once and every link gets it:
//! the replication link, the target writer, validation, backups, restores and verification.
//!
//! A [`Peer`] is a server as Ferry dials it: its URL and, for `rediss://`, a TLS client built
//! once from the endpoint's [`TlsSettings`] (files read and checked when the peer is made, at the
//! start of a validation, migration, backup or restore; reconnects reuse it). A [`Stream`] is
//! either plain TCP or TLS over TCP; it reads and writes like a socket and splits into owned
//! halves for the pipelined writer, which reads replies while it sends.
//!
//! Every connection makes one round trip before it is handed out (`AUTH` with a password, else
//! `PING`), because that is where the failures that matter show: a server that requires a client
//! certificate says so only after the TLS 1.3 handshake, and a TLS port answers a plain `PING` by
//! closing. When the protocol looks wrong, a second, quick probe tells "this port speaks TLS" (or
//! plain RESP) from "something else is wrong", so the error names the fix.
//!
//! Errors never contain the password: AUTH replies from the server do not echo it, and nothing
//! here formats the URL with its secret. Nor do they contain key material (see [`tls`]).

mod tls;
pub mod x509;

pub use tls::server_config;

use std::io;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use chrono::{DateTime, Utc};
use thiserror::Error;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt, ReadBuf};
use tokio::net::tcp::{OwnedReadHalf, OwnedWriteHalf};
use tokio::net::TcpStream;
use tokio_rustls::client::TlsStream;

use crate::redis_url::RedisUrl;
use crate::resp::CommandBuf;
use crate::spec::{Endpoint, TlsSettings};
use tls::TlsClient;

/// How long TCP, TLS and AUTH may take together, unless the caller says otherwise.
pub const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);

/// Why no usable connection could be opened. Messages say what to check, in plain words.
#[derive(Debug, Clone, Error, PartialEq, Eq)]
pub enum ConnectError {
    #[error("connection to {addr} refused: nothing listens there; check the host and the port")]
    Refused { addr: String },
    #[error("no answer from {addr} within {secs}s; check the host, the port and the firewall")]
    Timeout { addr: String, secs: u64 },
    #[error("cannot connect to {addr}: {reason}")]
    Unreachable { addr: String, reason: String },
    #[error(
        "authentication failed at {addr} ({reason}); check the user name and password in the URL"
    )]
    Auth { addr: String, reason: String },
    #[error("something other than Redis answers at {addr} ({detail}); check the port")]
    NotRedis { addr: String, detail: String },
    /// The endpoint's `tls` settings contradict its URL or each other; nothing was dialed.
    #[error("the endpoint's TLS settings cannot be used: {0}")]
    TlsSettings(String),
    /// A TLS file (or setting) cannot be used; nothing was dialed.
    #[error("the TLS {what} {path} {problem}")]
    TlsFile {
        what: &'static str,
        path: String,
        problem: String,
    },
    #[error("TLS handshake with {addr} failed ({detail}); check the server's TLS settings")]
    Tls { addr: String, detail: String },
    #[error(
        "the certificate of {addr} is not trusted ({detail}); give the CA that signed it as \
         `tls.ca_file`"
    )]
    TlsChain { addr: String, detail: String },
    #[error(
        "the certificate of {addr} is not valid for the name `{name}` ({detail}); connect with a \
         name the certificate carries, or set `tls.server_name` to one"
    )]
    TlsHostname {
        addr: String,
        name: String,
        detail: String,
    },
    #[error(
        "the certificate of {addr} is expired or not yet valid ({detail}); renew it on the server"
    )]
    TlsExpired { addr: String, detail: String },
    #[error(
        "{addr} requires a client certificate (mutual TLS) and none was given; set \
         `tls.cert_file` and `tls.key_file`"
    )]
    TlsClientCertMissing { addr: String },
    #[error(
        "{addr} refused Ferry's client certificate ({detail}); use one signed by a CA the server \
         trusts (its tls-ca-cert-file)"
    )]
    TlsClientCertRejected { addr: String, detail: String },
    #[error("{addr} does not speak TLS ({detail}); use redis:// for this port, or the server's TLS port")]
    TlsNotSpoken { addr: String, detail: String },
    #[error("{addr} speaks TLS only; use rediss:// (with `tls` settings if needed)")]
    TlsRequired { addr: String },
}

/// The TLS failure kinds validation reports under their own check ids.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TlsProblem {
    /// A CA, certificate or key file cannot be used.
    Files,
    /// `redis://` to a TLS port, or `rediss://` to a plain one.
    Protocol,
    /// Any other handshake failure.
    Handshake,
    /// The server's certificate does not chain to a trusted root.
    Chain,
    /// The server's certificate does not carry the expected name.
    Hostname,
    /// The server's certificate is out of its validity period.
    Expired,
    /// The server wants a client certificate that was not given, or refuses the one given.
    ClientCertificate,
}

impl ConnectError {
    /// The TLS problem this error is, if it is one.
    pub fn tls_problem(&self) -> Option<TlsProblem> {
        Some(match self {
            ConnectError::TlsFile { .. } | ConnectError::TlsSettings(_) => TlsProblem::Files,
            ConnectError::TlsNotSpoken { .. } | ConnectError::TlsRequired { .. } => {
                TlsProblem::Protocol
            }
            ConnectError::Tls { .. } => TlsProblem::Handshake,
            ConnectError::TlsChain { .. } => TlsProblem::Chain,
            ConnectError::TlsHostname { .. } => TlsProblem::Hostname,
            ConnectError::TlsExpired { .. } => TlsProblem::Expired,
            ConnectError::TlsClientCertMissing { .. }
            | ConnectError::TlsClientCertRejected { .. } => TlsProblem::ClientCertificate,
            _ => return None,
        })
    }
}

/// A server as Ferry dials it: its URL and, for `rediss://`, the TLS client built from its
/// settings. Cheap to clone (the TLS configuration is shared).
#[derive(Clone)]
pub struct Peer {
    url: RedisUrl,
    tls: Option<Arc<TlsClient>>,
}

impl Peer {
    /// Checks the endpoint's TLS settings, reads its TLS files (for `rediss://`) and keeps what
    /// connecting needs.
    pub fn new(endpoint: &Endpoint) -> Result<Peer, ConnectError> {
        endpoint.check().map_err(ConnectError::TlsSettings)?;
        let tls = if endpoint.url.tls {
            let settings = endpoint.tls.clone().unwrap_or_default();
            Some(Arc::new(TlsClient::load(&settings, &endpoint.url.host)?))
        } else {
            None
        };
        Ok(Peer {
            url: endpoint.url.clone(),
            tls,
        })
    }

    /// A peer with default TLS settings (system roots for `rediss://`).
    pub fn from_url(url: &RedisUrl) -> Result<Peer, ConnectError> {
        Self::new(&Endpoint::new(url.clone()))
    }

    pub fn url(&self) -> &RedisUrl {
        &self.url
    }

    /// The same credentials and TLS client at another address: another node of the same
    /// Redis Cluster (a cluster shares its users and its certificate authority).
    pub fn at(&self, host: &str, port: u16) -> Peer {
        let mut url = self.url.clone();
        url.host = host.to_string();
        url.port = port;
        Peer {
            url,
            tls: self.tls.clone(),
        }
    }

    /// `host:port`, for messages.
    pub fn addr(&self) -> String {
        self.url.addr()
    }

    /// Whether the server's certificate goes unchecked (`insecure_skip_verify`).
    pub fn skips_verification(&self) -> bool {
        self.tls.as_ref().is_some_and(|t| t.skips_verification)
    }
}

impl std::fmt::Debug for Peer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Peer({}", self.url)?;
        if self.skips_verification() {
            f.write_str(", certificate unchecked")?;
        }
        f.write_str(")")
    }
}

/// Refuses TLS settings that could not be loaded, without dialing (for `TlsSettings` checks).
pub fn check_settings(settings: &TlsSettings, host: &str) -> Result<(), ConnectError> {
    TlsClient::load(settings, host).map(drop)
}

/// How to open a connection.
#[derive(Debug, Clone)]
pub struct ConnectOptions {
    /// For TCP, TLS and AUTH together.
    pub connect_timeout: Duration,
}

impl Default for ConnectOptions {
    fn default() -> Self {
        ConnectOptions {
            connect_timeout: CONNECT_TIMEOUT,
        }
    }
}

/// What a TLS connection negotiated, for validation's report.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TlsInfo {
    /// `TLSv1_3`, `TLSv1_2`.
    pub protocol: String,
    pub cipher_suite: String,
    /// When the server's certificate expires, if it could be read.
    pub not_after: Option<DateTime<Utc>>,
    /// The certificate went unchecked (`insecure_skip_verify`).
    pub unverified: bool,
}

/// A connected, authenticated socket: plain TCP or TLS.
///
/// Every write must be followed by `flush` before waiting for a reply: when the socket is full,
/// TLS accepts the last bytes of a write as records it has not sent yet, and only a flush (or a
/// later write) sends them (tokio-rustls documents it: a write "does not guarantee the final
/// data to be sent"). On plain TCP the flush costs nothing.
pub enum Stream {
    Plain(TcpStream),
    Tls(Box<TlsStream<TcpStream>>),
}

/// Connects to `peer` and authenticates as its URL says (`AUTH [user] password`, or a `PING`
/// without one), within `options.connect_timeout`.
pub async fn open(peer: &Peer, options: &ConnectOptions) -> Result<Stream, ConnectError> {
    let addr = peer.addr();
    let secs = options.connect_timeout.as_secs();
    match tokio::time::timeout(options.connect_timeout, open_inner(peer, options)).await {
        Ok(result) => result,
        Err(_) => Err(ConnectError::Timeout { addr, secs }),
    }
}

async fn tcp(addr: &str) -> Result<TcpStream, ConnectError> {
    let tcp = TcpStream::connect(addr).await.map_err(|e| match e.kind() {
        io::ErrorKind::ConnectionRefused => ConnectError::Refused {
            addr: addr.to_string(),
        },
        _ => ConnectError::Unreachable {
            addr: addr.to_string(),
            reason: e.to_string(),
        },
    })?;
    let _ = tcp.set_nodelay(true);
    Ok(tcp)
}

async fn open_inner(peer: &Peer, options: &ConnectOptions) -> Result<Stream, ConnectError> {
    let addr = peer.addr();
    let tcp = tcp(&addr).await?;
    let mut stream = match &peer.tls {
        None => Stream::Plain(tcp),
        Some(client) => {
            // Half the time: a plain Redis port may sit silently on our ClientHello (it waits for
            // a newline), and the other half must be left for the probe that says so.
            let limit = options.connect_timeout / 2;
            let connector = tokio_rustls::TlsConnector::from(client.config.clone());
            match tokio::time::timeout(limit, connector.connect(client.server_name.clone(), tcp))
                .await
            {
                Ok(Ok(tls)) => Stream::Tls(Box::new(tls)),
                Ok(Err(e)) => {
                    let error = match tls::rustls_error(&e) {
                        Some(rustls_error) => tls::classify(rustls_error, &addr, client),
                        None => ConnectError::Tls {
                            addr: addr.clone(),
                            detail: e.to_string(),
                        },
                    };
                    return Err(confirm_not_tls(error, &addr).await);
                }
                Err(_) => {
                    let silent = ConnectError::Tls {
                        addr: addr.clone(),
                        detail: format!("no TLS answer within {} ms", limit.as_millis()),
                    };
                    return Err(confirm_not_tls(silent, &addr).await);
                }
            }
        }
    };
    hello(&mut stream, peer, &addr).await?;
    Ok(stream)
}

/// After a TLS handshake that got garbage or silence: if a plain `PING` on a new connection gets
/// a Redis answer, the port speaks plain RESP and the error says so; otherwise `error` stands.
async fn confirm_not_tls(error: ConnectError, addr: &str) -> ConnectError {
    if !matches!(
        error,
        ConnectError::Tls { .. } | ConnectError::TlsNotSpoken { .. }
    ) {
        return error;
    }
    let probe = async {
        let mut tcp = tcp(addr).await.ok()?;
        tcp.write_all(b"PING\r\n").await.ok()?;
        let mut reply = [0u8; 1];
        tcp.read_exact(&mut reply).await.ok()?;
        Some(reply[0])
    };
    match tokio::time::timeout(Duration::from_secs(1), probe).await {
        Ok(Some(b'+' | b'-')) => ConnectError::TlsNotSpoken {
            addr: addr.to_string(),
            detail: "it answers plain Redis commands".into(),
        },
        _ => error,
    }
}

/// After a plain connection was closed without a word: if a TLS handshake on a new connection
/// gets a TLS answer, the port wants `rediss://`.
async fn confirm_tls_only(error: ConnectError, peer: &Peer, addr: &str) -> ConnectError {
    let probe = async {
        let tcp = tcp(addr).await.ok()?;
        let name =
            rustls::pki_types::ServerName::try_from(peer.url.host.clone()).unwrap_or_else(|_| {
                rustls::pki_types::ServerName::try_from("localhost").expect("valid")
            });
        let connector = tokio_rustls::TlsConnector::from(tls::probe_config());
        match connector.connect(name, tcp).await {
            Ok(_) => Some(true),
            // The server spoke TLS, even if only to refuse us (an alert, a bad certificate).
            Err(e) => Some(
                tls::rustls_error(&e)
                    .is_some_and(|r| !matches!(r, rustls::Error::InvalidMessage(_))),
            ),
        }
    };
    match tokio::time::timeout(Duration::from_secs(1), probe).await {
        Ok(Some(true)) => ConnectError::TlsRequired {
            addr: addr.to_string(),
        },
        _ => error,
    }
}

/// The first round trip: `AUTH` when the URL has a password, else `PING`; reads its one-line
/// reply. TLS alerts that arrive only now (a client certificate required or refused, TLS 1.3)
/// and a TLS port's silence are named here.
async fn hello(stream: &mut Stream, peer: &Peer, addr: &str) -> Result<(), ConnectError> {
    let url = &peer.url;
    let mut out = CommandBuf::with_capacity(64);
    let authenticating = url.password.is_some();
    match (&url.username, &url.password) {
        (Some(user), Some(password)) => {
            out.command(&[&b"AUTH"[..], user.as_bytes(), password.expose().as_bytes()])
        }
        (None, Some(password)) => out.command(&[&b"AUTH"[..], password.expose().as_bytes()]),
        (_, None) => out.command(&[&b"PING"[..]]),
    };
    let io_error = |e: io::Error| match (tls::rustls_error(&e), &peer.tls) {
        (Some(rustls_error), Some(client)) => tls::classify(rustls_error, addr, client),
        _ => ConnectError::Unreachable {
            addr: addr.to_string(),
            reason: e.to_string(),
        },
    };
    stream.write_all(out.as_slice()).await.map_err(io_error)?;
    stream.flush().await.map_err(io_error)?;
    // The reply is one line; reading byte by byte keeps whatever follows (nothing should) unread.
    let mut line = Vec::with_capacity(64);
    loop {
        let byte = match stream.read_u8().await {
            Ok(byte) => byte,
            Err(e) => {
                let closed = matches!(
                    e.kind(),
                    io::ErrorKind::UnexpectedEof | io::ErrorKind::ConnectionReset
                ) && tls::rustls_error(&e).is_none();
                if !closed {
                    return Err(io_error(e));
                }
                let error = ConnectError::Unreachable {
                    addr: addr.to_string(),
                    reason: "the server closed the connection without answering".into(),
                };
                return Err(match (&peer.tls, line.is_empty()) {
                    (None, true) => confirm_tls_only(error, peer, addr).await,
                    _ => error,
                });
            }
        };
        if byte == b'\n' {
            break;
        }
        line.push(byte);
        // A TLS record (handshake 0x16 or alert 0x15, version 3.x) where RESP was expected.
        if peer.tls.is_none() && line.len() == 2 && matches!(line[0], 0x15 | 0x16) && line[1] == 3 {
            return Err(ConnectError::TlsRequired {
                addr: addr.to_string(),
            });
        }
        if line.len() > 4096 {
            return Err(not_redis(addr, &line));
        }
    }
    let text = String::from_utf8_lossy(&line).trim_end().to_string();
    match line.first() {
        Some(b'+') => Ok(()),
        Some(b'-') if authenticating || text.starts_with("-NOAUTH") => Err(ConnectError::Auth {
            addr: addr.to_string(),
            reason: text.trim_start_matches('-').to_string(),
        }),
        // A PING refused for another reason (a user without +ping): the connection itself works;
        // the caller's own commands will meet the refusal and name it.
        Some(b'-') => Ok(()),
        _ => Err(not_redis(addr, &line)),
    }
}

/// The error for a reply that is not RESP, quoting its start (printable bytes only).
pub fn not_redis(addr: &str, bytes: &[u8]) -> ConnectError {
    let shown: String = bytes
        .iter()
        .take(40)
        .map(|&b| {
            if b.is_ascii_graphic() || b == b' ' {
                b as char
            } else {
                '.'
            }
        })
        .collect();
    ConnectError::NotRedis {
        addr: addr.to_string(),
        detail: format!("it answered `{shown}`"),
    }
}

impl Stream {
    /// What the TLS handshake negotiated; `None` for plain TCP.
    pub fn tls_info(&self, peer: &Peer) -> Option<TlsInfo> {
        let Stream::Tls(tls) = self else {
            return None;
        };
        let (_, session) = tls.get_ref();
        Some(TlsInfo {
            protocol: session
                .protocol_version()
                .map(|v| format!("{v:?}"))
                .unwrap_or_default(),
            cipher_suite: session
                .negotiated_cipher_suite()
                .map(|c| format!("{:?}", c.suite()))
                .unwrap_or_default(),
            not_after: session
                .peer_certificates()
                .and_then(|chain| chain.first())
                .and_then(|leaf| x509::not_after(leaf)),
            unverified: peer.skips_verification(),
        })
    }

    /// This end's address (what the server lists as the client's `addr`).
    pub fn local_addr(&self) -> Option<std::net::SocketAddr> {
        match self {
            Stream::Plain(tcp) => tcp.local_addr().ok(),
            Stream::Tls(tls) => tls.get_ref().0.local_addr().ok(),
        }
    }

    /// Owned read and write halves, for a reader task beside a writer.
    pub fn into_split(self) -> (ReadHalf, WriteHalf) {
        match self {
            Stream::Plain(tcp) => {
                let (read, write) = tcp.into_split();
                (ReadHalf::Plain(read), WriteHalf::Plain(write))
            }
            Stream::Tls(tls) => {
                let (read, write) = tokio::io::split(*tls);
                (ReadHalf::Tls(read), WriteHalf::Tls(write))
            }
        }
    }
}

/// The read half of a [`Stream`].
pub enum ReadHalf {
    Plain(OwnedReadHalf),
    Tls(tokio::io::ReadHalf<TlsStream<TcpStream>>),
}

/// The write half of a [`Stream`].
pub enum WriteHalf {
    Plain(OwnedWriteHalf),
    Tls(tokio::io::WriteHalf<TlsStream<TcpStream>>),
}

macro_rules! delegate_read {
    ($ty:ty) => {
        impl AsyncRead for $ty {
            fn poll_read(
                self: Pin<&mut Self>,
                cx: &mut Context<'_>,
                buf: &mut ReadBuf<'_>,
            ) -> Poll<io::Result<()>> {
                match self.get_mut() {
                    Self::Plain(s) => Pin::new(s).poll_read(cx, buf),
                    Self::Tls(s) => Pin::new(s).poll_read(cx, buf),
                }
            }
        }
    };
}

macro_rules! delegate_write {
    ($ty:ty) => {
        impl AsyncWrite for $ty {
            fn poll_write(
                self: Pin<&mut Self>,
                cx: &mut Context<'_>,
                buf: &[u8],
            ) -> Poll<io::Result<usize>> {
                match self.get_mut() {
                    Self::Plain(s) => Pin::new(s).poll_write(cx, buf),
                    Self::Tls(s) => Pin::new(s).poll_write(cx, buf),
                }
            }

            fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
                match self.get_mut() {
                    Self::Plain(s) => Pin::new(s).poll_flush(cx),
                    Self::Tls(s) => Pin::new(s).poll_flush(cx),
                }
            }

            fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
                match self.get_mut() {
                    Self::Plain(s) => Pin::new(s).poll_shutdown(cx),
                    Self::Tls(s) => Pin::new(s).poll_shutdown(cx),
                }
            }

            fn poll_write_vectored(
                self: Pin<&mut Self>,
                cx: &mut Context<'_>,
                bufs: &[io::IoSlice<'_>],
            ) -> Poll<io::Result<usize>> {
                match self.get_mut() {
                    Self::Plain(s) => Pin::new(s).poll_write_vectored(cx, bufs),
                    Self::Tls(s) => Pin::new(s).poll_write_vectored(cx, bufs),
                }
            }

            fn is_write_vectored(&self) -> bool {
                match self {
                    Self::Plain(s) => s.is_write_vectored(),
                    Self::Tls(s) => s.is_write_vectored(),
                }
            }
        }
    };
}

delegate_read!(Stream);
delegate_read!(ReadHalf);
delegate_write!(Stream);
delegate_write!(WriteHalf);

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_non_resp_answer_is_quoted_printably() {
        let e = not_redis("h:1", b"HTTP/1.1 400 Bad Request\r\n");
        assert_eq!(
            e.to_string(),
            "something other than Redis answers at h:1 (it answered `HTTP/1.1 400 Bad Request..`); check the port"
        );
    }
}
