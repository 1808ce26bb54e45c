//! The target lease on the wire: reading, taking, renewing and releasing `ferry:lease`.
//!
//! Every step that depends on what the key holds is a compare-and-set: `WATCH` the key, read it,
//! decide, then `MULTI … EXEC`, which the server aborts if the key changed in between. (`SET …
//! IFEQ` would do it in one command, but only from Redis 8.4; `WATCH` works on every version we
//! support, and needs no scripting permission.) The key is set with `PX`, so a lease whose
//! holder died expires by itself; the holder renews it every third of its lifetime
//! ([`LeaseKeeper`]).
//!
//! The decision who may write is not made here: [`acquire`] asks the caller's `decide` (in
//! production [`crate::aggregate::lease::decide`]) with what it found.
//!
//! On a Redis Cluster the lease is one key of the cluster, on the master serving its slot
//! ([`super::cluster::key_peer`]): every Ferry about to write to any master checks that one key.
//! The keeper asks again at every reconnect, so a failover of that master is followed (the old
//! master, now a replica, answers `MOVED` to the new one).

use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

use super::{ClientError, Conn};
use crate::model::{LeaseHolder, LeaseOwner, LeaseVerdict, LEASE_KEY};
use crate::resp::Frame;
use crate::transport::Peer;

/// How long a lease lives without renewal: a dead Ferry's lease is gone after this.
pub const LEASE_TTL: Duration = Duration::from_secs(15);

/// How long one lease call may take before it counts as failed.
const CALL_TIMEOUT: Duration = Duration::from_secs(10);

/// Attempts of a compare-and-set that keeps losing the race (someone changing the key each time).
const ATTEMPTS: usize = 5;

/// A held lease: the value written, and its lifetime.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LeaseToken {
    pub owner: LeaseOwner,
    pub value: String,
    pub ttl: Duration,
}

impl LeaseToken {
    pub fn new(owner: LeaseOwner, ttl: Duration) -> LeaseToken {
        LeaseToken {
            value: owner.value(),
            owner,
            ttl,
        }
    }

    /// `SET ferry:lease <value> PX <ttl>`: the command that (re)writes this lease, for a caller
    /// that must put it back in the same transaction as a flush that removes it.
    pub fn set_command(&self) -> Vec<Vec<u8>> {
        vec![
            b"SET".to_vec(),
            LEASE_KEY.as_bytes().to_vec(),
            self.value.as_bytes().to_vec(),
            b"PX".to_vec(),
            self.ttl.as_millis().to_string().into_bytes(),
        ]
    }
}

/// Why a lease was not taken or not kept.
#[derive(Debug, thiserror::Error)]
pub enum LeaseError {
    #[error("the target is in use by {0}")]
    Refused(LeaseHolder),
    #[error("the target's lease was taken by {0}")]
    Lost(LeaseHolder),
    #[error("the lease of the target could not be settled: {0}")]
    Contended(String),
    #[error(transparent)]
    Client(#[from] ClientError),
}

/// A lease taken: the token, and what it replaced.
#[derive(Debug, Clone)]
pub struct Granted {
    pub token: LeaseToken,
    /// Set when `force` took over someone else's lease.
    pub took_over: Option<LeaseHolder>,
    /// The writer held it already (a restarted Ferry).
    pub kept: bool,
}

fn key() -> &'static [u8] {
    LEASE_KEY.as_bytes()
}

/// What the key holds now (`None`: nobody). Leaves the connection in db 0.
pub async fn read(conn: &mut Conn) -> Result<Option<LeaseHolder>, ClientError> {
    conn.select(0).await?;
    let replies = conn
        .call_many(&[
            vec![b"GET".as_slice(), key()],
            vec![b"PTTL".as_slice(), key()],
        ])
        .await?;
    let value = match replies.first() {
        Some(Frame::Bulk(v)) => String::from_utf8_lossy(v).into_owned(),
        Some(Frame::Error(e)) => {
            return Err(ClientError::Refused {
                addr: conn.addr().to_string(),
                command: "GET".into(),
                reply: String::from_utf8_lossy(e).into_owned(),
            })
        }
        _ => return Ok(None),
    };
    let expires_in_ms = replies.get(1).and_then(Frame::as_int).filter(|ms| *ms >= 0);
    Ok(Some(LeaseHolder {
        owner: LeaseOwner::parse(&value),
        raw: value,
        expires_in_ms,
    }))
}

/// `WATCH` + read.
async fn watch(conn: &mut Conn) -> Result<Option<LeaseHolder>, ClientError> {
    conn.select(0).await?;
    conn.call_ok(&[b"WATCH".as_slice(), key()]).await?;
    read(conn).await
}

/// Runs `commands` in `MULTI … EXEC`; `false` when the watched key changed (EXEC aborted).
async fn transact(conn: &mut Conn, commands: Vec<Vec<Vec<u8>>>) -> Result<bool, ClientError> {
    let mut all: Vec<Vec<Vec<u8>>> = vec![vec![b"MULTI".to_vec()]];
    let n = commands.len();
    all.extend(commands);
    all.push(vec![b"EXEC".to_vec()]);
    let replies = conn.call_many(&all).await?;
    if let Some(Frame::Error(e)) = replies.iter().find(|r| r.as_error().is_some()) {
        return Err(ClientError::Refused {
            addr: conn.addr().to_string(),
            command: "MULTI".into(),
            reply: String::from_utf8_lossy(e).into_owned(),
        });
    }
    match replies.get(n + 1) {
        Some(Frame::Array(results)) => {
            if let Some(e) = results.iter().find_map(Frame::as_error) {
                return Err(ClientError::Refused {
                    addr: conn.addr().to_string(),
                    command: "EXEC".into(),
                    reply: String::from_utf8_lossy(e).into_owned(),
                });
            }
            Ok(true)
        }
        _ => Ok(false),
    }
}

/// Takes the lease for `token.owner` if `decide` allows it, as one compare-and-set.
pub async fn acquire(
    conn: &mut Conn,
    token: &LeaseToken,
    decide: impl Fn(Option<&LeaseHolder>) -> LeaseVerdict,
) -> Result<Granted, LeaseError> {
    conn.set_call_timeout(CALL_TIMEOUT);
    for _ in 0..ATTEMPTS {
        let found = watch(conn).await?;
        let verdict = decide(found.as_ref());
        if verdict == LeaseVerdict::Refuse {
            conn.call(&["UNWATCH"]).await?;
            let holder = found.unwrap_or_else(|| LeaseHolder {
                owner: None,
                raw: String::new(),
                expires_in_ms: None,
            });
            return Err(LeaseError::Refused(holder));
        }
        if transact(conn, vec![token.set_command()]).await? {
            return Ok(Granted {
                token: token.clone(),
                took_over: (verdict == LeaseVerdict::TakeOver)
                    .then_some(found)
                    .flatten(),
                kept: verdict == LeaseVerdict::Keep,
            });
        }
    }
    Err(LeaseError::Contended(format!(
        "`{LEASE_KEY}` changed under every one of {ATTEMPTS} attempts to take it"
    )))
}

/// Renews a held lease. A lease that vanished (the target restarted without persistence, or was
/// flushed by someone) is taken again if nobody else took it; one that someone else holds is lost.
pub async fn renew(conn: &mut Conn, token: &LeaseToken) -> Result<(), LeaseError> {
    conn.set_call_timeout(CALL_TIMEOUT);
    for _ in 0..ATTEMPTS {
        let found = watch(conn).await?;
        match found {
            Some(holder) if holder.raw != token.value => {
                conn.call(&["UNWATCH"]).await?;
                return Err(LeaseError::Lost(holder));
            }
            Some(_) => {
                let ttl = token.ttl.as_millis().to_string().into_bytes();
                let pexpire = vec![b"PEXPIRE".to_vec(), key().to_vec(), ttl];
                if transact(conn, vec![pexpire]).await? {
                    return Ok(());
                }
            }
            None => {
                if transact(conn, vec![token.set_command()]).await? {
                    return Ok(());
                }
            }
        }
    }
    Err(LeaseError::Contended(format!(
        "`{LEASE_KEY}` changed under every one of {ATTEMPTS} attempts to renew it"
    )))
}

/// Deletes the lease if it is still this one's. Whether it was.
pub async fn release(conn: &mut Conn, token: &LeaseToken) -> Result<bool, ClientError> {
    conn.set_call_timeout(CALL_TIMEOUT);
    for _ in 0..ATTEMPTS {
        let found = watch(conn).await?;
        if found.as_ref().map(|h| h.raw.as_str()) != Some(token.value.as_str()) {
            conn.call(&["UNWATCH"]).await?;
            return Ok(false);
        }
        if transact(conn, vec![vec![b"DEL".to_vec(), key().to_vec()]]).await? {
            return Ok(true);
        }
    }
    Ok(false)
}

/// Keeps a lease alive in a task of its own until it is released, and says when it was lost.
///
/// Dropping the keeper stops the renewals without deleting the key, exactly like a crash: the
/// lease then lapses by itself within its lifetime. That is what a shutdown wants (a restarted
/// Ferry keeps its own lease); every end of a job calls [`LeaseKeeper::release`] instead.
pub struct LeaseKeeper {
    url: Peer,
    token: LeaseToken,
    task: JoinHandle<()>,
    lost: CancellationToken,
    why: Arc<Mutex<Option<String>>>,
}

impl LeaseKeeper {
    /// Starts renewing `token` on `url` every third of its lifetime.
    pub fn spawn(url: Peer, token: LeaseToken) -> LeaseKeeper {
        let lost = CancellationToken::new();
        let why: Arc<Mutex<Option<String>>> = Arc::default();
        let task = tokio::spawn(keep(url.clone(), token.clone(), lost.clone(), why.clone()));
        LeaseKeeper {
            url,
            token,
            task,
            lost,
            why,
        }
    }

    pub fn token(&self) -> &LeaseToken {
        &self.token
    }

    /// Waits until the lease is lost; returns why (naming who holds it now).
    pub async fn lost(&self) -> String {
        self.lost.cancelled().await;
        self.why
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
            .unwrap_or_else(|| "the target's lease was lost".into())
    }

    /// Stops renewing and deletes the key if it is still ours (best effort: a key we cannot
    /// delete expires by itself).
    pub async fn release(self) {
        self.task.abort();
        let attempt = async {
            let mut conn = connect_holder(&self.url).await?;
            release(&mut conn, &self.token).await.ok()
        };
        if tokio::time::timeout(CALL_TIMEOUT, attempt)
            .await
            .ok()
            .flatten()
            .is_none()
        {
            tracing::warn!(target = %self.url.url(), "could not release the target's lease; it expires by itself");
        }
    }
}

impl Drop for LeaseKeeper {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// A connection to the node holding the lease behind `url` (itself, or on a cluster the master
/// its `MOVED` names).
async fn connect_holder(url: &Peer) -> Option<Conn> {
    let holder = super::cluster::key_peer(url, LEASE_KEY.as_bytes())
        .await
        .unwrap_or_else(|_| url.clone());
    Conn::connect(&holder).await.ok()
}

async fn keep(
    url: Peer,
    token: LeaseToken,
    lost: CancellationToken,
    why: Arc<Mutex<Option<String>>>,
) {
    let every = token.ttl / 3;
    let mut conn: Option<Conn> = None;
    loop {
        tokio::time::sleep(every).await;
        if conn.is_none() {
            conn = connect_holder(&url).await;
        }
        let Some(c) = conn.as_mut() else {
            tracing::warn!(target = %url.url(), "cannot reach the target to renew its lease; retrying");
            continue;
        };
        match renew(c, &token).await {
            Ok(()) => {}
            Err(LeaseError::Lost(holder)) => {
                *why.lock().unwrap_or_else(|p| p.into_inner()) = Some(format!(
                    "the target's lease was taken by {holder}; this writer stopped"
                ));
                lost.cancel();
                return;
            }
            Err(e) => {
                tracing::warn!(target = %url.url(), error = %e, "renewing the target's lease failed; retrying");
                conn = None;
            }
        }
    }
}
