//! The writer's side of the rate limits ([`crate::engine::rate`]): every data command waits for
//! the throttle before it is encoded and is charged once it is.

use std::sync::Arc;

use super::{EngineError, Writer};

impl Writer {
    /// Paces every data command from now on by `throttle` (see [`super::rate`]).
    pub fn set_throttle(&mut self, throttle: Arc<crate::engine::rate::Throttle>) {
        self.throttle = Some(throttle);
    }

    /// Waits while the rate limits say so. What is encoded is sent first (the deadlock rule),
    /// and an open wrap is closed when the stream is between whole commands (`whole`), so that
    /// a slow rate does not hold the applied offset back for a whole wrap.
    pub(super) async fn pace(&mut self, whole: bool) -> Result<(), EngineError> {
        let Some(throttle) = self.throttle.clone() else {
            return Ok(());
        };
        let mut wait = throttle.wait();
        if wait.is_zero() {
            return Ok(());
        }
        self.paced = true;
        if whole {
            self.flush().await?;
        } else {
            self.send().await?;
        }
        while !wait.is_zero() {
            // In slices: a limit raised meanwhile (PATCH) applies within 100 ms.
            tokio::time::sleep(wait.min(std::time::Duration::from_millis(100))).await;
            self.check()?;
            wait = throttle.wait();
        }
        Ok(())
    }

    /// Whether a command waited for the rate limits since the last call.
    pub fn take_paced(&mut self) -> bool {
        std::mem::take(&mut self.paced)
    }

    pub(super) fn charge(&self, bytes: usize) {
        if let Some(throttle) = &self.throttle {
            throttle.charge(1, bytes as u64);
        }
    }
}
