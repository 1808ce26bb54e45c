//! The snapshot's read loop, shared by everything that consumes an RDB as it streams: the chunks
//! from an [`RdbInput`] go through one [`Parser`] (configured the same way for every consumer),
//! and each item goes to an [`ItemSink`]. The restore path's sink writes to the target; the dry
//! run's sink (`engine::dry_run`) only measures. So a dry run reads exactly what a migration
//! would, through the same parser settings, and nothing about reading is written twice.

use std::time::Instant;

use super::{now_ms, rdb_error, RdbInput};
use crate::engine::error::EngineError;
use crate::engine::{Reporter, Tuning};
use crate::model::EventKind;
use crate::rdb::{Item, Parser};
use crate::replication::LinkItem;

/// What consumes the items of a snapshot.
pub(crate) trait ItemSink {
    /// Where the RDB comes from.
    type Input: RdbInput;
    fn input(&mut self) -> &mut Self::Input;
    /// One parsed item, `now` being the time its chunk arrived (for expiry), `offset` the RDB
    /// bytes consumed once it was parsed (what a big value's pieces span).
    async fn item(&mut self, item: Item, now: i64, offset: u64) -> Result<(), EngineError>;
    /// About to wait on the source: a sink with buffered work should let it go now.
    async fn idle(&mut self) -> Result<(), EngineError> {
        Ok(())
    }
    /// After each chunk: fail early on an error a background part of the sink has seen.
    fn check(&mut self) -> Result<(), EngineError> {
        Ok(())
    }
    /// A progress event (`rdb_bytes_read` so far), sent at most once per report interval.
    fn progress(&self, rdb_bytes_read: u64) -> EventKind;
}

/// The parser every snapshot consumer uses: values over the big-key threshold come in pieces, and
/// what must still be whole (another record, one element, an LZF string) is capped by config.
pub(crate) fn parser(tuning: &Tuning) -> Parser {
    Parser::new()
        .streaming_values_over(tuning.big_key_bytes, false)
        .with_max_record_bytes(tuning.max_whole_value_bytes)
}

/// Reads the whole RDB from the sink's input into the sink, reporting progress, and checks the
/// file's end. Returns when the RDB is done; a command before that is a broken link.
pub(crate) async fn drive<S: ItemSink>(
    sink: &mut S,
    reporter: &Reporter,
    tuning: &Tuning,
) -> Result<(), EngineError> {
    let mut parser = parser(tuning);
    let mut last_report = Instant::now();
    loop {
        let item = match sink.input().next_buffered()? {
            Some(item) => item,
            None => {
                sink.idle().await?;
                sink.input().next().await?
            }
        };
        match item {
            LinkItem::RdbChunk(chunk) => {
                parser.push(&chunk);
                drop(chunk);
                let now = now_ms();
                while let Some(item) = parser.next_item().map_err(rdb_error)? {
                    sink.item(item, now, parser.offset()).await?;
                }
            }
            LinkItem::RdbDone => break,
            LinkItem::Command(_) => {
                return Err(EngineError::SourceLinkLost(
                    "a command arrived before the snapshot ended".into(),
                ))
            }
        }
        sink.check()?;
        if last_report.elapsed() >= tuning.report_interval {
            last_report = Instant::now();
            let bytes = sink.input().rdb_bytes();
            reporter.emit(sink.progress(bytes)).await?;
        }
    }
    parser.finish().map_err(rdb_error)
}
