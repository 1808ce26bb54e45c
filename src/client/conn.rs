//! [`Conn`]: one connection, one request at a time (or a pipeline of them), every reply read under
//! a timeout. Also the starting point of the engine's pipelined writer ([`Conn::into_parts`]).
//!
//! It connects to a [`Peer`] (URL, TLS settings) through [`crate::transport`], authenticates as the
//! URL says, and never puts the password into an error.

use std::time::Duration;

use bytes::BytesMut;
use thiserror::Error;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

use crate::client::Info;
use crate::resp::{CommandBuf, Decoder, Frame};
use crate::transport::{
    self, ConnectError, ConnectOptions, Peer, ReadHalf, Stream, TlsInfo, WriteHalf,
};

/// How long one admin call may take by default (DUMP of a big key, SCAN of a large db...).
pub const CALL_TIMEOUT: Duration = Duration::from_secs(60);

/// Why a call did not get its answer.
#[derive(Debug, Error)]
pub enum ClientError {
    #[error(transparent)]
    Connect(#[from] ConnectError),
    #[error("`{command}` got no answer from {addr} within {millis} ms")]
    Timeout {
        addr: String,
        command: String,
        millis: u64,
    },
    #[error("{addr} closed the connection")]
    Closed { addr: String },
    /// The bytes that came back are not RESP: something other than Redis listens there.
    #[error("something other than Redis answers at {addr} ({detail}); check the port")]
    NotRedis { addr: String, detail: String },
    #[error("i/o error talking to {addr}: {source}")]
    Io {
        addr: String,
        source: std::io::Error,
    },
    /// An error reply to a command that had to succeed ([`Conn::call_ok`]).
    #[error("{addr} refused `{command}`: {reply}")]
    Refused {
        addr: String,
        command: String,
        reply: String,
    },
}

impl ClientError {
    /// Whether the server could not be reached or would not let us in (as opposed to a call that
    /// failed once connected).
    pub fn is_connect(&self) -> bool {
        matches!(self, ClientError::Connect(_))
    }

    pub fn is_auth(&self) -> bool {
        matches!(self, ClientError::Connect(ConnectError::Auth { .. }))
    }
}

/// One connection, one request at a time.
pub struct Conn {
    stream: Stream,
    buf: BytesMut,
    out: CommandBuf,
    decoder: Decoder,
    addr: String,
    call_timeout: Duration,
    tls: Option<TlsInfo>,
}

impl Conn {
    /// Connects and authenticates as the peer's URL says, with the default timeouts.
    pub async fn connect(peer: &Peer) -> Result<Conn, ClientError> {
        Self::connect_with(peer, &ConnectOptions::default(), CALL_TIMEOUT).await
    }

    /// Connects with explicit options; `call_timeout` bounds every later reply.
    pub async fn connect_with(
        peer: &Peer,
        options: &ConnectOptions,
        call_timeout: Duration,
    ) -> Result<Conn, ClientError> {
        let stream = transport::open(peer, options).await?;
        let tls = stream.tls_info(peer);
        Ok(Conn {
            stream,
            buf: BytesMut::with_capacity(64 * 1024),
            out: CommandBuf::with_capacity(1024),
            decoder: Decoder::default(),
            addr: peer.addr(),
            call_timeout,
            tls,
        })
    }

    /// What TLS negotiated, for a `rediss://` connection.
    pub fn tls_info(&self) -> Option<&TlsInfo> {
        self.tls.as_ref()
    }

    pub fn addr(&self) -> &str {
        &self.addr
    }

    /// Changes the timeout of later calls.
    pub fn set_call_timeout(&mut self, timeout: Duration) {
        self.call_timeout = timeout;
    }

    /// Sends one command and returns its reply; an error reply is `Ok(Frame::Error)`.
    pub async fn call<A: AsRef<[u8]>>(&mut self, args: &[A]) -> Result<Frame, ClientError> {
        self.out.clear();
        self.out.command(args);
        self.send().await?;
        let name = command_name(args);
        self.reply_for(&name).await
    }

    /// Sends several commands in one write and returns their replies in order (error replies
    /// included as `Frame::Error`): one round trip instead of `commands.len()`.
    pub async fn call_many<A: AsRef<[u8]>>(
        &mut self,
        commands: &[Vec<A>],
    ) -> Result<Vec<Frame>, ClientError> {
        self.out.clear();
        for command in commands {
            self.out.command(command);
        }
        self.send().await?;
        let mut replies = Vec::with_capacity(commands.len());
        for command in commands {
            let name = command_name(command);
            replies.push(self.reply_for(&name).await?);
        }
        Ok(replies)
    }

    /// Like [`Conn::call`], but an error reply becomes [`ClientError::Refused`].
    pub async fn call_ok<A: AsRef<[u8]>>(&mut self, args: &[A]) -> Result<Frame, ClientError> {
        match self.call(args).await? {
            Frame::Error(e) => Err(ClientError::Refused {
                addr: self.addr.clone(),
                command: command_name(args),
                reply: String::from_utf8_lossy(&e).into_owned(),
            }),
            other => Ok(other),
        }
    }

    async fn send(&mut self) -> Result<(), ClientError> {
        let Conn {
            stream, out, addr, ..
        } = self;
        // The flush sends what a TLS stream may still hold back (a no-op on plain TCP).
        let written = match stream.write_all(out.as_slice()).await {
            Ok(()) => stream.flush().await,
            Err(e) => Err(e),
        };
        written.map_err(|source| ClientError::Io {
            addr: addr.clone(),
            source,
        })
    }

    async fn reply_for(&mut self, command: &str) -> Result<Frame, ClientError> {
        let limit = self.call_timeout;
        tokio::time::timeout(limit, self.read_reply())
            .await
            .map_err(|_| ClientError::Timeout {
                addr: self.addr.clone(),
                command: command.to_string(),
                millis: limit.as_millis() as u64,
            })?
    }

    async fn read_reply(&mut self) -> Result<Frame, ClientError> {
        loop {
            let decoded =
                self.decoder.decode(&mut self.buf).map_err(|e| {
                    match transport::not_redis(&self.addr, &self.buf) {
                        ConnectError::NotRedis { addr, detail } => ClientError::NotRedis {
                            addr,
                            detail: format!("{detail}: {e}"),
                        },
                        other => ClientError::Connect(other),
                    }
                })?;
            if let Some((frame, _)) = decoded {
                return Ok(frame);
            }
            let n = self
                .stream
                .read_buf(&mut self.buf)
                .await
                .map_err(|source| ClientError::Io {
                    addr: self.addr.clone(),
                    source,
                })?;
            if n == 0 {
                return Err(ClientError::Closed {
                    addr: self.addr.clone(),
                });
            }
        }
    }

    /// Sends one command without reading its reply: for a subscribed connection, whose replies
    /// and messages are read by [`Conn::next_frame`].
    pub async fn send_only<A: AsRef<[u8]>>(&mut self, args: &[A]) -> Result<(), ClientError> {
        self.out.clear();
        self.out.command(args);
        self.send().await
    }

    /// The next frame the server sends, however long it takes (a subscribed connection's
    /// messages). Cancel-safe: what was read stays buffered for the next call.
    pub async fn next_frame(&mut self) -> Result<Frame, ClientError> {
        self.read_reply().await
    }

    /// `INFO <section>` (`all`, `server`, `keyspace`, ...), parsed.
    pub async fn info(&mut self, section: &str) -> Result<Info, ClientError> {
        let reply = self.call_ok(&["INFO", section]).await?;
        let text = reply
            .as_bytes()
            .map(|b| String::from_utf8_lossy(b).into_owned())
            .unwrap_or_default();
        Ok(Info::parse(&text))
    }

    /// `master_repl_offset` from `INFO replication`.
    pub async fn master_repl_offset(&mut self) -> Result<i64, ClientError> {
        let info = self.info("replication").await?;
        info.get("master_repl_offset")
            .and_then(|v| v.trim().parse().ok())
            .ok_or_else(|| ClientError::NotRedis {
                addr: self.addr.clone(),
                detail: "INFO replication has no master_repl_offset".into(),
            })
    }

    /// `SELECT db`.
    pub async fn select(&mut self, db: u32) -> Result<(), ClientError> {
        self.call_ok(&[b"SELECT".as_slice(), db.to_string().as_bytes()])
            .await
            .map(|_| ())
    }

    /// The socket's halves and whatever was read past the last reply, for a reader task beside a
    /// pipelined writer.
    pub fn into_parts(self) -> (ReadHalf, WriteHalf, BytesMut) {
        let (read, write) = self.stream.into_split();
        (read, write, self.buf)
    }
}

/// The command's name (first word, upper case) for messages.
fn command_name<A: AsRef<[u8]>>(args: &[A]) -> String {
    String::from_utf8_lossy(args.first().map(|a| a.as_ref()).unwrap_or(b"?")).to_ascii_uppercase()
}
