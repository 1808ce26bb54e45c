//! Hostile or careless uploads cost nothing (finding 7): a decompression bomb is refused before
//! it becomes an allocation, a corrupt ziplist before it is stored, uploads beyond the
//! concurrency limit wait their turn (503), and empty collections are skipped, as Redis does.

use std::io::Write;
use std::time::{Duration, Instant};

use serde_json::{json, Value};

use crate::common::app::{assert_problem, settings_for, spawn_app, spawn_with, TestApp};
use crate::common::redis::RedisServer;
use crate::helpers::{backups_dir, files_in, WAIT};

/// An RDB length (§1.2).
fn len(n: usize) -> Vec<u8> {
    if n < 64 {
        vec![n as u8]
    } else if n < 16384 {
        vec![0x40 | (n >> 8) as u8, n as u8]
    } else {
        let mut out = vec![0x80];
        out.extend_from_slice(&(n as u32).to_be_bytes());
        out
    }
}

fn string(s: &[u8]) -> Vec<u8> {
    let mut out = len(s.len());
    out.extend_from_slice(s);
    out
}

/// A whole RDB 9 file: db 0 holding `body` (type-key-value records), the end, the CRC.
fn rdb(body: &[u8]) -> Vec<u8> {
    let mut out = b"REDIS0009".to_vec();
    out.extend_from_slice(&[0xFE, 0x00]);
    out.extend_from_slice(body);
    out.push(0xFF);
    let crc = ferry::rdb::crc64::checksum(&out);
    out.extend_from_slice(&crc.to_le_bytes());
    out
}

fn string_key(key: &[u8], value: &[u8]) -> Vec<u8> {
    let mut out = vec![0u8];
    out.extend(string(key));
    out.extend(string(value));
    out
}

async fn upload(app: &TestApp, body: Vec<u8>) -> reqwest::Response {
    app.post_bytes("/v1/backups/upload", body).await
}

/// A key of one LZF string made of maximal back references: 24 kB that claims 4 MB. (At the
/// real cap, 512 MiB, the same shape needs 6 MB to claim it; the cap is configurable, and set
/// low here to keep the test small.)
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_decompression_bomb_is_refused_before_it_becomes_an_allocation() {
    let dir = std::sync::Arc::new(tempfile::tempdir().unwrap());
    let mut settings = settings_for(dir.path());
    settings.max_decompressed_bytes = 1 << 20;
    let app = spawn_with(settings, dir).await;
    let refs = 16_000;
    let mut lzf = vec![0x00, b'a'];
    for _ in 0..refs {
        lzf.extend_from_slice(&[0xE0, 0xFF, 0x00]);
    }
    let mut key = vec![0xC3];
    key.extend(len(lzf.len()));
    key.extend(len(1 + 264 * refs));
    key.extend(lzf);
    let mut body = vec![0u8];
    body.extend(key);
    body.extend(string(b"v"));
    let problem = assert_problem(upload(&app, rdb(&body)).await, 400).await;
    let detail = problem["detail"].as_str().unwrap();
    assert!(detail.contains("LZF"), "{detail}");
    assert!(files_in(&backups_dir(&app)).is_empty());
}

/// A hash ziplist whose header counts 4 entries while it holds 2: Redis would refuse it when
/// loading with `sanitize-dump-payload yes`; it used to be stored, and a migration from it
/// would fail half-way. It is refused at upload, naming the offset.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_upload_with_a_corrupt_ziplist_is_refused_before_it_is_stored() {
    let app = spawn_app().await;
    let mut ziplist = vec![];
    ziplist.extend_from_slice(&17u32.to_le_bytes());
    ziplist.extend_from_slice(&13u32.to_le_bytes());
    ziplist.extend_from_slice(&4u16.to_le_bytes());
    ziplist.extend_from_slice(&[0x00, 0x01, b'f', 0x03, 0x01, b'v', 0xFF]);
    let mut body = string_key(b"fine", b"1");
    body.push(13);
    body.extend(string(b"h"));
    body.extend(string(&ziplist));
    let problem = assert_problem(upload(&app, rdb(&body)).await, 400).await;
    assert!(problem["offset"].as_u64().unwrap() > 9, "{problem}");
    assert!(
        problem["detail"].as_str().unwrap().contains("count"),
        "{problem}"
    );
    assert!(files_in(&backups_dir(&app)).is_empty());
    let list: Value = app.get("/v1/backups").await.json().await.unwrap();
    assert_eq!(list["backups"], json!([]));
}

/// Uploads had no concurrency cap: each holds a file, a parser and a connection. Beyond
/// `upload_concurrency` they get 503 with `Retry-After`, and go through once one has finished.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn uploads_beyond_the_concurrency_limit_get_503_until_one_ends() {
    let dir = std::sync::Arc::new(tempfile::tempdir().unwrap());
    let mut settings = settings_for(dir.path());
    settings.upload_concurrency = 1;
    let app = spawn_with(settings, dir).await;
    // An upload that is slow to arrive: headers and a few bytes, then nothing.
    let mut slow = std::net::TcpStream::connect(("127.0.0.1", app.port)).unwrap();
    write!(
        slow,
        "POST /v1/backups/upload HTTP/1.1\r\nHost: 127.0.0.1\r\n\
         Content-Type: application/octet-stream\r\nContent-Length: 100000\r\n\r\nREDIS0009"
    )
    .unwrap();
    slow.flush().unwrap();
    tokio::time::sleep(Duration::from_millis(500)).await;
    let valid = rdb(&string_key(b"k", b"v"));
    let response = upload(&app, valid.clone()).await;
    assert_eq!(response.headers()["retry-after"], "5");
    assert_problem(response, 503).await;
    drop(slow);
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let response = upload(&app, valid.clone()).await;
        if response.status() == 201 {
            break;
        }
        assert_eq!(response.status(), 503);
        assert!(Instant::now() < deadline, "the slot was never freed");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// An empty set in an RDB (older servers could write one) stopped a migration from the file at
/// that key: the target refused the RESTORE ("Bad data format"). Redis skips such keys when it
/// loads a file; so does Ferry, and counts them.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn empty_collections_in_an_rdb_are_skipped_and_counted() {
    let target = RedisServer::start("7.2");
    let app = spawn_app().await;
    let mut body = string_key(b"before", b"1");
    body.push(2);
    body.extend(string(b"empty:set"));
    body.extend(len(0));
    body.extend(string_key(b"after", b"2"));
    let response = upload(&app, rdb(&body)).await;
    assert_eq!(response.status(), 201);
    let backup: Value = response.json().await.unwrap();
    let response = app
        .post_json(
            "/v1/migrations",
            &json!({"source": {"rdb": {"backup_id": backup["id"]}},
                "target": {"url": target.url()}, "options": {"verify": "none"}}),
        )
        .await;
    assert_eq!(response.status(), 201);
    let id = response.json::<Value>().await.unwrap()["id"]
        .as_str()
        .unwrap()
        .to_string();
    assert_eq!(app.action(&id, "validate").await.status(), 200);
    assert_eq!(app.action(&id, "start").await.status(), 202);
    let view = app
        .wait_for(&id, WAIT, |v| {
            v["state"] == "completed" || v["state"] == "failed"
        })
        .await;
    assert_eq!(view["state"], "completed", "{view:#}");
    let events: Value = app
        .get(&format!("/v1/migrations/{id}/events?limit=1000"))
        .await
        .json()
        .await
        .unwrap();
    let completed = events["events"]
        .as_array()
        .unwrap()
        .iter()
        .find(|e| e["type"] == "SnapshotCompleted")
        .cloned()
        .unwrap();
    assert_eq!(completed["data"]["keys_empty"], 1, "{completed:#}");
    assert_eq!(completed["data"]["keys_written"], 2, "{completed:#}");
    assert_eq!(target.cli(&["DBSIZE"]).trim(), "2");
    assert_eq!(target.cli(&["EXISTS", "empty:set"]).trim(), "0");
}
