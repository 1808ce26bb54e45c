//! Admin connections for validation: the shared [`Conn`], a time budget on everything, and call
//! failures classified for the report.
//!
//! Every await is bounded twice: a per-call timeout, and the budget of the whole gathering with one
//! server, because a server that accepts TCP but never answers (a stopped process, a black-holing
//! firewall) must cost us seconds, not the endpoint. Independent commands are sent as one pipeline
//! ([`Admin::call_many`]): one round trip, as the concurrent calls of a multiplexed client would be.
//!
//! Server error texts are not part of our contract and could quote arguments, so every text passed
//! on is scrubbed of the password ([`crate::client::scrub`]).

use std::time::{Duration, Instant};

use tokio::sync::Mutex;

use super::error::{CallError, ConnectError};
use crate::client::{scrub, ClientError, Conn};
use crate::redis_url::RedisUrl;
use crate::resp::Frame;
use crate::transport::{ConnectOptions as TransportOptions, Peer, TlsInfo};

/// A connected server, and what connecting taught us.
pub struct Admin {
    conn: Mutex<Conn>,
    url: RedisUrl,
    call_timeout: Duration,
    /// No call may run past this instant: the budget of the whole gathering, whatever the rounds.
    deadline: Instant,
    /// Round trip of the first PING, after the handshake.
    pub latency: Duration,
    /// What TLS negotiated, for a `rediss://` server.
    pub tls: Option<TlsInfo>,
}

/// How to connect: the time limits (TLS settings come with each server's [`Peer`]).
#[derive(Debug, Clone)]
pub struct ConnectOptions {
    /// For the whole handshake: TCP, TLS, AUTH and a first PING.
    pub connect_timeout: Duration,
    /// For each admin command afterwards.
    pub call_timeout: Duration,
    /// For everything with one server, connecting included: the calls of a server that answers,
    /// but slowly, share it, so several rounds of calls cannot add up past it.
    pub budget: Duration,
}

/// Connects, authenticates, PINGs and selects the URL's database within the connect timeout.
pub async fn connect(peer: &Peer, options: &ConnectOptions) -> Result<Admin, ConnectError> {
    let url = peer.url();
    let addr = url.addr();
    let deadline = Instant::now() + options.budget;
    let connect_timeout = options.connect_timeout.min(options.budget);
    let transport = TransportOptions { connect_timeout };
    let attempt = async {
        let mut conn = Conn::connect_with(peer, &transport, connect_timeout)
            .await
            .map_err(|e| connect_error(&addr, connect_timeout, e))?;
        let started = Instant::now();
        match conn.call(&["PING"]).await {
            Ok(Frame::Simple(_)) => {}
            Ok(Frame::Error(e)) => {
                let reason = String::from_utf8_lossy(&e).into_owned();
                return Err(
                    if reason.starts_with("NOAUTH") || reason.starts_with("WRONGPASS") {
                        ConnectError::Auth {
                            addr: addr.clone(),
                            reason,
                        }
                    } else {
                        ConnectError::Unreachable {
                            addr: addr.clone(),
                            reason: format!("PING was refused: {}", scrub(&reason, url)),
                        }
                    },
                );
            }
            Ok(other) => {
                return Err(ConnectError::NotRedis {
                    addr: addr.clone(),
                    detail: format!("PING answered {}", other.describe()),
                })
            }
            Err(e) => return Err(connect_error(&addr, connect_timeout, e)),
        }
        let latency = started.elapsed();
        if let Some(db) = url.db.filter(|db| *db != 0) {
            select_home_db(&mut conn, db, &addr).await?;
        }
        conn.set_call_timeout(options.call_timeout);
        let tls = conn.tls_info().cloned();
        Ok(Admin {
            tls,
            conn: Mutex::new(conn),
            url: url.clone(),
            call_timeout: options.call_timeout,
            deadline,
            latency,
        })
    };
    match tokio::time::timeout(connect_timeout, attempt).await {
        Ok(result) => result,
        Err(_) => Err(ConnectError::Timeout {
            addr,
            secs: connect_timeout.as_secs(),
        }),
    }
}

/// `SELECT db`, with a refusal said plainly: the database does not exist there.
async fn select_home_db(conn: &mut Conn, db: u32, addr: &str) -> Result<(), ConnectError> {
    let reply =
        conn.call(&["SELECT", &db.to_string()])
            .await
            .map_err(|e| ConnectError::Unreachable {
                addr: addr.to_string(),
                reason: e.to_string(),
            })?;
    let Frame::Error(e) = reply else {
        return Ok(());
    };
    let databases = match conn.call(&["CONFIG", "GET", "databases"]).await {
        Ok(Frame::Array(pair)) => pair.get(1).and_then(Frame::as_int),
        _ => None,
    };
    let has = databases.map_or(String::new(), |n| {
        format!(" (it has {n} databases, 0 to {})", n - 1)
    });
    Err(ConnectError::Unreachable {
        addr: addr.to_string(),
        reason: format!(
            "database {db} does not exist on that server{has}; fix the /db in the URL ({})",
            String::from_utf8_lossy(&e)
        ),
    })
}

fn connect_error(addr: &str, connect_timeout: Duration, e: ClientError) -> ConnectError {
    match e {
        ClientError::Connect(e) => e,
        ClientError::Timeout { .. } => ConnectError::Timeout {
            addr: addr.to_string(),
            secs: connect_timeout.as_secs(),
        },
        ClientError::NotRedis { addr, detail } => ConnectError::NotRedis { addr, detail },
        other => ConnectError::Unreachable {
            addr: addr.to_string(),
            reason: other.to_string(),
        },
    }
}

impl Admin {
    /// Runs one command under the call timeout and the budget. `label` names it in messages
    /// (e.g. `CONFIG GET`); an error reply is classified, not returned as a frame.
    pub async fn call(&self, label: &str, args: &[&[u8]]) -> Result<Frame, CallError> {
        let mut replies = self.call_many(&[(label, args.to_vec())]).await;
        replies.pop().unwrap_or_else(|| {
            Err(CallError::Unexpected {
                command: label.to_string(),
                detail: "no reply".into(),
            })
        })
    }

    /// Sends every command as one pipeline and classifies each reply. When the budget or a call
    /// timeout runs out, that command and every later one report the timeout.
    pub async fn call_many(
        &self,
        commands: &[(&str, Vec<&[u8]>)],
    ) -> Vec<Result<Frame, CallError>> {
        let limit = self
            .call_timeout
            .min(self.deadline.saturating_duration_since(Instant::now()));
        let timed_out = |label: &str| CallError::Timeout {
            command: label.to_string(),
            millis: limit.as_millis() as u64,
        };
        let mut conn = self.conn.lock().await;
        let args: Vec<Vec<&[u8]>> = commands.iter().map(|(_, a)| a.clone()).collect();
        let outcome = tokio::time::timeout(limit, conn.call_many(&args)).await;
        match outcome {
            Ok(Ok(frames)) => commands
                .iter()
                .zip(frames)
                .map(|((label, _), frame)| self.classify(label, frame))
                .collect(),
            Ok(Err(ClientError::Timeout { .. })) | Err(_) => commands
                .iter()
                .map(|(label, _)| Err(timed_out(label)))
                .collect(),
            Ok(Err(e)) => commands
                .iter()
                .map(|(label, _)| {
                    Err(CallError::Unexpected {
                        command: label.to_string(),
                        detail: scrub(&e.to_string(), &self.url),
                    })
                })
                .collect(),
        }
    }

    fn classify(&self, label: &str, frame: Frame) -> Result<Frame, CallError> {
        let Frame::Error(e) = frame else {
            return Ok(frame);
        };
        let command = label.to_string();
        let detail = scrub(&String::from_utf8_lossy(&e), &self.url);
        Err(
            if detail.starts_with("NOPERM") || detail.contains("NOPERM") {
                CallError::Denied { command, detail }
            } else if detail.contains("unknown command") {
                CallError::Unavailable { command }
            } else {
                CallError::Server { command, detail }
            },
        )
    }

    /// The user name the URL authenticates as (`default` when it names none), for `ACL DRYRUN`.
    /// What is left of the budget for one more call.
    pub fn remaining(&self) -> Duration {
        self.call_timeout
            .min(self.deadline.saturating_duration_since(Instant::now()))
    }

    /// What is left of the whole gathering's budget.
    pub fn budget_left(&self) -> Duration {
        self.deadline.saturating_duration_since(Instant::now())
    }

    /// The connection itself, for a conversation [`crate::client`] drives (cluster discovery);
    /// the caller bounds it with [`Admin::remaining`].
    pub async fn conn(&self) -> tokio::sync::MutexGuard<'_, Conn> {
        self.conn.lock().await
    }

    pub fn user(&self) -> &str {
        self.url.username.as_deref().unwrap_or("default")
    }
}
