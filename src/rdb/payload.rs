//! DUMP payloads (§4), built from an entry's raw bytes without re-encoding the value.
//!
//! `RESTORE` takes `[type byte][value][u16 LE RDB version][u64 LE CRC64 of everything before]`.
//! The value bytes are exactly what the RDB holds after the key, so a payload is a copy plus a
//! checksum. The version stamped in it must not exceed the target's own; stamping an older
//! version is fine only if the target knows the type byte ([`super::version::target_understands`]).

use super::crc64;

/// Builds a DUMP payload for a value of `type_byte` whose serialized bytes are `raw_value`.
pub fn build(type_byte: u8, raw_value: &[u8], rdb_version: u16) -> Vec<u8> {
    let mut out = Vec::with_capacity(raw_value.len() + 11);
    out.push(type_byte);
    out.extend_from_slice(raw_value);
    out.extend_from_slice(&rdb_version.to_le_bytes());
    let crc = crc64::checksum(&out);
    out.extend_from_slice(&crc.to_le_bytes());
    out
}

/// Splits a DUMP payload into its type byte, value bytes and version, checking the CRC.
/// `None` if it is too short or the checksum does not match.
pub fn parse(payload: &[u8]) -> Option<(u8, &[u8], u16)> {
    if payload.len() < 11 {
        return None;
    }
    let (body, crc) = payload.split_at(payload.len() - 8);
    let mut stored = [0u8; 8];
    stored.copy_from_slice(crc);
    if crc64::checksum(body) != u64::from_le_bytes(stored) {
        return None;
    }
    let (value, version) = body.split_at(body.len() - 2);
    Some((
        value[0],
        &value[1..],
        u16::from_le_bytes([version[0], version[1]]),
    ))
}

/// Decodes a DUMP payload into a typed value (for a target that cannot take the payload as it
/// is, or a value too big for one `RESTORE`: it is then rewritten as commands). `None` for a
/// payload that [`parse`] refuses.
pub fn decode(payload: &[u8]) -> Option<Result<super::Value, super::RdbError>> {
    let (type_byte, raw, version) = parse(payload)?;
    let raw = bytes::Bytes::copy_from_slice(raw);
    // Valkey 9 stamps 80 and up, the numbers its own encodings are read by.
    Some(super::decode::decode_value(
        type_byte,
        &raw,
        0,
        version >= 80,
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_known_dump_of_a_small_string() {
        // `SET k hello` then `DUMP k` on Redis 7.2:
        // "\x00\x05hello\x0b\x00" + CRC64 (LE) of those bytes.
        let payload = build(0, b"\x05hello", 11);
        assert_eq!(&payload[..9], b"\x00\x05hello\x0b\x00");
        assert_eq!(parse(&payload), Some((0, &b"\x05hello"[..], 11)));
        let mut broken = payload.clone();
        broken[3] ^= 1;
        assert_eq!(parse(&broken), None);
    }
}
