//! The server side of the replica handshake, up to the target's `PSYNC`.
//!
//! A Redis replica says, in order (7.x pipelines the middle steps): `PING`, `AUTH [user] pass`
//! (its `masteruser`/`masterauth`), `REPLCONF listening-port <p>`, maybe `REPLCONF ip-address`,
//! `REPLCONF capa eof capa psync2`, then `PSYNC <replid> <offset>`. Commands arrive as RESP
//! arrays (old servers wrote them inline; both are read). Nothing but `PING` is answered before a
//! successful `AUTH`, and the password decides which job gets the connection: the hub looks it up.

use std::net::SocketAddr;
use std::time::Duration;

use bytes::{Bytes, BytesMut};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::sync::mpsc;

use super::session::{PsyncRequest, TargetSession};
use super::RelayError;
use crate::resp::{Decoder, Frame, Limits};

/// A target that has not asked `PSYNC` within this long is dropped (it will reconnect).
const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);

/// Handshake commands are short; anything longer is not a replica talking.
const MAX_HANDSHAKE_BYTES: usize = 64 * 1024;

/// Serves one connection until its `PSYNC` has been handed to the job its password routes to.
pub(crate) async fn serve(
    stream: TcpStream,
    peer: SocketAddr,
    route: impl Fn(&str) -> Option<mpsc::Sender<TargetSession>>,
) -> Result<(), RelayError> {
    let _ = stream.set_nodelay(true);
    let mut conn = Handshake {
        stream,
        buf: BytesMut::with_capacity(4096),
        decoder: Decoder::new(Limits {
            max_bulk_len: MAX_HANDSHAKE_BYTES,
            ..Limits::default()
        }),
    };
    let mut job: Option<mpsc::Sender<TargetSession>> = None;
    let mut listening_port = None;
    let deadline = tokio::time::Instant::now() + HANDSHAKE_TIMEOUT;
    loop {
        let args = tokio::time::timeout_at(deadline, conn.command())
            .await
            .map_err(|_| RelayError::Timeout {
                secs: HANDSHAKE_TIMEOUT.as_secs(),
                during: "the replica handshake",
            })??;
        let Some(name) = args.first() else { continue };
        let name = String::from_utf8_lossy(name).to_ascii_uppercase();
        match name.as_str() {
            "PING" => conn.reply("+PONG").await?,
            "AUTH" if args.len() == 2 || args.len() == 3 => {
                let password = String::from_utf8_lossy(&args[args.len() - 1]);
                job = route(&password);
                if job.is_some() {
                    conn.reply("+OK").await?;
                } else {
                    // Redis' own wording: a replica logs it as an authentication failure.
                    conn.reply("-WRONGPASS invalid username-password pair or user is disabled.")
                        .await?;
                }
            }
            _ if job.is_none() => conn.reply("-NOAUTH Authentication required.").await?,
            "REPLCONF" => {
                let mut pairs = args[1..].chunks(2);
                while let Some([option, value]) = pairs.next() {
                    if option.eq_ignore_ascii_case(b"listening-port") {
                        listening_port = std::str::from_utf8(value)
                            .ok()
                            .and_then(|p| p.parse::<u16>().ok());
                    }
                }
                conn.reply("+OK").await?;
            }
            "PSYNC" if args.len() == 3 => {
                let replid = String::from_utf8_lossy(&args[1]).into_owned();
                let offset = std::str::from_utf8(&args[2])
                    .ok()
                    .and_then(|o| o.parse::<i64>().ok())
                    .ok_or_else(|| RelayError::Protocol("PSYNC with a bad offset".into()))?;
                let session = TargetSession::new(
                    conn.stream,
                    conn.buf,
                    peer,
                    PsyncRequest { replid, offset },
                    listening_port,
                );
                let Some(job) = job else {
                    unreachable!("checked above")
                };
                // The job may have ended since the AUTH: the target just tries again later.
                return job.send(session).await.map_err(|_| RelayError::Closed {
                    during: "handing the target to its relay job, which has ended",
                });
            }
            "SYNC" => {
                conn.reply("-ERR Ferry's relay needs PSYNC (Redis 2.8 or newer)")
                    .await?;
                return Err(RelayError::Protocol("legacy SYNC".into()));
            }
            other => {
                conn.reply(&format!(
                    "-ERR unknown command '{}' on Ferry's replication relay",
                    other.chars().take(32).collect::<String>()
                ))
                .await?
            }
        }
    }
}

struct Handshake {
    stream: TcpStream,
    buf: BytesMut,
    decoder: Decoder,
}

impl Handshake {
    async fn reply(&mut self, line: &str) -> Result<(), RelayError> {
        let mut out = Vec::with_capacity(line.len() + 2);
        out.extend_from_slice(line.as_bytes());
        out.extend_from_slice(b"\r\n");
        self.stream.write_all(&out).await?;
        Ok(())
    }

    /// The next command, as arguments: a RESP array, or an inline line split on spaces.
    async fn command(&mut self) -> Result<Vec<Bytes>, RelayError> {
        loop {
            if let Some(args) = self.parse()? {
                return Ok(args);
            }
            if self.buf.len() > MAX_HANDSHAKE_BYTES {
                return Err(RelayError::Protocol(
                    "a handshake command longer than 64 KiB".into(),
                ));
            }
            if self.stream.read_buf(&mut self.buf).await? == 0 {
                return Err(RelayError::Closed {
                    during: "the replica handshake",
                });
            }
        }
    }

    fn parse(&mut self) -> Result<Option<Vec<Bytes>>, RelayError> {
        match self.buf.first() {
            None => Ok(None),
            Some(b'*') => {
                let Some((frame, _)) = self
                    .decoder
                    .decode(&mut self.buf)
                    .map_err(|e| RelayError::Protocol(e.to_string()))?
                else {
                    return Ok(None);
                };
                match frame {
                    Frame::Array(items) => Ok(Some(
                        items
                            .into_iter()
                            .filter_map(|f| f.as_bytes().cloned())
                            .collect(),
                    )),
                    other => Err(RelayError::Protocol(format!(
                        "expected a command, got {}",
                        other.describe()
                    ))),
                }
            }
            Some(_) => {
                let Some(nl) = self.buf.iter().position(|&b| b == b'\n') else {
                    return Ok(None);
                };
                let line = self.buf.split_to(nl + 1);
                let args = line[..nl]
                    .split(|&b| b == b' ' || b == b'\r')
                    .filter(|w| !w.is_empty())
                    .map(Bytes::copy_from_slice)
                    .collect();
                Ok(Some(args))
            }
        }
    }
}
