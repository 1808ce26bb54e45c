//! Validation of a dry run (`mode: dry_run`): the same checks as any migration, but a dry run
//! writes nothing (a removed probe aside), so what only matters for writing cannot stop it:
//! those failures become warnings that say so. A dry run's report is where a target's limits
//! (field TTLs it lacks, a small `proto-max-bulk-len`, a missing module, too little memory) are
//! counted key by key, which a failed validation would keep from ever being seen. What the read
//! itself needs (reaching both servers, the source's replication rights) still fails.

use crate::model::{CheckResult, CheckStatus};

/// The checks about writing to the target, or about what it can hold.
const WRITE_ONLY: &[&str] = &[
    "target.writable",
    "target.permissions",
    "versions",
    "databases",
    "target.conflicts",
    "target.in_use",
    "capacity.memory",
    "capacity.disk",
    "modules",
    "transfer",
    "relay.commands",
    "relay.versions",
    "relay.target_empty",
    "relay.reachable",
    "relay.tls",
    "acl.users",
];

/// Turns the failures of write-only checks into warnings that name the real migration.
pub fn soften(checks: &mut [CheckResult]) {
    for check in checks {
        if check.status == CheckStatus::Fail && WRITE_ONLY.contains(&check.id.as_str()) {
            check.status = CheckStatus::Warn;
            check.message = format!(
                "{} (a dry run writes nothing, so this does not stop it; it would stop the real \
                 migration)",
                check.message
            );
        }
    }
}
