//! The event model: every fact Ferry records, as past-tense types.
//!
//! Events are the only state Ferry keeps about migrations, backups and restores. They are
//! appended, never edited, and folded into typed states by [`crate::aggregate`]. So this file is
//! the schema of the audit trail: add variants and optional fields freely, but never change the
//! meaning of an existing one, because old logs must keep folding.
//!
//! No variant may carry a secret. URLs inside specs serialize redacted (see [`crate::redis_url`]).
//!
//! ## The envelope on the wire
//! `{seq, aggregate_type, aggregate_id, migration_id?, at, actor, type, data}`. Before the
//! reshaping the envelope had only `migration_id`, which also held backup ids. It now names the
//! aggregate (`migration`, `backup` or `restore`) and its id; `migration_id` is still written for
//! migration events, so clients that read it keep working, and is omitted for the others (where it
//! was never a migration id). Reading accepts both shapes.

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;
use uuid::Uuid;

use super::audit::{ChainLink, Digest32};
use super::lease::LeaseOwner;
use super::report::{ValidationReport, VerificationReport};
use crate::spec::{MigrationSpec, TransferKind};

/// Who caused an event: `api` (or the API token's name) for requests, `engine` for the worker.
pub type Actor = String;

/// The kind of long-running thing an event belongs to: each has its own state, fold and lock.
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize, ToSchema,
)]
#[serde(rename_all = "snake_case")]
pub enum AggregateType {
    Migration,
    Backup,
    Restore,
}

impl AggregateType {
    pub fn as_str(self) -> &'static str {
        match self {
            AggregateType::Migration => "migration",
            AggregateType::Backup => "backup",
            AggregateType::Restore => "restore",
        }
    }

    /// The aggregate of an event stored before the type was recorded with it. Backup and restore
    /// events then sat under their backup's id (the backup's own history) or under a migration's
    /// id (its restore point, its rollback); everything else was a migration's.
    pub fn of_legacy(id: Uuid, kind: &EventKind) -> AggregateType {
        match kind {
            EventKind::BackupStarted { backup_id, .. }
            | EventKind::BackupProgress { backup_id, .. }
            | EventKind::BackupProgress { backup_id, .. }
            | EventKind::BackupCompleted { backup_id, .. }
            | EventKind::BackupFailed { backup_id, .. }
            | EventKind::BackupDeleted { backup_id }
                if *backup_id == id =>
            {
                AggregateType::Backup
            }
            EventKind::RestoreStarted { backup_id, .. }
            | EventKind::RestoreProgress { backup_id, .. }
            | EventKind::RestoreProgress { backup_id, .. }
            | EventKind::RestoreCompleted { backup_id, .. }
            | EventKind::RestoreFailed { backup_id, .. }
                if *backup_id == id =>
            {
                AggregateType::Restore
            }
            _ => AggregateType::Migration,
        }
    }
}

impl std::fmt::Display for AggregateType {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// The envelope stored in the log. `seq` increases across the whole log, with no gaps.
#[derive(Debug, Clone, PartialEq)]
pub struct Event {
    pub seq: u64,
    pub aggregate_type: AggregateType,
    /// The migration, backup or restore the event belongs to.
    pub aggregate_id: Uuid,
    pub at: DateTime<Utc>,
    pub actor: Actor,
    pub kind: EventKind,
    /// Its place in the audit chain (see [`super::audit`]); `None` for events recorded before the
    /// log had a chain (they precede its genesis) and for events not yet stored.
    pub chain: Option<ChainLink>,
}

/// [`Event`] as the API writes it (see the module docs).
#[derive(Debug, Clone, PartialEq, Serialize, ToSchema)]
#[schema(as = Event)]
pub struct EventWire {
    pub seq: u64,
    /// `migration`, `backup` or `restore`.
    pub aggregate_type: AggregateType,
    /// The migration, backup or restore the event belongs to.
    pub aggregate_id: Uuid,
    /// The same id again, for migration events only (kept for clients of the first envelope).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub migration_id: Option<Uuid>,
    #[schema(value_type = String, format = DateTime)]
    pub at: DateTime<Utc>,
    pub actor: Actor,
    #[serde(flatten)]
    pub kind: EventKind,
    /// The `hash` of the event before this one (64 zeros before the first): the audit chain.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schema(value_type = Option<String>)]
    pub prev_hash: Option<Digest32>,
    /// SHA-256 of `prev_hash` (hex) followed by this event's canonical JSON (see the README).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schema(value_type = Option<String>)]
    pub hash: Option<Digest32>,
}

impl From<&Event> for EventWire {
    fn from(e: &Event) -> Self {
        EventWire {
            seq: e.seq,
            aggregate_type: e.aggregate_type,
            aggregate_id: e.aggregate_id,
            migration_id: (e.aggregate_type == AggregateType::Migration).then_some(e.aggregate_id),
            at: e.at,
            actor: e.actor.clone(),
            kind: e.kind.clone(),
            prev_hash: e.chain.map(|c| c.prev_hash),
            hash: e.chain.map(|c| c.hash),
        }
    }
}

/// An event as read back: either envelope (only `migration_id`, or `aggregate_*`).
#[derive(Deserialize)]
struct EventIn {
    seq: u64,
    #[serde(default)]
    aggregate_type: Option<AggregateType>,
    #[serde(default)]
    aggregate_id: Option<Uuid>,
    #[serde(default)]
    migration_id: Option<Uuid>,
    at: DateTime<Utc>,
    actor: Actor,
    #[serde(flatten)]
    kind: EventKind,
    #[serde(default)]
    prev_hash: Option<Digest32>,
    #[serde(default)]
    hash: Option<Digest32>,
}

impl Serialize for Event {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        EventWire::from(self).serialize(serializer)
    }
}

impl<'de> Deserialize<'de> for Event {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let e = EventIn::deserialize(deserializer)?;
        let id = e
            .aggregate_id
            .or(e.migration_id)
            .ok_or_else(|| serde::de::Error::missing_field("aggregate_id"))?;
        let aggregate_type = e
            .aggregate_type
            .unwrap_or_else(|| AggregateType::of_legacy(id, &e.kind));
        Ok(Event {
            seq: e.seq,
            aggregate_type,
            aggregate_id: id,
            at: e.at,
            actor: e.actor,
            kind: e.kind,
            chain: match (e.prev_hash, e.hash) {
                (Some(prev_hash), Some(hash)) => Some(ChainLink { prev_hash, hash }),
                _ => None,
            },
        })
    }
}

/// The last durable progress of a live migration, as recorded in its `Checkpoint` events: where a
/// restarted engine continues.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ResumePoint {
    pub replid: String,
    pub applied_offset: i64,
}

/// What happened. Serialized as `{"type": "SnapshotStarted", "data": {...}}`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
#[serde(tag = "type", content = "data")]
pub enum EventKind {
    // The spec is boxed: inline it made every event (a checkpoint too) ~560 bytes, and the
    // start-up fold moves a million of them between threads and into the aggregates.
    MigrationCreated {
        spec: Box<MigrationSpec>,
    },
    MigrationUpdated {
        spec: Box<MigrationSpec>,
    },
    ValidationStarted {},
    ValidationCompleted {
        report: ValidationReport,
    },
    MigrationStarted {},
    /// The migration reaches a server over TLS without checking its certificate, because its
    /// spec asks for `tls.insecure_skip_verify`: recorded when it starts, for the audit trail.
    TlsVerificationSkipped {
        link: Link,
        /// `host:port` of that server.
        addr: String,
    },
    /// A backup (an RDB copy of a server) began. Recorded under the backup's own id.
    BackupStarted {
        backup_id: Uuid,
        /// The server backed up, password redacted.
        server: String,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        label: Option<String>,
        /// Set when the backup is a migration's restore point.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        for_migration: Option<Uuid>,
    },
    /// Under the backup's id: the file is complete and durable. Under a migration's id: the
    /// migration's restore point is taken.
    /// A checkpoint of a running capture: the bytes stored so far (at most about once a second),
    /// so the view's `bytes` comes from the log and survives a restart.
    BackupProgress {
        backup_id: Uuid,
        bytes: u64,
    },
    BackupCompleted {
        backup_id: Uuid,
        bytes: u64,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        details: Option<BackupDetails>,
    },
    BackupFailed {
        backup_id: Uuid,
        code: String,
        message: String,
    },
    /// The backup's file was deleted; its history stays.
    BackupDeleted {
        backup_id: Uuid,
    },
    /// A backup is being loaded into a server: a restore began (under the restore's own id; logs
    /// from before restores were resources hold it under the backup's id, and a rollback's copy
    /// under the migration's id).
    RestoreStarted {
        /// The backup loaded; the nil id for the rollback of a migration whose target was empty
        /// (its restore point is "empty": the target is flushed and nothing is loaded).
        backup_id: Uuid,
        /// The server restored into, password redacted.
        target: String,
        on_conflict: crate::spec::OnConflict,
        /// Set when the restore is the rollback of this migration.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        for_migration: Option<Uuid>,
    },
    /// A checkpoint of a running restore (at most about once a second).
    RestoreProgress {
        backup_id: Uuid,
        rdb_bytes_read: u64,
        rdb_bytes_total: Option<u64>,
        keys_written: u64,
        keys_skipped: u64,
    },
    RestoreCompleted {
        backup_id: Uuid,
        keys_written: u64,
        keys_skipped: u64,
        keys_expired: u64,
        duration_ms: u64,
        /// Empty collections in the file, skipped.
        #[serde(default, skip_serializing_if = "is_zero")]
        keys_empty: u64,
    },
    RestoreFailed {
        backup_id: Uuid,
        code: String,
        message: String,
    },
    /// Which transfer the migration uses (relay or restore) and why; recorded when the engine
    /// starts, again if `auto` falls back from relay to restore.
    TransferChosen {
        transfer: TransferKind,
        reason: String,
        /// For a relay: the target's settings before Ferry changed them, put back when the
        /// target is released (after cutover, on cancel or failure, or by a restarted Ferry).
        #[serde(default, skip_serializing_if = "Option::is_none")]
        relay_target: Option<RelayTargetSettings>,
    },
    /// A relay's target is a standalone server again: `REPLICAOF NO ONE` ran and the settings
    /// Ferry changed were put back.
    TargetReleased {
        /// Why now: cutover, cancel, failure, or the fallback from relay to restore.
        reason: String,
        /// The settings restored, as `name=value` (a generated `masterauth` shows as cleared).
        restored: Vec<String>,
    },
    /// The engine asked the source for a snapshot and waits for it to begin: a diskless source
    /// first waits `repl-diskless-sync-delay` seconds (so that more replicas can share its fork),
    /// a disk-based one writes its RDB file first. What the source said about itself then.
    SnapshotRequested {
        /// `repl-diskless-sync`: the RDB streams straight from the source's fork.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        diskless: Option<bool>,
        /// `repl-diskless-sync-delay` in seconds, when the source streams diskless.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        delay_secs: Option<u64>,
        /// The keys the source holds (`INFO keyspace`): what the snapshot's key count is
        /// estimated from (keys may expire or be written before the fork).
        #[serde(default, skip_serializing_if = "Option::is_none")]
        keys_estimate: Option<u64>,
    },
    SnapshotStarted {
        replid: String,
        offset: i64,
        /// `true` when the source streams the RDB without writing it to disk (`$EOF:` framing).
        diskless: bool,
        /// Known only for disk-based transfers (`$<len>` framing).
        rdb_bytes_total: Option<u64>,
        /// What a restarted snapshot redoes, when this is not the first attempt.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        redo: Option<String>,
        /// The source's key count when the snapshot began (`INFO keyspace`): progress in percent
        /// for diskless transfers, whose size is unknown until they end.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        keys_total: Option<u64>,
    },
    SnapshotProgress {
        rdb_bytes_read: u64,
        rdb_bytes_total: Option<u64>,
        keys_written: u64,
        keys_skipped: u64,
        keys_expired: u64,
    },
    SnapshotCompleted {
        rdb_bytes: u64,
        keys_written: u64,
        keys_skipped: u64,
        keys_expired: u64,
        /// Keys written as plain commands instead of RESTORE (older target, or too big).
        keys_rewritten: u64,
        duration_ms: u64,
        /// Empty collections in the RDB (older servers could write them): skipped, as Redis
        /// skips them when it loads such a file.
        #[serde(default, skip_serializing_if = "is_zero")]
        keys_empty: u64,
    },
    StreamingStarted {
        replid: String,
        offset: i64,
    },
    /// What a restart needs to resume: the replication id and the offset the *target* has applied.
    Checkpoint {
        replid: String,
        applied_offset: i64,
        commands_streamed: u64,
        lag_bytes: Option<u64>,
        /// Stream bytes relayed so far (relay transfers, which forward the stream without
        /// cutting it into commands, so `commands_streamed` stays 0 there).
        #[serde(default, skip_serializing_if = "Option::is_none")]
        bytes_streamed: Option<u64>,
    },
    LinkLost {
        link: Link,
        cause: String,
    },
    LinkResumed {
        link: Link,
        kind: ResumeKind,
        reason: String,
    },
    CutoverStarted {
        pause_source_writes: bool,
    },
    CutoverCompleted {
        final_offset: i64,
    },
    VerificationCompleted {
        report: VerificationReport,
    },
    MigrationCompleted {},
    MigrationFailed {
        /// A stable, machine-readable reason, such as `engine_unavailable` or `busy_key`.
        code: String,
        /// What went wrong and what to do, for people.
        message: String,
    },
    MigrationCancelled {
        #[serde(default, skip_serializing_if = "Option::is_none")]
        reason: Option<String>,
    },
    /// The migration is being rolled back: restore `restore_id` loads its restore point.
    RollbackRequested {
        restore_id: Uuid,
        backup_id: Uuid,
    },
    /// The rollback's restore ended: `restored` says whether the target holds its earlier data.
    RollbackEnded {
        restore_id: Uuid,
        restored: bool,
    },
    /// The writer (a migration, or a restore) holds the target's lease: nobody else writes there
    /// until it ends. Recorded under the writer's id.
    LeaseAcquired {
        /// The target, password redacted.
        target: String,
        owner: LeaseOwner,
        /// Set when `force` took the lease over from another writer: who held it.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        took_over: Option<String>,
        /// The same writer held it already (a restarted Ferry took back its own lease).
        #[serde(default, skip_serializing_if = "std::ops::Not::not")]
        kept: bool,
        /// Taken by a restarted Ferry resuming the migration, not by the request that started it.
        #[serde(default, skip_serializing_if = "std::ops::Not::not")]
        resumed: bool,
    },
    /// Before the migration's first write: how many keys the target held (Ferry's own
    /// bookkeeping keys left out). With keys, their names are kept in `data_dir/inventories/`, so
    /// a redone snapshot knows which target keys are not its own; without, the target's restore
    /// point is "empty".
    TargetInventoried {
        keys: u64,
    },
    /// Cutover found the source's offset past the goal after the target had reached it: the write
    /// pause did not hold (it lapsed, or someone lifted it). The cutover catches up again.
    SourcePauseLapsed {
        goal_offset: i64,
        source_offset: i64,
    },
    /// What a migration's filter left behind so far (issue #19): source keys the snapshot did
    /// not copy, and stream commands not applied because every key they touch is outside the
    /// filter. Totals, not increments; recorded after the snapshot and at checkpoints while the
    /// stream count moves.
    KeysFiltered {
        snapshot_keys: u64,
        stream_commands: u64,
    },
    /// A source transaction (or one command rewritten into several) whose commands land on
    /// several slots of a Redis Cluster target: a cluster cannot apply it atomically, so each
    /// slot's part was applied in its own transaction (issue #16). `offset`: where it ends in
    /// the source's stream; `commands`: how many commands it held.
    TransactionSplit {
        offset: i64,
        slots: Vec<u16>,
        commands: u32,
    },
    // ---- #19: rate limits, the HA guard, maintenance windows ----
    /// `options.limits` of a running migration changed (`PATCH`); the envelope's `actor` says
    /// who changed them. The engine applies them at once.
    LimitsChanged {
        limits: crate::spec::Limits,
    },
    /// The HA guard slowed Ferry's writes down to `ops_per_sec`, and why (a replica of the
    /// source lags).
    Throttled {
        reason: String,
        ops_per_sec: u64,
    },
    /// The HA guard's slowdown ended, and why.
    ThrottleLifted {
        reason: String,
    },
    /// The HA guard cannot see what it watches (a command the source's ACL refuses, say): said
    /// once per run.
    HaGuardBlind {
        reason: String,
    },
    /// Ferry's own output buffer on the source nears `client-output-buffer-limit replica`: the
    /// source may disconnect Ferry, which then copies a whole snapshot again. `advice` says
    /// what to change.
    SourceBufferNearLimit {
        used_bytes: u64,
        limit_bytes: u64,
        advice: String,
    },
    /// A scheduled migration was started by the scheduler (actor `scheduler`), `late_secs`
    /// after its `start_at` (a Ferry that was down then starts it on its next start).
    ScheduledStart {
        #[schema(value_type = String, format = DateTime)]
        start_at: DateTime<Utc>,
        late_secs: u64,
    },
    /// The target caught up outside the cutover window: `auto_cutover` waits for it to open.
    CutoverDeferred {
        #[schema(value_type = String, format = DateTime)]
        opens_at: DateTime<Utc>,
    },
    /// The cutover window closed without a cutover; the migration keeps streaming and never
    /// cuts over by itself (a manual cutover needs `force`).
    CutoverWindowMissed {
        #[schema(value_type = String, format = DateTime)]
        closed_at: DateTime<Utc>,
    },
    /// A manual cutover outside the cutover window, asked with `force: true` (the envelope's
    /// actor says by whom).
    CutoverForced {
        window: crate::spec::CutoverWindow,
    },
    // ---- dry run and ACL users (issue #19) ----
    /// A dry run read the whole snapshot: what the migration would meet (boxed: it is large).
    DryRunCompleted {
        report: Box<super::dry_run::DryRunReport>,
    },
    /// Before the first write (`options.acl: copy | replace`): the source's ACL users against
    /// the target's, passwords redacted.
    AclDiffed {
        report: Box<super::acl::AclDiffReport>,
    },
    /// The users created and replaced on the target, and those left alone (with why).
    AclCopied {
        created: Vec<String>,
        replaced: Vec<String>,
        skipped: Vec<String>,
    },
    // --- source.read: scan (issue #19) ---
    /// The source is read by `SCAN` (`source.read: scan`), not replicated: the snapshot events
    /// that follow count keys, not RDB bytes; changes are followed through keyspace
    /// notifications (`notify` is the source's `notify-keyspace-events` in use).
    ScanStarted {
        #[serde(default, skip_serializing_if = "Option::is_none")]
        keys_total: Option<u64>,
        notify: String,
    },
    /// Ferry turned the source's keyspace notifications on (`options.set_keyspace_notifications`):
    /// `previous` is put back when the migration ends (`KeyspaceNotificationsRestored`).
    KeyspaceNotificationsSet {
        previous: String,
        set: String,
    },
    /// The source's `notify-keyspace-events` is back to what it was before the migration.
    KeyspaceNotificationsRestored {
        value: String,
    },
    /// A scan reader copies every key again: its notifications may have missed a change (the
    /// subscriber connection was lost, or more keys changed than it keeps track of).
    ScanRedone {
        reason: String,
    },
    /// Catch-up of a scan reader (about one a second): keys known changed and not yet copied
    /// again (`dirty_keys`: its lag), and what it copied again or deleted so far.
    ScanCheckpoint {
        dirty_keys: u64,
        keys_recopied: u64,
        keys_deleted: u64,
    },
    /// A fact of one shard of a Redis Cluster source: each shard runs its own replication link
    /// (snapshot, stream, checkpoints, resume), and every event of that run comes wrapped in the
    /// shard it is about. The migration-wide facts (`SnapshotStarted`, `SnapshotCompleted`,
    /// `StreamingStarted`, `VerificationCompleted`, `CutoverCompleted`) are recorded once, unwrapped,
    /// from all shards.
    ShardEvent {
        shard: ShardRef,
        #[schema(value_type = Object)]
        event: Box<EventKind>,
    },
    /// The master of a source shard changed (a failover): Ferry follows the shard, by its slots,
    /// to the node now serving it.
    ShardFailedOver {
        shard: String,
        from: ShardRef,
        to: ShardRef,
    },
}

/// One shard of a Redis Cluster source, as events name it: `s<first slot>` (the first slot it
/// served when the migration started: stable across failovers), and the node Ferry reads it from
/// (node id and address) at the time of the event.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct ShardRef {
    /// `s<first slot>`, e.g. `s0`, `s5461`.
    pub name: String,
    /// The 40-character cluster node id.
    pub node_id: String,
    /// `host:port`.
    pub addr: String,
}

impl EventKind {
    /// Every `type` tag, in declaration order: what `GET /v1/events?type=` accepts. A unit test
    /// checks it against serde's own list of variants, so it cannot drift from the enum.
    pub const TYPE_NAMES: [&'static str; 57] = [
        "MigrationCreated",
        "MigrationUpdated",
        "ValidationStarted",
        "ValidationCompleted",
        "MigrationStarted",
        "TlsVerificationSkipped",
        "BackupStarted",
        "BackupProgress",
        "BackupCompleted",
        "BackupFailed",
        "BackupDeleted",
        "RestoreStarted",
        "RestoreProgress",
        "RestoreCompleted",
        "RestoreFailed",
        "TransferChosen",
        "TargetReleased",
        "SnapshotRequested",
        "SnapshotStarted",
        "SnapshotProgress",
        "SnapshotCompleted",
        "StreamingStarted",
        "Checkpoint",
        "LinkLost",
        "LinkResumed",
        "CutoverStarted",
        "CutoverCompleted",
        "VerificationCompleted",
        "MigrationCompleted",
        "MigrationFailed",
        "MigrationCancelled",
        "RollbackRequested",
        "RollbackEnded",
        "LeaseAcquired",
        "TargetInventoried",
        "SourcePauseLapsed",
        "KeysFiltered",
        "TransactionSplit",
        "LimitsChanged",
        "Throttled",
        "ThrottleLifted",
        "HaGuardBlind",
        "SourceBufferNearLimit",
        "ScheduledStart",
        "CutoverDeferred",
        "CutoverWindowMissed",
        "CutoverForced",
        "DryRunCompleted",
        "AclDiffed",
        "AclCopied",
        "ScanStarted",
        "KeyspaceNotificationsSet",
        "KeyspaceNotificationsRestored",
        "ScanRedone",
        "ScanCheckpoint",
        "ShardEvent",
        "ShardFailedOver",
    ];

    /// The `type` tag, for filtering (`GET /v1/events?type=`).
    pub fn type_name(&self) -> &'static str {
        match self {
            EventKind::MigrationCreated { .. } => "MigrationCreated",
            EventKind::MigrationUpdated { .. } => "MigrationUpdated",
            EventKind::ValidationStarted { .. } => "ValidationStarted",
            EventKind::ValidationCompleted { .. } => "ValidationCompleted",
            EventKind::MigrationStarted { .. } => "MigrationStarted",
            EventKind::TlsVerificationSkipped { .. } => "TlsVerificationSkipped",
            EventKind::BackupStarted { .. } => "BackupStarted",
            EventKind::BackupProgress { .. } => "BackupProgress",
            EventKind::BackupCompleted { .. } => "BackupCompleted",
            EventKind::BackupFailed { .. } => "BackupFailed",
            EventKind::BackupDeleted { .. } => "BackupDeleted",
            EventKind::RestoreStarted { .. } => "RestoreStarted",
            EventKind::RestoreProgress { .. } => "RestoreProgress",
            EventKind::RestoreCompleted { .. } => "RestoreCompleted",
            EventKind::RestoreFailed { .. } => "RestoreFailed",
            EventKind::TransferChosen { .. } => "TransferChosen",
            EventKind::TargetReleased { .. } => "TargetReleased",
            EventKind::SnapshotRequested { .. } => "SnapshotRequested",
            EventKind::SnapshotStarted { .. } => "SnapshotStarted",
            EventKind::SnapshotProgress { .. } => "SnapshotProgress",
            EventKind::SnapshotCompleted { .. } => "SnapshotCompleted",
            EventKind::StreamingStarted { .. } => "StreamingStarted",
            EventKind::Checkpoint { .. } => "Checkpoint",
            EventKind::LinkLost { .. } => "LinkLost",
            EventKind::LinkResumed { .. } => "LinkResumed",
            EventKind::CutoverStarted { .. } => "CutoverStarted",
            EventKind::CutoverCompleted { .. } => "CutoverCompleted",
            EventKind::VerificationCompleted { .. } => "VerificationCompleted",
            EventKind::MigrationCompleted { .. } => "MigrationCompleted",
            EventKind::MigrationFailed { .. } => "MigrationFailed",
            EventKind::MigrationCancelled { .. } => "MigrationCancelled",
            EventKind::RollbackRequested { .. } => "RollbackRequested",
            EventKind::RollbackEnded { .. } => "RollbackEnded",
            EventKind::LeaseAcquired { .. } => "LeaseAcquired",
            EventKind::TargetInventoried { .. } => "TargetInventoried",
            EventKind::SourcePauseLapsed { .. } => "SourcePauseLapsed",
            EventKind::KeysFiltered { .. } => "KeysFiltered",
            EventKind::TransactionSplit { .. } => "TransactionSplit",
            EventKind::LimitsChanged { .. } => "LimitsChanged",
            EventKind::Throttled { .. } => "Throttled",
            EventKind::ThrottleLifted { .. } => "ThrottleLifted",
            EventKind::HaGuardBlind { .. } => "HaGuardBlind",
            EventKind::SourceBufferNearLimit { .. } => "SourceBufferNearLimit",
            EventKind::ScheduledStart { .. } => "ScheduledStart",
            EventKind::CutoverDeferred { .. } => "CutoverDeferred",
            EventKind::CutoverWindowMissed { .. } => "CutoverWindowMissed",
            EventKind::CutoverForced { .. } => "CutoverForced",
            EventKind::DryRunCompleted { .. } => "DryRunCompleted",
            EventKind::AclDiffed { .. } => "AclDiffed",
            EventKind::AclCopied { .. } => "AclCopied",
            EventKind::ScanStarted { .. } => "ScanStarted",
            EventKind::KeyspaceNotificationsSet { .. } => "KeyspaceNotificationsSet",
            EventKind::KeyspaceNotificationsRestored { .. } => "KeyspaceNotificationsRestored",
            EventKind::ScanRedone { .. } => "ScanRedone",
            EventKind::ScanCheckpoint { .. } => "ScanCheckpoint",
            EventKind::ShardEvent { .. } => "ShardEvent",
            EventKind::ShardFailedOver { .. } => "ShardFailedOver",
        }
    }
}

impl EventKind {
    /// The backup this event is about, for the backup events (which may sit under a backup's own
    /// id, where no migration folds them).
    pub fn backup_id(&self) -> Option<Uuid> {
        match self {
            EventKind::BackupStarted { backup_id, .. }
            | EventKind::BackupProgress { backup_id, .. }
            | EventKind::BackupCompleted { backup_id, .. }
            | EventKind::BackupFailed { backup_id, .. }
            | EventKind::BackupDeleted { backup_id }
            | EventKind::RestoreStarted { backup_id, .. }
            | EventKind::RestoreProgress { backup_id, .. }
            | EventKind::RestoreCompleted { backup_id, .. }
            | EventKind::RestoreFailed { backup_id, .. } => Some(*backup_id),
            _ => None,
        }
    }
}

fn is_zero(n: &u64) -> bool {
    *n == 0
}

/// What a completed backup holds and how to check it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct BackupDetails {
    /// Redis version of the server backed up.
    pub server_version: String,
    pub rdb_version: u16,
    /// CRC-64/Jones of the file without its 8-byte trailer, in hex: the value Redis stores in that
    /// trailer (the CRC of a whole valid file, trailer included, is always 0).
    pub crc64: String,
    /// SHA-256 of the whole file, in hex.
    pub sha256: String,
    /// Keys per database (databases without keys are left out).
    pub databases: Vec<BackupDb>,
}

/// A completed backup's record: what validation and a migration from the file read about it.
#[derive(Debug, Clone, PartialEq)]
pub struct StoredBackup {
    pub id: Uuid,
    pub bytes: u64,
    pub details: BackupDetails,
}

/// One database in a backup.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct BackupDb {
    pub db: u64,
    pub keys: u64,
}

/// A transfer chosen by an earlier run of a migration (its latest `TransferChosen`), with what a
/// relay must put back on the target: a restarted engine keeps the choice.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PriorTransfer {
    pub kind: TransferKind,
    pub relay_target: Option<RelayTargetSettings>,
}

/// A relay target's settings before Ferry changed them (none of them is a secret: a `masterauth`
/// the target already had is left as it was, and only the fact that Ferry generated one is kept).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct RelayTargetSettings {
    pub replica_read_only: String,
    pub repl_diskless_load: String,
    /// Ferry set a one-time `masterauth` because the target had none; it is cleared afterwards.
    pub masterauth_generated: bool,
}

/// Which connection an event is about.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum Link {
    Source,
    Target,
}

/// How a link came back: `partial` (PSYNC continued from the applied offset) or `full` (a new
/// snapshot was needed).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum ResumeKind {
    Partial,
    Full,
}

#[cfg(test)]
mod tests {
    use super::*;

    /// serde's own list of the variants, from the message it gives for an unknown one.
    fn serde_variants() -> Vec<String> {
        let err = serde_json::from_value::<EventKind>(serde_json::json!({"type": "?", "data": {}}))
            .unwrap_err()
            .to_string();
        let list = err.split("expected one of ").nth(1).expect(&err);
        list.split(", ")
            .map(|v| {
                v.trim_matches(|c: char| c == '`' || c.is_whitespace())
                    .to_string()
            })
            .map(|v| v.split('`').next().unwrap_or_default().to_string())
            .collect()
    }

    #[test]
    fn events_stay_small_with_large_payloads_boxed() {
        assert!(std::mem::size_of::<EventKind>() <= 256);
    }

    #[test]
    fn the_type_list_is_exactly_the_enum() {
        assert_eq!(serde_variants(), EventKind::TYPE_NAMES.to_vec());
    }

    #[test]
    fn an_event_of_the_first_envelope_reads_as_a_migration_or_backup_event() {
        let old = serde_json::json!({"seq": 3, "migration_id": "01936f5e-8a4b-7c2d-9e1f-0a1b2c3d4e5f",
            "at": "2026-01-01T12:00:00Z", "actor": "api", "type": "MigrationStarted", "data": {}});
        let event: Event = serde_json::from_value(old).unwrap();
        assert_eq!(event.aggregate_type, AggregateType::Migration);
        let id = Uuid::now_v7();
        let backup = serde_json::json!({"seq": 4, "migration_id": id, "at": "2026-01-01T12:00:00Z",
            "actor": "api", "type": "BackupDeleted", "data": {"backup_id": id}});
        let event: Event = serde_json::from_value(backup).unwrap();
        assert_eq!(event.aggregate_type, AggregateType::Backup);
        let wire = serde_json::to_value(&event).unwrap();
        assert_eq!(wire["aggregate_type"], "backup");
        assert!(wire.get("migration_id").is_none(), "{wire}");
    }
}
