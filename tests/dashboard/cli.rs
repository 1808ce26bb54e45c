//! `ferry migrate` as a person drives it, through the real binary: plain lines in a pipe, how to
//! cut over (and `ferry cutover` from another shell), Ctrl-C, a second process on the same data
//! dir, errors said once with the CLI's own flag names.

use std::io::{BufRead, BufReader};
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use crate::common::redis::RedisServer;

const WAIT: Duration = Duration::from_secs(90);

/// A running `ferry migrate`, its output collected as it comes.
struct Migrate {
    child: Child,
    stdout: Arc<Mutex<String>>,
    stderr: Arc<Mutex<String>>,
}

fn collect(stream: impl std::io::Read + Send + 'static) -> Arc<Mutex<String>> {
    let text = Arc::new(Mutex::new(String::new()));
    let sink = text.clone();
    std::thread::spawn(move || {
        for line in BufReader::new(stream).lines().map_while(Result::ok) {
            let mut all = sink.lock().unwrap();
            all.push_str(&line);
            all.push('\n');
        }
    });
    text
}

impl Migrate {
    fn start(data_dir: &std::path::Path, args: &[&str]) -> Migrate {
        let mut child = Command::new(env!("CARGO_BIN_EXE_ferry"))
            .arg("migrate")
            .args(args)
            .arg("--data-dir")
            .arg(data_dir)
            .env("FERRY_CONFIG", "/dev/null")
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("spawn ferry migrate");
        let stdout = collect(child.stdout.take().unwrap());
        let stderr = collect(child.stderr.take().unwrap());
        Migrate {
            child,
            stdout,
            stderr,
        }
    }

    fn output(&self) -> String {
        format!(
            "--- stdout\n{}--- stderr\n{}",
            self.stdout.lock().unwrap(),
            self.stderr.lock().unwrap()
        )
    }

    fn wait_for(&self, text: &str) {
        let deadline = Instant::now() + WAIT;
        while !self.stdout.lock().unwrap().contains(text) {
            assert!(
                Instant::now() < deadline,
                "no `{text}` within {WAIT:?}:\n{}",
                self.output()
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    fn id(&self) -> String {
        let out = self.stdout.lock().unwrap();
        let line = out
            .lines()
            .find(|l| l.starts_with("migration "))
            .expect("the first line names the migration");
        line["migration ".len()..]
            .split(':')
            .next()
            .unwrap()
            .to_string()
    }

    fn wait(mut self) -> (Option<i32>, String) {
        let deadline = Instant::now() + WAIT;
        loop {
            if let Some(status) = self.child.try_wait().unwrap() {
                std::thread::sleep(Duration::from_millis(200));
                return (status.code(), self.output());
            }
            assert!(
                Instant::now() < deadline,
                "ferry migrate did not end:\n{}",
                self.output()
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }
}

fn seed(server: &RedisServer, n: usize) {
    let mut pipe = redis::pipe();
    for i in 0..n {
        pipe.cmd("SET").arg(format!("key:{i}")).arg(i).ignore();
    }
    pipe.query::<()>(&mut server.conn()).unwrap();
}

fn ferry(args: &[&str], data_dir: &std::path::Path) -> std::process::Output {
    Command::new(env!("CARGO_BIN_EXE_ferry"))
        .args(args)
        .arg("--data-dir")
        .arg(data_dir)
        .env("FERRY_CONFIG", "/dev/null")
        .output()
        .unwrap()
}

#[test]
fn a_live_migration_says_how_to_cut_over_and_ferry_cutover_from_another_shell_does_it() {
    let source = RedisServer::start_with("7.2", &["--repl-diskless-sync-delay", "0"]);
    let target = RedisServer::start("7.2");
    seed(&source, 500);
    let dir = tempfile::tempdir().unwrap();
    let run = Migrate::start(
        dir.path(),
        &[
            "--source",
            &source.url(),
            "--target",
            &target.url(),
            "--mode",
            "live",
        ],
    );
    run.wait_for("To cut over");
    let id = run.id();
    let out = run.output();
    assert!(
        out.contains(&format!("ferry cutover {id} --data-dir")),
        "{out}"
    );
    assert!(out.contains("kill -USR1"), "{out}");
    assert!(!out.contains('\u{1b}'), "no ANSI codes in a pipe: {out}");
    assert!(out.contains("snapshot requested"), "{out}");

    // A second process on the same data dir is told at once that it is in use.
    let started = Instant::now();
    let second = ferry(
        &[
            "migrate",
            "--source",
            &source.url(),
            "--target",
            &target.url(),
        ],
        dir.path(),
    );
    let stderr = String::from_utf8_lossy(&second.stderr);
    assert!(!second.status.success());
    assert!(
        stderr.contains("is in use by another Ferry process"),
        "{stderr}"
    );
    assert!(
        stderr.contains("ferry migrate"),
        "names who holds it: {stderr}"
    );
    assert!(
        started.elapsed() < Duration::from_secs(5),
        "took {:?}",
        started.elapsed()
    );
    assert_eq!(stderr.matches("in use").count(), 1, "said once: {stderr}");

    let cut = ferry(&["cutover", &id], dir.path());
    assert!(
        cut.status.success(),
        "{}",
        String::from_utf8_lossy(&cut.stderr)
    );
    assert!(
        String::from_utf8_lossy(&cut.stdout).contains("cutting_over"),
        "{cut:?}"
    );
    let (code, out) = run.wait();
    assert_eq!(code, Some(0), "{out}");
    assert!(out.contains(&format!("migration {id} completed")), "{out}");
    assert!(out.contains("verification:"), "{out}");
}

#[test]
fn ctrl_c_cancels_cleanly_says_so_and_leaves_no_offset_key() {
    let source = RedisServer::start_with("7.2", &["--repl-diskless-sync-delay", "0"]);
    let target = RedisServer::start("7.2");
    seed(&source, 500);
    let dir = tempfile::tempdir().unwrap();
    let run = Migrate::start(
        dir.path(),
        &[
            "--source",
            &source.url(),
            "--target",
            &target.url(),
            "--mode",
            "live",
            "--no-backup",
            // The offset key is the restore path's (a relay's target is a replica, with none).
            "--transfer",
            "restore",
        ],
    );
    run.wait_for("To cut over");
    let id = run.id();
    let keys = target.cli(&["KEYS", "ferry:offset:*"]);
    assert!(
        keys.contains(&id),
        "the offset key is there while streaming: {keys}"
    );
    let kill = Command::new("kill")
        .args(["-INT", &run.child.id().to_string()])
        .status()
        .unwrap();
    assert!(kill.success());
    let (code, out) = run.wait();
    assert_eq!(code, Some(130), "{out}");
    assert!(out.contains(&format!("migration {id} cancelled")), "{out}");
    assert_eq!(out.matches("cancelled;").count(), 1, "said once: {out}");
    assert_eq!(
        target.cli(&["KEYS", "ferry:offset:*"]).trim(),
        "",
        "the offset key is gone"
    );

    // Recorded as cancelled: nothing resumes it later.
    let report = ferry(&["audit", "verify"], dir.path());
    assert!(report.status.success(), "{report:?}");
    let dump = Command::new(env!("CARGO_BIN_EXE_ferry"))
        .args(["cancel", &id, "--data-dir"])
        .arg(dir.path())
        .env("FERRY_CONFIG", "/dev/null")
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&dump.stderr);
    assert!(
        stderr.contains("cancelled"),
        "cancelling again is refused because it is cancelled: {stderr}"
    );
}

#[test]
fn a_failed_validation_is_said_once_with_the_cli_flag_names() {
    let source = RedisServer::start_with("7.2", &["--repl-diskless-sync-delay", "0"]);
    let target = RedisServer::start("7.2");
    seed(&source, 10);
    seed(&target, 10);
    let dir = tempfile::tempdir().unwrap();
    let out = ferry(
        &[
            "migrate",
            "--source",
            &source.url(),
            "--target",
            &target.url(),
        ],
        dir.path(),
    );
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success());
    assert!(stdout.contains("[FAIL] target.conflicts"), "{stdout}");
    assert!(
        stdout.contains("--on-conflict"),
        "the hint names the flag: {stdout}"
    );
    assert!(!stdout.contains(" on_conflict"), "{stdout}");
    assert_eq!(stderr.matches("validation failed").count(), 1, "{stderr}");
    assert_eq!(stderr.lines().count(), 1, "one error line: {stderr}");
}

#[test]
fn ferry_migrate_takes_the_rate_limits_as_flags() {
    let source = RedisServer::start_with("7.2", &["--repl-diskless-sync-delay", "0"]);
    let target = RedisServer::start("7.2");
    seed(&source, 3000);
    let dir = tempfile::tempdir().unwrap();
    let refused = ferry(
        &[
            "migrate",
            "--source",
            &source.url(),
            "--target",
            &target.url(),
            "--max-bytes-per-sec",
            "10",
        ],
        dir.path(),
    );
    assert_eq!(refused.status.code(), Some(2), "clap refuses it");
    assert!(String::from_utf8_lossy(&refused.stderr).contains("--max-bytes-per-sec"));

    let started = std::time::Instant::now();
    let out = ferry(
        &[
            "migrate",
            "--source",
            &source.url(),
            "--target",
            &target.url(),
            "--max-ops-per-sec",
            "1000",
            "--json",
        ],
        dir.path(),
    );
    let elapsed = started.elapsed();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{stdout}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        stdout.contains(r#""limits":{"max_bytes_per_sec":null,"max_ops_per_sec":1000}"#),
        "{stdout}"
    );
    assert!(
        stdout.contains(r#""transfer":"restore""#),
        "auto restores: {stdout}"
    );
    assert!(
        elapsed >= std::time::Duration::from_millis(2700),
        "3000 keys at 1000/s took {elapsed:?}"
    );
    assert_eq!(target.cli(&["DBSIZE"]).trim(), "3000");
}
