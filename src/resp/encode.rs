//! Writing commands as RESP arrays of bulk strings into a reusable buffer.
//!
//! A command is `*<argc>\r\n` followed by `$<len>\r\n<bytes>\r\n` per argument. The caller owns the
//! buffer and flushes it to the socket when it is large enough, so the hot path (one RESTORE per
//! key) appends into memory that was allocated once.

use bytes::{BufMut, BytesMut};

/// Appends the decimal form of `n` without going through `fmt` (this runs once or twice per
/// argument on the hot path).
#[inline]
pub fn put_decimal(out: &mut BytesMut, n: u64) {
    let mut digits = [0u8; 20];
    let mut i = digits.len();
    let mut n = n;
    loop {
        i -= 1;
        digits[i] = b'0' + (n % 10) as u8;
        n /= 10;
        if n == 0 {
            break;
        }
    }
    out.put_slice(&digits[i..]);
}

/// Same as [`put_decimal`] for signed numbers.
#[inline]
pub fn put_signed(out: &mut BytesMut, n: i64) {
    if n < 0 {
        out.put_u8(b'-');
    }
    put_decimal(out, n.unsigned_abs());
}

/// An output buffer that commands are encoded into.
#[derive(Debug, Default)]
pub struct CommandBuf {
    buf: BytesMut,
}

impl CommandBuf {
    pub fn with_capacity(capacity: usize) -> Self {
        CommandBuf {
            buf: BytesMut::with_capacity(capacity),
        }
    }

    /// Starts a command of `argc` arguments; follow with exactly `argc` calls to an `arg*` method.
    #[inline]
    pub fn array(&mut self, argc: usize) -> &mut Self {
        self.buf.put_u8(b'*');
        put_decimal(&mut self.buf, argc as u64);
        self.buf.put_slice(b"\r\n");
        self
    }

    /// One bulk-string argument.
    #[inline]
    pub fn arg(&mut self, arg: &[u8]) -> &mut Self {
        self.bulk_header(arg.len());
        self.buf.put_slice(arg);
        self.buf.put_slice(b"\r\n");
        self
    }

    /// One argument holding a decimal integer.
    #[inline]
    pub fn arg_int(&mut self, n: i64) -> &mut Self {
        let mut digits = [0u8; 20];
        let mut i = digits.len();
        let mut rest = n.unsigned_abs();
        loop {
            i -= 1;
            digits[i] = b'0' + (rest % 10) as u8;
            rest /= 10;
            if rest == 0 {
                break;
            }
        }
        let sign = usize::from(n < 0);
        self.bulk_header(digits.len() - i + sign);
        if n < 0 {
            self.buf.put_u8(b'-');
        }
        self.buf.put_slice(&digits[i..]);
        self.end_arg()
    }

    /// Only the `$<len>\r\n` of an argument whose bytes the caller writes next through
    /// [`CommandBuf::raw`], followed by [`CommandBuf::end_arg`]. This lets a DUMP payload be built
    /// in place from its parts instead of being assembled in a temporary first.
    #[inline]
    pub fn bulk_header(&mut self, len: usize) -> &mut Self {
        self.buf.put_u8(b'$');
        put_decimal(&mut self.buf, len as u64);
        self.buf.put_slice(b"\r\n");
        self
    }

    /// Raw bytes appended as they are (an argument's body, or a pre-encoded command).
    #[inline]
    pub fn raw(&mut self, bytes: &[u8]) -> &mut Self {
        self.buf.put_slice(bytes);
        self
    }

    /// Closes an argument started with [`CommandBuf::bulk_header`].
    #[inline]
    pub fn end_arg(&mut self) -> &mut Self {
        self.buf.put_slice(b"\r\n");
        self
    }

    /// A whole command from its arguments.
    pub fn command<A: AsRef<[u8]>>(&mut self, args: &[A]) -> &mut Self {
        self.array(args.len());
        for a in args {
            self.arg(a.as_ref());
        }
        self
    }

    pub fn len(&self) -> usize {
        self.buf.len()
    }

    pub fn is_empty(&self) -> bool {
        self.buf.is_empty()
    }

    /// Bytes allocated, used or not.
    pub fn capacity(&self) -> usize {
        self.buf.capacity()
    }

    /// The encoded bytes so far.
    pub fn as_slice(&self) -> &[u8] {
        &self.buf
    }

    /// Forgets the encoded bytes, keeping the allocation.
    pub fn clear(&mut self) {
        self.buf.clear();
    }

    /// Direct access, for writing the buffer to a socket (`write_all_buf` drains it).
    pub fn buf_mut(&mut self) -> &mut BytesMut {
        &mut self.buf
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::resp::{Decoder, Frame};

    #[test]
    fn encodes_commands_that_decode_back() {
        let mut out = CommandBuf::default();
        out.command(&[&b"SET"[..], b"k", b"v\r\n"]);
        out.array(2).arg(b"EXPIRE").arg_int(-12);
        out.array(1).bulk_header(3).raw(b"a").raw(b"bc").end_arg();
        assert_eq!(
            &out.as_slice()[..29],
            b"*3\r\n$3\r\nSET\r\n$1\r\nk\r\n$3\r\nv\r\n\r\n"
        );
        let mut buf = out.buf_mut().split();
        let d = Decoder::default();
        let (second, _) = {
            d.decode(&mut buf).unwrap().unwrap();
            d.decode(&mut buf).unwrap().unwrap()
        };
        assert_eq!(
            second,
            Frame::Array(vec![
                Frame::Bulk(bytes::Bytes::from_static(b"EXPIRE")),
                Frame::Bulk(bytes::Bytes::from_static(b"-12"))
            ])
        );
        let (third, _) = d.decode(&mut buf).unwrap().unwrap();
        assert_eq!(
            third,
            Frame::Array(vec![Frame::Bulk(bytes::Bytes::from_static(b"abc"))])
        );
    }

    #[test]
    fn decimals() {
        for n in [0u64, 7, 10, 99, 12345, u64::MAX] {
            let mut b = BytesMut::new();
            put_decimal(&mut b, n);
            assert_eq!(&b[..], n.to_string().as_bytes());
        }
        let mut b = BytesMut::new();
        put_signed(&mut b, i64::MIN);
        assert_eq!(&b[..], i64::MIN.to_string().as_bytes());
    }
}
