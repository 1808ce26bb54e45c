//! The established replication link: RDB chunks, then commands with exact offsets, and ACKs.

use std::time::{Duration, Instant};

use bytes::Bytes;
use tokio::io::AsyncWriteExt;

use super::handshake::{self, Resume, SyncStart, Transfer, Wire};
use super::LinkError;
use crate::redis_url::RedisUrl;
use crate::resp::{CommandBuf, Decoder, Frame, Limits};

/// Tunables of the link. The defaults follow Redis' own replica behaviour.
#[derive(Debug, Clone, Copy)]
pub struct LinkConfig {
    pub connect_timeout: Duration,
    /// Give up on a master silent for this long (Redis' `repl-timeout` is 60 s; in the command
    /// stream the master pings every 10 s).
    pub read_timeout: Duration,
    /// How often to send `REPLCONF ACK`.
    pub ack_interval: Duration,
    /// Reported with `REPLCONF listening-port` (shown in the master's `INFO replication`).
    pub listening_port: u16,
    /// Bytes to ask the socket for at a time.
    pub read_chunk: usize,
    /// Limits on frames of the command stream.
    pub limits: Limits,
}

impl Default for LinkConfig {
    fn default() -> Self {
        LinkConfig {
            connect_timeout: Duration::from_secs(10),
            read_timeout: Duration::from_secs(60),
            ack_interval: Duration::from_secs(1),
            listening_port: 0,
            read_chunk: 256 * 1024,
            limits: Limits::default(),
        }
    }
}

/// One command of the replication stream.
#[derive(Debug, Clone)]
pub struct ReplCommand {
    /// Arguments, command name first (as sent: any case).
    pub args: Vec<Bytes>,
    /// The exact bytes received, for replaying to the target verbatim.
    pub raw: Bytes,
    /// The replication offset just after this command.
    pub end_offset: i64,
}

impl ReplCommand {
    /// The command name, upper-cased (`SET`, `MULTI`, ...).
    pub fn name(&self) -> String {
        self.args
            .first()
            .map(|n| String::from_utf8_lossy(n).to_ascii_uppercase())
            .unwrap_or_default()
    }

    /// Case-insensitive comparison of the command name, without allocating.
    pub fn is(&self, name: &str) -> bool {
        self.args
            .first()
            .is_some_and(|n| n.eq_ignore_ascii_case(name.as_bytes()))
    }

    /// Byte length of the command, which is what it adds to the offset.
    pub fn size(&self) -> usize {
        self.raw.len()
    }
}

/// What the link yields, in order: RDB chunks, `RdbDone`, then commands.
#[derive(Debug, Clone)]
pub enum LinkItem {
    RdbChunk(Bytes),
    RdbDone,
    Command(ReplCommand),
}

#[derive(Debug)]
enum Phase {
    Sized { remaining: u64 },
    Diskless { mark: [u8; 40] },
    RdbDone,
    Commands,
}

/// A connected replica link. See the [module docs](crate::replication).
pub struct ReplicaLink {
    wire: Wire,
    phase: Phase,
    decoder: Decoder,
    start: SyncStart,
    /// Offset after the last command handed out.
    received: i64,
    /// Offset the caller has applied; what ACKs report.
    applied: i64,
    /// `SYNC` (no PSYNC): the master expects no ACKs.
    legacy: bool,
    ack_due: bool,
    last_ack: Instant,
    rdb_bytes: u64,
    /// A command has arrived since the snapshot.
    stream_started: bool,
}

/// ACK interval between the end of a snapshot and the first command. A diskless master starts
/// the stream on the first ACK it gets *after* it has marked the replica online, which happens
/// when it reaps its RDB child, possibly after our first ACK arrived: so ACK often until the
/// stream flows, or it may wait a whole `ack_interval`.
const EARLY_ACK_INTERVAL: Duration = Duration::from_millis(50);

impl ReplicaLink {
    /// Connects and performs the handshake. `resume` asks for a partial resync.
    pub async fn connect(
        url: &RedisUrl,
        cfg: LinkConfig,
        resume: Option<(&str, i64)>,
    ) -> Result<ReplicaLink, LinkError> {
        let resume = resume.map(|(replid, offset)| Resume {
            replid: replid.to_string(),
            offset,
        });
        let (wire, start) = handshake::perform(url, cfg, resume.as_ref()).await?;
        let (phase, offset, legacy) = match &start {
            SyncStart::Full {
                transfer,
                offset,
                replid,
            } => {
                let phase = match transfer {
                    Transfer::Sized(len) => Phase::Sized { remaining: *len },
                    Transfer::Diskless { mark } => Phase::Diskless { mark: *mark },
                };
                (phase, *offset, replid == "?")
            }
            SyncStart::Partial { offset, .. } => (Phase::Commands, *offset, false),
        };
        Ok(ReplicaLink {
            decoder: Decoder::new(wire.cfg.limits),
            wire,
            phase,
            start,
            received: offset,
            applied: offset,
            legacy,
            ack_due: false,
            last_ack: Instant::now(),
            rdb_bytes: 0,
            stream_started: false,
        })
    }

    /// How the master answered PSYNC.
    pub fn start(&self) -> &SyncStart {
        &self.start
    }

    /// Offset after the last command yielded.
    pub fn received_offset(&self) -> i64 {
        self.received
    }

    /// RDB bytes yielded so far.
    pub fn rdb_bytes(&self) -> u64 {
        self.rdb_bytes
    }

    /// Records what the caller has applied; the next ACK reports it.
    pub fn set_applied(&mut self, offset: i64) {
        self.applied = offset;
    }

    /// Forces an ACK on the next [`ReplicaLink::send_ack_if_due`] (for example right after the
    /// snapshot, which a diskless master waits for before streaming).
    pub fn request_ack(&mut self) {
        self.ack_due = true;
    }

    /// Sends `REPLCONF ACK <applied>` if a GETACK asked for one or the interval has passed. Call it
    /// regularly, outside of any `select!`: a write cut in half would corrupt the link.
    pub async fn send_ack_if_due(&mut self) -> Result<(), LinkError> {
        let in_stream = matches!(self.phase, Phase::Commands);
        if self.legacy || !in_stream {
            return Ok(());
        }
        let interval = if self.stream_started {
            self.wire.cfg.ack_interval
        } else {
            EARLY_ACK_INTERVAL.min(self.wire.cfg.ack_interval)
        };
        if !self.ack_due && self.last_ack.elapsed() < interval {
            return Ok(());
        }
        let mut out = CommandBuf::with_capacity(64);
        out.array(3)
            .arg(b"REPLCONF")
            .arg(b"ACK")
            .arg_int(self.applied);
        self.wire.stream.write_all(out.as_slice()).await?;
        self.ack_due = false;
        self.last_ack = Instant::now();
        Ok(())
    }

    /// The next item. Cancel-safe: its only await is a socket read, and state changes happen
    /// after the read completes, so it can sit in a `select!` next to timers and signals.
    pub async fn next(&mut self) -> Result<LinkItem, LinkError> {
        loop {
            if let Some(item) = self.next_buffered()? {
                return Ok(item);
            }
            let during = match self.phase {
                Phase::Commands | Phase::RdbDone => "streaming commands",
                _ => "receiving the snapshot",
            };
            self.wire.fill(during).await?;
        }
    }

    /// The next item if the buffer already holds it, without touching the socket.
    pub fn next_buffered(&mut self) -> Result<Option<LinkItem>, LinkError> {
        let buf = &mut self.wire.buf;
        match &mut self.phase {
            Phase::Sized { remaining } => {
                if *remaining == 0 {
                    self.phase = Phase::RdbDone;
                    return self.next_buffered();
                }
                if buf.is_empty() {
                    return Ok(None);
                }
                let take = (*remaining).min(buf.len() as u64) as usize;
                *remaining -= take as u64;
                self.rdb_bytes += take as u64;
                Ok(Some(LinkItem::RdbChunk(buf.split_to(take).freeze())))
            }
            Phase::Diskless { mark } => {
                if buf.len() >= mark.len() && buf.ends_with(&mark[..]) {
                    let body = buf.len() - mark.len();
                    let chunk = buf.split_to(body).freeze();
                    let _ = buf.split_to(mark.len());
                    self.phase = Phase::RdbDone;
                    if chunk.is_empty() {
                        return self.next_buffered();
                    }
                    self.rdb_bytes += chunk.len() as u64;
                    return Ok(Some(LinkItem::RdbChunk(chunk)));
                }
                // Hold back what could be the start of a mark split across reads.
                if buf.len() <= mark.len() {
                    return Ok(None);
                }
                let take = buf.len() - mark.len();
                self.rdb_bytes += take as u64;
                Ok(Some(LinkItem::RdbChunk(buf.split_to(take).freeze())))
            }
            Phase::RdbDone => {
                self.phase = Phase::Commands;
                Ok(Some(LinkItem::RdbDone))
            }
            Phase::Commands => {
                let Some((frame, raw)) = self
                    .decoder
                    .decode_with_raw(buf)
                    .map_err(|e| LinkError::Protocol(e.to_string()))?
                else {
                    return Ok(None);
                };
                let args = match frame {
                    Frame::Array(items) => items
                        .into_iter()
                        .map(|f| match f {
                            Frame::Bulk(b) => Ok(b),
                            other => Err(LinkError::Protocol(format!(
                                "a command argument that is not a bulk string: {}",
                                other.describe()
                            ))),
                        })
                        .collect::<Result<Vec<_>, _>>()?,
                    other => {
                        return Err(LinkError::Protocol(format!(
                            "expected a command array in the replication stream, got {}",
                            other.describe()
                        )))
                    }
                };
                self.received += raw.len() as i64;
                self.stream_started = true;
                let cmd = ReplCommand {
                    args,
                    raw,
                    end_offset: self.received,
                };
                if cmd.is("REPLCONF")
                    && cmd
                        .args
                        .get(1)
                        .is_some_and(|a| a.eq_ignore_ascii_case(b"GETACK"))
                {
                    self.ack_due = true;
                }
                Ok(Some(LinkItem::Command(cmd)))
            }
        }
    }
}
