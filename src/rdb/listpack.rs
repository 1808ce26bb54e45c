//! Listpacks (§2.2): the compact encoding of small hashes, sets, zsets, list nodes and stream nodes.
//!
//! Layout: total bytes (u32 LE), element count (u16 LE, 65535 = too many to count), elements, 0xFF.
//! Each element is an encoding byte (which also says the size), the data, and a "backlen" that lets
//! Redis walk backwards; reading forwards we only need the backlen's size.

use super::error::RdbError;

/// One listpack or ziplist element.
#[derive(Debug, Clone, Copy, PartialEq)]
pub(crate) enum Element<'a> {
    Str(&'a [u8]),
    Int(i64),
}

/// Checks the frame that listpacks and ziplists share: a u32 LE total size that matches the blob,
/// and a final 0xFF. `min` is the smallest valid blob (header plus end byte).
pub(crate) fn check_blob_frame(
    data: &[u8],
    base: u64,
    what: &str,
    min: usize,
) -> Result<(), RdbError> {
    if data.len() < min {
        return Err(RdbError::corrupt(
            base,
            format!("a {what} of at least {min} bytes"),
        ));
    }
    let total = u32::from_le_bytes([data[0], data[1], data[2], data[3]]) as usize;
    if total != data.len() || data[total - 1] != 0xFF {
        return Err(RdbError::corrupt(
            base,
            format!(
                "a {what} whose header size ({total}) matches its {} bytes and ends with 0xFF",
                data.len()
            ),
        ));
    }
    Ok(())
}

/// A listpack entry's back-length: its size in 7-bit groups, most significant first, every byte
/// but the first with the high bit set (so it reads backwards from the entry's end).
fn encode_backlen(len: usize) -> [u8; 5] {
    let groups = match len {
        0..=127 => 1,
        128..=16382 => 2,
        16383..=2097150 => 3,
        2097151..=268435454 => 4,
        _ => 5,
    };
    let mut out = [0u8; 5];
    for (i, byte) in out.iter_mut().take(groups).enumerate() {
        let shift = 7 * (groups - 1 - i);
        let group = ((len >> shift) & 127) as u8;
        *byte = if i == 0 { group } else { group | 128 };
    }
    out
}

/// Forward iterator over a listpack's elements. `base` is the blob's absolute offset (for errors).
pub(crate) struct Listpack<'a> {
    data: &'a [u8],
    pos: usize,
    base: u64,
    /// The header's count, if it was not the "unknown" marker.
    pub count: Option<u16>,
    read: usize,
}

impl<'a> Listpack<'a> {
    pub fn open(data: &'a [u8], base: u64) -> Result<Listpack<'a>, RdbError> {
        check_blob_frame(data, base, "listpack", 7)?;
        let count = u16::from_le_bytes([data[4], data[5]]);
        Ok(Listpack {
            data,
            pos: 6,
            base,
            count: (count != u16::MAX).then_some(count),
            read: 0,
        })
    }

    /// After the end marker: the header's count agrees with the elements read.
    pub fn verify_end(&self) -> Result<(), RdbError> {
        match self.count {
            Some(count) if usize::from(count) != self.read => Err(RdbError::corrupt(
                self.base + 4,
                format!(
                    "a listpack count that matches its {} elements, found {count}",
                    self.read
                ),
            )),
            _ => Ok(()),
        }
    }

    fn corrupt(&self, what: &str) -> RdbError {
        RdbError::corrupt(
            self.base + self.pos as u64,
            format!("a listpack element: {what}"),
        )
    }

    fn bytes(&self, from: usize, n: usize) -> Result<&'a [u8], RdbError> {
        self.data
            .get(from..from.saturating_add(n))
            .filter(|_| from + n < self.data.len())
            .ok_or_else(|| self.corrupt("it runs past the end"))
    }

    /// The next element, `None` at the end marker.
    pub fn next_element(&mut self) -> Result<Option<Element<'a>>, RdbError> {
        let b = *self
            .data
            .get(self.pos)
            .ok_or_else(|| self.corrupt("missing end marker"))?;
        if b == 0xFF {
            return Ok(None);
        }
        let p = self.pos;
        let (element, len) = if b & 0x80 == 0 {
            (Element::Int(i64::from(b & 0x7F)), 1)
        } else if b & 0xC0 == 0x80 {
            let n = usize::from(b & 0x3F);
            (Element::Str(self.bytes(p + 1, n)?), 1 + n)
        } else if b & 0xE0 == 0xC0 {
            let lo = self.bytes(p + 1, 1)?[0];
            let v = (i64::from(b & 0x1F) << 8) | i64::from(lo);
            let v = if v >= 1 << 12 { v - (1 << 13) } else { v };
            (Element::Int(v), 2)
        } else if b & 0xF0 == 0xE0 {
            let lo = self.bytes(p + 1, 1)?[0];
            let n = (usize::from(b & 0x0F) << 8) | usize::from(lo);
            (Element::Str(self.bytes(p + 2, n)?), 2 + n)
        } else {
            match b {
                0xF0 => {
                    let h = self.bytes(p + 1, 4)?;
                    let n = u32::from_le_bytes([h[0], h[1], h[2], h[3]]) as usize;
                    (Element::Str(self.bytes(p + 5, n)?), 5 + n)
                }
                0xF1 => {
                    let d = self.bytes(p + 1, 2)?;
                    (Element::Int(i64::from(i16::from_le_bytes([d[0], d[1]]))), 3)
                }
                0xF2 => {
                    let d = self.bytes(p + 1, 3)?;
                    let v = i32::from_le_bytes([0, d[0], d[1], d[2]]) >> 8;
                    (Element::Int(i64::from(v)), 4)
                }
                0xF3 => {
                    let d = self.bytes(p + 1, 4)?;
                    (
                        Element::Int(i64::from(i32::from_le_bytes([d[0], d[1], d[2], d[3]]))),
                        5,
                    )
                }
                0xF4 => {
                    let d = self.bytes(p + 1, 8)?;
                    let mut w = [0u8; 8];
                    w.copy_from_slice(d);
                    (Element::Int(i64::from_le_bytes(w)), 9)
                }
                _ => return Err(self.corrupt(&format!("unknown encoding byte {b:#04x}"))),
            }
        };
        let backlen = match len {
            0..=127 => 1,
            128..=16382 => 2,
            16383..=2097150 => 3,
            2097151..=268435454 => 4,
            _ => 5,
        };
        let next = p + len + backlen;
        if next >= self.data.len() {
            return Err(self.corrupt("its back-length runs past the end"));
        }
        if self.data[p + len..next] != encode_backlen(len)[..backlen] {
            return Err(self.corrupt(&format!("a back-length that encodes its size {len}")));
        }
        self.pos = next;
        self.read += 1;
        Ok(Some(element))
    }

    /// The next element, which must exist.
    pub fn expect(&mut self, what: &str) -> Result<Element<'a>, RdbError> {
        self.next_element()?
            .ok_or_else(|| self.corrupt(&format!("expected {what}, found the end")))
    }

    /// The next element as an integer (stream node fields are integers).
    pub fn expect_int(&mut self, what: &str) -> Result<i64, RdbError> {
        match self.expect(what)? {
            Element::Int(i) => Ok(i),
            Element::Str(s) => std::str::from_utf8(s)
                .ok()
                .and_then(|t| t.parse().ok())
                .ok_or_else(|| self.corrupt(&format!("expected {what} as an integer"))),
        }
    }

    /// An upper bound on the elements left, for pre-sizing vectors safely.
    pub fn size_hint(&self) -> usize {
        match self.count {
            Some(c) => usize::from(c).min(self.data.len()),
            None => self.data.len() / 2,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Builds a listpack from raw element encodings (each: encoding + data, backlen added here).
    pub(crate) fn build(elements: &[&[u8]]) -> Vec<u8> {
        let mut body = Vec::new();
        for e in elements {
            body.extend_from_slice(e);
            assert!(e.len() < 128);
            body.push(e.len() as u8);
        }
        let total = 6 + body.len() + 1;
        let mut out = (total as u32).to_le_bytes().to_vec();
        out.extend_from_slice(&(elements.len() as u16).to_le_bytes());
        out.extend_from_slice(&body);
        out.push(0xFF);
        out
    }

    #[test]
    fn every_encoding() {
        let lp = build(&[
            &[0x05],
            &[0x83, b'a', b'b', b'c'],
            &[0xDF, 0xFF], // 13-bit: 0x1FFF -> -1
            &[0xF1, 0x00, 0x80],
            &[0xF2, 0xFF, 0xFF, 0x7F],
            &[0xF3, 0, 0, 0, 0x80],
            &[0xF4, 1, 0, 0, 0, 0, 0, 0, 0],
            &[0xE0, 0x02, b'x', b'y'],
        ]);
        let mut it = Listpack::open(&lp, 0).unwrap();
        let mut got = Vec::new();
        while let Some(e) = it.next_element().unwrap() {
            got.push(e);
        }
        assert_eq!(
            got,
            vec![
                Element::Int(5),
                Element::Str(b"abc"),
                Element::Int(-1),
                Element::Int(-32768),
                Element::Int(8388607),
                Element::Int(i64::from(i32::MIN)),
                Element::Int(1),
                Element::Str(b"xy"),
            ]
        );
    }

    #[test]
    fn lies_about_sizes_are_errors() {
        let mut lp = build(&[&[0x83, b'a', b'b', b'c']]);
        lp[6] = 0xBF; // claims 63 bytes
        let mut it = Listpack::open(&lp, 0).unwrap();
        assert!(it.next_element().is_err());
        lp[0] = 200;
        assert!(Listpack::open(&lp, 0).is_err());
    }
}
