//! The cutover really stops writes: its pause is renewed until the target has caught up, a pause
//! that did not hold is detected and caught up again, a dropped engine lifts it; and the live
//! stream honours what the conflict policy keeps (finding 4).

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use ferry::engine::EngineError;
use ferry::model::EventKind;
use ferry::spec::{Mode, OnConflict, Verify};

use crate::common::redis::RedisServer;
use crate::helpers::*;

/// A source, and a target whose `DEBUG SLEEP` can stall the cutover's catch-up.
fn servers() -> (RedisServer, RedisServer) {
    let source = RedisServer::start_with("7.2", &["--repl-diskless-sync-delay", "0"]);
    let target = RedisServer::start_with("7.2", &["--enable-debug-command", "yes"]);
    (source, target)
}

/// Stalls `target` for `secs` seconds (returns once the stall has begun).
fn stall(target: &RedisServer, secs: u32) -> std::thread::JoinHandle<()> {
    let client = target.client();
    let thread = std::thread::spawn(move || {
        let mut c = client.get_connection().unwrap();
        let _: redis::RedisResult<()> = redis::cmd("DEBUG").arg("SLEEP").arg(secs).query(&mut c);
    });
    std::thread::sleep(Duration::from_millis(200));
    thread
}

fn paused_live_spec(source: &RedisServer, target: &RedisServer) -> ferry::spec::MigrationSpec {
    let mut opts = options(OnConflict::Replace, Verify::None);
    opts.pause_source_writes_on_cutover = true;
    spec(source, target, Mode::Live, opts)
}

async fn streaming(run: &Running) {
    run.wait_for("StreamingStarted", |e| {
        matches!(e, EventKind::StreamingStarted { .. })
    })
    .await;
}

/// Finding 5: a pause of one window (here 600 ms) used to lapse while the catch-up still ran
/// (2 s of a stalled target), letting writes through that were never streamed. Renewed, it holds
/// until the target has applied the final offset: no write to the source is acknowledged
/// between the cutover's start and its release.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_pause_holds_for_a_catch_up_longer_than_its_window() {
    let (source, target) = servers();
    let mut tuning = quick();
    tuning.pause_ms = 600;
    let run = start(paused_live_spec(&source, &target), tuning);
    streaming(&run).await;
    let sleeper = stall(&target, 2);
    source.cli(&["SET", "lag", "1"]);
    run.controls.cutover.cancel();
    let cut = Instant::now();
    // A writer that keeps trying; every write the source acknowledges is timed.
    let acked: Arc<Mutex<Vec<Instant>>> = Arc::default();
    let (times, client) = (acked.clone(), source.client());
    let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let halt = stop.clone();
    let writer = std::thread::spawn(move || {
        let mut c = client.get_connection().unwrap();
        let mut i = 0;
        while !halt.load(std::sync::atomic::Ordering::Relaxed) {
            std::thread::sleep(Duration::from_millis(300));
            let _: () = redis::cmd("SET")
                .arg(format!("late:{i}"))
                .arg(i)
                .query(&mut c)
                .unwrap();
            times.lock().unwrap().push(Instant::now());
            i += 1;
        }
    });
    let (result, events) = run.finish().await;
    let ended = Instant::now();
    result.unwrap();
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    writer.join().unwrap();
    sleeper.join().unwrap();
    assert!(names(&events).contains(&"CutoverCompleted"));
    let leaked: Vec<Duration> = acked
        .lock()
        .unwrap()
        .iter()
        .filter(|t| {
            **t > cut + Duration::from_millis(300) && **t + Duration::from_millis(300) < ended
        })
        .map(|t| *t - cut)
        .collect();
    assert!(
        leaked.is_empty(),
        "writes went through during the cutover, {:?} after it began (it took {:?})",
        leaked,
        ended - cut
    );
    source_writes_succeed_promptly(&source);
}

/// Finding 5: when the source's offset moved after the pause (someone lifted it), the cutover
/// used to claim completion at its first goal, and the write was never streamed. Now the lapse
/// is recorded and the cutover catches up again.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_pause_that_did_not_hold_is_recorded_and_caught_up() {
    let (source, target) = servers();
    let run = start(paused_live_spec(&source, &target), quick());
    streaming(&run).await;
    let sleeper = stall(&target, 2);
    source.cli(&["SET", "lag", "1"]);
    run.controls.cutover.cancel();
    tokio::time::sleep(Duration::from_millis(500)).await;
    // Lift the pause and write, in one pipeline so that no renewal comes in between.
    let mut c = source.conn();
    let _: () = redis::pipe()
        .cmd("CLIENT")
        .arg("UNPAUSE")
        .ignore()
        .cmd("SET")
        .arg("during:cutover")
        .arg("must reach the target")
        .ignore()
        .query(&mut c)
        .unwrap();
    let (result, events) = run.finish().await;
    result.unwrap();
    sleeper.join().unwrap();
    assert!(
        events
            .iter()
            .any(|e| matches!(e, EventKind::SourcePauseLapsed { .. })),
        "the lapse is recorded: {:?}",
        names(&events)
    );
    assert_eq!(
        get(&target, 0, "during:cutover").as_deref(),
        Some("must reach the target"),
        "the write made while the pause did not hold was caught up before completion"
    );
}

/// Finding 5: the explicit unpause ran only when the engine returned; an engine dropped by the
/// supervisor (store error, cancel grace over) left the source paused for the whole window.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_dropped_engine_lifts_the_pause_at_once() {
    let (source, target) = servers();
    let mut tuning = quick();
    tuning.pause_ms = 30_000;
    let run = start(paused_live_spec(&source, &target), tuning);
    streaming(&run).await;
    let sleeper = stall(&target, 3);
    source.cli(&["SET", "lag", "1"]);
    run.controls.cutover.cancel();
    tokio::time::sleep(Duration::from_millis(500)).await;
    run.task.abort();
    let _ = run.task.await;
    let started = Instant::now();
    source.cli(&["SET", "after:drop", "1"]);
    let waited = started.elapsed();
    sleeper.join().unwrap();
    assert!(
        waited < Duration::from_secs(2),
        "the source stayed paused {waited:?} after the engine was dropped"
    );
}

/// Finding 4: the stream forwarded FLUSHALL as it came, deleting target keys the migration never
/// wrote. Now it stops before applying it, and the target's own keys stay.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_flushall_from_the_source_stops_the_stream_instead_of_deleting_target_keys() {
    let source = RedisServer::start_with("7.2", &["--repl-diskless-sync-delay", "0"]);
    let target = RedisServer::start("7.2");
    source.cli(&["SET", "k", "v"]);
    target.cli(&["-n", "2", "SET", "mine", "the target's own"]);
    let run = start(
        spec(
            &source,
            &target,
            Mode::Live,
            options(OnConflict::Replace, Verify::None),
        ),
        quick(),
    );
    streaming(&run).await;
    source.cli(&["FLUSHALL"]);
    let deadline = Instant::now() + Duration::from_secs(20);
    while !run.task.is_finished() {
        assert!(
            Instant::now() < deadline,
            "the stream went on after FLUSHALL; the target's key: {:?}",
            get(&target, 2, "mine")
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let (result, _) = run.finish().await;
    match result {
        Err(EngineError::UnsafeCommand(message)) => {
            assert!(message.contains("FLUSHALL"), "{message}")
        }
        other => panic!("expected the migration to stop at FLUSHALL, got {other:?}"),
    }
    assert_eq!(get(&target, 2, "mine").as_deref(), Some("the target's own"));
}

/// Finding 4: `skip` promised to keep the target's value, but the live stream changes it later;
/// live mode refuses `skip` instead of breaking that promise.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn live_mode_refuses_skip_before_writing() {
    let source = RedisServer::start_with("7.2", &["--repl-diskless-sync-delay", "0"]);
    let target = RedisServer::start("7.2");
    source.cli(&["SET", "k", "v"]);
    let run = start(
        spec(
            &source,
            &target,
            Mode::Live,
            options(OnConflict::Skip, Verify::None),
        ),
        quick(),
    );
    let (result, events) = run.finish().await;
    match result {
        Err(EngineError::Unsupported(message)) => assert!(message.contains("skip"), "{message}"),
        other => panic!(
            "expected live + skip to be refused, got {other:?} ({:?})",
            names(&events)
        ),
    }
    assert_eq!(target.cli(&["DBSIZE"]).trim(), "0", "nothing was written");
}
