//! `source.read`: how the source is read, and, for `scan`, exactly what is given up.
//!
//! The scan reader (`source.read: scan`) serves sources that refuse SYNC/PSYNC. Its check lists
//! the guarantees replication gives and it does not ([`LOST`]), fails until the source publishes
//! the keyspace notifications it follows (naming the `CONFIG SET` that fixes it, unless Ferry may
//! set them), and fails when Ferry's user may not read keys or subscribe. The checks that only a
//! replication link needs (buffers, backlog, relay) say they do not apply.

use serde_json::json;

use super::{fail, pass, warn, Inputs, Verdict};
use crate::spec::{keyspace_notifications_needed, SourceRead, Transfer};

/// What `source.read: scan` does not guarantee, compared with replication.
pub const LOST: [&str; 7] = [
    "no order across keys: each key is copied on its own, so the target may briefly show a later \
     write to one key next to an earlier state of another",
    "multi-key transactions (MULTI/EXEC, scripts) do not reach the target atomically",
    "a write after a key was copied reaches the target only through its keyspace notification: \
     the key is copied again (DUMP → RESTORE REPLACE, or deleted when gone)",
    "notifications are at-most-once: a lost subscriber connection (or more changed keys than the \
     dirty-key bound) makes Ferry copy every key again (a ScanRedone event says why)",
    "FLUSHDB, FLUSHALL, SWAPDB and FUNCTION changes on the source publish no key notification \
     and are not followed (functions are copied once, at the start)",
    "TTLs are read with PTTL after the value and re-based on Ferry's clock: exact to a few ms, \
     plus the read time",
    "there is no replication offset: a restarted job copies every key again (REPLACE); cutover \
     always verifies every key (verify: full, whatever options.verify says)",
];

pub fn source_read(inputs: &Inputs) -> Verdict {
    let id = "source.read";
    let spec = inputs.spec;
    // Nothing is claimed about a server nobody reached.
    inputs.source.need_info()?;
    if spec.source.read() == SourceRead::Replication {
        return pass(
            id,
            "the source is read by replication (PSYNC): one consistent snapshot, then every \
             write in order, applied exactly once",
            json!({ "read": "replication" }),
        );
    }
    // CONFIG GET too: the reader must see that the notifications are on before it trusts them.
    let mut needed_commands = vec!["SCAN", "DUMP", "PTTL", "PSUBSCRIBE", "CONFIG GET"];
    if spec.options.set_keyspace_notifications {
        needed_commands.push("CONFIG SET");
    }
    let denied = inputs.source.acl_denials(&needed_commands);
    if !denied.is_empty() {
        return fail(
            id,
            format!(
                "source.read scan needs SCAN, DUMP, PTTL, PSUBSCRIBE and CONFIG GET on the \
                 source (and CONFIG SET with set_keyspace_notifications), and Ferry's user may \
                 not run: {}; see source.permissions",
                denied.join("; ")
            ),
            json!({ "read": "scan", "acl_denied": denied, "guarantees_lost": LOST }),
        );
    }
    let current = inputs
        .source
        .need_config()?
        .get("notify-keyspace-events")
        .unwrap_or("")
        .to_string();
    let needed = keyspace_notifications_needed(&current);
    let allowed_to_set = spec.options.set_keyspace_notifications;
    let details = json!({
        "read": "scan",
        "notify_keyspace_events": current,
        "notify_keyspace_events_needed": needed,
        "set_keyspace_notifications": allowed_to_set,
        "guarantees_lost": LOST,
        "verify_at_cutover": "full",
    });
    let weaker = format!("weaker than replication: {}", LOST.join("; "));
    let message = match (&needed, allowed_to_set) {
        (Some(value), false) => {
            return fail(
                id,
                format!(
                    "source.read scan follows changes through keyspace notifications, which are \
                     off on the source (notify-keyspace-events `{current}`): run `CONFIG SET \
                     notify-keyspace-events {value}` on the source, or set \
                     options.set_keyspace_notifications: true to let Ferry set it and put \
                     `{current}` back at the end"
                ),
                details,
            )
        }
        (Some(value), true) => format!(
            "the source is read by SCAN; Ferry sets notify-keyspace-events to `{value}` and puts \
             `{current}` back when the migration ends; {weaker}"
        ),
        (None, _) => format!(
            "the source is read by SCAN, with its keyspace notifications (`{current}`); {weaker}"
        ),
    };
    warn(id, message, details)
}

/// For the checks of the replication link: `Some(pass)` when the source is read by SCAN.
pub fn not_replicating(inputs: &Inputs, id: &str) -> Option<Verdict> {
    (inputs.spec.source.read() == SourceRead::Scan).then(|| {
        // Skipped, like every check, when the source was not reached.
        inputs.source.need_info().and_then(|_| {
            pass(
                id,
                "not used: the source is read by SCAN (source.read: scan), not replicated",
                json!({ "read": "scan" }),
            )
        })
    })
}

/// The `transfer` check for a scan reader: restore, always.
pub fn transfer(inputs: &Inputs) -> Option<Verdict> {
    if inputs.spec.source.read() != SourceRead::Scan {
        return None;
    }
    let details = json!({ "requested": inputs.spec.options.transfer, "transfer": "restore" });
    Some(match inputs.spec.options.transfer {
        Transfer::Relay => fail(
            "transfer",
            "transfer relay cannot run with source.read scan: the relay forwards the source's \
             replication stream, which a scan reader does not use; use transfer auto or restore",
            details,
        ),
        _ => pass(
            "transfer",
            "restore: source.read scan copies every key with RESTORE (or commands)",
            details,
        ),
    })
}
