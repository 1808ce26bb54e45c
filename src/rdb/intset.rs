//! Intsets and zipmaps (§2.3): the small-set and the pre-2.6 small-hash encodings.
//!
//! An intset is a sorted array of same-width little-endian integers behind an 8-byte header
//! (width 2, 4 or 8; count). A zipmap is a 1-byte count followed by (length, key, length, free,
//! value, padding) entries up to 0xFF; lengths are one byte below 254, else 0xFE + u32 LE.

use super::error::RdbError;

/// The integers of an intset.
pub(crate) fn intset_members(data: &[u8], base: u64) -> Result<Vec<i64>, RdbError> {
    if data.len() < 8 {
        return Err(RdbError::corrupt(base, "an intset of at least 8 bytes"));
    }
    let width = u32::from_le_bytes([data[0], data[1], data[2], data[3]]) as usize;
    let count = u32::from_le_bytes([data[4], data[5], data[6], data[7]]) as usize;
    if !matches!(width, 2 | 4 | 8) {
        return Err(RdbError::corrupt(
            base,
            format!("an intset width of 2, 4 or 8, found {width}"),
        ));
    }
    if count.checked_mul(width) != Some(data.len() - 8) {
        return Err(RdbError::corrupt(
            base,
            format!(
                "an intset of {count} x {width} bytes, found {} bytes",
                data.len() - 8
            ),
        ));
    }
    Ok(data[8..]
        .chunks_exact(width)
        .map(|c| {
            let mut w = [0u8; 8];
            w[..width].copy_from_slice(c);
            let shift = 64 - 8 * width as u32;
            (i64::from_le_bytes(w) << shift) >> shift
        })
        .collect())
}

/// A byte range `start..end` in a blob.
pub(crate) type Range = (usize, usize);

/// The (field, value) byte ranges of a zipmap, as index pairs into `data`.
pub(crate) fn zipmap_pairs(data: &[u8], base: u64) -> Result<Vec<(Range, Range)>, RdbError> {
    let corrupt =
        |at: usize, what: &str| RdbError::corrupt(base + at as u64, format!("a zipmap {what}"));
    if data.is_empty() {
        return Err(corrupt(0, "count byte"));
    }
    let mut pos = 1;
    let read_len = |pos: &mut usize| -> Result<usize, RdbError> {
        let b = *data.get(*pos).ok_or_else(|| corrupt(*pos, "length"))?;
        if b < 254 {
            *pos += 1;
            Ok(usize::from(b))
        } else if b == 254 {
            let d = data
                .get(*pos + 1..*pos + 5)
                .ok_or_else(|| corrupt(*pos, "length"))?;
            *pos += 5;
            Ok(u32::from_le_bytes([d[0], d[1], d[2], d[3]]) as usize)
        } else {
            Err(corrupt(*pos, "length (found the end marker)"))
        }
    };
    let mut pairs = Vec::new();
    loop {
        match data.get(pos) {
            None => return Err(corrupt(pos, "end marker")),
            Some(0xFF) => return Ok(pairs),
            Some(_) => {}
        }
        let klen = read_len(&mut pos)?;
        let key = (
            pos,
            pos.checked_add(klen)
                .filter(|&e| e <= data.len())
                .ok_or_else(|| corrupt(pos, "key"))?,
        );
        pos = key.1;
        let vlen = read_len(&mut pos)?;
        let free = usize::from(*data.get(pos).ok_or_else(|| corrupt(pos, "free byte"))?);
        pos += 1;
        let value = (
            pos,
            pos.checked_add(vlen)
                .filter(|&e| e <= data.len())
                .ok_or_else(|| corrupt(pos, "value"))?,
        );
        pos = value.1 + free;
        pairs.push((key, value));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn intsets_of_every_width() {
        let mut d = vec![2, 0, 0, 0, 2, 0, 0, 0];
        d.extend_from_slice(&(-5i16).to_le_bytes());
        d.extend_from_slice(&7i16.to_le_bytes());
        assert_eq!(intset_members(&d, 0).unwrap(), vec![-5, 7]);
        let mut d = vec![8, 0, 0, 0, 1, 0, 0, 0];
        d.extend_from_slice(&i64::MIN.to_le_bytes());
        assert_eq!(intset_members(&d, 0).unwrap(), vec![i64::MIN]);
        assert!(intset_members(&[3, 0, 0, 0, 0, 0, 0, 0], 0).is_err());
        assert!(intset_members(&[2, 0, 0, 0, 9, 0, 0, 0, 1, 0], 0).is_err());
    }

    #[test]
    fn zipmap_with_free_padding() {
        // count 2; "a" -> "xy" (1 free byte); "bb" -> "" ; end
        let d = [2, 1, b'a', 2, 1, b'x', b'y', 0, 2, b'b', b'b', 0, 0, 0xFF];
        let pairs = zipmap_pairs(&d, 0).unwrap();
        assert_eq!(pairs, vec![((2, 3), (5, 7)), ((9, 11), (13, 13))]);
        assert!(zipmap_pairs(&d[..6], 0).is_err());
    }
}
