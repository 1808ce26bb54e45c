//! The slot map parsed from replies written the way 6.2, 7.x and Valkey send them.

use bytes::Bytes;

use super::*;
use crate::resp::Frame;

fn bulk(s: &str) -> Frame {
    Frame::Bulk(Bytes::copy_from_slice(s.as_bytes()))
}

fn int(n: i64) -> Frame {
    Frame::Integer(n)
}

fn arr(items: Vec<Frame>) -> Frame {
    Frame::Array(items)
}

fn id(c: char) -> String {
    std::iter::repeat_n(c, 40).collect()
}

/// One node of a `CLUSTER SHARDS` reply, as Redis 7.4 renders it over RESP2.
fn shard_node(c: char, port: i64, role: &str, health: &str) -> Frame {
    arr(vec![
        bulk("id"),
        bulk(&id(c)),
        bulk("port"),
        int(port),
        bulk("ip"),
        bulk("127.0.0.1"),
        bulk("endpoint"),
        bulk("127.0.0.1"),
        bulk("role"),
        bulk(role),
        bulk("replication-offset"),
        int(1234),
        bulk("health"),
        bulk(health),
    ])
}

fn shard(slots: &[i64], nodes: Vec<Frame>) -> Frame {
    arr(vec![
        bulk("slots"),
        arr(slots.iter().map(|s| int(*s)).collect()),
        bulk("nodes"),
        arr(nodes),
    ])
}

fn three_shards() -> Frame {
    arr(vec![
        shard(
            &[10923, 16383],
            vec![
                shard_node('c', 7003, "master", "online"),
                shard_node('f', 7006, "replica", "online"),
            ],
        ),
        shard(
            &[0, 5460],
            vec![
                shard_node('a', 7001, "master", "online"),
                shard_node('d', 7004, "replica", "loading"),
            ],
        ),
        shard(
            &[5461, 10922],
            vec![shard_node('b', 7002, "master", "online")],
        ),
    ])
}

#[test]
fn shards_reply_gives_masters_replicas_and_full_coverage() {
    let map = SlotMap::from_shards(&three_shards(), "seed").unwrap();
    assert_eq!(map.shards.len(), 3);
    // Ordered by first slot, whatever order the server listed them in.
    let first: Vec<u16> = map.shards.iter().map(|s| s.ranges[0].0).collect();
    assert_eq!(first, vec![0, 5461, 10923]);
    assert_eq!(map.shards[0].master.addr(), "127.0.0.1:7001");
    assert_eq!(map.shards[0].replicas.len(), 1);
    assert!(!map.shards[0].replicas[0].healthy, "a loading replica");
    assert_eq!(map.shards[0].slot_count(), 5461);
    assert!(map.coverage().is_full());
    assert_eq!(map.shard_of(0), Some(0));
    assert_eq!(map.shard_of(key_slot(b"foo")), Some(2));
    assert_eq!(map.masters().count(), 3);
    assert_eq!(map.nodes().count(), 5);
}

#[test]
fn a_master_without_slots_is_no_shard() {
    let mut reply = three_shards();
    if let Frame::Array(shards) = &mut reply {
        shards.push(shard(&[], vec![shard_node('e', 7005, "master", "online")]));
    }
    let map = SlotMap::from_shards(&reply, "seed").unwrap();
    assert_eq!(map.shards.len(), 3);
    assert!(map.nodes().all(|n| n.id != id('e')));
}

#[test]
fn a_failed_master_gives_way_to_the_promoted_one() {
    let reply = arr(vec![shard(
        &[0, 16383],
        vec![
            shard_node('a', 7001, "master", "failed"),
            shard_node('b', 7002, "master", "online"),
        ],
    )]);
    let map = SlotMap::from_shards(&reply, "seed").unwrap();
    assert_eq!(map.shards[0].master.id, id('b'));
    assert_eq!(map.shards[0].replicas[0].id, id('a'));
}

#[test]
fn unserved_slots_are_named_as_ranges() {
    let reply = arr(vec![
        shard(
            &[0, 99, 200, 300],
            vec![shard_node('a', 1, "master", "online")],
        ),
        shard(&[301, 16382], vec![shard_node('b', 2, "master", "online")]),
    ]);
    let coverage = SlotMap::from_shards(&reply, "seed").unwrap().coverage();
    assert_eq!(coverage.unserved, vec![(100, 199), (16383, 16383)]);
    assert_eq!(Ranges(&coverage.unserved).to_string(), "100-199,16383");
    assert!(coverage.doubly_served.is_empty());
}

/// A `CLUSTER SLOTS` entry as 6.2 sends it: `[start, end, [ip, port, id], [ip, port, id]…]`.
fn slots_entry(start: i64, end: i64, nodes: &[(char, i64)]) -> Frame {
    let mut parts = vec![int(start), int(end)];
    for (c, port) in nodes {
        parts.push(arr(vec![bulk(""), int(*port), bulk(&id(*c))]));
    }
    arr(parts)
}

#[test]
fn slots_reply_groups_ranges_by_master() {
    let reply = arr(vec![
        slots_entry(0, 5460, &[('a', 7001), ('d', 7004)]),
        slots_entry(5461, 10922, &[('b', 7002)]),
        slots_entry(10923, 16000, &[('a', 7001), ('d', 7004)]),
        slots_entry(16001, 16383, &[('c', 7003)]),
    ]);
    let map = SlotMap::from_slots(&reply, "10.0.0.9").unwrap();
    assert_eq!(map.shards.len(), 3);
    assert_eq!(map.shards[0].ranges, vec![(0, 5460), (10923, 16000)]);
    // An empty ip means "the node you asked": the seed's host.
    assert_eq!(map.shards[0].master.addr(), "10.0.0.9:7001");
    assert_eq!(map.shards[0].replicas.len(), 1);
    assert!(map.coverage().is_full());
    let shards = SlotMap::from_shards(&three_shards(), "seed").unwrap();
    assert!(!map.same_owners(&shards));
    assert!(map.same_owners(&map.clone()));
}

#[test]
fn malformed_replies_are_errors_that_name_the_command() {
    let err = SlotMap::from_slots(&bulk("nope"), "h").unwrap_err();
    assert_eq!(
        err.to_string(),
        "unexpected `CLUSTER SLOTS` reply: expected an array, got a bulk string"
    );
    let bad_slot = arr(vec![slots_entry(0, 16384, &[('a', 1)])]);
    assert!(SlotMap::from_slots(&bad_slot, "h").is_err());
    let no_nodes = arr(vec![arr(vec![bulk("slots"), arr(vec![])])]);
    assert!(SlotMap::from_shards(&no_nodes, "h").is_err());
}

#[test]
fn cluster_nodes_names_the_slots_being_moved() {
    let text = format!(
        "{a} 127.0.0.1:7001@17001 myself,master - 0 0 1 connected 0-5460 [5461-<-{b}] [77->-{c}]\n\
         {b} 127.0.0.1:7002@17002,host master - 0 1700000000000 2 connected 5461-10922\n\
         {d} 127.0.0.1:7004@17004 slave {a} 0 1700000000000 1 connected\n",
        a = id('a'),
        b = id('b'),
        c = id('c'),
        d = id('d'),
    );
    let lines = parse_nodes(&text).unwrap();
    assert_eq!(lines.len(), 3);
    assert!(lines[0].is_myself() && lines[0].has_flag("master"));
    assert_eq!(lines[0].ranges, vec![(0, 5460)]);
    assert_eq!(
        lines[0].moves,
        vec![
            SlotMove {
                slot: 5461,
                peer: id('b'),
                direction: MoveDirection::Importing
            },
            SlotMove {
                slot: 77,
                peer: id('c'),
                direction: MoveDirection::Migrating
            },
        ]
    );
    assert_eq!(lines[1].addr, "127.0.0.1:7002");
    assert_eq!(lines[2].master.as_deref(), Some(id('a').as_str()));
    assert!(parse_nodes("short line").is_err());
}
