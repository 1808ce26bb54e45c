//! One target connected to the relay: what it asked for, the bytes it is sent, the ACKs it returns.
//!
//! The session is split in two halves so that forwarding (source → target) and reading the
//! target's acknowledgements (target → Ferry) can proceed at once without sharing a borrow:
//! [`TargetWriter`] answers the `PSYNC` and carries the RDB and the stream, [`TargetReader`]
//! yields [`TargetMessage`]s.
//!
//! The RDB always goes out with diskless framing (`$EOF:<40 bytes>` … the same 40 bytes), whatever
//! framing the source used: Ferry relays chunks as they arrive and need not know the size up
//! front, and a replica with `repl-diskless-load` enabled parses them straight off the socket.

use std::net::SocketAddr;

use bytes::{Buf, BytesMut};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::tcp::{OwnedReadHalf, OwnedWriteHalf};
use tokio::net::TcpStream;

use super::RelayError;
use crate::resp::{Decoder, Frame, Limits};

/// What the target asked for: `PSYNC <replid> <offset>` (`?` and `-1` for "anything").
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PsyncRequest {
    pub replid: String,
    /// The first offset the target does not have yet (its applied offset + 1).
    pub offset: i64,
}

impl PsyncRequest {
    /// What to ask the source: `None` for `PSYNC ? -1`, else the replid and the last offset the
    /// target holds (the replica link asks for the one after it).
    pub fn resume_point(&self) -> Option<(&str, i64)> {
        (self.replid != "?" && self.offset > 0).then(|| (self.replid.as_str(), self.offset - 1))
    }
}

/// An authenticated target that has sent `PSYNC`.
pub struct TargetSession {
    pub peer: SocketAddr,
    pub psync: PsyncRequest,
    /// From `REPLCONF listening-port` (shown in logs; the target's own port).
    pub listening_port: Option<u16>,
    stream: TcpStream,
    /// Bytes that arrived after the `PSYNC` (the target sends nothing until it has an answer,
    /// but nothing is dropped either).
    buf: BytesMut,
}

impl std::fmt::Debug for TargetSession {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TargetSession")
            .field("peer", &self.peer)
            .field("psync", &self.psync)
            .finish_non_exhaustive()
    }
}

impl TargetSession {
    pub(crate) fn new(
        stream: TcpStream,
        buf: BytesMut,
        peer: SocketAddr,
        psync: PsyncRequest,
        listening_port: Option<u16>,
    ) -> Self {
        TargetSession {
            peer,
            psync,
            listening_port,
            stream,
            buf,
        }
    }

    /// The writing and the reading half.
    pub fn split(self) -> (TargetWriter, TargetReader) {
        let (read, write) = self.stream.into_split();
        (
            TargetWriter { half: write },
            TargetReader {
                half: read,
                buf: self.buf,
                decoder: Decoder::new(Limits {
                    max_bulk_len: 4096,
                    ..Limits::default()
                }),
            },
        )
    }
}

/// Answers the target's `PSYNC` and carries the data.
pub struct TargetWriter {
    half: OwnedWriteHalf,
}

/// The EOF mark of one diskless transfer.
pub struct EofMark([u8; 40]);

impl TargetWriter {
    /// `+FULLRESYNC <replid> <offset>` and the start of a diskless RDB; returns its end mark.
    pub async fn full_resync(&mut self, replid: &str, offset: i64) -> Result<EofMark, RelayError> {
        let hex = super::random_hex(40)?;
        let mut mark = [0u8; 40];
        mark.copy_from_slice(hex.as_bytes());
        let head = format!("+FULLRESYNC {replid} {offset}\r\n$EOF:{hex}\r\n");
        self.half.write_all(head.as_bytes()).await?;
        Ok(EofMark(mark))
    }

    /// Part of the RDB, or of the command stream: relayed as is.
    pub async fn send(&mut self, bytes: &[u8]) -> Result<(), RelayError> {
        self.half.write_all(bytes).await?;
        Ok(())
    }

    /// Ends the RDB.
    pub async fn end_rdb(&mut self, mark: EofMark) -> Result<(), RelayError> {
        self.half.write_all(&mark.0).await?;
        Ok(())
    }

    /// `+CONTINUE <replid>`: the command stream follows from the offset the target asked for.
    pub async fn continue_with(&mut self, replid: &str) -> Result<(), RelayError> {
        self.half
            .write_all(format!("+CONTINUE {replid}\r\n").as_bytes())
            .await?;
        Ok(())
    }

    /// An error reply to the `PSYNC` (for example `-NOMASTERLINK …` while the source is
    /// unreachable): the target logs it and tries again a second later.
    pub async fn refuse(&mut self, line: &str) -> Result<(), RelayError> {
        let line = line.replace(['\r', '\n'], " ");
        self.half
            .write_all(format!("-{line}\r\n").as_bytes())
            .await?;
        Ok(())
    }
}

/// What a replica says to its master after the handshake.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TargetMessage {
    /// `REPLCONF ACK <offset> [FACK <aof offset>]`: the offset the target has processed.
    Ack { offset: i64 },
    /// A bare newline: the target is loading a big RDB and says it is alive (the master takes it
    /// as an ACK for its timeout).
    KeepAlive,
    /// Anything else (logged, otherwise ignored).
    Other(String),
}

/// Reads the target's messages.
pub struct TargetReader {
    half: OwnedReadHalf,
    buf: BytesMut,
    decoder: Decoder,
}

impl TargetReader {
    /// The next message. Cancel-safe: the only await is a read into the buffer.
    pub async fn next(&mut self) -> Result<TargetMessage, RelayError> {
        loop {
            if let Some(message) = self.parse()? {
                return Ok(message);
            }
            if self.buf.len() > 64 * 1024 {
                return Err(RelayError::Protocol(
                    "the target sent 64 KiB that are not replica messages".into(),
                ));
            }
            if self.half.read_buf(&mut self.buf).await? == 0 {
                return Err(RelayError::Closed {
                    during: "waiting for its acknowledgements",
                });
            }
        }
    }

    fn parse(&mut self) -> Result<Option<TargetMessage>, RelayError> {
        match self.buf.first() {
            None => Ok(None),
            Some(b'\n') => {
                self.buf.advance(1);
                Ok(Some(TargetMessage::KeepAlive))
            }
            Some(b'\r') if self.buf.get(1) == Some(&b'\n') => {
                self.buf.advance(2);
                Ok(Some(TargetMessage::KeepAlive))
            }
            Some(b'*') => {
                let Some((frame, _)) = self
                    .decoder
                    .decode(&mut self.buf)
                    .map_err(|e| RelayError::Protocol(e.to_string()))?
                else {
                    return Ok(None);
                };
                Ok(Some(message(frame)))
            }
            Some(_) => {
                let Some(nl) = self.buf.iter().position(|&b| b == b'\n') else {
                    return Ok(None);
                };
                let line = self.buf.split_to(nl + 1);
                Ok(Some(TargetMessage::Other(
                    String::from_utf8_lossy(&line[..nl]).trim().to_string(),
                )))
            }
        }
    }
}

fn message(frame: Frame) -> TargetMessage {
    let Frame::Array(items) = frame else {
        return TargetMessage::Other(frame.describe());
    };
    let words: Vec<&[u8]> = items
        .iter()
        .filter_map(|f| f.as_bytes().map(|b| &b[..]))
        .collect();
    match words.as_slice() {
        [replconf, ack, offset, ..]
            if replconf.eq_ignore_ascii_case(b"REPLCONF") && ack.eq_ignore_ascii_case(b"ACK") =>
        {
            match std::str::from_utf8(offset)
                .ok()
                .and_then(|o| o.parse().ok())
            {
                Some(offset) => TargetMessage::Ack { offset },
                None => TargetMessage::Other("REPLCONF ACK with a bad offset".into()),
            }
        }
        _ => TargetMessage::Other(
            words
                .iter()
                .map(|w| String::from_utf8_lossy(w).into_owned())
                .collect::<Vec<_>>()
                .join(" "),
        ),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn acks_and_keepalives_are_told_apart() {
        let ack = Frame::Array(vec![
            Frame::Bulk("REPLCONF".into()),
            Frame::Bulk("ACK".into()),
            Frame::Bulk("1234".into()),
            Frame::Bulk("FACK".into()),
            Frame::Bulk("1200".into()),
        ]);
        assert_eq!(message(ack), TargetMessage::Ack { offset: 1234 });
        let other = Frame::Array(vec![Frame::Bulk("PING".into())]);
        assert_eq!(message(other), TargetMessage::Other("PING".into()));
    }

    #[test]
    fn a_resume_point_is_the_last_offset_held() {
        let fresh = PsyncRequest {
            replid: "?".into(),
            offset: -1,
        };
        assert_eq!(fresh.resume_point(), None);
        let known = PsyncRequest {
            replid: "abc".into(),
            offset: 101,
        };
        assert_eq!(known.resume_point(), Some(("abc", 100)));
    }
}
