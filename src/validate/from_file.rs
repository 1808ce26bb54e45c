//! Pre-flight checks for a migration whose source is an RDB file (a stored backup).
//!
//! There is no source server: nothing replicates, so the checks about the source's replication
//! (PSYNC rights, role, backlog, output buffer), its modules and its configuration do not apply,
//! and the report says so in its `source.rdb` check. What the file tells instead comes from the
//! backup's record: its size, keys per database, RDB version and the Redis version that wrote it.
//!
//! The target checks are the same functions as for a server source. They read the source's facts
//! through [`ServerFacts`], so the file is described to them as a source would be: its keyspace
//! as `INFO keyspace` lines and its size as the dataset (an RDB is compact, so the real memory
//! need is larger; the memory check keeps its usual margin). `versions` is decided here, against
//! the file's RDB version, because the file's writer is not a server that can be asked.

use std::time::Duration;

use serde_json::json;

use super::checks::{self, Inputs};
use super::error::{CallError, Side};
use super::facts::{Connected, ServerFacts, FILE_SOURCE_USER};
use super::{connect_options, measure_local, ValidateContext};
use crate::client::Info;
use crate::model::{CheckResult, CheckStatus, StoredBackup, ValidationReport};
use crate::spec::MigrationSpec;

/// The server checks that only need the target (and the file's keyspace and size).
const TARGET_CHECKS: &[&str] = &[
    "target.connect",
    "cluster.mode",
    "cluster.coverage",
    "cluster.slots_stable",
    "cluster.databases",
    "cluster.transactions",
    "cluster.memory",
    "target.writable",
    "databases",
    "filter.matches",
    "target.conflicts",
    "target.in_use",
    "capacity.memory",
    "capacity.disk",
    "target.permissions",
    "tls.files",
    "tls.protocol",
    "tls.handshake",
    "tls.chain",
    "tls.hostname",
    "tls.expiry",
    "tls.client_certificate",
    "tls.verification",
];

/// Checks a migration from `backup` (the record of `spec.source`'s completed backup, or why there
/// is none).
pub async fn run(
    spec: &MigrationSpec,
    backup: Result<StoredBackup, String>,
    ctx: &ValidateContext,
) -> ValidationReport {
    let options = connect_options(ctx);
    let target = ServerFacts::gather(Side::Target, &spec.target, &options).await;
    let local = measure_local(ctx, &target).await;
    let usable = backup;
    let source = file_facts(spec, usable.as_ref().ok());
    let inputs = Inputs {
        spec,
        source: &source,
        target: &target,
        local: &local,
        relay: &ctx.relay,
        // A file is not walked for the filter: the load counts what it leaves behind.
        filter_sample: None,
    };
    let mut results = vec![source_check(&usable)];
    results.extend(checks::run_only(&inputs, TARGET_CHECKS));
    results.push(versions(usable.as_ref().ok(), &target));
    ValidationReport::from_checks(results)
}

/// A report with one failing `source.rdb` check.
pub fn missing_backup(message: &str) -> ValidationReport {
    ValidationReport::from_checks(vec![source_check(&Err(message.to_string()))])
}

fn source_check(backup: &Result<StoredBackup, String>) -> CheckResult {
    let skipped = "the source-server checks (replication, role, backlog, output buffer, modules, \
                   configuration) do not apply to a file and were skipped";
    match backup {
        Ok(view) => {
            let details = Some(&view.details);
            let keys: u64 = details
                .map(|d| d.databases.iter().map(|db| db.keys).sum())
                .unwrap_or(0);
            let rdb_version = details.map(|d| d.rdb_version);
            CheckResult {
                id: "source.rdb".into(),
                status: CheckStatus::Pass,
                message: format!(
                    "backup {} is complete: {} bytes, {keys} keys, RDB version {}; {skipped}",
                    view.id,
                    view.bytes,
                    rdb_version.map_or("unknown".to_string(), |v| v.to_string()),
                ),
                details: Some(json!({
                    "backup_id": view.id,
                    "bytes": view.bytes,
                    "keys": keys,
                    "rdb_version": rdb_version,
                    "server_version": details.map(|d| d.server_version.clone()),
                    "databases": details.map(|d| d.databases.clone()),
                })),
            }
        }
        Err(message) => CheckResult {
            id: "source.rdb".into(),
            status: CheckStatus::Fail,
            message: format!("{message}; choose a completed backup (GET /v1/backups)"),
            details: None,
        },
    }
}

/// The file described as a source server: its keyspace and its size as the dataset.
fn file_facts(spec: &MigrationSpec, backup: Option<&StoredBackup>) -> ServerFacts {
    let mut text = format!(
        "# Memory\r\nused_memory_dataset:{}\r\n# Keyspace\r\n",
        backup.map_or(0, |b| b.bytes)
    );
    for db in backup
        .map(|b| b.details.databases.as_slice())
        .unwrap_or_default()
    {
        text.push_str(&format!(
            "db{}:keys={},expires=0,avg_ttl=0\r\n",
            db.db, db.keys
        ));
    }
    let not_a_server = CallError::NotConnected { side: Side::Source };
    // Never connected to: the checks run here only read the target's URL (and the TLS checks
    // skip this side: see `FILE_SOURCE_USER`).
    let mut url = spec.target.url.clone();
    url.tls = false;
    ServerFacts {
        side: Side::Source,
        url,
        tls_unverified: false,
        gathered_at: chrono::Utc::now(),
        connect: Ok(Connected {
            latency: Duration::ZERO,
            user: FILE_SOURCE_USER.into(),
            tls: None,
        }),
        info: Ok(Info::parse(&text)),
        config: Err(not_a_server.clone()),
        modules: Err(not_a_server.clone()),
        replication_commands: Err(not_a_server),
        acl: Vec::new(),
        relay_acl: Vec::new(),
        replicaof: None,
        field_ttl_sample: None,
        function_libraries: None,
        lease: None,
        cluster: None,
        acl_users: None,
    }
}

/// The file's RDB version against the one the target speaks.
fn versions(backup: Option<&StoredBackup>, target: &ServerFacts) -> CheckResult {
    let id = "versions".to_string();
    let file_rdb = backup.map(|b| b.details.rdb_version);
    let target_server = target.info.as_ref().ok().and_then(|info| info.server());
    let target_version = target_server.map(|s| s.to_string());
    let target_rdb = target_server.map(|s| s.rdb_version());
    let details = Some(json!({
        "file_rdb_version": file_rdb,
        "target_version": target_version,
        "target_rdb_version": target_rdb,
    }));
    let (status, message) = match (file_rdb, target_rdb) {
        (None, _) => (
            CheckStatus::Fail,
            "not checked: the backup has no RDB version (see source.rdb)".to_string(),
        ),
        (Some(_), None) => (
            CheckStatus::Warn,
            "cannot tell which RDB version the target speaks; make sure it is not older than \
             the file's writer"
                .to_string(),
        ),
        // Valkey 9 numbers its files from 80 and reads Redis' 12+ types as foreign: comparing
        // the numbers across forks says nothing.
        (Some(file), Some(target)) if (file >= 80) != (target >= 80) => (
            CheckStatus::Warn,
            format!(
                "the file (RDB {file}) and the target (RDB {target}) are of different forks \
                 (Redis, Valkey): values in an encoding the target reads load as RESTORE, the \
                 others (hashes with field TTLs) are rewritten as plain commands"
            ),
        ),
        (Some(file), Some(target)) if file <= target => (
            CheckStatus::Pass,
            format!(
                "the target speaks RDB {target}, the file is RDB {file}: values load as RESTORE"
            ),
        ),
        (Some(file), Some(target)) => (
            CheckStatus::Warn,
            format!(
                "the file is RDB {file}, newer than the target's RDB {target}: values are \
                 rewritten as plain commands, and a type the target has no notion of (hash field \
                 TTLs before 7.4, say) fails the load"
            ),
        ),
    };
    CheckResult {
        id,
        status,
        message,
        details,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// `target.writable` leaves a cluster target to the `cluster.*` checks: a file source must
    /// run every one of them, or a cluster target would pass unrefused.
    #[test]
    fn a_file_source_runs_every_cluster_check() {
        let cluster: Vec<&str> = checks::ALL
            .iter()
            .map(|c| c.id)
            .filter(|id| id.starts_with("cluster."))
            .collect();
        assert!(cluster.contains(&"cluster.mode"));
        for id in cluster {
            assert!(TARGET_CHECKS.contains(&id), "{id}");
        }
    }
}
