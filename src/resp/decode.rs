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

/// The first error in a whole reply: the reply itself (`index: None`), or an element of a
/// top-level array (`EXEC`'s results), with the range of its message in the buffer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ReplyError {
    pub index: Option<usize>,
    pub message: std::ops::Range<usize>,
}

/// Phase one for callers that only care whether a reply is an error (a pipelined writer: `+OK`,
/// `+QUEUED`, `EXEC` results): the length of the whole reply at the start of `buf` and its first
/// error, without building any frame. `Ok(None)`: the reply is not whole yet.
pub fn check_reply(
    buf: &[u8],
    limits: &Limits,
) -> Result<Option<(usize, Option<ReplyError>)>, RespError> {
    let error_at = |start: usize, index: Option<usize>| -> Option<ReplyError> {
        let end = start + buf[start..].iter().position(|&b| b == b'\r')?;
        Some(ReplyError {
            index,
            message: start + 1..end,
        })
    };
    let short = |s: Short| match s {
        Short::Incomplete => Ok(None),
        Short::Invalid(e) => Err(e),
    };
    match buf.first() {
        None => Ok(None),
        Some(b'*') => {
            // One walk over the elements: their ends, and the first that is an error.
            let end = match line_end(buf, 1, limits) {
                Ok(end) => end,
                Err(s) => return short(s),
            };
            let count = parse_int(&buf[1..end], 0)?;
            if count as u64 > limits.max_array_len as u64 {
                return Err(RespError::TooLarge {
                    what: "array",
                    len: count as u64,
                    limit: limits.max_array_len,
                    offset: 0,
                });
            }
            let mut pos = end + 2;
            let mut first_error = None;
            for i in 0..count.max(0) as usize {
                if first_error.is_none() && buf.get(pos) == Some(&b'-') {
                    first_error = error_at(pos, Some(i));
                }
                pos = match check_at(buf, pos, limits, 1) {
                    Ok(next) => next,
                    Err(s) => return short(s),
                };
            }
            Ok(Some((pos, first_error)))
        }
        Some(_) => match check_at(buf, 0, limits, 0) {
            Ok(len) => Ok(Some((
                len,
                (buf[0] == b'-').then(|| error_at(0, None)).flatten(),
            ))),
            Err(s) => short(s),
        },
    }
}

type Ranges = (usize, Vec<(usize, usize)>);

/// The end of the command at the start of `buf` and the ranges of its arguments, in one walk;
/// `Short::Incomplete` until it is whole.
fn command_ranges(buf: &[u8], limits: &Limits) -> Result<Option<Ranges>, Short> {
    match buf.first() {
        None => return Err(Short::Incomplete),
        Some(b'*') => {}
        Some(&byte) => return Err(RespError::BadType { byte, offset: 0 }.into()),
    }
    let end = line_end(buf, 1, limits)?;
    let count = parse_int(&buf[1..end], 0)?;
    if count as u64 > limits.max_array_len as u64 {
        return Err(RespError::TooLarge {
            what: "array",
            len: count as u64,
            limit: limits.max_array_len,
            offset: 0,
        }
        .into());
    }
    let count = count.max(0) as usize;
    let mut ranges = Vec::with_capacity(count.min(buf.len() / 4 + 1));
    let mut pos = end + 2;
    for _ in 0..count {
        match buf.get(pos) {
            None => return Err(Short::Incomplete),
            Some(b'$') => {}
            Some(&byte) => return Err(RespError::BadType { byte, offset: pos }.into()),
        }
        let end = line_end(buf, pos + 1, limits)?;
        let len = parse_int(&buf[pos + 1..end], pos)?;
        if len < 0 || len as u64 > limits.max_bulk_len as u64 {
            return Err(RespError::TooLarge {
                what: "bulk string",
                len: len.unsigned_abs(),
                limit: limits.max_bulk_len,
                offset: pos,
            }
            .into());
        }
        let data = end + 2;
        let data_end = data + len as usize;
        if buf.len() < data_end + 2 {
            return Err(Short::Incomplete);
        }
        if &buf[data_end..data_end + 2] != b"\r\n" {
            return Err(RespError::MissingCrlf { offset: data_end }.into());
        }
        ranges.push((data, data_end));
        pos = data_end + 2;
    }
    Ok(Some((pos, ranges)))
}

/// Phase two for a command (an array of bulk strings, as a replication stream carries), straight
/// into its arguments: no intermediate frames. `frame` is one whole frame `check` vouched for.
pub fn parse_command(frame: &Bytes) -> Result<Vec<Bytes>, RespError> {
    let not_a_command = |offset| RespError::BadType {
        byte: frame.get(offset).copied().unwrap_or(0),
        offset,
    };
    if frame.first() != Some(&b'*') {
        return Err(not_a_command(0));
    }
    let line = |start: usize| -> Result<usize, RespError> {
        frame[start..]
            .iter()
            .position(|&b| b == b'\r')
            .map(|i| start + i)
            .ok_or(RespError::MissingCrlf { offset: start })
    };
    let end = line(1)?;
    let count = parse_int(&frame[1..end], 0)?.max(0) as usize;
    let mut args = Vec::with_capacity(count.min(frame.len() / 4));
    let mut pos = end + 2;
    for _ in 0..count {
        if frame.get(pos) != Some(&b'$') {
            return Err(not_a_command(pos));
        }
        let end = line(pos + 1)?;
        let len = parse_int(&frame[pos + 1..end], pos)?;
        let data = end + 2;
        let data_end = data + len.max(0) as usize;
        if data_end + 2 > frame.len() {
            return Err(RespError::MissingCrlf { offset: data_end });
        }
        args.push(frame.slice(data..data_end));
        pos = data_end + 2;
    }
    Ok(args)
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

    /// A whole reply's length and first error, leaving it in `buf` (see [`check_reply`]).
    pub fn check_reply(
        &self,
        buf: &[u8],
    ) -> Result<Option<(usize, Option<ReplyError>)>, RespError> {
        check_reply(buf, &self.limits)
    }

    /// The next command of a replication stream as its raw bytes and its arguments, or
    /// `Ok(None)` if `buf` holds only part of it. A frame that is not an array of bulk strings
    /// is an error.
    pub fn decode_command(
        &self,
        buf: &mut BytesMut,
    ) -> Result<Option<(Vec<Bytes>, Bytes)>, RespError> {
        // One pass finds the command's end and its arguments' places (the replication stream's
        // hot path: the two-phase check-then-parse walked every command twice).
        let Some(ranges) = (match command_ranges(buf, &self.limits) {
            Ok(r) => r,
            Err(Short::Incomplete) => None,
            Err(Short::Invalid(e)) => return Err(e),
        }) else {
            return Ok(None);
        };
        let (end, ranges) = ranges;
        let raw = buf.split_to(end).freeze();
        let args = ranges.into_iter().map(|(a, b)| raw.slice(a..b)).collect();
        Ok(Some((args, raw)))
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

    #[test]
    fn reply_checks_find_errors_without_frames() {
        let limits = Limits::default();
        assert_eq!(
            check_reply(b"+QUEUED\r\n", &limits).unwrap(),
            Some((9, None))
        );
        assert_eq!(check_reply(b"+QUEU", &limits).unwrap(), None);
        let (len, err) = check_reply(b"-ERR no\r\n+OK", &limits).unwrap().unwrap();
        assert_eq!((len, err.unwrap().message), (9, 1..7));
        let exec = b"*4\r\n+OK\r\n:3\r\n*2\r\n$1\r\na\r\n-WRONGTYPE x\r\n-LAST\r\n";
        let (len, err) = check_reply(&exec[..], &limits).unwrap().unwrap();
        let err = err.unwrap();
        assert_eq!(len, exec.len());
        // A nested error is data (an element's value); the top-level one is the result's.
        assert_eq!(err.index, Some(3));
        assert_eq!(&exec[err.message], b"LAST");
    }

    #[test]
    fn commands_decode_in_one_pass_however_they_are_cut() {
        let d = Decoder::default();
        let stream = b"*2\r\n$4\r\nPING\r\n$0\r\n\r\n*3\r\n$3\r\nSET\r\n$1\r\nk\r\n$2\r\nvv\r\n";
        for cut in 0..stream.len() {
            let mut buf = BytesMut::from(&stream[..cut]);
            let mut got = vec![];
            while let Some((args, raw)) = d.decode_command(&mut buf).unwrap() {
                got.push((args, raw));
            }
            buf.extend_from_slice(&stream[cut..]);
            while let Some((args, raw)) = d.decode_command(&mut buf).unwrap() {
                got.push((args, raw));
            }
            assert!(buf.is_empty());
            assert_eq!(got.len(), 2, "cut at {cut}");
            assert_eq!(
                got[1].0,
                vec![Bytes::from("SET"), Bytes::from("k"), Bytes::from("vv")]
            );
            assert_eq!(&got[0].1[..], &stream[..20]);
        }
        let mut bad = BytesMut::from(&b"*1\r\n:1\r\n"[..]);
        assert!(d.decode_command(&mut bad).is_err());
    }

    #[test]
    fn commands_parse_straight_into_arguments() {
        let raw = Bytes::from_static(b"*3\r\n$3\r\nSET\r\n$1\r\nk\r\n$0\r\n\r\n");
        let args = parse_command(&raw).unwrap();
        assert_eq!(
            args,
            vec![Bytes::from("SET"), Bytes::from("k"), Bytes::new()]
        );
        assert!(parse_command(&Bytes::from_static(b"+OK\r\n")).is_err());
        assert!(parse_command(&Bytes::from_static(b"*1\r\n:1\r\n")).is_err());
    }

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
