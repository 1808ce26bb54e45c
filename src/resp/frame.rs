//! The RESP2 value model.

use bytes::Bytes;

/// One RESP2 value. `$-1` and `*-1` both decode to [`Frame::Null`]: no caller needs to tell them
/// apart.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Frame {
    /// `+OK`
    Simple(Bytes),
    /// `-ERR message`; kept as bytes so that a non-UTF-8 message is not lost.
    Error(Bytes),
    /// `:42`
    Integer(i64),
    /// `$3\r\nfoo`
    Bulk(Bytes),
    /// `$-1` or `*-1`
    Null,
    /// `*2\r\n...`
    Array(Vec<Frame>),
}

impl Frame {
    /// The error message if this is an error reply.
    pub fn as_error(&self) -> Option<&[u8]> {
        match self {
            Frame::Error(e) => Some(e),
            _ => None,
        }
    }

    /// The bytes of a simple or bulk string.
    pub fn as_bytes(&self) -> Option<&Bytes> {
        match self {
            Frame::Simple(b) | Frame::Bulk(b) => Some(b),
            _ => None,
        }
    }

    /// An integer reply, or a string holding a decimal integer.
    pub fn as_int(&self) -> Option<i64> {
        match self {
            Frame::Integer(i) => Some(*i),
            Frame::Simple(b) | Frame::Bulk(b) => std::str::from_utf8(b).ok()?.parse().ok(),
            _ => None,
        }
    }

    /// A short, lossy rendering for error messages (values are truncated: they may be large).
    pub fn describe(&self) -> String {
        fn cut(b: &[u8]) -> String {
            let s = String::from_utf8_lossy(&b[..b.len().min(200)]).into_owned();
            if b.len() > 200 {
                format!("{s}…")
            } else {
                s
            }
        }
        match self {
            Frame::Simple(b) => cut(b),
            Frame::Error(b) => cut(b),
            Frame::Integer(i) => i.to_string(),
            Frame::Bulk(b) => cut(b),
            Frame::Null => "(nil)".into(),
            Frame::Array(items) => format!("array of {}", items.len()),
        }
    }
}
