//! A plain request/response Redis connection on our own RESP code, for admin calls (INFO, DBSIZE,
//! SCAN, DUMP, CLIENT PAUSE...) and as the starting point of the pipelined writer.
//!
//! It authenticates from the [`RedisUrl`] and never puts the password into an error.

use std::collections::HashMap;
use std::time::Duration;

use bytes::BytesMut;
use thiserror::Error;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

use crate::redis_url::RedisUrl;
use crate::resp::{CommandBuf, Decoder, Frame};

/// How long connecting may take.
pub const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);
/// How long one admin call may take (DUMP of a big key, SCAN of a large db...).
pub const CALL_TIMEOUT: Duration = Duration::from_secs(60);

#[derive(Debug, Error)]
pub enum ConnError {
    #[error("cannot connect to {addr}: {reason}")]
    Connect { addr: String, reason: String },
    #[error("{addr} refused authentication: {reason}")]
    Auth { addr: String, reason: String },
    #[error("no reply from {addr} within {secs}s")]
    Timeout { addr: String, secs: u64 },
    #[error("{addr} closed the connection")]
    Closed { addr: String },
    #[error("protocol error from {addr}: {reason}")]
    Protocol { addr: String, reason: String },
    #[error("i/o error talking to {addr}: {source}")]
    Io {
        addr: String,
        source: std::io::Error,
    },
}

/// One connection, one request at a time.
pub struct Conn {
    pub(crate) stream: TcpStream,
    pub(crate) buf: BytesMut,
    out: CommandBuf,
    decoder: Decoder,
    addr: String,
}

impl Conn {
    /// Connects and authenticates (AUTH user pass, or AUTH pass) as the URL says.
    pub async fn connect(url: &RedisUrl) -> Result<Conn, ConnError> {
        let addr = url.addr();
        if url.tls {
            return Err(ConnError::Connect {
                addr,
                reason: "TLS (rediss://) is not supported by the engine yet; use redis://".into(),
            });
        }
        let stream = tokio::time::timeout(CONNECT_TIMEOUT, TcpStream::connect(&addr))
            .await
            .map_err(|_| ConnError::Connect {
                addr: addr.clone(),
                reason: format!("no answer within {}s", CONNECT_TIMEOUT.as_secs()),
            })?
            .map_err(|e| ConnError::Connect {
                addr: addr.clone(),
                reason: e.to_string(),
            })?;
        let _ = stream.set_nodelay(true);
        let mut conn = Conn {
            stream,
            buf: BytesMut::with_capacity(64 * 1024),
            out: CommandBuf::with_capacity(1024),
            decoder: Decoder::default(),
            addr,
        };
        if let Some(password) = &url.password {
            let pass = password.expose().as_bytes();
            let reply = match &url.username {
                Some(user) => conn.call(&[b"AUTH", user.as_bytes(), pass]).await?,
                None => conn.call(&[&b"AUTH"[..], pass]).await?,
            };
            if let Frame::Error(e) = reply {
                return Err(ConnError::Auth {
                    addr: conn.addr,
                    reason: String::from_utf8_lossy(&e).into_owned(),
                });
            }
        }
        Ok(conn)
    }

    pub fn addr(&self) -> &str {
        &self.addr
    }

    /// Sends one command and returns its reply; an error reply is `Ok(Frame::Error)`.
    pub async fn call<A: AsRef<[u8]>>(&mut self, args: &[A]) -> Result<Frame, ConnError> {
        self.out.clear();
        self.out.command(args);
        let io = |source| ConnError::Io {
            addr: self.addr.clone(),
            source,
        };
        self.stream
            .write_all(self.out.as_slice())
            .await
            .map_err(io)?;
        tokio::time::timeout(CALL_TIMEOUT, self.read_reply())
            .await
            .map_err(|_| ConnError::Timeout {
                addr: self.addr.clone(),
                secs: CALL_TIMEOUT.as_secs(),
            })?
    }

    /// Sends several commands in one write and returns their replies in order (error replies
    /// included as `Frame::Error`): one round trip instead of `commands.len()`.
    pub async fn call_many(&mut self, commands: &[Vec<&[u8]>]) -> Result<Vec<Frame>, ConnError> {
        self.out.clear();
        for command in commands {
            self.out.command(command);
        }
        self.stream
            .write_all(self.out.as_slice())
            .await
            .map_err(|source| ConnError::Io {
                addr: self.addr.clone(),
                source,
            })?;
        let mut replies = Vec::with_capacity(commands.len());
        for _ in 0..commands.len() {
            let reply = tokio::time::timeout(CALL_TIMEOUT, self.read_reply())
                .await
                .map_err(|_| ConnError::Timeout {
                    addr: self.addr.clone(),
                    secs: CALL_TIMEOUT.as_secs(),
                })??;
            replies.push(reply);
        }
        Ok(replies)
    }

    /// Like [`Conn::call`], but an error reply becomes `Err` with the command named.
    pub async fn call_ok<A: AsRef<[u8]>>(&mut self, args: &[A]) -> Result<Frame, ConnError> {
        match self.call(args).await? {
            Frame::Error(e) => Err(ConnError::Protocol {
                addr: self.addr.clone(),
                reason: format!(
                    "{} answered {}",
                    String::from_utf8_lossy(args.first().map(|a| a.as_ref()).unwrap_or(b"?")),
                    String::from_utf8_lossy(&e)
                ),
            }),
            other => Ok(other),
        }
    }

    async fn read_reply(&mut self) -> Result<Frame, ConnError> {
        loop {
            let decoded = self
                .decoder
                .decode(&mut self.buf)
                .map_err(|e| ConnError::Protocol {
                    addr: self.addr.clone(),
                    reason: e.to_string(),
                })?;
            if let Some((frame, _)) = decoded {
                return Ok(frame);
            }
            let n = self
                .stream
                .read_buf(&mut self.buf)
                .await
                .map_err(|source| ConnError::Io {
                    addr: self.addr.clone(),
                    source,
                })?;
            if n == 0 {
                return Err(ConnError::Closed {
                    addr: self.addr.clone(),
                });
            }
        }
    }

    /// `INFO <section>` as a map of `field -> value`.
    pub async fn info(&mut self, section: &str) -> Result<HashMap<String, String>, ConnError> {
        let reply = self.call_ok(&["INFO", section]).await?;
        let text = reply
            .as_bytes()
            .map(|b| String::from_utf8_lossy(b).into_owned())
            .unwrap_or_default();
        Ok(text
            .lines()
            .filter_map(|l| l.split_once(':'))
            .map(|(k, v)| (k.to_string(), v.trim().to_string()))
            .collect())
    }

    /// `master_repl_offset` from `INFO replication`.
    pub async fn master_repl_offset(&mut self) -> Result<i64, ConnError> {
        let info = self.info("replication").await?;
        info.get("master_repl_offset")
            .and_then(|v| v.parse().ok())
            .ok_or_else(|| ConnError::Protocol {
                addr: self.addr.clone(),
                reason: "INFO replication has no master_repl_offset".into(),
            })
    }

    /// `SELECT db`.
    pub async fn select(&mut self, db: u32) -> Result<(), ConnError> {
        self.call_ok(&[b"SELECT".as_slice(), db.to_string().as_bytes()])
            .await
            .map(|_| ())
    }
}
