//! Dead and stalled servers: validation still answers, within 10 s, and says what is wrong.

use std::net::TcpListener;

use crate::helpers::*;

/// A listener that accepts TCP connections (the kernel does) but never reads or answers: a hung
/// server or a black-holing middlebox, on loopback.
fn blackhole() -> (TcpListener, String) {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let url = format!(
        "redis://127.0.0.1:{}",
        listener.local_addr().unwrap().port()
    );
    (listener, url)
}

#[tokio::test]
async fn two_unreachable_servers_answer_within_ten_seconds() {
    let (_source_hole, source_url) = blackhole();
    let (_target_hole, target_url) = blackhole();
    let started = Instant::now();
    let report = validate(&source_url, &target_url).await;
    let elapsed = started.elapsed();
    eprintln!("two black-holed servers: validation answered in {elapsed:?}");
    assert!(elapsed <= Duration::from_secs(10), "took {elapsed:?}");
    expect(
        &report,
        "source.connect",
        CheckStatus::Fail,
        &["no answer", "within 3s"],
    );
    expect(
        &report,
        "target.connect",
        CheckStatus::Fail,
        &["no answer", "within 3s"],
    );
    // Nothing that needs a server claims a pass: the dependent checks are skipped, naming the
    // connection they wait on; the TLS checks about certificates have no TLS server to look at.
    let about_certificates = |id: &str| id.starts_with("tls.") && id != "tls.protocol";
    for c in report.checks.iter().filter(|c| {
        !about_certificates(&c.id) && !["source.connect", "target.connect"].contains(&c.id.as_str())
    }) {
        assert_eq!(c.status, CheckStatus::Skipped, "{}", pretty(&report));
        let waits_on = c.details.as_ref().unwrap()["waits_on"].as_str().unwrap();
        assert!(waits_on.ends_with(".connect"), "{}", pretty(&report));
    }
    expect(
        &report,
        "tls.chain",
        CheckStatus::Pass,
        &["no endpoint uses TLS"],
    );

    // A closed port is refused at once and says so.
    let closed = format!("redis://127.0.0.1:{}", free_port());
    let started = Instant::now();
    let report = validate(&closed, &target_url).await;
    eprintln!("closed port + black hole: {:?}", started.elapsed());
    assert!(started.elapsed() <= Duration::from_secs(10));
    expect(&report, "source.connect", CheckStatus::Fail, &["refused"]);
}

/// A server that completes the client handshake (`CLIENT SETINFO`, `AUTH`, `PING`) and then never
/// answers again: the "alive but stalled" fault, which no real redis-server can be made to show on
/// cue. It speaks just enough RESP to get there.
fn stalled_server() -> String {
    use std::io::{Read, Write};
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let url = format!(
        "redis://127.0.0.1:{}",
        listener.local_addr().unwrap().port()
    );
    std::thread::spawn(move || {
        for stream in listener.incoming() {
            let Ok(mut stream) = stream else { return };
            std::thread::spawn(move || {
                let mut pending = Vec::new();
                let mut buf = [0u8; 4096];
                let mut stalled = false;
                while let Ok(n) = stream.read(&mut buf) {
                    if n == 0 {
                        return;
                    }
                    pending.extend_from_slice(&buf[..n]);
                    // Each command is an array whose first bulk string is the name.
                    while let Some((name, used)) = first_command(&pending) {
                        pending.drain(..used);
                        let reply: &[u8] = match name.to_ascii_uppercase().as_str() {
                            _ if stalled => continue,
                            "PING" => b"+PONG\r\n",
                            "CLIENT" | "AUTH" | "SELECT" => b"+OK\r\n",
                            _ => {
                                stalled = true;
                                continue;
                            }
                        };
                        let _ = stream.write_all(reply);
                    }
                }
            });
        }
    });
    url
}

/// Parses one complete RESP array of bulk strings: its first element and the bytes it used.
fn first_command(bytes: &[u8]) -> Option<(String, usize)> {
    let line_end = |from: usize| {
        bytes[from..]
            .windows(2)
            .position(|w| w == b"\r\n")
            .map(|p| from + p)
    };
    let end = line_end(0)?;
    let count: usize = std::str::from_utf8(bytes.get(1..end)?).ok()?.parse().ok()?;
    let mut at = end + 2;
    let mut name = None;
    for _ in 0..count {
        let len_end = line_end(at)?;
        let len: usize = std::str::from_utf8(&bytes[at + 1..len_end])
            .ok()?
            .parse()
            .ok()?;
        let start = len_end + 2;
        let item = bytes.get(start..start + len)?;
        name.get_or_insert_with(|| String::from_utf8_lossy(item).into_owned());
        at = start + len + 2;
    }
    (at <= bytes.len()).then(|| (name.unwrap_or_default(), at))
}

#[tokio::test]
async fn a_server_that_stalls_after_the_handshake_is_bounded_too() {
    let source = stalled_server();
    let target = stalled_server();
    let started = Instant::now();
    let report = validate(&source, &target).await;
    let elapsed = started.elapsed();
    eprintln!("two stalled servers: validation answered in {elapsed:?}");
    assert!(elapsed <= Duration::from_secs(10), "took {elapsed:?}");
    expect(&report, "source.connect", CheckStatus::Pass, &[]);
    expect(
        &report,
        "distinct_servers",
        CheckStatus::Fail,
        &["not checked", "`INFO` got no answer", "stalled"],
    );
    expect(
        &report,
        "modules",
        CheckStatus::Fail,
        &["`MODULE LIST` got no answer"],
    );
    assert_eq!(report.status, ReportStatus::Failed);
}
