//! `ferry rdb inspect FILE [--json]`: what is in an RDB file, without loading it anywhere.
//!
//! The file is streamed through the [`Parser`] in 1 MiB reads, so inspecting a file of any size
//! needs only as much memory as its largest key. Values are not decoded: counts and sizes come
//! from the raw records, which is also what a transfer would move.

use std::collections::BTreeMap;
use std::io::Read;
use std::path::Path;

use serde::Serialize;

use super::parser::{Item, Parser};
use super::types;
use super::RdbError;

/// Why a file could not be inspected.
#[derive(Debug, thiserror::Error)]
pub enum InspectError {
    #[error("cannot read {path}: {source}")]
    Io {
        path: String,
        #[source]
        source: std::io::Error,
    },
    #[error("{path} is not a valid RDB: {source}")]
    Rdb {
        path: String,
        #[source]
        source: RdbError,
    },
}

/// Keys and bytes (key + serialized value) of one group.
#[derive(Debug, Default, Clone, Serialize, PartialEq)]
pub struct Tally {
    pub keys: u64,
    pub bytes: u64,
}

impl Tally {
    fn add(&mut self, bytes: u64) {
        self.keys += 1;
        self.bytes += bytes;
    }
}

/// One database's contents.
#[derive(Debug, Default, Clone, Serialize, PartialEq)]
pub struct DbSummary {
    pub db: u64,
    pub keys: u64,
    pub keys_with_ttl: u64,
    pub bytes: u64,
    /// By data type (`string`, `list`, …).
    pub types: BTreeMap<&'static str, Tally>,
    /// By encoding (`listpack`, `quicklist2`, `stream-v3`, …).
    pub encodings: BTreeMap<&'static str, Tally>,
    /// By module name, for module-typed keys.
    pub modules: BTreeMap<String, Tally>,
    /// The RESIZEDB hint, if the file has one.
    pub size_hint: Option<u64>,
}

/// Everything `inspect` reports.
#[derive(Debug, Default, Clone, Serialize, PartialEq)]
pub struct Summary {
    pub file_bytes: u64,
    pub rdb_version: u16,
    pub valkey_magic: bool,
    /// AUX fields in file order (values as text; binary bytes are shown lossily).
    pub aux: Vec<(String, String)>,
    pub functions: u64,
    pub module_aux: Vec<String>,
    pub databases: Vec<DbSummary>,
    pub total_keys: u64,
    /// The stored CRC64, hex; `0x0000000000000000` means the writer did not checksum.
    pub checksum: String,
}

/// Inspects an RDB from a reader.
pub fn summarize(mut reader: impl Read) -> Result<Summary, SummarizeError> {
    let mut parser = Parser::new();
    let mut summary = Summary::default();
    let mut dbs: BTreeMap<u64, DbSummary> = BTreeMap::new();
    let mut current_db = 0;
    let mut chunk = vec![0u8; 1 << 20];
    loop {
        let n = reader.read(&mut chunk).map_err(SummarizeError::Io)?;
        if n == 0 {
            break;
        }
        summary.file_bytes += n as u64;
        parser.push(&chunk[..n]);
        while let Some(item) = parser.next_item().map_err(SummarizeError::Rdb)? {
            match item {
                Item::Header { version, .. } => {
                    summary.rdb_version = version;
                    summary.valkey_magic = parser.is_valkey();
                }
                Item::Aux { key, value } => summary.aux.push((
                    String::from_utf8_lossy(&key).into_owned(),
                    String::from_utf8_lossy(&value).into_owned(),
                )),
                Item::SelectDb { db } => {
                    current_db = db;
                    dbs.entry(db).or_insert_with(|| DbSummary {
                        db,
                        ..DbSummary::default()
                    });
                }
                Item::ResizeDb { db_size, .. } => {
                    if let Some(current) = dbs.get_mut(&current_db) {
                        current.size_hint = Some(db_size);
                    }
                }
                Item::Function { .. } => summary.functions += 1,
                Item::ModuleAux { module_name, .. } => summary.module_aux.push(module_name),
                Item::SlotInfo { .. } => {}
                Item::Entry(e) => {
                    let db = dbs.entry(e.db).or_insert_with(|| DbSummary {
                        db: e.db,
                        ..DbSummary::default()
                    });
                    let bytes = (e.key.len() + e.raw_value.len()) as u64;
                    db.keys += 1;
                    db.bytes += bytes;
                    if e.expire_ms.is_some() {
                        db.keys_with_ttl += 1;
                    }
                    db.types
                        .entry(types::data_type(e.type_byte))
                        .or_default()
                        .add(bytes);
                    db.encodings
                        .entry(types::encoding_name(e.type_byte))
                        .or_default()
                        .add(bytes);
                    if let Some(name) = e.module_name() {
                        db.modules.entry(name).or_default().add(bytes);
                    }
                    summary.total_keys += 1;
                }
                Item::End { checksum } => summary.checksum = format!("{checksum:#018x}"),
            }
        }
    }
    parser.finish().map_err(SummarizeError::Rdb)?;
    summary.databases = dbs.into_values().filter(|d| d.keys > 0).collect();
    Ok(summary)
}

/// Why [`summarize`] failed.
#[derive(Debug, thiserror::Error)]
pub enum SummarizeError {
    #[error("read failed: {0}")]
    Io(std::io::Error),
    #[error(transparent)]
    Rdb(RdbError),
}

/// Reads the RDB file at `path` and renders the inspection, as text or (with `json`) as JSON.
pub fn run(path: &Path, json: bool) -> Result<String, InspectError> {
    let shown = path.display().to_string();
    let file = std::fs::File::open(path).map_err(|source| InspectError::Io {
        path: shown.clone(),
        source,
    })?;
    let summary = summarize(file).map_err(|e| match e {
        SummarizeError::Io(source) => InspectError::Io {
            path: shown.clone(),
            source,
        },
        SummarizeError::Rdb(source) => InspectError::Rdb {
            path: shown.clone(),
            source,
        },
    })?;
    if json {
        let mut text = serde_json::to_string_pretty(&summary)
            .unwrap_or_else(|e| format!("{{\"error\":\"{e}\"}}"));
        text.push('\n');
        Ok(text)
    } else {
        Ok(render_text(&shown, &summary))
    }
}

fn render_text(path: &str, s: &Summary) -> String {
    use std::fmt::Write;
    let mut out = String::new();
    let flavour = if s.valkey_magic { "Valkey" } else { "Redis" };
    let _ = writeln!(
        out,
        "{path}: {} bytes, {flavour} RDB version {}",
        s.file_bytes, s.rdb_version
    );
    let _ = writeln!(out, "checksum: {}", s.checksum);
    if !s.aux.is_empty() {
        let _ = writeln!(out, "aux:");
        for (k, v) in &s.aux {
            let _ = writeln!(out, "  {k} = {v}");
        }
    }
    if s.functions > 0 {
        let _ = writeln!(out, "function libraries: {}", s.functions);
    }
    for name in &s.module_aux {
        let _ = writeln!(out, "module aux data: {name}");
    }
    let _ = writeln!(out, "keys: {}", s.total_keys);
    for db in &s.databases {
        let _ = writeln!(
            out,
            "db {}: {} keys ({} with TTL), {} bytes",
            db.db, db.keys, db.keys_with_ttl, db.bytes
        );
        for (name, t) in &db.types {
            let _ = writeln!(
                out,
                "  type {name:<10} {:>10} keys {:>14} bytes",
                t.keys, t.bytes
            );
        }
        for (name, t) in &db.encodings {
            let _ = writeln!(
                out,
                "  encoding {name:<15} {:>10} keys {:>14} bytes",
                t.keys, t.bytes
            );
        }
        for (name, t) in &db.modules {
            let _ = writeln!(
                out,
                "  module {name:<12} {:>10} keys {:>14} bytes",
                t.keys, t.bytes
            );
        }
    }
    out
}
