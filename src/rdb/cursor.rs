//! Reading the RDB primitives (lengths, strings, little-endian numbers) from a byte slice.
//!
//! The parser works in two phases, like tokio mini-redis' frame parser: first it *checks* whether
//! a complete record is buffered, walking it with a [`Cursor`], and only then does it cut the
//! record out of the buffer. A check that runs off the end of the buffer is not an error: it
//! returns [`Halt::Incomplete`] with the buffer length it would need at least, so the caller can
//! wait for that many bytes before trying again (this keeps byte-at-a-time feeding linear).
//! Real problems are [`Halt::Fail`]. Decoding a complete value uses the same cursor; there an
//! `Incomplete` means the value is truncated and becomes [`RdbError::Truncated`].

use super::error::RdbError;

/// Why a cursor stopped.
#[derive(Debug)]
pub(crate) enum Halt {
    /// More input is needed: at least `need` bytes in the slice, to read `expected`.
    Incomplete { need: usize, expected: &'static str },
    /// The input is wrong.
    Fail(Box<RdbError>),
}

impl From<RdbError> for Halt {
    fn from(e: RdbError) -> Self {
        Halt::Fail(Box::new(e))
    }
}

/// Result of a cursor step.
pub(crate) type Step<T> = Result<T, Halt>;

/// Converts a halt inside a fully buffered value into an error (`Incomplete` means truncated).
pub(crate) fn finished(halt: Halt, base: u64) -> RdbError {
    match halt {
        Halt::Incomplete { need, expected } => RdbError::Truncated {
            offset: base + need as u64,
            expected,
        },
        Halt::Fail(e) => *e,
    }
}

/// The decimal text of an integer-encoded element, without going through `String`.
pub(crate) fn int_text(i: i64) -> bytes::Bytes {
    let mut buf = [0u8; 20];
    let mut n = i.unsigned_abs();
    let mut pos = buf.len();
    loop {
        pos -= 1;
        buf[pos] = b'0' + (n % 10) as u8;
        n /= 10;
        if n == 0 {
            break;
        }
    }
    if i < 0 {
        pos -= 1;
        buf[pos] = b'-';
    }
    bytes::Bytes::copy_from_slice(&buf[pos..])
}

/// An RDB string as it is encoded, before materialising it.
#[derive(Debug, Clone, Copy, PartialEq)]
pub(crate) enum RdbStr<'a> {
    /// Plain bytes.
    Raw(&'a [u8]),
    /// An integer-encoded string (`0xC0`–`0xC2`); its text is the decimal form.
    Int(i64),
    /// LZF-compressed bytes and the uncompressed length.
    Lzf { compressed: &'a [u8], len: usize },
}

/// A length field, or the special string encoding found where a length was expected.
enum LenOrSpecial {
    Len(u64),
    Special(u8),
}

/// A read position in a byte slice whose first byte sits at absolute offset `base`.
pub(crate) struct Cursor<'a> {
    pub buf: &'a [u8],
    pub pos: usize,
    pub base: u64,
    /// The longest string an LZF record may claim to decompress to.
    pub max_string: u64,
}

impl<'a> Cursor<'a> {
    pub fn new(buf: &'a [u8], base: u64) -> Self {
        Cursor {
            buf,
            pos: 0,
            base,
            max_string: super::max_decompressed_bytes(),
        }
    }

    /// Absolute offset of the read position.
    pub fn offset(&self) -> u64 {
        self.base + self.pos as u64
    }

    /// An error at the current position.
    pub fn corrupt(&self, expected: impl Into<String>) -> Halt {
        Halt::from(RdbError::corrupt(self.offset(), expected))
    }

    /// Whether everything has been read.
    pub fn at_end(&self) -> bool {
        self.pos >= self.buf.len()
    }

    #[inline]
    fn incomplete(&self, n: u64, expected: &'static str) -> Halt {
        let need = (self.pos as u64).saturating_add(n);
        Halt::Incomplete {
            need: usize::try_from(need).unwrap_or(usize::MAX),
            expected,
        }
    }

    /// Takes the next `n` bytes.
    #[inline]
    pub fn take(&mut self, n: u64, expected: &'static str) -> Step<&'a [u8]> {
        let left = (self.buf.len() - self.pos) as u64;
        if n > left {
            return Err(self.incomplete(n, expected));
        }
        let start = self.pos;
        self.pos += n as usize;
        Ok(&self.buf[start..self.pos])
    }

    #[inline]
    pub fn array<const N: usize>(&mut self, expected: &'static str) -> Step<[u8; N]> {
        let bytes = self.take(N as u64, expected)?;
        let mut out = [0u8; N];
        out.copy_from_slice(bytes);
        Ok(out)
    }

    #[inline]
    pub fn u8(&mut self, expected: &'static str) -> Step<u8> {
        match self.buf.get(self.pos) {
            Some(&b) => {
                self.pos += 1;
                Ok(b)
            }
            None => Err(self.incomplete(1, expected)),
        }
    }

    pub fn u64_le(&mut self, expected: &'static str) -> Step<u64> {
        Ok(u64::from_le_bytes(self.array(expected)?))
    }

    pub fn i64_le(&mut self, expected: &'static str) -> Step<i64> {
        Ok(i64::from_le_bytes(self.array(expected)?))
    }

    pub fn i32_le(&mut self, expected: &'static str) -> Step<i32> {
        Ok(i32::from_le_bytes(self.array(expected)?))
    }

    pub fn f64_le(&mut self, expected: &'static str) -> Step<f64> {
        Ok(f64::from_le_bytes(self.array(expected)?))
    }

    #[inline]
    fn len_or_special(&mut self, expected: &'static str) -> Step<LenOrSpecial> {
        let first = self.u8(expected)?;
        match first >> 6 {
            0 => Ok(LenOrSpecial::Len(u64::from(first & 0x3F))),
            1 => {
                let second = self.u8(expected)?;
                Ok(LenOrSpecial::Len(
                    (u64::from(first & 0x3F) << 8) | u64::from(second),
                ))
            }
            2 => match first {
                0x80 => Ok(LenOrSpecial::Len(u64::from(u32::from_be_bytes(
                    self.array(expected)?,
                )))),
                0x81 => Ok(LenOrSpecial::Len(u64::from_be_bytes(self.array(expected)?))),
                _ => {
                    self.pos -= 1;
                    Err(self.corrupt(format!(
                        "a length for {expected} (byte {first:#04x} is no length encoding)"
                    )))
                }
            },
            _ => Ok(LenOrSpecial::Special(first & 0x3F)),
        }
    }

    /// Reads an RDB length (§1.2); the special string encodings are an error here.
    #[inline]
    pub fn len(&mut self, expected: &'static str) -> Step<u64> {
        let start = self.pos;
        match self.len_or_special(expected)? {
            LenOrSpecial::Len(n) => Ok(n),
            LenOrSpecial::Special(_) => {
                self.pos = start;
                Err(self.corrupt(format!(
                    "a length for {expected}, found a string encoding byte"
                )))
            }
        }
    }

    /// Reads a length that will be used as a count of elements each at least `min_size` bytes
    /// long in what follows; a count that cannot fit in `max_bytes` is corrupt, which bounds every
    /// `Vec::with_capacity` derived from it.
    pub fn count(&mut self, expected: &'static str, min_size: u64, max_bytes: u64) -> Step<u64> {
        let start = self.offset();
        let n = self.len(expected)?;
        if n.saturating_mul(min_size.max(1)) > max_bytes {
            return Err(Halt::from(RdbError::TooLarge {
                offset: start,
                what: expected,
                len: n.saturating_mul(min_size.max(1)),
                limit: max_bytes,
            }));
        }
        Ok(n)
    }

    /// Reads an RDB string (§1.3) without copying or decompressing it.
    #[inline]
    pub fn string(&mut self, expected: &'static str) -> Step<RdbStr<'a>> {
        match self.len_or_special(expected)? {
            LenOrSpecial::Len(n) => Ok(RdbStr::Raw(self.take(n, expected)?)),
            LenOrSpecial::Special(0) => Ok(RdbStr::Int(i64::from(self.u8(expected)? as i8))),
            LenOrSpecial::Special(1) => Ok(RdbStr::Int(i64::from(i16::from_le_bytes(
                self.array(expected)?,
            )))),
            LenOrSpecial::Special(2) => Ok(RdbStr::Int(i64::from(i32::from_le_bytes(
                self.array(expected)?,
            )))),
            LenOrSpecial::Special(3) => {
                let clen = self.len(expected)?;
                let ulen = self.len(expected)?;
                let compressed = self.take(clen, expected)?;
                // LZF expands at most ~133x (a 3-byte back reference yields 264 bytes); a larger
                // claim is corrupt and must not become an allocation. Within that, a few MB of
                // back references could still claim gigabytes: the configured cap bounds it.
                let limit = clen
                    .saturating_mul(133)
                    .saturating_add(64)
                    .min(self.max_string);
                if ulen > limit || clen == 0 {
                    return Err(Halt::from(RdbError::TooLarge {
                        offset: self.offset() - clen,
                        what: "LZF uncompressed length",
                        len: ulen,
                        limit,
                    }));
                }
                Ok(RdbStr::Lzf {
                    compressed,
                    len: ulen as usize,
                })
            }
            LenOrSpecial::Special(s) => {
                Err(self.corrupt(format!("{expected}: string encoding {s} (only 0–3 exist)")))
            }
        }
    }

    /// Skips an RDB string.
    #[inline]
    pub fn skip_string(&mut self, expected: &'static str) -> Step<()> {
        self.string(expected).map(|_| ())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn len_of(bytes: &[u8]) -> u64 {
        Cursor::new(bytes, 0).len("test").unwrap()
    }

    #[test]
    fn lengths_in_all_four_widths() {
        assert_eq!(len_of(&[0x05]), 5);
        assert_eq!(len_of(&[0x41, 0x02]), 0x102);
        assert_eq!(len_of(&[0x80, 0, 1, 0, 0]), 65536);
        assert_eq!(
            len_of(&[0x81, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF]),
            u64::MAX
        );
        assert!(matches!(
            Cursor::new(&[0x82], 0).len("x"),
            Err(Halt::Fail(_))
        ));
    }

    #[test]
    fn integer_strings_and_incomplete_hints() {
        let mut c = Cursor::new(&[0xC0, 0xFE, 0xC1, 0x00, 0x80, 0xC2, 1, 0, 0, 0x80], 0);
        assert_eq!(c.string("a").unwrap(), RdbStr::Int(-2));
        assert_eq!(c.string("b").unwrap(), RdbStr::Int(-32768));
        assert_eq!(c.string("c").unwrap(), RdbStr::Int(-2147483647));
        let mut c = Cursor::new(&[0x0A, b'a', b'b'], 0);
        match c.string("s") {
            Err(Halt::Incomplete { need, .. }) => assert_eq!(need, 11),
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn integer_text_matches_to_string() {
        for i in [0, 7, -7, 10, 99, -100, i64::MAX, i64::MIN, 1_234_567_890] {
            assert_eq!(&int_text(i)[..], i.to_string().as_bytes());
        }
    }

    #[test]
    fn absurd_lzf_claims_are_refused() {
        let mut c = Cursor::new(&[0xC3, 0x01, 0x81, 0, 0, 0, 1, 0, 0, 0, 0, 0x00], 0);
        assert!(
            matches!(c.string("x"), Err(Halt::Fail(e)) if matches!(*e, RdbError::TooLarge { .. }))
        );
    }

    #[test]
    fn counts_are_bounded_by_the_bytes_that_could_hold_them() {
        let mut c = Cursor::new(&[0x81, 0, 0, 0, 1, 0, 0, 0, 0], 0);
        assert!(c.count("elements", 1, 1000).is_err());
    }
}
