//! The reply half of the pipelined writer: a task that reads the target's replies in order and
//! checks each against what was expected of it (see the parent module's docs).

use std::sync::atomic::Ordering;
use std::sync::Arc;

use bytes::{Bytes, BytesMut};
use tokio::io::AsyncReadExt;
use tokio::sync::mpsc;

use super::{Expect, Pending, Shared, StreamBatch, TRAILER_COMMANDS};
use crate::engine::error::{show_key, EngineError};
use crate::resp::{Decoder, Frame};
use crate::spec::OnConflict;
use crate::transport::ReadHalf;

pub(super) struct ReplyReader {
    pub(super) read: ReadHalf,
    pub(super) buf: BytesMut,
    pub(super) decoder: Decoder,
    pub(super) shared: Arc<Shared>,
    pub(super) on_conflict: OnConflict,
    pub(super) addr: String,
    /// Commands of the open wrap, to name the one whose `EXEC` result is an error.
    pub(super) wrap_names: Vec<(u32, Bytes, Bytes)>,
}

impl ReplyReader {
    pub(super) async fn run(mut self, mut rx: mpsc::Receiver<Pending>) {
        if let Err(e) = self.serve(&mut rx).await {
            if let Ok(mut slot) = self.shared.error.lock() {
                slot.get_or_insert(e);
            }
            // Wake a writer waiting for window space: it will find the error.
            self.shared.window.close();
        }
    }

    async fn serve(&mut self, rx: &mut mpsc::Receiver<Pending>) -> Result<(), EngineError> {
        while let Some(pending) = rx.recv().await {
            match pending {
                Pending::Applied(offset) => self
                    .shared
                    .stats
                    .applied_offset
                    .store(offset, Ordering::Release),
                Pending::Barrier(done) => {
                    let _ = done.send(());
                }
                Pending::Reply { expect, cost } => {
                    let reply = self.read_reply().await?;
                    self.judge(expect, reply)?;
                    self.shared.window.add_permits(cost as usize);
                }
                Pending::Stream(batch) => self.stream_batch(batch).await?,
            }
        }
        Ok(())
    }

    /// Reads the replies of one batch of stream commands. Inside a wrap each command answers
    /// `+QUEUED` (or an error refused at queue time: OOM, NOPERM, unknown command) and the
    /// results come in the `EXEC` array, where a runtime error (WRONGTYPE) is found.
    async fn stream_batch(&mut self, batch: StreamBatch) -> Result<(), EngineError> {
        if batch.opens {
            if let Frame::Error(message) = self.read_reply().await? {
                return Err(stream_error(batch.db, b"MULTI", b"", &message));
            }
        }
        let wrapped = batch.wrapped;
        for (name, key) in &batch.names {
            if let Frame::Error(message) = self.read_reply().await? {
                return Err(stream_error(batch.db, name, key, &message));
            }
            if wrapped {
                self.wrap_names.push((batch.db, name.clone(), key.clone()));
            }
        }
        if batch.closes {
            for _ in 0..TRAILER_COMMANDS {
                if let Frame::Error(message) = self.read_reply().await? {
                    return Err(stream_error(0, b"SET", b"ferry offset key", &message));
                }
            }
            let names = std::mem::take(&mut self.wrap_names);
            match self.read_reply().await? {
                Frame::Error(message) => {
                    return Err(stream_error(batch.db, b"EXEC", b"", &message));
                }
                Frame::Array(results) => {
                    for (i, result) in results.iter().enumerate() {
                        if let Frame::Error(message) = result {
                            let (db, name, key) = names.get(i).cloned().unwrap_or_else(|| {
                                (
                                    0,
                                    Bytes::from_static(b"SET"),
                                    Bytes::from_static(b"ferry offset key"),
                                )
                            });
                            return Err(stream_error(db, &name, &key, message));
                        }
                    }
                }
                other => {
                    return Err(EngineError::TargetLinkLost(format!(
                        "{}: unexpected reply to EXEC: {other:?}",
                        self.addr
                    )))
                }
            }
        }
        let stats = &self.shared.stats;
        stats
            .commands_applied
            .fetch_add(batch.names.len() as u64, Ordering::Relaxed);
        self.shared.window.add_permits(batch.cost as usize);
        if let Some(offset) = batch.offset {
            // Inside a wrap the offset counts only once the EXEC is in.
            if !wrapped || batch.closes {
                stats.applied_offset.store(offset, Ordering::Release);
            }
        }
        Ok(())
    }

    async fn read_reply(&mut self) -> Result<Frame, EngineError> {
        loop {
            if let Some((frame, _)) = self
                .decoder
                .decode(&mut self.buf)
                .map_err(|e| EngineError::TargetLinkLost(format!("{}: {e}", self.addr)))?
            {
                return Ok(frame);
            }
            if self.buf.capacity() - self.buf.len() < 16 * 1024 {
                self.buf.reserve(64 * 1024);
            }
            let n = self
                .read
                .read_buf(&mut self.buf)
                .await
                .map_err(|e| EngineError::TargetLinkLost(format!("{}: {e}", self.addr)))?;
            if n == 0 {
                return Err(EngineError::TargetLinkLost(format!(
                    "{} closed the connection",
                    self.addr
                )));
            }
        }
    }

    fn judge(&self, expect: Expect, reply: Frame) -> Result<(), EngineError> {
        let stats = &self.shared.stats;
        let error = reply
            .as_error()
            .map(|e| String::from_utf8_lossy(e).into_owned());
        match expect {
            Expect::Restore { db, key } => match error {
                None => {
                    stats.keys_written.fetch_add(1, Ordering::Relaxed);
                }
                Some(e) if e.starts_with("BUSYKEY") => match self.on_conflict {
                    OnConflict::Skip => {
                        stats.keys_skipped.fetch_add(1, Ordering::Relaxed);
                    }
                    _ => {
                        return Err(EngineError::BusyKey {
                            db,
                            key: show_key(&key),
                        })
                    }
                },
                Some(message) => {
                    return Err(EngineError::TargetError {
                        db,
                        key: show_key(&key),
                        command: "RESTORE".into(),
                        message,
                    })
                }
            },
            Expect::Rewrite {
                db,
                key,
                command,
                last,
            } => match error {
                None if last => {
                    stats.keys_written.fetch_add(1, Ordering::Relaxed);
                }
                None => {}
                Some(message) => {
                    return Err(EngineError::TargetError {
                        db,
                        key: show_key(&key),
                        command: String::from_utf8_lossy(&command).to_uppercase(),
                        message,
                    })
                }
            },
            Expect::Setup { db, what, tolerate } => match error {
                Some(e) if !tolerate.is_some_and(|t| e.contains(t)) => {
                    return Err(EngineError::TargetError {
                        db,
                        key: String::new(),
                        command: what.into(),
                        message: e,
                    })
                }
                _ => {}
            },
        }
        Ok(())
    }
}

/// A replicated command the target refused, naming the command and its key.
fn stream_error(db: u32, command: &[u8], key: &[u8], message: &[u8]) -> EngineError {
    EngineError::TargetError {
        db,
        key: show_key(key),
        command: String::from_utf8_lossy(command).to_uppercase(),
        message: String::from_utf8_lossy(message).into_owned(),
    }
}
