//! Load on a Redis Cluster for tests: a writer that routes each key to the master of its slot
//! (following `MOVED` through a failover), and counters whose exact totals a migration must end
//! with.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use ferry::cluster::key_slot;

use super::cluster::RedisCluster;
use super::redis::RedisServer;

/// Which master port serves each slot, from one node's `CLUSTER NODES`.
pub fn slot_owners(cluster: &RedisCluster) -> Vec<u16> {
    parse_owners(&cluster.nodes[0].cli(&["CLUSTER", "NODES"]))
}

/// `CLUSTER NODES` text → the master port of each slot (0: unknown).
fn parse_owners(nodes: &str) -> Vec<u16> {
    let mut owners = vec![0u16; 16384];
    for line in nodes.lines() {
        let fields: Vec<&str> = line.split(' ').collect();
        if fields.len() < 9 || !fields[2].contains("master") || fields[2].contains("fail") {
            continue;
        }
        let Some(port) = fields[1]
            .split('@')
            .next()
            .and_then(|a| a.rsplit(':').next())
            .and_then(|p| p.parse::<u16>().ok())
        else {
            continue;
        };
        for range in &fields[8..] {
            if range.starts_with('[') {
                continue;
            }
            let (a, b) = range.split_once('-').unwrap_or((range, range));
            if let (Ok(a), Ok(b)) = (a.parse::<usize>(), b.parse::<usize>()) {
                for owner in owners.iter_mut().take(b.min(16383) + 1).skip(a) {
                    *owner = port;
                }
            }
        }
    }
    owners
}

/// A writer that sends each key to the master of its slot, and follows `MOVED` and failovers
/// (a dead master: the map is read again from any node that answers).
pub struct Routed {
    cluster_ports: Vec<u16>,
    owners: Vec<u16>,
    conns: BTreeMap<u16, redis::Connection>,
}

fn connect(port: u16) -> Option<redis::Connection> {
    let client = redis::Client::open(format!("redis://127.0.0.1:{port}")).ok()?;
    let conn = client
        .get_connection_with_timeout(Duration::from_secs(1))
        .ok()?;
    conn.set_read_timeout(Some(Duration::from_secs(5))).ok()?;
    Some(conn)
}

impl Routed {
    pub fn new(cluster: &RedisCluster) -> Routed {
        Routed {
            cluster_ports: cluster.nodes.iter().map(|n| n.port).collect(),
            owners: slot_owners(cluster),
            conns: BTreeMap::new(),
        }
    }

    /// Reads the slot map again from the first node that answers.
    fn refresh(&mut self) {
        for &port in &self.cluster_ports {
            if let Some(mut c) = connect(port) {
                if let Ok(text) = redis::cmd("CLUSTER").arg("NODES").query::<String>(&mut c) {
                    self.owners = parse_owners(&text);
                    return;
                }
            }
        }
    }

    /// Runs `cmd` on the master of `key`'s slot, retrying after `MOVED` and while a failover
    /// makes the cluster refuse (or a master is down), for up to 30 s.
    pub fn run<T: redis::FromRedisValue>(&mut self, key: &str, cmd: &redis::Cmd) -> T {
        let deadline = Instant::now() + Duration::from_secs(30);
        let slot = key_slot(key.as_bytes()) as usize;
        loop {
            let port = self.owners[slot];
            if let std::collections::btree_map::Entry::Vacant(slot) = self.conns.entry(port) {
                if let Some(c) = connect(port) {
                    slot.insert(c);
                }
            }
            let outcome = match self.conns.get_mut(&port) {
                Some(c) => cmd.query::<T>(c).map_err(|e| e.to_string()),
                None => Err(format!("cannot connect to {port}")),
            };
            match outcome {
                Ok(v) => return v,
                Err(text) if Instant::now() < deadline => {
                    let moved = text.to_ascii_uppercase().contains("MOVED");
                    let to = text
                        .split_whitespace()
                        .filter_map(|w| w.rsplit_once(':')?.1.parse::<u16>().ok())
                        .next_back();
                    match to {
                        Some(p) if moved && self.cluster_ports.contains(&p) => {
                            self.owners[slot] = p;
                        }
                        _ => {
                            self.conns.remove(&port);
                            std::thread::sleep(Duration::from_millis(100));
                            self.refresh();
                        }
                    }
                }
                Err(text) => panic!("{key}: {text}"),
            }
        }
    }
}

pub const COUNTERS: usize = 60;

/// INCRs counters spread over every shard until `stop`; returns how many each got.
pub fn spawn_counters(
    cluster: &RedisCluster,
    stop: Arc<AtomicBool>,
) -> std::thread::JoinHandle<Vec<i64>> {
    let mut r = Routed::new(cluster);
    std::thread::spawn(move || {
        let mut counts = vec![0i64; COUNTERS];
        let mut i = 0usize;
        while !stop.load(Ordering::Relaxed) {
            let c = i % COUNTERS;
            let key = format!("c:{c}");
            let _: i64 = r.run(&key, redis::cmd("INCR").arg(&key));
            counts[c] += 1;
            i += 1;
            if i % 200 == 0 {
                std::thread::sleep(Duration::from_millis(5));
            }
        }
        counts
    })
}

pub fn assert_counters(target: &RedisServer, counts: &[i64]) {
    let mut conn = target.conn();
    for (c, n) in counts.iter().enumerate() {
        let got: Option<i64> = redis::cmd("GET")
            .arg(format!("c:{c}"))
            .query(&mut conn)
            .unwrap();
        assert_eq!(got.unwrap_or(0), *n, "counter c:{c}");
    }
}

/// Keys of every type across all slots (hash-tagged groups too), some with a TTL. Returns how
/// many.
pub fn populate_cluster(cluster: &RedisCluster, n: usize) -> u64 {
    let mut r = Routed::new(cluster);
    for i in 0..n {
        let key = format!("k:{i}");
        match i % 6 {
            0 => r.run::<()>(&key, redis::cmd("SET").arg(&key).arg(format!("v{i}"))),
            1 => r.run::<()>(
                &key,
                redis::cmd("HSET")
                    .arg(&key)
                    .arg("f")
                    .arg(i)
                    .arg("g")
                    .arg("x"),
            ),
            2 => r.run::<()>(&key, redis::cmd("RPUSH").arg(&key).arg(1).arg(2).arg(i)),
            3 => r.run::<()>(&key, redis::cmd("SADD").arg(&key).arg("a").arg(i)),
            4 => r.run::<()>(
                &key,
                redis::cmd("ZADD")
                    .arg(&key)
                    .arg(1.5)
                    .arg("m")
                    .arg(i)
                    .arg("n"),
            ),
            _ => r.run::<()>(&key, redis::cmd("SET").arg(&key).arg(i).arg("EX").arg(3600)),
        }
    }
    for g in 0..20 {
        let key = format!("{{user{g}}}:profile");
        r.run::<()>(&key, redis::cmd("SET").arg(&key).arg(g));
    }
    n as u64 + 20
}
