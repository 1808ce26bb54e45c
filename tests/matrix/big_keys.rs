//! Big keys: a 50 MB list and a 50 MB hash with a 1 MB threshold (`Tuning::big_key_bytes`) go as
//! chunked commands, never as one `RESTORE`, while a probe keeps measuring how fast the target
//! answers `PING`.
//!
//! Proof that they were chunked: the target's `INFO commandstats` counts dozens of `RPUSH` and
//! `HSET` calls and no `RESTORE` for them, and its `SLOWLOG` (threshold 10 ms) holds none of our
//! writes. Proof that the target stayed responsive: the PING probe's p99 stays under a bound that
//! is generous for a loaded 2-core machine; the measured max and p99 are printed (`BIGKEYS |`).

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use ferry::engine::Tuning;
use ferry::spec::Mode;

use crate::common::redis::RedisServer;
use crate::compare::differences;
use crate::dataset::noise;
use crate::runner::{keys_rewritten, spec, start, tuning, verification};

const MB: usize = 1024 * 1024;
/// Size of each big key's elements: 50 000 elements of 1 KB make 50 MB.
const ELEMENT: usize = 1024;
const ELEMENTS: usize = 50 * 1024;

/// Fills `big:list` and `big:hash` with ~50 MB each of incompressible elements.
fn fill_big_keys(server: &RedisServer) {
    let mut c = server.conn();
    let mut seed = 0x2545_f491_4f6c_dd1du64;
    for batch in 0..ELEMENTS / 1000 + 1 {
        let n = 1000.min(ELEMENTS - (batch * 1000).min(ELEMENTS));
        if n == 0 {
            break;
        }
        let mut p = redis::pipe();
        let mut list = redis::cmd("RPUSH");
        list.arg("big:list");
        let mut hash = redis::cmd("HSET");
        hash.arg("big:hash");
        for i in 0..n {
            seed = seed.wrapping_mul(6364136223846793005).wrapping_add(1);
            list.arg(noise(ELEMENT, seed | 1));
            hash.arg(format!("f{batch}-{i}"))
                .arg(noise(ELEMENT, !seed | 1));
        }
        p.add_command(list).ignore().add_command(hash).ignore();
        p.query::<()>(&mut c).unwrap();
    }
    let _: () = redis::cmd("SET")
        .arg("small")
        .arg("1")
        .query(&mut c)
        .unwrap();
}

/// `calls` of one command in `INFO commandstats`.
fn calls(server: &RedisServer, command: &str) -> u64 {
    let stats = server.cli(&["INFO", "commandstats"]);
    stats
        .lines()
        .find_map(|l| l.strip_prefix(&format!("cmdstat_{command}:calls=")))
        .and_then(|rest| rest.split(',').next())
        .and_then(|n| n.parse().ok())
        .unwrap_or(0)
}

/// Latency percentiles of a PING probe.
struct Probe {
    samples: Vec<Duration>,
}

impl Probe {
    /// PINGs `server` on its own connection and thread every millisecond until `stop`.
    fn spawn(server: &RedisServer, stop: Arc<AtomicBool>) -> std::thread::JoinHandle<Probe> {
        let mut c = server.conn();
        std::thread::spawn(move || {
            let mut samples = vec![];
            while !stop.load(Ordering::Relaxed) {
                let t = Instant::now();
                let _: String = redis::cmd("PING").query(&mut c).unwrap();
                samples.push(t.elapsed());
                std::thread::sleep(Duration::from_millis(1));
            }
            samples.sort();
            Probe { samples }
        })
    }

    fn percentile(&self, p: f64) -> Duration {
        let at = ((self.samples.len() as f64 * p).ceil() as usize).clamp(1, self.samples.len());
        self.samples[at - 1]
    }

    fn max(&self) -> Duration {
        self.samples.last().copied().unwrap_or_default()
    }
}

async fn big_keys(from: &str, to: &str) {
    let source = RedisServer::start_with(
        from,
        &["--repl-diskless-sync-delay", "0", "--rdbcompression", "no"],
    );
    let target = RedisServer::start(to);
    fill_big_keys(&source);
    target.cli(&["CONFIG", "SET", "slowlog-log-slower-than", "10000"]);
    target.cli(&["SLOWLOG", "RESET"]);
    target.cli(&["CONFIG", "RESETSTAT"]);
    let tuning = Tuning {
        big_key_bytes: MB,
        rewrite_chunk_bytes: MB,
        rewrite_chunk_items: 1000,
        ..tuning()
    };
    let stop = Arc::new(AtomicBool::new(false));
    let probe = Probe::spawn(&target, stop.clone());
    let started = Instant::now();
    let (result, events) = start(spec(&source, &target, Mode::Snapshot), tuning)
        .finish()
        .await;
    let elapsed = started.elapsed();
    stop.store(true, Ordering::Relaxed);
    let probe = tokio::task::spawn_blocking(move || probe.join())
        .await
        .unwrap()
        .expect("the probe did not panic");
    result.unwrap_or_else(|e| panic!("{from} -> {to}: {e}"));
    let report = verification(&events).expect("VerificationCompleted");
    assert!(report.is_clean() && report.checked == 3, "{report:?}");
    assert_eq!(
        keys_rewritten(&events),
        Some(2),
        "both big keys were rewritten"
    );
    let (rpush, hset, restore) = (
        calls(&target, "rpush"),
        calls(&target, "hset"),
        calls(&target, "restore"),
    );
    // 50 MB in commands of at most 1 MB (or 1000 elements) each.
    assert!(
        rpush >= 50 && hset >= 50,
        "chunked: {rpush} RPUSH, {hset} HSET"
    );
    assert_eq!(restore, 1, "only the small key went by RESTORE");
    let slow = target.cli(&["SLOWLOG", "GET", "100"]);
    // Every command over 10 ms: our writes, and the verifier's reads (a whole-value DUMP of a big
    // key would show here).
    let slow_commands: Vec<String> = slow
        .lines()
        .filter(|l| {
            l.chars()
                .all(|c| c.is_ascii_uppercase() || c.is_ascii_lowercase())
                && l.len() > 2
        })
        .filter(|l| !["slowlog", "config", "info"].contains(&l.to_ascii_lowercase().as_str()))
        .map(str::to_string)
        .collect();
    println!(
        "BIGKEYS | {from} -> {to} | 2 x 50 MB, threshold 1 MB | {rpush} RPUSH + {hset} HSET | {:.1}s | \
         PING samples {}, p50 {:?}, p99 {:?}, max {:?} | commands over 10 ms: {:?}",
        elapsed.as_secs_f64(),
        probe.samples.len(),
        probe.percentile(0.5),
        probe.percentile(0.99),
        probe.max(),
        slow_commands
    );
    assert!(probe.samples.len() > 50, "the probe ran during the copy");
    assert!(
        probe.percentile(0.99) < Duration::from_millis(200),
        "PING p99 {:?} (max {:?})",
        probe.percentile(0.99),
        probe.max()
    );
    assert!(
        slow_commands.is_empty(),
        "commands over 10 ms on the target: {slow}"
    );
    let diff = differences(&source, &target);
    assert!(diff.is_empty(), "{}", diff.join("\n"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fifty_mb_list_and_hash_go_as_chunked_commands_and_the_target_keeps_answering_ping() {
    big_keys("7.4", "7.4").await;
}
