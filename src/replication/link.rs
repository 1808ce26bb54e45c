//! The established replication link: RDB chunks, then commands with exact offsets, and ACKs.

use std::time::{Duration, Instant};

use bytes::Bytes;
use tokio::io::AsyncWriteExt;

use super::handshake::{self, Resume, SyncStart, Transfer, Wire};
use super::LinkError;
use crate::resp::{CommandBuf, Decoder, Limits};
use crate::transport::Peer;

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
    /// A command made here rather than received (a rewrite for the target), encoded as RESP;
    /// `end_offset` is the source offset of the command it stands for.
    pub fn from_args(args: Vec<Bytes>, end_offset: i64) -> ReplCommand {
        let mut buf = crate::resp::CommandBuf::with_capacity(64);
        buf.command(&args);
        ReplCommand {
            raw: Bytes::copy_from_slice(buf.as_slice()),
            args,
            end_offset,
        }
    }

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

/// What [`ReplicaLink::next_raw`] yields: the RDB as with [`LinkItem`], then the command stream
/// as raw bytes, not cut into commands (for a relay, which forwards it verbatim).
#[derive(Debug, Clone)]
pub enum RawItem {
    Rdb(Bytes),
    RdbDone,
    /// Whole or partial commands, in order; the received offset advances by their length.
    Stream(Bytes),
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
    /// This end's address, as the master lists this replica's connection (`CLIENT LIST`).
    local_addr: Option<std::net::SocketAddr>,
}

/// ACK interval between the end of a snapshot and the first command. A diskless master starts
/// the stream on the first ACK it gets *after* it has marked the replica online, which happens
/// when it reaps its RDB child, possibly after our first ACK arrived: so ACK often until the
/// stream flows, or it may wait a whole `ack_interval`.
const EARLY_ACK_INTERVAL: Duration = Duration::from_millis(50);

impl ReplicaLink {
    /// Connects and performs the handshake. `resume` asks for a partial resync.
    pub async fn connect(
        peer: &Peer,
        cfg: LinkConfig,
        resume: Option<(&str, i64)>,
    ) -> Result<ReplicaLink, LinkError> {
        let resume = resume.map(|(replid, offset)| Resume {
            replid: replid.to_string(),
            offset,
        });
        let (wire, start) = handshake::perform(peer, cfg, resume.as_ref()).await?;
        let local_addr = wire.stream.local_addr();
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
            local_addr,
        })
    }

    /// This end's address (the master's `CLIENT LIST` shows it as this replica's `addr`).
    pub fn local_addr(&self) -> Option<std::net::SocketAddr> {
        self.local_addr
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
        self.wire.stream.flush().await?;
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

    /// The next piece of the RDB or of the raw command stream. Cancel-safe, like
    /// [`ReplicaLink::next`]. The link answers nothing in this mode (a `GETACK` in the stream is
    /// for whoever executes it): the caller sends ACKs with [`ReplicaLink::send_ack`].
    pub async fn next_raw(&mut self) -> Result<RawItem, LinkError> {
        loop {
            if let Some(item) = self.next_raw_buffered()? {
                return Ok(item);
            }
            let during = match self.phase {
                Phase::Commands | Phase::RdbDone => "streaming commands",
                _ => "receiving the snapshot",
            };
            self.wire.fill(during).await?;
        }
    }

    /// [`ReplicaLink::next_raw`] if the buffer already holds something.
    pub fn next_raw_buffered(&mut self) -> Result<Option<RawItem>, LinkError> {
        if let Phase::Commands = self.phase {
            if self.wire.buf.is_empty() {
                return Ok(None);
            }
            let bytes = self.wire.buf.split().freeze();
            self.received += bytes.len() as i64;
            self.stream_started = true;
            return Ok(Some(RawItem::Stream(bytes)));
        }
        Ok(self.next_buffered()?.map(|item| match item {
            LinkItem::RdbChunk(c) => RawItem::Rdb(c),
            LinkItem::RdbDone => RawItem::RdbDone,
            // Only the Commands phase yields commands, and it is handled above.
            LinkItem::Command(c) => RawItem::Stream(c.raw),
        }))
    }

    /// `REPLCONF ACK <offset>` now, whatever the timers say (a relay forwards its target's ACKs).
    pub async fn send_ack(&mut self, offset: i64) -> Result<(), LinkError> {
        let mut out = CommandBuf::with_capacity(64);
        out.array(3).arg(b"REPLCONF").arg(b"ACK").arg_int(offset);
        self.wire.stream.write_all(out.as_slice()).await?;
        self.wire.stream.flush().await?;
        self.applied = offset;
        self.last_ack = Instant::now();
        Ok(())
    }

    /// A bare newline: what a replica sends while it loads a big RDB, so that the master does not
    /// time it out (a relay forwards its target's).
    pub async fn send_keepalive(&mut self) -> Result<(), LinkError> {
        self.wire.stream.write_all(b"\n").await?;
        self.wire.stream.flush().await?;
        Ok(())
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
                // The mark ends the RDB. Search for it (rather than only at the end of the
                // buffer) so that bytes arriving right after it are not taken for RDB data.
                if let Some(at) = find_mark(buf, &mark[..]) {
                    let chunk = buf.split_to(at).freeze();
                    let _ = buf.split_to(mark.len());
                    self.phase = Phase::RdbDone;
                    if chunk.is_empty() {
                        return self.next_buffered();
                    }
                    self.rdb_bytes += chunk.len() as u64;
                    return Ok(Some(LinkItem::RdbChunk(chunk)));
                }
                // Hold back what could be the start of a mark split across reads.
                let keep = mark.len() - 1;
                if buf.len() <= keep {
                    return Ok(None);
                }
                let take = buf.len() - keep;
                self.rdb_bytes += take as u64;
                Ok(Some(LinkItem::RdbChunk(buf.split_to(take).freeze())))
            }
            Phase::RdbDone => {
                self.phase = Phase::Commands;
                Ok(Some(LinkItem::RdbDone))
            }
            Phase::Commands => {
                let Some((args, raw)) = self
                    .decoder
                    .decode_command(buf)
                    .map_err(|e| LinkError::Protocol(format!("in the replication stream: {e}")))?
                else {
                    return Ok(None);
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

/// Where `mark` starts in `hay`, if it is there whole. Scans for the mark's first byte and
/// compares only there: a window-by-window comparison would cost a `memcmp` per RDB byte.
fn find_mark(hay: &[u8], mark: &[u8]) -> Option<usize> {
    let first = *mark.first()?;
    let mut from = 0;
    while let Some(i) = hay[from..].iter().position(|&b| b == first) {
        let at = from + i;
        if hay.len() - at < mark.len() {
            return None;
        }
        if &hay[at..at + mark.len()] == mark {
            return Some(at);
        }
        from = at + 1;
    }
    None
}

#[cfg(test)]
mod tests {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    use tokio::net::TcpListener;

    use super::*;

    #[test]
    fn finds_a_whole_mark_only() {
        let mark = b"abcd";
        assert_eq!(find_mark(b"xxabcdyy", mark), Some(2));
        assert_eq!(find_mark(b"xxabcaabcd", mark), Some(6));
        assert_eq!(find_mark(b"xxabc", mark), None);
        assert_eq!(find_mark(b"", mark), None);
    }

    /// A scripted master: answers the handshake, then sends a diskless transfer in pieces cut
    /// inside the EOF mark, immediately followed by a command.
    #[tokio::test]
    async fn a_diskless_mark_split_across_reads_ends_the_rdb_exactly() {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = listener.local_addr().unwrap().port();
        let mark = "0123456789abcdef0123456789abcdef01234567";
        let rdb: Vec<u8> = (0..5000u32).map(|i| (i * 7 % 251) as u8).collect();
        let body = rdb.clone();
        tokio::spawn(async move {
            let (mut s, _) = listener.accept().await.unwrap();
            let mut buf = vec![0u8; 1024];
            // PING, listening-port, capa; `REPLCONF version` answered as Redis does (ignored).
            for reply in [
                "+PONG\r\n",
                "+OK\r\n",
                "+OK\r\n",
                "-ERR Unrecognized REPLCONF option: version\r\n",
            ] {
                let _ = s.read(&mut buf).await.unwrap();
                s.write_all(reply.as_bytes()).await.unwrap();
            }
            let _ = s.read(&mut buf).await.unwrap();
            let mut stream = format!("\n+FULLRESYNC {mark} 7\r\n\n$EOF:{mark}\r\n").into_bytes();
            stream.extend_from_slice(&body);
            stream.extend_from_slice(mark.as_bytes());
            stream.extend_from_slice(b"*1\r\n$4\r\nPING\r\n");
            let cut = stream.len() - 14 - 20; // inside the mark
            for piece in [
                &stream[..cut - 3000],
                &stream[cut - 3000..cut],
                &stream[cut..],
            ] {
                s.write_all(piece).await.unwrap();
                s.flush().await.unwrap();
                tokio::time::sleep(Duration::from_millis(30)).await;
            }
            let _ = s.read(&mut buf).await;
        });
        let url = crate::redis_url::RedisUrl::parse(&format!("redis://127.0.0.1:{port}")).unwrap();
        let peer = Peer::from_url(&url).unwrap();
        let mut link = ReplicaLink::connect(&peer, LinkConfig::default(), None)
            .await
            .unwrap();
        assert!(matches!(
            link.start(),
            SyncStart::Full {
                offset: 7,
                transfer: Transfer::Diskless { .. },
                ..
            }
        ));
        let mut got = Vec::new();
        loop {
            match link.next().await.unwrap() {
                LinkItem::RdbChunk(c) => got.extend_from_slice(&c),
                LinkItem::RdbDone => break,
                LinkItem::Command(_) => panic!("command inside the RDB"),
            }
        }
        assert_eq!(got, rdb);
        let LinkItem::Command(ping) = link.next().await.unwrap() else {
            panic!("expected the command after the RDB")
        };
        assert!(ping.is("PING"));
        assert_eq!(ping.end_offset, 7 + 14);
    }
}
