//! Real `redis-server` processes for tests, on free ports, cleaned up on drop.
//!
//! The binaries come from `scripts/install-redis.sh` (`target/redis/<version>/redis-server`, or
//! `$FERRY_REDIS_DIR/<version>/…`). A missing binary is a loud failure that says how to fix it:
//! a test that silently skips would prove nothing.
//!
//! `redis-server --port 0` would turn TCP off, so we pick a port ourselves: bind port 0 to learn a
//! free one, release it, start the server on it, and retry if another process grabbed it first.
#![allow(dead_code)]

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// Every server the suite covers, Redis oldest first, then Valkey (`valkey-<major.minor>`: the
/// directory under `target/redis/`, as `scripts/install-redis.sh` names it).
pub const VERSIONS: [&str; 6] = ["6.2", "7.0", "7.2", "7.4", "8.2", "valkey-9.1"];

/// The fork and release of one of [`VERSIONS`] (`valkey-9.1` is Valkey 9.1).
pub fn server_version(version: &str) -> ferry::rdb::version::ServerVersion {
    use ferry::rdb::version::{Fork, ServerVersion};
    let (fork, number) = match version.strip_prefix("valkey-") {
        Some(number) => (Fork::Valkey, number),
        None => (Fork::Redis, version),
    };
    let mut parts = number.split('.').map(|p| p.parse::<u32>().unwrap_or(0));
    let (major, minor) = (parts.next().unwrap_or(0), parts.next().unwrap_or(0));
    ServerVersion::new(fork, major, minor, 0)
}

/// The directory holding `<version>/redis-server`.
pub fn redis_dir() -> PathBuf {
    match std::env::var_os("FERRY_REDIS_DIR") {
        Some(dir) => PathBuf::from(dir),
        None => Path::new(env!("CARGO_MANIFEST_DIR")).join("target/redis"),
    }
}

/// Path of a version's executable (`redis-server`, `redis-cli`), or a panic that says how to get it.
pub fn binary(version: &str, name: &str) -> PathBuf {
    let path = redis_dir().join(version).join(name);
    if !path.exists() {
        panic!(
            "{name} {version} not found at {}: run `scripts/install-redis.sh` first \
             (the README's test command does this for you)",
            path.display()
        );
    }
    path
}

/// Directory of the Redis Stack module `.so` files (7.2 and 7.4 only).
pub fn modules_dir(version: &str) -> PathBuf {
    let dir = redis_dir().join(version).join("modules");
    assert!(
        dir.exists(),
        "modules for Redis {version} not found at {}: only 7.2 and 7.4 ship them; run scripts/install-redis.sh",
        dir.display()
    );
    dir
}

/// A running redis-server. Killed (and its directory removed) on drop.
pub struct RedisServer {
    pub version: String,
    pub port: u16,
    args: Vec<String>,
    dir: tempfile::TempDir,
    child: Option<Child>,
}

impl RedisServer {
    /// Starts a server of `version` with default test settings.
    pub fn start(version: &str) -> Self {
        Self::start_with(version, &[])
    }

    /// Starts a server with extra config arguments, e.g. `&["--databases", "2"]`.
    pub fn start_with(version: &str, extra: &[&str]) -> Self {
        Self::start_on(version, extra, free_port)
    }

    /// Starts a server on a port `pick_port` chooses (a cluster node needs its bus port,
    /// port + 10000, free as well), retrying with another pick when the port was taken.
    pub fn start_on(version: &str, extra: &[&str], pick_port: fn() -> u16) -> Self {
        let mut last_log = String::new();
        // A port can be taken between our probe and the server's bind: retry with another.
        for _ in 0..10 {
            let dir = tempfile::Builder::new()
                .prefix(&format!("ferry-redis-{version}-"))
                .tempdir()
                .expect("create a temp dir for redis-server");
            let mut server = RedisServer {
                version: version.to_string(),
                port: pick_port(),
                args: extra.iter().map(|s| s.to_string()).collect(),
                dir,
                child: None,
            };
            match server.spawn() {
                Ok(()) => return server,
                Err(log) => last_log = log,
            }
        }
        panic!("redis-server {version} did not start after 10 attempts: {last_log}");
    }

    fn spawn(&mut self) -> Result<(), String> {
        let log_path = self.dir.path().join("redis.log");
        let mut cmd = Command::new(binary(&self.version, "redis-server"));
        cmd.arg("--port")
            .arg(self.port.to_string())
            .arg("--bind")
            .arg("127.0.0.1")
            .arg("--dir")
            .arg(self.dir.path())
            .arg("--logfile")
            .arg(&log_path)
            .arg("--save")
            .arg("")
            .arg("--appendonly")
            .arg("no")
            .arg("--daemonize")
            .arg("no")
            .args(&self.args)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped());
        let mut child = cmd.spawn().map_err(|e| format!("spawn failed: {e}"))?;
        let deadline = Instant::now() + Duration::from_secs(15);
        loop {
            if let Ok(Some(status)) = child.try_wait() {
                let mut err = String::new();
                if let Some(mut e) = child.stderr.take() {
                    let _ = e.read_to_string(&mut err);
                }
                let log = std::fs::read_to_string(&log_path).unwrap_or_default();
                return Err(format!("exited with {status}: {err}{log}"));
            }
            if ping(self.port).is_ok() {
                self.child = Some(child);
                return Ok(());
            }
            if Instant::now() > deadline {
                let _ = child.kill();
                let _ = child.wait();
                let log = std::fs::read_to_string(&log_path).unwrap_or_default();
                return Err(format!("no PONG within 15s: {log}"));
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// `redis://127.0.0.1:<port>`
    pub fn url(&self) -> String {
        format!("redis://127.0.0.1:{}", self.port)
    }

    /// The server's working directory (RDB files land here).
    pub fn dir(&self) -> &Path {
        self.dir.path()
    }

    /// A redis-rs client for test setup and assertions.
    pub fn client(&self) -> redis::Client {
        redis::Client::open(self.url()).expect("redis client")
    }

    /// A synchronous connection for setup and assertions.
    pub fn conn(&self) -> redis::Connection {
        self.client()
            .get_connection()
            .unwrap_or_else(|e| panic!("connect to redis {} on {}: {e}", self.version, self.port))
    }

    /// A server that refuses replication (`SYNC` and `PSYNC` renamed away), as managed
    /// services do; checked, so that a test of the scan reader cannot pass on a server that
    /// would have replicated after all.
    pub fn start_without_sync(version: &str) -> Self {
        let server = Self::start_with(
            version,
            &[
                "--rename-command",
                "SYNC",
                "",
                "--rename-command",
                "PSYNC",
                "",
            ],
        );
        for command in ["PSYNC", "SYNC"] {
            let refused: redis::RedisResult<redis::Value> = redis::cmd(command)
                .arg("?")
                .arg("-1")
                .query(&mut server.conn());
            let message = format!("{refused:?}");
            assert!(
                message.contains("unknown command"),
                "{command} is gone: {message}"
            );
        }
        server
    }

    /// `CONFIG GET name`: its value, or "" when the server has no such setting.
    pub fn config_get(&self, name: &str) -> String {
        let reply: Vec<String> = redis::cmd("CONFIG")
            .arg("GET")
            .arg(name)
            .query(&mut self.conn())
            .unwrap();
        reply.get(1).cloned().unwrap_or_default()
    }

    /// Runs `redis-cli -p <port> args…` and returns its stdout.
    pub fn cli(&self, args: &[&str]) -> String {
        let out = Command::new(binary(&self.version, "redis-cli"))
            .arg("-p")
            .arg(self.port.to_string())
            .args(args)
            .output()
            .expect("run redis-cli");
        String::from_utf8_lossy(&out.stdout).into_owned()
    }

    /// Kills the server (SIGKILL), keeping its directory and port for [`RedisServer::restart`].
    pub fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// Starts the server again on the same port and directory (after [`RedisServer::kill`]).
    pub fn restart(&mut self) {
        self.kill();
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            match self.spawn() {
                Ok(()) => return,
                Err(e) if Instant::now() > deadline => {
                    panic!(
                        "redis {} did not restart on port {}: {e}",
                        self.version, self.port
                    )
                }
                Err(_) => std::thread::sleep(Duration::from_millis(100)),
            }
        }
    }

    /// The server's log so far, for failure messages.
    pub fn log(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("redis.log")).unwrap_or_default()
    }
}

impl Drop for RedisServer {
    fn drop(&mut self) {
        self.kill();
    }
}

/// A port that was free a moment ago.
pub fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("bind an ephemeral port")
}

fn ping(port: u16) -> std::io::Result<()> {
    let mut s = TcpStream::connect_timeout(
        &format!("127.0.0.1:{port}").parse().unwrap(),
        Duration::from_millis(200),
    )?;
    s.set_read_timeout(Some(Duration::from_millis(500)))?;
    s.write_all(b"PING\r\n")?;
    let mut line = String::new();
    BufReader::new(s).read_line(&mut line)?;
    // A server started with `--requirepass` answers -NOAUTH: it is up, just locked.
    if line.starts_with("+PONG") || line.starts_with("-NOAUTH") {
        Ok(())
    } else {
        Err(std::io::Error::other(line))
    }
}
