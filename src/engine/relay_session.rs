//! One relay session: a target connection and the source link opened for it, from the target's
//! `PSYNC` to cutover or to a break.
//!
//! Both directions run in one loop: source bytes go to the target as they arrive (RDB chunks,
//! then the command stream), and the target's messages go back to the source (its
//! `REPLCONF ACK`s, and the bare newlines it sends while loading, which keep the source from
//! timing the link out). The target's ACK is the applied offset: it is what Ferry reports, what
//! the source is told, and what cutover waits for.

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use bytes::Bytes;

use super::error::EngineError;
use super::pause::SourcePause;
use super::relay::Relay;
use super::relay_observe::Observer;
use super::relay_target;
use super::Tuning;
use crate::model::{EventKind, ResumeKind};
use crate::relay::session::{TargetReader, TargetWriter};
use crate::relay::{RelayError, TargetMessage, TargetSession};
use crate::replication::{LinkError, RawItem, ReplicaLink, SyncStart, Transfer};
use crate::spec::Mode;

/// How often the target's offset is read while cutover waits for it (its own ACKs come once a
/// second, which would make every cutover a second longer).
const CUTOVER_POLL: Duration = Duration::from_millis(20);

/// A target that says nothing for this long while it loads is given up on (it sends a newline
/// every second while loading, and an ACK every second after).
const TARGET_SILENCE: Duration = Duration::from_secs(120);

/// What survives from one session to the next.
pub(crate) struct SessionState {
    pub sessions: u32,
    snapshots: u32,
    /// The job was restarted: its first session resumes something.
    resumed_job: bool,
    streaming_started: bool,
    /// A break happened since the last session got going.
    broke: bool,
    sample: BTreeMap<u32, Vec<Bytes>>,
    bytes_streamed: u64,
    sample_keys: usize,
    stream_over: usize,
    /// The target was set to load its first snapshot from the socket (`swapdb`), to be undone
    /// once that load is in.
    pub loads_from_socket: bool,
}

impl SessionState {
    pub fn new(tuning: &Tuning, resumed_job: bool) -> Self {
        SessionState {
            sessions: 0,
            snapshots: 0,
            resumed_job,
            streaming_started: false,
            broke: false,
            sample: BTreeMap::new(),
            bytes_streamed: 0,
            sample_keys: tuning.sample_keys,
            stream_over: tuning.big_key_bytes,
            loads_from_socket: false,
        }
    }

    /// The keys sampled from the last snapshot relayed (empty after a partial resync only).
    pub fn sample(&self) -> BTreeMap<u32, Vec<Bytes>> {
        self.sample.clone()
    }
}

/// A session that reached its end: cutover caught up (live), or the snapshot loaded (snapshot
/// mode). The connections are handed back so that the target is detached while still connected.
pub(crate) struct Finished {
    pub final_offset: i64,
    pub session: (TargetWriter, TargetReader, ReplicaLink),
}

pub(crate) struct Serve<'r, 'a> {
    pub relay: &'r mut Relay<'a>,
    pub state: &'r mut SessionState,
}

/// The source offset cutover waits for.
struct Goal {
    offset: i64,
    deadline: Instant,
}

fn target_lost(e: RelayError) -> EngineError {
    EngineError::TargetLinkLost(format!("relay: {e}"))
}

fn source_lost(e: LinkError) -> EngineError {
    match e {
        LinkError::Auth { .. } | LinkError::Refused { .. } => EngineError::from_link(e),
        other => EngineError::SourceLinkLost(other.to_string()),
    }
}

impl Serve<'_, '_> {
    pub async fn run(mut self, session: TargetSession) -> Result<Finished, EngineError> {
        self.state.sessions += 1;
        let psync = session.psync.clone();
        let peer = session.peer;
        let (mut tw, mut tr) = session.split();
        let r = &mut *self.relay;
        if !r.resumed && self.state.sessions == 1 {
            // The first session of a fresh job asks the source for its snapshot, as the restore
            // path does, and the phase can say what the source does meanwhile (a diskless source
            // may wait before it forks). (The target's own PSYNC names its old replid, so it
            // cannot tell.)
            let requested = super::snapshot_request(r.source).await;
            r.reporter.emit(requested).await?;
        }
        let link = ReplicaLink::connect(r.source_peer, r.tuning.link, psync.resume_point()).await;
        let mut link = match link {
            Ok(link) => link,
            Err(e) => {
                // The target logs it and asks again a second later.
                let _ = tw
                    .refuse(&format!("NOMASTERLINK Ferry cannot reach the source: {e}"))
                    .await;
                return Err(source_lost(e));
            }
        };
        tracing::info!(%peer, replid = %psync.replid, offset = psync.offset, start = ?link.start(), "relay: target session");
        let (replid, offset) = match link.start().clone() {
            SyncStart::Full {
                replid,
                offset,
                transfer,
            } => {
                if replid == "?" {
                    return Err(EngineError::Unsupported(
                        "the source answered only the legacy SYNC, which has no replication id \
                         for a relayed target to resume from; use transfer restore"
                            .into(),
                    ));
                }
                let loaded = self
                    .snapshot(
                        &mut link, &mut tw, &mut tr, &replid, offset, transfer, &psync,
                    )
                    .await?;
                if self.relay.job.spec.mode == Mode::Snapshot {
                    return Ok(Finished {
                        final_offset: loaded,
                        session: (tw, tr, link),
                    });
                }
                // A diskless source streams nothing until the first ACK after the RDB.
                link.send_ack(loaded).await.map_err(source_lost)?;
                (replid, loaded)
            }
            SyncStart::Partial { replid, offset } => {
                tw.continue_with(&replid).await.map_err(target_lost)?;
                if self.state.broke || (self.state.resumed_job && self.state.sessions == 1) {
                    self.state.broke = false;
                    let why = if self.state.sessions == 1 {
                        "Ferry restarted"
                    } else {
                        "the relay reconnected"
                    };
                    self.relay
                        .resumed_link(
                            ResumeKind::Partial,
                            format!(
                                "{why}: the target asked PSYNC {} {} and the source continued from \
                                 its backlog",
                                psync.replid, psync.offset
                            ),
                        )
                        .await?;
                }
                if self.relay.job.spec.mode == Mode::Snapshot {
                    // The target holds the snapshot already (a job restarted after the load).
                    return Ok(Finished {
                        final_offset: offset,
                        session: (tw, tr, link),
                    });
                }
                (replid, offset)
            }
        };
        let result = self
            .stream(&mut link, &mut tw, &mut tr, &replid, offset)
            .await;
        match result {
            Ok(final_offset) => Ok(Finished {
                final_offset,
                session: (tw, tr, link),
            }),
            Err(e) => {
                self.state.broke = true;
                Err(e)
            }
        }
    }

    /// Relays an RDB and waits until the target has loaded it; returns the offset it ACKed.
    #[allow(clippy::too_many_arguments)]
    async fn snapshot(
        &mut self,
        link: &mut ReplicaLink,
        tw: &mut TargetWriter,
        tr: &mut TargetReader,
        replid: &str,
        offset: i64,
        transfer: Transfer,
        psync: &crate::relay::session::PsyncRequest,
    ) -> Result<i64, EngineError> {
        self.state.snapshots += 1;
        let redo = (self.state.snapshots > 1 || self.state.resumed_job).then(|| {
            format!(
                "full snapshot: the target asked PSYNC {} {} and the source could not continue \
                 from there (a first sync, a backlog that moved on, or a load cut short); the \
                 target replaces its data with the new snapshot",
                psync.replid, psync.offset
            )
        });
        let (diskless, total) = match transfer {
            Transfer::Sized(len) => (false, Some(len)),
            Transfer::Diskless { .. } => (true, None),
        };
        self.relay
            .reporter
            .emit(EventKind::SnapshotStarted {
                replid: replid.to_string(),
                offset,
                diskless,
                rdb_bytes_total: total,
                redo,
                keys_total: self.relay.servers.source_keys,
            })
            .await?;
        let started = Instant::now();
        let mut observer = Observer::new(self.state.sample_keys, self.state.stream_over);
        let mark = tw.full_resync(replid, offset).await.map_err(target_lost)?;
        let mut last_report = Instant::now();
        let progress = |observer: &Observer, link: &ReplicaLink| EventKind::SnapshotProgress {
            rdb_bytes_read: link.rdb_bytes(),
            rdb_bytes_total: total,
            keys_written: observer.keys,
            keys_skipped: 0,
            keys_expired: 0,
        };
        loop {
            tokio::select! {
                item = link.next_raw() => match item.map_err(source_lost)? {
                    RawItem::Rdb(chunk) => {
                        tw.send(&chunk).await.map_err(target_lost)?;
                        observer.feed(&chunk);
                    }
                    RawItem::RdbDone => break,
                    RawItem::Stream(_) => {
                        return Err(EngineError::SourceLinkLost(
                            "stream data before the end of the snapshot".into(),
                        ))
                    }
                },
                message = tr.next() => {
                    self.forward_upstream(link, message.map_err(target_lost)?).await?;
                }
            }
            if last_report.elapsed() >= self.relay.tuning.report_interval {
                last_report = Instant::now();
                self.relay.reporter.emit(progress(&observer, link)).await?;
            }
        }
        tw.end_rdb(mark).await.map_err(target_lost)?;
        // The target loads the tail of the RDB, then ACKs the snapshot's offset.
        let loaded = loop {
            let message = tokio::time::timeout(TARGET_SILENCE, tr.next())
                .await
                .map_err(|_| {
                    EngineError::TargetLinkLost(format!(
                        "relay: the target said nothing for {}s while loading",
                        TARGET_SILENCE.as_secs()
                    ))
                })?
                .map_err(target_lost)?;
            match message {
                TargetMessage::Ack { offset } => break offset,
                other => {
                    self.forward_upstream(link, other).await?;
                }
            }
            if last_report.elapsed() >= self.relay.tuning.report_interval {
                last_report = Instant::now();
                self.relay.reporter.emit(progress(&observer, link)).await?;
            }
        };
        self.state.sample = observer.sample();
        let elapsed = started.elapsed();
        tracing::info!(
            rdb_bytes = link.rdb_bytes(),
            keys = observer.keys,
            ms = elapsed.as_millis() as u64,
            "relay: snapshot loaded by the target"
        );
        self.relay
            .reporter
            .emit(EventKind::SnapshotCompleted {
                rdb_bytes: link.rdb_bytes(),
                keys_written: observer.keys,
                keys_skipped: 0,
                keys_expired: 0,
                keys_rewritten: 0,
                duration_ms: elapsed.as_millis() as u64,
                // The target loads the RDB itself, and skips empty collections as it does so.
                keys_empty: 0,
            })
            .await?;
        if std::mem::take(&mut self.state.loads_from_socket) {
            relay_target::load_through_disk_unless_empty(self.relay.target)
                .await
                .map_err(EngineError::target)?;
        }
        Ok(loaded)
    }

    /// Forwards a target message upstream; returns the ACKed offset, if it was an ACK.
    async fn forward_upstream(
        &mut self,
        link: &mut ReplicaLink,
        message: TargetMessage,
    ) -> Result<Option<i64>, EngineError> {
        match message {
            TargetMessage::Ack { offset } => {
                link.send_ack(offset).await.map_err(source_lost)?;
                Ok(Some(offset))
            }
            TargetMessage::KeepAlive => {
                link.send_keepalive().await.map_err(source_lost)?;
                Ok(None)
            }
            TargetMessage::Other(text) => {
                tracing::debug!(%text, "relay: the target said something unexpected");
                Ok(None)
            }
        }
    }

    /// Relays the command stream until cutover has caught up; returns the final offset.
    async fn stream(
        &mut self,
        link: &mut ReplicaLink,
        tw: &mut TargetWriter,
        tr: &mut TargetReader,
        replid: &str,
        start: i64,
    ) -> Result<i64, EngineError> {
        // Once per run of the job: a restarted job may have died before it recorded it.
        if !self.state.streaming_started {
            self.state.streaming_started = true;
            self.relay
                .reporter
                .emit(EventKind::StreamingStarted {
                    replid: replid.to_string(),
                    offset: start,
                })
                .await?;
        }
        let mut acked = start;
        self.checkpoint(replid, acked).await?;
        let mut goal: Option<Goal> = None;
        let mut window = super::window::WindowWatch::new(&self.relay.job.spec.schedule);
        if self.relay.controls.cutover.is_cancelled() {
            goal = Some(self.begin_cutover().await?);
        }
        let mut report = tokio::time::interval(self.relay.tuning.report_interval);
        report.tick().await;
        let mut poll = tokio::time::interval(CUTOVER_POLL);
        let mut last_heard = Instant::now();
        loop {
            if let Some(g) = &goal {
                if acked >= g.offset {
                    // A pause that did not hold (renewal failed, someone unpaused) let the source
                    // move on: pause again and catch up to its new offset before detaching.
                    match self.pause_lapsed(g.offset).await? {
                        None => {
                            self.checkpoint(replid, acked).await?;
                            return Ok(acked);
                        }
                        Some(moved) => {
                            self.relay
                                .reporter
                                .emit(EventKind::SourcePauseLapsed {
                                    goal_offset: g.offset,
                                    source_offset: moved,
                                })
                                .await?;
                            goal = Some(self.begin_cutover().await?);
                            continue;
                        }
                    }
                }
                if Instant::now() > g.deadline {
                    return Err(EngineError::CutoverTimeout {
                        secs: self.relay.tuning.cutover_timeout.as_secs(),
                        applied: acked,
                        source_offset: g.offset,
                    });
                }
            }
            let cutover = self.relay.controls.cutover.clone();
            tokio::select! {
                item = link.next_raw() => match item.map_err(source_lost)? {
                    RawItem::Stream(bytes) => {
                        tw.send(&bytes).await.map_err(target_lost)?;
                        self.state.bytes_streamed += bytes.len() as u64;
                    }
                    _ => {
                        return Err(EngineError::SourceLinkLost(
                            "snapshot data in the command stream".into(),
                        ))
                    }
                },
                message = tr.next() => {
                    last_heard = Instant::now();
                    if let Some(offset) = self.forward_upstream(link, message.map_err(target_lost)?).await? {
                        acked = acked.max(offset);
                    }
                }
                _ = poll.tick(), if goal.is_some() => {
                    let role = relay_target::role(self.relay.target)
                        .await
                        .map_err(EngineError::target)?;
                    acked = acked.max(role.offset);
                }
                _ = report.tick() => {
                    if last_heard.elapsed() > TARGET_SILENCE {
                        return Err(EngineError::TargetLinkLost(format!(
                            "relay: the target sent no ACK for {}s",
                            TARGET_SILENCE.as_secs()
                        )));
                    }
                    let lag = self.checkpoint(replid, acked).await?;
                    let r = &*self.relay;
                    let caught_up = r.job.spec.options.auto_cutover && lag == 0 && goal.is_none();
                    let in_window = if goal.is_none() {
                        window.round(r.reporter, caught_up).await?
                    } else {
                        false
                    };
                    if caught_up && in_window {
                        r.reporter
                            .emit(EventKind::CutoverStarted {
                                pause_source_writes: r.job.spec.options.pause_source_writes_on_cutover,
                            })
                            .await?;
                        goal = Some(self.begin_cutover().await?);
                    }
                }
                _ = cutover.cancelled(), if goal.is_none() => {
                    goal = Some(self.begin_cutover().await?);
                }
            }
        }
    }

    /// Records the applied offset and the lag; returns the lag.
    async fn checkpoint(&mut self, replid: &str, acked: i64) -> Result<u64, EngineError> {
        let r = &mut *self.relay;
        let source_offset = r
            .source
            .master_repl_offset()
            .await
            .map_err(EngineError::source)?;
        let lag = (source_offset - acked).max(0) as u64;
        r.reporter
            .emit(EventKind::Checkpoint {
                replid: replid.to_string(),
                applied_offset: acked,
                commands_streamed: 0,
                lag_bytes: Some(lag),
                bytes_streamed: Some(self.state.bytes_streamed),
            })
            .await?;
        Ok(lag)
    }

    /// Pauses the source's writes if asked (or again, after a lapse), and fixes the offset the
    /// target must reach. The pause is renewed until released (see [`super::pause`]).
    async fn begin_cutover(&mut self) -> Result<Goal, EngineError> {
        let r = &mut *self.relay;
        if r.job.spec.options.pause_source_writes_on_cutover {
            let held = r.paused.lock().unwrap_or_else(|p| p.into_inner()).take();
            let pause = match held {
                Some(pause) => {
                    let ms = r.tuning.pause_ms.to_string();
                    r.source
                        .call_ok(&["CLIENT", "PAUSE", &ms, "WRITE"])
                        .await
                        .map_err(EngineError::source)?;
                    pause
                }
                None => {
                    let window = Duration::from_millis(r.tuning.pause_ms);
                    SourcePause::begin(r.source, r.source_peer, window).await?
                }
            };
            *r.paused.lock().unwrap_or_else(|p| p.into_inner()) = Some(pause);
        }
        let offset = r
            .source
            .master_repl_offset()
            .await
            .map_err(EngineError::source)?;
        Ok(Goal {
            offset,
            deadline: Instant::now() + r.tuning.cutover_timeout,
        })
    }

    /// With the goal applied: the source's offset now, if it moved past the goal while paused.
    async fn pause_lapsed(&mut self, goal: i64) -> Result<Option<i64>, EngineError> {
        let r = &mut *self.relay;
        if !r.job.spec.options.pause_source_writes_on_cutover {
            return Ok(None);
        }
        let now = r
            .source
            .master_repl_offset()
            .await
            .map_err(EngineError::source)?;
        Ok((now > goal).then_some(now))
    }
}
