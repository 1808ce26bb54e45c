//! The transfer engine: full sync, live streaming, cutover and verification.
//!
//! The engine is started by the `jobs` supervisor, one tokio task per migration. It never touches the
//! state that the API reads: everything it has to say goes out as [`EventKind`]s on the `events`
//! channel, in order, and the supervisor appends them to the log. When [`run`] returns, the
//! supervisor records the final fact: `MigrationCompleted` for `Ok`, `MigrationCancelled` for
//! [`EngineError::Cancelled`], `MigrationFailed` (with [`EngineError::code`]) otherwise.
//!
//! ## How a migration runs
//! 1. Admin connections to both servers learn their fork and version (`servers`: the target's
//!    decides which RDB version a DUMP payload may carry, which values and commands must be
//!    rewritten, and whether Valkey's `import_mode` keeps it from expiring keys meanwhile).
//! 2. The replication link ([`crate::replication`]) handshakes as a replica and receives the RDB.
//!    `snapshot` parses it as it streams and turns each key into a `RESTORE` (or into plain
//!    commands when the target cannot take the payload), written by the pipelined `writer`
//!    within a bounded window. Nothing is spooled to disk.
//! 3. In `live` mode, `stream` then replays the command stream in order, keeping transactions
//!    whole, rewriting what the target lacks (`translate`, `adapt`), and acknowledges to the source only the offset the target has *answered*. Cutover
//!    (manual, or automatic at zero lag) optionally pauses writes on the source, waits until the
//!    applied offset reaches the source's, and verifies.
//! 4. `verify` compares source and target (key counts and a sample, or every key).
//!
//! ## Faults and resume (see [`resume`])
//! Every streamed batch reaches the target inside one `MULTI … EXEC` that also sets the offset
//! key `ferry:offset:<migration id>` (db 0) to `<replid>:<offset>:<db>`, so the target itself
//! records exactly which writes it holds: that is what makes applying exactly-once.
//! - The source link breaks: `LinkLost`, wait until the target has answered everything sent,
//!   reconnect with backoff and `PSYNC <replid> <applied+1>` (`LinkResumed {kind: partial}`).
//! - The target connection breaks (or the target restarts): `LinkLost {link: target}`, reconnect,
//!   read the offset key (what survived, in-flight batches included or not), and ask the source
//!   to continue from there: the in-flight window is sent again with no gap and no duplicate.
//! - A restarted job starts from the later of its last `Checkpoint` and the offset key.
//! - The source cannot continue (backlog moved on, history lost): the snapshot is redone
//!   (`LinkResumed {kind: full}` with the reason), with `REPLACE`, and the target keys the new
//!   snapshot did not contain are deleted. An interrupted snapshot (the key says `snapshot`) is
//!   redone the same way; `SnapshotStarted.redo` says so.
//! - A failed-over source answering `+CONTINUE <new replid>` (psync2 history) is followed.
//! - A target error no retry can fix (OOM, NOPERM, WRONGTYPE) fails the job naming the
//!   command and key.
//!
//! ## A Redis Cluster source
//! [`run_with`] asks the source's `INFO cluster` first: a cluster is migrated by [`shards`], one
//! ordinary run ([`run_one`]) per shard, each with its own link, offsets, resume and offset key
//! (`ferry:offset:<id>:<shard>`), its verification and redo sweep scoped to the shard's slots
//! (the shape's `within_slots`), and one cutover over every master.
//!
//! Cancellation is a race at the top of [`run_with`]: whichever phase is running is dropped, which
//! closes its sockets, and a source pause is then released explicitly.
//!
//! Events, in order: `SnapshotRequested` (a fresh start), `SnapshotStarted`, `SnapshotProgress`*,
//! `SnapshotCompleted`; then in live
//! mode `StreamingStarted`, `Checkpoint`* (and `LinkLost`/`LinkResumed`), `CutoverStarted` (auto
//! cutover only: the API records a manual one); then `VerificationCompleted` (unless `verify:
//! none`) and, in live mode, `CutoverCompleted`. A job resumed by partial resync starts with
//! `LinkResumed` instead of the snapshot events. Cutover removes the offset key after the
//! verification, which leaves it out. With `options.acl` `copy` or `replace`, `AclDiffed` and
//! `AclCopied` come first (see `acl`). A dry run (`mode: dry_run`, see `dry_run`) emits
//! `SnapshotRequested`, `SnapshotStarted`, `SnapshotProgress`* and `DryRunCompleted`, and writes
//! nothing.
//!
//! A shaped migration (`options.filter`, `db_map`, `rename`: [`crate::shape`]) puts every key of
//! the snapshot and every command of the stream through one compiled [`crate::shape::Shape`]
//! (`snapshot`, `stream`), verifies through it (`verify`'s `shaped`), and reports what it left
//! behind as `KeysFiltered` after `SnapshotCompleted` and next to checkpoints. The offset key then
//! records the *source's* db (the writer's `stream_db`), which a db map may send elsewhere.
//!
//! A Redis Cluster target (`cluster_enabled:1`) takes the same path: the writer routes every key
//! to the master of its slot and streams in per-slot transactions with per-slot offset keys, the
//! offset mark becomes the cluster's base key, and verification reads through the routed client
//! (see [`cluster_target`]).

mod acl;
mod adapt;
mod ask_source;
mod cluster_target;
mod dry_run;
mod error;
mod from_file;
pub mod ha_guard;
mod import_mode;
pub mod inventory;
mod load;
mod pause;
pub mod rate;
mod recover;
mod relay;
mod relay_observe;
mod relay_session;
mod relay_target;
pub mod resume;
mod scan;
mod servers;
mod shards;
mod snapshot;
mod stream;
mod topology;
mod translate;
mod translate_lua;
#[cfg(test)]
mod translate_tests;
mod verify;
mod window;
mod writer;

pub use error::EngineError;
pub use from_file::run_from_file;
pub use inventory::TargetBefore;
pub use load::{flush_target, load_rdb_file, LoadSummary};
pub use scan::ScanTuning;
pub use writer::WriterConfig;

use ask_source::snapshot_request;
pub(crate) use servers::{server_version, Servers};

use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;
use uuid::Uuid;

use crate::client::lease::LeaseToken;
use crate::client::Conn;
pub use crate::model::PriorTransfer;
use crate::model::{EventKind, Link, ResumeKind, ResumePoint, VerificationReport};
use crate::relay::RelayHub;
use crate::replication::{LinkConfig, ReplicaLink, SyncStart, Transfer};
use crate::spec::{MigrationSpec, Mode, OnConflict, SourceRead, TransferKind, Verify};
use crate::transport::Peer;

/// Everything the engine needs to run one migration.
#[derive(Debug, Clone)]
pub struct EngineJob {
    pub migration_id: Uuid,
    /// The spec with real credentials (from the encrypted credential store, not from the log).
    pub spec: MigrationSpec,
    /// Where to continue, folded from the last `Checkpoint`; `None` for a fresh start.
    pub resume: Option<ResumePoint>,
    /// The transfer an earlier run of this job chose (from its `TransferChosen`): a restarted
    /// job keeps it. `None` for a fresh start.
    pub transfer: Option<PriorTransfer>,
    /// What the target held before the migration's first write: what a redone snapshot must
    /// leave alone (see [`resume`]).
    pub before: TargetBefore,
    /// The target's lease this migration holds, put back at once when a flush removes it.
    pub lease: Option<LeaseToken>,
    /// What the filter left behind so far (snapshot keys, stream commands), from the last
    /// `KeysFiltered`: a restarted job goes on counting from there.
    pub filtered: (u64, u64),
    /// `source.read: scan`: the source's `notify-keyspace-events` an earlier run of this job
    /// recorded before setting it (and did not put back): this run puts it back at its end.
    pub notifications_before: Option<String>,
    /// A cluster source: each shard's last `Checkpoint`, by shard name (see [`shards`]).
    pub shard_resume: std::collections::BTreeMap<String, ResumePoint>,
}

impl EngineJob {
    /// A fresh job with nothing known about the target before it (a redo then fails rather than
    /// guess) and no lease.
    pub fn new(migration_id: Uuid, spec: MigrationSpec) -> EngineJob {
        EngineJob {
            migration_id,
            spec,
            resume: None,
            before: TargetBefore::Unknown,
            lease: None,
            transfer: None,
            filtered: (0, 0),
            notifications_before: None,
            shard_resume: Default::default(),
        }
    }
}

/// Signals from the API to a running engine.
#[derive(Debug, Clone)]
pub struct Controls {
    /// Stop at the next safe point, release any source pause, return [`EngineError::Cancelled`].
    pub cancel: CancellationToken,
    /// Start the cutover (live mode). The supervisor has already recorded `CutoverStarted`.
    pub cutover: CancellationToken,
    /// The user's rate limits as last changed while running (`LimitsChanged`); `None`: as the
    /// spec says. The engine picks a change up before its next write.
    pub limits: Arc<tokio::sync::watch::Sender<Option<crate::spec::Limits>>>,
}

impl Default for Controls {
    fn default() -> Self {
        Controls {
            cancel: CancellationToken::new(),
            cutover: CancellationToken::new(),
            limits: Arc::new(tokio::sync::watch::Sender::new(None)),
        }
    }
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
    /// The window of one `CLIENT PAUSE <ms> WRITE` during cutover: renewed every third of it
    /// until the target has caught up, so it is also how long the pause of a Ferry that died
    /// lasts at most.
    pub pause_ms: u64,
    /// How long cutover waits for the target to catch up.
    pub cutover_timeout: Duration,
    /// How long to keep trying to re-establish a broken replication link (partial resync).
    pub reconnect_timeout: Duration,
    /// Keys compared by `verify: sample`.
    pub sample_keys: usize,
    /// TTLs may differ by this much and still match (clocks move during the copy).
    pub ttl_tolerance_ms: i64,
    /// The relay listener (`transfer: relay`), shared by every job that uses the same `Tuning`.
    pub relay: Arc<RelayHub>,
    /// How long a fresh relay waits for its target to connect before `auto` falls back to
    /// restore (an explicit relay fails instead).
    pub relay_connect_timeout: Duration,
    /// The largest value held whole in memory (see `[transfer]` in the config).
    pub max_whole_value_bytes: u64,
    /// The HA guard's knobs (see [`ha_guard`]).
    pub ha_guard: ha_guard::GuardSettings,
    /// The scan reader (`source.read: scan`).
    pub scan: ScanTuning,
}

impl Tuning {
    /// The production defaults with the operator's settings.
    pub fn from_settings(
        relay: crate::relay::RelaySettings,
        transfer: &crate::config::TransferSettings,
    ) -> Tuning {
        Tuning {
            relay: RelayHub::new(relay),
            max_whole_value_bytes: transfer.max_whole_value_bytes,
            ha_guard: ha_guard::GuardSettings {
                replica_lag_secs: transfer.ha_guard_replica_lag_secs,
                min_ops_per_sec: transfer.ha_guard_min_ops_per_sec,
                ..ha_guard::GuardSettings::default()
            },
            ..Tuning::default()
        }
    }
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
            pause_ms: 10_000,
            cutover_timeout: Duration::from_secs(120),
            reconnect_timeout: Duration::from_secs(60),
            sample_keys: 1000,
            ttl_tolerance_ms: 2000,
            relay: RelayHub::new(crate::relay::RelaySettings::default()),
            relay_connect_timeout: Duration::from_secs(15),
            max_whole_value_bytes: 512 * 1024 * 1024,
            ha_guard: ha_guard::GuardSettings::default(),
            scan: ScanTuning::default(),
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
    // A file source has no server to replicate from; the supervisor runs those through
    // [`run_from_file`] instead.
    let Some(source_endpoint) = job.spec.source.endpoint() else {
        return Err(EngineError::Unsupported(
            "this migration's source is an RDB file, which loads through run_from_file".into(),
        ));
    };
    // TLS files are read here, once: a missing or bad file fails the start, and reconnects
    // reuse what was loaded.
    let source = Peer::new(source_endpoint).map_err(|e| EngineError::source(e.into()))?;
    // A Redis Cluster source is one run per shard (see [`shards`]), each the run below.
    if shards::is_cluster(&source).await? {
        return shards::run(job, events, controls, tuning).await;
    }
    run_one(job, source, events, controls, tuning, None).await
}

/// One run against one source server: the whole migration of a standalone source, or one shard
/// of a cluster source (`shard`: its name and slots, which scope its offset key, and its
/// verification and redo sweep, to that shard; see [`shards`]).
pub(crate) async fn run_one(
    job: EngineJob,
    source: Peer,
    events: EventSender,
    controls: Controls,
    tuning: Tuning,
    shard: Option<shards::Scope>,
) -> Result<(), EngineError> {
    // The API refuses a shape that cannot work; a spec from an older log is checked again.
    let shape = job
        .spec
        .shape()
        .map_err(|e| EngineError::Unsupported(format!("`{}`: {}", e.field, e.detail)))?;
    let shape = match &shard {
        Some(scope) => shape.within_slots(scope.ranges.clone()),
        None => shape,
    };
    let offset_key = match &shard {
        Some(scope) => shards::offset_key(job.migration_id, &scope.shard.name),
        None => resume::offset_key(job.migration_id),
    };
    let target = Peer::new(&job.spec.target).map_err(|e| EngineError::target(e.into()))?;
    let target_for_cleanup = target.clone();
    let source_for_cleanup = source.clone();
    let notify_restore = scan::NotifySlot::default();
    let cancel = controls.cancel.clone();
    let release_slot = Arc::new(Mutex::new(None));
    let reporter = Reporter {
        events: events.clone(),
    };
    // A shard of a cluster source writes through the migration's one throttle.
    let throttle = match &shard {
        Some(scope) => scope.throttle.clone(),
        None => rate::Throttle::new(job.spec.options.limits, &controls.limits),
    };
    let migration = Run {
        // A restarted job goes on counting from what the log says.
        filtered: stream::FilterCounts::resumed(job.filtered),
        throttle,
        link_addr: Arc::default(),
        events_for_guard: events.clone(),
        offset_key,
        shard: shard.map(|scope| scope.shard),
        source,
        target,
        job,
        reporter: Reporter { events },
        controls,
        tuning,
        paused: Mutex::new(None),
        release_slot: release_slot.clone(),
        import_mode: Arc::default(),
        shape,
        notify_restore: notify_restore.clone(),
        target_cluster: Default::default(),
    };
    if migration.job.spec.mode == Mode::DryRun {
        return migration.dry_run(cancel).await;
    }
    let import = migration.import_mode.clone();
    // Whichever way this ends (success, failure, cancel, or this future being dropped), the
    // run is dropped with it, and a source pause it still holds is lifted from its `Drop`.
    let result = tokio::select! {
        biased;
        _ = cancel.cancelled() => Err(EngineError::Cancelled),
        r = migration.run() => r,
    };
    // A relay's target is a replica of Ferry until released: every way out releases it, so that
    // it is never left replicating from an address that no longer answers.
    let release = release_slot
        .lock()
        .unwrap_or_else(|p| p.into_inner())
        .take();
    if let Some(release) = release {
        let why = match &result {
            Err(EngineError::Cancelled) => "cancel".to_string(),
            Err(e) => format!("failure: {}", e.code()),
            Ok(()) => "end".to_string(),
        };
        if let Some(restored) = release.run_bounded(&why).await {
            let _ = reporter
                .emit(EventKind::TargetReleased {
                    reason: why,
                    restored,
                })
                .await;
        }
    }
    // Keyspace notifications a scan reader turned on are put back as they were.
    scan::put_back_notifications(&source_for_cleanup, &notify_restore, &reporter).await;
    // An import mode we switched on is switched off again.
    let import = *import.lock().unwrap_or_else(|e| e.into_inner());
    import_mode::end(&target_for_cleanup, import).await;
    result
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

    /// Records a verification report, then turns a dirty one into the job's failure, with the
    /// counts and the first problem key in the message. Server and file sources end the same way.
    pub async fn verification(&self, report: VerificationReport) -> Result<(), EngineError> {
        let failure = (!report.is_clean()).then(|| {
            format!(
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
            )
        });
        self.emit(EventKind::VerificationCompleted { report })
            .await?;
        match failure {
            None => Ok(()),
            Some(summary) => Err(EngineError::VerificationFailed(summary)),
        }
    }
}

/// One run of the engine for one migration: its job, its controls and what it reports through.
/// (Named apart from the migration aggregate, which is the record; this is the work.)
struct Run {
    /// The rate limits every writer of this run obeys.
    throttle: Arc<rate::Throttle>,
    /// The local address of the current replica link (the HA guard finds Ferry's own
    /// connection on the source by it).
    link_addr: Arc<Mutex<Option<std::net::SocketAddr>>>,
    events_for_guard: EventSender,
    /// `ferry:offset:<id>` on the target (see [`resume`]); `ferry:offset:<id>:<shard>` for a
    /// shard of a cluster source.
    offset_key: bytes::Bytes,
    /// The shard of a cluster source this run reads (`None`: a standalone source).
    shard: Option<crate::model::ShardRef>,
    job: EngineJob,
    /// The source server (`job.spec.source` is always a server here).
    source: Peer,
    target: Peer,
    reporter: Reporter,
    controls: Controls,
    tuning: Tuning,
    /// The source's write pause while the cutover holds it.
    paused: Mutex<Option<pause::SourcePause>>,
    /// How to release a relay's target, while it is a replica of Ferry.
    release_slot: Arc<Mutex<Option<relay_target::Release>>>,
    /// The target's import mode as this run set it, for [`run_with`] to undo at the end.
    import_mode: Arc<std::sync::Mutex<import_mode::ImportMode>>,
    /// The filter, db map and renames, compiled ([`crate::shape`]).
    shape: crate::shape::Shape,
    /// What the filter left behind, for `KeysFiltered`.
    filtered: stream::FilterCounts,
    /// A scan reader's source setting to put back at the end, for [`run_with`].
    notify_restore: scan::NotifySlot,
    /// The target is a Redis Cluster (see [`cluster_target`]), as its INFO said at the start.
    target_cluster: std::sync::atomic::AtomicBool,
}

/// How many snapshots in a row may be redone before the job gives up (a source whose backlog
/// cannot hold even the time one snapshot takes would loop forever).
const MAX_REDOS: u32 = 5;

impl Run {
    async fn run(self) -> Result<(), EngineError> {
        let spec = &self.job.spec;
        if spec.mode == Mode::Live && spec.options.on_conflict == OnConflict::Skip {
            return Err(EngineError::Unsupported(
                crate::spec::SKIP_IN_LIVE_MODE.into(),
            ));
        }
        let mut source = Conn::connect(&self.source)
            .await
            .map_err(EngineError::source)?;
        let mut target = Conn::connect(&self.target)
            .await
            .map_err(EngineError::target)?;
        // A shard run reads one node of a cluster on purpose; only it may.
        if self.shard.is_none() {
            topology::refuse_cluster(
                &mut source,
                Link::Source,
                "a run of one replication link (a cluster source is read shard by shard)",
            )
            .await?;
        }
        self.check_cluster_target(&mut target).await?;
        let source_version = server_version(&mut source)
            .await
            .map_err(EngineError::source)?;
        let mut servers = Servers::of_target(&mut target, spec.options.drop_field_ttls)
            .await
            .map_err(EngineError::target)?;
        servers.source_version = source_version.to_string();
        servers.source_keys = relay_target::total_keys(&mut source).await.ok();
        // Before the first write, so that the target's clients can log in once it holds data.
        self.carry_over_acl(&mut source, &mut target).await?;
        servers.import_mode = import_mode::begin(&mut target, &servers.target).await;
        *self.import_mode.lock().unwrap_or_else(|e| e.into_inner()) = servers.import_mode;
        tracing::info!(
            source = %spec.source, target = %spec.target.url,
            source_version = %servers.source_version, target_version = %servers.target_version,
            "migration starting"
        );

        if spec.source.read() == SourceRead::Scan {
            // The scan reader writes through the same throttle; the guard watches the source's
            // replicas for it too (it has no replica link of its own, so no buffer to watch).
            let _guard = self.start_guard();
            return scan::ScanReader {
                run: &self,
                source: &mut source,
                target: &mut target,
                servers: &servers,
            }
            .run()
            .await;
        }
        if self
            .choose_transfer(&mut source, &mut target, &servers)
            .await?
            == TransferKind::Relay
        {
            return Ok(());
        }
        // The restore path writes through the throttle: the HA guard watches the source and
        // slows it down while the source's replicas lag. It ends with this run.
        let _guard = self.start_guard();

        // The checkpoint from the log, corrected by what the target itself says it holds.
        let mark = self.read_target_mark(&mut target).await?;
        let mut start = resume::decide(self.job.resume.clone(), mark);
        let mut redos = 0;
        loop {
            match self
                .attempt(&mut source, &mut target, &servers, start.clone())
                .await
            {
                Err(EngineError::ResyncNeeded(reason)) if redos < MAX_REDOS => {
                    redos += 1;
                    tracing::warn!(%reason, redos, "redoing the snapshot");
                    // The servers may be restarting: wait for both (admin connections too).
                    source = self.reconnect_conn(Link::Source, &reason).await?;
                    target = self.reconnect_conn(Link::Target, &reason).await?;
                    start = resume::Start {
                        resume: None,
                        redo: Some(reason),
                        db: 0,
                    };
                }
                other => return other,
            }
        }
    }

    /// Decides between relay and restore (or keeps an earlier run's choice), records it, and runs
    /// the relay when that is the choice. Returns the transfer still to run: `Relay` means the
    /// relay ran to its end, `Restore` that the restore path follows (chosen, or fallen back to).
    async fn choose_transfer(
        &self,
        source: &mut Conn,
        target: &mut Conn,
        servers: &Servers,
    ) -> Result<TransferKind, EngineError> {
        if self.cluster_target() {
            return self.cluster_transfer().await;
        }
        let spec = &self.job.spec;
        let (original, resumed) = match &self.job.transfer {
            Some(PriorTransfer {
                kind: TransferKind::Restore,
                ..
            }) => return Ok(TransferKind::Restore),
            Some(PriorTransfer {
                kind: TransferKind::Relay,
                relay_target,
            }) => {
                let original = match relay_target {
                    Some(o) => o.clone(),
                    None => relay_target::read_settings(target)
                        .await
                        .map_err(EngineError::target)?,
                };
                (original, true)
            }
            None if spec.options.limits.any() => {
                // The spec check refuses `relay` with limits; `auto` takes the restore path.
                let reason = "auto: options.limits caps Ferry's own writes, and a relay's target \
                              loads the source's RDB at its own pace, so every key is restored"
                    .to_string();
                self.reporter
                    .emit(EventKind::TransferChosen {
                        transfer: TransferKind::Restore,
                        reason,
                        relay_target: None,
                    })
                    .await?;
                return Ok(TransferKind::Restore);
            }
            None => {
                let facts =
                    relay_target::gather_facts(spec, source, target, self.tuning.relay.settings())
                        .await;
                let choice = crate::relay::choice::choose(&facts);
                if let Some(missing) = choice.refusal() {
                    return Err(EngineError::Unsupported(format!(
                        "transfer relay: {missing}"
                    )));
                }
                let original = match choice.transfer {
                    TransferKind::Relay => Some(
                        relay_target::read_settings(target)
                            .await
                            .map_err(EngineError::target)?,
                    ),
                    TransferKind::Restore => None,
                };
                tracing::info!(transfer = choice.transfer.as_str(), reason = %choice.reason, "transfer chosen");
                self.reporter
                    .emit(EventKind::TransferChosen {
                        transfer: choice.transfer,
                        reason: choice.reason,
                        relay_target: original.clone(),
                    })
                    .await?;
                match original {
                    Some(original) => (original, false),
                    None => return Ok(TransferKind::Restore),
                }
            }
        };
        let outcome = relay::Relay {
            job: &self.job,
            source_peer: &self.source,
            target_peer: &self.target,
            reporter: &self.reporter,
            controls: &self.controls,
            tuning: &self.tuning,
            paused: &self.paused,
            release_slot: &self.release_slot,
            source,
            target,
            servers,
            original,
            resumed,
        }
        .run()
        .await?;
        match outcome {
            relay::RelayOutcome::Completed => Ok(TransferKind::Relay),
            relay::RelayOutcome::FellBack(reason) => {
                self.reporter
                    .emit(EventKind::TransferChosen {
                        transfer: TransferKind::Restore,
                        reason,
                        relay_target: None,
                    })
                    .await?;
                Ok(TransferKind::Restore)
            }
        }
    }

    /// One pass: a replication link from `start`, a snapshot if the source sends one, then
    /// streaming. Returns [`EngineError::ResyncNeeded`] when the job must start over with a
    /// snapshot (the source could not continue, or the target lost data).
    async fn attempt(
        &self,
        source: &mut Conn,
        target: &mut Conn,
        servers: &Servers,
        start: resume::Start,
    ) -> Result<(), EngineError> {
        let spec = &self.job.spec;
        let from = start
            .resume
            .as_ref()
            .map(|r| (r.replid.as_str(), r.applied_offset));
        if from.is_none() {
            // The source answers at once but may wait seconds before its snapshot begins: say
            // what is happening meanwhile.
            self.reporter.emit(snapshot_request(source).await).await?;
        }
        let mut link = ReplicaLink::connect(&self.source, self.tuning.link, from)
            .await
            .map_err(EngineError::from_link)?;
        self.note_link(&link);
        let mut writer_conn = Conn::connect(&self.target)
            .await
            .map_err(EngineError::target)?;
        servers.prepare_writer(&mut writer_conn).await?;

        let (replid, offset) = match link.start().clone() {
            SyncStart::Full {
                replid,
                offset,
                transfer,
            } => {
                let redo = match (&start.resume, start.redo) {
                    (Some(point), _) => Some(format!(
                        "the source could not continue from applied offset {} (its backlog no \
                         longer holds it, or its history changed); copying a new snapshot",
                        point.applied_offset
                    )),
                    (None, redo) => redo,
                };
                if let Some(reason) = &redo {
                    self.reporter
                        .emit(EventKind::LinkResumed {
                            link: Link::Source,
                            kind: ResumeKind::Full,
                            reason: reason.clone(),
                        })
                        .await?;
                }
                // Marked before the first key lands: a crash from here on redoes the snapshot.
                self.write_target_mark(target, resume::SNAPSHOT_MARK)
                    .await?;
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
                        redo: redo.as_ref().map(|r| {
                            format!(
                                "full snapshot: {r}; keys are written with REPLACE and target \
                                 keys absent from the new snapshot are deleted"
                            )
                        }),
                        keys_total: servers.source_keys,
                    })
                    .await?;
                // A redo meets our own earlier copies: those are replaced, and only those. What
                // the target held before the migration keeps its policy.
                let on_conflict = spec.options.on_conflict;
                let preexisting = match &redo {
                    Some(reason) => {
                        Some(self.job.before.keys(reason, self.job.migration_id).await?)
                    }
                    None => None,
                };
                let mut writer =
                    writer::Writer::new(writer_conn, self.tuning.writer, on_conflict, offset);
                writer.set_throttle(self.throttle.clone());
                self.writer_for_cluster(&mut writer, false).await?;
                let mut written = redo.as_ref().map(|_| resume::KeySet::default());
                let summary = snapshot::Snapshot {
                    link: &mut link,
                    writer: &mut writer,
                    target,
                    reporter: &self.reporter,
                    tuning: &self.tuning,
                    servers,
                    on_conflict,
                    rdb_bytes_total: total,
                    offset_key: Some(&self.offset_key),
                    written: written.as_mut(),
                    preexisting: preexisting.as_ref(),
                    lease: self.job.lease.as_ref(),
                    shape: &self.shape,
                }
                .run()
                .await;
                let summary = match summary {
                    Ok(summary) => summary,
                    // A link that breaks mid-snapshot leaves part of a copy: redo it.
                    Err(EngineError::SourceLinkLost(cause)) => {
                        return self.snapshot_interrupted(Link::Source, cause).await
                    }
                    Err(EngineError::TargetLinkLost(cause)) => {
                        return self.snapshot_interrupted(Link::Target, cause).await
                    }
                    Err(other) => return Err(other),
                };
                if let (Some(written), Some(preexisting)) = (&written, &preexisting) {
                    let removed = self.sweep_target(target, written, preexisting).await?;
                    tracing::info!(
                        removed,
                        "redone snapshot: stale keys of the earlier copy deleted"
                    );
                }
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
                        keys_empty: summary.keys_empty,
                    })
                    .await?;
                if self.shape.filters() {
                    self.filtered
                        .snapshot_keys
                        .store(summary.keys_filtered, std::sync::atomic::Ordering::Relaxed);
                    self.reporter.emit(self.filtered.event()).await?;
                }
                if spec.mode == Mode::Snapshot {
                    drop(link);
                    drop(writer);
                    self.verify(source, target, servers).await?;
                    return self.remove_target_mark(target).await;
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
        let mut writer = writer::Writer::new(
            writer_conn,
            self.tuning.writer,
            spec.options.on_conflict,
            offset,
        );
        writer.set_throttle(self.throttle.clone());
        self.writer_for_cluster(&mut writer, true).await?;
        // The offset key records the source's db; the connection goes to its mapped one.
        writer.select(self.shape.target_db(start.db)).await?;
        writer.note_stream_db(start.db);
        self.stream(link, writer, source, target, servers, replid, offset)
            .await
    }

    #[allow(clippy::too_many_arguments)]
    async fn stream(
        &self,
        mut link: ReplicaLink,
        mut writer: writer::Writer,
        source: &mut Conn,
        target: &mut Conn,
        servers: &Servers,
        replid: String,
        offset: i64,
    ) -> Result<(), EngineError> {
        let spec = &self.job.spec;
        // The key says where the target's data stands before any stream command lands; from
        // here on every batch moves it atomically with the data.
        let value = resume::mark_value(&replid, offset, writer.stream_db());
        self.write_target_mark(target, &value).await?;
        writer.track_offset(self.offset_key.clone(), replid.clone());
        self.reporter
            .emit(EventKind::StreamingStarted {
                replid: replid.clone(),
                offset,
            })
            .await?;
        let mut replid = replid;
        let mut window = window::WindowWatch::new(&spec.schedule);
        let final_offset = loop {
            let source_db = writer.stream_db();
            let streamed = stream::Streamer {
                link: &mut link,
                writer: &mut writer,
                source: &mut *source,
                reporter: &self.reporter,
                controls: &self.controls,
                tuning: &self.tuning,
                replid: replid.clone(),
                auto_cutover: spec.options.auto_cutover,
                window: &mut window,
                pause: spec.options.pause_source_writes_on_cutover,
                paused: &self.paused,
                source_peer: &self.source,
                guard_flush: self.job.before != TargetBefore::Empty
                    && spec.options.on_conflict != OnConflict::Flush,
                target_rdb: servers.target_rdb,
                target: servers.target_profile(),
                shape: &self.shape,
                source_db,
                filtered: &self.filtered,
            }
            .run()
            .await;
            let (lost, cause) = match streamed {
                Ok(offset) => break offset,
                Err(EngineError::SourceLinkLost(cause)) => (Link::Source, cause),
                Err(EngineError::SourceError(cause)) => (Link::Source, cause),
                Err(EngineError::TargetLinkLost(cause)) => (Link::Target, cause),
                Err(other) => return Err(other),
            };
            tracing::warn!(%cause, link = ?lost, "link lost while streaming; resuming");
            self.reporter
                .emit(EventKind::LinkLost {
                    link: lost,
                    cause: cause.clone(),
                })
                .await?;
            let (applied, db) = match lost {
                Link::Source => {
                    // Everything sent must be answered before we ask the source to continue
                    // from the applied offset: then nothing is applied twice or skipped.
                    writer.drain().await?;
                    if source.master_repl_offset().await.is_err() {
                        *source = self.reconnect_conn(Link::Source, &cause).await?;
                    }
                    // The writer's db is the stream's: everything sent has been answered.
                    (writer.applied_offset(), writer.stream_db())
                }
                Link::Target => {
                    // What was in flight may or may not have landed; the offset key, written
                    // in the same transaction as the data, says which.
                    *target = self.reconnect_conn(Link::Target, &cause).await?;
                    match self.read_target_mark(target).await? {
                        resume::TargetMark::Applied(point, db) => {
                            replid = point.replid;
                            (point.applied_offset, db)
                        }
                        _ => {
                            return Err(EngineError::ResyncNeeded(format!(
                                "{cause}; the target came back without the offset key (it lost                                  data)"
                            )))
                        }
                    }
                }
            };
            let (new_link, id) = self.reconnect(&replid, applied, &cause).await?;
            link = new_link;
            replid = id;
            let mut conn = self.reconnect_conn(Link::Target, &cause).await?;
            servers.prepare_writer(&mut conn).await?;
            writer =
                writer::Writer::new(conn, self.tuning.writer, spec.options.on_conflict, applied);
            writer.set_throttle(self.throttle.clone());
            self.writer_for_cluster(&mut writer, true).await?;
            writer.select(self.shape.target_db(db)).await?;
            writer.note_stream_db(db);
            writer.track_offset(self.offset_key.clone(), replid.clone());
            self.reporter
                .emit(EventKind::LinkResumed {
                    link: lost,
                    kind: ResumeKind::Partial,
                    reason: format!("continued from applied offset {applied}"),
                })
                .await?;
        };
        drop(link);
        drop(writer);
        if let Some(filtered) = self.filtered.moved() {
            self.reporter.emit(filtered).await?;
        }
        // The target has applied the final offset: the pause has done its work. It is kept
        // through the verification only when the migration asked for that.
        let held = self.paused.lock().unwrap_or_else(|p| p.into_inner()).take();
        let kept = match held {
            Some(pause) if !spec.options.pause_during_verification => {
                pause.release().await;
                None
            }
            other => other,
        };
        self.verify(source, target, servers).await?;
        self.remove_target_mark(target).await?;
        if let Some(pause) = kept {
            pause.release().await;
        }
        tracing::info!(final_offset, "cutover completed");
        self.reporter
            .emit(EventKind::CutoverCompleted { final_offset })
            .await
    }

    async fn verify(
        &self,
        source: &mut Conn,
        target: &mut Conn,
        servers: &Servers,
    ) -> Result<(), EngineError> {
        if self.cluster_target() {
            return self.verify_cluster(source).await;
        }
        let mode = self.job.spec.options.verify;
        if mode == Verify::None {
            return Ok(());
        }
        if self.shard.is_some() {
            // A shard may be read from a cluster replica (by choice, or after a failover), which
            // answers reads of its keys only on a READONLY connection (else `MOVED`).
            shards::read_only(source).await?;
        }
        let report = verify::Verifier {
            source,
            target,
            servers,
            tuning: &self.tuning,
            mode,
            offset_key: Some(&self.offset_key),
            sample_hint: None,
            shape: &self.shape,
        }
        .run()
        .await?;
        self.reporter.verification(report).await
    }
}
