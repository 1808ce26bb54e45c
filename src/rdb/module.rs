//! Module values and module aux data (§2.5): only the framing is understood.
//!
//! A module serializes its values with typed opcodes (`len` opcode, then a payload) ending with
//! opcode 0, which is what lets a reader that lacks the module skip the value exactly. The module
//! id packs the 9-character module name (6 bits a character) and a 10-bit encoding version.

use super::cursor::{Cursor, Step};

const CHARSET: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";

/// The module name packed into a module id, e.g. `ReJSON-RL` or `MBbloom--`.
pub fn module_name(module_id: u64) -> String {
    (0..9)
        .map(|i| {
            let shift = 10 + 6 * (8 - i);
            char::from(CHARSET[((module_id >> shift) & 0x3F) as usize])
        })
        .collect()
}

/// The encoding version in the low 10 bits of a module id.
pub fn module_encoding_version(module_id: u64) -> u64 {
    module_id & 0x3FF
}

/// Skips one op of a module op-stream; `true` when it was the EOF op.
pub(crate) fn skip_op(cur: &mut Cursor<'_>) -> Step<bool> {
    let at = cur.pos;
    match cur.len("a module opcode")? {
        0 => return Ok(true),
        1 | 2 => {
            cur.len("a module integer")?;
        }
        3 => {
            cur.take(4, "a module float")?;
        }
        4 => {
            cur.take(8, "a module double")?;
        }
        5 => cur.skip_string("a module string")?,
        other => {
            cur.pos = at;
            return Err(cur.corrupt(format!("a module opcode 0–5, found {other}")));
        }
    }
    Ok(false)
}

/// Skips a whole op-stream through its EOF op.
pub(crate) fn skip_ops(cur: &mut Cursor<'_>) -> Step<()> {
    while !skip_op(cur)? {}
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn id_of(name: &str, version: u64) -> u64 {
        let mut id = 0u64;
        for b in name.bytes() {
            let idx = CHARSET.iter().position(|&c| c == b).unwrap() as u64;
            id = (id << 6) | idx;
        }
        (id << 10) | version
    }

    #[test]
    fn names_unpack_from_ids() {
        assert_eq!(module_name(id_of("ReJSON-RL", 3)), "ReJSON-RL");
        assert_eq!(module_name(id_of("MBbloom--", 0)), "MBbloom--");
        assert_eq!(module_encoding_version(id_of("MBbloom--", 7)), 7);
    }
}
