//! Live event streams as Server-Sent Events: the whole log, or one migration's events.
//!
//! A stream first catches up from the log (everything after `Last-Event-ID`, or `?after=`, or
//! from the start), then follows the store's live feed; every event's SSE `id` is its `seq`, so a
//! client that reconnects with `Last-Event-ID` misses nothing and sees nothing twice. A comment
//! line goes out every heartbeat interval (15 s by default), so proxies keep the connection and
//! clients notice a dead one.
//!
//! **A slow client is dropped.** The live feed is a bounded broadcast ring that the store's
//! writer never waits on; a client whose connection drains slower than events arrive falls
//! behind the ring, and its stream then ends (after a comment that says so). Its reconnect
//! catches up from the log at its own pace. So no client can slow the engine or the store, and
//! none holds more than its socket's buffers.

use std::collections::VecDeque;
use std::sync::Arc;
use std::time::Duration;

use actix_web::http::header;
use actix_web::{get, web, HttpRequest, HttpResponse};
use bytes::Bytes;
use serde::Deserialize;
use tokio::sync::broadcast::error::RecvError;
use tokio_util::sync::CancellationToken;
use utoipa::IntoParams;
use uuid::Uuid;

use super::migrations::seq_after;
use super::problem::{ApiError, Problem};
use super::system::EventTypeName;
use crate::jobs::Jobs;
use crate::model::{AggregateType, Event, EventKind, EventWire};
use crate::store::Store;

/// Events read from the log per catch-up step.
const CATCH_UP_PAGE: usize = 500;

/// How the streams behave; from the settings.
#[derive(Debug, Clone)]
pub struct StreamSettings {
    pub heartbeat: Duration,
    /// Cancelled when the server stops, so that open streams end and release the store.
    pub shutdown: CancellationToken,
}

#[derive(Debug, Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct StreamQuery {
    /// Start after this `seq` (0: from the first event). Without it, and without
    /// `Last-Event-ID` (which wins when set), only events from now on are sent.
    #[param(minimum = 0)]
    pub after: Option<i64>,
    /// Only events of this type, e.g. `MigrationFailed`.
    #[serde(rename = "type")]
    #[param(rename = "type", value_type = Option<EventTypeName>)]
    pub kind: Option<String>,
}

/// Which events a stream carries.
#[derive(Debug, Clone)]
enum Filter {
    All(Option<&'static str>),
    Aggregate(Uuid, Option<&'static str>),
}

impl Filter {
    fn kind(&self) -> Option<&'static str> {
        match self {
            Filter::All(kind) | Filter::Aggregate(_, kind) => *kind,
        }
    }

    fn accepts(&self, event: &Event) -> bool {
        let kind_ok = self.kind().is_none_or(|k| event.kind.type_name() == k);
        match self {
            Filter::All(_) => kind_ok,
            Filter::Aggregate(id, _) => event.aggregate_id == *id && kind_ok,
        }
    }
}

/// Follow the whole event log, live (Server-Sent Events).
///
/// Each event is one SSE message: `id` is its `seq`, `data` the event as in `GET /v1/events`.
/// Starts with the events after `after` (`after=0`: the whole log), or, without it, with the
/// next event recorded. Reconnect with `Last-Event-ID` to continue where you stopped. A `: heartbeat` comment comes
/// every 15 s; a client that reads too slowly to keep up is disconnected and should reconnect.
#[utoipa::path(
    tag = "events",
    params(StreamQuery,
        ("Last-Event-ID" = Option<u64>, Header, description = "Continue after this `seq`")),
    responses(
        (status = 200, description = "An endless `text/event-stream`", content_type = "text/event-stream", body = String),
        (status = 400, description = "Bad `after`, `type` or `Last-Event-ID`", body = Problem, content_type = "application/problem+json"),
        (status = 401, body = Problem, content_type = "application/problem+json"),
    ),
)]
#[get("/events/stream")]
pub async fn all(
    jobs: web::Data<Jobs>,
    settings: web::Data<StreamSettings>,
    req: HttpRequest,
    query: web::Query<StreamQuery>,
) -> Result<HttpResponse, ApiError> {
    let after = start_after(&req, query.after, jobs.store())?;
    let filter = Filter::All(kind_of(query.kind.as_deref())?);
    Ok(sse(jobs.store().clone(), after, filter, &settings))
}

/// Follow one migration's events, live (Server-Sent Events).
///
/// As `GET /v1/events/stream`, for the events of this migration only.
#[utoipa::path(
    tag = "events",
    params(("id" = Uuid, Path, description = "Migration id"), StreamQuery,
        ("Last-Event-ID" = Option<u64>, Header, description = "Continue after this `seq`")),
    responses(
        (status = 200, description = "An endless `text/event-stream`", content_type = "text/event-stream", body = String),
        (status = 400, description = "Bad id, `after`, `type` or `Last-Event-ID`", body = Problem, content_type = "application/problem+json"),
        (status = 401, body = Problem, content_type = "application/problem+json"),
        (status = 404, body = Problem, content_type = "application/problem+json"),
    ),
)]
#[get("/migrations/{id}/events/stream")]
pub async fn migration(
    jobs: web::Data<Jobs>,
    settings: web::Data<StreamSettings>,
    req: HttpRequest,
    id: web::Path<Uuid>,
    query: web::Query<StreamQuery>,
) -> Result<HttpResponse, ApiError> {
    let after = start_after(&req, query.after, jobs.store())?;
    let kind = kind_of(query.kind.as_deref())?;
    // Refuses an unknown migration with 404 (and reads nothing).
    jobs.events(AggregateType::Migration, *id, u64::MAX, 1)
        .await?;
    let filter = Filter::Aggregate(*id, kind);
    Ok(sse(jobs.store().clone(), after, filter, &settings))
}

/// `Last-Event-ID` when present (a reconnect), else `?after=`, else now.
fn start_after(req: &HttpRequest, after: Option<i64>, store: &Store) -> Result<u64, ApiError> {
    match req.headers().get("Last-Event-ID") {
        Some(value) => value
            .to_str()
            .ok()
            .and_then(|v| v.trim().parse::<u64>().ok())
            .ok_or_else(|| {
                ApiError::invalid(
                    Some("Last-Event-ID".to_string()),
                    "Last-Event-ID must be the `seq` of the last event received (0 or more)",
                )
            }),
        None if after.is_none() => Ok(store.last_seq()),
        None => seq_after(after),
    }
}

fn kind_of(kind: Option<&str>) -> Result<Option<&'static str>, ApiError> {
    match kind {
        None => Ok(None),
        Some(kind) => EventKind::TYPE_NAMES
            .iter()
            .find(|k| **k == kind)
            .map(|k| Some(*k))
            .ok_or_else(|| {
                ApiError::invalid(
                    Some("type".to_string()),
                    format!(
                        "unknown event type `{kind}`; one of: {}",
                        EventKind::TYPE_NAMES.join(", ")
                    ),
                )
            }),
    }
}

fn sse(store: Store, after: u64, filter: Filter, settings: &StreamSettings) -> HttpResponse {
    let body = event_stream(
        store,
        after,
        filter,
        settings.heartbeat,
        settings.shutdown.clone(),
    );
    HttpResponse::Ok()
        .insert_header((header::CONTENT_TYPE, "text/event-stream"))
        .insert_header((header::CACHE_CONTROL, "no-cache"))
        // Tells nginx-like proxies not to buffer the stream.
        .insert_header(("X-Accel-Buffering", "no"))
        .streaming(body)
}

/// One SSE message for `event`.
fn message(event: &Event) -> Bytes {
    let data = serde_json::to_string(&EventWire::from(event)).unwrap_or_else(|_| "{}".into());
    Bytes::from(format!("id: {}\ndata: {data}\n\n", event.seq))
}

struct Follower {
    store: Store,
    live: tokio::sync::broadcast::Receiver<Arc<Event>>,
    filter: Filter,
    /// The last `seq` looked at (sent or filtered out).
    last: u64,
    /// Read from the log, not yet sent.
    pending: VecDeque<Event>,
    /// Whether the log has been read up to the live feed.
    caught_up: bool,
    heartbeat: tokio::time::Interval,
    shutdown: CancellationToken,
    /// Set once the stream has said its last word.
    ended: bool,
}

/// The stream: catch up from the log, then follow the live feed (see the module docs).
fn event_stream(
    store: Store,
    after: u64,
    filter: Filter,
    heartbeat: Duration,
    shutdown: CancellationToken,
) -> impl futures::Stream<Item = Result<Bytes, actix_web::Error>> + 'static {
    // Subscribed before the catch-up: what arrives meanwhile waits in the feed, and the `seq`
    // check skips what the log already gave.
    let live = store.subscribe();
    let mut interval = tokio::time::interval_at(tokio::time::Instant::now() + heartbeat, heartbeat);
    interval.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let follower = Follower {
        store,
        live,
        filter,
        last: after,
        pending: VecDeque::new(),
        caught_up: false,
        heartbeat: interval,
        shutdown,
        ended: false,
    };
    // Browsers' EventSource retries after `retry` ms.
    let hello = futures::stream::once(async {
        Ok::<_, actix_web::Error>(Bytes::from_static(b"retry: 2000\n\n"))
    });
    let events = futures::stream::unfold(follower, |mut f| async move {
        let chunk = f.next_chunk().await?;
        Some((Ok(chunk), f))
    });
    futures::StreamExt::chain(hello, events)
}

impl Follower {
    /// The next bytes to send, or `None` when the stream ends.
    async fn next_chunk(&mut self) -> Option<Bytes> {
        if self.ended {
            return None;
        }
        loop {
            if let Some(event) = self.pending.pop_front() {
                return Some(message(&event));
            }
            if !self.caught_up {
                match self.read_log().await {
                    Ok(()) => continue,
                    Err(e) => {
                        tracing::warn!(error = %e, "an event stream could not read the log");
                        self.ended = true;
                        return Some(Bytes::from_static(
                            b": the event log could not be read; reconnect\n\n",
                        ));
                    }
                }
            }
            tokio::select! {
                received = self.live.recv() => match received {
                    Ok(event) => {
                        if event.seq <= self.last {
                            continue;
                        }
                        if event.seq > self.last + 1 {
                            // Not seen live (or, for one migration, other events between): the
                            // log holds everything up to this durable event, so read it there.
                            self.caught_up = false;
                            while !self.caught_up {
                                if let Err(e) = self.read_log().await {
                                    tracing::warn!(error = %e, "an event stream could not read the log");
                                    self.ended = true;
                                    return Some(Bytes::from_static(
                                        b": the event log could not be read; reconnect\n\n",
                                    ));
                                }
                            }
                            self.last = self.last.max(event.seq);
                            continue;
                        }
                        self.last = event.seq;
                        if self.filter.accepts(&event) {
                            return Some(message(&event));
                        }
                    }
                    Err(RecvError::Lagged(missed)) => {
                        tracing::info!(missed, "dropping a slow event-stream client");
                        self.ended = true;
                        return Some(Bytes::from(format!(
                            ": too slow: {missed} events behind the live feed; reconnect with \
                             Last-Event-ID {}\n\n",
                            self.last
                        )));
                    }
                    Err(RecvError::Closed) => return None,
                },
                _ = self.heartbeat.tick() => return Some(Bytes::from_static(b": heartbeat\n\n")),
                _ = self.shutdown.cancelled() => return None,
            }
        }
    }

    /// Reads the next page of the log after `last` into `pending`; marks the stream caught up
    /// when the log has nothing more.
    async fn read_log(&mut self) -> Result<(), crate::store::StoreError> {
        let page = match &self.filter {
            Filter::All(kind) => {
                // The type filter applies after the page is read, so `last` advances over
                // events of other types too.
                let page = self
                    .store
                    .events_after(self.last, CATCH_UP_PAGE, None)
                    .await?;
                if let Some(kind) = kind {
                    let last = page.last().map(|e| e.seq);
                    let kept = page
                        .into_iter()
                        .filter(|e| e.kind.type_name() == *kind)
                        .collect::<Vec<_>>();
                    if let Some(last) = last {
                        self.last = last;
                    }
                    self.pending.extend(kept);
                    if last.is_none() {
                        self.caught_up = true;
                    }
                    return Ok(());
                }
                page
            }
            Filter::Aggregate(id, _) => {
                self.store
                    .aggregate_events(*id, self.last, CATCH_UP_PAGE)
                    .await?
            }
        };
        let Some(last) = page.last().map(|e| e.seq) else {
            self.caught_up = true;
            return Ok(());
        };
        self.last = last;
        let filter = self.filter.clone();
        self.pending
            .extend(page.into_iter().filter(|e| filter.accepts(e)));
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use futures::StreamExt;

    use super::*;
    use crate::store::NewEvent;

    fn checkpoint(i: i64) -> EventKind {
        EventKind::Checkpoint {
            replid: "r".into(),
            applied_offset: i,
            commands_streamed: 0,
            lag_bytes: None,
            bytes_streamed: None,
        }
    }

    /// A client that does not read while the log grows past the live feed's capacity is dropped
    /// (with a comment that says how to resume); the writer never waited for it.
    #[tokio::test]
    async fn a_client_that_falls_behind_the_live_feed_is_dropped() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path()).unwrap();
        let id = Uuid::now_v7();
        let stream = event_stream(
            store.clone(),
            0,
            Filter::All(None),
            Duration::from_secs(60),
            CancellationToken::new(),
        );
        let total = crate::store::LIVE_CAPACITY as i64 + 2000;
        let started = std::time::Instant::now();
        for start in (0..total).step_by(1000) {
            let batch = (start..(start + 1000).min(total))
                .map(|i| NewEvent::migration(id, "engine", checkpoint(i)))
                .collect();
            store.append(batch).await.unwrap();
        }
        let appended_in = started.elapsed();
        let chunks: Vec<Bytes> = stream.map(|c| c.unwrap()).collect().await;
        let last = String::from_utf8_lossy(chunks.last().unwrap()).into_owned();
        assert!(last.starts_with(": too slow"), "{last}");
        assert!(last.contains("Last-Event-ID"), "{last}");
        assert!(chunks.len() > 2, "it caught up from the log first");
        assert!(appended_in < Duration::from_secs(60));
    }

    /// A stream that keeps up gets every event once, in order, from the log and then live.
    #[tokio::test]
    async fn a_reader_that_keeps_up_sees_every_event_once_in_order() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path()).unwrap();
        let (a, b) = (Uuid::now_v7(), Uuid::now_v7());
        for i in 0..10 {
            let who = if i % 2 == 0 { a } else { b };
            store
                .append_one(NewEvent::migration(who, "api", checkpoint(i)))
                .await
                .unwrap();
        }
        let shutdown = CancellationToken::new();
        let mut stream = Box::pin(event_stream(
            store.clone(),
            3,
            Filter::Aggregate(a, None),
            Duration::from_secs(60),
            shutdown.clone(),
        ));
        let writer = {
            let store = store.clone();
            tokio::spawn(async move {
                for i in 10..20 {
                    let who = if i % 2 == 0 { a } else { b };
                    store
                        .append_one(NewEvent::migration(who, "api", checkpoint(i)))
                        .await
                        .unwrap();
                }
            })
        };
        let mut ids = Vec::new();
        while ids.len() < 8 {
            let chunk = stream.next().await.unwrap().unwrap();
            let text = String::from_utf8_lossy(&chunk).into_owned();
            if let Some(id) = text.strip_prefix("id: ") {
                ids.push(id.split('\n').next().unwrap().parse::<u64>().unwrap());
            }
        }
        writer.await.unwrap();
        // a's events are the odd seqs (1, 3, …); after 3: 5, 7, 9, then live 11…19.
        assert_eq!(ids, [5, 7, 9, 11, 13, 15, 17, 19]);
        shutdown.cancel();
        assert!(
            stream.next().await.is_none(),
            "the shutdown ends the stream"
        );
    }
}
