//! Writing an RDB file so that a file with the final name is always complete.
//!
//! Bytes go to `<id>.rdb.partial` while they arrive, and through three observers on the way: the
//! RDB [`Parser`] (which proves the bytes are a whole, valid RDB and counts keys per database),
//! CRC-64 and SHA-256. Only when the parser has seen the end marker (and verified the RDB's own
//! trailing checksum) is the file fsynced, renamed to `<id>.rdb`, and the directory fsynced. A
//! crash, a kill -9, a full disk or a corrupt input at any point before that leaves at most a
//! `.partial` file, which no reader trusts and the next start sweeps away.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use sha2::{Digest, Sha256};
use tokio::io::AsyncWriteExt;
use uuid::Uuid;

use super::BackupError;
use crate::model::BackupDb;
use crate::rdb::{crc64, Item, Parser, RdbError};

/// The RDB's checksum trailer.
const TRAILER: usize = 8;

/// The suffix of a file still being written.
pub const PARTIAL_SUFFIX: &str = ".rdb.partial";

/// Where the complete file of backup `id` lives.
pub fn final_path(dir: &Path, id: Uuid) -> PathBuf {
    dir.join(format!("{id}.rdb"))
}

fn partial_path(dir: &Path, id: Uuid) -> PathBuf {
    dir.join(format!("{id}{PARTIAL_SUFFIX}"))
}

/// What a finished file holds.
#[derive(Debug, Clone, PartialEq)]
pub struct FileFacts {
    pub path: PathBuf,
    pub bytes: u64,
    pub rdb_version: u16,
    pub crc64: String,
    pub sha256: String,
    pub databases: Vec<BackupDb>,
}

/// A file being written. Dropping it before [`RdbFileWriter::finish`] removes the partial file.
pub struct RdbFileWriter {
    partial: PathBuf,
    final_path: PathBuf,
    file: Option<tokio::fs::File>,
    parser: Parser,
    /// CRC-64 of everything but the last 8 bytes seen (`tail`): at the end, of everything but
    /// the RDB's trailer, which is the value Redis stores in that trailer.
    crc: u64,
    tail: Vec<u8>,
    sha: Sha256,
    bytes: u64,
    max_bytes: u64,
    keys: BTreeMap<u64, u64>,
    db: u64,
    /// Check every value as deeply as Redis's `sanitize-dump-payload yes` (uploads: a file
    /// from anywhere; a capture comes from the server itself).
    deep: bool,
}

impl RdbFileWriter {
    /// Creates `<id>.rdb.partial` in `dir` (creating `dir`). `max_bytes` caps the file.
    pub async fn create(dir: &Path, id: Uuid, max_bytes: u64) -> Result<Self, BackupError> {
        crate::disk::private_dir(dir)
            .map_err(|e| BackupError::io(format!("create {}", dir.display()), e))?;
        let partial = partial_path(dir, id);
        // 0600 from the first byte: a backup is a full copy of customer data.
        let file = tokio::fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(0o600)
            .open(&partial)
            .await
            .map_err(|e| BackupError::io(format!("create {}", partial.display()), e))?;
        Ok(RdbFileWriter {
            partial,
            final_path: final_path(dir, id),
            file: Some(file),
            parser: Parser::new(),
            crc: 0,
            tail: Vec::with_capacity(8),
            sha: Sha256::new(),
            bytes: 0,
            max_bytes,
            keys: BTreeMap::new(),
            db: 0,
            deep: false,
        })
    }

    /// Checks every value deeply as it arrives (see [`crate::rdb::sanitize`]): for files that
    /// come from outside, so that a corrupt one is refused before it is stored, not half-way
    /// through a migration from it.
    pub fn deep(mut self) -> Self {
        self.deep = true;
        self
    }

    /// Caps what one LZF string may claim to decompress to (`max_decompressed_bytes`).
    pub fn with_max_decompressed(mut self, max: u64) -> Self {
        self.parser = std::mem::take(&mut self.parser).with_max_decompressed(max);
        self
    }

    /// Bytes written so far.
    pub fn bytes(&self) -> u64 {
        self.bytes
    }

    /// Appends a chunk: checks the cap, parses it, hashes it, writes it.
    pub async fn write(&mut self, chunk: &[u8]) -> Result<(), BackupError> {
        let after = self.bytes + chunk.len() as u64;
        if after > self.max_bytes {
            return Err(BackupError::TooLarge {
                limit: self.max_bytes,
            });
        }
        self.parser.push(chunk);
        loop {
            match self.parser.next_item() {
                Ok(Some(Item::SelectDb { db })) => self.db = db,
                Ok(Some(Item::Entry(entry))) => {
                    if self.deep {
                        crate::rdb::sanitize::check_entry(&entry)
                            .map_err(|e| corrupt(e, entry.value_offset))?;
                    }
                    *self.keys.entry(entry.db).or_default() += 1
                }
                Ok(Some(_)) => {}
                Ok(None) => break,
                Err(e) => return Err(corrupt(e, self.parser.offset())),
            }
        }
        self.crc_all_but_trailer(chunk);
        self.sha.update(chunk);
        let file = self.file.as_mut().ok_or(BackupError::Closed)?;
        file.write_all(chunk)
            .await
            .map_err(|e| BackupError::io(format!("write {}", self.partial.display()), e))?;
        self.bytes = after;
        Ok(())
    }

    fn crc_all_but_trailer(&mut self, chunk: &[u8]) {
        (self.crc, self.tail) = crc_but_trailer(self.crc, std::mem::take(&mut self.tail), chunk);
    }

    /// Checks the RDB ended, then makes the file durable under its final name.
    pub async fn finish(mut self) -> Result<FileFacts, BackupError> {
        self.parser.finish().map_err(|e| corrupt(e, self.bytes))?;
        let rdb_version = self.parser.rdb_version().unwrap_or(0);
        let mut file = self.file.take().ok_or(BackupError::Closed)?;
        let shown = self.partial.display().to_string();
        file.flush()
            .await
            .map_err(|e| BackupError::io(format!("flush {shown}"), e))?;
        file.sync_all()
            .await
            .map_err(|e| BackupError::io(format!("fsync {shown}"), e))?;
        drop(file);
        tokio::fs::rename(&self.partial, &self.final_path)
            .await
            .map_err(|e| BackupError::io(format!("rename {shown}"), e))?;
        if let Some(dir) = self.final_path.parent() {
            // The rename is durable only once the directory entry is.
            if let Ok(d) = tokio::fs::File::open(dir).await {
                let _ = d.sync_all().await;
            }
        }
        let sha = std::mem::take(&mut self.sha).finalize();
        Ok(FileFacts {
            path: self.final_path.clone(),
            bytes: self.bytes,
            rdb_version,
            crc64: format!("{:016x}", self.crc),
            sha256: sha.iter().map(|b| format!("{b:02x}")).collect(),
            databases: self
                .keys
                .iter()
                .map(|(&db, &keys)| BackupDb { db, keys })
                .collect(),
        })
    }
}

impl Drop for RdbFileWriter {
    fn drop(&mut self) {
        // Not finished: nothing half-stored stays behind.
        if self.file.take().is_some() {
            let _ = std::fs::remove_file(&self.partial);
        }
    }
}

/// Folds `chunk` into `crc`, holding back the last 8 bytes seen (`tail`): at the end, `crc` is
/// the CRC-64 of everything but the RDB's trailer, the value Redis stores in that trailer.
fn crc_but_trailer(mut crc: u64, tail: Vec<u8>, chunk: &[u8]) -> (u64, Vec<u8>) {
    let total = tail.len() + chunk.len();
    if total <= TRAILER {
        let mut tail = tail;
        tail.extend_from_slice(chunk);
        return (crc, tail);
    }
    let settled = total - TRAILER;
    let from_tail = settled.min(tail.len());
    crc = crc64::update(crc, &tail[..from_tail]);
    let from_chunk = settled - from_tail;
    crc = crc64::update(crc, &chunk[..from_chunk]);
    let mut rest = tail[from_tail..].to_vec();
    rest.extend_from_slice(&chunk[from_chunk..]);
    (crc, rest)
}

/// What a stored file must be, as recorded when it was written.
#[derive(Debug, Clone, PartialEq)]
pub struct Expected {
    pub bytes: u64,
    /// CRC-64 of all but the trailer, hex.
    pub crc64: String,
    /// SHA-256 of the whole file, hex.
    pub sha256: String,
}

/// Reads the whole file at `path` and proves it is the file recorded: parsed to its end (the
/// RDB's own trailer checked), the size, CRC-64 and SHA-256 recorded at capture or upload. Only
/// then is anything destroyed for it (a flush before a restore). Returns the file open and
/// rewound, so the load reads the very bytes just proven even if the path is replaced or
/// deleted meanwhile.
pub async fn prove(path: &Path, expected: &Expected) -> Result<tokio::fs::File, BackupError> {
    use tokio::io::{AsyncReadExt, AsyncSeekExt};
    let shown = path.display().to_string();
    let mut file = tokio::fs::File::open(path)
        .await
        .map_err(|e| BackupError::io(format!("open {shown}"), e))?;
    let mut parser = Parser::new();
    let mut sha = Sha256::new();
    let (mut crc, mut tail) = (0u64, Vec::with_capacity(TRAILER));
    let mut bytes = 0u64;
    let mut buf = vec![0u8; 1 << 20];
    loop {
        let n = file
            .read(&mut buf)
            .await
            .map_err(|e| BackupError::io(format!("read {shown}"), e))?;
        if n == 0 {
            break;
        }
        let chunk = &buf[..n];
        bytes += n as u64;
        sha.update(chunk);
        (crc, tail) = crc_but_trailer(crc, tail, chunk);
        parser.push(chunk);
        loop {
            match parser.next_item() {
                Ok(Some(_)) => {}
                Ok(None) => break,
                Err(e) => return Err(corrupt(e, parser.offset())),
            }
        }
    }
    parser.finish().map_err(|e| corrupt(e, bytes))?;
    let sha: String = sha.finalize().iter().map(|b| format!("{b:02x}")).collect();
    let crc = format!("{crc:016x}");
    let mismatch = |what: &str, found: &dyn std::fmt::Display, recorded: &dyn std::fmt::Display| {
        BackupError::Mismatch(format!(
            "{shown} is not the file that was recorded: its {what} is {found}, the record says \
             {recorded}"
        ))
    };
    if bytes != expected.bytes {
        return Err(mismatch("size", &bytes, &expected.bytes));
    }
    if !expected.crc64.is_empty() && crc != expected.crc64 {
        return Err(mismatch("CRC-64", &crc, &expected.crc64));
    }
    if !expected.sha256.is_empty() && sha != expected.sha256 {
        return Err(mismatch("SHA-256", &sha, &expected.sha256));
    }
    file.rewind()
        .await
        .map_err(|e| BackupError::io(format!("rewind {shown}"), e))?;
    Ok(file)
}

/// The byte offset an RDB error names (or `fallback` when it names none).
fn corrupt(e: RdbError, fallback: u64) -> BackupError {
    let offset = match &e {
        RdbError::Truncated { offset, .. }
        | RdbError::Corrupt { offset, .. }
        | RdbError::UnknownByte { offset, .. }
        | RdbError::UnreadableType { offset, .. }
        | RdbError::TooLarge { offset, .. } => *offset,
        _ => fallback,
    };
    BackupError::Corrupt {
        offset,
        message: e.to_string(),
    }
}

/// Removes `.partial` files a crash left behind. Returns how many went.
pub fn sweep_partials(dir: &Path) -> usize {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return 0;
    };
    entries
        .flatten()
        .filter(|e| e.file_name().to_string_lossy().ends_with(PARTIAL_SUFFIX))
        .filter(|e| std::fs::remove_file(e.path()).is_ok())
        .count()
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The smallest valid RDB: magic, the end opcode, and the CRC of both (little endian).
    fn empty_rdb() -> Vec<u8> {
        let mut rdb = b"REDIS0009\xff".to_vec();
        let crc = crc64::checksum(&rdb);
        rdb.extend_from_slice(&crc.to_le_bytes());
        rdb
    }

    fn names(dir: &Path) -> Vec<String> {
        let mut names: Vec<String> = std::fs::read_dir(dir)
            .unwrap()
            .flatten()
            .map(|e| e.file_name().to_string_lossy().into_owned())
            .collect();
        names.sort();
        names
    }

    #[tokio::test]
    async fn a_complete_rdb_is_renamed_with_its_checksums() {
        let dir = tempfile::tempdir().unwrap();
        let id = Uuid::now_v7();
        let rdb = empty_rdb();
        let mut writer = RdbFileWriter::create(dir.path(), id, 1024).await.unwrap();
        // Byte by byte: chunk boundaries do not matter.
        for b in &rdb {
            writer.write(std::slice::from_ref(b)).await.unwrap();
        }
        assert_eq!(names(dir.path()), [format!("{id}{PARTIAL_SUFFIX}")]);
        let facts = writer.finish().await.unwrap();
        assert_eq!(names(dir.path()), [format!("{id}.rdb")]);
        assert_eq!(std::fs::read(&facts.path).unwrap(), rdb);
        assert_eq!(facts.bytes, rdb.len() as u64);
        assert_eq!(facts.rdb_version, 9);
        // The CRC of the content, which is what the trailer stores.
        let content = crc64::checksum(&rdb[..rdb.len() - 8]);
        assert_eq!(facts.crc64, format!("{content:016x}"));
        assert_eq!(content.to_le_bytes(), rdb[rdb.len() - 8..]);
        assert_eq!(facts.sha256.len(), 64);
        assert!(facts.databases.is_empty());
    }

    #[tokio::test]
    async fn an_unfinished_or_refused_file_leaves_nothing() {
        let dir = tempfile::tempdir().unwrap();
        let rdb = empty_rdb();

        let mut dropped = RdbFileWriter::create(dir.path(), Uuid::now_v7(), 1024)
            .await
            .unwrap();
        dropped.write(&rdb[..5]).await.unwrap();
        drop(dropped);
        assert!(names(dir.path()).is_empty());

        let mut truncated = RdbFileWriter::create(dir.path(), Uuid::now_v7(), 1024)
            .await
            .unwrap();
        truncated.write(&rdb[..9]).await.unwrap();
        match truncated.finish().await {
            Err(BackupError::Corrupt { offset: 9, .. }) => {}
            other => panic!("expected a truncation at byte 9, got {other:?}"),
        }
        assert!(names(dir.path()).is_empty());

        let mut capped = RdbFileWriter::create(dir.path(), Uuid::now_v7(), 8)
            .await
            .unwrap();
        assert!(matches!(
            capped.write(&rdb).await,
            Err(BackupError::TooLarge { limit: 8 })
        ));
        drop(capped);
        assert!(names(dir.path()).is_empty());
    }

    #[test]
    fn sweeping_removes_only_partial_files() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join(format!("a{PARTIAL_SUFFIX}")), b"x").unwrap();
        std::fs::write(dir.path().join("b.rdb"), b"x").unwrap();
        assert_eq!(sweep_partials(dir.path()), 1);
        assert_eq!(names(dir.path()), ["b.rdb"]);
        assert_eq!(sweep_partials(&dir.path().join("missing")), 0);
    }
}
