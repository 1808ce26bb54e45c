//! Pre-flight checks against both servers, one function per check id.
//!
//! [`run`] is the only entry point `jobs` calls. Each check returns a [`CheckResult`] with a stable
//! id; independent checks run concurrently, each under a timeout, so a dead server cannot hang the
//! endpoint.

pub mod guide;

use std::time::{Duration, Instant};

use serde_json::json;

use crate::redis_url::RedisUrl;
use crate::spec::MigrationSpec;
use crate::store::event::{CheckResult, CheckStatus, ValidationReport};

/// How long one connection attempt may take.
pub const CONNECT_TIMEOUT: Duration = Duration::from_secs(3);

/// Runs every check for `spec` and returns the report. Never fails: problems are checks that fail.
pub async fn run(spec: &MigrationSpec) -> ValidationReport {
    let (source, target) = tokio::join!(
        check_connect("source.connect", &spec.source.url),
        check_connect("target.connect", &spec.target.url),
    );
    ValidationReport::from_checks(vec![source, target])
}

/// `source.connect` / `target.connect`: the server answers PING within the timeout.
async fn check_connect(id: &str, url: &RedisUrl) -> CheckResult {
    let started = Instant::now();
    let outcome = tokio::time::timeout(CONNECT_TIMEOUT, ping(url)).await;
    let (status, message) = match outcome {
        Ok(Ok(())) => (CheckStatus::Pass, format!("connected to {}", url.addr())),
        Ok(Err(e)) => (CheckStatus::Fail, format!("cannot use {}: {e}", url.addr())),
        Err(_) => (
            CheckStatus::Fail,
            format!(
                "no answer from {} within {}s; check the host, port and firewall",
                url.addr(),
                CONNECT_TIMEOUT.as_secs()
            ),
        ),
    };
    CheckResult {
        id: id.to_string(),
        status,
        message,
        details: Some(json!({ "latency_ms": started.elapsed().as_millis() as u64 })),
    }
}

async fn ping(url: &RedisUrl) -> Result<(), String> {
    let client = redis::Client::open(url.expose_url()).map_err(describe)?;
    let mut conn = client
        .get_multiplexed_async_connection()
        .await
        .map_err(describe)?;
    redis::cmd("PING")
        .query_async::<String>(&mut conn)
        .await
        .map_err(describe)?;
    Ok(())
}

/// Turns a client error into a message that names the problem, never the password.
fn describe(e: redis::RedisError) -> String {
    let text = e.to_string();
    if text.contains("WRONGPASS") || text.contains("invalid password") || text.contains("NOAUTH") {
        "authentication failed; check the user name and password in the URL".to_string()
    } else {
        text
    }
}
