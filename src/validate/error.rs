//! Why a server could not be reached, or why one fact about it could not be read.
//!
//! Validation never fails as a whole: these errors become check results. So their messages are
//! written for the person reading the report. They say what to change, and never contain the
//! password (the redis-rs error text is not trusted for that; see [`super::conn`]).

use std::fmt;

use thiserror::Error;

/// Which of the two servers a fact or a check is about.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Side {
    Source,
    Target,
}

impl Side {
    pub fn name(self) -> &'static str {
        match self {
            Side::Source => "source",
            Side::Target => "target",
        }
    }
}

impl fmt::Display for Side {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// Why Ferry could not open a usable connection to a server.
#[derive(Debug, Clone, Error, PartialEq, Eq)]
pub enum ConnectError {
    #[error("authentication failed; check the user name and password in the URL")]
    Auth,
    #[error("no answer from {addr} within {secs}s; check the host, the port and the firewall")]
    Timeout { addr: String, secs: u64 },
    #[error("connection to {addr} refused: nothing listens there; check the host and the port")]
    Refused { addr: String },
    #[error("TLS handshake with {addr} failed ({detail}); check that the server speaks TLS and that its certificate is trusted")]
    Tls { addr: String, detail: String },
    #[error("cannot read the TLS CA file {path} ({detail}); fix the path or its permissions")]
    TlsCaFile { path: String, detail: String },
    #[error("cannot use {addr}: {detail}")]
    Other { addr: String, detail: String },
}

/// Why one admin command did not give its fact.
#[derive(Debug, Clone, Error, PartialEq, Eq)]
pub enum CallError {
    /// The server never connected, so nothing was asked.
    #[error("the {side} is unreachable (see {side}.connect)")]
    NotConnected { side: Side },
    #[error("`{command}` got no answer within {millis} ms")]
    Timeout { command: String, millis: u64 },
    /// The command is renamed or disabled (`rename-command`), as managed services often do.
    #[error("`{command}` is renamed or disabled on this server")]
    Unavailable { command: String },
    #[error("the user may not run `{command}` ({detail})")]
    Denied { command: String, detail: String },
    #[error("`{command}` failed: {detail}")]
    Server { command: String, detail: String },
    #[error("`{command}` answered something unexpected: {detail}")]
    Unexpected { command: String, detail: String },
}
