//! `transfer` and `relay.*`: can the target replicate through Ferry, and which transfer runs?
//!
//! The decision itself is [`crate::relay::choice`], shared with the engine (which decides again
//! when the job starts, on fresh facts). Here each precondition becomes a check with the same id.
//! With `transfer: auto` an unmet precondition is not a problem, only the reason the restore path
//! is used, so it passes with that said; with `transfer: relay` it fails.

use serde_json::json;

use super::super::facts::{AclVerdict, ServerFacts};
use super::{fail, pass, Inputs, Verdict};
use crate::rdb::version::ServerVersion;
use crate::relay::choice::{self, Choice, RelayFacts};
use crate::spec::{Transfer, TransferKind};

fn kind(facts: &ServerFacts) -> Result<ServerVersion, String> {
    let info = facts.info.as_ref().map_err(|e| e.to_string())?;
    info.server()
        .ok_or_else(|| "INFO has no version".to_string())
}

/// Whether the target lets Ferry run `REPLICAOF` and `CONFIG SET`, from the gathered facts.
fn target_commands(target: &ServerFacts) -> Result<(), String> {
    let info = target.info.as_ref().map_err(|e| e.to_string())?;
    if info.get("cluster_enabled") == Some("1") {
        return Err("it runs in cluster mode, where REPLICAOF is refused".into());
    }
    target.config.as_ref().map_err(|e| format!("CONFIG: {e}"))?;
    match &target.replicaof {
        Some(Ok(false)) => return Err("REPLICAOF is renamed or disabled".into()),
        Some(Err(e)) => return Err(format!("COMMAND INFO replicaof: {e}")),
        _ => {}
    }
    let denied: Vec<String> = target
        .relay_acl
        .iter()
        .filter_map(|probe| match &probe.verdict {
            Ok(AclVerdict::Denied(reason)) => Some(format!("{}: {reason}", probe.command)),
            _ => None,
        })
        .collect();
    if !denied.is_empty() {
        return Err(format!("the ACL denies {}", denied.join("; ")));
    }
    Ok(())
}

/// The choice on the gathered facts.
pub(crate) fn decide(inputs: &Inputs) -> Choice {
    let target_keys = inputs
        .target
        .info
        .as_ref()
        .map(|i| i.total_keys())
        .map_err(|e| e.to_string());
    let facts = RelayFacts {
        requested: inputs.spec.options.transfer,
        on_conflict: inputs.spec.options.on_conflict,
        source: kind(inputs.source),
        target: kind(inputs.target),
        target_keys,
        target_commands: target_commands(inputs.target),
        reachable: choice::reachability(
            inputs.relay.advertised_host().as_deref(),
            &inputs.target.url.host,
        ),
        plain_hop: choice::plain_hop(
            inputs.target.url.tls,
            inputs
                .target
                .config
                .as_ref()
                .ok()
                .and_then(|c| c.get("tls-replication")),
        ),
    };
    choice::choose(&facts)
}

pub fn transfer(inputs: &Inputs) -> Verdict {
    // Nothing is claimed about servers nobody reached.
    inputs.source.need_info()?;
    inputs.target.need_info()?;
    if let Some(verdict) = super::source_read::transfer(inputs) {
        return verdict;
    }
    if inputs.spec.options.limits.any() && inputs.spec.options.transfer == Transfer::Auto {
        // As the engine decides (a relay's target loads at its own pace, past any limit).
        return pass(
            "transfer",
            "auto: options.limits caps Ferry's own writes, and a relay's target loads the \
             source's RDB at its own pace, so every key is restored",
            json!({"requested": "auto", "transfer": "restore"}),
        );
    }
    let choice = decide(inputs);
    let details = json!({
        "requested": inputs.spec.options.transfer,
        "transfer": choice.transfer,
        "relay_listener": inputs.relay.bind,
        "relay_advertised": inputs.relay.advertise,
    });
    match choice.refusal() {
        Some(missing) => fail(
            "transfer",
            format!(
                "transfer relay cannot run: {missing}; fix that, or use transfer auto or restore"
            ),
            details,
        ),
        None => pass(
            "transfer",
            format!(
                "{} (the engine decides again when the migration starts)",
                choice.reason
            ),
            details,
        ),
    }
}

fn precondition(inputs: &Inputs, id: &str) -> Verdict {
    inputs.source.need_info()?;
    inputs.target.need_info()?;
    if let Some(verdict) = super::source_read::not_replicating(inputs, id) {
        return verdict;
    }
    let choice = decide(inputs);
    let Some(p) = choice.preconditions.iter().find(|p| p.id == id) else {
        return pass(id, "not evaluated", json!({}));
    };
    let details = json!({ "met": p.met, "requested": inputs.spec.options.transfer });
    match (inputs.spec.options.transfer, p.met) {
        (Transfer::Restore, _) => pass(
            id,
            format!("not needed (transfer restore); {}", p.detail),
            details,
        ),
        (_, true) => pass(id, p.detail.clone(), details),
        (Transfer::Relay, false) => fail(id, p.detail.clone(), details),
        (Transfer::Auto, false) => {
            debug_assert_eq!(choice.transfer, TransferKind::Restore);
            pass(
                id,
                format!("not met, so auto uses restore: {}", p.detail),
                details,
            )
        }
    }
}

pub fn commands(inputs: &Inputs) -> Verdict {
    precondition(inputs, "relay.commands")
}

pub fn versions(inputs: &Inputs) -> Verdict {
    precondition(inputs, "relay.versions")
}

pub fn target_empty(inputs: &Inputs) -> Verdict {
    precondition(inputs, "relay.target_empty")
}

pub fn reachable(inputs: &Inputs) -> Verdict {
    precondition(inputs, "relay.reachable")
}

pub fn tls(inputs: &Inputs) -> Verdict {
    precondition(inputs, "relay.tls")
}
