//! One replication link per master of a real cluster, all at once: each does its own handshake
//! and full sync, its RDB holds exactly its shard's keys (with the slot size hints of RDB 12),
//! and its stream carries exactly the writes of its slots, offsets included.

use std::collections::{BTreeSet, HashMap};
use std::time::{Duration, Instant};

use ferry::client::routed::ClusterConn;
use ferry::cluster::key_slot;
use ferry::rdb::{Item, Parser};
use ferry::redis_url::RedisUrl;
use ferry::replication::{LinkConfig, LinkItem, ReplicaLink, SyncStart};
use ferry::spec::Endpoint;
use ferry::transport::Peer;

use super::common::cluster::RedisCluster;

/// What one master's link read: its keys, and its slot size hints as `(slot, keys)`.
struct ShardRead {
    keys: BTreeSet<String>,
    slot_sizes: Vec<(u64, u64)>,
    link: ReplicaLink,
}

async fn full_sync(port: u16) -> ShardRead {
    let url = RedisUrl::parse(&format!("redis://127.0.0.1:{port}")).unwrap();
    let mut link =
        ReplicaLink::connect(&Peer::from_url(&url).unwrap(), LinkConfig::default(), None)
            .await
            .unwrap();
    assert!(matches!(link.start(), SyncStart::Full { .. }));
    let mut parser = Parser::new();
    let (mut keys, mut slot_sizes) = (BTreeSet::new(), Vec::new());
    let mut drain = |parser: &mut Parser| {
        while let Some(item) = parser.next_item().unwrap() {
            match item {
                Item::Entry(entry) => {
                    keys.insert(String::from_utf8(entry.key.to_vec()).unwrap());
                }
                Item::SlotInfo { slot, size, .. } => slot_sizes.push((slot, size)),
                _ => {}
            }
        }
    };
    loop {
        let item = tokio::time::timeout(Duration::from_secs(30), link.next())
            .await
            .expect("the RDB within 30 s")
            .unwrap();
        match item {
            LinkItem::RdbChunk(chunk) => {
                parser.push(&chunk);
                drain(&mut parser);
            }
            LinkItem::RdbDone => break,
            LinkItem::Command(c) => panic!("{} before the RDB ended", c.name()),
        }
    }
    drain(&mut parser);
    ShardRead {
        keys,
        slot_sizes,
        link,
    }
}

async fn links_per_master(version: &str) {
    let cluster = RedisCluster::start(version, 3, 0);
    let seed = Endpoint {
        url: RedisUrl::parse(&cluster.url()).unwrap(),
        tls: None,
    };
    let mut routed = ClusterConn::connect(&seed).await.unwrap();
    for i in 0..3000 {
        let key = format!("k:{i}");
        routed
            .call_key(key.as_bytes(), &["SET", &key, "v"])
            .await
            .unwrap();
    }
    let shards = routed.map().shards.clone();
    let reads = futures::future::join_all(shards.iter().map(|s| full_sync(s.master.port))).await;

    let mut all = BTreeSet::new();
    for (shard, read) in shards.iter().zip(&reads) {
        assert!(!read.keys.is_empty());
        for key in &read.keys {
            assert!(
                shard.serves(key_slot(key.as_bytes())),
                "{key} on {}",
                shard.master.addr()
            );
            assert!(all.insert(key.clone()), "{key} on two shards");
        }
        if version != "6.2" {
            // RDB 12 (7.4+) hints each slot's size.
            let hinted: u64 = read.slot_sizes.iter().map(|(_, size)| size).sum();
            assert_eq!(hinted, read.keys.len() as u64, "{}", shard.master.addr());
            assert!(read.slot_sizes.iter().all(|(s, _)| shard.serves(*s as u16)));
        }
    }
    assert_eq!(all.len(), 3000);

    // The streams: each link carries the writes of its own slots, and catches up its offset.
    let mut expected: HashMap<usize, usize> = HashMap::new();
    for i in 0..300 {
        let key = format!("after:{i}");
        routed
            .call_key(key.as_bytes(), &["SET", &key, "w"])
            .await
            .unwrap();
        let shard = routed.map().shard_of(key_slot(key.as_bytes())).unwrap();
        *expected.entry(shard).or_default() += 1;
    }
    for (index, (shard, read)) in shards.iter().zip(reads).enumerate() {
        let node = cluster.node(shard.master.port);
        let mut link = read.link;
        let mut sets = 0;
        let deadline = Instant::now() + Duration::from_secs(30);
        while link.received_offset() < super::master_offset(node) {
            assert!(
                Instant::now() < deadline,
                "{} did not catch up",
                shard.master.addr()
            );
            if let Ok(item) = tokio::time::timeout(Duration::from_millis(200), link.next()).await {
                if let LinkItem::Command(c) = item.unwrap() {
                    if c.name() == "SET" {
                        sets += 1;
                    }
                    link.set_applied(c.end_offset);
                }
            }
            link.send_ack_if_due().await.unwrap();
        }
        assert_eq!(
            sets,
            expected.get(&index).copied().unwrap_or(0),
            "{}",
            shard.master.addr()
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_link_per_master_syncs_every_shard_at_once_7_4() {
    links_per_master("7.4").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_link_per_master_syncs_every_shard_at_once_6_2() {
    links_per_master("6.2").await;
}
