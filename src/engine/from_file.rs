//! A migration whose source is an RDB file (a stored backup, taken or uploaded).
//!
//! There is no source server, so there is nothing to replicate and nothing to stream: the file is
//! loaded through the snapshot path ([`load_rdb_file`](super::load_rdb_file): the same writer,
//! RESTORE or rewriting for an older target, the same `on_conflict` rules), framed by the usual
//! `SnapshotStarted` / `SnapshotProgress`* / `SnapshotCompleted` events, and then verified against
//! the file itself ([`verify::file`](super::verify::file)). Only `snapshot` mode makes sense; the API
//! refuses `live` before a job gets here.

use std::path::PathBuf;

use super::error::EngineError;
use super::load::load_rdb_file;
use super::verify::file as verify_file;
use super::{Controls, EngineJob, EventSender, Reporter, Tuning};
use crate::backup::file::{prove, Expected};
use crate::model::EventKind;
use crate::spec::Verify;
use crate::transport::Peer;

/// The `replid` of a snapshot that came from a file rather than a server.
pub const FILE_REPLID: &str = "rdb-file";

/// Proves `path` is the backup recorded (`expected`), then loads it into the job's target and
/// verifies it. Cancellation drops whichever step runs.
pub async fn run_from_file(
    job: EngineJob,
    path: PathBuf,
    expected: Expected,
    events: EventSender,
    controls: Controls,
) -> Result<(), EngineError> {
    let cancel = controls.cancel.clone();
    tokio::select! {
        biased;
        _ = cancel.cancelled() => Err(EngineError::Cancelled),
        r = load_and_verify(job, path, expected, events, Tuning::default(), &controls) => r,
    }
}

async fn load_and_verify(
    job: EngineJob,
    path: PathBuf,
    expected: Expected,
    events: EventSender,
    tuning: Tuning,
    controls: &Controls,
) -> Result<(), EngineError> {
    let spec = &job.spec;
    let throttle = super::rate::Throttle::new(spec.options.limits, &controls.limits);
    let target = Peer::new(&spec.target).map_err(|e| EngineError::target(e.into()))?;
    let reporter = Reporter {
        events: events.clone(),
    };
    // Proven before the first write (with on_conflict flush, before the first flush).
    let file = prove(&path, &expected).await.map_err(|e| {
        EngineError::Unproven(format!(
            "the source backup cannot be proven, so nothing was written: {e}"
        ))
    })?;
    let total = expected.bytes;
    reporter
        .emit(EventKind::SnapshotStarted {
            replid: FILE_REPLID.into(),
            offset: 0,
            diskless: false,
            rdb_bytes_total: Some(total),
            redo: None,
            keys_total: None,
        })
        .await?;
    let summary = load_rdb_file(
        file,
        &target,
        spec.options.on_conflict,
        job.lease.as_ref(),
        events,
        tuning.clone(),
        Some(throttle),
    )
    .await?;
    tracing::info!(
        file = %path.display(), target = %spec.target.url,
        keys_written = summary.keys_written, keys_rewritten = summary.keys_rewritten,
        ms = summary.duration_ms, "file loaded"
    );
    reporter
        .emit(EventKind::SnapshotCompleted {
            rdb_bytes: summary.rdb_bytes,
            keys_written: summary.keys_written,
            keys_skipped: summary.keys_skipped,
            keys_expired: summary.keys_expired,
            keys_rewritten: summary.keys_rewritten,
            duration_ms: summary.duration_ms,
            keys_empty: summary.keys_empty,
        })
        .await?;
    let mode = spec.options.verify;
    if mode == Verify::None {
        return Ok(());
    }
    let report = verify_file::verify(&path, &target, mode, &tuning).await?;
    reporter.verification(report).await
}
