//! The audit chain: the export verified offline by the README's own script, an event edited in
//! sled named by `GET /v1/audit/verify` and by `ferry audit verify`.

use std::process::Command;

use serde_json::{json, Value};

use crate::helpers::app;

/// The README's verification script: the ```python block after `<!-- verify-chain.py -->`.
fn readme_script() -> String {
    let readme =
        std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/README.md")).unwrap();
    let after = readme
        .split("<!-- verify-chain.py -->")
        .nth(1)
        .expect("the README marks its verification script with <!-- verify-chain.py -->");
    let block = after.split("```python\n").nth(1).expect("a python block");
    block.split("```").next().unwrap().to_string()
}

fn python(script: &str, stdin: &[u8]) -> std::process::Output {
    use std::io::Write;
    let mut child = Command::new("python3")
        .arg("-c")
        .arg(script)
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("python3 runs the README's script (install python3)");
    child.stdin.take().unwrap().write_all(stdin).unwrap();
    child.wait_with_output().unwrap()
}

#[tokio::test]
async fn the_export_verifies_offline_with_the_readme_script_and_an_edit_does_not() {
    let script = readme_script();
    assert!(
        script
            .lines()
            .filter(|l| !l.trim().is_empty() && !l.starts_with('#'))
            .count()
            <= 12,
        "{script}"
    );
    let app = app().await;
    for i in 0..3 {
        let response = app
            .post_json(
                "/v1/migrations",
                &json!({"name": format!("m{i} — ünïcode \"quoted\""), "source": {"url": "redis://u:pw@127.0.0.1:1"},
                    "target": {"url": "redis://127.0.0.1:2"}, "options": {"verify": "full"}}),
            )
            .await;
        assert_eq!(response.status(), 201);
    }
    let response = app.get("/v1/events/export").await;
    assert_eq!(response.status(), 200);
    assert_eq!(response.headers()["content-type"], "application/x-ndjson");
    let body = response.bytes().await.unwrap();
    let lines: Vec<Value> = body
        .split(|b| *b == b'\n')
        .filter(|l| !l.is_empty())
        .map(|l| serde_json::from_slice(l).unwrap())
        .collect();
    assert_eq!(lines.len(), 3);
    assert_eq!(lines[0]["prev_hash"], "0".repeat(64));
    assert_eq!(lines[1]["prev_hash"], lines[0]["hash"]);
    assert!(
        !String::from_utf8_lossy(&body).contains("pw@"),
        "no password in the export"
    );

    let out = python(&script, &body);
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{stdout}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(stdout.contains("intact"), "{stdout}");
    assert!(
        stdout.contains(lines[2]["hash"].as_str().unwrap()),
        "the head hash: {stdout}"
    );

    // The same export with one event's actor changed fails at that seq.
    let edited =
        String::from_utf8_lossy(&body).replacen("\"actor\":\"api\"", "\"actor\":\"eve\"", 2);
    let edited = edited.replacen("\"actor\":\"eve\"", "\"actor\":\"api\"", 1);
    let out = python(&script, edited.as_bytes());
    assert!(!out.status.success());
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("seq 2"),
        "{:?}",
        out
    );

    let report: Value = app.get("/v1/audit/verify").await.json().await.unwrap();
    assert_eq!(report["status"], "intact", "{report}");
    assert_eq!(report["head_hash"], lines[2]["hash"]);
}

// Multi-threaded: `ferry audit verify` is waited for with a blocking call while the app it asks
// (through the control socket) runs on this runtime.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_event_edited_in_sled_is_named_by_the_api_and_by_ferry_audit_verify() {
    let app = app().await;
    for name in ["first", "second", "third"] {
        app.post_json(
            "/v1/migrations",
            &json!({"name": name, "source": {"url": "redis://127.0.0.1:1"}, "target": {"url": "redis://127.0.0.1:2"}}),
        )
        .await;
    }
    let (_, dir) = app.stop().await;
    {
        // What someone with access to the files could do: rewrite event 2's name in place.
        // The stopped app's store writer lets go of the directory a moment later (an async
        // sleep: the tasks that drop the store run on this test's runtime).
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
        let db = loop {
            // As the store creates a new data dir: zstd-compressed (sled refuses another setting).
            let config = sled::Config::new()
                .path(dir.path().join("log"))
                .use_compression(true);
            match config.open() {
                Ok(db) => break db,
                Err(_) if std::time::Instant::now() < deadline => {
                    tokio::time::sleep(std::time::Duration::from_millis(20)).await;
                }
                Err(e) => panic!("the stopped app still holds its data dir after 10 s: {e}"),
            }
        };
        let log = db.open_tree("events").unwrap();
        let mut key = vec![b'e'];
        key.extend_from_slice(&2u64.to_be_bytes());
        let record = log
            .get(&key)
            .unwrap()
            .expect("event 2 is stored on its own");
        let text = String::from_utf8(record.to_vec()).unwrap();
        assert!(text.contains("second"), "{text}");
        log.insert(key, text.replace("second", "sec0nd").as_bytes())
            .unwrap();
        db.flush().unwrap();
    }
    let mut settings = crate::common::app::settings_for(dir.path());
    settings.sse_heartbeat_secs = 1;
    let app = crate::common::app::spawn_with(settings, dir).await;
    let report: Value = app.get("/v1/audit/verify").await.json().await.unwrap();
    assert_eq!(report["status"], "broken", "{report}");
    assert_eq!(report["first_broken_seq"], 2, "{report}");
    assert_eq!(report["head_seq"], 1);
    assert!(
        report["problem"].as_str().unwrap().contains("changed"),
        "{report}"
    );

    // The CLI reaches the running app through its control socket and says the same.
    let out = Command::new(env!("CARGO_BIN_EXE_ferry"))
        .args(["audit", "verify", "--data-dir"])
        .arg(app.path())
        .env("FERRY_CONFIG", "/dev/null")
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert_eq!(
        out.status.code(),
        Some(1),
        "{stdout}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(stdout.contains("BROKEN at seq 2"), "{stdout}");

    // And on its own, with nobody holding the data dir.
    // The stopped app's last handles on the store (event streams, tasks winding down) may
    // hold sled's lock a moment longer on a loaded machine: `ferry audit verify` then says the
    // data dir is held, and is asked again.
    let (_, dir) = app.stop().await;
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(20);
    let report: Value = loop {
        let out = Command::new(env!("CARGO_BIN_EXE_ferry"))
            .args(["audit", "verify", "--json", "--data-dir"])
            .arg(dir.path())
            .env("FERRY_CONFIG", "/dev/null")
            .output()
            .unwrap();
        match serde_json::from_slice(&out.stdout) {
            Ok(report) => break report,
            Err(_) if std::time::Instant::now() < deadline => {
                tokio::time::sleep(std::time::Duration::from_millis(200)).await
            }
            Err(e) => panic!(
                "--json prints the report ({e}); stdout {:?}, stderr {:?}",
                String::from_utf8_lossy(&out.stdout),
                String::from_utf8_lossy(&out.stderr)
            ),
        }
    };
    assert_eq!(report["first_broken_seq"], 2, "{report}");
}
