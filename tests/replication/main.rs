//! The replica link against real servers: handshake, both RDB framings, offsets, ACKs, resume, auth.

mod cluster;
#[path = "../common/mod.rs"]
mod common;

use std::time::{Duration, Instant};

use common::redis::RedisServer;
use ferry::redis_url::RedisUrl;
use ferry::replication::{LinkConfig, LinkError, LinkItem, ReplicaLink, SyncStart, Transfer};
use ferry::transport::Peer;

const CRC64: crc::Crc<u64> = crc::Crc::<u64>::new(&crc::CRC_64_REDIS);

fn peer(server: &RedisServer) -> Peer {
    Peer::from_url(&url(server)).unwrap()
}

fn url(server: &RedisServer) -> RedisUrl {
    RedisUrl::parse(&server.url()).unwrap()
}

fn master_offset(server: &RedisServer) -> i64 {
    let info = server.cli(&["INFO", "replication"]);
    info.lines()
        .find_map(|l| l.strip_prefix("master_repl_offset:"))
        .and_then(|v| v.trim().parse().ok())
        .unwrap_or_else(|| panic!("no master_repl_offset in {info}"))
}

/// Reads the whole RDB off the link and checks its magic and its trailing CRC64.
async fn read_rdb(link: &mut ReplicaLink, version: &str) -> Vec<u8> {
    let mut rdb = Vec::new();
    loop {
        match tokio::time::timeout(Duration::from_secs(30), link.next())
            .await
            .expect("snapshot within 30s")
            .unwrap()
        {
            LinkItem::RdbChunk(c) => rdb.extend_from_slice(&c),
            LinkItem::RdbDone => break,
            LinkItem::Command(c) => panic!("command {:?} before the RDB ended", c.name()),
        }
    }
    let expected = match version {
        "6.2" => "REDIS0009",
        "7.0" => "REDIS0010",
        "7.2" => "REDIS0011",
        _ => "REDIS0012",
    };
    assert_eq!(&rdb[..9], expected.as_bytes());
    let (body, crc) = rdb.split_at(rdb.len() - 8);
    assert_eq!(
        u64::from_le_bytes(crc.try_into().unwrap()),
        CRC64.checksum(body),
        "the RDB's checksum matches: framing cut it at the right byte"
    );
    assert_eq!(link.rdb_bytes(), rdb.len() as u64);
    rdb
}

/// Pumps the link until its offset reaches the master's, ACKing as a replica would.
async fn follow_until_caught_up(link: &mut ReplicaLink, source: &RedisServer) -> Vec<String> {
    let mut names = vec![];
    let deadline = Instant::now() + Duration::from_secs(30);
    while link.received_offset() < master_offset(source) {
        assert!(
            Instant::now() < deadline,
            "link did not catch up: {names:?}"
        );
        if let Ok(item) = tokio::time::timeout(Duration::from_millis(200), link.next()).await {
            if let LinkItem::Command(c) = item.unwrap() {
                names.push(c.name());
                link.set_applied(c.end_offset);
            }
        }
        link.send_ack_if_due().await.unwrap();
    }
    names
}

async fn full_sync_then_stream(version: &str, diskless: bool) {
    let source = RedisServer::start_with(
        version,
        &[
            "--repl-diskless-sync",
            if diskless { "yes" } else { "no" },
            "--repl-diskless-sync-delay",
            "0",
        ],
    );
    let mut c = source.conn();
    for i in 0..2000 {
        let _: () = redis::cmd("SET")
            .arg(format!("k{i}"))
            .arg("x".repeat(i % 300))
            .query(&mut c)
            .unwrap();
    }
    let mut link = ReplicaLink::connect(&peer(&source), LinkConfig::default(), None)
        .await
        .unwrap();
    let SyncStart::Full {
        replid,
        offset,
        transfer,
    } = link.start().clone()
    else {
        panic!("expected a full resync")
    };
    assert_eq!(replid.len(), 40);
    assert_eq!(matches!(transfer, Transfer::Diskless { .. }), diskless);
    let rdb = read_rdb(&mut link, version).await;
    if let Transfer::Sized(len) = transfer {
        assert_eq!(len, rdb.len() as u64);
    }
    assert_eq!(link.received_offset(), offset);
    link.request_ack();
    link.send_ack_if_due().await.unwrap();

    let _: () = redis::cmd("SET")
        .arg("after")
        .arg("1")
        .query(&mut c)
        .unwrap();
    let _: i64 = redis::cmd("INCR").arg("n").query(&mut c).unwrap();
    let names = follow_until_caught_up(&mut link, &source).await;
    assert!(names.contains(&"SET".to_string()), "{names:?}");
    assert!(names.contains(&"INCR".to_string()), "{names:?}");
    assert_eq!(link.received_offset(), master_offset(&source));

    // WAIT makes the master send GETACK; the link answers with the applied offset.
    let src_url = source.url();
    let waiter = std::thread::spawn(move || {
        let mut c = redis::Client::open(src_url)
            .unwrap()
            .get_connection()
            .unwrap();
        let _: () = redis::cmd("SET").arg("w").arg("1").query(&mut c).unwrap();
        redis::cmd("WAIT")
            .arg(1)
            .arg(20000)
            .query::<i64>(&mut c)
            .unwrap()
    });
    let deadline = Instant::now() + Duration::from_secs(30);
    while !waiter.is_finished() {
        assert!(Instant::now() < deadline, "WAIT never saw our ACK");
        if let Ok(item) = tokio::time::timeout(Duration::from_millis(100), link.next()).await {
            if let LinkItem::Command(c) = item.unwrap() {
                link.set_applied(c.end_offset);
            }
        }
        link.send_ack_if_due().await.unwrap();
    }
    assert_eq!(
        waiter.join().unwrap(),
        1,
        "the master counts Ferry as an acked replica"
    );
}

#[tokio::test]
async fn diskless_full_sync_frames_the_rdb_and_counts_offsets_7_2() {
    full_sync_then_stream("7.2", true).await;
}

#[tokio::test]
async fn disk_based_full_sync_frames_the_rdb_and_counts_offsets_6_2() {
    full_sync_then_stream("6.2", false).await;
}

#[tokio::test]
async fn diskless_full_sync_on_7_4() {
    full_sync_then_stream("7.4", true).await;
}

#[tokio::test]
async fn psync_with_a_known_offset_continues_without_a_snapshot() {
    let source = RedisServer::start_with("7.0", &["--repl-diskless-sync-delay", "0"]);
    let mut link = ReplicaLink::connect(&peer(&source), LinkConfig::default(), None)
        .await
        .unwrap();
    let SyncStart::Full { replid, .. } = link.start().clone() else {
        panic!("expected a full resync")
    };
    read_rdb(&mut link, "7.0").await;
    link.request_ack();
    link.send_ack_if_due().await.unwrap();
    let mut c = source.conn();
    let _: () = redis::cmd("SET").arg("a").arg("1").query(&mut c).unwrap();
    follow_until_caught_up(&mut link, &source).await;
    let applied = link.received_offset();
    drop(link);

    let _: () = redis::cmd("SET").arg("b").arg("2").query(&mut c).unwrap();
    let mut link = ReplicaLink::connect(
        &peer(&source),
        LinkConfig::default(),
        Some((&replid, applied)),
    )
    .await
    .unwrap();
    assert!(
        matches!(link.start(), SyncStart::Partial { offset, .. } if *offset == applied),
        "{:?}",
        link.start()
    );
    let names = follow_until_caught_up(&mut link, &source).await;
    assert!(names.contains(&"SET".to_string()), "{names:?}");
}

#[tokio::test]
async fn auth_with_user_and_password_works_and_a_wrong_password_is_named_without_leaking() {
    let source = RedisServer::start_with("7.2", &["--repl-diskless-sync-delay", "0"]);
    source.cli(&[
        "ACL",
        "SETUSER",
        "mover",
        "on",
        ">s3cret-pass",
        "+@all",
        "~*",
    ]);
    let good = RedisUrl::parse(&format!(
        "redis://mover:s3cret-pass@127.0.0.1:{}",
        source.port
    ))
    .unwrap();
    let mut link =
        ReplicaLink::connect(&Peer::from_url(&good).unwrap(), LinkConfig::default(), None)
            .await
            .unwrap();
    read_rdb(&mut link, "7.2").await;

    let bad = RedisUrl::parse(&format!(
        "redis://mover:wrong-pass@127.0.0.1:{}",
        source.port
    ))
    .unwrap();
    let err = ReplicaLink::connect(&Peer::from_url(&bad).unwrap(), LinkConfig::default(), None)
        .await
        .err()
        .expect("a wrong password fails");
    assert!(matches!(err, LinkError::Auth { .. }), "{err:?}");
    assert!(!err.to_string().contains("wrong-pass"), "{err}");
}

#[tokio::test]
async fn an_unreachable_source_fails_fast_with_the_address() {
    let port = common::redis::free_port();
    let u = RedisUrl::parse(&format!("redis://127.0.0.1:{port}")).unwrap();
    let err = ReplicaLink::connect(&Peer::from_url(&u).unwrap(), LinkConfig::default(), None)
        .await
        .err()
        .expect("nothing listens there");
    assert!(matches!(err, LinkError::Connect { .. }), "{err:?}");
    assert!(err.to_string().contains(&port.to_string()));
}

#[tokio::test]
async fn a_source_without_psync_is_synced_with_legacy_sync() {
    let source = RedisServer::start_with(
        "7.2",
        &[
            "--rename-command",
            "PSYNC",
            "",
            "--repl-diskless-sync",
            "no",
        ],
    );
    let _: () = redis::cmd("SET")
        .arg("k")
        .arg("v")
        .query(&mut source.conn())
        .unwrap();
    let mut link = ReplicaLink::connect(&peer(&source), LinkConfig::default(), None)
        .await
        .unwrap();
    assert!(
        matches!(link.start(), SyncStart::Full { replid, transfer: Transfer::Sized(_), .. } if replid == "?"),
        "{:?}",
        link.start()
    );
    read_rdb(&mut link, "7.2").await;
    let _: () = redis::cmd("SET")
        .arg("after")
        .arg("1")
        .query(&mut source.conn())
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        assert!(Instant::now() < deadline, "no command after SYNC");
        if let Ok(item) = tokio::time::timeout(Duration::from_millis(200), link.next()).await {
            if let LinkItem::Command(c) = item.unwrap() {
                if c.is("SET") {
                    break;
                }
            }
        }
    }
}
