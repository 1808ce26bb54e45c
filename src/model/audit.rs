//! The audit chain: every event is linked to the one before it by a SHA-256 hash, so an edit of
//! any stored event (or a removal, or a reordering) shows.
//!
//! `hash(n) = SHA-256(hex(prev_hash(n)) ‖ canonical(event n))`, where `prev_hash(n)` is
//! `hash(n - 1)` (64 zeros before the first event) and `canonical` is the event's API envelope
//! (`seq`, `aggregate_type`, `aggregate_id`, `migration_id` when set, `at`, `actor`, `type`,
//! `data`; not the hashes themselves) as compact JSON with every object's keys sorted.
//!
//! The encoding is chosen so that an auditor can check an export without Ferry: it is exactly
//! what Python's `json.dumps(event, sort_keys=True, separators=(",", ":"), ensure_ascii=False)`
//! writes for the exported object minus its two hash fields, floats included (written the way
//! Python's `repr` writes them). The README shows the ten-line script; a test runs it.

use std::fmt::Write as _;

use serde::{Deserialize, Deserializer, Serialize, Serializer};
use serde_json::Value;
use sha2::{Digest, Sha256};
use utoipa::ToSchema;

use super::event::{Event, EventWire};

/// A SHA-256 digest, shown as 64 lowercase hex digits.
#[derive(Clone, Copy, PartialEq, Eq, Hash, Default)]
pub struct Digest32(pub [u8; 32]);

impl Digest32 {
    /// The `prev_hash` of the first event of a log.
    pub const ZERO: Digest32 = Digest32([0; 32]);

    pub fn to_hex(&self) -> String {
        const DIGITS: &[u8; 16] = b"0123456789abcdef";
        let mut out = String::with_capacity(64);
        for byte in self.0 {
            out.push(DIGITS[usize::from(byte >> 4)] as char);
            out.push(DIGITS[usize::from(byte & 0x0f)] as char);
        }
        out
    }

    /// Parses 64 hex digits (either case). Nothing else: no sign, no prefix, no spaces, so one
    /// digest has one spelling in the log. Every event carries two digests, so the start-up fold
    /// of a million events parses two million of them: this works on bytes, not on substrings.
    pub fn from_hex(text: &str) -> Option<Digest32> {
        fn nibble(digit: u8) -> Option<u8> {
            match digit {
                b'0'..=b'9' => Some(digit - b'0'),
                b'a'..=b'f' => Some(digit - b'a' + 10),
                b'A'..=b'F' => Some(digit - b'A' + 10),
                _ => None,
            }
        }
        let text = text.as_bytes();
        if text.len() != 64 {
            return None;
        }
        let mut out = [0u8; 32];
        for (byte, pair) in out.iter_mut().zip(text.chunks_exact(2)) {
            *byte = (nibble(pair[0])? << 4) | nibble(pair[1])?;
        }
        Some(Digest32(out))
    }
}

impl std::fmt::Debug for Digest32 {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.to_hex())
    }
}

impl std::fmt::Display for Digest32 {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.to_hex())
    }
}

impl Serialize for Digest32 {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_str(&self.to_hex())
    }
}

impl<'de> Deserialize<'de> for Digest32 {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        /// Reads the digits where the decoder has them, without copying them into a `String`.
        struct HexDigits;

        impl serde::de::Visitor<'_> for HexDigits {
            type Value = Digest32;

            fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str("64 hex digits of a SHA-256 hash")
            }

            fn visit_str<E: serde::de::Error>(self, text: &str) -> Result<Digest32, E> {
                Digest32::from_hex(text)
                    .ok_or_else(|| E::invalid_value(serde::de::Unexpected::Str(text), &self))
            }
        }

        deserializer.deserialize_str(HexDigits)
    }
}

/// An event's place in the chain: the hash of the event before it, and its own.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ChainLink {
    pub prev_hash: Digest32,
    pub hash: Digest32,
}

/// Whether the audit chain holds.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum AuditStatus {
    Intact,
    Broken,
}

/// What a walk of the audit chain found (`GET /v1/audit/verify`, `ferry audit verify`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[schema(example = json!({"status": "intact", "events": 1042, "head_seq": 1042,
    "head_hash": "5f0c4e8f3a2b1d0e9c8b7a6f5e4d3c2b1a0f9e8d7c6b5a4f3e2d1c0b9a8f7e6d",
    "genesis_seq": 1, "genesis_prev_hash": "0000000000000000000000000000000000000000000000000000000000000000",
    "first_broken_seq": null, "problem": null}))]
pub struct AuditReport {
    pub status: AuditStatus,
    /// Events checked (up to the first broken one).
    pub events: u64,
    /// The last event whose link holds.
    pub head_seq: u64,
    /// Its hash: write it down, and a later walk proves nothing before it changed.
    #[schema(value_type = String)]
    pub head_hash: Digest32,
    /// The first event stored with its own hashes (logs written before the chain begin later).
    pub genesis_seq: u64,
    /// The `prev_hash` of that event: zeros, or the hash of the events before it.
    #[schema(value_type = String)]
    pub genesis_prev_hash: Digest32,
    /// The first event whose link does not hold, when the chain is broken.
    pub first_broken_seq: Option<u64>,
    /// What is wrong there.
    pub problem: Option<String>,
}

impl AuditReport {
    /// This report, ended at a broken link.
    pub fn broken(mut self, seq: u64, problem: String) -> AuditReport {
        self.status = AuditStatus::Broken;
        self.first_broken_seq = Some(seq);
        self.problem = Some(problem);
        self
    }
}

/// The hash of `event` when the event before it hashed to `prev`.
pub fn chain_hash(prev: &Digest32, event: &Event) -> Digest32 {
    let mut hasher = Sha256::new();
    hasher.update(prev.to_hex().as_bytes());
    hasher.update(canonical(event).as_bytes());
    Digest32(hasher.finalize().into())
}

/// The link of `event` after an event that hashed to `prev`.
pub fn link_after(prev: Digest32, event: &Event) -> ChainLink {
    ChainLink {
        prev_hash: prev,
        hash: chain_hash(&prev, event),
    }
}

/// The canonical encoding of `event`: its envelope without the hashes, keys sorted, compact.
pub fn canonical(event: &Event) -> String {
    let mut wire = EventWire::from(event);
    wire.prev_hash = None;
    wire.hash = None;
    // Serializing plain data into a `Value` cannot fail (string keys, finite numbers).
    let value = serde_json::to_value(&wire).unwrap_or(Value::Null);
    let mut out = String::with_capacity(256);
    write_canonical(&value, &mut out);
    out
}

/// Compact JSON with sorted object keys (by code point, as Python sorts `str`).
pub fn write_canonical(value: &Value, out: &mut String) {
    match value {
        Value::Null => out.push_str("null"),
        Value::Bool(b) => out.push_str(if *b { "true" } else { "false" }),
        Value::Number(n) => {
            if let Some(i) = n.as_i64() {
                let _ = write!(out, "{i}");
            } else if let Some(u) = n.as_u64() {
                let _ = write!(out, "{u}");
            } else {
                python_float(n.as_f64().unwrap_or(0.0), out);
            }
        }
        Value::String(s) => write_string(s, out),
        Value::Array(items) => {
            out.push('[');
            for (i, item) in items.iter().enumerate() {
                if i > 0 {
                    out.push(',');
                }
                write_canonical(item, out);
            }
            out.push(']');
        }
        Value::Object(map) => {
            let mut keys: Vec<&String> = map.keys().collect();
            keys.sort();
            out.push('{');
            for (i, key) in keys.into_iter().enumerate() {
                if i > 0 {
                    out.push(',');
                }
                write_string(key, out);
                out.push(':');
                write_canonical(&map[key], out);
            }
            out.push('}');
        }
    }
}

/// A JSON string as both serde_json and Python (`ensure_ascii=False`) write it: `"` and `\`
/// escaped, `\b \f \n \r \t` short, other control characters as `\u00xx`, the rest as is.
fn write_string(s: &str, out: &mut String) {
    out.push('"');
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\u{08}' => out.push_str("\\b"),
            '\u{0c}' => out.push_str("\\f"),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            c if (c as u32) < 0x20 => {
                let _ = write!(out, "\\u{:04x}", c as u32);
            }
            c => out.push(c),
        }
    }
    out.push('"');
}

/// A float as Python's `repr` writes it: the shortest digits that read back the same, in fixed
/// notation when the decimal exponent is in -4..16 (with `.0` when integral), else as `1.5e+16`
/// or `1e-05` (at least two exponent digits, always signed).
fn python_float(x: f64, out: &mut String) {
    // `{:e}` gives the shortest round-trip digits: "-1.2345e-5", "1e16", "0e0".
    let sci = format!("{x:e}");
    let (mantissa, exp) = sci.split_once('e').unwrap_or((&sci, "0"));
    let exp: i32 = exp.parse().unwrap_or(0);
    let (negative, mantissa) = match mantissa.strip_prefix('-') {
        Some(m) => (true, m),
        None => (false, mantissa),
    };
    let digits: String = mantissa.chars().filter(|c| *c != '.').collect();
    if negative {
        out.push('-');
    }
    if !(-4..16).contains(&exp) {
        out.push_str(&digits[..1]);
        if digits.len() > 1 {
            out.push('.');
            out.push_str(&digits[1..]);
        }
        let _ = write!(out, "e{}{:02}", if exp < 0 { '-' } else { '+' }, exp.abs());
    } else if exp < 0 {
        out.push_str("0.");
        for _ in 0..(-exp - 1) {
            out.push('0');
        }
        out.push_str(&digits);
    } else {
        let int_len = exp as usize + 1;
        if digits.len() <= int_len {
            out.push_str(&digits);
            for _ in digits.len()..int_len {
                out.push('0');
            }
            out.push_str(".0");
        } else {
            out.push_str(&digits[..int_len]);
            out.push('.');
            out.push_str(&digits[int_len..]);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::{AggregateType, EventKind};
    use chrono::{DateTime, Utc};
    use uuid::Uuid;

    fn float(x: f64) -> String {
        let mut out = String::new();
        python_float(x, &mut out);
        out
    }

    /// The expected strings are what CPython 3.11's `repr` prints for the same values.
    #[test]
    fn floats_are_written_as_python_writes_them() {
        let cases = [
            (0.0, "0.0"),
            (-0.0, "-0.0"),
            (1.0, "1.0"),
            (0.1, "0.1"),
            (1.5, "1.5"),
            (123.456, "123.456"),
            (0.0001, "0.0001"),
            (0.00001, "1e-05"),
            (1.25e-7, "1.25e-07"),
            (1e15, "1000000000000000.0"),
            (1e16, "1e+16"),
            (1.5e16, "1.5e+16"),
            (123456789.0, "123456789.0"),
            (-2.5e-300, "-2.5e-300"),
            (1.7976931348623157e308, "1.7976931348623157e+308"),
        ];
        for (x, expected) in cases {
            assert_eq!(float(x), expected, "{x:e}");
        }
    }

    #[test]
    fn canonical_json_sorts_keys_and_escapes_like_python() {
        let value = serde_json::json!({"b": [1, -2, 2.5, null, true], "a": {"z": "q\"\\\n\u{1}é", "y": {}}});
        let mut out = String::new();
        write_canonical(&value, &mut out);
        assert_eq!(
            out,
            r#"{"a":{"y":{},"z":"q\"\\\n\u0001é"},"b":[1,-2,2.5,null,true]}"#
        );
    }

    #[test]
    fn a_hash_covers_the_envelope_and_the_previous_hash() {
        let event = Event {
            seq: 7,
            aggregate_type: AggregateType::Migration,
            aggregate_id: Uuid::nil(),
            at: DateTime::<Utc>::from_timestamp_micros(1_700_000_000_000_001).unwrap(),
            actor: "api".into(),
            kind: EventKind::MigrationStarted {},
            chain: None,
        };
        assert_eq!(
            canonical(&event),
            r#"{"actor":"api","aggregate_id":"00000000-0000-0000-0000-000000000000","aggregate_type":"migration","at":"2023-11-14T22:13:20.000001Z","data":{},"migration_id":"00000000-0000-0000-0000-000000000000","seq":7,"type":"MigrationStarted"}"#
        );
        let first = chain_hash(&Digest32::ZERO, &event);
        let mut changed = event.clone();
        changed.actor = "eve".into();
        assert_ne!(chain_hash(&Digest32::ZERO, &changed), first);
        assert_ne!(chain_hash(&first, &event), first);
        assert_eq!(Digest32::from_hex(&first.to_hex()), Some(first));
        assert_eq!(Digest32::from_hex("zz"), None);
    }

    #[test]
    fn a_digest_has_one_spelling_of_64_hex_digits() {
        let digest = Digest32(std::array::from_fn(|i| (i as u8).wrapping_mul(37)));
        let hex = digest.to_hex();
        assert_eq!(hex.len(), 64);
        assert!(hex
            .bytes()
            .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b)));
        assert_eq!(Digest32::from_hex(&hex.to_uppercase()), Some(digest));
        // What `u8::from_str_radix` would have let through: a sign in a digit pair.
        let signed = format!("+{}", &hex[1..]);
        assert_eq!(Digest32::from_hex(&signed), None);
        assert_eq!(Digest32::from_hex(&hex[..62]), None);
        assert_eq!(Digest32::from_hex(&format!("{hex}0")), None);
        assert_eq!(Digest32::from_hex(&format!("é{}", &hex[2..])), None);
        let quoted = format!("\"{hex}\"");
        assert_eq!(serde_json::from_str::<Digest32>(&quoted).unwrap(), digest);
        let error = serde_json::from_str::<Digest32>("\"nope\"").unwrap_err();
        assert!(error.to_string().contains("64 hex digits"), "{error}");
    }
}
