//! Opening a connection to a Redis server: TCP, optionally TLS, then AUTH. Used by both the admin
//! client ([`crate::client`]) and the replica handshake ([`crate::replication`]), so a transport
//! feature (TLS roots, client certificates, ACL users) is added here once and both get it.
//!
//! A [`Stream`] is either plain TCP or TLS over TCP; it reads and writes like a socket and splits
//! into owned halves for the pipelined writer, which reads replies while it sends.
//!
//! TLS is opt-in per caller ([`TlsPolicy`]): validation reaches `rediss://` servers (it reports
//! their certificate problems), while the transfer (replication link, target writer) has not been
//! tested over TLS yet and refuses it with a message that says so. Turning TLS on for the transfer
//! means changing [`TlsPolicy::default`] and the `transfer.tls` check, nothing else.
//!
//! Errors never contain the password: AUTH replies from the server do not echo it, and nothing
//! here formats the URL with its secret.

use std::io;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use thiserror::Error;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt, ReadBuf};
use tokio::net::tcp::{OwnedReadHalf, OwnedWriteHalf};
use tokio::net::TcpStream;
use tokio_rustls::client::TlsStream;

use crate::redis_url::RedisUrl;
use crate::resp::CommandBuf;

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
    #[error("TLS handshake with {addr} failed ({detail}); check that the server speaks TLS and that its certificate is trusted")]
    Tls { addr: String, detail: String },
    #[error("cannot read the TLS CA file {path} ({detail}); fix the path or its permissions")]
    TlsCaFile { path: String, detail: String },
    #[error("{addr}: TLS (rediss://) is not supported by {what} yet; use a redis:// address")]
    TlsUnsupported { addr: String, what: &'static str },
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

/// Whether a caller speaks TLS.
#[derive(Debug, Clone)]
pub enum TlsPolicy {
    /// `rediss://` is refused, naming the part of Ferry that does not speak it yet.
    Refuse { what: &'static str },
    /// `rediss://` connects, checking the server's certificate against these roots.
    Trust(TlsRoots),
}

impl Default for TlsPolicy {
    /// The transfer's policy (see the module docs).
    fn default() -> Self {
        TlsPolicy::Refuse {
            what: "the transfer",
        }
    }
}

/// How to open a connection.
#[derive(Debug, Clone)]
pub struct ConnectOptions {
    /// For TCP, TLS and AUTH together.
    pub connect_timeout: Duration,
    pub tls: TlsPolicy,
}

impl Default for ConnectOptions {
    fn default() -> Self {
        ConnectOptions {
            connect_timeout: CONNECT_TIMEOUT,
            tls: TlsPolicy::default(),
        }
    }
}

/// A connected, authenticated socket: plain TCP or TLS.
pub enum Stream {
    Plain(TcpStream),
    Tls(Box<TlsStream<TcpStream>>),
}

/// Connects to `url` and authenticates as it says (`AUTH [user] password`), within
/// `options.connect_timeout`.
pub async fn open(url: &RedisUrl, options: &ConnectOptions) -> Result<Stream, ConnectError> {
    let addr = url.addr();
    let secs = options.connect_timeout.as_secs();
    match tokio::time::timeout(options.connect_timeout, open_inner(url, options)).await {
        Ok(result) => result,
        Err(_) => Err(ConnectError::Timeout { addr, secs }),
    }
}

async fn open_inner(url: &RedisUrl, options: &ConnectOptions) -> Result<Stream, ConnectError> {
    let addr = url.addr();
    let roots = match (&options.tls, url.tls) {
        (_, false) => None,
        (TlsPolicy::Refuse { what }, true) => {
            return Err(ConnectError::TlsUnsupported { addr, what })
        }
        (TlsPolicy::Trust(TlsRoots::Unreadable { path, detail }), true) => {
            return Err(ConnectError::TlsCaFile {
                path: path.clone(),
                detail: detail.clone(),
            })
        }
        (TlsPolicy::Trust(roots), true) => Some(roots),
    };
    let tcp = TcpStream::connect(&addr)
        .await
        .map_err(|e| match e.kind() {
            io::ErrorKind::ConnectionRefused => ConnectError::Refused { addr: addr.clone() },
            _ => ConnectError::Unreachable {
                addr: addr.clone(),
                reason: e.to_string(),
            },
        })?;
    let _ = tcp.set_nodelay(true);
    let mut stream = match roots {
        None => Stream::Plain(tcp),
        Some(roots) => Stream::Tls(Box::new(tls_handshake(tcp, &url.host, roots, &addr).await?)),
    };
    authenticate(&mut stream, url, &addr).await?;
    Ok(stream)
}

async fn tls_handshake(
    tcp: TcpStream,
    host: &str,
    roots: &TlsRoots,
    addr: &str,
) -> Result<TlsStream<TcpStream>, ConnectError> {
    let tls_error = |detail: String| ConnectError::Tls {
        addr: addr.to_string(),
        detail,
    };
    let mut store = rustls::RootCertStore::empty();
    match roots {
        TlsRoots::System => {
            for cert in rustls_native_certs::load_native_certs().certs {
                let _ = store.add(cert);
            }
        }
        TlsRoots::Pem(pem) => {
            use rustls::pki_types::pem::PemObject;
            for cert in rustls::pki_types::CertificateDer::pem_slice_iter(pem) {
                let cert = cert.map_err(|e| tls_error(format!("the CA file is not PEM: {e}")))?;
                store
                    .add(cert)
                    .map_err(|e| tls_error(format!("the CA certificate is not usable: {e}")))?;
            }
        }
        TlsRoots::Unreadable { .. } => unreachable!("refused before connecting"),
    }
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let config = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| tls_error(e.to_string()))?
        .with_root_certificates(store)
        .with_no_client_auth();
    let name = rustls::pki_types::ServerName::try_from(host.to_string())
        .map_err(|e| tls_error(format!("`{host}` is not a valid TLS server name: {e}")))?;
    tokio_rustls::TlsConnector::from(Arc::new(config))
        .connect(name, tcp)
        .await
        .map_err(|e| tls_error(e.to_string()))
}

/// Sends `AUTH` when the URL has a password and reads its one-line reply.
async fn authenticate(stream: &mut Stream, url: &RedisUrl, addr: &str) -> Result<(), ConnectError> {
    let Some(password) = &url.password else {
        return Ok(());
    };
    let mut out = CommandBuf::with_capacity(64);
    let pass = password.expose().as_bytes();
    match &url.username {
        Some(user) => out.command(&[&b"AUTH"[..], user.as_bytes(), pass]),
        None => out.command(&[&b"AUTH"[..], pass]),
    };
    let io_error = |e: io::Error| ConnectError::Unreachable {
        addr: addr.to_string(),
        reason: e.to_string(),
    };
    stream.write_all(out.as_slice()).await.map_err(io_error)?;
    // The reply is one line; reading byte by byte keeps whatever follows (nothing should) unread.
    let mut line = Vec::with_capacity(64);
    loop {
        let byte = stream.read_u8().await.map_err(|e| match e.kind() {
            io::ErrorKind::UnexpectedEof => ConnectError::Unreachable {
                addr: addr.to_string(),
                reason: "the server closed the connection during AUTH".into(),
            },
            _ => io_error(e),
        })?;
        if byte == b'\n' {
            break;
        }
        line.push(byte);
        if line.len() > 4096 {
            return Err(not_redis(addr, &line));
        }
    }
    let text = String::from_utf8_lossy(&line).trim_end().to_string();
    match line.first() {
        Some(b'+') => Ok(()),
        Some(b'-') => Err(ConnectError::Auth {
            addr: addr.to_string(),
            reason: text.trim_start_matches('-').to_string(),
        }),
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
