//! The real binary driven over HTTP (launched by tests/common/ferry.rs), a write load, and an
//! independent comparison.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use serde_json::{json, Value};

pub use crate::common::ferry::Ferry;
use crate::common::redis::RedisServer;

/// Generous: a loaded 2-core machine runs several servers and a debug build here.
pub const WAIT: Duration = Duration::from_secs(90);

/// What the fault tests drive the real binary with (the launcher is tests/common/ferry.rs).
impl Ferry {
    pub async fn view(&self, id: &str) -> Value {
        self.http
            .get(self.url(&format!("/v1/migrations/{id}")))
            .send()
            .await
            .expect("GET view")
            .json()
            .await
            .expect("view JSON")
    }

    pub async fn events(&self, id: &str) -> Vec<Value> {
        let page: Value = self
            .http
            .get(self.url(&format!("/v1/migrations/{id}/events?limit=1000")))
            .send()
            .await
            .expect("GET events")
            .json()
            .await
            .expect("events JSON");
        page["events"].as_array().cloned().unwrap_or_default()
    }

    /// Creates, validates and starts a live migration with full verification.
    pub async fn start_live(&self, source: &RedisServer, target: &RedisServer) -> String {
        let spec = json!({
            "source": {"url": source.url()},
            "target": {"url": target.url()},
            "mode": "live",
            "options": {"verify": "full", "on_conflict": "fail"}
        });
        let (status, view) = self.post("/v1/migrations", Some(spec)).await;
        assert_eq!(status, 201, "create: {view:#}");
        let id = view["id"].as_str().expect("id").to_string();
        let (_, report) = self
            .post(&format!("/v1/migrations/{id}/validate"), None)
            .await;
        assert_ne!(report["status"], "failed", "validation: {report:#}");
        let (status, body) = self.post(&format!("/v1/migrations/{id}/start"), None).await;
        assert_eq!(status, 202, "start: {body:#}");
        id
    }

    /// Polls the view until `done` holds.
    pub async fn wait_for(&self, id: &str, what: &str, done: impl Fn(&Value) -> bool) -> Value {
        let deadline = Instant::now() + WAIT;
        loop {
            let view = self.view(id).await;
            if done(&view) {
                return view;
            }
            assert!(
                view["state"] != "failed" && Instant::now() < deadline,
                "waiting for {what}: last view {view:#}\nferry log:\n{}",
                self.log()
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    pub async fn wait_streaming(&self, id: &str) {
        self.wait_for(id, "streaming", |v| v["phase"] == "streaming")
            .await;
    }

    /// Asks for cutover and waits for completion; returns Ferry's verification report.
    pub async fn cut_over(&self, id: &str) -> Value {
        self.wait_streaming(id).await;
        let (status, body) = self
            .post(&format!("/v1/migrations/{id}/cutover"), None)
            .await;
        assert!(status == 202 || status == 200, "cutover: {status} {body:#}");
        self.wait_for(id, "completed", |v| v["state"] == "completed")
            .await;
        let events = self.events(id).await;
        events
            .iter()
            .rev()
            .find(|e| e["type"] == "VerificationCompleted")
            .map(|e| e["data"]["report"].clone())
            .expect("a VerificationCompleted event")
    }

    /// The event types recorded for `id`, with their `kind`/`link` when they have one.
    pub async fn link_events(&self, id: &str) -> Vec<String> {
        self.events(id)
            .await
            .iter()
            .filter(|e| e["type"] == "LinkLost" || e["type"] == "LinkResumed")
            .map(|e| {
                format!(
                    "{}:{}:{}",
                    e["type"].as_str().unwrap_or_default(),
                    e["data"]["link"].as_str().unwrap_or_default(),
                    e["data"]["kind"].as_str().unwrap_or_default()
                )
            })
            .collect()
    }
}

/// Writes INCR, LPUSH and APPEND (and now and then a DEL) on the source from a thread, riding
/// out a restarting source.
pub struct Load {
    stop: Arc<AtomicBool>,
    pub ops: Arc<AtomicU64>,
    thread: Option<JoinHandle<()>>,
}

impl Load {
    pub fn start(source: &RedisServer) -> Load {
        let stop = Arc::new(AtomicBool::new(false));
        let ops = Arc::new(AtomicU64::new(0));
        let client = source.client();
        let (s, o) = (stop.clone(), ops.clone());
        let thread = std::thread::spawn(move || {
            let mut conn = None;
            let mut i: u64 = 0;
            while !s.load(Ordering::Relaxed) {
                let c = match &mut conn {
                    Some(c) => c,
                    None => match client.get_connection() {
                        Ok(c) => conn.insert(c),
                        Err(_) => {
                            std::thread::sleep(Duration::from_millis(50));
                            continue;
                        }
                    },
                };
                let k = i % 20;
                let mut pipe = redis::pipe();
                pipe.cmd("INCR")
                    .arg(format!("counter:{k}"))
                    .ignore()
                    .cmd("LPUSH")
                    .arg(format!("list:{k}"))
                    .arg(i)
                    .ignore()
                    .cmd("APPEND")
                    .arg(format!("text:{k}"))
                    .arg(format!("{i},"))
                    .ignore();
                if i % 97 == 0 {
                    pipe.cmd("DEL")
                        .arg(format!("list:{}", (k + 7) % 20))
                        .ignore();
                }
                if pipe.query::<()>(c).is_err() {
                    conn = None;
                    std::thread::sleep(Duration::from_millis(50));
                    continue;
                }
                i += 1;
                o.fetch_add(1, Ordering::Relaxed);
                // About 100 kB/s of replication stream: the default 1 MB backlog covers a
                // Ferry restart, while the write load keeps going throughout.
                if i % 5 == 0 {
                    std::thread::sleep(Duration::from_millis(5));
                }
            }
        });
        Load {
            stop,
            ops,
            thread: Some(thread),
        }
    }

    /// Waits until at least `n` more rounds have been written.
    pub async fn wait_more(&self, n: u64) {
        let goal = self.ops.load(Ordering::Relaxed) + n;
        let deadline = Instant::now() + WAIT;
        while self.ops.load(Ordering::Relaxed) < goal {
            assert!(Instant::now() < deadline, "the write load stalled");
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    pub fn stop(mut self) -> u64 {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(t) = self.thread.take() {
            t.join().expect("load thread");
        }
        self.ops.load(Ordering::Relaxed)
    }
}

impl Drop for Load {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
    }
}

/// Loads `n` keys of each kind on the source (the snapshot's content).
pub fn seed(source: &RedisServer, n: usize) {
    let mut c = source.conn();
    let mut pipe = redis::pipe();
    for i in 0..n {
        pipe.cmd("SET").arg(format!("seed:{i}")).arg(i).ignore();
        pipe.cmd("RPUSH")
            .arg(format!("seedlist:{}", i % 50))
            .arg(i)
            .ignore();
    }
    pipe.query::<()>(&mut c).expect("seed the source");
}

/// Every key of db 0 with its value (strings and lists: what the load writes).
fn contents(server: &RedisServer) -> BTreeMap<String, String> {
    let mut c = server.conn();
    let keys: Vec<String> = redis::cmd("KEYS").arg("*").query(&mut c).expect("KEYS");
    let mut out = BTreeMap::new();
    for key in keys {
        if key.starts_with("ferry:offset:") {
            continue;
        }
        let kind: String = redis::cmd("TYPE").arg(&key).query(&mut c).expect("TYPE");
        let value = match kind.as_str() {
            "string" => redis::cmd("GET").arg(&key).query::<String>(&mut c),
            "list" => redis::cmd("LRANGE")
                .arg(&key)
                .arg(0)
                .arg(-1)
                .query::<Vec<String>>(&mut c)
                .map(|v| v.join("|")),
            "none" => continue,
            other => Ok(format!("<{other}>")),
        }
        .expect("read a value");
        out.insert(key, value);
    }
    out
}

/// Keys that differ between source and target (missing, extra or different), at most 10 shown.
pub fn differences(source: &RedisServer, target: &RedisServer) -> Vec<String> {
    let (s, t) = (contents(source), contents(target));
    let mut diffs = vec![];
    for (k, v) in &s {
        match t.get(k) {
            None => diffs.push(format!("missing `{k}`")),
            Some(w) if w != v => diffs.push(format!(
                "different `{k}`: source {} bytes, target {} bytes (source `{}`…, target `{}`…)",
                v.len(),
                w.len(),
                &v[..v.len().min(40)],
                &w[..w.len().min(40)]
            )),
            _ => {}
        }
    }
    for k in t.keys().filter(|k| !s.contains_key(*k)) {
        diffs.push(format!("extra `{k}`"));
    }
    diffs
}

/// Ferry's report and ours must both be clean; the offset key must be gone after cutover.
pub fn assert_converged(report: &Value, source: &RedisServer, target: &RedisServer) {
    for field in ["missing", "different", "extra"] {
        assert_eq!(report[field], 0, "Ferry's verification: {report:#}");
    }
    assert!(report["checked"].as_u64().unwrap_or(0) > 0, "{report:#}");
    let diffs = differences(source, target);
    assert!(
        diffs.is_empty(),
        "{} differences: {:?}",
        diffs.len(),
        &diffs[..diffs.len().min(10)]
    );
    let mut c = target.conn();
    let leftover: Vec<String> = redis::cmd("KEYS")
        .arg("ferry:offset:*")
        .query(&mut c)
        .unwrap();
    assert!(
        leftover.is_empty(),
        "cutover left {leftover:?} on the target"
    );
}

/// A tiny deterministic generator for "random" kill points (the seed is printed).
pub struct Rng(u64);

impl Rng {
    pub fn from_time() -> Rng {
        let seed = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_nanos() as u64)
            .unwrap_or(1)
            | 1;
        eprintln!("fault schedule seed: {seed}");
        Rng(seed)
    }

    pub fn below(&mut self, n: u64) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0 % n.max(1)
    }
}
