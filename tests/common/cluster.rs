//! Real Redis Clusters for tests: `redis-server --cluster-enabled yes` × N on free loopback ports,
//! joined by `redis-cli --cluster create … --cluster-yes`, and ready only once every node says
//! `cluster_state:ok`, knows every other node, and every replica's link to its master is up.
//! Dropping the cluster kills every node (each is a [`RedisServer`]).
#![allow(dead_code)]

use std::collections::HashSet;
use std::net::TcpListener;
use std::process::Command;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use super::redis::{binary, RedisServer};

/// A running cluster: `masters` masters, each with `replicas` replicas.
pub struct RedisCluster {
    pub version: String,
    pub nodes: Vec<RedisServer>,
    pub masters: usize,
    pub replicas: usize,
}

impl RedisCluster {
    /// Starts and joins a cluster of `version`; panics with the nodes' logs if it does not form.
    pub fn start(version: &str, masters: usize, replicas: usize) -> RedisCluster {
        assert!(
            masters >= 3,
            "redis-cli --cluster create needs at least 3 masters"
        );
        let node_args = [
            "--cluster-enabled",
            "yes",
            "--cluster-config-file",
            "nodes.conf",
            "--cluster-node-timeout",
            "2000",
            // A replica (a node's own, or Ferry's link) syncs at once, not after 5 s.
            "--repl-diskless-sync-delay",
            "0",
        ];
        let nodes: Vec<RedisServer> = (0..masters * (1 + replicas))
            .map(|_| RedisServer::start_on(version, &node_args, cluster_port))
            .collect();
        let cluster = RedisCluster {
            version: version.to_string(),
            nodes,
            masters,
            replicas,
        };
        cluster.create();
        cluster.wait_ready(Duration::from_secs(30));
        cluster
    }

    fn create(&self) {
        let addrs: Vec<String> = self
            .nodes
            .iter()
            .map(|n| format!("127.0.0.1:{}", n.port))
            .collect();
        let out = Command::new(binary(&self.version, "redis-cli"))
            .arg("--cluster")
            .arg("create")
            .args(&addrs)
            .arg("--cluster-replicas")
            .arg(self.replicas.to_string())
            .arg("--cluster-yes")
            .output()
            .expect("run redis-cli --cluster create");
        let stdout = String::from_utf8_lossy(&out.stdout);
        assert!(
            out.status.success() && stdout.contains("[OK] All 16384 slots covered"),
            "redis-cli --cluster create failed: {stdout}{}",
            String::from_utf8_lossy(&out.stderr)
        );
    }

    /// Waits until every node reports `cluster_state:ok` and knows all the others, every node
    /// sees the same owner for every slot, and every replica's master link is up.
    pub fn wait_ready(&self, limit: Duration) {
        let deadline = Instant::now() + limit;
        loop {
            match self.not_ready() {
                None => return,
                Some(why) if Instant::now() > deadline => panic!(
                    "cluster {} not ready after {limit:?}: {why}\n{}",
                    self.version,
                    self.logs()
                ),
                Some(_) => std::thread::sleep(Duration::from_millis(100)),
            }
        }
    }

    fn not_ready(&self) -> Option<String> {
        let mut views = HashSet::new();
        for node in &self.nodes {
            let info = node.cli(&["CLUSTER", "INFO"]);
            if !info.contains("cluster_state:ok") {
                return Some(format!("{} says {info}", node.port));
            }
            let known = format!("cluster_known_nodes:{}", self.nodes.len());
            if !info.contains(&known) {
                return Some(format!("{} knows too few nodes: {info}", node.port));
            }
            let replication = node.cli(&["INFO", "replication"]);
            if replication.contains("role:slave") && !replication.contains("master_link_status:up")
            {
                return Some(format!("replica {} has no link: {replication}", node.port));
            }
            views.insert(slot_owners(&node.cli(&["CLUSTER", "NODES"])));
            // 7.0+: right after joining, a replica may still be listed as a shard of its own
            // (its shard id not gossiped yet); ready once every node lists one shard per master.
            if self.version != "6.2" {
                let shards = node.cli(&["CLUSTER", "SHARDS"]);
                let listed = shards.lines().filter(|l| l.trim() == "slots").count();
                if listed != self.masters {
                    return Some(format!("{} lists {listed} shards", node.port));
                }
            }
        }
        (views.len() != 1).then(|| format!("nodes disagree on the slot map: {views:?}"))
    }

    /// `redis://127.0.0.1:<port>` of the first node: the seed a migration's URL names.
    pub fn url(&self) -> String {
        self.nodes[0].url()
    }

    /// The nodes that are masters now, by port.
    pub fn master_ports(&self) -> Vec<u16> {
        self.role_ports("master")
    }

    /// The nodes that are replicas now, by port.
    pub fn replica_ports(&self) -> Vec<u16> {
        self.role_ports("slave")
    }

    fn role_ports(&self, role: &str) -> Vec<u16> {
        self.nodes
            .iter()
            .filter(|n| {
                n.cli(&["INFO", "replication"])
                    .contains(&format!("role:{role}"))
            })
            .map(|n| n.port)
            .collect()
    }

    /// The node listening on `port`.
    pub fn node(&self, port: u16) -> &RedisServer {
        self.nodes
            .iter()
            .find(|n| n.port == port)
            .unwrap_or_else(|| panic!("no node on port {port}"))
    }

    /// The port of the master serving `key`'s slot now (`CLUSTER KEYSLOT` + `CLUSTER NODES`).
    pub fn master_of(&self, key: &str) -> u16 {
        let slot: u16 = self.nodes[0]
            .cli(&["CLUSTER", "KEYSLOT", key])
            .trim()
            .parse()
            .expect("CLUSTER KEYSLOT answers a number");
        let nodes = self.nodes[0].cli(&["CLUSTER", "NODES"]);
        for line in nodes.lines() {
            let fields: Vec<&str> = line.split(' ').collect();
            if fields.len() < 9 || !fields[2].contains("master") {
                continue;
            }
            let serves = fields[8..].iter().any(|range| {
                let (a, b) = range.split_once('-').unwrap_or((range, range));
                matches!((a.parse::<u16>(), b.parse::<u16>()), (Ok(a), Ok(b)) if (a..=b).contains(&slot))
            });
            if serves {
                let addr = fields[1].split('@').next().unwrap();
                return addr.rsplit(':').next().unwrap().parse().unwrap();
            }
        }
        panic!("no master serves slot {slot}: {nodes}")
    }

    /// Keys on all masters together (`DBSIZE` summed): the cluster's keys, bookkeeping included.
    pub fn keys(&self) -> u64 {
        self.master_ports()
            .iter()
            .map(|p| {
                let size = self.node(*p).cli(&["DBSIZE"]);
                size.trim()
                    .parse::<u64>()
                    .unwrap_or_else(|e| panic!("DBSIZE on {p}: {size:?}: {e}"))
            })
            .sum()
    }

    /// No `ferry:*` key on any master: a migration's offset keys, base keys and lease are gone.
    pub fn assert_no_bookkeeping(&self) {
        for port in self.master_ports() {
            let left = self.node(port).cli(&["--scan", "--pattern", "ferry:*"]);
            assert!(left.trim().is_empty(), "bookkeeping left on {port}: {left}");
        }
    }

    /// Every node's log, for failure messages.
    pub fn logs(&self) -> String {
        self.nodes
            .iter()
            .map(|n| format!("--- node {} ---\n{}", n.port, tail(&n.log(), 20)))
            .collect()
    }
}

/// `CLUSTER NODES` reduced to "which master id serves which ranges", sorted: equal on every node
/// once the cluster agrees.
fn slot_owners(nodes: &str) -> Vec<String> {
    let mut owners: Vec<String> = nodes
        .lines()
        .filter_map(|line| {
            let fields: Vec<&str> = line.split(' ').collect();
            (fields.len() > 8).then(|| format!("{} {}", fields[0], fields[8..].join(" ")))
        })
        .collect();
    owners.sort();
    owners
}

fn tail(text: &str, lines: usize) -> String {
    let all: Vec<&str> = text.lines().collect();
    all[all.len().saturating_sub(lines)..].join("\n")
}

/// A port whose cluster bus port (+10000) is free too. Ports below 30000 keep the bus port under
/// the kernel's ephemeral range, and a process-wide set keeps two nodes of one test apart.
fn cluster_port() -> u16 {
    static TAKEN: Mutex<Vec<u16>> = Mutex::new(Vec::new());
    let mut taken = TAKEN.lock().unwrap();
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap_or_default();
    let mut state = u64::from(std::process::id()) ^ now.as_nanos() as u64;
    for _ in 0..10_000 {
        state = state
            .wrapping_mul(6364136223846793005)
            .wrapping_add(1442695040888963407);
        let port = 20000 + ((state >> 33) % 10000) as u16;
        if taken.contains(&port) {
            continue;
        }
        let free = |p: u16| TcpListener::bind(("127.0.0.1", p)).is_ok();
        if free(port) && free(port + 10000) {
            taken.push(port);
            return port;
        }
    }
    panic!("no free port pair (p, p + 10000) between 20000 and 30000")
}
