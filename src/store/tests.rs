//! The log's promises, checked against a real sled directory.

use super::*;
use crate::model::EventKind;

fn checkpoint(offset: i64) -> EventKind {
    EventKind::Checkpoint {
        replid: "r".into(),
        applied_offset: offset,
        commands_streamed: 0,
        lag_bytes: None,
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
