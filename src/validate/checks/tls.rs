//! The TLS checks, one id per way a TLS connection goes wrong, so that a report names the fix:
//! `tls.files` (a CA, certificate or key file Ferry cannot use), `tls.protocol` (`redis://` to a
//! TLS port or `rediss://` to a plain one), `tls.handshake` (anything else in the handshake),
//! `tls.chain` (an untrusted certificate), `tls.hostname` (a certificate for another name),
//! `tls.expiry` (expired: fail; expiring within [`EXPIRY_WARNING_DAYS`]: warn),
//! `tls.client_certificate` (mutual TLS: none given, or refused) and `tls.verification` (the
//! certificate is not checked at all, by request: warn).
//!
//! Each looks at both servers. The connection attempt already classified its failure
//! ([`crate::transport::TlsProblem`]), so a check fails where the connection failed its way, passes
//! where the connection succeeded, and is skipped (naming `<side>.connect`) where the connection
//! failed for another reason first.

use chrono::{DateTime, Utc};
use serde_json::{json, Value};

use super::{fail, pass, result, warn, Inputs, Verdict};
use crate::model::CheckStatus;
use crate::transport::{ConnectError, TlsProblem};
use crate::validate::facts::{ServerFacts, FILE_SOURCE_USER};

/// A server certificate that expires sooner than this is a warning: a migration, its live phase
/// included, can last days, and an expired certificate stops every reconnection.
pub const EXPIRY_WARNING_DAYS: i64 = 14;

/// The servers, leaving out the stand-in of a file source.
fn sides<'a>(inputs: &'a Inputs) -> Vec<(&'static str, &'a ServerFacts)> {
    [("source", inputs.source), ("target", inputs.target)]
        .into_iter()
        .filter(|(_, facts)| !matches!(&facts.connect, Ok(c) if c.user == FILE_SOURCE_USER))
        .collect()
}

/// Decides one check of kind `problem`: fail on the sides whose connection failed that way.
/// `applies` picks the sides the check is about (the TLS ones, except for `tls.protocol`).
fn by_problem(
    id: &str,
    problem: TlsProblem,
    inputs: &Inputs,
    applies: fn(&ServerFacts) -> bool,
    passed: &str,
) -> Verdict {
    let mut failures = Vec::new();
    let mut unchecked = Vec::new();
    let mut checked = Vec::new();
    for (side, facts) in sides(inputs) {
        if !applies(facts) {
            continue;
        }
        match &facts.connect {
            Ok(_) => checked.push(side),
            Err(e) if e.tls_problem() == Some(problem) => failures.push((side, e.to_string())),
            Err(_) => unchecked.push(side),
        }
    }
    if !failures.is_empty() {
        let message = failures
            .iter()
            .map(|(side, error)| format!("{side}: {error}"))
            .collect::<Vec<_>>()
            .join("; ");
        let details: Value = failures
            .iter()
            .map(|(side, error)| (side.to_string(), Value::String(error.clone())))
            .collect::<serde_json::Map<_, _>>()
            .into();
        return fail(id, message, details);
    }
    if checked.is_empty() && unchecked.is_empty() {
        return pass(
            id,
            "no endpoint uses TLS (rediss://)",
            json!({ "tls_endpoints": [] }),
        );
    }
    if let Some(side) = unchecked.first() {
        let waits_on = format!("{side}.connect");
        return result(
            id,
            CheckStatus::Skipped,
            format!(
                "not checked for the {side}: its connection failed first (see {waits_on}); fix \
                 the connection first"
            ),
            json!({ "server": side, "waits_on": waits_on, "checked": checked }),
        );
    }
    pass(
        id,
        format!("{} ({})", passed, checked.join(" and ")),
        json!({ "checked": checked }),
    )
}

fn uses_tls(facts: &ServerFacts) -> bool {
    facts.url.tls
}

fn any(_: &ServerFacts) -> bool {
    true
}

/// Also about a plain `redis://` endpoint that was given `tls` settings (refused before dialing).
pub fn files(inputs: &Inputs) -> Verdict {
    by_problem(
        "tls.files",
        TlsProblem::Files,
        inputs,
        |facts| uses_tls(facts) || matches!(facts.connect, Err(ConnectError::TlsSettings(_))),
        "the TLS files could be read",
    )
}

/// About every server, plain ones included: `redis://` to a TLS port fails here too.
pub fn protocol(inputs: &Inputs) -> Verdict {
    by_problem(
        "tls.protocol",
        TlsProblem::Protocol,
        inputs,
        any,
        "each server speaks what its URL says, TLS or plain",
    )
}

pub fn handshake(inputs: &Inputs) -> Verdict {
    by_problem(
        "tls.handshake",
        TlsProblem::Handshake,
        inputs,
        uses_tls,
        "the TLS handshake completed",
    )
}

pub fn chain(inputs: &Inputs) -> Verdict {
    by_problem(
        "tls.chain",
        TlsProblem::Chain,
        inputs,
        uses_tls,
        "the server certificate chains to a trusted CA",
    )
}

pub fn hostname(inputs: &Inputs) -> Verdict {
    by_problem(
        "tls.hostname",
        TlsProblem::Hostname,
        inputs,
        uses_tls,
        "the server certificate is valid for the name Ferry connects to",
    )
}

pub fn client_certificate(inputs: &Inputs) -> Verdict {
    by_problem(
        "tls.client_certificate",
        TlsProblem::ClientCertificate,
        inputs,
        uses_tls,
        "the server accepted the connection's client authentication",
    )
}

/// Expired (or not yet valid): fail, as the connection did. Valid for less than
/// [`EXPIRY_WARNING_DAYS`]: warn with the date.
pub fn expiry(inputs: &Inputs) -> Verdict {
    let id = "tls.expiry";
    let verdict = by_problem(
        id,
        TlsProblem::Expired,
        inputs,
        uses_tls,
        "the server certificate is valid for more than 14 days",
    )?;
    if verdict.status != CheckStatus::Pass {
        return Ok(verdict);
    }
    let mut soon = Vec::new();
    let mut dates = serde_json::Map::new();
    for (side, facts) in sides(inputs) {
        let Some(not_after) = not_after(facts) else {
            continue;
        };
        dates.insert(side.to_string(), json!(not_after.to_rfc3339()));
        let days = (not_after - facts.gathered_at).num_days();
        if days < EXPIRY_WARNING_DAYS {
            soon.push(format!(
                "the {side}'s certificate expires in {days} day{} ({}); renew it on the server \
                 before the migration ends",
                if days == 1 { "" } else { "s" },
                not_after.format("%Y-%m-%d %H:%M UTC")
            ));
        }
    }
    if !soon.is_empty() {
        return warn(id, soon.join("; "), Value::Object(dates));
    }
    Ok(verdict)
}

fn not_after(facts: &ServerFacts) -> Option<DateTime<Utc>> {
    facts.connect.as_ref().ok()?.tls.as_ref()?.not_after
}

/// `insecure_skip_verify` was asked for by name: it works, and it is a warning.
pub fn verification(inputs: &Inputs) -> Verdict {
    let id = "tls.verification";
    let unverified: Vec<&str> = sides(inputs)
        .into_iter()
        .filter(|(_, facts)| facts.url.tls && facts.tls_unverified)
        .map(|(side, _)| side)
        .collect();
    let details = json!({ "unverified": unverified });
    if unverified.is_empty() {
        return pass(id, "every TLS server certificate is checked", details);
    }
    warn(
        id,
        format!(
            "the {}'s certificate is not checked (`tls.insecure_skip_verify`): anyone on the path \
             could read or change the data and the passwords; give `tls.ca_file` instead",
            unverified.join(" and the ")
        ),
        details,
    )
}
