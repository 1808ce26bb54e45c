//! The HA guard: Ferry slows down while the source's own replicas fall behind.
//!
//! A migration adds load to a production source: a replica link of its own, the snapshot's
//! fork and transfer, and the stream it follows. When another replica of the source (one that
//! keeps it highly available) lags beyond `replica_lag_secs`, the source or its network is
//! short of breath, and Ferry gives way: it halves its write rate (measured since the last
//! look), and halves it again at each look while the lag lasts, never below `min_ops_per_sec`
//! (`Throttled`, with the reason and the rate). Once every replica is back under the threshold,
//! the slowdown ends (`ThrottleLifted`).
//!
//! One case reverses the rule. Ferry's own link has an output buffer on the source, capped by
//! `client-output-buffer-limit replica`: what the source has produced and Ferry has not read
//! yet. Ferry reads no faster than it writes to the target, so slowing down fills that buffer,
//! and a full one makes the source drop Ferry, which must then copy a whole snapshot again: a
//! fork and a full transfer, far worse for the source than Ferry's writes. So when that buffer
//! reaches [`BUFFER_NEAR`] of its limit, the guard lifts its own slowdown and says so
//! (`SourceBufferNearLimit`, with what to change: a larger buffer limit, or a higher
//! `options.limits`). The user's own limits stay: they are a promise about the target's load,
//! and only the user may break it (`PATCH`).
//!
//! How it looks: `INFO replication` every `interval` (the `slaveN:` lines with `state=online`;
//! replicas that announce no listening port, `port=0`, are tools like Ferry itself, not HA
//! replicas) and `CLIENT LIST TYPE replica` for the `omem` of Ferry's own connection (found by
//! its address), against `CONFIG GET client-output-buffer-limit`. What the source refuses (an
//! ACL without `INFO`, `CLIENT` or `CONFIG`), the guard cannot see; it says so once
//! (`HaGuardBlind`) and keeps watching what it can.

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use super::rate::Throttle;
use super::Reporter;
use crate::client::{Config, Conn, Info};
use crate::model::EventKind;
use crate::resp::Frame;
use crate::transport::Peer;

/// Share of its output buffer limit at which Ferry's link counts as near it.
pub const BUFFER_NEAR: f64 = 0.7;

/// The guard's knobs (`[transfer]` in the configuration).
#[derive(Debug, Clone, Copy)]
pub struct GuardSettings {
    /// How often the guard looks at the source.
    pub interval: Duration,
    /// A replica whose `lag` exceeds this many seconds makes Ferry slow down; 0 turns the
    /// guard off.
    pub replica_lag_secs: u64,
    /// The guard never slows Ferry below this many commands a second.
    pub min_ops_per_sec: u64,
}

impl Default for GuardSettings {
    fn default() -> Self {
        GuardSettings {
            interval: Duration::from_secs(2),
            replica_lag_secs: 10,
            min_ops_per_sec: 100,
        }
    }
}

/// What one look at the source found.
#[derive(Debug, Clone, Default, PartialEq)]
pub(crate) struct Look {
    /// The most lagging HA replica: its address and lag in seconds.
    pub worst: Option<(String, u64)>,
    /// Ferry's own output buffer on the source and its limit, when known.
    pub buffer: Option<(u64, u64)>,
    /// Commands a second Ferry wrote since the last look.
    pub rate: u64,
}

/// The guard's memory between looks.
#[derive(Debug, Clone, Default)]
pub(crate) struct Guard {
    /// The cap it imposes now.
    cap: Option<u64>,
    /// It warned about the buffer since the buffer was last comfortable.
    warned: bool,
}

impl Guard {
    /// Decides from one look: the new cap, and what to record. Pure.
    pub fn step(
        &mut self,
        settings: &GuardSettings,
        look: &Look,
        user_ops: Option<u64>,
    ) -> Vec<EventKind> {
        let mut events = Vec::new();
        let near = look
            .buffer
            .filter(|(used, limit)| *limit > 0 && *used as f64 >= *limit as f64 * BUFFER_NEAR);
        if let Some((used, limit)) = near {
            if self.cap.take().is_some() {
                events.push(EventKind::ThrottleLifted {
                    reason: format!(
                        "Ferry's output buffer on the source is at {}% of its limit: slowing \
                         down further would make the source drop Ferry and copy a whole \
                         snapshot again",
                        used * 100 / limit
                    ),
                });
            }
            if !self.warned {
                self.warned = true;
                let advice = match user_ops {
                    Some(ops) => format!(
                        "raise options.limits (max_ops_per_sec is {ops}; PATCH it while the \
                         migration runs) or the source's client-output-buffer-limit replica"
                    ),
                    None => "raise the source's client-output-buffer-limit replica (or, with \
                             options.limits set, raise them)"
                        .into(),
                };
                events.push(EventKind::SourceBufferNearLimit {
                    used_bytes: used,
                    limit_bytes: limit,
                    advice: format!(
                        "the source may disconnect Ferry, which then copies a whole snapshot \
                         again: {advice}"
                    ),
                });
            }
            return events;
        }
        self.warned = false;
        match &look.worst {
            Some((replica, lag))
                if settings.replica_lag_secs > 0 && *lag > settings.replica_lag_secs =>
            {
                let from = self.cap.unwrap_or(look.rate.max(settings.min_ops_per_sec));
                let cap = (from / 2).max(settings.min_ops_per_sec);
                if self.cap != Some(cap) {
                    self.cap = Some(cap);
                    events.push(EventKind::Throttled {
                        reason: format!(
                            "replica {replica} of the source lags {lag} s (threshold {} s): \
                             Ferry halves its write rate",
                            settings.replica_lag_secs
                        ),
                        ops_per_sec: cap,
                    });
                }
            }
            _ => {
                if self.cap.take().is_some() {
                    events.push(EventKind::ThrottleLifted {
                        reason: format!(
                            "every replica of the source lags {} s or less again",
                            settings.replica_lag_secs
                        ),
                    });
                }
            }
        }
        events
    }

    pub fn cap(&self) -> Option<u64> {
        self.cap
    }
}

/// The most lagging online replica that announced a listening port (`slaveN:ip=…,port=…,
/// state=online,offset=…,lag=…`).
pub(crate) fn worst_replica(info: &Info) -> Option<(String, u64)> {
    (0..64)
        .map_while(|n| info.get(&format!("slave{n}")))
        .filter_map(|line| {
            let field = |name: &str| {
                line.split(',')
                    .find_map(|kv| kv.strip_prefix(name)?.strip_prefix('='))
            };
            let port = field("port")?;
            if port == "0" || field("state")? != "online" {
                return None;
            }
            let lag = field("lag")?.parse().ok()?;
            Some((format!("{}:{port}", field("ip")?), lag))
        })
        .max_by_key(|(_, lag)| *lag)
}

/// The `omem` of the client at `addr` in a `CLIENT LIST` answer.
pub(crate) fn output_memory(list: &str, addr: &str) -> Option<u64> {
    list.lines().find_map(|line| {
        let mut fields = line.split(' ');
        fields.clone().find(|f| *f == format!("addr={addr}"))?;
        fields.find_map(|f| f.strip_prefix("omem=")?.parse().ok())
    })
}

/// Runs the guard until dropped. `link_addr` is the address of Ferry's current replica link.
pub(crate) async fn watch(
    source: Peer,
    settings: GuardSettings,
    throttle: Arc<Throttle>,
    link_addr: Arc<Mutex<Option<std::net::SocketAddr>>>,
    reporter: Reporter,
) {
    if settings.replica_lag_secs == 0 {
        return;
    }
    let mut guard = Guard::default();
    let mut conn: Option<Conn> = None;
    let mut blind = false;
    let mut buffer_limit: Option<Option<u64>> = None;
    let (mut last_ops, _) = throttle.sent();
    let mut last_at = Instant::now();
    loop {
        tokio::time::sleep(settings.interval).await;
        let mut c = match conn.take() {
            Some(c) => c,
            None => match Conn::connect(&source).await {
                Ok(c) => c,
                // The engine's own links notice a source that is gone; look again later.
                Err(_) => continue,
            },
        };
        let (ops, _) = throttle.sent();
        let secs = last_at.elapsed().as_secs_f64().max(0.001);
        let rate = ((ops - last_ops) as f64 / secs) as u64;
        (last_ops, last_at) = (ops, Instant::now());
        let mut look = Look {
            rate,
            ..Look::default()
        };
        let mut trouble = Vec::new();
        match c.info("replication").await {
            Ok(info) => look.worst = worst_replica(&info),
            Err(e) if e.is_connect() => continue,
            Err(e) => trouble.push(format!("INFO replication: {e}")),
        }
        if buffer_limit.is_none() {
            buffer_limit = Some(match config_limit(&mut c).await {
                Ok(limit) => limit,
                Err(e) => {
                    trouble.push(e);
                    None
                }
            });
        }
        let addr = *link_addr.lock().unwrap_or_else(|p| p.into_inner());
        if let (Some(Some(limit)), Some(addr)) = (buffer_limit, addr) {
            match c.call(&["CLIENT", "LIST", "TYPE", "replica"]).await {
                Ok(Frame::Bulk(text)) => {
                    let used = output_memory(&String::from_utf8_lossy(&text), &addr.to_string());
                    look.buffer = used.map(|u| (u, limit));
                }
                Ok(Frame::Error(e)) => {
                    trouble.push(format!("CLIENT LIST: {}", String::from_utf8_lossy(&e)))
                }
                Ok(_) => {}
                Err(e) => trouble.push(format!("CLIENT LIST: {e}")),
            }
        }
        if !trouble.is_empty() && !blind {
            blind = true;
            let event = EventKind::HaGuardBlind {
                reason: format!(
                    "the source refused what the HA guard reads ({}); it watches only what it \
                     can see (grant INFO, CLIENT LIST and CONFIG GET to Ferry's user to let \
                     it see the rest)",
                    trouble.join("; ")
                ),
            };
            if reporter.emit(event).await.is_err() {
                return;
            }
        }
        conn = Some(c);
        let before = guard.cap();
        let events = guard.step(&settings, &look, throttle.user().max_ops_per_sec);
        if guard.cap() != before {
            throttle.set_guard(guard.cap());
        }
        for event in events {
            tracing::info!(event = event.type_name(), "HA guard");
            if reporter.emit(event).await.is_err() {
                return;
            }
        }
    }
}

/// Aborts the guard when its run ends, whichever way.
pub(super) struct GuardTask(tokio::task::JoinHandle<()>);

impl Drop for GuardTask {
    fn drop(&mut self) {
        self.0.abort();
    }
}

impl super::Run {
    /// Starts the HA guard of this run.
    pub(super) fn start_guard(&self) -> GuardTask {
        GuardTask(tokio::spawn(watch(
            self.source.clone(),
            self.tuning.ha_guard,
            self.throttle.clone(),
            self.link_addr.clone(),
            Reporter {
                events: self.events_for_guard.clone(),
            },
        )))
    }

    /// Remembers the replica link's local address, by which the guard finds Ferry's own
    /// connection on the source.
    pub(super) fn note_link(&self, link: &crate::replication::ReplicaLink) {
        *self.link_addr.lock().unwrap_or_else(|p| p.into_inner()) = link.local_addr();
    }
}

/// The byte limit of a replica's output buffer: the hard limit, or the soft one when it is
/// lower (a buffer over it for long enough is dropped too). `None`: unlimited.
async fn config_limit(conn: &mut Conn) -> Result<Option<u64>, String> {
    match conn
        .call(&["CONFIG", "GET", "client-output-buffer-limit"])
        .await
    {
        Ok(Frame::Array(items)) => {
            let config = Config::from_pairs(
                items
                    .iter()
                    .map(|f| {
                        f.as_bytes()
                            .map(|b| String::from_utf8_lossy(b).into_owned())
                            .unwrap_or_default()
                    })
                    .collect(),
            );
            let Some(limit) = config.replica_output_limit() else {
                return Ok(None);
            };
            let limits = [limit.hard_bytes, limit.soft_bytes];
            Ok(limits.into_iter().filter(|l| *l > 0).min())
        }
        Ok(Frame::Error(e)) => Err(format!(
            "CONFIG GET client-output-buffer-limit: {}",
            String::from_utf8_lossy(&e)
        )),
        Ok(_) => Ok(None),
        Err(e) => Err(format!("CONFIG GET client-output-buffer-limit: {e}")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn settings() -> GuardSettings {
        GuardSettings {
            interval: Duration::from_secs(2),
            replica_lag_secs: 10,
            min_ops_per_sec: 100,
        }
    }

    fn lagging(lag: u64, rate: u64) -> Look {
        Look {
            worst: Some(("10.0.0.2:6379".into(), lag)),
            buffer: None,
            rate,
        }
    }

    #[test]
    fn a_lagging_replica_halves_the_rate_down_to_the_floor_and_recovery_lifts_it() {
        let mut guard = Guard::default();
        let s = settings();
        assert!(guard.step(&s, &lagging(3, 5000), None).is_empty());
        let events = guard.step(&s, &lagging(12, 5000), None);
        assert!(
            matches!(&events[..], [EventKind::Throttled { ops_per_sec: 2500, reason }]
                if reason.contains("10.0.0.2:6379") && reason.contains("12 s")),
            "{events:?}"
        );
        guard.step(&s, &lagging(14, 2500), None);
        assert_eq!(guard.cap(), Some(1250));
        for _ in 0..10 {
            guard.step(&s, &lagging(20, 100), None);
        }
        assert_eq!(guard.cap(), Some(100), "never below the floor");
        assert!(
            guard.step(&s, &lagging(20, 100), None).is_empty(),
            "no news"
        );
        let events = guard.step(&s, &lagging(0, 100), None);
        assert!(matches!(&events[..], [EventKind::ThrottleLifted { .. }]));
        assert_eq!(guard.cap(), None);
    }

    #[test]
    fn a_buffer_near_its_limit_lifts_the_slowdown_and_warns_once() {
        let mut guard = Guard::default();
        let s = settings();
        guard.step(&s, &lagging(12, 5000), Some(3000));
        assert!(guard.cap().is_some());
        let near = Look {
            buffer: Some((80, 100)),
            ..lagging(12, 2000)
        };
        let events = guard.step(&s, &near, Some(3000));
        assert_eq!(guard.cap(), None);
        assert!(
            matches!(&events[..], [EventKind::ThrottleLifted { .. }, EventKind::SourceBufferNearLimit { advice, used_bytes: 80, limit_bytes: 100 }]
                if advice.contains("max_ops_per_sec is 3000")),
            "{events:?}"
        );
        assert!(guard.step(&s, &near, Some(3000)).is_empty(), "warned once");
    }

    #[test]
    fn the_replicas_are_read_from_info_and_ferry_like_ones_left_out() {
        let info = Info::parse(
            "# Replication\r\nrole:master\r\nconnected_slaves:3\r\n\
             slave0:ip=127.0.0.1,port=0,state=online,offset=10,lag=99\r\n\
             slave1:ip=10.0.0.2,port=6380,state=online,offset=10,lag=4\r\n\
             slave2:ip=10.0.0.3,port=6381,state=wait_bgsave,offset=0,lag=50\r\n",
        );
        assert_eq!(worst_replica(&info), Some(("10.0.0.2:6380".into(), 4)));
        let list = "id=3 addr=127.0.0.1:50000 laddr=127.0.0.1:6379 fd=8 name= omem=0 cmd=replconf\n\
                    id=4 addr=127.0.0.1:50001 laddr=127.0.0.1:6379 fd=9 name= omem=4096 cmd=psync\n";
        assert_eq!(output_memory(list, "127.0.0.1:50001"), Some(4096));
        assert_eq!(output_memory(list, "127.0.0.1:5000"), None);
    }
}
