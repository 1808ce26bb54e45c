//! Redis endpoint addresses, parsed once and redacted everywhere they are shown.
//!
//! Users give Ferry `redis://[user[:password]@]host:port[/db]` (or `rediss://` for TLS). The password
//! is the one secret that flows through the whole system, so it lives in a [`Secret`] whose `Debug`
//! and `Display` print `***`: a stray `{:?}` in a log line, a panic message or a serialized event
//! cannot leak it. Only [`RedisUrl::expose_url`] returns the real string, and its name says so.

use std::fmt;

use serde::{Deserialize, Serialize};
use thiserror::Error;

/// Default Redis port when the URL names none.
pub const DEFAULT_PORT: u16 = 6379;

/// A string that must never be displayed: `Debug` and `Display` print `***`.
#[derive(Clone, PartialEq, Eq)]
pub struct Secret(String);

impl Secret {
    pub fn new(value: impl Into<String>) -> Self {
        Secret(value.into())
    }

    /// The real value. Call sites are few and easy to audit: the connection handshake and the
    /// encrypted credential store.
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("***")
    }
}

impl fmt::Display for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("***")
    }
}

/// Why a URL was refused. Messages say what to fix and never echo the password.
#[derive(Debug, Error, PartialEq, Eq)]
pub enum UrlError {
    // Worded without a `scheme://user:password@` template: the API scrubs anything of that shape
    // from messages, which would garble the hint itself.
    #[error(
        "not a URL ({0}); expected redis://host:port (rediss:// for TLS), with optional \
         credentials before the host: a user name, ':' and the password, then '@'"
    )]
    Malformed(String),
    #[error("unsupported scheme `{0}`; use redis:// or rediss:// (TLS)")]
    Scheme(String),
    #[error("the URL has no host; expected redis://host:port")]
    MissingHost,
    #[error("database `{0}` is not a number; use /0, /1, …")]
    BadDb(String),
    #[error("unexpected `{0}` in the URL; only a /db path is allowed")]
    Extra(&'static str),
    /// Parsable, but outside the documented grammar (see [`URL_PATTERN`]).
    #[error(
        "not a URL Ferry accepts; expected redis://host[:port] (rediss:// for TLS): a host of \
         letters, digits, '.' and '-', a port up to 65535, and optional \
         credentials before the host (a user name, ':' and the password, then '@'), with no spaces"
    )]
    Grammar,
}

/// The URLs Ferry accepts, as the OpenAPI document states them (`pattern`) and as [`RedisUrl::parse`]
/// checks them: one expression for both, so the contract and the server cannot disagree. It is a
/// strict subset of what the `url` crate parses (no IPv6 literals, no percent-encoded hosts).
pub const URL_PATTERN: &str = r"^rediss?://(([A-Za-z0-9._~!$&'()*+,;=%-]*)(:[A-Za-z0-9._~!$&'()*+,;=%:-]*)?@)?[A-Za-z0-9.-]+(:(0|[1-9][0-9]{0,3}|[1-5][0-9]{4}|6[0-4][0-9]{3}|65[0-4][0-9]{2}|655[0-2][0-9]|6553[0-5]))?/?$";

static URL_GRAMMAR: std::sync::LazyLock<regex_lite::Regex> = std::sync::LazyLock::new(|| {
    regex_lite::Regex::new(URL_PATTERN).unwrap_or_else(|e| panic!("URL_PATTERN: {e}"))
});

/// A parsed Redis endpoint.
#[derive(Clone, PartialEq, Eq)]
pub struct RedisUrl {
    pub tls: bool,
    pub host: String,
    pub port: u16,
    pub username: Option<String>,
    pub password: Option<Secret>,
    /// The db named in the path, if any. Replication always carries every db; this only matters for
    /// the admin connection (validation, verification).
    pub db: Option<u32>,
}

impl RedisUrl {
    pub fn parse(input: &str) -> Result<Self, UrlError> {
        let parsed = url::Url::parse(input).map_err(|e| Self::describe(input, e))?;
        let tls = match parsed.scheme() {
            "redis" => false,
            "rediss" => true,
            other => return Err(UrlError::Scheme(other.to_string())),
        };
        let host = parsed
            .host_str()
            .filter(|h| !h.is_empty())
            .ok_or(UrlError::MissingHost)?
            .trim_start_matches('[')
            .trim_end_matches(']')
            .to_string();
        let port = parsed.port().unwrap_or(DEFAULT_PORT);
        let username = Some(decode(parsed.username())).filter(|u| !u.is_empty());
        let password = parsed.password().map(|p| Secret::new(decode(p)));
        if parsed.query().is_some() {
            return Err(UrlError::Extra("?query"));
        }
        if parsed.fragment().is_some() {
            return Err(UrlError::Extra("#fragment"));
        }
        let path = parsed.path().trim_start_matches('/');
        let db = if path.is_empty() {
            None
        } else {
            Some(
                path.parse::<u32>()
                    .map_err(|_| UrlError::BadDb(path.to_string()))?,
            )
        };
        // Last, so that the specific messages above win where they apply. IPv6 literals stay
        // accepted (logs and clients may hold them) though the documented pattern leaves them out.
        let ipv6 = matches!(parsed.host(), Some(url::Host::Ipv6(_)));
        // The documented grammar has no `/db`: the API refuses a database in a URL (see
        // `spec::check_no_db`) with a message of its own, so it is parsed here and judged there.
        let without_db = match db {
            Some(d) if path == d.to_string() => input.strip_suffix(path).unwrap_or(input),
            _ => input,
        };
        if !ipv6 && !URL_GRAMMAR.is_match(without_db) {
            return Err(UrlError::Grammar);
        }
        Ok(RedisUrl {
            tls,
            host,
            port,
            username,
            password,
            db,
        })
    }

    fn describe(input: &str, err: url::ParseError) -> UrlError {
        // url's messages never include the input, so they are safe to pass on.
        if !input.contains("://") {
            return UrlError::Malformed("missing scheme".into());
        }
        UrlError::Malformed(err.to_string())
    }

    /// `host:port`, for connecting and for messages.
    pub fn addr(&self) -> String {
        if self.host.contains(':') {
            format!("[{}]:{}", self.host, self.port)
        } else {
            format!("{}:{}", self.host, self.port)
        }
    }

    /// The URL with the password included. Only for connecting and for the encrypted credential store.
    pub fn expose_url(&self) -> String {
        self.render(self.password.as_ref().map(Secret::expose))
    }

    fn render(&self, password: Option<&str>) -> String {
        let scheme = if self.tls { "rediss" } else { "redis" };
        let mut out = format!("{scheme}://");
        match (&self.username, password) {
            (Some(u), Some(p)) => out.push_str(&format!("{}:{}@", encode(u), encode(p))),
            (Some(u), None) => out.push_str(&format!("{}@", encode(u))),
            (None, Some(p)) => out.push_str(&format!(":{}@", encode(p))),
            (None, None) => {}
        }
        out.push_str(&self.addr());
        if let Some(db) = self.db {
            out.push_str(&format!("/{db}"));
        }
        out
    }
}

/// Shows the URL with the password replaced by `***`: safe for logs, events and responses.
impl fmt::Display for RedisUrl {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.render(self.password.as_ref().map(|_| "***")))
    }
}

impl fmt::Debug for RedisUrl {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "RedisUrl({self})")
    }
}

/// Serializes redacted. Anything that needs the password (the credential store) calls
/// [`RedisUrl::expose_url`] explicitly.
impl Serialize for RedisUrl {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&self.to_string())
    }
}

impl<'de> Deserialize<'de> for RedisUrl {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        RedisUrl::parse(&s).map_err(serde::de::Error::custom)
    }
}

/// Percent-decodes a user name or password as RFC 3986 says: `%XX` becomes that byte, and
/// nothing else changes. (Form decoding, which this once was, turns `+` into a space and stops at
/// `&`, so `p+a&ss` became `p a`.) Invalid escapes stay as they are.
fn decode(s: &str) -> String {
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        let hex = |b: u8| (b as char).to_digit(16).map(|d| d as u8);
        match (
            bytes[i],
            bytes.get(i + 1).copied().and_then(hex),
            bytes.get(i + 2).copied().and_then(hex),
        ) {
            (b'%', Some(hi), Some(lo)) => {
                out.push(hi << 4 | lo);
                i += 3;
            }
            (b, _, _) => {
                out.push(b);
                i += 1;
            }
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

fn encode(s: &str) -> String {
    url::form_urlencoded::byte_serialize(s.as_bytes())
        .collect::<String>()
        .replace('+', "%20")
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The OpenAPI document states the same grammar the parser checks.
    #[test]
    fn the_documented_pattern_is_the_checked_one() {
        let doc = crate::api::openapi_json();
        let escaped = serde_json::to_string(URL_PATTERN).unwrap();
        assert!(doc.contains(&escaped), "URL_PATTERN is not in the spec");
        for ok in [
            "redis://h:1",
            "rediss://u:p@h.example-1:6379/3",
            "redis://h/",
            "redis://:p%25@h",
        ] {
            assert!(RedisUrl::parse(ok).is_ok(), "{ok}");
        }
        assert!(
            RedisUrl::parse("redis://[::1]:1").is_ok(),
            "IPv6 literals stay accepted"
        );
        for bad in [
            " redis://h:1",
            "redis://h:65536",
            "redis://h:1/01",
            "redis://h_1:1",
        ] {
            assert!(RedisUrl::parse(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn parses_full_url_and_redacts_password() {
        let u = RedisUrl::parse("redis://alice:s3cret@10.0.0.1:6380/2").unwrap();
        assert_eq!(u.host, "10.0.0.1");
        assert_eq!(u.port, 6380);
        assert_eq!(u.username.as_deref(), Some("alice"));
        assert_eq!(u.password.as_ref().unwrap().expose(), "s3cret");
        assert_eq!(u.db, Some(2));
        assert_eq!(u.to_string(), "redis://alice:***@10.0.0.1:6380/2");
        assert!(!format!("{u:?}").contains("s3cret"));
        assert_eq!(
            serde_json::to_string(&u).unwrap(),
            "\"redis://alice:***@10.0.0.1:6380/2\""
        );
        assert_eq!(u.expose_url(), "redis://alice:s3cret@10.0.0.1:6380/2");
    }

    #[test]
    fn password_only_and_defaults() {
        let u = RedisUrl::parse("rediss://:p%40ss@example.com").unwrap();
        assert!(u.tls);
        assert_eq!(u.port, DEFAULT_PORT);
        assert_eq!(u.username, None);
        assert_eq!(u.password.as_ref().unwrap().expose(), "p@ss");
        assert_eq!(u.to_string(), "rediss://:***@example.com:6379");
        assert_eq!(RedisUrl::parse(&u.expose_url()).unwrap(), u);
    }

    /// Passwords are percent-decoded, never form-decoded: `+` stays `+`, `&` does not end it.
    #[test]
    fn passwords_with_plus_and_ampersand_survive() {
        let raw = RedisUrl::parse("redis://:p+a&ss@h:1").unwrap();
        assert_eq!(raw.password.as_ref().unwrap().expose(), "p+a&ss");
        let encoded = RedisUrl::parse("redis://u%2Bv:p%2Ba%26s%20s@h:1").unwrap();
        assert_eq!(encoded.username.as_deref(), Some("u+v"));
        assert_eq!(encoded.password.as_ref().unwrap().expose(), "p+a&s s");
        assert_eq!(RedisUrl::parse(&encoded.expose_url()).unwrap(), encoded);
        assert_eq!(RedisUrl::parse(&raw.expose_url()).unwrap(), raw);
    }

    #[test]
    fn rejects_bad_urls_without_echoing_secrets() {
        assert_eq!(
            RedisUrl::parse("http://h:1").unwrap_err(),
            UrlError::Scheme("http".into())
        );
        assert!(matches!(
            RedisUrl::parse("localhost:6379"),
            Err(UrlError::Malformed(_)) | Err(UrlError::Scheme(_))
        ));
        assert_eq!(
            RedisUrl::parse("redis://h:1/abc").unwrap_err(),
            UrlError::BadDb("abc".into())
        );
        let err = RedisUrl::parse("redis://u:topsecret@h:99999").unwrap_err();
        assert!(!err.to_string().contains("topsecret"));
    }
}
