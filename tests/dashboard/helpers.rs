//! An SSE reader over reqwest, and an app with a short heartbeat.

use std::sync::Arc;
use std::time::{Duration, Instant};

use serde_json::Value;

use crate::common::app::{settings_for, spawn_with, TestApp};

/// The app, with a 1 s heartbeat so that tests see one quickly.
pub async fn app() -> TestApp {
    let dir = Arc::new(tempfile::tempdir().expect("temp data dir"));
    let mut settings = settings_for(dir.path());
    settings.sse_heartbeat_secs = 1;
    spawn_with(settings, dir).await
}

/// One SSE message (or comment).
#[derive(Debug, Clone, PartialEq)]
pub enum Message {
    Event { id: u64, data: Value },
    Comment(String),
    Retry(u64),
}

/// A Server-Sent Events stream, parsed as it arrives.
pub struct Sse {
    response: reqwest::Response,
    buffer: String,
}

impl Sse {
    /// Opens `path` on `app`, with `Last-Event-ID` when given.
    pub async fn open(app: &TestApp, path: &str, last_event_id: Option<&str>) -> Sse {
        let mut request = app
            .client
            .get(format!("{}{path}", app.address))
            .header("accept", "text/event-stream");
        if let Some(id) = last_event_id {
            request = request.header("Last-Event-ID", id);
        }
        if let Some(token) = &app.token {
            request = request.bearer_auth(token);
        }
        let response = request.send().await.expect("open the stream");
        assert_eq!(response.status(), 200, "{path}");
        let content_type = response.headers()["content-type"]
            .to_str()
            .unwrap()
            .to_string();
        assert_eq!(content_type, "text/event-stream", "{path}");
        Sse {
            response,
            buffer: String::new(),
        }
    }

    /// The next message, or `None` when the stream ended; panics after `timeout`.
    pub async fn next(&mut self, timeout: Duration) -> Option<Message> {
        let deadline = Instant::now() + timeout;
        loop {
            if let Some(end) = self.buffer.find("\n\n") {
                let block: String = self.buffer.drain(..end + 2).collect();
                return Some(parse(block.trim_end()));
            }
            let left = deadline.saturating_duration_since(Instant::now());
            let chunk = tokio::time::timeout(left, self.response.chunk())
                .await
                .unwrap_or_else(|_| {
                    panic!(
                        "no SSE message within {timeout:?}; buffered: {:?}",
                        self.buffer
                    )
                })
                .expect("read the stream");
            match chunk {
                Some(bytes) => self
                    .buffer
                    .push_str(std::str::from_utf8(&bytes).expect("UTF-8")),
                None => return None,
            }
        }
    }

    /// The next event (skipping comments and `retry`).
    pub async fn next_event(&mut self, timeout: Duration) -> (u64, Value) {
        loop {
            match self.next(timeout).await {
                Some(Message::Event { id, data }) => return (id, data),
                Some(_) => continue,
                None => panic!("the stream ended"),
            }
        }
    }
}

fn parse(block: &str) -> Message {
    let mut id = None;
    let mut data = Vec::new();
    for line in block.lines() {
        if let Some(comment) = line.strip_prefix(':') {
            return Message::Comment(comment.trim().to_string());
        }
        if let Some(retry) = line.strip_prefix("retry: ") {
            return Message::Retry(retry.parse().expect("retry ms"));
        }
        if let Some(value) = line.strip_prefix("id: ") {
            id = Some(value.parse::<u64>().expect("numeric id"));
        } else if let Some(value) = line.strip_prefix("data: ") {
            data.push(value.to_string());
        } else {
            panic!("unexpected SSE line {line:?}");
        }
    }
    Message::Event {
        id: id.expect("every event has an id"),
        data: serde_json::from_str(&data.join("\n")).expect("data is JSON"),
    }
}
