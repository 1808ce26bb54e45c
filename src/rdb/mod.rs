//! RDB: a streaming parser for RDB versions 6–12, DUMP payloads, and values rewritten as commands.

pub mod inspect;
pub mod version;
