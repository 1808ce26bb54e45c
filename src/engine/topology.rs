//! The engine's own refusal of Redis Cluster servers where a path works on one server only.
//!
//! Migrations move clusters (a cluster source shard by shard, a cluster target through the
//! slot-routed writer), but a dry run, a file load (an RDB file, a backup, a rollback) and a
//! run pointed at one node are standalone paths: a standalone writer pointed at a cluster node
//! would write only the keys of that node's slots and fail on the rest (`MOVED`), and one
//! replication link would miss every other shard. Validation refuses these (`cluster.mode`),
//! but a server can be switched to cluster mode between the report and the start, and restores
//! load into a target without validating it: so those paths ask themselves, and stop first.

use super::error::EngineError;
use crate::client::Conn;
use crate::model::Link;

/// Fails with [`EngineError::Unsupported`] when `conn`'s server runs in cluster mode; `what`
/// names the path that cannot take one ("a dry run").
pub(crate) async fn refuse_cluster(
    conn: &mut Conn,
    link: Link,
    what: &str,
) -> Result<(), EngineError> {
    let info = conn.info("cluster").await.map_err(|e| match link {
        Link::Source => EngineError::source(e),
        Link::Target => EngineError::target(e),
    })?;
    if info.get("cluster_enabled") != Some("1") {
        return Ok(());
    }
    let side = match link {
        Link::Source => "source",
        Link::Target => "target",
    };
    Err(EngineError::Unsupported(format!(
        "the {side} {} runs in cluster mode (cluster_enabled:1), and {what} works with \
         standalone servers only (see the cluster.mode check)",
        conn.addr()
    )))
}
