//! Getting a broken link back: reconnecting to a server that restarts, and asking the source to
//! continue from the applied offset (see the module docs of [`super::resume`] for why that offset
//! is exact). Each of these waits at most `Tuning::reconnect_timeout`.

use std::time::Duration;

use super::error::EngineError;
use super::Run;
use crate::client::Conn;
use crate::model::EventKind;
use crate::model::Link;
use crate::replication::{ReplicaLink, SyncStart};
use crate::transport::Peer;

/// How long to wait between attempts to reach a server again.
const RETRY_PAUSE: Duration = Duration::from_millis(500);

impl Run {
    /// Records a link lost mid-snapshot and asks for the snapshot to be redone.
    pub(super) async fn snapshot_interrupted(
        &self,
        link: Link,
        cause: String,
    ) -> Result<(), EngineError> {
        tracing::warn!(%cause, ?link, "link lost during the snapshot; redoing it");
        self.reporter
            .emit(EventKind::LinkLost {
                link,
                cause: cause.clone(),
            })
            .await?;
        Err(EngineError::ResyncNeeded(format!(
            "the snapshot was interrupted: {cause}"
        )))
    }

    /// A connection to the source or the target again, retried for `reconnect_timeout`.
    pub(super) async fn reconnect_conn(
        &self,
        server: Link,
        cause: &str,
    ) -> Result<Conn, EngineError> {
        let (peer, unreachable): (&Peer, fn(String) -> EngineError) = match server {
            Link::Source => (&self.source, EngineError::SourceUnreachable),
            Link::Target => (&self.target, EngineError::TargetUnreachable),
        };
        let url = peer.url();
        let deadline = tokio::time::Instant::now() + self.tuning.reconnect_timeout;
        loop {
            let last = match Conn::connect(peer).await {
                Ok(mut conn) => match conn.call(&["PING"]).await {
                    // A restarting server accepts connections before it has loaded its data.
                    Ok(reply) if reply.as_error().is_none() => return Ok(conn),
                    Ok(reply) => format!("{reply:?}"),
                    Err(e) => e.to_string(),
                },
                Err(e) => e.to_string(),
            };
            if tokio::time::Instant::now() >= deadline {
                return Err(unreachable(format!(
                    "{cause}; {url} did not come back within {}s: {last}",
                    self.tuning.reconnect_timeout.as_secs()
                )));
            }
            tokio::time::sleep(RETRY_PAUSE).await;
        }
    }

    /// Reconnects the replication link after it broke, asking to continue from `applied`, and
    /// returns it with the replid to record from now on (a failed-over source answers
    /// `+CONTINUE <new replid>`). Retries for `reconnect_timeout`; a source that can only offer
    /// a full resync yields [`EngineError::ResyncNeeded`].
    pub(super) async fn reconnect(
        &self,
        replid: &str,
        applied: i64,
        cause: &str,
    ) -> Result<(ReplicaLink, String), EngineError> {
        let deadline = tokio::time::Instant::now() + self.tuning.reconnect_timeout;
        loop {
            match ReplicaLink::connect(&self.source, self.tuning.link, Some((replid, applied)))
                .await
            {
                Ok(link) => {
                    self.note_link(&link);
                    if let SyncStart::Partial { replid: id, .. } = link.start() {
                        let id = id.clone();
                        return Ok((link, id));
                    }
                    return Err(EngineError::ResyncNeeded(format!(
                        "{cause}; the source can no longer continue from offset {applied} (its \
                         replication backlog moved on, or it lost its history)"
                    )));
                }
                Err(e) if tokio::time::Instant::now() >= deadline => {
                    return Err(EngineError::SourceLinkLost(format!(
                        "{cause}; reconnecting failed for {}s: {e}",
                        self.tuning.reconnect_timeout.as_secs()
                    )))
                }
                Err(_) => tokio::time::sleep(RETRY_PAUSE).await,
            }
        }
    }
}
