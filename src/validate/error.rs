//! Why a server could not be reached, or why one fact about it could not be read.
//!
//! Validation never fails as a whole: these errors become check results. So their messages are
//! written for the person reading the report. They say what to change, and never contain the
//! password (server error texts are scrubbed; see [`super::conn`]).

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

/// Why Ferry could not open a usable connection to a server: the transport's own words.
pub use crate::transport::ConnectError;

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
