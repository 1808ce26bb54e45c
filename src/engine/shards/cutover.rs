//! The cutover of a cluster source: one pause over every master, then every shard catches up.
//!
//! A cluster's writes land on all its masters at once, so a cutover that paused them one shard at
//! a time would let writes through on the shards not yet paused while the others are declared
//! done. Instead the cutover pauses every master first (the existing [`SourcePause`], renewed and
//! released on every path, one per master), and only then tells each shard run to cut over: each
//! reads its source's offset as its goal and applies up to it. A shard read from a replica
//! (`source.prefer: replica`) is told only once that replica holds everything its paused master
//! has, so its goal is the master's.
//!
//! The masters are looked up again when the cutover begins, so a master that failed over during
//! the migration is the one paused. Before the pauses are lifted, each master's offset is read
//! again: if it moved, the pause did not hold, and the cutover fails rather than claim a
//! consistent end.

use std::time::{Duration, Instant};

use crate::client::cluster::node_endpoint;
use crate::client::Conn;
use crate::engine::error::EngineError;
use crate::engine::pause::SourcePause;
use crate::engine::Tuning;
use crate::spec::Endpoint;
use crate::transport::Peer;

use super::Plan;

/// How often a replica's offset is read while it catches up with its paused master.
const POLL: Duration = Duration::from_millis(20);

/// One paused master.
struct Paused {
    addr: String,
    peer: Peer,
    /// Its offset once paused: where it must still be when the pause is lifted.
    offset: i64,
    pause: SourcePause,
}

/// The pauses the cutover holds (lifted by [`Held::release`], or by each pause's `Drop` on any
/// other path).
pub(super) struct Held {
    paused: Vec<Paused>,
}

fn source_err(addr: &str, e: crate::client::ClientError) -> EngineError {
    EngineError::SourceError(format!("{addr}: {e}"))
}

/// Pauses every current master (when `pause`), and waits until each shard's source node holds
/// what its master holds. Returns the pauses held.
pub(super) async fn begin(
    seed: &Endpoint,
    plans: &[Plan],
    pause: bool,
    tuning: &Tuning,
) -> Result<Held, EngineError> {
    let window = Duration::from_millis(tuning.pause_ms);
    let mut paused = Vec::new();
    let mut goals = Vec::new();
    for plan in plans {
        let addr = plan.master.addr();
        let peer = Peer::new(&node_endpoint(seed, &plan.master)).map_err(|e| {
            EngineError::SourceError(format!("{addr}: {}", crate::client::ClientError::from(e)))
        })?;
        let mut conn = Conn::connect(&peer)
            .await
            .map_err(|e| source_err(&addr, e))?;
        let held = match pause {
            true => Some(SourcePause::begin(&mut conn, &peer, window).await?),
            false => None,
        };
        let offset = conn
            .master_repl_offset()
            .await
            .map_err(|e| source_err(&addr, e))?;
        goals.push(offset);
        if let Some(pause) = held {
            paused.push(Paused {
                addr,
                peer,
                offset,
                pause,
            });
        }
    }
    let deadline = Instant::now() + tuning.cutover_timeout;
    for (plan, goal) in plans.iter().zip(goals) {
        if plan.read.id == plan.master.id {
            continue;
        }
        let addr = plan.read.addr();
        let peer = Peer::new(&node_endpoint(seed, &plan.read)).map_err(|e| {
            EngineError::SourceError(format!("{addr}: {}", crate::client::ClientError::from(e)))
        })?;
        let mut conn = Conn::connect(&peer)
            .await
            .map_err(|e| source_err(&addr, e))?;
        loop {
            let now = conn
                .master_repl_offset()
                .await
                .map_err(|e| source_err(&addr, e))?;
            if now >= goal {
                break;
            }
            if Instant::now() > deadline {
                return Err(EngineError::CutoverTimeout {
                    secs: tuning.cutover_timeout.as_secs(),
                    applied: now,
                    source_offset: goal,
                });
            }
            tokio::time::sleep(POLL).await;
        }
    }
    Ok(Held { paused })
}

impl Held {
    /// Fails when a paused master's offset moved: its pause did not hold.
    pub async fn check(&self) -> Result<(), EngineError> {
        for p in &self.paused {
            let mut conn = Conn::connect(&p.peer)
                .await
                .map_err(|e| source_err(&p.addr, e))?;
            let now = conn
                .master_repl_offset()
                .await
                .map_err(|e| source_err(&p.addr, e))?;
            if now > p.offset {
                let trouble = p
                    .pause
                    .renewal_trouble()
                    .map(|e| format!("the last renewal of the pause failed: {e}"))
                    .unwrap_or_else(|| "something lifted the pause (CLIENT UNPAUSE)".into());
                return Err(EngineError::Unsupported(format!(
                    "the writes of source master {} could not be held for the cutover: its \
                     offset moved from {} to {now} while paused ({trouble})",
                    p.addr, p.offset
                )));
            }
        }
        Ok(())
    }

    /// Lifts every pause.
    pub async fn release(self) {
        for p in self.paused {
            p.pause.release().await;
        }
    }
}
