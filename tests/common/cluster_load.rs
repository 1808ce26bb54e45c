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
    let mut owners = vec![0u16; 16384];
    let nodes = cluster.nodes[0].cli(&["CLUSTER", "NODES"]);
    for line in nodes.lines() {
        let fields: Vec<&str> = line.split(' ').collect();
        if fields.len() < 9 || !fields[2].contains("master") {
            continue;
        }
        let port: u16 = fields[1]
            .split('@')
            .next()
            .and_then(|a| a.rsplit(':').next())
            .and_then(|p| p.parse().ok())
            .expect("a node address");
        for range in &fields[8..] {
            if range.starts_with('[') {
                continue;
            }
            let (a, b) = range.split_once('-').unwrap_or((range, range));
            for s in a.parse::<usize>().unwrap()..=b.parse::<usize>().unwrap() {
                owners[s] = port;
            }
        }
    }
    owners
}

/// A writer that sends each key to the master of its slot, and follows `MOVED` (a failover).
pub struct Routed {
    cluster_ports: Vec<u16>,
    owners: Vec<u16>,
    conns: BTreeMap<u16, redis::Connection>,
}

impl Routed {
    pub fn new(cluster: &RedisCluster) -> Routed {
        Routed {
            cluster_ports: cluster.nodes.iter().map(|n| n.port).collect(),
            owners: slot_owners(cluster),
            conns: BTreeMap::new(),
        }
    }

    fn conn(&mut self, port: u16) -> &mut redis::Connection {
        self.conns.entry(port).or_insert_with(|| {
            redis::Client::open(format!("redis://127.0.0.1:{port}"))
                .unwrap()
                .get_connection()
                .unwrap()
        })
    }

    /// Runs `cmd` on the master of `key`'s slot, retrying after `MOVED` (and while a failover
    /// makes the cluster refuse for a moment) for up to 20 s.
    pub fn run<T: redis::FromRedisValue>(&mut self, key: &str, cmd: &redis::Cmd) -> T {
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            let port = self.owners[key_slot(key.as_bytes()) as usize];
            match cmd.query::<T>(self.conn(port)) {
                Ok(v) => return v,
                Err(e) if Instant::now() < deadline => {
                    let text = e.to_string();
                    let moved = text.to_ascii_uppercase().contains("MOVED");
                    let to = text
                        .split_whitespace()
                        .filter_map(|w| w.rsplit_once(':')?.1.parse::<u16>().ok())
                        .next_back();
                    match to {
                        Some(p) if moved && self.cluster_ports.contains(&p) => {
                            self.owners[key_slot(key.as_bytes()) as usize] = p;
                        }
                        _ => {
                            self.conns.remove(&port);
                            std::thread::sleep(Duration::from_millis(50));
                        }
                    }
                }
                Err(e) => panic!("{key}: {e}"),
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
