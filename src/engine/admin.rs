//! The engine's small admin calls on fresh or admin connections: what the source says about the
//! snapshot it is asked for, and the clean-ups after a run (releasing a
//! source pause, removing a cancelled migration's offset key).

use std::time::Duration;

use crate::client::Conn;
use crate::model::EventKind;
use crate::redis_url::RedisUrl;
use crate::resp::Frame;

use super::resume;

/// How long a cancel waits for the target to drop the offset key. Short: a cancel must stay
/// prompt even when the target is paused or unreachable, and a key left behind is harmless.
const REMOVE_MARK_TIMEOUT: Duration = Duration::from_secs(2);

/// Deletes the offset key of a cancelled migration, on a fresh connection. Best effort: a
/// target that does not answer within [`REMOVE_MARK_TIMEOUT`] keeps the key, which nothing
/// reads again (a cancelled migration never resumes).
pub(super) async fn remove_mark_after_cancel(target: &RedisUrl, key: &[u8]) {
    let attempt = async {
        let mut conn = Conn::connect(target).await.ok()?;
        resume::remove_mark(&mut conn, key).await.ok()
    };
    if tokio::time::timeout(REMOVE_MARK_TIMEOUT, attempt)
        .await
        .ok()
        .flatten()
        .is_none()
    {
        tracing::warn!(target = %target, "could not remove the offset key of a cancelled migration");
    }
}

/// `CLIENT UNPAUSE` on a fresh connection (the one that paused may be mid-call or gone). Best
/// effort: if the source is unreachable the pause still expires by itself after `pause_ms`.
pub(super) async fn release_pause(source: &RedisUrl) {
    let attempt = async {
        let mut conn = Conn::connect(source).await.ok()?;
        conn.call_ok(&["CLIENT", "UNPAUSE"]).await.ok()
    };
    if tokio::time::timeout(Duration::from_secs(10), attempt)
        .await
        .ok()
        .flatten()
        .is_none()
    {
        tracing::warn!(source = %source, "could not release the source's write pause; it expires by itself");
    }
}

/// What the source says about the snapshot it is asked for: diskless or not, the delay before its
/// fork, and how many keys it holds. Best effort: a source that refuses `CONFIG` (managed
/// services rename it) leaves those fields unknown.
pub(super) async fn snapshot_request(source: &mut Conn) -> EventKind {
    let config = match source.call(&["CONFIG", "GET", "repl-diskless-sync*"]).await {
        Ok(Frame::Array(items)) => crate::client::Config::from_pairs(
            items
                .iter()
                .map(|f| {
                    f.as_bytes()
                        .map(|b| String::from_utf8_lossy(b).into_owned())
                        .unwrap_or_default()
                })
                .collect(),
        ),
        _ => crate::client::Config::default(),
    };
    let diskless = config.get("repl-diskless-sync").map(|v| v == "yes");
    let keys_estimate = source
        .info("keyspace")
        .await
        .ok()
        .map(|info| info.total_keys());
    EventKind::SnapshotRequested {
        diskless,
        delay_secs: config
            .num("repl-diskless-sync-delay")
            .filter(|_| diskless == Some(true)),
        keys_estimate,
    }
}
