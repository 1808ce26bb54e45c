//! The snapshot phase: the RDB streams in from the link and goes out to the target as it arrives.
//!
//! (Interim: until the RDB parser lands, the RDB is consumed and counted but not applied.)

use std::time::{Duration, Instant};

use super::conn::Conn;
use super::error::EngineError;
use super::writer::Writer;
use super::{Reporter, Servers, Tuning};
use crate::replication::{LinkItem, ReplicaLink};
use crate::spec::OnConflict;
use crate::store::EventKind;

pub(crate) struct Snapshot<'a> {
    pub link: &'a mut ReplicaLink,
    pub writer: &'a mut Writer,
    pub target: &'a mut Conn,
    pub reporter: &'a Reporter,
    pub tuning: &'a Tuning,
    pub servers: &'a Servers,
    pub on_conflict: OnConflict,
    pub rdb_bytes_total: Option<u64>,
}

#[derive(Debug, Default)]
pub(crate) struct Summary {
    pub rdb_bytes: u64,
    pub keys_written: u64,
    pub keys_skipped: u64,
    pub keys_expired: u64,
    pub keys_rewritten: u64,
    pub duration: Duration,
}

impl Snapshot<'_> {
    pub async fn run(self) -> Result<Summary, EngineError> {
        let started = Instant::now();
        let mut last_report = Instant::now();
        let _ = (&self.target, self.servers, self.on_conflict);
        loop {
            let item = match self.link.next_buffered().map_err(EngineError::from_link)? {
                Some(item) => item,
                None => {
                    self.writer.flush().await?;
                    self.link.next().await.map_err(EngineError::from_link)?
                }
            };
            match item {
                LinkItem::RdbChunk(_) => {}
                LinkItem::RdbDone => break,
                LinkItem::Command(_) => {
                    return Err(EngineError::SourceLinkLost(
                        "a command arrived before the snapshot ended".into(),
                    ))
                }
            }
            if last_report.elapsed() >= self.tuning.report_interval {
                last_report = Instant::now();
                self.reporter
                    .emit(EventKind::SnapshotProgress {
                        rdb_bytes_read: self.link.rdb_bytes(),
                        rdb_bytes_total: self.rdb_bytes_total,
                        keys_written: 0,
                        keys_skipped: 0,
                        keys_expired: 0,
                    })
                    .await?;
            }
        }
        self.writer.drain().await?;
        Ok(Summary {
            rdb_bytes: self.link.rdb_bytes(),
            duration: started.elapsed(),
            ..Summary::default()
        })
    }
}
