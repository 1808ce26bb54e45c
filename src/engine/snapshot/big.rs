//! Big values on the restore path: written as they arrive, never held whole.
//!
//! The parser hands a value bigger than the big-key threshold out in pieces
//! ([`Item::BigStart`](crate::rdb::Item::BigStart), parts, end). Each piece becomes commands at
//! once: a string's bytes go out as `SETRANGE`s at their offsets (after one `SETRANGE` at the
//! last byte, which allocates the whole string on the target a single time instead of growing
//! it chunk by chunk), a collection's elements as `RPUSH` / `SADD` / `ZADD` / `HSET` runs. The
//! expiry comes last, so a key is never visible with a TTL that ends before it is complete.
//! Memory is one piece plus the writer's window, whatever the size of the value.

use bytes::Bytes;

use super::{Counts, RdbInput, Snapshot};
use crate::engine::error::{show_key, EngineError};
use crate::rdb::commands::{value_to_commands, RewriteOptions};
use crate::rdb::{BigPart, BigStart};
use crate::spec::OnConflict;

/// The big value being written.
pub(super) struct BigKey {
    db: u32,
    key: Bytes,
    type_byte: u8,
    expire_ms: Option<i64>,
    /// Expired, or kept as it is on the target (`on_conflict: skip`): its pieces are dropped.
    skip: bool,
}

fn arg(s: &'static str) -> Bytes {
    Bytes::from_static(s.as_bytes())
}

fn text(n: impl ToString) -> Bytes {
    Bytes::from(n.to_string())
}

impl<I: RdbInput> Snapshot<'_, I> {
    pub(super) async fn big_start(
        &mut self,
        start: BigStart,
        now: i64,
        counts: &mut Counts,
    ) -> Result<BigKey, EngineError> {
        let source_db = u32::try_from(start.db)
            .map_err(|_| EngineError::Rdb(format!("database number {}", start.db)))?;
        // The filter sees the source's db and name; the target gets the mapped ones.
        let source_key = Bytes::copy_from_slice(&start.key);
        let db = self.shape.target_db(source_db);
        let mut big = BigKey {
            db,
            key: self.shape.target_key(&source_key),
            type_byte: start.type_byte,
            expire_ms: start.expire_ms,
            skip: false,
        };
        if start.expire_ms.is_some_and(|at| at <= now) {
            counts.expired += 1;
            big.skip = true;
            return Ok(big);
        }
        let type_name = crate::rdb::types::data_type(start.type_byte);
        if !self.shape.key_in(source_db, &source_key) || !self.shape.type_in(type_name) {
            counts.filtered += 1;
            big.skip = true;
            return Ok(big);
        }
        if let Some(written) = self.written.as_deref_mut() {
            written.insert(db, &big.key);
        }
        match self.on_conflict {
            OnConflict::Fail | OnConflict::Skip => {
                let exists = match self.writer.cluster_exists(&big.key).await {
                    Some(found) => found?,
                    None => {
                        self.target.select(db).await.map_err(EngineError::target)?;
                        self.target
                            .call_ok(&[b"EXISTS".as_slice(), &big.key])
                            .await
                            .map_err(EngineError::target)?
                            .as_int()
                            .unwrap_or(0)
                            > 0
                    }
                };
                if exists && self.on_conflict == OnConflict::Skip {
                    counts.skipped += 1;
                    big.skip = true;
                    return Ok(big);
                }
                if exists {
                    return Err(EngineError::BusyKey {
                        db,
                        key: show_key(&big.key),
                    });
                }
            }
            OnConflict::Replace => {
                // UNLINK: the old value may be as big as the new one; freeing it must not block.
                let del = [arg("UNLINK"), big.key.clone()];
                self.writer
                    .rewrite_command(db, &big.key, &del, false)
                    .await?;
            }
            OnConflict::Flush => {}
        }
        if start.type_byte == crate::rdb::types::STRING && start.len > 0 {
            // One allocation of the whole string, zero-filled; the ranges then fill it in place.
            let presize = [
                arg("SETRANGE"),
                big.key.clone(),
                text(start.len - 1),
                Bytes::from_static(b"\0"),
            ];
            self.writer
                .rewrite_command(db, &big.key, &presize, false)
                .await?;
        }
        counts.rewritten += 1;
        Ok(big)
    }

    pub(super) async fn big_part(
        &mut self,
        big: &BigKey,
        part: BigPart,
    ) -> Result<(), EngineError> {
        if big.skip {
            return Ok(());
        }
        match part {
            BigPart::StringRange { offset, bytes } => {
                let command = [arg("SETRANGE"), big.key.clone(), text(offset), bytes];
                self.writer
                    .rewrite_command(big.db, &big.key, &command, false)
                    .await
            }
            BigPart::Elements(value) => {
                let opts = RewriteOptions {
                    max_chunk_bytes: self.tuning.rewrite_chunk_bytes,
                    max_chunk_items: self.tuning.rewrite_chunk_items,
                    target_rdb: self.servers.target_rdb,
                    drop_field_ttls: self.servers.drop_field_ttls,
                };
                let commands = value_to_commands(&big.key, &value, None, &opts).map_err(|e| {
                    EngineError::Unsupported(format!(
                        "key `{}` (db {}, type byte {}) cannot go to Redis {}: {e}",
                        show_key(&big.key),
                        big.db,
                        big.type_byte,
                        self.servers.target_version
                    ))
                })?;
                drop(value);
                for command in &commands {
                    self.writer
                        .rewrite_command(big.db, &big.key, command, false)
                        .await?;
                }
                Ok(())
            }
        }
    }

    pub(super) async fn big_end(&mut self, big: BigKey) -> Result<(), EngineError> {
        if big.skip {
            return Ok(());
        }
        // The last command completes the key (the writer counts it written when it is answered).
        let last = match big.expire_ms {
            Some(ms) => vec![arg("PEXPIREAT"), big.key.clone(), text(ms)],
            None => vec![arg("EXISTS"), big.key.clone()],
        };
        self.writer
            .rewrite_command(big.db, &big.key, &last, true)
            .await
    }
}
