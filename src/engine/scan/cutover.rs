//! The end of a scan reader: the last changes, then a full comparison.
//!
//! In live mode the source's writes are paused first (`pause_source_writes_on_cutover`, the same
//! renewed `CLIENT PAUSE … WRITE` as the replication cutover, which also holds expiries). Then a
//! barrier on the subscriber (a `PING` answered in line with the messages) proves that every
//! notification published before it has arrived, the dirty keys are copied, and this repeats
//! until a barrier finds nothing new. Without a pause that may never happen while clients write:
//! it is bounded by `cutover_timeout`. A snapshot-mode copy makes a few such rounds, then stops.
//!
//! Verification is `full`, whatever `options.verify` says: with no replication offset to prove
//! the target caught up, comparing every key is the proof. The pause is released before it
//! (or after, with `pause_during_verification`), and on every other path by the pause's own drop.

use std::time::{Duration, Instant};

use super::{Reading, ScanReader};
use crate::engine::error::EngineError;
use crate::engine::pause::SourcePause;
use crate::engine::resume::{self, KeySet};
use crate::engine::verify::Verifier;
use crate::model::EventKind;
use crate::spec::{Mode, Verify};

/// Rounds of catch-up a snapshot-mode copy makes after its scan.
const SNAPSHOT_ROUNDS: usize = 3;

pub(super) struct Cutover<'a, 'b> {
    pub scan: &'a mut ScanReader<'b>,
    pub state: &'a mut Reading,
    pub preexisting: Option<&'a KeySet>,
}

impl Cutover<'_, '_> {
    pub async fn run(self) -> Result<(), EngineError> {
        let Cutover {
            scan,
            state,
            preexisting,
        } = self;
        let run = scan.run;
        let options = &run.job.spec.options;
        let live = run.job.spec.mode == Mode::Live;
        if live && options.pause_source_writes_on_cutover {
            let window = Duration::from_millis(run.tuning.pause_ms);
            let pause = SourcePause::begin(scan.source, &run.source, window).await?;
            *run.paused.lock().unwrap_or_else(|p| p.into_inner()) = Some(pause);
        }
        let deadline = Instant::now() + run.tuning.cutover_timeout;
        let mut rounds = 0;
        loop {
            rounds += 1;
            // A lost subscriber shows in the dirty set: the catch-up below scans again.
            let heard_all = state.listener.barrier().await;
            let mut copied = false;
            while scan.catch_up_once(state, preexisting).await? {
                copied = true;
            }
            state.writer.drain().await?;
            if heard_all && !copied {
                break;
            }
            if !live && rounds >= SNAPSHOT_ROUNDS {
                break;
            }
            if Instant::now() > deadline {
                return Err(EngineError::SourceError(format!(
                    "cutover: the source's keys kept changing for {}s (pause its writes: \
                     pause_source_writes_on_cutover)",
                    run.tuning.cutover_timeout.as_secs()
                )));
            }
        }
        scan.checkpoint(state, true).await?;
        let held = run.paused.lock().unwrap_or_else(|p| p.into_inner()).take();
        let kept = match held {
            Some(pause) if !options.pause_during_verification => {
                pause.release().await;
                None
            }
            other => other,
        };
        let report = Verifier {
            source: &mut *scan.source,
            target: &mut *scan.target,
            servers: scan.servers,
            tuning: &run.tuning,
            mode: Verify::Full,
            offset_key: Some(&run.offset_key),
            sample_hint: None,
        }
        .run()
        .await?;
        let verified = run.reporter.verification(report).await;
        if let Some(pause) = kept {
            pause.release().await;
        }
        verified?;
        resume::remove_mark(scan.target, &run.offset_key)
            .await
            .map_err(EngineError::target)?;
        if live {
            run.reporter
                .emit(EventKind::CutoverCompleted { final_offset: 0 })
                .await?;
        }
        Ok(())
    }
}
