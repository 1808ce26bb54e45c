//! Ziplists (§2.1): the compact encoding before listpacks (RDB ≤ 9 lists nodes, small hashes
//! and zsets; types 10, 12, 13 and quicklist nodes).
//!
//! Header: total bytes (u32 LE), tail offset (u32 LE), count (u16 LE). Each entry starts with the
//! previous entry's length (1 byte, or 0xFE + u32 LE), then an encoding byte and data. 0xFF ends it.

use super::error::RdbError;
use super::listpack::{check_blob_frame, Element};

/// Forward iterator over a ziplist's entries.
pub(crate) struct Ziplist<'a> {
    data: &'a [u8],
    pos: usize,
    base: u64,
    count: u16,
    /// The size of the entry before `pos` (what the next entry's `prevlen` must say).
    prev_len: usize,
    /// Where the last entry read starts (what the header's tail offset must say).
    last_start: usize,
    read: usize,
}

impl<'a> Ziplist<'a> {
    pub fn open(data: &'a [u8], base: u64) -> Result<Ziplist<'a>, RdbError> {
        check_blob_frame(data, base, "ziplist", 11)?;
        Ok(Ziplist {
            data,
            pos: 10,
            base,
            count: u16::from_le_bytes([data[8], data[9]]),
            prev_len: 0,
            last_start: 10,
            read: 0,
        })
    }

    /// After the end marker: the header's tail offset and count agree with the entries read
    /// (Redis's deep integrity check).
    pub fn verify_end(&self) -> Result<(), RdbError> {
        let tail = u32::from_le_bytes([self.data[4], self.data[5], self.data[6], self.data[7]]);
        if tail as usize != self.last_start {
            return Err(RdbError::corrupt(
                self.base + 4,
                format!(
                    "a ziplist tail offset of {} (the last entry's), found {tail}",
                    self.last_start
                ),
            ));
        }
        if self.count != u16::MAX && usize::from(self.count) != self.read {
            return Err(RdbError::corrupt(
                self.base + 8,
                format!(
                    "a ziplist count that matches its {} entries, found {}",
                    self.read, self.count
                ),
            ));
        }
        Ok(())
    }

    fn corrupt(&self, what: &str) -> RdbError {
        RdbError::corrupt(
            self.base + self.pos as u64,
            format!("a ziplist entry: {what}"),
        )
    }

    fn bytes(&self, from: usize, n: usize) -> Result<&'a [u8], RdbError> {
        self.data
            .get(from..from.saturating_add(n))
            .filter(|_| from + n < self.data.len())
            .ok_or_else(|| self.corrupt("it runs past the end"))
    }

    /// An upper bound on the entries left, for pre-sizing vectors safely.
    pub fn size_hint(&self) -> usize {
        if self.count == u16::MAX {
            self.data.len() / 2
        } else {
            usize::from(self.count).min(self.data.len())
        }
    }

    /// The next entry, `None` at the end marker.
    pub fn next_element(&mut self) -> Result<Option<Element<'a>>, RdbError> {
        let first = *self
            .data
            .get(self.pos)
            .ok_or_else(|| self.corrupt("missing end marker"))?;
        if first == 0xFF {
            return Ok(None);
        }
        let prevlen = if first == 0xFE {
            let d = self.bytes(self.pos + 1, 4)?;
            u32::from_le_bytes([d[0], d[1], d[2], d[3]]) as usize
        } else {
            usize::from(first)
        };
        if prevlen != self.prev_len {
            return Err(self.corrupt(&format!(
                "a previous-entry length of {}, found {prevlen}",
                self.prev_len
            )));
        }
        let start = self.pos;
        let mut p = self.pos + if first == 0xFE { 5 } else { 1 };
        let enc = self.bytes(p, 1)?[0];
        p += 1;
        let int = |bytes: &[u8]| {
            let mut w = [0u8; 8];
            w[..bytes.len()].copy_from_slice(bytes);
            // sign-extend from the top byte of the given width
            let shift = 64 - 8 * bytes.len() as u32;
            (i64::from_le_bytes(w) << shift) >> shift
        };
        let element = match enc >> 6 {
            0 => {
                let n = usize::from(enc & 0x3F);
                let s = self.bytes(p, n)?;
                p += n;
                Element::Str(s)
            }
            1 => {
                let lo = self.bytes(p, 1)?[0];
                let n = (usize::from(enc & 0x3F) << 8) | usize::from(lo);
                let s = self.bytes(p + 1, n)?;
                p += 1 + n;
                Element::Str(s)
            }
            2 => {
                let h = self.bytes(p, 4)?;
                let n = u32::from_be_bytes([h[0], h[1], h[2], h[3]]) as usize;
                let s = self.bytes(p + 4, n)?;
                p += 4 + n;
                Element::Str(s)
            }
            _ => {
                let width = match enc {
                    0xC0 => 2,
                    0xD0 => 4,
                    0xE0 => 8,
                    0xF0 => 3,
                    0xFE => 1,
                    0xF1..=0xFD => 0,
                    _ => return Err(self.corrupt(&format!("unknown encoding {enc:#04x}"))),
                };
                if width == 0 {
                    Element::Int(i64::from(enc & 0x0F) - 1)
                } else {
                    let d = self.bytes(p, width)?;
                    p += width;
                    Element::Int(int(d))
                }
            }
        };
        self.pos = p;
        self.prev_len = p - start;
        self.last_start = start;
        self.read += 1;
        Ok(Some(element))
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    /// Builds a ziplist from entry encodings (encoding byte(s) + data; prevlen added here).
    pub(crate) fn build(entries: &[Vec<u8>]) -> Vec<u8> {
        let mut body = Vec::new();
        let mut prev = 0usize;
        for e in entries {
            let start = body.len();
            if prev < 254 {
                body.push(prev as u8);
            } else {
                body.push(0xFE);
                body.extend_from_slice(&(prev as u32).to_le_bytes());
            }
            body.extend_from_slice(e);
            prev = body.len() - start;
        }
        let total = 10 + body.len() + 1;
        let mut out = (total as u32).to_le_bytes().to_vec();
        out.extend_from_slice(&0u32.to_le_bytes());
        out.extend_from_slice(&(entries.len() as u16).to_le_bytes());
        out.extend_from_slice(&body);
        out.push(0xFF);
        out
    }

    #[test]
    fn every_encoding() {
        let long = vec![b'z'; 300];
        let mut long_entry = vec![0x41, 0x2C];
        long_entry.extend_from_slice(&long);
        let zl = build(&[
            vec![0x02, b'h', b'i'],
            long_entry,
            vec![0xC0, 0xFF, 0xFF],
            vec![0xD0, 0, 0, 0, 0x80],
            vec![0xE0, 2, 0, 0, 0, 0, 0, 0, 0],
            vec![0xF0, 0xFF, 0xFF, 0xFF],
            vec![0xFE, 0x80],
            vec![0xF1],
            vec![0xFD],
        ]);
        let mut it = Ziplist::open(&zl, 0).unwrap();
        let mut got = Vec::new();
        while let Some(e) = it.next_element().unwrap() {
            got.push(e);
        }
        assert_eq!(
            got,
            vec![
                Element::Str(b"hi"),
                Element::Str(&long),
                Element::Int(-1),
                Element::Int(i64::from(i32::MIN)),
                Element::Int(2),
                Element::Int(-1),
                Element::Int(-128),
                Element::Int(0),
                Element::Int(12),
            ]
        );
    }
}
