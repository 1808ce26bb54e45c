//! The one launcher of the real `ferry` binary: `ferry serve` as a child process on a free port and
//! a temp data dir, driven over HTTP. `kill9` is a real crash (no shutdown path runs); `restart`
//! starts it again on the same data dir and port. Dropping it kills the process.

use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::Value;

use crate::common::redis::free_port;

/// Generous: a loaded 2-core machine runs several servers and a debug build here.
pub const READY_WAIT: Duration = Duration::from_secs(90);

/// `ferry serve` in a child process.
pub struct Ferry {
    child: Option<Child>,
    pub port: u16,
    pub data_dir: tempfile::TempDir,
    pub http: reqwest::Client,
    /// Extra environment (e.g. a token variable) passed at every start.
    env: Vec<(String, String)>,
    /// How many times the process was started.
    pub starts: u32,
}

impl Ferry {
    /// Starts `ferry serve` with no API token (it listens on loopback).
    pub async fn start() -> Ferry {
        Self::start_with(&[]).await
    }

    /// Starts `ferry serve` with extra environment variables.
    pub async fn start_with(env: &[(&str, &str)]) -> Ferry {
        let data_dir = tempfile::Builder::new()
            .prefix("ferry-bin-")
            .tempdir()
            .expect("temp data dir");
        let mut ferry = Ferry {
            child: None,
            port: free_port(),
            data_dir,
            http: reqwest::Client::builder()
                .timeout(Duration::from_secs(60))
                .build()
                .expect("http client"),
            env: env
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect(),
            starts: 0,
        };
        ferry.spawn().await;
        ferry
    }

    async fn spawn(&mut self) {
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(self.data_dir.path().join("ferry.log"))
            .expect("ferry log file");
        let child = Command::new(env!("CARGO_BIN_EXE_ferry"))
            .arg("serve")
            .current_dir(self.data_dir.path())
            .env("FERRY_CONFIG", "/dev/null")
            .env("FERRY_LISTEN", format!("127.0.0.1:{}", self.port))
            .env("FERRY_DATA_DIR", self.data_dir.path().join("data"))
            .env("RUST_LOG", "info")
            .envs(self.env.iter().map(|(k, v)| (k.as_str(), v.as_str())))
            .stdin(Stdio::null())
            .stdout(log.try_clone().expect("log handle"))
            .stderr(log)
            .spawn()
            .expect("spawn `ferry serve` (built by cargo for this test)");
        self.child = Some(child);
        self.starts += 1;
        let deadline = Instant::now() + READY_WAIT;
        loop {
            if let Ok(r) = self.http.get(self.url("/readyz")).send().await {
                if r.status().is_success() {
                    return;
                }
            }
            if let Some(Ok(Some(status))) = self.child.as_mut().map(|c| c.try_wait()) {
                panic!("ferry serve exited with {status}; log:\n{}", self.log());
            }
            assert!(
                Instant::now() < deadline,
                "ferry serve did not become ready; log:\n{}",
                self.log()
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// SIGKILL: nothing is flushed, nothing is recorded.
    pub fn kill9(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// A crash and a start on the same data dir and port.
    pub async fn restart(&mut self) {
        self.kill9();
        self.spawn().await;
    }

    /// The last 60 lines of the process's log.
    pub fn log(&self) -> String {
        let text =
            std::fs::read_to_string(self.data_dir.path().join("ferry.log")).unwrap_or_default();
        let tail: Vec<&str> = text.lines().rev().take(60).collect();
        tail.into_iter().rev().collect::<Vec<_>>().join("\n")
    }

    pub fn url(&self, path: &str) -> String {
        format!("http://127.0.0.1:{}{path}", self.port)
    }

    /// The data directory Ferry was given.
    pub fn data(&self) -> std::path::PathBuf {
        self.data_dir.path().join("data")
    }

    /// GET `path` as JSON, with its status.
    pub async fn get(&self, path: &str) -> (u16, Value) {
        let response = self
            .http
            .get(self.url(path))
            .send()
            .await
            .unwrap_or_else(|e| panic!("GET {path}: {e}\nferry log:\n{}", self.log()));
        let status = response.status().as_u16();
        (status, response.json().await.unwrap_or(Value::Null))
    }

    /// POST `path` (with a JSON body when given), with the answer's status and JSON.
    pub async fn post(&self, path: &str, body: Option<Value>) -> (u16, Value) {
        let mut request = self.http.post(self.url(path));
        if let Some(body) = body {
            request = request.json(&body);
        }
        let response = request
            .send()
            .await
            .unwrap_or_else(|e| panic!("POST {path}: {e}\nferry log:\n{}", self.log()));
        let status = response.status().as_u16();
        (status, response.json().await.unwrap_or(Value::Null))
    }
}

impl Drop for Ferry {
    fn drop(&mut self) {
        self.kill9();
    }
}
