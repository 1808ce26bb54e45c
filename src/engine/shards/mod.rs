//! A Redis Cluster source: one engine run per shard, in parallel, and the migration on top.
//!
//! A cluster's data lives on its masters, one replication stream each, with offsets of its own.
//! So a cluster source is migrated as N standalone sources: each shard gets the ordinary run of
//! this engine ([`super::run_one`]), pointed at one node of the shard (its master, or a replica
//! with `source.prefer: replica`), with its own handshake, RDB stream, checkpoints, resume and
//! redo, and its own offset key on the target, `ferry:offset:<id>:<shard>`. Whatever writes to
//! the target (a standalone writer, or a cluster writer) is the run's, unchanged.
//!
//! A shard is named `s<first slot>` (the first slot it served when the migration started), which
//! stays its name across failovers; its events name it and the node it is read from
//! (`ShardEvent`, see [`events`]). A shard run only knows its own slots: its verification compares
//! the keys of those slots, and a redo of its snapshot sweeps only those from the target (the
//! target holds every shard's keys). A `FLUSHALL` from one shard is not applied (it would empty
//! the others' keys too): the shard stops, naming it.
//!
//! What only the whole can do is done here: the cutover pauses every master before any shard
//! catches up ([`cutover`]); auto cutover waits until every shard has caught up; the slot map is
//! watched for failovers (followed) and reshardings (refused, [`follow`]); one failing shard
//! stops the others.
//!
//! Not supported with a cluster source (refused before anything is read): a dry run, `source.read:
//! scan`, `on_conflict: flush`, and `transfer: relay`.

mod cutover;
mod events;
mod follow;
mod plan;

pub(crate) use plan::Plan;
use plan::{discover, refuse};

use std::time::Duration;

use bytes::Bytes;
use tokio::sync::mpsc;
use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;
use uuid::Uuid;

use super::{Controls, EngineError, EngineJob, EventSender, Reporter, Tuning};
use crate::client::cluster::node_endpoint;
use crate::client::Conn;
use crate::cluster::Slot;
use crate::model::{EventKind, PriorTransfer, ShardRef};
use crate::spec::{Endpoint, Mode, Prefer, Source, SourceRead, TransferKind, Verify};
use crate::transport::Peer;

/// What a shard run knows of its shard.
#[derive(Clone)]
pub(crate) struct Scope {
    pub shard: ShardRef,
    /// The slots it served at the start (inclusive ranges).
    pub ranges: Vec<(Slot, Slot)>,
    /// The migration's one throttle, shared by every shard's writer: `options.limits` caps
    /// the migration's writes to the target, not each shard's.
    pub throttle: std::sync::Arc<super::rate::Throttle>,
}

/// The offset key of one shard: `ferry:offset:<migration id>:<shard>`.
pub(crate) fn offset_key(migration: Uuid, shard: &str) -> Bytes {
    Bytes::from(format!("ferry:offset:{migration}:{shard}"))
}

/// Whether the source runs in cluster mode (`INFO cluster`).
pub(crate) async fn is_cluster(source: &Peer) -> Result<bool, EngineError> {
    let mut conn = Conn::connect(source).await.map_err(EngineError::source)?;
    let info = conn.info("cluster").await.map_err(EngineError::source)?;
    Ok(info.get("cluster_enabled") == Some("1"))
}

/// Lets `conn` read the keys of a cluster replica (`READONLY`; a master accepts it too).
pub(crate) async fn read_only(conn: &mut Conn) -> Result<(), EngineError> {
    conn.call_ok(&["READONLY"])
        .await
        .map(drop)
        .map_err(EngineError::source)
}

/// What the shard tasks send: their events in order, then their end.
enum Msg {
    Event(usize, EventKind),
    Done(usize, Result<(), EngineError>),
}

/// Runs a migration from the cluster whose seed node is `job.spec.source`.
pub(crate) async fn run(
    job: EngineJob,
    events: EventSender,
    controls: Controls,
    tuning: Tuning,
) -> Result<(), EngineError> {
    refuse(&job)?;
    let Some(seed) = job.spec.source.endpoint().cloned() else {
        return Err(EngineError::Unsupported(
            "a cluster source is a server".into(),
        ));
    };
    let plans = discover(&seed, job.spec.source.prefer()).await?;
    tracing::info!(
        shards = plans.len(),
        "cluster source: one replication link per shard"
    );
    let reporter = Reporter { events };
    let mut orchestra = Orchestra {
        agg: events::Aggregator::new(plans.len()),
        plans,
        seed,
        reporter,
        stop: CancellationToken::new(),
        cutovers: Vec::new(),
        tuning,
        held: None,
        released: false,
        tasks: JoinSet::new(),
        tx: None,
        restarts: Vec::new(),
        throttle: super::rate::Throttle::new(job.spec.options.limits, &controls.limits),
    };
    orchestra.restarts = vec![0; orchestra.plans.len()];
    let result = orchestra.run(&job, &controls).await;
    if let Err(e) = &result {
        if !matches!(e, EngineError::LeaseLost(_) | EngineError::EventsClosed) {
            // As the supervisor does for a standalone source's key: a failed or cancelled
            // migration leaves no offset key behind (the data stays for the rollback to judge).
            clear_marks(&job).await;
        }
    }
    result
}

/// The migration over its shard runs.
struct Orchestra {
    plans: Vec<Plan>,
    seed: Endpoint,
    reporter: Reporter,
    agg: events::Aggregator,
    /// Stops every shard run.
    stop: CancellationToken,
    /// Each shard run's cutover signal.
    cutovers: Vec<CancellationToken>,
    tuning: Tuning,
    /// The masters' pauses while the cutover holds them.
    held: Option<cutover::Held>,
    released: bool,
    /// The shard runs; dropped with the orchestra, which aborts any still running.
    tasks: JoinSet<()>,
    /// Where the shard runs send their events (`None` once nothing new may start).
    tx: Option<mpsc::Sender<Msg>>,
    /// How many times each shard's run was started again on another node.
    restarts: Vec<u32>,
    /// The one throttle of the migration (see [`Scope::throttle`]).
    throttle: std::sync::Arc<super::rate::Throttle>,
}

/// How long a shard whose source node is gone waits for the cluster to promote another.
const FAILOVER_WAIT: Duration = Duration::from_secs(30);

/// How many times one shard's run may be started again on its new master.
const MAX_RESTARTS: u32 = 3;

impl Orchestra {
    /// Starts shard `i`'s run on its `read` node. `first`: with the shard's checkpoint from the
    /// log; a run started again after a failover takes its point from the target's offset key.
    fn spawn_shard(
        &mut self,
        i: usize,
        job: &EngineJob,
        controls: &Controls,
        first: bool,
    ) -> Result<(), EngineError> {
        let Some(tx) = self.tx.clone() else {
            return Ok(());
        };
        let plan = &self.plans[i];
        let shard_controls = Controls {
            cancel: self.stop.clone(),
            cutover: self.cutovers[i].clone(),
            limits: controls.limits.clone(),
        };
        let endpoint = node_endpoint(&self.seed, &plan.read);
        let peer = Peer::new(&endpoint).map_err(|e| EngineError::source(e.into()))?;
        let scope = Scope {
            shard: plan.node_ref(),
            ranges: plan.ranges.clone(),
            throttle: self.throttle.clone(),
        };
        let mut shard_job = shard_job(job, plan, endpoint);
        if !first {
            shard_job.resume = None;
        }
        self.tasks.spawn(shard_task(
            i,
            shard_job,
            peer,
            shard_controls,
            self.tuning.clone(),
            scope,
            tx,
        ));
        Ok(())
    }

    /// After shard `i`'s run failed on its source link: whether its master failed over (read
    /// the map now), and if so, its run is started again on the new master, continuing from the
    /// target's offset key (psync2 lets the promoted replica continue the old history; when it
    /// cannot, that shard alone copies its snapshot again).
    async fn follow_failover(
        &mut self,
        i: usize,
        error: &EngineError,
        job: &EngineJob,
        controls: &Controls,
    ) -> Result<bool, EngineError> {
        let link_error = matches!(
            error,
            EngineError::SourceLinkLost(_)
                | EngineError::SourceUnreachable(_)
                | EngineError::SourceError(_)
        );
        if !link_error || self.restarts[i] >= MAX_RESTARTS || self.agg.cutting_over {
            return Ok(false);
        }
        // A cluster promotes a replica only after its node timeout and an election.
        let deadline = tokio::time::Instant::now() + FAILOVER_WAIT;
        let mut watch = follow::Watch::default();
        while self.plans[i].read.id == self.plans[i].master.id {
            if tokio::time::Instant::now() > deadline {
                return Ok(false);
            }
            self.watch_map(&mut watch).await?;
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
        let plan = &mut self.plans[i];
        tracing::warn!(shard = %plan.name, from = %plan.read.addr(), to = %plan.master.addr(), %error, "following the shard to its new master");
        plan.read = plan.master.clone();
        self.restarts[i] += 1;
        self.agg.shards[i].finished = false;
        self.spawn_shard(i, job, controls, false)?;
        Ok(true)
    }

    async fn run(&mut self, job: &EngineJob, controls: &Controls) -> Result<(), EngineError> {
        if job.transfer.is_none() {
            self.reporter
                .emit(EventKind::TransferChosen {
                    transfer: TransferKind::Restore,
                    reason: format!(
                        "a Redis Cluster source: each of its {} shards is replicated on a link of \
                         its own and restored key by key",
                        self.plans.len()
                    ),
                    relay_target: None,
                })
                .await?;
        }
        let (tx, mut rx) = mpsc::channel::<Msg>(256);
        self.tx = Some(tx);
        for i in 0..self.plans.len() {
            let cutover = CancellationToken::new();
            self.cutovers.push(cutover);
            self.spawn_shard(i, job, controls, true)?;
        }
        let outcome = self.drive(job, controls, &mut rx).await;
        if let Err(e) = outcome {
            // Stop the others and let them end (their pauses, links and import modes are put
            // back by their own runs), recording what they still say.
            self.stop.cancel();
            self.tx = None;
            let drain = async {
                while let Some(msg) = rx.recv().await {
                    if let Msg::Event(i, event) = msg {
                        let node = self.plans[i].node_ref();
                        for out in self.agg.on_event(i, node, event) {
                            let _ = self.reporter.emit(out).await;
                        }
                    }
                }
            };
            let _ = tokio::time::timeout(Duration::from_secs(15), drain).await;
            if matches!(e, EngineError::VerificationFailed(_)) {
                if let Some(report) = self.agg.merged_verification() {
                    let _ = self
                        .reporter
                        .emit(EventKind::VerificationCompleted { report })
                        .await;
                }
            }
            if let Some(held) = self.held.take() {
                held.release().await;
            }
            return Err(e);
        }
        // Every shard ended well. The map is judged one last time: a slot that moved in the
        // last second is a resharding too.
        let mut watch = follow::Watch::default();
        if let Some(map) = watch.map(&self.seed, &self.plans).await {
            follow::compare(&map, &self.plans)?;
        }
        if let Some(held) = self.held.take() {
            if !self.released {
                held.check().await?;
            }
            held.release().await;
        }
        if job.spec.options.verify != Verify::None {
            if let Some(report) = self.agg.merged_verification() {
                self.reporter
                    .emit(EventKind::VerificationCompleted { report })
                    .await?;
            }
        }
        if job.spec.mode == Mode::Live {
            self.reporter
                .emit(EventKind::CutoverCompleted {
                    final_offset: self.agg.final_offset(),
                })
                .await?;
        }
        Ok(())
    }

    /// Forwards the shards' events until every shard has ended; watches the slot map and starts
    /// the cutover on the way. Returns the first failure.
    async fn drive(
        &mut self,
        job: &EngineJob,
        controls: &Controls,
        rx: &mut mpsc::Receiver<Msg>,
    ) -> Result<(), EngineError> {
        let spec = &job.spec;
        let mut tick =
            tokio::time::interval(self.tuning.report_interval.min(Duration::from_millis(250)));
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let mut watch = follow::Watch::default();
        let mut last_watch = tokio::time::Instant::now();
        loop {
            tokio::select! {
                biased;
                _ = controls.cancel.cancelled() => return Err(EngineError::Cancelled),
                // Before the events: it fires at most every 250 ms, and a busy event stream
                // must not starve the watch and the cutover.
                _ = tick.tick() => {
                    if last_watch.elapsed() >= self.tuning.report_interval {
                        last_watch = tokio::time::Instant::now();
                        self.watch_map(&mut watch).await?;
                    }
                    self.cutover_round(spec, controls).await?;
                }
                msg = rx.recv() => match msg {
                    Some(Msg::Event(i, event)) => {
                        let node = self.plans[i].node_ref();
                        for out in self.agg.on_event(i, node, event) {
                            self.reporter.emit(out).await?;
                        }
                    }
                    Some(Msg::Done(i, result)) => {
                        self.agg.shards[i].finished = true;
                        if let Err(e) = result {
                            if self.follow_failover(i, &e, job, controls).await? {
                                continue;
                            }
                            tracing::warn!(shard = %self.plans[i].name, error = %e, "shard failed");
                            return Err(e);
                        }
                        if self.agg.all_finished() {
                            return Ok(());
                        }
                    }
                    None => return Ok(()),
                },
            }
        }
    }

    /// One look at the slot map: failovers recorded and followed, a resharding refused.
    async fn watch_map(&mut self, watch: &mut follow::Watch) -> Result<(), EngineError> {
        let Some(map) = watch.map(&self.seed, &self.plans).await else {
            return Ok(());
        };
        for change in follow::compare(&map, &self.plans)? {
            let follow::Change::FailedOver { shard, master } = change;
            let plan = &mut self.plans[shard];
            let from = ShardRef {
                name: plan.name.clone(),
                node_id: plan.master.id.clone(),
                addr: plan.master.addr(),
            };
            let to = ShardRef {
                name: plan.name.clone(),
                node_id: master.id.clone(),
                addr: master.addr(),
            };
            tracing::warn!(shard = %plan.name, from = %from.addr, to = %to.addr, "source shard failed over");
            plan.master = master;
            self.reporter
                .emit(EventKind::ShardFailedOver {
                    shard: plan.name.clone(),
                    from,
                    to,
                })
                .await?;
        }
        watch.moving_slot(&self.seed, &self.plans).await
    }

    /// Starts the cutover once asked (or, with auto cutover, once every shard has caught up),
    /// and lifts the pauses once every shard has reached its goal when the verification need
    /// not run paused.
    async fn cutover_round(
        &mut self,
        spec: &crate::spec::MigrationSpec,
        controls: &Controls,
    ) -> Result<(), EngineError> {
        if spec.mode != Mode::Live {
            return Ok(());
        }
        let pause = spec.options.pause_source_writes_on_cutover;
        if !self.agg.cutting_over && self.agg.all_streaming() {
            let manual = controls.cutover.is_cancelled();
            let auto = spec.options.auto_cutover && self.agg.all_caught_up();
            if manual || auto {
                if !manual {
                    self.reporter
                        .emit(EventKind::CutoverStarted {
                            pause_source_writes: pause,
                        })
                        .await?;
                }
                tracing::info!(pause, "cluster cutover: pausing every master");
                self.held =
                    Some(cutover::begin(&self.seed, &self.plans, pause, &self.tuning).await?);
                self.agg.cutting_over = true;
                for c in &self.cutovers {
                    c.cancel();
                }
            }
        }
        if self.agg.cutting_over
            && !self.released
            && !spec.options.pause_during_verification
            && self.agg.all_reached_goal()
        {
            if let Some(held) = self.held.take() {
                held.check().await?;
                held.release().await;
            }
            self.released = true;
        }
        Ok(())
    }
}

/// The job of one shard: the migration's, pointed at the shard's node, with the cutover left to
/// the whole (no pause or auto cutover of its own) and the restore transfer.
fn shard_job(job: &EngineJob, plan: &Plan, endpoint: Endpoint) -> EngineJob {
    let mut spec = job.spec.clone();
    spec.source = Source::Server(endpoint, SourceRead::Replication, Prefer::Master);
    spec.options.auto_cutover = false;
    spec.options.pause_source_writes_on_cutover = false;
    spec.schedule.cutover_window = None;
    EngineJob {
        spec,
        resume: job.shard_resume.get(&plan.name).cloned(),
        transfer: Some(PriorTransfer {
            kind: TransferKind::Restore,
            relay_target: None,
        }),
        shard_resume: Default::default(),
        ..job.clone()
    }
}

/// Runs one shard, forwarding its events in order, then its end.
async fn shard_task(
    i: usize,
    job: EngineJob,
    peer: Peer,
    controls: Controls,
    tuning: Tuning,
    scope: Scope,
    tx: mpsc::Sender<Msg>,
) {
    let (events, mut shard_rx) = mpsc::channel(64);
    let run = super::run_one(job, peer, events, controls, tuning, Some(scope));
    tokio::pin!(run);
    let result = loop {
        tokio::select! {
            biased;
            Some(event) = shard_rx.recv() => {
                let _ = tx.send(Msg::Event(i, event)).await;
            }
            result = &mut run => break result,
        }
    };
    while let Ok(event) = shard_rx.try_recv() {
        let _ = tx.send(Msg::Event(i, event)).await;
    }
    let _ = tx.send(Msg::Done(i, result)).await;
}

/// Removes every shard's offset key from the target, a standalone server or a cluster (bounded:
/// an unreachable target keeps them; see [`super::resume::clear_mark`]).
async fn clear_marks(job: &EngineJob) {
    let cleared = match Peer::new(&job.spec.target) {
        Ok(peer) => {
            super::resume::clear_mark(&peer, job.migration_id, Duration::from_secs(10)).await
        }
        Err(_) => None,
    };
    if cleared.is_none() {
        tracing::warn!("could not remove the shards' offset keys from the target");
    }
}
