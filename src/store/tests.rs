//! The log's promises, checked against a real sled directory.

use super::*;
use crate::model::audit::AuditStatus;
use crate::model::{Digest32, EventKind};

fn checkpoint(offset: i64) -> EventKind {
    EventKind::Checkpoint {
        replid: "r".into(),
        applied_offset: offset,
        commands_streamed: 0,
        lag_bytes: None,
        bytes_streamed: None,
    }
}

#[tokio::test]
async fn appends_get_consecutive_seqs_and_read_back_in_order() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(dir.path()).unwrap();
    let (a, b) = (Uuid::now_v7(), Uuid::now_v7());
    let first = store
        .append(vec![
            NewEvent::migration(a, "api", checkpoint(1)),
            NewEvent::migration(b, "api", checkpoint(2)),
        ])
        .await
        .unwrap();
    assert_eq!(first.iter().map(|e| e.seq).collect::<Vec<_>>(), [1, 2]);
    let third = store
        .append_one(NewEvent::migration(a, "engine", checkpoint(3)))
        .await
        .unwrap();
    assert_eq!(third.seq, 3);

    let of_a = store.aggregate_events(a, 0, 100).await.unwrap();
    assert_eq!(of_a.iter().map(|e| e.seq).collect::<Vec<_>>(), [1, 3]);
    assert_eq!(store.aggregate_events(a, 1, 100).await.unwrap().len(), 1);
    assert_eq!(store.aggregate_events(a, 0, 1).await.unwrap().len(), 1);

    let all = store.events_after(1, 100, None).await.unwrap();
    assert_eq!(all.iter().map(|e| e.seq).collect::<Vec<_>>(), [2, 3]);
    assert!(store
        .events_after(0, 100, Some("MigrationCreated".into()))
        .await
        .unwrap()
        .is_empty());
}

#[tokio::test]
async fn concurrent_appends_share_flushes_without_gaps() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(dir.path()).unwrap();
    let id = Uuid::now_v7();
    let tasks: Vec<_> = (0..200)
        .map(|i| {
            let store = store.clone();
            tokio::spawn(async move {
                store
                    .append_one(NewEvent::migration(id, "engine", checkpoint(i)))
                    .await
                    .unwrap()
                    .seq
            })
        })
        .collect();
    let mut seqs = Vec::new();
    for t in tasks {
        seqs.push(t.await.unwrap());
    }
    seqs.sort_unstable();
    assert_eq!(seqs, (1..=200).collect::<Vec<u64>>());
}

#[tokio::test]
async fn subscribers_see_new_events_after_they_are_durable() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(dir.path()).unwrap();
    let mut live = store.subscribe();
    let id = Uuid::now_v7();
    store
        .append_one(NewEvent::migration(id, "api", checkpoint(5)))
        .await
        .unwrap();
    let seen = live.recv().await.unwrap();
    assert_eq!((seen.seq, seen.aggregate_id), (1, id));
}

#[tokio::test]
async fn a_reopened_store_continues_the_sequence_and_folds_everything() {
    let dir = tempfile::tempdir().unwrap();
    let id = Uuid::now_v7();
    {
        let store = Store::open(dir.path()).unwrap();
        for i in 0..10 {
            store
                .append_one(NewEvent::migration(id, "api", checkpoint(i)))
                .await
                .unwrap();
        }
    }
    let store = Store::open(dir.path()).unwrap();
    let next = store
        .append_one(NewEvent::migration(id, "api", checkpoint(10)))
        .await
        .unwrap();
    assert_eq!(next.seq, 11);
    let mut seen = Vec::new();
    store.for_each_event(|e| seen.push(e.seq)).unwrap();
    assert_eq!(seen, (1..=11).collect::<Vec<u64>>());
}

#[tokio::test]
async fn credentials_survive_a_reopen() {
    let dir = tempfile::tempdir().unwrap();
    let id = Uuid::now_v7();
    let creds = Credentials {
        source: crate::redis_url::RedisUrl::parse("redis://u:pw1@127.0.0.1:1").unwrap(),
        target: crate::redis_url::RedisUrl::parse("redis://127.0.0.1:2").unwrap(),
    };
    {
        let store = Store::open(dir.path()).unwrap();
        store.put_credentials(id, creds.clone()).await.unwrap();
    }
    let store = Store::open(dir.path()).unwrap();
    assert_eq!(store.credentials(id).await.unwrap(), Some(creds));
}

#[tokio::test]
async fn sealed_chunks_read_back_like_single_events_and_survive_a_reopen() {
    let dir = tempfile::tempdir().unwrap();
    let (a, b) = (Uuid::now_v7(), Uuid::now_v7());
    // 3,000 events in batches: two full chunks get sealed, the rest stay single.
    let total = 3000u64;
    {
        let store = Store::open(dir.path()).unwrap();
        for start in (0..total).step_by(100) {
            let batch = (start..start + 100)
                .map(|i| {
                    NewEvent::migration(
                        if i % 3 == 0 { a } else { b },
                        "engine",
                        checkpoint(i as i64),
                    )
                })
                .collect();
            store.append(batch).await.unwrap();
        }
        assert_full_log(&store, total).await;
    }
    let store = Store::open(dir.path()).unwrap();
    assert_full_log(&store, total).await;
    let next = store
        .append_one(NewEvent::migration(a, "api", checkpoint(-1)))
        .await
        .unwrap();
    assert_eq!(next.seq, total + 1);

    let of_a = store.aggregate_events(a, 0, 10_000).await.unwrap();
    assert_eq!(of_a.len() as u64, total / 3 + 1);
    assert!(of_a.windows(2).all(|w| w[0].seq < w[1].seq));
    assert!(of_a.iter().all(|e| e.aggregate_id == a));
    let after_chunk = store.aggregate_events(b, 1500, 2).await.unwrap();
    assert_eq!(
        after_chunk.iter().map(|e| e.seq).collect::<Vec<_>>(),
        [1502, 1503]
    );

    for after in [0, 1, 1023, 1024, 1025, 2047, 2048, 2995] {
        let page = store.events_after(after, 5, None).await.unwrap();
        let seqs: Vec<u64> = page.iter().map(|e| e.seq).collect();
        assert_eq!(
            seqs,
            (after + 1..after + 6).collect::<Vec<_>>(),
            "after {after}"
        );
        if let EventKind::Checkpoint { applied_offset, .. } = page[0].kind {
            assert_eq!(
                applied_offset, after as i64,
                "the payload belongs to its seq"
            );
        }
    }
}

async fn assert_full_log(store: &Store, total: u64) {
    let mut seen = Vec::new();
    store.for_each_event(|e| seen.push(e.seq)).unwrap();
    assert_eq!(seen, (1..=total).collect::<Vec<u64>>());
    let all = store.events_after(0, 10_000, None).await.unwrap();
    assert_eq!(all.len() as u64, total);
}

#[tokio::test]
async fn reads_during_sealing_see_no_gaps() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(dir.path()).unwrap();
    let id = Uuid::now_v7();
    let writer = {
        let store = store.clone();
        tokio::spawn(async move {
            for start in (0..5000i64).step_by(50) {
                let batch = (start..start + 50)
                    .map(|i| NewEvent::migration(id, "engine", checkpoint(i)))
                    .collect();
                store.append(batch).await.unwrap();
            }
        })
    };
    while !writer.is_finished() {
        let all = store.events_after(0, 100_000, None).await.unwrap();
        assert!(
            all.iter().enumerate().all(|(i, e)| e.seq == i as u64 + 1),
            "a gap"
        );
        let mine = store.aggregate_events(id, 0, 100_000).await.unwrap();
        assert!(
            mine.iter().enumerate().all(|(i, e)| e.seq == i as u64 + 1),
            "a gap"
        );
    }
    writer.await.unwrap();
}

/// [`Store::open`] once the sled database closed just before has released its lock: sled's
/// flusher thread lets go of it a moment after the handle is dropped (seconds on a loaded
/// machine), and `open` reports `InUse` meanwhile, as it must for a live owner.
fn open_when_free(dir: &Path) -> Store {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        match Store::open(dir) {
            Err(StoreError::InUse { .. }) if Instant::now() < deadline => {
                std::thread::sleep(Duration::from_millis(20))
            }
            other => return other.unwrap(),
        }
    }
}

/// The store's sled database in `dir`, opened as the store opens it (compressed or not). The
/// dropped store's writer thread lets go of the directory a moment after the last handle.
fn raw_sled(dir: &Path) -> sled::Db {
    let path = dir.join("log");
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let config = sled::Config::new()
            .path(&path)
            .use_compression(compresses(&path));
        match config.open() {
            Ok(db) => return db,
            Err(_) if Instant::now() < deadline => {
                std::thread::sleep(Duration::from_millis(20));
            }
            Err(e) => panic!("{e}"),
        }
    }
}

/// Replaces `from` by `to` (same length) in the stored record of `seq`, directly in sled, the way
/// someone editing the files would: in its single key, or inside the packed chunk that holds it.
fn tamper(dir: &Path, seq: u64, from: &[u8], to: &[u8]) {
    let db = raw_sled(dir);
    let log = db.open_tree("events").unwrap();
    let edit = |bytes: &[u8]| -> Vec<u8> {
        let at = bytes
            .windows(from.len())
            .position(|w| w == from)
            .expect("the text to change is in the record");
        let mut out = bytes.to_vec();
        out[at..at + from.len()].copy_from_slice(to);
        out
    };
    if let Some(single) = log.get(record::event_key(seq)).unwrap() {
        log.insert(record::event_key(seq), edit(&single)).unwrap();
    } else {
        let (key, stored) = super::chunk_at_or_before(&log, seq).unwrap().unwrap();
        let frames = record::unpack(&stored).unwrap().into_owned();
        let mut rebuilt = Vec::new();
        for (s, bytes) in record::frames(&frames) {
            let bytes = if s == seq {
                edit(bytes)
            } else {
                bytes.to_vec()
            };
            record::push_framed(&mut rebuilt, s, &bytes);
        }
        log.insert(key, record::pack(&rebuilt)).unwrap();
    }
    db.flush().unwrap();
}

async fn append_checkpoints(store: &Store, id: Uuid, n: u64) {
    for start in (0..n).step_by(100) {
        let batch = (start..(start + 100).min(n))
            .map(|i| NewEvent::migration(id, "engine", checkpoint(i as i64)))
            .collect();
        store.append(batch).await.unwrap();
    }
}

#[tokio::test]
async fn every_event_links_to_the_one_before_and_the_chain_verifies_across_a_reopen() {
    let dir = tempfile::tempdir().unwrap();
    let id = Uuid::now_v7();
    {
        let store = Store::open(dir.path()).unwrap();
        append_checkpoints(&store, id, 1500).await;
        let all = store.events_after(0, 10_000, None).await.unwrap();
        let first = all[0].chain.unwrap();
        assert_eq!(first.prev_hash, Digest32::ZERO);
        assert!(all
            .windows(2)
            .all(|w| w[1].chain.unwrap().prev_hash == w[0].chain.unwrap().hash));
        assert_eq!(store.genesis().seq, 1);
    }
    let store = Store::open(dir.path()).unwrap();
    let next = store
        .append_one(NewEvent::migration(id, "api", checkpoint(-1)))
        .await
        .unwrap();
    let before = store.events_after(1499, 1, None).await.unwrap();
    assert_eq!(
        next.chain.unwrap().prev_hash,
        before[0].chain.unwrap().hash,
        "a reopened store links on"
    );
    let report = store.verify_chain().await.unwrap();
    assert_eq!(report.status, AuditStatus::Intact, "{report:?}");
    assert_eq!((report.events, report.head_seq), (1501, 1501));
    assert_eq!(report.head_hash, next.chain.unwrap().hash);
}

#[tokio::test]
async fn an_event_edited_in_sled_is_named_by_the_verification() {
    let dir = tempfile::tempdir().unwrap();
    let id = Uuid::now_v7();
    {
        let store = Store::open(dir.path()).unwrap();
        append_checkpoints(&store, id, 1100).await;
    }
    // seq 500 sits in the packed chunk of 1..=1024; seq 1050 in its own key.
    tamper(dir.path(), 1050, b"engine", b"eng1ne");
    let store = Store::open(dir.path()).unwrap();
    let report = store.verify_chain().await.unwrap();
    assert_eq!(report.status, AuditStatus::Broken);
    assert_eq!(report.first_broken_seq, Some(1050), "{report:?}");
    assert_eq!(report.head_seq, 1049);
    assert!(report.problem.unwrap().contains("changed"));
    drop(store);

    tamper(
        dir.path(),
        500,
        b"\"applied_offset\":499",
        b"\"applied_offset\":498",
    );
    let store = Store::open(dir.path()).unwrap();
    let report = store.verify_chain().await.unwrap();
    assert_eq!(report.first_broken_seq, Some(500), "{report:?}");
}

#[tokio::test]
async fn a_log_from_before_the_chain_gets_a_genesis_that_covers_its_old_events() {
    let dir = tempfile::tempdir().unwrap();
    let id = Uuid::now_v7();
    {
        // Records of the earlier format: no hashes.
        // As the previous versions created it: uncompressed; the store keeps it so.
        let db = sled::open(dir.path().join("log")).unwrap();
        let log = db.open_tree("events").unwrap();
        for seq in 1..=5u64 {
            let record = format!(
                r#"{{"m":"{id}","g":"migration","t":1700000000000000,"a":"engine","k":{{"type":"Checkpoint","data":{{"replid":"r","applied_offset":{seq},"commands_streamed":0,"lag_bytes":null}}}}}}"#
            );
            log.insert(record::event_key(seq), record.as_bytes())
                .unwrap();
            log.insert(record::index_key(&id, seq), &[]).unwrap();
        }
        db.flush().unwrap();
    }
    {
        let store = open_when_free(dir.path());
        let genesis = store.genesis();
        assert_eq!(genesis.seq, 6);
        assert_ne!(genesis.prev_hash, Digest32::ZERO);
        let sixth = store
            .append_one(NewEvent::migration(id, "api", checkpoint(6)))
            .await
            .unwrap();
        assert_eq!(sixth.chain.unwrap().prev_hash, genesis.prev_hash);
        let report = store.verify_chain().await.unwrap();
        assert_eq!(report.status, AuditStatus::Intact, "{report:?}");
        assert_eq!(report.events, 6);
    }
    tamper(
        dir.path(),
        2,
        b"\"applied_offset\":2",
        b"\"applied_offset\":9",
    );
    let store = Store::open(dir.path()).unwrap();
    assert_eq!(store.genesis().seq, 6, "the genesis is recorded once");
    let report = store.verify_chain().await.unwrap();
    assert_eq!(report.first_broken_seq, Some(6), "{report:?}");
    assert!(report.problem.unwrap().contains("genesis"));
}

/// A data directory from before chunks moved from `c` to `s` (see [`record`]): its chunks are
/// read where they are, new chunks go to `s`, and every read walks both in `seq` order.
#[tokio::test]
async fn chunks_sealed_under_the_legacy_prefix_still_read_and_new_ones_follow_them() {
    let dir = tempfile::tempdir().unwrap();
    let id = Uuid::now_v7();
    {
        let store = Store::open(dir.path()).unwrap();
        append_checkpoints(&store, id, 2100).await;
    }
    // What the previous version left: the two sealed chunks under `c`.
    {
        let db = raw_sled(dir.path());
        let log = db.open_tree("events").unwrap();
        let mut batch = sled::Batch::default();
        let mut moved = 0;
        for entry in log.scan_prefix([record::CHUNK_PREFIX]) {
            let (key, stored) = entry.unwrap();
            let seq = record::seq_of_key(&key).unwrap();
            batch.insert(
                &record::chunk_key_in(record::LEGACY_CHUNK_PREFIX, seq),
                stored,
            );
            batch.remove(key);
            moved += 1;
        }
        assert_eq!(moved, 2, "2,100 events seal two chunks");
        log.apply_batch(batch).unwrap();
        db.flush().unwrap();
    }
    let store = Store::open(dir.path()).unwrap();
    assert_full_log(&store, 2100).await;
    append_checkpoints(&store, id, 1000).await;
    assert_full_log(&store, 3100).await;
    for after in [0, 1023, 2047, 2048, 3071, 3072] {
        let page = store.events_after(after, 3, None).await.unwrap();
        let seqs: Vec<u64> = page.iter().map(|e| e.seq).collect();
        assert_eq!(
            seqs,
            (after + 1..after + 4).collect::<Vec<_>>(),
            "after {after}"
        );
    }
    let mine = store.aggregate_events(id, 0, 10_000).await.unwrap();
    assert_eq!(mine.len(), 3100);
    assert!(mine.iter().enumerate().all(|(i, e)| e.seq == i as u64 + 1));
    assert_eq!(
        store.verify_chain().await.unwrap().status,
        AuditStatus::Intact
    );
    drop(store);
    let store = Store::open(dir.path()).unwrap();
    assert_full_log(&store, 3100).await;
}
