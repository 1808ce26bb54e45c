//! Rate limits on the writes to the target: token buckets, and the throttle the writer waits on.
//!
//! One bucket per limited dimension (commands, bytes). A bucket holds at most [`BURST_SECS`]
//! worth of tokens, so that any span of a few seconds stays within a few percent of the rate:
//! over `T` seconds at most `rate × (T + 0.1)` pass, plus the one command that drove the bucket
//! into debt. A command waits until both buckets are out of debt, then is charged in full (a
//! command larger than the burst leaves the bucket in debt, and the next one waits it off), so a
//! big RESTORE is never split and never refused.
//!
//! The buckets are pure (the caller passes the clock), and unit-tested with a fake one. The
//! [`Throttle`] around them is shared by the writers of one run and by the HA guard
//! ([`super::ha_guard`]): the effective rate is the lower of the user's limit
//! (`options.limits`, changed live through [`super::Controls::limits`]) and the guard's cap.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use tokio::sync::watch;

use crate::spec::Limits;

/// The most a bucket holds, in seconds of its rate.
pub const BURST_SECS: f64 = 0.1;

/// One token bucket: `rate` tokens a second, at most `burst` saved up, possibly in debt.
#[derive(Debug, Clone)]
pub(crate) struct Bucket {
    rate: f64,
    burst: f64,
    tokens: f64,
    last: Instant,
}

impl Bucket {
    /// A full bucket.
    pub fn new(rate: u64, now: Instant) -> Bucket {
        let rate = rate.max(1) as f64;
        let burst = (rate * BURST_SECS).max(1.0);
        Bucket {
            rate,
            burst,
            tokens: burst,
            last: now,
        }
    }

    fn refill(&mut self, now: Instant) {
        let elapsed = now.saturating_duration_since(self.last).as_secs_f64();
        self.tokens = (self.tokens + elapsed * self.rate).min(self.burst);
        self.last = self.last.max(now);
    }

    /// How long until the bucket is out of debt.
    pub fn wait(&mut self, now: Instant) -> Duration {
        self.refill(now);
        if self.tokens >= 0.0 {
            Duration::ZERO
        } else {
            Duration::from_secs_f64(-self.tokens / self.rate)
        }
    }

    pub fn charge(&mut self, n: u64) {
        self.tokens -= n as f64;
    }

    /// A new rate, keeping what is saved up (clipped to the new burst) or owed.
    pub fn set_rate(&mut self, rate: u64, now: Instant) {
        self.refill(now);
        self.rate = rate.max(1) as f64;
        self.burst = (self.rate * BURST_SECS).max(1.0);
        self.tokens = self.tokens.min(self.burst);
    }

    pub fn rate(&self) -> u64 {
        self.rate as u64
    }
}

/// The buckets of the effective limits (`None`: that dimension is unlimited).
#[derive(Debug, Clone, Default)]
pub(crate) struct Limiter {
    ops: Option<Bucket>,
    bytes: Option<Bucket>,
}

impl Limiter {
    /// Applies new rates; a bucket whose rate stays keeps its state.
    pub fn set(&mut self, ops: Option<u64>, bytes: Option<u64>, now: Instant) {
        fn one(slot: &mut Option<Bucket>, rate: Option<u64>, now: Instant) {
            match (slot.as_mut(), rate) {
                (_, None) => *slot = None,
                (Some(b), Some(r)) if b.rate() == r.max(1) => {}
                (Some(b), Some(r)) => b.set_rate(r, now),
                (None, Some(r)) => *slot = Some(Bucket::new(r, now)),
            }
        }
        one(&mut self.ops, ops, now);
        one(&mut self.bytes, bytes, now);
    }

    /// How long the next command must wait.
    pub fn wait(&mut self, now: Instant) -> Duration {
        let ops = self.ops.as_mut().map_or(Duration::ZERO, |b| b.wait(now));
        let bytes = self.bytes.as_mut().map_or(Duration::ZERO, |b| b.wait(now));
        ops.max(bytes)
    }

    pub fn charge(&mut self, ops: u64, bytes: u64) {
        if let Some(b) = &mut self.ops {
            b.charge(ops);
        }
        if let Some(b) = &mut self.bytes {
            b.charge(bytes);
        }
    }
}

struct State {
    user: Limits,
    /// The HA guard's cap on commands a second, while it throttles.
    guard_ops: Option<u64>,
    limiter: Limiter,
    /// Live changes of the user's limits (`PATCH`), from the supervisor.
    updates: watch::Receiver<Option<Limits>>,
}

impl State {
    fn apply(&mut self, now: Instant) {
        let ops = match (self.user.max_ops_per_sec, self.guard_ops) {
            (Some(u), Some(g)) => Some(u.min(g)),
            (u, g) => u.or(g),
        };
        self.limiter.set(ops, self.user.max_bytes_per_sec, now);
    }
}

/// The limits of one engine run, shared by its writers and its HA guard.
pub struct Throttle {
    state: Mutex<State>,
    /// Commands and bytes charged so far (what the guard measures the rate with).
    ops_sent: AtomicU64,
    bytes_sent: AtomicU64,
    /// Whether any limit applies: while none does, commands skip the lock (the hot path of a
    /// fast stream) and a live change is looked for once every [`UNLIMITED_CHECK_EVERY`].
    limited: AtomicBool,
    calls: AtomicU64,
}

/// Commands between two looks for a live change while nothing is limited.
const UNLIMITED_CHECK_EVERY: u64 = 256;

impl Throttle {
    /// The spec's limits, or the latest live change when the supervisor has one (a restarted
    /// job's fold already holds it, so both agree then).
    pub fn new(spec: Limits, updates: &Arc<watch::Sender<Option<Limits>>>) -> Arc<Throttle> {
        let mut updates = updates.subscribe();
        let user = updates.borrow_and_update().unwrap_or(spec);
        let mut state = State {
            user,
            guard_ops: None,
            limiter: Limiter::default(),
            updates,
        };
        state.apply(Instant::now());
        let limited = state.user.any();
        Arc::new(Throttle {
            state: Mutex::new(state),
            ops_sent: AtomicU64::new(0),
            bytes_sent: AtomicU64::new(0),
            limited: AtomicBool::new(limited),
            calls: AtomicU64::new(0),
        })
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// How long the next command must wait (zero: send it now). Picks up a live change first.
    pub fn wait(&self) -> Duration {
        if !self.limited.load(Ordering::Relaxed)
            && self.calls.fetch_add(1, Ordering::Relaxed) % UNLIMITED_CHECK_EVERY != 0
        {
            return Duration::ZERO;
        }
        let mut state = self.lock();
        let now = Instant::now();
        if state.updates.has_changed().unwrap_or(false) {
            let latest = *state.updates.borrow_and_update();
            if let Some(user) = latest {
                tracing::info!(?user, "rate limits changed");
                state.user = user;
                state.apply(now);
                self.limited.store(
                    state.user.any() || state.guard_ops.is_some(),
                    Ordering::Relaxed,
                );
            }
        }
        state.limiter.wait(now)
    }

    /// Counts a command sent.
    pub fn charge(&self, ops: u64, bytes: u64) {
        self.ops_sent.fetch_add(ops, Ordering::Relaxed);
        self.bytes_sent.fetch_add(bytes, Ordering::Relaxed);
        if self.limited.load(Ordering::Relaxed) {
            self.lock().limiter.charge(ops, bytes);
        }
    }

    /// Commands and bytes sent so far.
    pub fn sent(&self) -> (u64, u64) {
        (
            self.ops_sent.load(Ordering::Relaxed),
            self.bytes_sent.load(Ordering::Relaxed),
        )
    }

    /// The user's limits now.
    pub fn user(&self) -> Limits {
        self.lock().user
    }

    /// Sets (or, with `None`, lifts) the HA guard's cap.
    pub fn set_guard(&self, ops: Option<u64>) {
        let mut state = self.lock();
        state.guard_ops = ops;
        state.apply(Instant::now());
        self.limited.store(
            state.user.any() || state.guard_ops.is_some(),
            Ordering::Relaxed,
        );
    }

    /// Whether any limit applies.
    pub fn active(&self) -> bool {
        self.limited.load(Ordering::Relaxed)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Drives `limiter` as the writer does, with a fake clock: before each command, wait what it
    /// says (the clock jumps), then charge. Returns how many commands went out in `secs`.
    fn run(limiter: &mut Limiter, secs: f64, bytes_per_op: u64, start: Instant) -> u64 {
        let end = start + Duration::from_secs_f64(secs);
        let mut now = start;
        let mut sent = 0;
        loop {
            now += limiter.wait(now);
            if now >= end {
                return sent;
            }
            limiter.charge(1, bytes_per_op);
            sent += 1;
        }
    }

    #[test]
    fn the_rate_holds_within_the_burst_over_any_window() {
        let t0 = Instant::now();
        for (rate, secs) in [(1000u64, 1.0), (1000, 5.0), (50, 2.0), (200_000, 3.0)] {
            let mut limiter = Limiter::default();
            limiter.set(Some(rate), None, t0);
            let sent = run(&mut limiter, secs, 10, t0) as f64;
            let expected = rate as f64 * secs;
            let burst = (rate as f64 * BURST_SECS).max(1.0) + 1.0;
            assert!(
                sent >= expected - 1.0 && sent <= expected + burst,
                "{rate}/s for {secs}s: {sent} sent"
            );
            // A full bucket at the start is 0.1 s worth: under 10% over any span of 1 s or more
            // and 5% from 2 s.
            let share = if secs >= 2.0 { 0.05 } else { 0.101 };
            assert!(
                (sent - expected).abs() / expected <= share,
                "{rate}/s: {sent}"
            );
        }
    }

    #[test]
    fn bytes_limit_big_commands_by_debt() {
        let t0 = Instant::now();
        let mut limiter = Limiter::default();
        limiter.set(None, Some(1_000_000), t0);
        // 300 KB commands: each one is three bursts; the bucket goes into debt and the next
        // command waits it off.
        let sent = run(&mut limiter, 4.0, 300_000, t0);
        assert!(
            (13..=14).contains(&sent),
            "{sent} commands of 300 KB in 4 s"
        );
    }

    #[test]
    fn the_lower_of_two_limits_binds() {
        let t0 = Instant::now();
        let mut limiter = Limiter::default();
        limiter.set(Some(10_000), Some(100_000), t0);
        // 100 bytes a command: bytes allow 1000/s, ops 10,000/s.
        let sent = run(&mut limiter, 2.0, 100, t0);
        assert!((1990..=2110).contains(&sent), "{sent}");
    }

    #[test]
    fn a_new_rate_applies_from_now_and_none_is_unlimited() {
        let t0 = Instant::now();
        let mut limiter = Limiter::default();
        limiter.set(Some(100), None, t0);
        let first = run(&mut limiter, 1.0, 1, t0);
        let t1 = t0 + Duration::from_secs(1);
        limiter.set(Some(1000), None, t1);
        let second = run(&mut limiter, 1.0, 1, t1);
        assert!((100..=111).contains(&first), "{first}");
        assert!((990..=1101).contains(&second), "{second}");
        limiter.set(None, None, t1);
        assert_eq!(limiter.wait(t1), Duration::ZERO);
        limiter.charge(1_000_000, 1_000_000);
        assert_eq!(limiter.wait(t1), Duration::ZERO, "unlimited never waits");
    }

    #[test]
    fn the_throttle_takes_live_changes_and_the_guard_lowers_only() {
        let updates = Arc::new(watch::Sender::new(None));
        let throttle = Throttle::new(
            Limits {
                max_ops_per_sec: Some(100),
                max_bytes_per_sec: None,
            },
            &updates,
        );
        assert_eq!(throttle.user().max_ops_per_sec, Some(100));
        updates.send_replace(Some(Limits {
            max_ops_per_sec: Some(5000),
            max_bytes_per_sec: None,
        }));
        let _ = throttle.wait();
        assert_eq!(throttle.user().max_ops_per_sec, Some(5000));
        throttle.set_guard(Some(50));
        assert_eq!(throttle.lock().limiter.ops.as_ref().unwrap().rate(), 50);
        throttle.set_guard(Some(1_000_000));
        assert_eq!(
            throttle.lock().limiter.ops.as_ref().unwrap().rate(),
            5000,
            "the guard never raises the user's limit"
        );
        throttle.set_guard(None);
        assert!(throttle.active());
    }

    #[test]
    fn a_restarted_run_takes_the_latest_change_over_the_spec() {
        let updates = Arc::new(watch::Sender::new(Some(Limits {
            max_ops_per_sec: Some(7),
            max_bytes_per_sec: None,
        })));
        let throttle = Throttle::new(Limits::default(), &updates);
        assert_eq!(throttle.user().max_ops_per_sec, Some(7));
    }
}
