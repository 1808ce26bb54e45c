//! The relay transfer: the target replicates *through* Ferry.
//!
//! 1. The target's replication settings are read (and recorded in `TransferChosen`), then
//!    changed: a password to authenticate with ([`relay_target`](super::relay_target)),
//!    `replica-read-only yes`, `repl-diskless-load on-empty-db`; with `on_conflict: flush` the
//!    target is emptied (after the restore point). A target that then holds nothing but the
//!    lease loads its first snapshot with `swapdb`, straight from the socket (Redis counts the
//!    lease, so `on-empty-db` would go through disk), and is set back to `on-empty-db` once that
//!    load is in. Then `REPLICAOF <relay host> <port>`.
//! 2. The target connects to the relay listener and asks `PSYNC`. Ferry forwards that request to
//!    the source on a replication link of its own, and forwards the answer back: `+FULLRESYNC`
//!    with the RDB (relayed chunk by chunk as it arrives, watched on the side for progress and
//!    a verification sample), or `+CONTINUE`. Then the command stream, byte for byte, and the
//!    target's `REPLCONF ACK`s the other way. See [`relay_session`](super::relay_session).
//! 3. When anything breaks (the source link, the target's connection, Ferry itself), the target
//!    reconnects a second later and asks `PSYNC <replid> <offset>` from where *it* stands; the
//!    source answers `+CONTINUE` if its backlog still holds that offset, or a full resync. Ferry
//!    keeps no offset of its own: exactly-once is Redis' own replication.
//! 4. Cutover: pause the source's writes (if asked), wait until the target's offset reaches the
//!    source's, `REPLICAOF NO ONE` and the original settings back, verify, release the pause.
//!
//! Every other way out (cancel, failure) releases the target too: [`super::run_with`] runs the
//! [`Release`] kept in the job's release slot. A Ferry that crashes leaves the target a replica of
//! a dead address for as long as Ferry is down; the restarted job, which kept `relay` in its log,
//! points the target at the new listener (`REPLICAOF` again, if the address changed) and the
//! target resumes by partial resync: the job serves it again, and cancelling then releases it.
//!
//! `transfer: auto` falls back to restore when a fresh relay's target never connects (an
//! address it cannot reach): the target is released and the job continues on the restore path.

use std::collections::BTreeMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use bytes::Bytes;

use super::error::EngineError;
use super::relay_session::{Finished, SessionState};
use super::relay_target::{self, Release};
use super::{Controls, EngineJob, Reporter, Servers, Tuning};
use crate::client::Conn;
use crate::model::{EventKind, Link, RelayTargetSettings, ResumeKind};
use crate::relay::{Registration, TargetSession};
use crate::spec::{Mode, OnConflict, Transfer};
use crate::transport::Peer;

/// How a relay ended.
pub(crate) enum RelayOutcome {
    /// Done: verified and, in live mode, cut over.
    Completed,
    /// `auto` only: the target never connected; it has been released, and the job goes on with
    /// the restore path for the reason given.
    FellBack(String),
}

pub(crate) struct Relay<'a> {
    pub job: &'a EngineJob,
    /// The source's link: the relay's own replica link to it goes through the transport too
    /// (TLS, ACL user), like every other.
    pub source_peer: &'a Peer,
    pub target_peer: &'a Peer,
    pub reporter: &'a Reporter,
    pub controls: &'a Controls,
    pub tuning: &'a Tuning,
    /// The source's write pause while the cutover holds it.
    pub paused: &'a Mutex<Option<super::pause::SourcePause>>,
    /// Where the way to release the target is kept while it is a replica of Ferry.
    pub release_slot: &'a Mutex<Option<Release>>,
    pub source: &'a mut Conn,
    pub target: &'a mut Conn,
    pub servers: &'a Servers,
    /// The target's settings before the relay (from this run, or from the log of an earlier one).
    pub original: RelayTargetSettings,
    /// A restarted job: the target already replicates (or did) through a Ferry.
    pub resumed: bool,
}

impl Relay<'_> {
    pub async fn run(mut self) -> Result<RelayOutcome, EngineError> {
        let spec = &self.job.spec;
        let prepared = relay_target::prepare(self.target, self.target_peer, &self.original, None)
            .await
            .map_err(EngineError::target)?;
        self.set_release(Some(prepared.release.clone()));
        let mut registration = self
            .tuning
            .relay
            .register(&prepared.secret)
            .await
            .map_err(|e| EngineError::Unsupported(format!("relay: {e}")))?;
        if !self.resumed && spec.options.on_conflict == OnConflict::Flush {
            // The restore point is taken; a replica is emptied by its first sync anyway, and an
            // empty dataset is what lets it load straight from the socket.
            // The lease goes back in the same transaction (the sync then replaces it, and the
            // replica's read-only role keeps other writers out until the release).
            super::flush_target(self.target_peer, self.job.lease.as_ref()).await?;
        }
        let from_socket = !self.resumed
            && relay_target::load_from_socket_if_empty(self.target)
                .await
                .map_err(EngineError::target)?;
        self.point_target(&registration, &prepared.secret).await?;
        tracing::info!(
            target = %spec.target.url,
            relay = %format!("{}:{}", registration.host, registration.port),
            resumed = self.resumed,
            "relay: the target replicates through Ferry"
        );

        let mut state = SessionState::new(self.tuning, self.resumed);
        state.loads_from_socket = from_socket;
        let mut lost_at: Option<Instant> = None;
        loop {
            let (wait, first) = match lost_at {
                None if !self.resumed && state.sessions == 0 => {
                    (self.tuning.relay_connect_timeout, true)
                }
                _ => (self.tuning.reconnect_timeout, false),
            };
            let Some(session) = self
                .wait_session(&mut registration, &prepared.secret, wait)
                .await?
            else {
                let why = format!(
                    "the target did not connect to the relay at {}:{} within {}s (can it reach \
                     that address? see [relay] advertise)",
                    registration.host,
                    registration.port,
                    wait.as_secs()
                );
                if first && spec.options.transfer == Transfer::Auto {
                    drop(registration);
                    self.release("fallback to restore").await?;
                    return Ok(RelayOutcome::FellBack(format!(
                        "auto: {why}, so restore instead"
                    )));
                }
                return Err(EngineError::TargetLinkLost(why));
            };
            let served = super::relay_session::Serve {
                relay: &mut self,
                state: &mut state,
            }
            .run(session)
            .await;
            match served {
                Ok(finished) => return self.finish(finished, state.sample()).await,
                Err(EngineError::SourceLinkLost(cause)) => {
                    self.lost(Link::Source, cause, &mut lost_at).await?
                }
                Err(EngineError::TargetLinkLost(cause)) => {
                    self.lost(Link::Target, cause, &mut lost_at).await?
                }
                Err(other) => return Err(other),
            }
        }
    }

    async fn lost(
        &self,
        link: Link,
        cause: String,
        lost_at: &mut Option<Instant>,
    ) -> Result<(), EngineError> {
        tracing::warn!(%cause, ?link, "relay: a link broke; waiting for the target to reconnect");
        lost_at.get_or_insert_with(Instant::now);
        self.reporter
            .emit(EventKind::LinkLost { link, cause })
            .await
    }

    /// Called by a session that got going again after a break.
    pub(crate) async fn resumed_link(
        &self,
        kind: ResumeKind,
        reason: String,
    ) -> Result<(), EngineError> {
        self.reporter
            .emit(EventKind::LinkResumed {
                link: Link::Source,
                kind,
                reason,
            })
            .await
    }

    fn set_release(&self, release: Option<Release>) {
        *self.release_slot.lock().unwrap_or_else(|p| p.into_inner()) = release;
    }

    /// Releases the target now (on this job's connection) and records it.
    async fn release(&mut self, why: &str) -> Result<(), EngineError> {
        let release = self
            .release_slot
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone();
        let Some(release) = release else {
            return Ok(());
        };
        let restored = release
            .run_on(self.target)
            .await
            .map_err(EngineError::target)?;
        self.set_release(None);
        self.reporter
            .emit(EventKind::TargetReleased {
                reason: why.to_string(),
                restored,
            })
            .await
    }

    /// `REPLICAOF` the relay, unless the target already replicates from it.
    async fn point_target(
        &mut self,
        registration: &Registration,
        secret: &str,
    ) -> Result<(), EngineError> {
        let role = relay_target::role(self.target)
            .await
            .map_err(EngineError::target)?;
        let ours = (registration.host.clone(), registration.port);
        if role.master.as_ref() == Some(&ours) {
            return Ok(());
        }
        if role.master.is_none() && self.resumed {
            // A target that restarted forgot what CONFIG SET told it: tell it again.
            relay_target::prepare(self.target, self.target_peer, &self.original, Some(secret))
                .await
                .map_err(EngineError::target)?;
        }
        let port = registration.port.to_string();
        self.target
            .call_ok(&["REPLICAOF", registration.host.as_str(), port.as_str()])
            .await
            .map_err(EngineError::target)?;
        Ok(())
    }

    /// The next target session, re-pointing the target at the relay while it does not come
    /// (a target that restarted, or one that still points at an earlier Ferry's port).
    async fn wait_session(
        &mut self,
        registration: &mut Registration,
        secret: &str,
        wait: Duration,
    ) -> Result<Option<TargetSession>, EngineError> {
        let deadline = Instant::now() + wait;
        loop {
            let check = tokio::time::sleep(Duration::from_secs(2));
            tokio::select! {
                session = registration.next() => {
                    return session.map(Some).ok_or_else(|| {
                        EngineError::Unsupported("relay: the listener stopped".into())
                    });
                }
                _ = check => {
                    if Instant::now() >= deadline {
                        return Ok(None);
                    }
                    self.point_target(registration, secret).await?;
                }
            }
        }
    }

    /// After the last session: detach the target, verify, release the pause.
    async fn finish(
        mut self,
        finished: Finished,
        sample: BTreeMap<u32, Vec<Bytes>>,
    ) -> Result<RelayOutcome, EngineError> {
        // Detached while still connected: it stops exactly at the offset it has reached.
        let live = self.job.spec.mode == Mode::Live;
        self.release(if live { "cutover" } else { "snapshot loaded" })
            .await?;
        drop(finished.session);
        // The target has stopped at the final offset: the pause has done its work, unless it is
        // to cover the verification too.
        let held = self.paused.lock().unwrap_or_else(|p| p.into_inner()).take();
        let kept = match held {
            Some(pause) if !self.job.spec.options.pause_during_verification => {
                pause.release().await;
                None
            }
            other => other,
        };
        if self.job.spec.options.verify != crate::spec::Verify::None {
            let report = super::verify::Verifier {
                source: &mut *self.source,
                target: &mut *self.target,
                servers: self.servers,
                tuning: self.tuning,
                mode: self.job.spec.options.verify,
                offset_key: None,
                sample_hint: Some(&sample),
                // A relay copies everything: a shaped migration never relays.
                shape: &crate::shape::Shape::default(),
            }
            .run()
            .await?;
            self.reporter.verification(report).await?;
        }
        if let Some(pause) = kept {
            pause.release().await;
        }
        if live {
            tracing::info!(
                final_offset = finished.final_offset,
                "relay cutover completed"
            );
            self.reporter
                .emit(EventKind::CutoverCompleted {
                    final_offset: finished.final_offset,
                })
                .await?;
        }
        Ok(RelayOutcome::Completed)
    }
}
