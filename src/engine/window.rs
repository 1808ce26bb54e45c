//! The cutover window, as the streaming loops (restore and relay) see it: the automatic cutover
//! happens only inside it, and a window that closes without a cutover is recorded once.
//!
//! The decision is a pure function of the window, the clock and what was said already
//! ([`WindowWatch::step`]); the loops call it at each report (about once a second) and emit what
//! it returns. Ferry never cuts over by itself outside the window: streaming goes on, and a
//! person decides (a manual cutover outside the window needs `force`).

use chrono::{DateTime, Utc};

use super::error::EngineError;
use super::Reporter;
use crate::model::EventKind;
use crate::spec::{CutoverWindow, Schedule};

/// What one run has said about the window so far.
#[derive(Debug, Clone, Default)]
pub(crate) struct WindowWatch {
    window: Option<CutoverWindow>,
    deferred: bool,
    missed: bool,
}

/// What a report round does about the window.
#[derive(Debug, PartialEq)]
pub(crate) struct Step {
    /// The automatic cutover may begin now.
    pub cut_over: bool,
    pub event: Option<EventKind>,
}

impl WindowWatch {
    pub fn new(schedule: &Schedule) -> WindowWatch {
        WindowWatch {
            window: schedule.cutover_window,
            ..WindowWatch::default()
        }
    }

    /// One report round at `now`: `caught_up` is whether the automatic cutover would begin
    /// (auto cutover, lag 0, no cutover under way).
    pub fn step(&mut self, now: DateTime<Utc>, caught_up: bool) -> Step {
        let Some(window) = self.window else {
            return Step {
                cut_over: caught_up,
                event: None,
            };
        };
        if now >= window.to {
            let event = (!self.missed).then_some(EventKind::CutoverWindowMissed {
                closed_at: window.to,
            });
            self.missed = true;
            return Step {
                cut_over: false,
                event,
            };
        }
        if window.contains(now) {
            return Step {
                cut_over: caught_up,
                event: None,
            };
        }
        let event = (caught_up && !self.deferred).then_some(EventKind::CutoverDeferred {
            opens_at: window.from,
        });
        self.deferred |= caught_up;
        Step {
            cut_over: false,
            event,
        }
    }

    /// [`Self::step`] at the wall clock, with its event recorded; whether to cut over now.
    pub async fn round(
        &mut self,
        reporter: &Reporter,
        caught_up: bool,
    ) -> Result<bool, EngineError> {
        let step = self.step(Utc::now(), caught_up);
        if let Some(event) = step.event {
            reporter.emit(event).await?;
        }
        Ok(step.cut_over)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::TimeZone;

    fn t(secs: i64) -> DateTime<Utc> {
        Utc.with_ymd_and_hms(2026, 1, 1, 0, 0, 0).unwrap() + chrono::Duration::seconds(secs)
    }

    #[test]
    fn the_automatic_cutover_waits_for_the_window_and_a_closed_window_is_said_once() {
        let mut watch = WindowWatch::new(&Schedule {
            start_at: None,
            cutover_window: Some(CutoverWindow {
                from: t(10),
                to: t(20),
            }),
        });
        let before = watch.step(t(1), true);
        assert!(!before.cut_over);
        assert_eq!(
            before.event,
            Some(EventKind::CutoverDeferred { opens_at: t(10) })
        );
        assert_eq!(watch.step(t(2), true).event, None, "said once");
        assert!(watch.step(t(10), true).cut_over);
        assert!(!watch.step(t(15), false).cut_over, "not caught up");
        let after = watch.step(t(20), true);
        assert!(!after.cut_over, "never outside the window");
        assert_eq!(
            after.event,
            Some(EventKind::CutoverWindowMissed { closed_at: t(20) })
        );
        assert_eq!(watch.step(t(21), true).event, None);
    }

    #[test]
    fn without_a_window_the_cutover_is_any_time() {
        let mut watch = WindowWatch::new(&Schedule::default());
        assert!(watch.step(t(0), true).cut_over);
        assert!(!watch.step(t(0), false).cut_over);
    }
}
