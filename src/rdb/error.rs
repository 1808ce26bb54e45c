//! The one error type of the RDB module.
//!
//! Every variant that comes from reading bytes names the absolute byte offset (counted from the first
//! byte of the magic) and what the parser expected there, so that a user holding a broken file can
//! find the spot with `xxd -s OFFSET`. Errors are `Clone` because a parser that failed keeps
//! answering with the same error instead of guessing where the next record might start.

/// What went wrong while reading an RDB, building a payload, or rewriting a value as commands.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum RdbError {
    /// The first 9 bytes are neither `REDIS00vv` nor `VALKEYvvv`.
    #[error(
        "not an RDB file: expected the magic `REDIS00vv` or `VALKEYvvv` at byte 0, found {found:?}"
    )]
    BadMagic { found: String },
    /// A version this build does not know how to read.
    #[error(
        "RDB version {version} is not supported: this build reads Redis RDB 6 to 14 and Valkey RDB 80 to 81"
    )]
    UnsupportedVersion { version: u16 },
    /// The input ended (at `finish`, or inside a complete value) before the structure did.
    #[error("RDB truncated at byte {offset}: expected {expected}, but the input ended")]
    Truncated { offset: u64, expected: &'static str },
    /// The bytes at `offset` do not form what the format requires there.
    #[error("corrupt RDB at byte {offset}: expected {expected}")]
    Corrupt { offset: u64, expected: String },
    /// A type or opcode byte this build does not know.
    #[error(
        "unknown {what} byte {byte:#04x} at byte {offset}: the file may come from a newer server than this build understands"
    )]
    UnknownByte {
        offset: u64,
        what: &'static str,
        byte: u8,
    },
    /// A type byte this build recognises but cannot read from this file: a newer format it does
    /// not parse yet, a release candidate's, or a byte that does not exist in the file's fork
    /// and version. Refused by name rather than guessed at.
    #[error(
        "value type {byte} at byte {offset} cannot be read from a {fork} RDB {version} file: it is {why}"
    )]
    UnreadableType {
        offset: u64,
        byte: u8,
        fork: super::version::Fork,
        version: u16,
        why: &'static str,
    },
    /// A length read from the input exceeds a limit (protects against absurd allocations).
    #[error("{what} of {len} bytes at byte {offset} exceeds the limit of {limit} bytes")]
    TooLarge {
        offset: u64,
        what: &'static str,
        len: u64,
        limit: u64,
    },
    /// The trailing CRC64 does not match the content.
    #[error(
        "RDB checksum mismatch: the file stores {stored:#018x} but its content hashes to {computed:#018x} (corrupt or altered in transit)"
    )]
    ChecksumMismatch { stored: u64, computed: u64 },
    /// A value that cannot be expressed as plain commands for the chosen target.
    #[error("cannot rewrite as commands: {what}")]
    Unsupported { what: String },
}

impl RdbError {
    /// Shorthand for [`RdbError::Corrupt`].
    pub(crate) fn corrupt(offset: u64, expected: impl Into<String>) -> Self {
        RdbError::Corrupt {
            offset,
            expected: expected.into(),
        }
    }
}
