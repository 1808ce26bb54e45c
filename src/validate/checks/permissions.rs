//! `source.permissions` and `target.permissions`: may the URL's ACL user run everything this
//! migration will ask of that server? Fails naming the missing commands and the exact
//! `ACL SETUSER` rules that grant no more than Ferry needs (see [`permissions`]).

use serde_json::json;

use super::{fail, pass, warn, Inputs, Verdict};
use crate::spec::{MigrationSpec, OnConflict, SourceRead, Transfer};
use crate::validate::error::{CallError, Side};
use crate::validate::facts::{AclVerdict, ServerFacts};
use crate::validate::permissions::ALL_KEYS;
use crate::validate::permissions::{self, When};

pub fn source_permissions(inputs: &Inputs) -> Verdict {
    decide("source.permissions", inputs.source, inputs.spec)
}

pub fn target_permissions(inputs: &Inputs) -> Verdict {
    decide("target.permissions", inputs.target, inputs.spec)
}

/// Whether this migration uses a command needed `when`.
fn used(when: When, spec: &MigrationSpec) -> bool {
    match when {
        When::Always | When::Validation => true,
        When::PauseOnCutover => spec.options.pause_source_writes_on_cutover,
        When::FlushConflicts => spec.options.on_conflict == OnConflict::Flush,
        When::Rollback => spec.options.backup,
        // `auto` falls back to the restore path without them (the `transfer` check says so).
        When::Relay => spec.options.transfer == Transfer::Relay,
        When::Replication => spec.source.read() == SourceRead::Replication,
        When::Scan => spec.source.read() == SourceRead::Scan,
        When::SetNotifications => {
            spec.source.read() == SourceRead::Scan && spec.options.set_keyspace_notifications
        }
    }
}

fn decide(id: &str, facts: &ServerFacts, spec: &MigrationSpec) -> Verdict {
    let info = facts.need_info()?;
    let side = facts.side;
    let redis_7 = info.version_pair() >= Some((7, 0));
    let user = facts
        .connect
        .as_ref()
        .map(|c| c.user.clone())
        .unwrap_or_else(|_| "default".into());
    let rules = permissions::rules(side, redis_7);
    let when_of = |command: &str| {
        permissions::needs(side)
            .iter()
            .find(|n| n.name == command)
            .map(|n| n.when)
            .unwrap_or(When::Always)
    };
    let mut missing = Vec::new();
    let mut validation_only = Vec::new();
    let mut unknown = Vec::new();
    let mut relay_denied = Vec::new();
    for probe in &facts.acl {
        let when = when_of(probe.command);
        if !used(when, spec) {
            if when == When::Relay && matches!(probe.verdict, Ok(AclVerdict::Denied(_))) {
                relay_denied.push(probe.command);
            }
            continue;
        }
        match &probe.verdict {
            Ok(AclVerdict::Allowed) => {}
            Ok(AclVerdict::Denied(_)) if when == When::Validation => {
                validation_only.push(probe.command)
            }
            Ok(AclVerdict::Denied(_)) => missing.push(probe.command),
            // A command renamed away or absent in this version cannot be asked about.
            Err(CallError::Unavailable { .. }) => {}
            Err(e) => unknown.push(e.to_string()),
        }
    }
    let mut setuser = permissions::setuser_line(side, &user, redis_7);
    if side == Side::Source && spec.source.read() == SourceRead::Scan {
        setuser = format!("{setuser} {}", permissions::SCAN_RULES);
    }
    let details = json!({
        "user": user,
        "missing": missing,
        "missing_for_validation": validation_only,
        "missing_for_relay": relay_denied,
        "acl": facts.acl_details(),
        "minimal_rules": rules,
    });
    let server = match side {
        Side::Source => "source",
        Side::Target => "target",
    };
    if !missing.is_empty() {
        let keys_note = if missing.contains(&ALL_KEYS) {
            " and every key (~*)"
        } else {
            ""
        };
        let commands: Vec<&str> = missing.iter().copied().filter(|c| *c != ALL_KEYS).collect();
        return fail(
            id,
            format!(
                "user `{user}` may not run {}{keys_note} on the {server}, which this migration \
                 needs; grant exactly what Ferry needs: `{setuser}` (GET /v1/guide/redis)",
                commands.join(", ")
            ),
            details,
        );
    }
    if !unknown.is_empty() {
        let how = if redis_7 {
            "+acl|dryrun"
        } else {
            "+acl|getuser"
        };
        return warn(
            id,
            format!(
                "could not check what user `{user}` may run on the {server} ({}); allow {how} \
                 while validating, or compare the user with `{setuser}` by hand",
                unknown.first().map(String::as_str).unwrap_or_default()
            ),
            details,
        );
    }
    if !validation_only.is_empty() {
        return warn(
            id,
            format!(
                "user `{user}` may not run {} on the {server}: the migration can run, but \
                 validation cannot look at everything; the minimal rules are `{rules}`",
                validation_only.join(", ")
            ),
            details,
        );
    }
    let relay_note = if relay_denied.is_empty() || spec.options.transfer == Transfer::Restore {
        String::new()
    } else {
        format!(
            " (not {}: transfer auto takes the restore path)",
            relay_denied.join(", ")
        )
    };
    pass(
        id,
        format!(
            "user `{user}` may run everything this migration needs on the {server}{relay_note}"
        ),
        details,
    )
}
