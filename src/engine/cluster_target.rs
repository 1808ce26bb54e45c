//! A Redis Cluster as the target of a migration: what the single-source run does differently.
//!
//! The run notices a cluster target by its `INFO cluster` (`cluster_enabled:1`) and then writes
//! through the writer's cluster mode (`writer_cluster`: every key routed to the master of its
//! slot, per-slot `MULTI`s with per-slot offset keys). This module holds the run's side:
//!
//! - **What is refused**, clearly and before any write: options a cluster target does not take
//!   in this build (see [`Run::check_cluster_target`]).
//! - **The base key** `ferry:offset:{<tag of slot 0, or of a source shard's first slot>}:<scope>:base`, the standalone offset key's
//!   role on a cluster: `snapshot` while a snapshot is written (a restarted job then redoes it),
//!   then `<replid>:<offset>:<db>`, moved after every flush to the offset *every* slot has
//!   applied. A restart resumes from the later of it and the log's checkpoint (both are points
//!   every slot reached, [`super::resume::decide`]) and skips per slot what each slot's own key
//!   says is already there ([`crate::cluster::SlotOffsets`]). The base key is not one of the
//!   per-slot keys (their pattern `ferry:offset:{*}:<scope>` does not match it): a slot-0
//!   batch moves slot 0's own key past what other slots hold, which must never be mistaken for
//!   a point every slot reached.
//! - **Scope**: offset keys are named by [`Run::offset_scope`] (the migration id; a shard run of
//!   a cluster source makes it `<id>:<shard>`), so runs writing to the same cluster never read
//!   each other's offsets.
//! - **Cleanup**: at the end every per-slot key of the scope and the base key are deleted on
//!   every master.

use std::sync::atomic::Ordering;

use super::error::EngineError;
use super::resume::{self, TargetMark};
use super::writer::cluster::ClusterSink;
use super::writer::Writer;
use super::Run;
use crate::client::routed::{ClusterConn, RoutedError};
use crate::client::Conn;
use crate::cluster::offsets::offset_key_pattern;
use crate::cluster::{offset_key, SlotOffsets};
use crate::model::EventKind;
use crate::spec::{AclMode, Mode, OnConflict, SourceRead, Transfer, TransferKind};

#[path = "cluster_verify.rs"]
mod verify;

/// The base key of `scope` (see the module docs).
///
/// It lives in slot 0, or for a shard of a cluster source (scope `<id>:s<first slot>`) in the
/// shard's first slot: inside the shard's own slots, so that one shard's count of its slots'
/// keys (verification) never sees another shard's base key come and go.
pub(crate) fn base_key(scope: &str) -> String {
    let slot = scope
        .rsplit_once(":s")
        .and_then(|(_, first)| first.parse::<u16>().ok())
        .filter(|slot| *slot < crate::cluster::SLOTS)
        .unwrap_or(0);
    format!("{}:base", offset_key(slot, scope))
}

fn routed(e: RoutedError) -> EngineError {
    match e {
        RoutedError::Client(c) => EngineError::target(c),
        other => EngineError::TargetLinkLost(other.to_string()),
    }
}

fn unsupported(option: &str, why: &str) -> EngineError {
    EngineError::Unsupported(format!(
        "{option} with a Redis Cluster target: {why}; this build of Ferry does not support it"
    ))
}

impl Run {
    /// The scope of this run's offset keys on a cluster target: the migration id, or
    /// `<id>:<shard>` for a shard of a cluster source, so that the shards' runs (each with its
    /// own replication id and offsets) never read one another's keys.
    pub(super) fn offset_scope(&self) -> String {
        match &self.shard {
            Some(shard) => format!("{}:{}", self.job.migration_id, shard.name),
            None => self.job.migration_id.to_string(),
        }
    }

    /// Whether the target is a cluster (known once [`Run::check_cluster_target`] ran).
    pub(super) fn cluster_target(&self) -> bool {
        self.target_cluster.load(Ordering::Relaxed)
    }

    /// Asks the target whether it is a cluster, remembers it, and refuses (before any write)
    /// what a cluster target does not take.
    pub(super) async fn check_cluster_target(&self, target: &mut Conn) -> Result<(), EngineError> {
        let info = target.info("cluster").await.map_err(EngineError::target)?;
        if info.get("cluster_enabled") != Some("1") {
            return Ok(());
        }
        self.target_cluster.store(true, Ordering::Relaxed);
        let options = &self.job.spec.options;
        if self.job.spec.mode == Mode::DryRun {
            return Err(unsupported(
                "mode dry_run",
                "its write probe and target checks run against one node",
            ));
        }
        if self.job.spec.source.read() == SourceRead::Scan {
            return Err(unsupported(
                "source.read scan",
                "the scan reader writes through a standalone connection",
            ));
        }
        if options.transfer == Transfer::Relay {
            return Err(unsupported(
                "options.transfer relay",
                "a relay makes the target a replica of Ferry, and a cluster master replicates \
                 only from its own shard",
            ));
        }
        match options.on_conflict {
            OnConflict::Flush => {
                return Err(unsupported(
                    "options.on_conflict flush",
                    "a FLUSHDB would have to run on every master, apart from the offsets",
                ))
            }
            OnConflict::Skip => {
                return Err(unsupported(
                    "options.on_conflict skip",
                    "a RESTORE refused inside a slot's transaction cannot be told apart per key",
                ))
            }
            OnConflict::Fail | OnConflict::Replace => {}
        }
        if options.acl != AclMode::Ignore {
            return Err(unsupported(
                "options.acl copy/replace",
                "users would have to be created on every master",
            ));
        }
        // A restore point is taken (by the supervisor, of one server) before the first write,
        // when the target holds keys; a restarted job (its transfer recorded) finds its own.
        if options.backup && self.job.transfer.is_none() {
            let mut conn = self.cluster_conn().await?;
            if verify::data_keys(&mut conn).await? > 0 {
                return Err(unsupported(
                    "options.backup (the target holds keys)",
                    "a restore point reads one server",
                ));
            }
        }
        Ok(())
    }

    /// A routed connection to the target cluster.
    pub(super) async fn cluster_conn(&self) -> Result<ClusterConn, EngineError> {
        ClusterConn::connect(&self.job.spec.target)
            .await
            .map_err(routed)
    }

    /// The transfer on a cluster target: always restore (recorded like any choice).
    pub(super) async fn cluster_transfer(&self) -> Result<TransferKind, EngineError> {
        if self.job.transfer.is_none() {
            self.reporter
                .emit(EventKind::TransferChosen {
                    transfer: TransferKind::Restore,
                    reason: "auto: the target is a Redis Cluster; every key is restored to the \
                             master of its slot"
                        .into(),
                    relay_target: None,
                })
                .await?;
        }
        Ok(TransferKind::Restore)
    }

    /// The offset mark: the base key on a cluster, the offset key otherwise.
    pub(super) async fn read_target_mark(
        &self,
        target: &mut Conn,
    ) -> Result<TargetMark, EngineError> {
        if !self.cluster_target() {
            return resume::read_mark(target, &self.offset_key)
                .await
                .map_err(EngineError::target);
        }
        let key = base_key(&self.offset_scope());
        let reply = self
            .cluster_conn()
            .await?
            .call_key(key.as_bytes(), &[b"GET".as_slice(), key.as_bytes()])
            .await
            .map_err(routed)?;
        Ok(match reply.as_bytes() {
            Some(value) => resume::parse_mark(&String::from_utf8_lossy(value)),
            None => TargetMark::Absent,
        })
    }

    /// Sets the mark (see [`Run::read_target_mark`]). The snapshot mark on a cluster also
    /// deletes every per-slot key of the scope: offsets of an earlier stream must not make the
    /// new one skip anything.
    pub(super) async fn write_target_mark(
        &self,
        target: &mut Conn,
        value: &str,
    ) -> Result<(), EngineError> {
        if !self.cluster_target() {
            return resume::write_mark(target, &self.offset_key, value)
                .await
                .map_err(EngineError::target);
        }
        let mut conn = self.cluster_conn().await?;
        if value == resume::SNAPSHOT_MARK {
            self.remove_slot_keys(&mut conn).await?;
        }
        let key = base_key(&self.offset_scope());
        let reply = conn
            .call_key(
                key.as_bytes(),
                &[b"SET".as_slice(), key.as_bytes(), value.as_bytes()],
            )
            .await
            .map_err(routed)?;
        match reply.as_error() {
            Some(e) => Err(EngineError::TargetLinkLost(format!(
                "setting {key}: {}",
                String::from_utf8_lossy(e)
            ))),
            None => Ok(()),
        }
    }

    /// Removes the mark at the end; on a cluster every per-slot key of the scope too.
    pub(super) async fn remove_target_mark(&self, target: &mut Conn) -> Result<(), EngineError> {
        if !self.cluster_target() {
            return resume::remove_mark(target, &self.offset_key)
                .await
                .map_err(EngineError::target);
        }
        let mut conn = self.cluster_conn().await?;
        self.remove_slot_keys(&mut conn).await?;
        let key = base_key(&self.offset_scope());
        conn.call_key(key.as_bytes(), &[b"DEL".as_slice(), key.as_bytes()])
            .await
            .map_err(routed)?;
        Ok(())
    }

    /// Deletes every per-slot offset key of this run's scope, on every master.
    async fn remove_slot_keys(&self, conn: &mut ClusterConn) -> Result<(), EngineError> {
        let pattern = offset_key_pattern(&self.offset_scope());
        for key in verify::scan_all(conn, &pattern).await? {
            conn.call_key(&key, &[b"DEL".as_slice(), &key])
                .await
                .map_err(routed)?;
        }
        Ok(())
    }

    /// Turns a writer into a cluster writer when the target is a cluster. `resumed`: the
    /// stream continues from the base key, and what each slot's key says it holds is skipped.
    pub(super) async fn writer_for_cluster(
        &self,
        writer: &mut Writer,
        resumed: bool,
    ) -> Result<(), EngineError> {
        if !self.cluster_target() {
            return Ok(());
        }
        let mut conn = self.cluster_conn().await?;
        let skip = if resumed {
            let keys = conn
                .read_slot_offsets(&self.offset_scope())
                .await
                .map_err(routed)?;
            let offsets = SlotOffsets::new(writer.applied_offset(), keys);
            tracing::info!(
                resume_from = offsets.resume_from(),
                slots_ahead = offsets.ahead().len(),
                "cluster target: resuming from the per-slot offsets"
            );
            Some(offsets)
        } else {
            None
        };
        writer.route_to_cluster(ClusterSink::new(
            conn,
            self.offset_scope(),
            self.reporter.events.clone(),
            skip,
        ));
        Ok(())
    }

    /// A redone snapshot's sweep (see [`resume::sweep`]): on a cluster, every master is walked
    /// and the keys of the earlier copy that the new snapshot did not write are deleted there.
    pub(super) async fn sweep_target(
        &self,
        target: &mut Conn,
        written: &resume::KeySet,
        before: &resume::KeySet,
    ) -> Result<u64, EngineError> {
        if !self.cluster_target() {
            return resume::sweep(target, written, before, &self.shape)
                .await
                .map_err(EngineError::target);
        }
        let mut conn = self.cluster_conn().await?;
        verify::sweep(&mut conn, written, before, &self.shape).await
    }

    /// Verification on a cluster target (see `cluster_verify`).
    pub(super) async fn verify_cluster(&self, source: &mut Conn) -> Result<(), EngineError> {
        let mode = self.job.spec.options.verify;
        if mode == crate::spec::Verify::None {
            return Ok(());
        }
        let mut conn = self.cluster_conn().await?;
        let report = verify::Verifier {
            source,
            target: &mut conn,
            tuning: &self.tuning,
            mode,
            shape: &self.shape,
            masters: Default::default(),
        }
        .run()
        .await?;
        self.reporter.verification(report).await
    }
}
