//! The transfer engine: full sync, live streaming, cutover and verification.
//!
//! The engine is started by the `jobs` supervisor, one tokio task per migration. It never touches the
//! state that the API reads: everything it has to say goes out as [`EventKind`]s on the `events`
//! channel, in order, and the supervisor appends them to the log. When [`run`] returns, the
//! supervisor records the final fact: `MigrationCompleted` for `Ok`, `MigrationCancelled` for
//! [`EngineError::Cancelled`], `MigrationFailed` (with [`EngineError::code`]) otherwise.
//!
//! ## How a migration runs
//! 1. Admin connections to both servers learn their versions (the target's decides which RDB
//!    version a DUMP payload may carry).
//! 2. The replication link ([`crate::replication`]) handshakes as a replica and receives the RDB.
//!    `snapshot` parses it as it streams and turns each key into a `RESTORE` (or into plain
//!    commands when the target cannot take the payload), written by the pipelined `writer`
//!    within a bounded window. Nothing is spooled to disk.
//! 3. In `live` mode, `stream` then replays the command stream in order, keeping transactions
//!    whole, and acknowledges to the source only the offset the target has *answered*. Cutover
//!    (manual, or automatic at zero lag) optionally pauses writes on the source, waits until the
//!    applied offset reaches the source's, and verifies.
//! 4. `verify` compares source and target (key counts and a sample, or every key).
//!
//! If the replication link breaks while streaming, the engine records `LinkLost`, waits until the
//! target has answered everything sent, and reconnects with `PSYNC <replid> <applied+1>`: the
//! source continues exactly after the last applied byte (`LinkResumed`). A restarted job does the
//! same from its last `Checkpoint` ([`EngineJob::resume`]).
//!
//! Cancellation is a race at the top of [`run_with`]: whichever phase is running is dropped, which
//! closes its sockets, and a source pause is then released explicitly.
//!
//! Events, in order: `SnapshotStarted`, `SnapshotProgress`*, `SnapshotCompleted`; then in live
//! mode `StreamingStarted`, `Checkpoint`* (and `LinkLost`/`LinkResumed`), `CutoverStarted` (auto
//! cutover only: the API records a manual one); then `VerificationCompleted` (unless `verify:
//! none`) and, in live mode, `CutoverCompleted`. A job resumed by partial resync starts with
//! `LinkResumed` instead of the snapshot events.

mod adapt;
mod conn;
mod error;
mod from_file;
mod load;
mod snapshot;
mod stream;
mod verify;
mod verify_file;
mod verify_modules;
mod verify_paged;
mod writer;

pub use conn::{Conn, ConnError};
pub use error::EngineError;
pub use from_file::run_from_file;
pub use load::{load_rdb_file, LoadSummary};
pub use writer::WriterConfig;

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;
use uuid::Uuid;

use crate::rdb::version::rdb_version_for_version_string;
use crate::redis_url::RedisUrl;
use crate::replication::{LinkConfig, ReplicaLink, SyncStart, Transfer};
use crate::spec::{MigrationSpec, Mode, Verify};
use crate::store::event::{Link, ResumeKind};
use crate::store::EventKind;

/// Everything the engine needs to run one migration.
#[derive(Debug, Clone)]
pub struct EngineJob {
    pub migration_id: Uuid,
    /// The spec with real credentials (from the encrypted credential store, not from the log).
    pub spec: MigrationSpec,
    /// Where to continue, folded from the last `Checkpoint`; `None` for a fresh start.
    pub resume: Option<ResumePoint>,
}

/// The last durable progress of a job, as recorded in its `Checkpoint` events.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ResumePoint {
    pub replid: String,
    pub applied_offset: i64,
}

/// Signals from the API to a running engine.
#[derive(Debug, Clone, Default)]
pub struct Controls {
    /// Stop at the next safe point, release any source pause, return [`EngineError::Cancelled`].
    pub cancel: CancellationToken,
    /// Start the cutover (live mode). The supervisor has already recorded `CutoverStarted`.
    pub cutover: CancellationToken,
}

/// Channel on which the engine reports facts, in order.
pub type EventSender = mpsc::Sender<EventKind>;

/// Knobs with production defaults; tests shrink them (a 1 MB big-key threshold, say).
#[derive(Debug, Clone)]
pub struct Tuning {
    pub writer: WriterConfig,
    pub link: LinkConfig,
    /// Values whose serialized size exceeds this are written as chunked commands, not one RESTORE,
    /// so that no single command blocks the target for long.
    pub big_key_bytes: usize,
    /// Bounds of one command when a value is rewritten as commands.
    pub rewrite_chunk_bytes: usize,
    pub rewrite_chunk_items: usize,
    /// How often progress, checkpoints and lag are reported.
    pub report_interval: Duration,
    /// `CLIENT PAUSE <ms> WRITE` duration during cutover; released earlier when done.
    pub pause_ms: u64,
    /// How long cutover waits for the target to catch up.
    pub cutover_timeout: Duration,
    /// How long to keep trying to re-establish a broken replication link (partial resync).
    pub reconnect_timeout: Duration,
    /// Keys compared by `verify: sample`.
    pub sample_keys: usize,
    /// TTLs may differ by this much and still match (clocks move during the copy).
    pub ttl_tolerance_ms: i64,
}

impl Default for Tuning {
    fn default() -> Self {
        Tuning {
            writer: WriterConfig::default(),
            link: LinkConfig::default(),
            // A RESTORE of a few MB already costs the target tens of milliseconds.
            big_key_bytes: 8 * 1024 * 1024,
            rewrite_chunk_bytes: 1024 * 1024,
            rewrite_chunk_items: 1000,
            report_interval: Duration::from_secs(1),
            pause_ms: 30_000,
            cutover_timeout: Duration::from_secs(120),
            reconnect_timeout: Duration::from_secs(60),
            sample_keys: 1000,
            ttl_tolerance_ms: 2000,
        }
    }
}

/// Runs one migration to its end. See the module docs for the contract.
pub async fn run(
    job: EngineJob,
    events: EventSender,
    controls: Controls,
) -> Result<(), EngineError> {
    run_with(job, events, controls, Tuning::default()).await
}

/// [`run`] with explicit [`Tuning`].
pub async fn run_with(
    job: EngineJob,
    events: EventSender,
    controls: Controls,
    tuning: Tuning,
) -> Result<(), EngineError> {
    let paused = Arc::new(AtomicBool::new(false));
    // A file source has no server to replicate from; the supervisor runs those through
    // [`run_from_file`] instead.
    let Some(source_url) = job.spec.source.url().cloned() else {
        return Err(EngineError::Unsupported(
            "this migration's source is an RDB file, which loads through run_from_file".into(),
        ));
    };
    let cancel = controls.cancel.clone();
    let migration = Migration {
        source_url: source_url.clone(),
        job,
        reporter: Reporter { events },
        controls,
        tuning,
        paused: paused.clone(),
    };
    let result = tokio::select! {
        biased;
        _ = cancel.cancelled() => Err(EngineError::Cancelled),
        r = migration.run() => r,
    };
    // Every outcome releases a pause we set: success, failure and cancel alike.
    if paused.load(Ordering::Acquire) {
        release_pause(&source_url).await;
    }
    result
}

/// `CLIENT UNPAUSE` on a fresh connection (the one that paused may be mid-call or gone). Best
/// effort: if the source is unreachable the pause still expires by itself after `pause_ms`.
async fn release_pause(source: &RedisUrl) {
    let attempt = async {
        let mut conn = Conn::connect(source).await.ok()?;
        conn.call_ok(&["CLIENT", "UNPAUSE"]).await.ok()
    };
    if tokio::time::timeout(Duration::from_secs(10), attempt)
        .await
        .ok()
        .flatten()
        .is_none()
    {
        tracing::warn!(source = %source, "could not release the source's write pause; it expires by itself");
    }
}

/// Sends events; a closed channel means nobody records this job any more, so the job stops.
pub(crate) struct Reporter {
    events: EventSender,
}

impl Reporter {
    pub async fn emit(&self, kind: EventKind) -> Result<(), EngineError> {
        self.events
            .send(kind)
            .await
            .map_err(|_| EngineError::EventsClosed)
    }
}

/// What the engine learned about the two servers before starting.
#[derive(Debug, Clone)]
pub(crate) struct Servers {
    pub source_version: String,
    pub target_version: String,
    /// The highest RDB version the target accepts in a DUMP payload.
    pub target_rdb: u16,
}

struct Migration {
    job: EngineJob,
    /// The source server (`job.spec.source` is always a URL here).
    source_url: RedisUrl,
    reporter: Reporter,
    controls: Controls,
    tuning: Tuning,
    paused: Arc<AtomicBool>,
}

impl Migration {
    async fn run(self) -> Result<(), EngineError> {
        let spec = &self.job.spec;
        let mut source = Conn::connect(&self.source_url)
            .await
            .map_err(EngineError::source)?;
        let mut target = Conn::connect(&spec.target.url)
            .await
            .map_err(EngineError::target)?;
        let source_version = server_version(&mut source)
            .await
            .map_err(EngineError::source)?;
        let target_version = server_version(&mut target)
            .await
            .map_err(EngineError::target)?;
        let servers = Servers {
            target_rdb: rdb_version_for_version_string(&target_version).unwrap_or(9),
            source_version,
            target_version,
        };
        tracing::info!(
            source = %self.source_url, target = %spec.target.url,
            source_version = %servers.source_version, target_version = %servers.target_version,
            "migration starting"
        );

        let resume = self
            .job
            .resume
            .as_ref()
            .map(|r| (r.replid.as_str(), r.applied_offset));
        let mut link = ReplicaLink::connect(&self.source_url, self.tuning.link, resume)
            .await
            .map_err(EngineError::from_link)?;
        let writer_conn = Conn::connect(&spec.target.url)
            .await
            .map_err(EngineError::target)?;

        let (replid, offset) = match link.start().clone() {
            SyncStart::Full {
                replid,
                offset,
                transfer,
            } => {
                if self.job.resume.is_some() {
                    self.reporter
                        .emit(EventKind::LinkResumed {
                            link: Link::Source,
                            kind: ResumeKind::Full,
                            reason: "the source could not continue from the checkpoint; copying a new snapshot".into(),
                        })
                        .await?;
                }
                let (diskless, total) = match transfer {
                    Transfer::Sized(len) => (false, Some(len)),
                    Transfer::Diskless { .. } => (true, None),
                };
                self.reporter
                    .emit(EventKind::SnapshotStarted {
                        replid: replid.clone(),
                        offset,
                        diskless,
                        rdb_bytes_total: total,
                        redo: self
                            .job
                            .resume
                            .as_ref()
                            .map(|_| "full snapshot".to_string()),
                    })
                    .await?;
                let mut writer = writer::Writer::new(
                    writer_conn,
                    self.tuning.writer,
                    spec.options.on_conflict,
                    offset,
                );
                let summary = snapshot::Snapshot {
                    link: &mut link,
                    writer: &mut writer,
                    target: &mut target,
                    reporter: &self.reporter,
                    tuning: &self.tuning,
                    servers: &servers,
                    on_conflict: spec.options.on_conflict,
                    rdb_bytes_total: total,
                }
                .run()
                .await?;
                tracing::info!(
                    rdb_bytes = summary.rdb_bytes,
                    keys_written = summary.keys_written,
                    keys_skipped = summary.keys_skipped,
                    keys_expired = summary.keys_expired,
                    keys_rewritten = summary.keys_rewritten,
                    ms = summary.duration.as_millis() as u64,
                    "snapshot applied"
                );
                self.reporter
                    .emit(EventKind::SnapshotCompleted {
                        rdb_bytes: summary.rdb_bytes,
                        keys_written: summary.keys_written,
                        keys_skipped: summary.keys_skipped,
                        keys_expired: summary.keys_expired,
                        keys_rewritten: summary.keys_rewritten,
                        duration_ms: summary.duration.as_millis() as u64,
                    })
                    .await?;
                if spec.mode == Mode::Snapshot {
                    drop(link);
                    drop(writer);
                    return self.verify(&mut source, &mut target, &servers).await;
                }
                return self
                    .stream(link, writer, source, target, servers, replid, offset)
                    .await;
            }
            SyncStart::Partial { replid, offset } => {
                self.reporter
                    .emit(EventKind::LinkResumed {
                        link: Link::Source,
                        kind: ResumeKind::Partial,
                        reason: format!("continued from applied offset {offset}"),
                    })
                    .await?;
                (replid, offset)
            }
        };
        let writer = writer::Writer::new(
            writer_conn,
            self.tuning.writer,
            spec.options.on_conflict,
            offset,
        );
        self.stream(link, writer, source, target, servers, replid, offset)
            .await
    }

    #[allow(clippy::too_many_arguments)]
    async fn stream(
        &self,
        mut link: ReplicaLink,
        mut writer: writer::Writer,
        mut source: Conn,
        mut target: Conn,
        servers: Servers,
        replid: String,
        offset: i64,
    ) -> Result<(), EngineError> {
        let spec = &self.job.spec;
        self.reporter
            .emit(EventKind::StreamingStarted {
                replid: replid.clone(),
                offset,
            })
            .await?;
        let mut replid = replid;
        let final_offset = loop {
            let streamed = stream::Streamer {
                link: &mut link,
                writer: &mut writer,
                source: &mut source,
                reporter: &self.reporter,
                controls: &self.controls,
                tuning: &self.tuning,
                replid: replid.clone(),
                auto_cutover: spec.options.auto_cutover,
                pause: spec.options.pause_source_writes_on_cutover,
                paused: &self.paused,
                target_rdb: servers.target_rdb,
            }
            .run()
            .await;
            match streamed {
                Ok(offset) => break offset,
                Err(EngineError::SourceLinkLost(cause)) => {
                    tracing::warn!(%cause, "replication link lost; resuming by partial resync");
                    self.reporter
                        .emit(EventKind::LinkLost {
                            link: Link::Source,
                            cause: cause.clone(),
                        })
                        .await?;
                    // Everything sent must be answered before we ask the source to continue
                    // from the applied offset: then nothing is applied twice or skipped.
                    writer.drain().await?;
                    let applied = writer.applied_offset();
                    link = self.reconnect(&replid, applied, &cause).await?;
                    if let SyncStart::Partial { replid: id, .. } = link.start() {
                        replid = id.clone();
                    }
                    self.reporter
                        .emit(EventKind::LinkResumed {
                            link: Link::Source,
                            kind: ResumeKind::Partial,
                            reason: format!("continued from applied offset {applied}"),
                        })
                        .await?;
                }
                Err(other) => return Err(other),
            }
        };
        drop(link);
        drop(writer);
        self.verify(&mut source, &mut target, &servers).await?;
        if self.paused.swap(false, Ordering::AcqRel) {
            source
                .call_ok(&["CLIENT", "UNPAUSE"])
                .await
                .map_err(EngineError::source)?;
        }
        tracing::info!(final_offset, "cutover completed");
        self.reporter
            .emit(EventKind::CutoverCompleted { final_offset })
            .await
    }

    /// Reconnects the replication link after it broke, asking to continue from `applied`.
    /// Retries for `reconnect_timeout`; a source that can only offer a full resync (its backlog no
    /// longer holds our offset) ends the job: a second snapshot over live data is not attempted.
    async fn reconnect(
        &self,
        replid: &str,
        applied: i64,
        cause: &str,
    ) -> Result<ReplicaLink, EngineError> {
        let deadline = tokio::time::Instant::now() + self.tuning.reconnect_timeout;
        let url = &self.source_url;
        loop {
            match ReplicaLink::connect(url, self.tuning.link, Some((replid, applied))).await {
                Ok(link) if matches!(link.start(), SyncStart::Partial { .. }) => return Ok(link),
                Ok(_) => {
                    return Err(EngineError::SourceLinkLost(format!(
                        "{cause}; the source can no longer continue from offset {applied} (its \
                         replication backlog moved on; raise repl-backlog-size) and would send a \
                         new snapshot: start a new migration"
                    )))
                }
                Err(e) if tokio::time::Instant::now() >= deadline => {
                    return Err(EngineError::SourceLinkLost(format!(
                        "{cause}; reconnecting failed for {}s: {e}",
                        self.tuning.reconnect_timeout.as_secs()
                    )))
                }
                Err(_) => tokio::time::sleep(Duration::from_millis(500)).await,
            }
        }
    }

    async fn verify(
        &self,
        source: &mut Conn,
        target: &mut Conn,
        servers: &Servers,
    ) -> Result<(), EngineError> {
        let mode = self.job.spec.options.verify;
        if mode == Verify::None {
            return Ok(());
        }
        let report = verify::Verifier {
            source,
            target,
            servers,
            tuning: &self.tuning,
            mode,
        }
        .run()
        .await?;
        let clean = report.is_clean();
        let summary = format!(
            "{} checked, {} missing, {} different, {} extra{}",
            report.checked,
            report.missing,
            report.different,
            report.extra,
            report
                .problems
                .first()
                .map(|p| format!("; first: `{}` (db {}, {:?})", p.key, p.db, p.difference))
                .unwrap_or_default()
        );
        self.reporter
            .emit(EventKind::VerificationCompleted { report })
            .await?;
        if clean {
            Ok(())
        } else {
            Err(EngineError::VerificationFailed(summary))
        }
    }
}

async fn server_version(conn: &mut Conn) -> Result<String, ConnError> {
    let info = conn.info("server").await?;
    Ok(info
        .get("redis_version")
        .or_else(|| info.get("valkey_version"))
        .cloned()
        .unwrap_or_default())
}
