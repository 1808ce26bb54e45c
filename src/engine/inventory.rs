//! The inventory of a target before the migration's first write: the names of the keys it held.
//!
//! A redone snapshot must tell the keys the target held before the migration (which keep the
//! conflict policy) from the migration's own earlier copies (which it replaces, and deletes when
//! the source no longer has them); see [`super::resume`]. A restore point would tell that too, but
//! it is optional (`options.backup`) and costs a full copy; the names alone are cheap: one `SCAN`
//! of the target, written to `data_dir/inventories/<migration id>.keys` before the first write.
//!
//! The file is private (0600: key names are customer data), written whole or not at all (a
//! `.partial` renamed after fsync), and ends with its record count and a CRC-64, so a damaged or
//! truncated one is refused rather than trusted. Ferry's bookkeeping keys (`ferry:*` in db 0) are
//! left out.
//!
//! ```text
//! "FERRYINV1\n" { db: u32 LE, len: u32 LE, key: len bytes }* 0xFFFFFFFF count: u64 LE crc64: u64 LE
//! ```

use std::path::{Path, PathBuf};

use tokio::io::{AsyncReadExt, AsyncWriteExt, BufReader, BufWriter};
use uuid::Uuid;

use super::error::EngineError;
use super::resume::{scan_reply, KeySet};
use crate::client::cluster::{master_peers, DiscoveryError};
use crate::client::{ClientError, Conn};
use crate::model::{BOOKKEEPING_PREFIX, LEASE_KEY};
use crate::rdb::crc64;
use crate::resp::Frame;
use crate::spec::Endpoint;
use crate::transport::Peer;

const MAGIC: &[u8] = b"FERRYINV1\n";
const END: u32 = u32::MAX;

/// The target's keys before the migration's first write, as far as they were recorded.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TargetBefore {
    /// Not recorded: a redone snapshot cannot tell the target's own keys from the migration's.
    Unknown,
    /// It held no keys: every key on it now is the migration's.
    Empty,
    /// Its keys are listed in this inventory file ([`load`]).
    Keys(PathBuf),
}

impl TargetBefore {
    /// The keys the target held before the migration's first write, for a snapshot redone
    /// because of `reason`; an error when they were not recorded (a redo could then destroy
    /// what the policy keeps).
    pub async fn keys(&self, reason: &str, migration: Uuid) -> Result<KeySet, EngineError> {
        match self {
            TargetBefore::Empty => Ok(KeySet::default()),
            TargetBefore::Keys(path) => load(path).await.map_err(|e| {
                EngineError::RedoUnprovable(format!(
                    "{reason}; but the list of the keys the target held before the migration \
                     cannot be read ({e}), so Ferry cannot tell them from its own and redoes \
                     nothing: roll the migration back (POST /v1/migrations/{migration}/rollback) \
                     and start a new one"
                ))
            }),
            TargetBefore::Unknown => Err(EngineError::RedoUnprovable(format!(
                "{reason}; but what the target held before the migration was not recorded, so \
                 Ferry cannot tell those keys from its own and redoes nothing that could delete \
                 or overwrite them: roll the migration back \
                 (POST /v1/migrations/{migration}/rollback) and start a new one"
            ))),
        }
    }
}

/// Why an inventory could not be taken or read.
#[derive(Debug, thiserror::Error)]
pub enum InventoryError {
    #[error(transparent)]
    Target(#[from] ClientError),
    #[error("{what}: {source}")]
    Io {
        what: String,
        #[source]
        source: std::io::Error,
    },
    /// The target's TLS settings, or its cluster's nodes, could not be used.
    #[error("{0}")]
    Peer(String),
    #[error("{0} is damaged: {1}")]
    Damaged(String, String),
}

fn io(what: impl Into<String>) -> impl FnOnce(std::io::Error) -> InventoryError {
    let what = what.into();
    move |source| InventoryError::Io { what, source }
}

/// Where migration `id`'s inventory lives under `data_dir`.
pub fn path(data_dir: &Path, id: Uuid) -> PathBuf {
    data_dir.join("inventories").join(format!("{id}.keys"))
}

/// The servers that hold `target`'s keys, and whether it is a cluster: the server itself, or
/// every master of its cluster (each holds only the keys of its slots, so one node's `SCAN`
/// would miss the rest and a redo could then take the others' keys for the migration's own).
async fn key_holders(target: &Endpoint) -> Result<(Vec<Peer>, bool), InventoryError> {
    let seed = Peer::new(target).map_err(|e| InventoryError::Peer(e.to_string()))?;
    match master_peers(&seed).await {
        Ok(None) => Ok((vec![seed], false)),
        Ok(Some(masters)) => Ok((masters, true)),
        Err(DiscoveryError::Client(e)) => Err(InventoryError::Target(e)),
        Err(e) => Err(InventoryError::Peer(e.to_string())),
    }
}

/// How many keys `target` holds, Ferry's lease aside (every master of a cluster summed), and
/// whether it is a cluster.
pub async fn count(target: &Endpoint) -> Result<(u64, bool), InventoryError> {
    let mut total = 0u64;
    let (holders, cluster) = key_holders(target).await?;
    for holder in holders {
        let mut conn = Conn::connect(&holder).await?;
        let info = conn.info("keyspace").await?;
        total += info.total_keys();
        if info.keyspace.contains_key(&0) {
            conn.select(0).await?;
            // On a cluster, only the master of the lease's slot holds it: the others answer
            // MOVED, which says just that.
            match conn
                .call(&[b"EXISTS".as_slice(), LEASE_KEY.as_bytes()])
                .await?
            {
                Frame::Integer(n) if n > 0 => total = total.saturating_sub(1),
                Frame::Integer(_) => {}
                Frame::Error(e) if e.starts_with(b"MOVED ") => {}
                other => {
                    return Err(InventoryError::Target(ClientError::NotRedis {
                        addr: conn.addr().to_string(),
                        detail: format!("EXISTS {LEASE_KEY} answered {other:?}"),
                    }))
                }
            }
        }
    }
    Ok((total, cluster))
}

/// Lists every key of `target` (bookkeeping left out; every master of a cluster) into `path`.
/// Returns how many.
pub async fn take(target: &Endpoint, path: &Path) -> Result<u64, InventoryError> {
    let dir = path.parent().unwrap_or(Path::new("."));
    crate::disk::private_dir(dir).map_err(io(format!("create {}", dir.display())))?;
    let partial = path.with_extension("keys.partial");
    let file = tokio::fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(0o600)
        .open(&partial)
        .await
        .map_err(io(format!("create {}", partial.display())))?;
    let mut out = BufWriter::new(file);
    let mut crc = 0u64;
    let mut count = 0u64;
    let written = async {
        out.write_all(MAGIC).await.map_err(io("write"))?;
        crc = crc64::update(crc, MAGIC);
        for holder in key_holders(target).await?.0 {
            let mut conn = Conn::connect(&holder).await?;
            let dbs: Vec<u32> = conn
                .info("keyspace")
                .await?
                .keyspace
                .keys()
                .copied()
                .collect();
            for db in dbs {
                conn.select(db).await?;
                let mut cursor = b"0".to_vec();
                loop {
                    let reply = conn
                        .call_ok(&[b"SCAN".as_slice(), &cursor, b"COUNT", b"1000"])
                        .await?;
                    let (next, keys) = scan_reply(reply).ok_or_else(|| ClientError::NotRedis {
                        addr: conn.addr().to_string(),
                        detail: "SCAN returned an unexpected reply".into(),
                    })?;
                    for key in keys
                        .iter()
                        .filter(|k| !(db == 0 && k.starts_with(BOOKKEEPING_PREFIX)))
                    {
                        let mut record = Vec::with_capacity(8 + key.len());
                        record.extend_from_slice(&db.to_le_bytes());
                        record.extend_from_slice(&(key.len() as u32).to_le_bytes());
                        record.extend_from_slice(key);
                        crc = crc64::update(crc, &record);
                        out.write_all(&record).await.map_err(io("write"))?;
                        count += 1;
                    }
                    if next == b"0" {
                        break;
                    }
                    cursor = next;
                }
            }
        }
        let mut trailer = END.to_le_bytes().to_vec();
        trailer.extend_from_slice(&count.to_le_bytes());
        crc = crc64::update(crc, &trailer);
        trailer.extend_from_slice(&crc.to_le_bytes());
        out.write_all(&trailer).await.map_err(io("write"))?;
        out.flush().await.map_err(io("flush"))?;
        out.get_ref().sync_all().await.map_err(io("fsync"))?;
        Ok::<(), InventoryError>(())
    };
    if let Err(e) = written.await {
        let _ = tokio::fs::remove_file(&partial).await;
        return Err(e);
    }
    tokio::fs::rename(&partial, path)
        .await
        .map_err(io(format!("rename {}", partial.display())))?;
    if let Ok(d) = tokio::fs::File::open(dir).await {
        let _ = d.sync_all().await;
    }
    Ok(count)
}

/// Reads the inventory at `path` into a [`KeySet`], checking its count and CRC.
pub async fn load(path: &Path) -> Result<KeySet, InventoryError> {
    let shown = path.display().to_string();
    let damaged = |why: &str| InventoryError::Damaged(shown.clone(), why.to_string());
    let file = tokio::fs::File::open(path)
        .await
        .map_err(io(format!("open {shown}")))?;
    let mut input = BufReader::new(file);
    let mut magic = [0u8; 10];
    input
        .read_exact(&mut magic)
        .await
        .map_err(|_| damaged("too short"))?;
    if magic != MAGIC {
        return Err(damaged("not an inventory file"));
    }
    let mut crc = crc64::update(0, &magic);
    let mut set = KeySet::default();
    let mut count = 0u64;
    loop {
        let db = input
            .read_u32_le()
            .await
            .map_err(|_| damaged("truncated"))?;
        if db == END {
            let stated = input
                .read_u64_le()
                .await
                .map_err(|_| damaged("truncated"))?;
            let mut trailer = END.to_le_bytes().to_vec();
            trailer.extend_from_slice(&stated.to_le_bytes());
            crc = crc64::update(crc, &trailer);
            let stored = input
                .read_u64_le()
                .await
                .map_err(|_| damaged("truncated"))?;
            if stored != crc || stated != count {
                return Err(damaged("its checksum or count does not match"));
            }
            return Ok(set);
        }
        let len = input
            .read_u32_le()
            .await
            .map_err(|_| damaged("truncated"))?;
        let mut key = vec![0u8; len.min(512 << 20) as usize];
        input
            .read_exact(&mut key)
            .await
            .map_err(|_| damaged("truncated"))?;
        let mut record = Vec::with_capacity(8 + key.len());
        record.extend_from_slice(&db.to_le_bytes());
        record.extend_from_slice(&len.to_le_bytes());
        record.extend_from_slice(&key);
        crc = crc64::update(crc, &record);
        set.insert(db, &key);
        count += 1;
    }
}
