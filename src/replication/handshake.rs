//! The replica handshake, up to the first byte of the RDB (or of the command stream).
//!
//! Each step is a request and a one-line reply, except that the master may send bare `\n`
//! keep-alives while it prepares a snapshot; [`read_line`] skips them where they can occur.

use bytes::{Buf, BytesMut};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

use super::link::LinkConfig;
use super::LinkError;
use crate::resp::CommandBuf;
use crate::transport::{self, ConnectError, ConnectOptions, Peer, Stream};

/// How the master answered PSYNC.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SyncStart {
    /// A full resynchronisation: an RDB follows, then commands from `offset`.
    Full {
        replid: String,
        offset: i64,
        transfer: Transfer,
    },
    /// `+CONTINUE`: commands follow from the offset we asked for; `replid` is the master's
    /// current id (new if it was promoted since).
    Partial { replid: String, offset: i64 },
}

/// The RDB's framing.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Transfer {
    /// `$<len>`: a disk-based snapshot of known size.
    Sized(u64),
    /// `$EOF:<mark>`: streamed straight from the forked child; the size is unknown.
    Diskless { mark: [u8; 40] },
}

/// Where to continue from, for `PSYNC <replid> <offset+1>`.
#[derive(Debug, Clone)]
pub struct Resume {
    pub replid: String,
    /// The last applied offset.
    pub offset: i64,
}

/// A connected socket and its read buffer; shared by the handshake and the link.
pub(crate) struct Wire {
    pub stream: Stream,
    pub buf: BytesMut,
    pub cfg: LinkConfig,
}

impl Wire {
    pub async fn send(&mut self, args: &[&[u8]]) -> Result<(), LinkError> {
        let mut out = CommandBuf::with_capacity(64);
        out.command(args);
        self.stream.write_all(out.as_slice()).await?;
        // A TLS stream may hold back the tail of a write until it is flushed.
        self.stream.flush().await?;
        Ok(())
    }

    /// Reads more bytes into the buffer, or fails after the configured silence.
    pub async fn fill(&mut self, during: &'static str) -> Result<(), LinkError> {
        if self.buf.capacity() - self.buf.len() < self.cfg.read_chunk / 2 {
            self.buf.reserve(self.cfg.read_chunk);
        }
        let read = tokio::time::timeout(self.cfg.read_timeout, self.stream.read_buf(&mut self.buf))
            .await
            .map_err(|_| LinkError::Timeout {
                secs: self.cfg.read_timeout.as_secs(),
                during,
            })??;
        if read == 0 {
            return Err(LinkError::Closed { during });
        }
        Ok(())
    }

    /// Reads one reply line (without CRLF), skipping the bare-newline keep-alives.
    pub async fn read_line(&mut self, during: &'static str) -> Result<String, LinkError> {
        loop {
            while self.buf.first() == Some(&b'\n') {
                self.buf.advance(1);
            }
            if let Some(nl) = self.buf.iter().position(|&b| b == b'\n') {
                let line = self.buf.split_to(nl + 1);
                let text = String::from_utf8_lossy(&line[..nl]);
                return Ok(text.trim_end_matches('\r').to_string());
            }
            if self.buf.len() > 64 * 1024 {
                return Err(LinkError::Protocol(format!(
                    "a reply line longer than 64 KiB {during}"
                )));
            }
            self.fill(during).await?;
        }
    }

    async fn call(&mut self, args: &[&[u8]], during: &'static str) -> Result<String, LinkError> {
        self.send(args).await?;
        self.read_line(during).await
    }
}

/// The Valkey release Ferry announces as a replica: the newest whose RDB (80) it reads, checked
/// against Valkey 9.1.2.
pub const VALKEY_REPLICA_VERSION: &str = "9.1.2";

/// Connects, authenticates and asks for a sync. Returns the wire positioned at the first byte of
/// the RDB payload (full) or of the command stream (partial).
pub(crate) async fn perform(
    peer: &Peer,
    cfg: LinkConfig,
    resume: Option<&Resume>,
) -> Result<(Wire, SyncStart), LinkError> {
    let addr = peer.addr();
    let options = ConnectOptions {
        connect_timeout: cfg.connect_timeout,
    };
    // The transport's first round trip (AUTH, or PING) proves a Redis server answers.
    let stream = transport::open(peer, &options).await.map_err(|e| match e {
        ConnectError::Auth { addr, reason } => LinkError::Auth { addr, reason },
        other => LinkError::Connect(other),
    })?;
    let mut wire = Wire {
        stream,
        buf: BytesMut::with_capacity(cfg.read_chunk),
        cfg,
    };

    let port = wire.cfg.listening_port.to_string();
    let reply = wire
        .call(
            &[b"REPLCONF", b"listening-port", port.as_bytes()],
            "REPLCONF",
        )
        .await?;
    if reply.starts_with("-NOAUTH") || reply.starts_with("-NOPERM") {
        return Err(LinkError::Auth {
            addr,
            reason: reply.trim_start_matches('-').to_string(),
        });
    }
    // Very old servers reject `capa`; that only means no diskless transfer, so the reply is ignored.
    wire.call(
        &[b"REPLCONF", b"capa", b"eof", b"capa", b"psync2"],
        "REPLCONF capa",
    )
    .await?;

    // Valkey 9 writes a replica's RDB in the newest format the replica announced, and without
    // an announcement falls back to RDB 11, which cannot hold hashes with field TTLs: such a
    // full sync then fails on the master ("Can't store key in RDB version 11"). Ferry reads
    // Valkey's RDB 80, so it says it is a Valkey 9.1 replica. Redis answers "Unrecognized
    // REPLCONF option", which is ignored like an old server's answer to `capa`.
    wire.call(
        &[b"REPLCONF", b"version", VALKEY_REPLICA_VERSION.as_bytes()],
        "REPLCONF version",
    )
    .await?;

    let start = psync(&mut wire, resume).await?;
    Ok((wire, start))
}

async fn psync(wire: &mut Wire, resume: Option<&Resume>) -> Result<SyncStart, LinkError> {
    let (replid, from) = match resume {
        Some(r) => (r.replid.clone(), (r.offset + 1).to_string()),
        None => ("?".to_string(), "-1".to_string()),
    };
    let mut attempts = 0;
    let reply = loop {
        let reply = wire
            .call(
                &[b"PSYNC", replid.as_bytes(), from.as_bytes()],
                "waiting for the PSYNC reply",
            )
            .await?;
        // The master is itself syncing or loading: it will be ready soon.
        if (reply.starts_with("-NOMASTERLINK") || reply.starts_with("-LOADING")) && attempts < 30 {
            attempts += 1;
            tokio::time::sleep(std::time::Duration::from_secs(1)).await;
            continue;
        }
        break reply;
    };
    let mut words = reply.split_whitespace();
    match words.next() {
        Some("+FULLRESYNC") => {
            let replid = words.next().unwrap_or_default().to_string();
            let offset = words
                .next()
                .and_then(|o| o.parse::<i64>().ok())
                .ok_or_else(|| LinkError::Protocol(format!("malformed reply `{reply}`")))?;
            let transfer = read_transfer(wire).await?;
            Ok(SyncStart::Full {
                replid,
                offset,
                transfer,
            })
        }
        Some("+CONTINUE") => {
            let resumed = resume.map(|r| r.offset).unwrap_or(0);
            let replid = words
                .next()
                .map(str::to_string)
                .or_else(|| resume.map(|r| r.replid.clone()))
                .unwrap_or_default();
            Ok(SyncStart::Partial {
                replid,
                offset: resumed,
            })
        }
        Some(err) if err.starts_with("-NOAUTH") || err.starts_with("-NOPERM") => {
            Err(LinkError::Refused {
                command: "PSYNC",
                reason: reply.trim_start_matches('-').to_string(),
            })
        }
        Some(err) if err.starts_with('-') => {
            // No PSYNC (very old, or disabled): the legacy SYNC has neither ids nor offsets.
            wire.send(&[b"SYNC"]).await?;
            let transfer = read_transfer(wire).await.map_err(|e| match e {
                LinkError::Protocol(sync_reply) => LinkError::Refused {
                    command: "PSYNC and SYNC",
                    reason: format!("{} / {sync_reply}", reply.trim_start_matches('-')),
                },
                other => other,
            })?;
            Ok(SyncStart::Full {
                replid: "?".into(),
                offset: 0,
                transfer,
            })
        }
        _ => Err(LinkError::Protocol(format!(
            "unexpected PSYNC reply `{reply}`"
        ))),
    }
}

/// Reads `$<len>` or `$EOF:<mark>`, skipping keep-alives (they continue until the snapshot starts).
async fn read_transfer(wire: &mut Wire) -> Result<Transfer, LinkError> {
    let line = wire.read_line("waiting for the snapshot to start").await?;
    if let Some(mark) = line.strip_prefix("$EOF:") {
        let mark: [u8; 40] = mark
            .as_bytes()
            .try_into()
            .map_err(|_| LinkError::Protocol(format!("EOF mark of {} bytes", mark.len())))?;
        return Ok(Transfer::Diskless { mark });
    }
    if let Some(len) = line.strip_prefix('$') {
        let len = len
            .parse::<u64>()
            .map_err(|_| LinkError::Protocol(format!("bad RDB length line `{line}`")))?;
        return Ok(Transfer::Sized(len));
    }
    Err(LinkError::Protocol(line))
}
