//! The one Redis admin client: a request/response connection on our own RESP code, and the one
//! parsed `INFO`.
//!
//! Validation, the engine, backups and restores all talk to servers through [`Conn`], and read
//! `INFO` through [`Info`], so connection handling (TLS, AUTH, timeouts), error wording and the
//! password scrubbing exist once. Why our own code and not redis-rs: the transfer already needs our
//! RESP connection for its pipelined writer, and the replica handshake opens its socket through the
//! same [`crate::transport`]; a second client would mean two TLS setups, two error vocabularies and
//! two places for secrets to leak from. redis-rs stays a dev-dependency, for tests that fill and
//! inspect servers independently of the code under test.
//!
//! A Redis Cluster is spoken to through the same [`Conn`]s: [`cluster`] asks a node for the slot
//! map, and [`routed::ClusterConn`] holds one connection per master and sends each command (or
//! one slot's transaction) where its slot lives, following `MOVED` and `ASK`.

pub mod cluster;
mod conn;
pub mod info;
pub mod lease;
pub mod routed;

pub use conn::{ClientError, Conn, CALL_TIMEOUT};
pub use info::{Config, DbStats, Info, OutputLimit};

use crate::redis_url::RedisUrl;

/// Removes the password of `url` from a text that came from outside our code (a server's error
/// reply may quote arguments back).
pub fn scrub(text: &str, url: &RedisUrl) -> String {
    match url.password.as_ref().map(|p| p.expose()) {
        Some(password) if !password.is_empty() => text.replace(password, "***"),
        _ => text.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn scrub_removes_the_password_wherever_it_appears() {
        let url = RedisUrl::parse("redis://u:hunter2@h:1").unwrap();
        assert_eq!(scrub("bad hunter2 here hunter2", &url), "bad *** here ***");
        let no_password = RedisUrl::parse("redis://h:1").unwrap();
        assert_eq!(scrub("as is", &no_password), "as is");
    }
}
