//! The dry run (`mode: dry_run`): a full read of the source's snapshot over the replication link,
//! exactly as a migration reads it (the same link, the same parser, the same decisions about
//! each key), that writes nothing to the target. Its report says what the real migration would
//! meet: counts and bytes per database and type, the biggest keys, the keys the target cannot
//! take and why, keys already expired, the memory the target will need, and an ETA from the
//! measured read speed and a short write probe (see [`probe`]; `options.write_probe: false`
//! skips it, and then not one command that changes data reaches the target).
//!
//! It takes no lease, no restore point, no inventory and no offset key (the supervisor and the
//! job service skip those for this mode), and does not switch Valkey's import mode on. Events:
//! `SnapshotRequested`, `SnapshotStarted`, `SnapshotProgress`*, then `DryRunCompleted {report}`.

mod probe;
pub(crate) mod report;

use std::time::Instant;

use tokio_util::sync::CancellationToken;

use bytes::Bytes;

use super::error::{show_key, EngineError};
use super::snapshot::read::{self, ItemSink};
use super::snapshot::{portable, rdb_error, restorable};
use super::{relay_target, server_version, Servers, Tuning};
use crate::client::Conn;
use crate::model::dry_run::{CannotTakeReason, DryRunReport, EtaEstimate};
use crate::model::{EventKind, LEASE_KEY};
use crate::rdb::commands::{value_to_commands, RewriteOptions};
use crate::rdb::{BigPart, Entry, Item, Value};
use crate::replication::{ReplicaLink, SyncStart, Transfer};
use report::ReportBuilder;

/// What the dry run learns of the target before reading.
struct TargetLimits {
    /// `proto-max-bulk-len`: the largest single argument the target accepts.
    proto_max_bulk_len: Option<u64>,
    used_memory: Option<u64>,
    maxmemory: Option<u64>,
}

impl TargetLimits {
    async fn read(target: &mut Conn) -> TargetLimits {
        let proto_max_bulk_len = match target.call(&["CONFIG", "GET", "proto-max-bulk-len"]).await {
            Ok(crate::resp::Frame::Array(items)) => items
                .get(1)
                .and_then(|f| f.as_bytes())
                .and_then(|b| std::str::from_utf8(b).ok()?.parse().ok()),
            _ => None,
        };
        let memory = target.info("memory").await.ok();
        TargetLimits {
            proto_max_bulk_len,
            used_memory: memory.as_ref().and_then(|i| i.num("used_memory")),
            maxmemory: memory.as_ref().and_then(|i| i.num("maxmemory")),
        }
    }
}

impl super::Run {
    /// A dry run (see [`run`]); a cancel also removes the write probe's keys, which the
    /// dropped probe could not.
    pub(super) async fn dry_run(self, cancel: CancellationToken) -> Result<(), EngineError> {
        let result = tokio::select! {
            biased;
            _ = cancel.cancelled() => Err(EngineError::Cancelled),
            r = run(&self) => r,
        };
        if matches!(result, Err(EngineError::Cancelled)) && self.job.spec.options.write_probe {
            if let Err(e) = probe::remove(&self.target, self.job.migration_id).await {
                tracing::warn!(error = %e, "could not remove the dry run's probe keys");
            }
        }
        result
    }
}

/// Runs the dry run of `job` and reports `DryRunCompleted`.
async fn run(this: &super::Run) -> Result<(), EngineError> {
    let (job, source, target) = (&this.job, &this.source, &this.target);
    let (reporter, tuning) = (&this.reporter, &this.tuning);
    let spec = &job.spec;
    let mut source_conn = Conn::connect(source).await.map_err(EngineError::source)?;
    let mut target_conn = Conn::connect(target).await.map_err(EngineError::target)?;
    super::topology::refuse_cluster(&mut source_conn, crate::model::Link::Source, "a dry run")
        .await?;
    super::topology::refuse_cluster(&mut target_conn, crate::model::Link::Target, "a dry run")
        .await?;
    let source_version = server_version(&mut source_conn)
        .await
        .map_err(EngineError::source)?;
    let mut servers = Servers::of_target(&mut target_conn, spec.options.drop_field_ttls)
        .await
        .map_err(EngineError::target)?;
    servers.source_version = source_version.to_string();
    servers.source_keys = relay_target::total_keys(&mut source_conn).await.ok();
    let limits = TargetLimits::read(&mut target_conn).await;
    let source_dataset = source_conn
        .info("memory")
        .await
        .ok()
        .and_then(|i| i.num("used_memory_dataset"));
    // `options.acl`: what a migration would do to the users, recorded and not applied.
    this.diff_acl_only(&mut source_conn, &mut target_conn)
        .await?;
    drop(target_conn);
    if spec.options.write_probe {
        // A run that a crash interrupted mid-probe left its keys: a restarted job removes them
        // before anything else (no key: no change).
        probe::remove(target, job.migration_id).await?;
    }
    reporter
        .emit(super::ask_source::snapshot_request(&mut source_conn).await)
        .await?;
    let mut link = ReplicaLink::connect(source, tuning.link, None)
        .await
        .map_err(EngineError::from_link)?;
    let SyncStart::Full {
        replid,
        offset,
        transfer,
    } = link.start().clone()
    else {
        return Err(EngineError::SourceLinkLost(
            "the source offered a partial resync to a fresh replica".into(),
        ));
    };
    let total = match transfer {
        Transfer::Sized(len) => Some(len),
        Transfer::Diskless { .. } => None,
    };
    reporter
        .emit(EventKind::SnapshotStarted {
            replid,
            offset,
            diskless: total.is_none(),
            rdb_bytes_total: total,
            redo: None,
            keys_total: servers.source_keys,
        })
        .await?;
    let started = Instant::now();
    let mut measuring = Measuring {
        link: &mut link,
        servers: &servers,
        tuning,
        limits: &limits,
        total,
        builder: ReportBuilder::default(),
        big: None,
    };
    read::drive(&mut measuring, reporter, tuning).await?;
    let read_ms = started.elapsed().as_millis() as u64;
    let builder = measuring.builder;
    let rdb_bytes = link.rdb_bytes();
    drop(link);

    // Another writer's lease (a migration or a restore running into this target) keeps the
    // probe out: its keys would show up in that writer's verification as extra keys.
    let leased = match Conn::connect(target).await {
        Ok(mut conn) => crate::client::lease::read(&mut conn).await.ok().flatten(),
        Err(_) => None,
    };
    let probe = if let (true, Some(holder)) = (spec.options.write_probe, &leased) {
        probe::not_run(
            job.migration_id,
            format!(
                "not run: the target's lease is held by {holder}, whose writes the probe's keys \
                 would mix with; the ETA rests on the read speed alone"
            ),
        )
    } else if spec.options.write_probe {
        probe::run(
            target,
            tuning.writer,
            servers.target_rdb,
            job.migration_id,
            builder.typical_value_bytes(),
        )
        .await
    } else {
        probe::not_run(job.migration_id, String::new())
    };
    let eta = eta(&builder, rdb_bytes, read_ms, &probe);
    let report = DryRunReport {
        rdb_bytes,
        read_ms,
        keys: builder.keys,
        keys_expired: builder.expired,
        keys_empty: builder.empty,
        databases: builder.databases(),
        biggest_keys: builder.biggest_keys(),
        cannot_take: builder.cannot_take_list(),
        functions: builder.functions,
        memory: builder.memory(source_dataset, limits.used_memory, limits.maxmemory),
        eta,
        note: note(&probe),
        probe,
    };
    tracing::info!(
        keys = report.keys,
        rdb_bytes,
        read_ms,
        probe_written = report.probe.keys_written,
        probe_removed = report.probe.keys_removed,
        "dry run completed"
    );
    reporter
        .emit(EventKind::DryRunCompleted {
            report: Box::new(report),
        })
        .await
}

fn note(probe: &crate::model::dry_run::ProbeReport) -> String {
    let probe = if probe.ran {
        format!(
            "except the write probe, which wrote {} keys under {} (db 0) and removed {} of them",
            probe.keys_written, probe.prefix, probe.keys_removed
        )
    } else if probe.error.is_some() {
        "not even a probe (another writer holds the target's lease)".to_string()
    } else {
        "not even a probe (options.write_probe was false)".to_string()
    };
    format!(
        "a dry run wrote nothing to the target {probe}; it took no lease, no restore point, no \
         inventory and no offset key"
    )
}

/// The snapshot's duration: reading as measured, writing at the probe's rate; they overlap in a
/// migration, so the slower one decides.
fn eta(
    builder: &ReportBuilder,
    rdb_bytes: u64,
    read_ms: u64,
    probe: &crate::model::dry_run::ProbeReport,
) -> EtaEstimate {
    let read_secs = (read_ms as f64 / 1000.0).max(0.001);
    let read_bytes_per_sec = (rdb_bytes as f64 / read_secs) as u64;
    let write_keys_per_sec = (probe.ran && probe.keys_written > 0 && probe.error.is_none())
        .then(|| (probe.keys_written as f64 * 1000.0 / probe.duration_ms.max(1) as f64) as u64);
    let write_secs = write_keys_per_sec
        .filter(|rate| *rate > 0)
        .map(|rate| builder.keys as f64 / rate as f64);
    let seconds = read_secs.max(write_secs.unwrap_or(0.0)).ceil() as u64;
    let basis = match write_keys_per_sec {
        Some(rate) => format!(
            "read at {read_bytes_per_sec} B/s (this dry run), written at {rate} keys/s (the \
             probe's {} RESTOREs of {} bytes); the slower decides",
            probe.keys_written, probe.payload_bytes
        ),
        None => format!(
            "read at {read_bytes_per_sec} B/s (this dry run) only: no write probe measured the \
             target, so the real migration may take longer"
        ),
    };
    EtaEstimate {
        read_bytes_per_sec,
        write_keys_per_sec,
        seconds: seconds.max(u64::from(builder.keys > 0)),
        basis,
    }
}

/// The big value being measured.
struct BigValue {
    db: u32,
    key: Bytes,
    type_byte: u8,
    ttl: bool,
    start_offset: u64,
    /// The element count, for the encodings that allocate each element (memory estimate).
    elements: Option<u64>,
    /// The largest element seen so far (a collection's member, field or value).
    largest_arg: u64,
    /// Field TTLs seen in a hash, on a target that has none.
    field_ttls: bool,
    expired: bool,
}

/// The dry run as an [`ItemSink`]: every key is measured and judged, nothing is written.
struct Measuring<'a> {
    link: &'a mut ReplicaLink,
    servers: &'a Servers,
    tuning: &'a Tuning,
    limits: &'a TargetLimits,
    total: Option<u64>,
    builder: ReportBuilder,
    big: Option<BigValue>,
}

impl ItemSink for Measuring<'_> {
    type Input = ReplicaLink;

    fn input(&mut self) -> &mut ReplicaLink {
        self.link
    }

    async fn item(&mut self, item: Item, now: i64, offset: u64) -> Result<(), EngineError> {
        match item {
            Item::Entry(entry) => self.entry(entry, now),
            Item::Function { .. } => {
                self.builder.functions += 1;
                Ok(())
            }
            Item::BigStart(start) => {
                let db = db_number(start.db)?;
                self.big = Some(BigValue {
                    db,
                    key: Bytes::copy_from_slice(&start.key),
                    type_byte: start.type_byte,
                    ttl: start.expire_ms.is_some(),
                    start_offset: offset,
                    elements: matches!(start.type_byte, 1..=5).then_some(start.len),
                    // A big string goes as SETRANGEs of its pieces: no single argument is big.
                    largest_arg: 0,
                    field_ttls: false,
                    expired: start.expire_ms.is_some_and(|at| at <= now),
                });
                Ok(())
            }
            Item::BigPart(BigPart::Elements(value)) => {
                let refused = self.field_ttls_refused(&value);
                if let Some(big) = &mut self.big {
                    big.largest_arg = big.largest_arg.max(largest_element(&value));
                    big.field_ttls |= refused;
                }
                Ok(())
            }
            Item::BigEnd => {
                if let Some(big) = self.big.take() {
                    self.big_end(big, offset);
                }
                Ok(())
            }
            _ => Ok(()),
        }
    }

    fn progress(&self, rdb_bytes_read: u64) -> EventKind {
        EventKind::SnapshotProgress {
            rdb_bytes_read,
            rdb_bytes_total: self.total,
            keys_written: 0,
            keys_skipped: 0,
            keys_expired: self.builder.expired,
        }
    }
}

fn db_number(db: u64) -> Result<u32, EngineError> {
    u32::try_from(db).map_err(|_| EngineError::Rdb(format!("database number {db}")))
}

/// The largest single argument the elements of `value` would make (one member, field or value).
fn largest_element(value: &Value) -> u64 {
    let len = |b: &Bytes| b.len() as u64;
    match value {
        Value::String(s) => len(s),
        Value::List(items) | Value::Set(items) => items.iter().map(len).max().unwrap_or(0),
        Value::SortedSet(items) => items.iter().map(|(m, _)| len(m)).max().unwrap_or(0),
        Value::Hash(pairs) => pairs
            .iter()
            .map(|(f, v)| len(f).max(len(v)))
            .max()
            .unwrap_or(0),
        Value::HashWithTtl(triples) => triples
            .iter()
            .map(|(f, v, _)| len(f).max(len(v)))
            .max()
            .unwrap_or(0),
        Value::Stream(_) | Value::Module { .. } => 0,
    }
}

impl Measuring<'_> {
    fn entry(&mut self, entry: Entry, now: i64) -> Result<(), EngineError> {
        if entry.expire_ms.is_some_and(|at| at <= now) {
            self.builder.expired += 1;
            return Ok(());
        }
        let db = db_number(entry.db)?;
        if db == 0 && entry.key == LEASE_KEY.as_bytes() {
            return Ok(());
        }
        if crate::rdb::sanitize::is_empty_collection(&entry) {
            self.builder.empty += 1;
            return Ok(());
        }
        let len = entry.raw_value.len() as u64;
        let expanded = crate::rdb::sizes::expanded_len(entry.type_byte, &entry.raw_value);
        let elements = crate::rdb::sizes::element_count(entry.type_byte, &entry.raw_value);
        let ttl = entry.expire_ms.is_some();
        let t = entry.type_byte;
        self.builder
            .key(db, &entry.key, t, len, expanded, elements, ttl);
        if let Some(reason) = self.refusal(db, &entry)? {
            let detail = self.detail(reason);
            self.builder
                .cannot_take(reason, || detail, db, &entry.key, entry.type_byte, len);
        }
        Ok(())
    }

    /// Why the target cannot take `entry`, deciding as the restore path decides.
    fn refusal(&self, db: u32, entry: &Entry) -> Result<Option<CannotTakeReason>, EngineError> {
        if portable(self.servers, db, entry).is_err() {
            return Ok(Some(CannotTakeReason::ModuleMissing));
        }
        let limit = self.limits.proto_max_bulk_len.unwrap_or(u64::MAX);
        if restorable(
            self.servers,
            self.tuning,
            entry.type_byte,
            entry.raw_value.len(),
        ) {
            // The DUMP payload: type byte, value, version (2) and CRC (8).
            let payload = entry.raw_value.len() as u64 + 11;
            return Ok((payload > limit).then_some(CannotTakeReason::OverProtoMaxBulkLen));
        }
        // Rewritten as plain commands: the same conversion the migration makes.
        let value = entry.decode().map_err(rdb_error)?;
        let opts = RewriteOptions {
            max_chunk_bytes: self.tuning.rewrite_chunk_bytes,
            max_chunk_items: self.tuning.rewrite_chunk_items,
            target_rdb: self.servers.target_rdb,
            drop_field_ttls: self.servers.drop_field_ttls,
        };
        match value_to_commands(&entry.key, &value, entry.expire_ms, &opts) {
            Err(_) if self.field_ttls_refused(&value) => Ok(Some(CannotTakeReason::FieldTtls)),
            Err(e) => {
                tracing::debug!(key = %show_key(&entry.key), error = %e, "dry run: cannot rewrite");
                Ok(Some(CannotTakeReason::UnsupportedType))
            }
            Ok(commands) => {
                let over = commands
                    .iter()
                    .flatten()
                    .any(|arg| arg.len() as u64 > limit);
                Ok(over.then_some(CannotTakeReason::OverProtoMaxBulkLen))
            }
        }
    }

    /// A hash with field TTLs that this target cannot hold and the user did not agree to drop.
    fn field_ttls_refused(&self, value: &Value) -> bool {
        let Value::HashWithTtl(triples) = value else {
            return false;
        };
        !self.servers.target.has_field_ttls()
            && !self.servers.drop_field_ttls
            && triples.iter().any(|(_, _, ttl)| ttl.is_some())
    }

    fn big_end(&mut self, big: BigValue, offset: u64) {
        if big.expired {
            self.builder.expired += 1;
            return;
        }
        if big.db == 0 && big.key == LEASE_KEY.as_bytes() {
            return;
        }
        let len = offset.saturating_sub(big.start_offset);
        self.builder.key(
            big.db,
            &big.key,
            big.type_byte,
            len,
            len,
            big.elements,
            big.ttl,
        );
        let limit = self.limits.proto_max_bulk_len.unwrap_or(u64::MAX);
        let reason = if big.field_ttls {
            Some(CannotTakeReason::FieldTtls)
        } else if big.largest_arg > limit {
            Some(CannotTakeReason::OverProtoMaxBulkLen)
        } else {
            None
        };
        if let Some(reason) = reason {
            let detail = self.detail(reason);
            self.builder
                .cannot_take(reason, || detail, big.db, &big.key, big.type_byte, len);
        }
    }

    fn detail(&self, reason: CannotTakeReason) -> String {
        let target = &self.servers.target_version;
        match reason {
            CannotTakeReason::ModuleMissing => format!(
                "module values whose module the target ({target}) has not loaded, or Redis 8.6 \
                 key metadata, which Ferry cannot carry"
            ),
            CannotTakeReason::FieldTtls => format!(
                "hashes with field TTLs, which the target ({target}) cannot hold; set \
                 options.drop_field_ttls to copy them without their field TTLs"
            ),
            CannotTakeReason::OverProtoMaxBulkLen => format!(
                "values (or single elements) larger than the target's proto-max-bulk-len ({} \
                 bytes); raise it on the target",
                self.limits.proto_max_bulk_len.unwrap_or(0)
            ),
            CannotTakeReason::UnsupportedType => format!(
                "types or encodings the target ({target}) cannot read and plain commands cannot \
                 carry"
            ),
        }
    }
}
