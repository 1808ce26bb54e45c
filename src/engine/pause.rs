//! The source's write pause during cutover: short, renewed, and released on every path.
//!
//! `CLIENT PAUSE <ms> WRITE` holds the source's writes (and, from 6.2, its expiries and the
//! PINGs to replicas, so its replication offset stands still) while the target catches up to the
//! final offset. Three rules make it safe:
//!
//! - **Short and renewed.** The pause is taken for a short window and renewed every third of it
//!   by a task of its own, for as long as the cutover needs: a catch-up longer than one window no
//!   longer lets writes through unseen, and a Ferry that dies (kill -9) leaves a pause that
//!   lapses by itself within one window.
//! - **Released on every path.** [`SourcePause::release`] unpauses explicitly; a pause that is
//!   dropped instead (a cancel, an error, the supervisor dropping the engine) unpauses from its
//!   `Drop`, on a task of its own.
//! - **Checked.** The cutover compares the source's offset after the target has caught up with
//!   the goal it paused at: if it moved, the pause did not hold, and the cutover catches up again
//!   (see `stream`).

use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::task::JoinHandle;

use super::error::EngineError;
use crate::client::Conn;
use crate::transport::Peer;

/// How long an explicit unpause may take before the pause is left to lapse.
const UNPAUSE_TIMEOUT: Duration = Duration::from_secs(10);

/// A write pause of the source, renewed until released.
pub(crate) struct SourcePause {
    url: Peer,
    renewer: Option<JoinHandle<()>>,
    /// The last renewal error, if the last renewal failed (shown when the pause lapses).
    failed: Arc<Mutex<Option<String>>>,
}

fn pause_command(window: Duration) -> [String; 4] {
    [
        "CLIENT".into(),
        "PAUSE".into(),
        window.as_millis().max(1).to_string(),
        "WRITE".into(),
    ]
}

impl SourcePause {
    /// Pauses the source's writes for `window` on `conn`, and keeps renewing the pause.
    pub async fn begin(
        conn: &mut Conn,
        url: &Peer,
        window: Duration,
    ) -> Result<SourcePause, EngineError> {
        conn.call_ok(&pause_command(window)).await.map_err(|e| {
            EngineError::Unsupported(format!(
                "pausing the source's writes (CLIENT PAUSE … WRITE needs Redis 6.2+): {e}"
            ))
        })?;
        let failed: Arc<Mutex<Option<String>>> = Arc::default();
        let renewer = tokio::spawn(renew(url.clone(), window, failed.clone()));
        Ok(SourcePause {
            url: url.clone(),
            renewer: Some(renewer),
            failed,
        })
    }

    /// Why the last renewal failed, if it did.
    pub fn renewal_trouble(&self) -> Option<String> {
        self.failed
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    }

    /// Stops renewing and lifts the pause now. Best effort: a source that cannot be reached has
    /// its pause lapse by itself within one window.
    pub async fn release(mut self) {
        if let Some(task) = self.renewer.take() {
            task.abort();
        }
        unpause(&self.url).await;
    }
}

impl Drop for SourcePause {
    fn drop(&mut self) {
        let Some(task) = self.renewer.take() else {
            return;
        };
        task.abort();
        // Dropped without `release`: the engine was cancelled, failed or was dropped. Lift the
        // pause on a task of its own (a Drop cannot wait); without a runtime it lapses by itself.
        if let Ok(runtime) = tokio::runtime::Handle::try_current() {
            let url = self.url.clone();
            runtime.spawn(async move { unpause(&url).await });
        }
    }
}

async fn renew(url: Peer, window: Duration, failed: Arc<Mutex<Option<String>>>) {
    let every = (window / 3).max(Duration::from_millis(50));
    let mut conn: Option<Conn> = None;
    loop {
        tokio::time::sleep(every).await;
        if conn.is_none() {
            conn = Conn::connect(&url).await.ok();
        }
        let outcome = match conn.as_mut() {
            Some(c) => c
                .call_ok(&pause_command(window))
                .await
                .map(drop)
                .map_err(|e| e.to_string()),
            None => Err(format!("cannot reach {}", url.addr())),
        };
        let mut slot = failed.lock().unwrap_or_else(|p| p.into_inner());
        match outcome {
            Ok(()) => *slot = None,
            Err(e) => {
                tracing::warn!(source = %url.url(), error = %e, "renewing the source's write pause failed");
                *slot = Some(e);
                conn = None;
            }
        }
    }
}

/// `CLIENT UNPAUSE` on a fresh connection (the one that paused may be mid-call or gone).
async fn unpause(url: &Peer) {
    let attempt = async {
        let mut conn = Conn::connect(url).await.ok()?;
        conn.call_ok(&["CLIENT", "UNPAUSE"]).await.ok()
    };
    if tokio::time::timeout(UNPAUSE_TIMEOUT, attempt)
        .await
        .ok()
        .flatten()
        .is_none()
    {
        tracing::warn!(source = %url.url(), "could not release the source's write pause; it lapses by itself");
    }
}
