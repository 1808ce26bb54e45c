//! What the engine asks the source before it requests a snapshot, so that the phase can say
//! what the source is doing meanwhile (a diskless source waits before it forks).

use crate::client::Conn;
use crate::model::EventKind;
use crate::resp::Frame;

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
