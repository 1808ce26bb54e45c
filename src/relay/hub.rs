//! One replication listener per Ferry process (per bind address), shared by every relay job.
//!
//! A fixed, configured port is what firewalls want, and several relay jobs may run at once, so
//! jobs do not bind ports of their own: they [`RelayHub::register`] the password their target will
//! authenticate with, and the hub hands each authenticated target's `PSYNC` to the job that
//! registered its password. The listener is bound on first use and kept for the life of the
//! hub, so the advertised port stays the same across the jobs of one process.

use std::collections::HashMap;
use std::net::{IpAddr, SocketAddr};
use std::sync::{Arc, Mutex};

use serde::{Deserialize, Serialize};
use tokio::net::TcpListener;
use tokio::sync::mpsc;
use tokio::task::JoinHandle;

use super::session::TargetSession;
use super::RelayError;

/// `[relay]` in the config: where Ferry listens for targets, and what it tells them.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct RelaySettings {
    /// `ip:port` to listen on; port 0 picks a free port when the first relay starts.
    pub bind: String,
    /// `host:port` (or just `host`, with the bound port) that targets are told to connect to
    /// (`REPLICAOF host port`). Needed when `bind` is a wildcard address or behind NAT.
    pub advertise: Option<String>,
}

impl Default for RelaySettings {
    fn default() -> Self {
        RelaySettings {
            bind: "127.0.0.1:0".to_string(),
            advertise: None,
        }
    }
}

impl RelaySettings {
    /// The host targets are told to connect to, when it can be known before binding (for
    /// validation: a loopback address is no use to a target on another host).
    pub fn advertised_host(&self) -> Option<String> {
        match &self.advertise {
            Some(a) => split_host_port(a).ok().map(|(host, _)| host),
            None => {
                let addr: SocketAddr = self.bind.parse().ok()?;
                (!addr.ip().is_unspecified()).then(|| addr.ip().to_string())
            }
        }
    }
}

/// `host:port`, `[v6]:port` or `host` (port `None`).
fn split_host_port(text: &str) -> Result<(String, Option<u16>), RelayError> {
    let bad = || RelayError::BadAddress(text.to_string());
    let text = text.trim();
    if text.is_empty() {
        return Err(bad());
    }
    if let Some(rest) = text.strip_prefix('[') {
        let (host, tail) = rest.split_once(']').ok_or_else(bad)?;
        let port = match tail.strip_prefix(':') {
            Some(p) => Some(p.parse::<u16>().map_err(|_| bad())?),
            None if tail.is_empty() => None,
            None => return Err(bad()),
        };
        return Ok((host.to_string(), port));
    }
    match text.rsplit_once(':') {
        // More than one colon and no brackets: a bare IPv6 address.
        Some((host, _)) if host.contains(':') => Ok((text.to_string(), None)),
        Some((host, port)) => Ok((host.to_string(), Some(port.parse().map_err(|_| bad())?))),
        None => Ok((text.to_string(), None)),
    }
}

type Routes = Mutex<HashMap<String, mpsc::Sender<TargetSession>>>;

/// The shared listener. Cheap to clone through its `Arc`.
pub struct RelayHub {
    settings: RelaySettings,
    bound: tokio::sync::Mutex<Option<Bound>>,
    routes: Arc<Routes>,
}

impl std::fmt::Debug for RelayHub {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RelayHub")
            .field("settings", &self.settings)
            .finish_non_exhaustive()
    }
}

struct Bound {
    host: String,
    port: u16,
    accept: JoinHandle<()>,
}

impl Drop for Bound {
    fn drop(&mut self) {
        self.accept.abort();
    }
}

impl RelayHub {
    pub fn new(settings: RelaySettings) -> Arc<RelayHub> {
        Arc::new(RelayHub {
            settings,
            bound: tokio::sync::Mutex::new(None),
            routes: Arc::new(Mutex::new(HashMap::new())),
        })
    }

    pub fn settings(&self) -> &RelaySettings {
        &self.settings
    }

    /// Routes targets that authenticate with `secret` to the returned registration. Binds the
    /// listener if this is the first registration of the hub.
    pub async fn register(&self, secret: &str) -> Result<Registration, RelayError> {
        let (host, port) = self.ensure_bound().await?;
        let (tx, rx) = mpsc::channel(4);
        {
            let mut routes = self.routes.lock().unwrap_or_else(|p| p.into_inner());
            if routes.contains_key(secret) {
                return Err(RelayError::SecretInUse);
            }
            routes.insert(secret.to_string(), tx);
        }
        Ok(Registration {
            host,
            port,
            sessions: rx,
            routes: self.routes.clone(),
            secret: secret.to_string(),
        })
    }

    async fn ensure_bound(&self) -> Result<(String, u16), RelayError> {
        let mut bound = self.bound.lock().await;
        if let Some(b) = bound.as_ref() {
            return Ok((b.host.clone(), b.port));
        }
        let addr: SocketAddr = self
            .settings
            .bind
            .parse()
            .map_err(|_| RelayError::BadAddress(self.settings.bind.clone()))?;
        let listener = TcpListener::bind(addr)
            .await
            .map_err(|e| RelayError::Bind {
                addr: self.settings.bind.clone(),
                reason: e.to_string(),
            })?;
        let local = listener.local_addr()?;
        let (host, port) = match &self.settings.advertise {
            Some(text) => {
                let (host, port) = split_host_port(text)?;
                (host, port.unwrap_or(local.port()))
            }
            None if local.ip().is_unspecified() => {
                return Err(RelayError::NoAdvertise {
                    bind: self.settings.bind.clone(),
                })
            }
            None => (show_ip(local.ip()), local.port()),
        };
        tracing::info!(%local, advertised = %format!("{host}:{port}"), "relay listener bound");
        let accept = tokio::spawn(accept_loop(listener, self.routes.clone()));
        *bound = Some(Bound {
            host: host.clone(),
            port,
            accept,
        });
        Ok((host, port))
    }
}

fn show_ip(ip: IpAddr) -> String {
    ip.to_string()
}

async fn accept_loop(listener: TcpListener, routes: Arc<Routes>) {
    loop {
        match listener.accept().await {
            Ok((stream, peer)) => {
                let routes = routes.clone();
                tokio::spawn(async move {
                    let route = |secret: &str| {
                        routes
                            .lock()
                            .unwrap_or_else(|p| p.into_inner())
                            .get(secret)
                            .cloned()
                    };
                    if let Err(e) = super::handshake::serve(stream, peer, route).await {
                        tracing::debug!(%peer, error = %e, "relay handshake ended");
                    }
                });
            }
            Err(e) => {
                // Out of file descriptors and the like: back off instead of spinning.
                tracing::warn!(error = %e, "relay listener: accept failed");
                tokio::time::sleep(std::time::Duration::from_millis(100)).await;
            }
        }
    }
}

/// A job's claim on the hub: the address to give the target, and the sessions of targets that
/// authenticated with the job's password. Dropping it removes the route.
pub struct Registration {
    pub host: String,
    pub port: u16,
    sessions: mpsc::Receiver<TargetSession>,
    routes: Arc<Routes>,
    secret: String,
}

impl Registration {
    /// The next target that connected and asked `PSYNC`. Cancel-safe.
    pub async fn next(&mut self) -> Option<TargetSession> {
        self.sessions.recv().await
    }
}

impl Drop for Registration {
    fn drop(&mut self) {
        self.routes
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .remove(&self.secret);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn addresses_split_into_host_and_optional_port() {
        let ok = |t: &str| split_host_port(t).unwrap();
        assert_eq!(ok("10.0.0.5:6390"), ("10.0.0.5".into(), Some(6390)));
        assert_eq!(ok("ferry.internal"), ("ferry.internal".into(), None));
        assert_eq!(ok("[::1]:7000"), ("::1".into(), Some(7000)));
        assert_eq!(ok("[::1]"), ("::1".into(), None));
        assert_eq!(ok("fe80::1"), ("fe80::1".into(), None));
        assert!(split_host_port("host:port").is_err());
        assert!(split_host_port("").is_err());
    }

    #[test]
    fn a_wildcard_bind_has_no_advertised_host_until_one_is_configured() {
        let mut s = RelaySettings {
            bind: "0.0.0.0:6390".into(),
            advertise: None,
        };
        assert_eq!(s.advertised_host(), None);
        s.advertise = Some("10.1.2.3".into());
        assert_eq!(s.advertised_host().as_deref(), Some("10.1.2.3"));
        assert_eq!(
            RelaySettings::default().advertised_host().as_deref(),
            Some("127.0.0.1")
        );
    }

    #[tokio::test]
    async fn a_password_routes_to_one_job_at_a_time() {
        let hub = RelayHub::new(RelaySettings::default());
        let first = hub.register("s3cret").await.unwrap();
        assert!(matches!(
            hub.register("s3cret").await,
            Err(RelayError::SecretInUse)
        ));
        let other = hub.register("other").await.unwrap();
        assert_eq!(first.port, other.port, "one listener for the whole hub");
        drop(first);
        hub.register("s3cret")
            .await
            .expect("free again once dropped");
    }
}
