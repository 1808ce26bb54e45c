//! Incremental RESP2 decoding in two phases: `check` (is a whole frame here? how long?) and
//! `parse` (build it). See the module doc of [`crate::resp`] for why.

use bytes::{Bytes, BytesMut};
use thiserror::Error;

use super::Frame;

/// Upper bounds on sizes announced by the peer, enforced before any allocation.
#[derive(Debug, Clone, Copy)]
pub struct Limits {
    /// Largest bulk string (Redis' own `proto-max-bulk-len` defaults to 512 MB).
    pub max_bulk_len: usize,
    /// Most elements in one array.
    pub max_array_len: usize,
    /// Deepest array nesting (replies of EXEC or XRANGE nest a few levels at most).
    pub max_depth: usize,
    /// Longest simple string, error or length line.
    pub max_line_len: usize,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            max_bulk_len: 1 << 30,
            max_array_len: 1 << 24,
            max_depth: 32,
            max_line_len: 64 * 1024,
        }
    }
}

/// A malformed or oversized frame. "Not enough bytes yet" is *not* an error: it is `Ok(None)`.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum RespError {
    #[error("invalid RESP type byte {byte:#04x} at offset {offset}; expected one of + - : $ *")]
    BadType { byte: u8, offset: usize },
    #[error("invalid length or integer at offset {offset}")]
    BadInteger { offset: usize },
    #[error("missing CRLF after the bulk string that ends at offset {offset}")]
    MissingCrlf { offset: usize },
    #[error("a {what} of {len} at offset {offset} exceeds the limit of {limit}")]
    TooLarge {
        what: &'static str,
        len: u64,
        limit: usize,
        offset: usize,
    },
    #[error("arrays nested deeper than {limit} levels at offset {offset}")]
    TooDeep { limit: usize, offset: usize },
}

/// Internal outcome of the check phase: `Incomplete` stays apart from real errors.
enum Short {
    Incomplete,
    Invalid(RespError),
}

impl From<RespError> for Short {
    fn from(e: RespError) -> Self {
        Short::Invalid(e)
    }
}

/// Phase one: if `buf` starts with a whole frame, returns its length in bytes.
pub fn check(buf: &[u8], limits: &Limits) -> Result<Option<usize>, RespError> {
    match check_at(buf, 0, limits, 0) {
        Ok(end) => Ok(Some(end)),
        Err(Short::Incomplete) => Ok(None),
        Err(Short::Invalid(e)) => Err(e),
    }
}

/// Returns the end of the line starting at `start` (the index of its `\r`).
#[inline]
fn line_end(buf: &[u8], start: usize, limits: &Limits) -> Result<usize, Short> {
    let window = &buf[start.min(buf.len())..];
    let scan = &window[..window.len().min(limits.max_line_len + 1)];
    match scan.iter().position(|&b| b == b'\r') {
        Some(i) if start + i + 1 < buf.len() => Ok(start + i),
        Some(_) => Err(Short::Incomplete),
        None if scan.len() > limits.max_line_len => Err(RespError::TooLarge {
            what: "line",
            len: scan.len() as u64,
            limit: limits.max_line_len,
            offset: start,
        }
        .into()),
        None => Err(Short::Incomplete),
    }
}

/// Parses a decimal integer line (`-1`, `42`).
#[inline]
fn parse_int(digits: &[u8], offset: usize) -> Result<i64, RespError> {
    let bad = RespError::BadInteger { offset };
    let (neg, digits) = match digits.first() {
        Some(b'-') => (true, &digits[1..]),
        _ => (false, digits),
    };
    if digits.is_empty() || digits.len() > 19 {
        return Err(bad);
    }
    let mut value: i64 = 0;
    for &d in digits {
        if !d.is_ascii_digit() {
            return Err(bad);
        }
        value = value
            .checked_mul(10)
            .and_then(|v| v.checked_add((d - b'0') as i64))
            .ok_or(bad.clone())?;
    }
    Ok(if neg { -value } else { value })
}

fn check_at(buf: &[u8], start: usize, limits: &Limits, depth: usize) -> Result<usize, Short> {
    let Some(&kind) = buf.get(start) else {
        return Err(Short::Incomplete);
    };
    let end = line_end(buf, start + 1, limits)?;
    let after_line = end + 2;
    match kind {
        b'+' | b'-' => Ok(after_line),
        b':' => {
            parse_int(&buf[start + 1..end], start)?;
            Ok(after_line)
        }
        b'$' => {
            let len = parse_int(&buf[start + 1..end], start)?;
            if len < 0 {
                return Ok(after_line);
            }
            if len as u64 > limits.max_bulk_len as u64 {
                return Err(RespError::TooLarge {
                    what: "bulk string",
                    len: len as u64,
                    limit: limits.max_bulk_len,
                    offset: start,
                }
                .into());
            }
            let data_end = after_line + len as usize;
            if buf.len() < data_end + 2 {
                return Err(Short::Incomplete);
            }
            if &buf[data_end..data_end + 2] != b"\r\n" {
                return Err(RespError::MissingCrlf { offset: data_end }.into());
            }
            Ok(data_end + 2)
        }
        b'*' => {
            let len = parse_int(&buf[start + 1..end], start)?;
            if len < 0 {
                return Ok(after_line);
            }
            if len as u64 > limits.max_array_len as u64 {
                return Err(RespError::TooLarge {
                    what: "array",
                    len: len as u64,
                    limit: limits.max_array_len,
                    offset: start,
                }
                .into());
            }
            if depth >= limits.max_depth {
                return Err(RespError::TooDeep {
                    limit: limits.max_depth,
                    offset: start,
                }
                .into());
            }
            let mut pos = after_line;
            for _ in 0..len {
                pos = check_at(buf, pos, limits, depth + 1)?;
            }
            Ok(pos)
        }
        byte => Err(RespError::BadType {
            byte,
            offset: start,
        }
        .into()),
    }
}

/// Phase two: builds the frame from `frame`, which `check` has vouched for (exactly one whole
/// frame). Bulk strings are slices of `frame`, not copies.
///
/// Integers and lengths were validated by `check`; re-parsing them cannot fail, but we still
/// return an error rather than panic if a caller passes bytes `check` never saw.
pub fn parse(frame: &Bytes) -> Result<Frame, RespError> {
    let mut pos = 0;
    parse_at(frame, &mut pos)
}

fn parse_at(buf: &Bytes, pos: &mut usize) -> Result<Frame, RespError> {
    let start = *pos;
    let kind = *buf
        .get(start)
        .ok_or(RespError::BadInteger { offset: start })?;
    let end = buf[start + 1..]
        .iter()
        .position(|&b| b == b'\r')
        .map(|i| start + 1 + i)
        .ok_or(RespError::MissingCrlf { offset: start })?;
    *pos = end + 2;
    match kind {
        b'+' => Ok(Frame::Simple(buf.slice(start + 1..end))),
        b'-' => Ok(Frame::Error(buf.slice(start + 1..end))),
        b':' => Ok(Frame::Integer(parse_int(&buf[start + 1..end], start)?)),
        b'$' => {
            let len = parse_int(&buf[start + 1..end], start)?;
            if len < 0 {
                return Ok(Frame::Null);
            }
            let data_end = *pos + len as usize;
            if data_end + 2 > buf.len() {
                return Err(RespError::MissingCrlf { offset: data_end });
            }
            let data = buf.slice(*pos..data_end);
            *pos = data_end + 2;
            Ok(Frame::Bulk(data))
        }
        b'*' => {
            let len = parse_int(&buf[start + 1..end], start)?;
            if len < 0 {
                return Ok(Frame::Null);
            }
            // `check` bounded `len` by the limits and by the bytes present (each element is at
            // least 3 bytes), so this reservation is bounded by the input size.
            let mut items = Vec::with_capacity((len as usize).min(buf.len() / 3));
            for _ in 0..len {
                items.push(parse_at(buf, pos)?);
            }
            Ok(Frame::Array(items))
        }
        byte => Err(RespError::BadType {
            byte,
            offset: start,
        }),
    }
}

/// Both phases over a growing read buffer: the usual way to use this module.
#[derive(Debug, Clone, Default)]
pub struct Decoder {
    pub limits: Limits,
}

impl Decoder {
    pub fn new(limits: Limits) -> Self {
        Decoder { limits }
    }

    /// Takes one whole frame off the front of `buf`, returning it with its length in bytes, or
    /// `Ok(None)` if `buf` holds only part of a frame (read more and call again).
    pub fn decode(&self, buf: &mut BytesMut) -> Result<Option<(Frame, usize)>, RespError> {
        match self.decode_raw(buf)? {
            Some(raw) => {
                let len = raw.len();
                Ok(Some((parse(&raw)?, len)))
            }
            None => Ok(None),
        }
    }

    /// Like [`Decoder::decode`], but also returns the frame's raw bytes, for callers that forward
    /// frames verbatim (the replication stream is replayed to the target byte for byte).
    pub fn decode_with_raw(&self, buf: &mut BytesMut) -> Result<Option<(Frame, Bytes)>, RespError> {
        match self.decode_raw(buf)? {
            Some(raw) => Ok(Some((parse(&raw)?, raw))),
            None => Ok(None),
        }
    }

    fn decode_raw(&self, buf: &mut BytesMut) -> Result<Option<Bytes>, RespError> {
        match check(buf, &self.limits)? {
            Some(len) => Ok(Some(buf.split_to(len).freeze())),
            None => Ok(None),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn decode_all(input: &[u8]) -> Vec<(Frame, usize)> {
        let d = Decoder::default();
        let mut buf = BytesMut::from(input);
        let mut out = vec![];
        while let Some(f) = d.decode(&mut buf).unwrap() {
            out.push(f);
        }
        assert!(buf.is_empty(), "left over: {buf:?}");
        out
    }

    #[test]
    fn decodes_every_kind_with_its_length() {
        let input = b"+OK\r\n-ERR bad\r\n:-42\r\n$3\r\nfoo\r\n$-1\r\n*-1\r\n*2\r\n$1\r\na\r\n*1\r\n:1\r\n$0\r\n\r\n";
        let frames = decode_all(input);
        assert_eq!(
            frames,
            vec![
                (Frame::Simple(Bytes::from_static(b"OK")), 5),
                (Frame::Error(Bytes::from_static(b"ERR bad")), 10),
                (Frame::Integer(-42), 6),
                (Frame::Bulk(Bytes::from_static(b"foo")), 9),
                (Frame::Null, 5),
                (Frame::Null, 5),
                (
                    Frame::Array(vec![
                        Frame::Bulk(Bytes::from_static(b"a")),
                        Frame::Array(vec![Frame::Integer(1)])
                    ]),
                    19
                ),
                (Frame::Bulk(Bytes::new()), 6),
            ]
        );
    }

    #[test]
    fn every_prefix_is_incomplete_not_an_error() {
        let input = b"*3\r\n$3\r\nSET\r\n$1\r\nk\r\n$5\r\nva\r\nl\r\n";
        for cut in 0..input.len() {
            assert_eq!(
                check(&input[..cut], &Limits::default()),
                Ok(None),
                "cut {cut}"
            );
        }
        assert_eq!(check(input, &Limits::default()), Ok(Some(input.len())));
    }

    #[test]
    fn bulk_strings_may_contain_crlf_and_binary() {
        let frames = decode_all(b"$4\r\n\r\n\0\xff\r\n");
        assert_eq!(frames[0].0, Frame::Bulk(Bytes::from_static(b"\r\n\0\xff")));
    }

    #[test]
    fn hostile_lengths_are_refused_before_allocation() {
        let limits = Limits {
            max_bulk_len: 10,
            max_array_len: 4,
            max_depth: 2,
            max_line_len: 16,
        };
        assert!(matches!(
            check(b"$11\r\n", &limits),
            Err(RespError::TooLarge {
                what: "bulk string",
                ..
            })
        ));
        assert!(matches!(
            check(b"*5\r\n", &limits),
            Err(RespError::TooLarge { what: "array", .. })
        ));
        assert!(matches!(
            check(b"*1\r\n*1\r\n*1\r\n:1\r\n", &limits),
            Err(RespError::TooDeep { .. })
        ));
        assert!(matches!(
            check(b"+aaaaaaaaaaaaaaaaaaaaaaaaa", &limits),
            Err(RespError::TooLarge { what: "line", .. })
        ));
        assert!(matches!(
            check(b"$99999999999999999999\r\n", &Limits::default()),
            Err(RespError::BadInteger { .. })
        ));
    }

    #[test]
    fn malformed_input_names_the_offset() {
        assert_eq!(
            check(b"?x\r\n", &Limits::default()),
            Err(RespError::BadType {
                byte: b'?',
                offset: 0
            })
        );
        assert_eq!(
            check(b"$1\r\nab\r\n", &Limits::default()),
            Err(RespError::MissingCrlf { offset: 5 })
        );
        assert_eq!(
            check(b":12a\r\n", &Limits::default()),
            Err(RespError::BadInteger { offset: 0 })
        );
    }

    #[test]
    fn decode_with_raw_returns_the_exact_bytes() {
        let d = Decoder::default();
        let mut buf = BytesMut::from(&b"*1\r\n$4\r\nPING\r\n*1"[..]);
        let (frame, raw) = d.decode_with_raw(&mut buf).unwrap().unwrap();
        assert_eq!(&raw[..], b"*1\r\n$4\r\nPING\r\n");
        assert_eq!(
            frame,
            Frame::Array(vec![Frame::Bulk(Bytes::from_static(b"PING"))])
        );
        assert_eq!(&buf[..], b"*1");
        assert_eq!(d.decode_with_raw(&mut buf).unwrap(), None);
    }

    mod prop {
        use proptest::prelude::*;

        use super::*;
        use crate::resp::CommandBuf;

        proptest! {
            #![proptest_config(ProptestConfig::with_cases(256))]

            /// Arbitrary bytes never panic: a frame, "incomplete", or an error.
            #[test]
            fn arbitrary_bytes_never_panic(input in proptest::collection::vec(any::<u8>(), 0..256)) {
                let limits = Limits { max_bulk_len: 1 << 20, max_array_len: 1024, max_depth: 8, max_line_len: 128 };
                let d = Decoder::new(limits);
                let mut buf = BytesMut::from(&input[..]);
                while let Ok(Some(_)) = d.decode(&mut buf) {}
            }

            /// Encoded commands decode back to their arguments whatever the read boundaries.
            #[test]
            fn commands_round_trip_across_any_split(
                args in proptest::collection::vec(proptest::collection::vec(any::<u8>(), 0..40), 1..6),
                cut in 0usize..400,
            ) {
                let mut out = CommandBuf::default();
                out.command(&args);
                let bytes = out.as_slice().to_vec();
                let cut = cut.min(bytes.len());
                let d = Decoder::default();
                let mut buf = BytesMut::from(&bytes[..cut]);
                let first = d.decode(&mut buf).unwrap();
                if cut < bytes.len() {
                    prop_assert!(first.is_none());
                    buf.extend_from_slice(&bytes[cut..]);
                } else {
                    prop_assert!(first.is_some());
                    buf = BytesMut::from(&bytes[..]);
                }
                let (frame, len) = d.decode(&mut buf).unwrap().unwrap();
                prop_assert_eq!(len, bytes.len());
                let expected = Frame::Array(args.iter().map(|a| Frame::Bulk(Bytes::copy_from_slice(a))).collect());
                prop_assert_eq!(frame, expected);
            }
        }
    }
}
