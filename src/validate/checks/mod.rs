//! The checks: one pure function per check id, reading facts gathered beforehand.
//!
//! Each function answers `Ok(CheckResult)` with its verdict, or `Err(Unknown)` when a fact it needs
//! could not be read. [`run_all`] turns an `Unknown` into a result too: `skipped` (naming the check
//! it `waits_on`) when the server was unreachable, so one failed connection reads as one failure;
//! a `fail` when the server was too slow to answer (nothing may pass on facts nobody saw); and a
//! `warn` naming the missing command otherwise (e.g. `CONFIG` renamed on a managed service): the
//! user can check by hand.
//!
//! [`ALL`] is the registry of check ids, in report order; the guide has one item per entry.

mod acl;
mod capacity;
mod cluster;
mod compat;
mod config_diff;
mod connect;
mod permissions;
mod relay;
mod replication;
mod shape;
mod source_read;
mod target;
mod tls;

use std::path::PathBuf;

use serde_json::{json, Value};

use super::error::{CallError, Side};
use super::facts::{AclProbe, AclVerdict, ServerFacts};
use crate::client::{Config, Info};
use crate::model::{CheckResult, CheckStatus};
use crate::spec::MigrationSpec;

/// What Ferry measured on its own host.
#[derive(Debug, Clone)]
pub struct LocalFacts {
    pub data_dir: PathBuf,
    pub data_dir_free: Result<u64, String>,
    /// Free space under the target's `dir`, when the target runs on this host and `dir` is known.
    pub target_dir_free: Option<Result<u64, String>>,
}

/// Everything a check may read.
pub struct Inputs<'a> {
    pub spec: &'a MigrationSpec,
    pub source: &'a ServerFacts,
    pub target: &'a ServerFacts,
    pub local: &'a LocalFacts,
    /// Where a relay would listen.
    pub relay: &'a crate::relay::RelaySettings,
    /// How many source keys the filter selects (`None`: no filter, or not walked).
    pub filter_sample: Option<&'a Result<super::filter_sample::FilterSample, String>>,
}

/// A fact a check needed but could not get.
#[derive(Debug)]
pub struct Unknown {
    side: Side,
    cause: CallError,
}

type Verdict = Result<CheckResult, Unknown>;

/// One check: its stable id and the function that decides it.
pub struct Check {
    pub id: &'static str,
    run: fn(&Inputs) -> Verdict,
}

/// Every check, in the order of the report.
pub const ALL: &[Check] = &[
    Check {
        id: "source.connect",
        run: connect::source_connect,
    },
    Check {
        id: "target.connect",
        run: connect::target_connect,
    },
    Check {
        id: "distinct_servers",
        run: connect::distinct_servers,
    },
    Check {
        id: "tls.files",
        run: tls::files,
    },
    Check {
        id: "tls.protocol",
        run: tls::protocol,
    },
    Check {
        id: "tls.handshake",
        run: tls::handshake,
    },
    Check {
        id: "tls.chain",
        run: tls::chain,
    },
    Check {
        id: "tls.hostname",
        run: tls::hostname,
    },
    Check {
        id: "tls.expiry",
        run: tls::expiry,
    },
    Check {
        id: "tls.client_certificate",
        run: tls::client_certificate,
    },
    Check {
        id: "tls.verification",
        run: tls::verification,
    },
    Check {
        id: "source.replication",
        run: replication::source_replication,
    },
    Check {
        id: "source.read",
        run: source_read::source_read,
    },
    Check {
        id: "source.permissions",
        run: permissions::source_permissions,
    },
    Check {
        id: "target.permissions",
        run: permissions::target_permissions,
    },
    Check {
        id: "source.role",
        run: replication::source_role,
    },
    Check {
        id: "cluster.mode",
        run: cluster::mode,
    },
    Check {
        id: "cluster.coverage",
        run: cluster::coverage,
    },
    Check {
        id: "cluster.slots_stable",
        run: cluster::slots_stable,
    },
    Check {
        id: "cluster.databases",
        run: cluster::databases,
    },
    Check {
        id: "cluster.transactions",
        run: cluster::transactions,
    },
    Check {
        id: "cluster.memory",
        run: cluster::memory,
    },
    Check {
        id: "target.writable",
        run: target::target_writable,
    },
    Check {
        id: "versions",
        run: compat::versions,
    },
    Check {
        id: "databases",
        run: target::databases,
    },
    Check {
        id: "filter.matches",
        run: shape::filter_matches,
    },
    Check {
        id: "target.conflicts",
        run: target::target_conflicts,
    },
    Check {
        id: "target.in_use",
        run: target::target_in_use,
    },
    Check {
        id: "capacity.memory",
        run: capacity::capacity_memory,
    },
    Check {
        id: "capacity.disk",
        run: capacity::capacity_disk,
    },
    Check {
        id: "source.output_buffer",
        run: replication::source_output_buffer,
    },
    Check {
        id: "source.backlog",
        run: replication::source_backlog,
    },
    Check {
        id: "source.sync_delay",
        run: replication::source_sync_delay,
    },
    Check {
        id: "modules",
        run: compat::modules,
    },
    Check {
        id: "keyspace_notifications",
        run: config_diff::keyspace_notifications,
    },
    Check {
        id: "maxmemory_policy",
        run: config_diff::maxmemory_policy,
    },
    Check {
        id: "persistence",
        run: config_diff::persistence,
    },
    Check {
        id: "transfer",
        run: relay::transfer,
    },
    Check {
        id: "relay.commands",
        run: relay::commands,
    },
    Check {
        id: "relay.versions",
        run: relay::versions,
    },
    Check {
        id: "relay.target_empty",
        run: relay::target_empty,
    },
    Check {
        id: "relay.reachable",
        run: relay::reachable,
    },
    Check {
        id: "relay.tls",
        run: relay::tls,
    },
    Check {
        id: "acl.users",
        run: acl::users,
    },
];

/// Runs every check on the facts.
/// Runs the checks named in `ids`, in [`ALL`]'s order (a file source runs only those that do not
/// need a source server).
pub fn run_only(inputs: &Inputs, ids: &[&str]) -> Vec<CheckResult> {
    ALL.iter()
        .filter(|check| ids.contains(&check.id))
        .map(|check| (check.run)(inputs).unwrap_or_else(|unknown| not_checked(check.id, unknown)))
        .collect()
}

pub fn run_all(inputs: &Inputs) -> Vec<CheckResult> {
    ALL.iter()
        .map(|check| (check.run)(inputs).unwrap_or_else(|unknown| not_checked(check.id, unknown)))
        .collect()
}

fn not_checked(id: &str, unknown: Unknown) -> CheckResult {
    if let CallError::NotConnected { side } = unknown.cause {
        // Nothing was asked of that server: this check waits on its connection, which failed.
        let waits_on = format!("{}.connect", side.name());
        return CheckResult {
            id: id.to_string(),
            status: CheckStatus::Skipped,
            message: format!(
                "not checked: the {side} is unreachable (see {waits_on}); fix the connection first"
            ),
            details: Some(json!({ "server": side.name(), "waits_on": waits_on })),
        };
    }
    let (status, advice) = match unknown.cause {
        CallError::NotConnected { .. } => unreachable!("handled above"),
        // A server too slow to answer an admin command is no server to migrate with.
        CallError::Timeout { .. } => (
            CheckStatus::Fail,
            "the server is overloaded or stalled; validate again once it answers",
        ),
        _ => (
            CheckStatus::Warn,
            "check it by hand (see GET /v1/guide/redis) or allow the command for Ferry's user",
        ),
    };
    CheckResult {
        id: id.to_string(),
        status,
        message: format!("not checked: {}; {advice}", unknown.cause),
        details: Some(
            json!({ "server": unknown.side.name(), "missing_fact": unknown.cause.to_string() }),
        ),
    }
}

fn result(id: &str, status: CheckStatus, message: impl Into<String>, details: Value) -> Verdict {
    Ok(CheckResult {
        id: id.to_string(),
        status,
        message: message.into(),
        details: Some(details),
    })
}

fn pass(id: &str, message: impl Into<String>, details: Value) -> Verdict {
    result(id, CheckStatus::Pass, message, details)
}

fn warn(id: &str, message: impl Into<String>, details: Value) -> Verdict {
    result(id, CheckStatus::Warn, message, details)
}

fn fail(id: &str, message: impl Into<String>, details: Value) -> Verdict {
    result(id, CheckStatus::Fail, message, details)
}

impl ServerFacts {
    fn need_info(&self) -> Result<&Info, Unknown> {
        self.info.as_ref().map_err(|cause| self.unknown(cause))
    }

    fn need_config(&self) -> Result<&Config, Unknown> {
        self.config.as_ref().map_err(|cause| self.unknown(cause))
    }

    fn unknown(&self, cause: &CallError) -> Unknown {
        Unknown {
            side: self.side,
            cause: cause.clone(),
        }
    }

    /// ACL probes of `commands` that answered "denied", as `COMMAND: reason`.
    fn acl_denials(&self, commands: &[&str]) -> Vec<String> {
        self.acl
            .iter()
            .filter(|probe| commands.contains(&probe.command))
            .filter_map(|probe| match &probe.verdict {
                Ok(AclVerdict::Denied(reason)) => Some(format!("{}: {reason}", probe.command)),
                _ => None,
            })
            .collect()
    }

    /// ACL probes as JSON details: `{"PSYNC": "allowed" | "denied: …" | "unknown: …"}`; null
    /// where the server has no `ACL DRYRUN` (< 7.0).
    fn acl_details(&self) -> Value {
        if self.acl.is_empty() {
            return Value::Null;
        }
        let entries = self.acl.iter().map(|AclProbe { command, verdict }| {
            let text = match verdict {
                Ok(AclVerdict::Allowed) => "allowed".to_string(),
                Ok(AclVerdict::Denied(reason)) => format!("denied: {reason}"),
                Err(e) => format!("unknown: {e}"),
            };
            (command.to_string(), Value::String(text))
        });
        Value::Object(entries.collect())
    }
}

/// Bytes as a short human figure for messages (`1.5 GiB`); details keep exact numbers.
fn human(bytes: u64) -> String {
    const UNITS: [&str; 5] = ["B", "KiB", "MiB", "GiB", "TiB"];
    let mut value = bytes as f64;
    let mut unit = 0;
    while value >= 1024.0 && unit < UNITS.len() - 1 {
        value /= 1024.0;
        unit += 1;
    }
    if unit == 0 {
        format!("{bytes} B")
    } else {
        format!("{value:.1} {}", UNITS[unit])
    }
}

/// "1 key", "3 keys".
fn keys(count: u64) -> String {
    if count == 1 {
        "1 key".to_string()
    } else {
        format!("{count} keys")
    }
}

/// A size for a Redis config line, rounded up to whole megabytes (`CONFIG SET … 300mb`).
fn config_mb(bytes: u64) -> String {
    format!("{}mb", bytes.div_ceil(1024 * 1024).max(1))
}

#[cfg(test)]
mod tests;
