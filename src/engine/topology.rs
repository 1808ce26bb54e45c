//! The engine's own refusal of Redis Cluster servers.
//!
//! Validation refuses a cluster on either side (`cluster.mode`) and start requires a passing
//! validation, but a server can be switched to cluster mode between the report and the start (or
//! under a restarted job), and restores load into a target without validating it. A standalone
//! writer pointed at a cluster node would write only the keys of that node's slots and fail on
//! the rest (`MOVED`), and a replication link to one master would miss every other shard: so the
//! engine asks itself, once per connection it writes through or reads from (a migration of any source read, a dry
//! run, a file load, a rollback's flush), and stops first.

use super::error::EngineError;
use crate::client::Conn;
use crate::model::Link;

/// Fails with [`EngineError::Unsupported`] when `conn`'s server runs in cluster mode.
pub(crate) async fn refuse_cluster(conn: &mut Conn, link: Link) -> Result<(), EngineError> {
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
        "the {side} {} runs in cluster mode (cluster_enabled:1), and this build of Ferry moves \
         data from and to standalone servers only (see the cluster.mode check)",
        conn.addr()
    )))
}
