//! The writer against a hand-driven fake target: the only way to be the slowest server possible.
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpListener;

use super::*;
use crate::redis_url::RedisUrl;
use crate::transport::Peer;

/// Answers the `PING` every new connection starts with (see [`crate::transport`]).
async fn answer_hello(socket: &mut tokio::net::TcpStream) {
    let mut ping = [0u8; 14];
    socket.read_exact(&mut ping).await.unwrap();
    assert_eq!(&ping, b"*1\r\n$4\r\nPING\r\n");
    socket.write_all(b"+PONG\r\n").await.unwrap();
}

/// A target that reads everything and answers only when told to: the slowest possible server.
async fn silent_target() -> (RedisUrl, mpsc::Sender<usize>) {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    let (answer, mut answers) = mpsc::channel::<usize>(16);
    tokio::spawn(async move {
        let (mut socket, _) = listener.accept().await.unwrap();
        answer_hello(&mut socket).await;
        let (mut read, mut write) = socket.into_split();
        tokio::spawn(async move {
            let mut sink = vec![0u8; 64 * 1024];
            while read.read(&mut sink).await.unwrap_or(0) > 0 {}
        });
        while let Some(n) = answers.recv().await {
            write.write_all(&b"+OK\r\n".repeat(n)).await.unwrap();
        }
    });
    (
        RedisUrl::parse(&format!("redis://127.0.0.1:{port}")).unwrap(),
        answer,
    )
}

#[tokio::test]
async fn a_silent_target_stops_the_writer_at_the_window_and_replies_let_it_go_on() {
    let (url, answer) = silent_target().await;
    let conn = Conn::connect(&Peer::from_url(&url).unwrap()).await.unwrap();
    let cfg = WriterConfig {
        max_inflight_commands: 1000,
        max_inflight_bytes: 64 * 1024,
        flush_bytes: 4096,
    };
    let mut writer = Writer::new(conn, cfg, OnConflict::Fail, 0);
    let value = vec![b'x'; 1000];
    let mut admitted = 0usize;
    // SELECT 0 goes first and takes a slot of the window too.
    for _ in 0..200 {
        let sent = tokio::time::timeout(
            Duration::from_millis(300),
            writer.setup(0, &[b"SET", b"k", &value], "SET", None),
        )
        .await;
        match sent {
            Ok(r) => {
                r.unwrap();
                admitted += 1;
            }
            Err(_) => break,
        }
    }
    // ~1 KB per command in a 64 KB window: the writer stops near 64 commands, not 200.
    assert!((55..=66).contains(&admitted), "admitted {admitted}");

    // Replies free the window.
    answer.send(admitted + 1).await.unwrap();
    let more = tokio::time::timeout(
        Duration::from_secs(5),
        writer.setup(0, &[b"SET", b"k", &value], "SET", None),
    )
    .await;
    assert!(more.is_ok(), "the writer moves on once replies arrive");
    assert_eq!(writer.stats().keys_written.load(Ordering::Relaxed), 0);
}

#[tokio::test]
async fn an_error_reply_fails_the_writer_with_the_command_named() {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    tokio::spawn(async move {
        let (mut socket, _) = listener.accept().await.unwrap();
        answer_hello(&mut socket).await;
        let mut buf = vec![0u8; 4096];
        let _ = socket.read(&mut buf).await;
        socket
            .write_all(b"+OK\r\n-ERR Bad data format\r\n")
            .await
            .unwrap();
        let _ = socket.read(&mut buf).await;
    });
    let url = RedisUrl::parse(&format!("redis://127.0.0.1:{port}")).unwrap();
    let conn = Conn::connect(&Peer::from_url(&url).unwrap()).await.unwrap();
    let mut writer = Writer::new(conn, WriterConfig::default(), OnConflict::Fail, 0);
    let key = Bytes::from_static(b"the-key");
    writer
        .restore(Restore {
            db: 2,
            key: &key,
            type_byte: 0,
            raw_value: b"\x01a",
            rdb_version: 11,
            expire_ms: None,
            replace: false,
            idle_secs: None,
            freq: None,
        })
        .await
        .unwrap();
    let err = writer.drain().await.unwrap_err();
    assert_eq!(err.code(), "target_error");
    let text = err.to_string();
    assert!(
        text.contains("RESTORE") && text.contains("the-key") && text.contains("db 2"),
        "{text}"
    );
}

#[tokio::test]
async fn stream_commands_are_applied_in_batches_and_a_refused_one_is_named() {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    tokio::spawn(async move {
        let (mut socket, _) = listener.accept().await.unwrap();
        answer_hello(&mut socket).await;
        let mut buf = vec![0u8; 4096];
        let _ = socket.read(&mut buf).await;
        socket
            .write_all(b"+OK\r\n:1\r\n-WRONGTYPE Operation against a key\r\n")
            .await
            .unwrap();
        let _ = socket.read(&mut buf).await;
    });
    let url = RedisUrl::parse(&format!("redis://127.0.0.1:{port}")).unwrap();
    let conn = Conn::connect(&Peer::from_url(&url).unwrap()).await.unwrap();
    let mut writer = Writer::new(conn, WriterConfig::default(), OnConflict::Fail, 100);
    writer.note_db(3);
    for (name, offset) in [("SET", 110), ("INCR", 120), ("LPUSH", 130)] {
        writer
            .forward(b"*1\r\n$4\r\nPING\r\n", &[Bytes::from(name)], Some(offset))
            .await
            .unwrap();
    }
    let err = writer.drain().await.unwrap_err();
    assert_eq!(err.code(), "target_error");
    let text = err.to_string();
    assert!(text.contains("LPUSH") && text.contains("db 3"), "{text}");
    // Nothing of the failed batch counts as applied.
    assert_eq!(writer.applied_offset(), 100);
}

/// Wrapped: one transaction carries the commands and the offset key; a runtime error inside
/// the EXEC result names its command and key, and the offset does not move.
#[tokio::test]
async fn a_wrapped_batch_sets_the_offset_key_and_names_a_failed_command() {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    let (sent_tx, sent_rx) = tokio::sync::oneshot::channel();
    tokio::spawn(async move {
        let (mut socket, _) = listener.accept().await.unwrap();
        answer_hello(&mut socket).await;
        let mut sent = Vec::new();
        let mut buf = vec![0u8; 4096];
        // MULTI, 2 commands, SELECT 0, SET, SELECT 3, EXEC: read until the EXEC is in.
        while !sent.ends_with(b"EXEC\r\n") {
            let n = socket.read(&mut buf).await.unwrap();
            assert!(n > 0);
            sent.extend_from_slice(&buf[..n]);
        }
        socket
            .write_all(
                b"+OK\r\n+QUEUED\r\n+QUEUED\r\n+QUEUED\r\n+QUEUED\r\n+QUEUED\r\n\
                  *5\r\n+OK\r\n-WRONGTYPE Operation against a key\r\n+OK\r\n+OK\r\n+OK\r\n",
            )
            .await
            .unwrap();
        let _ = sent_tx.send(sent);
        let _ = socket.read(&mut buf).await;
    });
    let url = RedisUrl::parse(&format!("redis://127.0.0.1:{port}")).unwrap();
    let conn = Conn::connect(&Peer::from_url(&url).unwrap()).await.unwrap();
    let mut writer = Writer::new(conn, WriterConfig::default(), OnConflict::Fail, 100);
    writer.note_db(3);
    writer.track_offset(Bytes::from_static(b"ferry:offset:x"), "rid".into());
    let commands = [
        (
            b"*2\r\n$3\r\nGET\r\n$1\r\na\r\n".as_slice(),
            "GET",
            "a",
            110,
        ),
        (
            b"*2\r\n$4\r\nINCR\r\n$7\r\ncounter\r\n".as_slice(),
            "INCR",
            "counter",
            120,
        ),
    ];
    for (raw, name, key, offset) in commands {
        let args = [Bytes::from(name), Bytes::from(key)];
        writer.forward(raw, &args, Some(offset)).await.unwrap();
    }
    let err = writer.drain().await.unwrap_err();
    let text = err.to_string();
    assert!(
        text.contains("INCR") && text.contains("`counter`"),
        "{text}"
    );
    assert_eq!(writer.applied_offset(), 100);
    let sent = String::from_utf8(sent_rx.await.unwrap()).unwrap();
    assert!(sent.starts_with("*1\r\n$5\r\nMULTI\r\n"), "{sent}");
    assert!(
        sent.contains("ferry:offset:x\r\n$9\r\nrid:120:3\r\n"),
        "{sent}"
    );
}
