//! Live streaming: replay the source's command stream on the target, in order, until cutover.
//!
//! Rules, and why:
//! - Commands are forwarded byte for byte on the writer's single connection, so order is kept and
//!   the stream's own `SELECT`s switch that connection's db.
//! - `MULTI` … `EXEC` is buffered and sent whole: a transaction cut by a read boundary must not
//!   leave the target half-applied while we wait for more bytes. Its own `MULTI`/`EXEC` are
//!   dropped: the writer wraps every batch in a transaction of its own that also records the
//!   applied offset on the target ([`Writer::track_offset`]), and a transaction inside it stays
//!   atomic.
//! - `PING` and `REPLCONF` are part of the offset but not of the data: they are not sent, and
//!   their offset counts as applied once everything before them is.
//! - The offset we acknowledge and checkpoint is the one whose reply came back from the target.
//!
//! - `FLUSHALL`, `FLUSHDB` and `SWAPDB` would delete (or move away) target keys the migration
//!   did not write. They are forwarded only when the target held no keys at the start, or the
//!   policy is `flush`; otherwise the migration stops before applying them
//!   ([`EngineError::UnsafeCommand`]), naming the command.
//!
//! Cutover: pause the source's writes (unless the migration asked not to; see [`super::pause`]
//! for how the pause is renewed and released), read its `master_repl_offset`, keep applying until
//! our applied offset reaches it, then read the source's offset again: if it moved, the pause did
//! not hold (`SourcePauseLapsed`), and the cutover pauses and catches up again instead of claiming
//! completion. The caller verifies and releases the pause.

use std::sync::Mutex;
use std::time::{Duration, Instant};

use super::error::EngineError;
use super::pause::SourcePause;
use super::translate::{self, TargetProfile};
use super::writer::Writer;
use super::{Controls, Reporter, Tuning};
use crate::client::Conn;
use crate::model::EventKind;
use crate::replication::{LinkItem, ReplCommand, ReplicaLink};
use crate::transport::Peer;

pub(crate) struct Streamer<'a> {
    pub link: &'a mut ReplicaLink,
    pub writer: &'a mut Writer,
    pub source: &'a mut Conn,
    pub reporter: &'a Reporter,
    pub controls: &'a Controls,
    pub tuning: &'a Tuning,
    pub replid: String,
    pub auto_cutover: bool,
    /// The cutover window: the automatic cutover only inside it.
    pub window: &'a mut super::window::WindowWatch,
    pub pause: bool,
    /// The source's write pause while the cutover holds it (released by the caller, or by its
    /// `Drop` on any other path).
    pub paused: &'a Mutex<Option<SourcePause>>,
    pub source_peer: &'a Peer,
    /// Stop at `FLUSHALL`/`FLUSHDB`/`SWAPDB` instead of applying them (the target held keys
    /// the migration must not delete).
    pub guard_flush: bool,
    /// The target's RDB version: commands are adapted to what it accepts from an ordinary
    /// client ([`adapt`](super::adapt)).
    pub target_rdb: u16,
    /// What the target has: newer commands are rewritten into its own
    /// ([`translate`](super::translate)).
    pub target: TargetProfile,
}

/// The source offset cutover waits for.
struct Goal {
    offset: i64,
    deadline: Instant,
}

/// How long to wait for the link before re-checking cutover and ACK timers.
const IDLE_TICK: Duration = Duration::from_millis(50);

/// Commands applied between two housekeeping rounds while the link stays busy.
const HOUSEKEEPING_EVERY: u32 = 256;

/// How many times a cutover catches up again after its pause did not hold, before it gives up.
const MAX_LAPSES: u32 = 10;

impl Streamer<'_> {
    /// Streams until cutover has caught up; returns the final applied offset.
    pub async fn run(mut self) -> Result<i64, EngineError> {
        // A diskless master sends nothing after the snapshot until our first ACK.
        self.link.set_applied(self.writer.applied_offset());
        self.link.request_ack();
        self.link
            .send_ack_if_due()
            .await
            .map_err(EngineError::from_link)?;

        let mut transaction: Option<Vec<ReplCommand>> = None;
        let mut streamed: u64 = 0;
        let mut goal: Option<Goal> = None;
        let mut last_report = Instant::now();
        // A checkpoint right away: a restart from here on resumes by partial resync instead of
        // copying the snapshot again.
        let start = self.writer.applied_offset();
        self.checkpoint(start, 0, None).await?;
        let mut last_checkpoint = Some(start);
        let mut lapses: u32 = 0;
        // While the link has commands buffered, timers, ACKs and checks run once every
        // `HOUSEKEEPING_EVERY` commands instead of after each (reading the clock per command
        // shows in profiles); whenever the link runs dry they run at once.
        let mut streak: u32 = 0;
        loop {
            if streak == 0 {
                if goal.is_none() && self.controls.cutover.is_cancelled() {
                    goal = Some(self.begin_cutover().await?);
                }
                if let Some(g) = &goal {
                    let applied = self.writer.applied_offset();
                    if applied >= g.offset && transaction.is_none() {
                        if let Some(moved) = self.pause_lapsed(g.offset).await? {
                            lapses += 1;
                            self.reporter
                                .emit(EventKind::SourcePauseLapsed {
                                    goal_offset: g.offset,
                                    source_offset: moved,
                                })
                                .await?;
                            if lapses > MAX_LAPSES {
                                return Err(EngineError::Unsupported(format!(
                                    "the source's writes could not be held for the cutover: its \
                                     offset moved past the goal {lapses} times while paused ({})",
                                    self.pause_trouble()
                                )));
                            }
                            tracing::warn!(
                                goal = g.offset,
                                source = moved,
                                "the source moved during the cutover's pause; catching up again"
                            );
                            goal = Some(self.begin_cutover().await?);
                            continue;
                        }
                        self.checkpoint(applied, streamed, Some(0)).await?;
                        return Ok(applied);
                    }
                    if Instant::now() > g.deadline {
                        return Err(EngineError::CutoverTimeout {
                            secs: self.tuning.cutover_timeout.as_secs(),
                            applied,
                            source_offset: g.offset,
                        });
                    }
                }
            }

            let (item, buffered) =
                match self.link.next_buffered().map_err(EngineError::from_link)? {
                    Some(item) => (Some(item), true),
                    None => {
                        self.writer.flush().await?;
                        let item = tokio::select! {
                            r = self.link.next() => Some(r.map_err(EngineError::from_link)?),
                            _ = tokio::time::sleep(IDLE_TICK) => None,
                            _ = self.controls.cutover.cancelled(), if goal.is_none() => None,
                        };
                        (item, false)
                    }
                };
            if let Some(LinkItem::Command(cmd)) = item {
                streamed += self.apply(cmd, &mut transaction).await?;
            } else if item.is_some() {
                return Err(EngineError::SourceLinkLost(
                    "unexpected snapshot data in the command stream".into(),
                ));
            }
            // A command that waited for the rate limits ends the streak: at a low rate, 256
            // commands can take minutes, and ACKs, checkpoints and the cutover must not wait.
            streak = if buffered && !self.writer.take_paced() {
                (streak + 1) % HOUSEKEEPING_EVERY
            } else {
                0
            };
            if streak != 0 {
                continue;
            }

            self.writer.check()?;
            self.link.set_applied(self.writer.applied_offset());
            self.link
                .send_ack_if_due()
                .await
                .map_err(EngineError::from_link)?;

            if last_report.elapsed() >= self.tuning.report_interval {
                last_report = Instant::now();
                let applied = self.writer.applied_offset();
                let source_offset = self
                    .source
                    .master_repl_offset()
                    .await
                    .map_err(EngineError::source)?;
                let lag = (source_offset - applied).max(0) as u64;
                if last_checkpoint != Some(applied) || lag > 0 {
                    last_checkpoint = Some(applied);
                    self.checkpoint(applied, streamed, Some(lag)).await?;
                }
                let caught_up = self.auto_cutover && lag == 0 && goal.is_none();
                let in_window = if goal.is_none() {
                    self.window.round(self.reporter, caught_up).await?
                } else {
                    false
                };
                if caught_up && in_window {
                    self.reporter
                        .emit(EventKind::CutoverStarted {
                            pause_source_writes: self.pause,
                        })
                        .await?;
                    goal = Some(self.begin_cutover().await?);
                }
            }
        }
    }

    async fn checkpoint(
        &self,
        applied: i64,
        streamed: u64,
        lag: Option<u64>,
    ) -> Result<(), EngineError> {
        self.reporter
            .emit(EventKind::Checkpoint {
                replid: self.replid.clone(),
                applied_offset: applied,
                commands_streamed: streamed,
                lag_bytes: lag,
                bytes_streamed: None,
            })
            .await
    }

    /// Pauses the source's writes if asked (or pauses them again after a lapse), and fixes the
    /// offset the target must reach.
    async fn begin_cutover(&mut self) -> Result<Goal, EngineError> {
        if self.pause {
            let held = self.paused.lock().unwrap_or_else(|p| p.into_inner()).take();
            let pause = match held {
                Some(pause) => {
                    // Someone lifted it, or a renewal failed: take it again now.
                    let ms = self.tuning.pause_ms.to_string();
                    self.source
                        .call_ok(&["CLIENT", "PAUSE", &ms, "WRITE"])
                        .await
                        .map_err(EngineError::source)?;
                    pause
                }
                None => {
                    let window = Duration::from_millis(self.tuning.pause_ms);
                    SourcePause::begin(self.source, self.source_peer, window).await?
                }
            };
            *self.paused.lock().unwrap_or_else(|p| p.into_inner()) = Some(pause);
        }
        let offset = self
            .source
            .master_repl_offset()
            .await
            .map_err(EngineError::source)?;
        Ok(Goal {
            offset,
            deadline: Instant::now() + self.tuning.cutover_timeout,
        })
    }

    /// With the pause on and the goal applied: the source's offset now, if it moved past the
    /// goal (the pause did not hold).
    async fn pause_lapsed(&mut self, goal: i64) -> Result<Option<i64>, EngineError> {
        if !self.pause {
            return Ok(None);
        }
        let now = self
            .source
            .master_repl_offset()
            .await
            .map_err(EngineError::source)?;
        Ok((now > goal).then_some(now))
    }

    fn pause_trouble(&self) -> String {
        self.paused
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .as_ref()
            .and_then(SourcePause::renewal_trouble)
            .map(|e| format!("the last renewal of the pause failed: {e}"))
            .unwrap_or_else(|| "something lifts the pause (CLIENT UNPAUSE)".into())
    }

    /// Refuses a command that would delete target keys the migration did not write.
    fn check_destructive(&self, cmd: &ReplCommand) -> Result<(), EngineError> {
        if !self.guard_flush {
            return Ok(());
        }
        for name in ["FLUSHALL", "FLUSHDB", "SWAPDB"] {
            if cmd.is(name) {
                return Err(EngineError::UnsafeCommand(format!(
                    "the source ran {name} (stream offset {}), which on the target would also \
                     delete or move keys the target held before the migration and on_conflict \
                     keeps; it was not applied, and the migration stopped before it. Roll back, \
                     or start again with on_conflict `flush` to allow it",
                    cmd.end_offset
                )));
            }
        }
        Ok(())
    }

    /// The commands the target gets instead of `cmd`, if it lacks `cmd` ([`translate`]): several,
    /// or none for a command that changes nothing it can hold. `None`: `cmd` itself goes.
    fn translated(&self, cmd: &ReplCommand) -> Result<Option<Vec<ReplCommand>>, EngineError> {
        let Some(outs) = translate::translate(&cmd.args, &self.target, translate::now_ms())? else {
            return Ok(None);
        };
        Ok(Some(
            outs.into_iter()
                .map(|out| {
                    let adapted = super::adapt::for_target(
                        ReplCommand::from_args(out.args, cmd.end_offset),
                        self.target_rdb,
                    );
                    match out.label {
                        // A script is named by what it stands for and its key, not its text.
                        Some((what, key)) => ReplCommand {
                            args: vec![bytes::Bytes::from_static(what.as_bytes()), key],
                            ..adapted
                        },
                        None => adapted,
                    }
                })
                .collect(),
        ))
    }

    /// Applies one command (or buffers it inside a transaction); returns how many data commands
    /// went to the target.
    async fn apply(
        &mut self,
        cmd: ReplCommand,
        transaction: &mut Option<Vec<ReplCommand>>,
    ) -> Result<u64, EngineError> {
        let control = ["MULTI", "EXEC", "PING", "REPLCONF", "SELECT"]
            .iter()
            .any(|name| cmd.is(name));
        if control || cmd.args.is_empty() {
            return self.apply_one(cmd, transaction).await;
        }
        self.check_destructive(&cmd)?;
        if let Some(sent) = self.translated(&cmd)? {
            return self.apply_many(cmd.end_offset, sent, transaction).await;
        }
        let cmd = super::adapt::for_target(cmd, self.target_rdb);
        self.apply_one(cmd, transaction).await
    }

    /// A command rewritten into `sent` (maybe none): queued in the open transaction, or sent
    /// back to back so that the writer's wrap keeps them in one `MULTI`, the last one reporting
    /// the source's offset.
    async fn apply_many(
        &mut self,
        end_offset: i64,
        sent: Vec<ReplCommand>,
        transaction: &mut Option<Vec<ReplCommand>>,
    ) -> Result<u64, EngineError> {
        if let Some(queued) = transaction {
            queued.extend(sent);
            return Ok(0);
        }
        let Some((last, rest)) = sent.split_last() else {
            self.writer.mark_applied(end_offset).await?;
            return Ok(0);
        };
        for c in rest {
            self.writer.forward(&c.raw, &c.args, None).await?;
        }
        self.writer
            .forward(&last.raw, &last.args, Some(end_offset))
            .await?;
        Ok(sent.len() as u64)
    }

    async fn apply_one(
        &mut self,
        cmd: ReplCommand,
        transaction: &mut Option<Vec<ReplCommand>>,
    ) -> Result<u64, EngineError> {
        if cmd.args.is_empty() {
            // An empty array carries no command; it still counts toward the offset.
            self.writer.mark_applied(cmd.end_offset).await?;
            return Ok(0);
        }
        if let Some(queued) = transaction {
            if cmd.is("EXEC") {
                let queued = std::mem::take(queued);
                *transaction = None;
                // The source's MULTI is left out (and so is its EXEC): the writer's own wrap
                // around the batch keeps the transaction atomic, together with the offset key.
                let body = queued.get(1..).unwrap_or_default();
                let Some((last, rest)) = body.split_last() else {
                    self.writer.mark_applied(cmd.end_offset).await?;
                    return Ok(0);
                };
                // A SELECT inside takes effect as it is sent, not as it was queued: until then
                // the writer's db (and the wrap trailer's SELECT) must not move.
                for c in rest {
                    if c.is("SELECT") {
                        self.writer.note_db(select_db(c)?);
                    }
                    self.writer.forward(&c.raw, &c.args, None).await?;
                }
                if last.is("SELECT") {
                    self.writer.note_db(select_db(last)?);
                }
                self.writer
                    .forward(&last.raw, &last.args, Some(cmd.end_offset))
                    .await?;
                return Ok(body.len() as u64);
            }
            queued.push(cmd);
            return Ok(0);
        }
        if cmd.is("MULTI") {
            *transaction = Some(vec![cmd]);
            return Ok(0);
        }
        if cmd.is("PING") || cmd.is("REPLCONF") {
            self.writer.mark_applied(cmd.end_offset).await?;
            return Ok(0);
        }
        if cmd.is("SELECT") {
            self.writer.note_db(select_db(&cmd)?);
            self.writer
                .forward(&cmd.raw, &cmd.args, Some(cmd.end_offset))
                .await?;
            return Ok(0);
        }
        self.writer
            .forward(&cmd.raw, &cmd.args, Some(cmd.end_offset))
            .await?;
        Ok(1)
    }
}

/// The db number of a `SELECT` from the stream.
fn select_db(cmd: &ReplCommand) -> Result<u32, EngineError> {
    cmd.args
        .get(1)
        .and_then(|d| std::str::from_utf8(d).ok())
        .and_then(|d| d.parse::<u32>().ok())
        .ok_or_else(|| EngineError::SourceLinkLost("a SELECT without a valid db number".into()))
}
