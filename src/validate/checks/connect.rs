//! `source.connect`, `target.connect` and `distinct_servers`: can Ferry talk to both servers, and
//! are they really two servers? (How TLS failed is said by the `tls.*` checks.)

use serde_json::json;

use super::{fail, pass, warn, Inputs, Verdict};
use crate::validate::facts::ServerFacts;

pub fn source_connect(inputs: &Inputs) -> Verdict {
    connect("source.connect", inputs.source)
}

pub fn target_connect(inputs: &Inputs) -> Verdict {
    connect("target.connect", inputs.target)
}

fn connect(id: &str, facts: &ServerFacts) -> Verdict {
    let addr = facts.url.addr();
    let tls = facts.url.tls;
    match &facts.connect {
        Ok(connected) => {
            let version = facts.info.as_ref().ok().and_then(|i| i.server());
            let described = match (version, tls) {
                (Some(v), true) => format!(" ({v}, TLS)"),
                (Some(v), false) => format!(" ({v})"),
                (None, true) => " (TLS)".to_string(),
                (None, false) => String::new(),
            };
            let negotiated = connected.tls.as_ref().map(|t| {
                json!({
                    "protocol": t.protocol,
                    "cipher_suite": t.cipher_suite,
                    "certificate_not_after": t.not_after.map(|d| d.to_rfc3339()),
                    "certificate_checked": !t.unverified,
                })
            });
            pass(
                id,
                format!("connected to {addr}{described}"),
                json!({
                    "addr": addr,
                    "tls": tls,
                    "tls_session": negotiated,
                    "user": connected.user,
                    "version": facts.info.as_ref().ok().and_then(|i| i.version()),
                    "server": version.map(|v| v.to_string()),
                    "latency_ms": connected.latency.as_millis() as u64,
                }),
            )
        }
        Err(error) => fail(
            id,
            error.to_string(),
            json!({ "addr": addr, "tls": tls, "error": error.to_string() }),
        ),
    }
}

/// Compares `run_id`, which a server draws at random on start-up: equal ids mean one process,
/// whatever the addresses look like (`localhost` vs `127.0.0.1`, a NAT, a DNS alias).
pub fn distinct_servers(inputs: &Inputs) -> Verdict {
    let id = "distinct_servers";
    let source = inputs.source.need_info()?.get("run_id").unwrap_or_default();
    let target = inputs.target.need_info()?.get("run_id").unwrap_or_default();
    let details = json!({ "source_run_id": source, "target_run_id": target });
    if source.is_empty() || target.is_empty() {
        return warn(
            id,
            "a server did not report its run_id; make sure the source and the target are different servers",
            details,
        );
    }
    if source == target {
        return fail(
            id,
            format!(
                "the source and the target are the same server (run_id {source}); \
                 point the target at a different server"
            ),
            details,
        );
    }
    pass(
        id,
        "the source and the target are different servers",
        details,
    )
}
