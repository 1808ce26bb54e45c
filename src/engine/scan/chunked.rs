//! Reading a big key in chunks, each chunk written as it is read.
//!
//! A `DUMP` of a key of hundreds of MB would stall the source for as long as serializing it
//! takes, and its `RESTORE` would stall the target. Read in windows instead, each one short
//! command on either side:
//!
//! - strings: `GETRANGE` windows of `rewrite_chunk_bytes` → `SET`, then `APPEND`;
//! - lists: `LRANGE` windows of `rewrite_chunk_items` → `RPUSH`;
//! - sets, hashes, sorted sets: `SSCAN` / `HSCAN` / `ZSCAN` (scores as the source prints them,
//!   which `ZADD` reads back exactly) → `SADD` / `HSET` / `ZADD`; a hash's field TTLs are read
//!   with `HPEXPIRETIME` and set with `HPEXPIREAT`;
//! - then the key's TTL, `PEXPIREAT`, read after the last chunk.
//!
//! The windows are not one atomic read: the key may change between two of them. Such a change
//! publishes a notification, which marks the key dirty, and the catch-up copies it again (whole
//! or in chunks); at cutover, under the write pause, the last copy is consistent. A `SCAN` may
//! return an element twice: the adds are idempotent.

use bytes::Bytes;

use super::copy::{now_ms, Copier, Policy};
use crate::engine::error::{show_key, EngineError};
use crate::resp::Frame;

/// Types with a chunked reading.
pub(super) fn readable(kind: &str) -> bool {
    matches!(kind, "string" | "list" | "set" | "hash" | "zset")
}

fn src(e: crate::client::ClientError) -> EngineError {
    EngineError::source(e)
}

fn array(frame: Frame) -> Vec<Bytes> {
    match frame {
        Frame::Array(items) => items
            .into_iter()
            .filter_map(|f| f.as_bytes().cloned())
            .collect(),
        _ => vec![],
    }
}

/// `SSCAN`-like reply: the next cursor and the elements.
fn scan_reply(frame: Frame) -> Result<(Bytes, Vec<Bytes>), EngineError> {
    let Frame::Array(mut parts) = frame else {
        return Err(EngineError::SourceError("a *SCAN returned no array".into()));
    };
    let (Some(items), Some(next)) = (parts.pop(), parts.pop()) else {
        return Err(EngineError::SourceError(
            "a *SCAN returned a bad array".into(),
        ));
    };
    let next = next
        .as_bytes()
        .cloned()
        .unwrap_or_else(|| Bytes::from_static(b"0"));
    Ok((next, array(items)))
}

/// Holds the last command back until the next one (or the end) says whether it completes the key.
struct Out {
    held: Option<Vec<Bytes>>,
    db: u32,
    key: Bytes,
}

impl Out {
    async fn push(
        &mut self,
        copier: &mut Copier<'_>,
        command: Vec<Bytes>,
    ) -> Result<(), EngineError> {
        if let Some(prev) = self.held.replace(command) {
            copier
                .writer
                .rewrite_command(self.db, &self.key, &prev, false)
                .await?;
        }
        Ok(())
    }

    async fn finish(mut self, copier: &mut Copier<'_>) -> Result<(), EngineError> {
        if let Some(last) = self.held.take() {
            copier
                .writer
                .rewrite_command(self.db, &self.key, &last, true)
                .await?;
        }
        Ok(())
    }
}

fn command(name: &'static [u8], key: &Bytes, rest: impl IntoIterator<Item = Bytes>) -> Vec<Bytes> {
    let mut out = vec![Bytes::from_static(name), key.clone()];
    out.extend(rest);
    out
}

/// Copies `key` (of type `kind`, see [`readable`]) in chunks.
pub(super) async fn copy(
    copier: &mut Copier<'_>,
    db: u32,
    key: &Bytes,
    kind: &str,
    policy: Policy<'_>,
) -> Result<(), EngineError> {
    if !copier.make_room(db, key, policy).await? {
        return Ok(());
    }
    copier.counts.rewritten += 1;
    let mut out = Out {
        held: None,
        db,
        key: key.clone(),
    };
    let items = copier.tuning.rewrite_chunk_items.max(1);
    let bytes = copier.tuning.rewrite_chunk_bytes.max(1);
    match kind {
        "string" => {
            let mut at = 0usize;
            loop {
                let (a, b) = (at.to_string(), (at + bytes - 1).to_string());
                let part = copier
                    .source
                    .call_ok(&[b"GETRANGE".as_slice(), key, a.as_bytes(), b.as_bytes()])
                    .await
                    .map_err(src)?;
                let part = part.as_bytes().cloned().unwrap_or_default();
                if part.is_empty() && at > 0 {
                    break;
                }
                let name: &'static [u8] = if at == 0 { b"SET" } else { b"APPEND" };
                let len = part.len();
                out.push(copier, command(name, key, [part])).await?;
                if len < bytes {
                    break;
                }
                at += bytes;
            }
        }
        "list" => {
            let mut at = 0usize;
            loop {
                let (a, b) = (at.to_string(), (at + items - 1).to_string());
                let reply = copier
                    .source
                    .call_ok(&[b"LRANGE".as_slice(), key, a.as_bytes(), b.as_bytes()])
                    .await
                    .map_err(src)?;
                let part = array(reply);
                let len = part.len();
                if len > 0 {
                    out.push(copier, command(b"RPUSH", key, part)).await?;
                }
                if len < items {
                    break;
                }
                at += items;
            }
        }
        "set" | "hash" | "zset" => {
            let (scan, add): (&[u8], &'static [u8]) = match kind {
                "set" => (b"SSCAN", b"SADD"),
                "hash" => (b"HSCAN", b"HSET"),
                _ => (b"ZSCAN", b"ZADD"),
            };
            let count = items.to_string();
            let mut cursor = Bytes::from_static(b"0");
            loop {
                let reply = copier
                    .source
                    .call_ok(&[scan, key, &cursor, b"COUNT", count.as_bytes()])
                    .await
                    .map_err(src)?;
                let (next, part) = scan_reply(reply)?;
                if !part.is_empty() {
                    let args = if kind == "zset" {
                        // ZSCAN gives member, score; ZADD takes score, member.
                        part.chunks(2)
                            .flat_map(|p| [p.get(1).cloned().unwrap_or_default(), p[0].clone()])
                            .collect()
                    } else {
                        part.clone()
                    };
                    out.push(copier, command(add, key, args)).await?;
                    if kind == "hash" {
                        field_ttls(copier, &mut out, db, key, &part).await?;
                    }
                }
                if &next[..] == b"0" {
                    break;
                }
                cursor = next;
            }
        }
        _ => unreachable!("only readable kinds come here"),
    }
    let pttl = copier
        .source
        .call_ok(&[b"PTTL".as_slice(), key])
        .await
        .map_err(src)?
        .as_int()
        .unwrap_or(-1);
    if pttl >= 0 {
        let at = (now_ms() + pttl).to_string();
        out.push(copier, command(b"PEXPIREAT", key, [Bytes::from(at)]))
            .await?;
    }
    out.finish(copier).await
}

/// The field TTLs of one `HSCAN` chunk (`field, value` pairs): `HPEXPIRETIME` on the source, and
/// `HPEXPIREAT` for each field that has one. A source without field TTLs answers an error: none.
async fn field_ttls(
    copier: &mut Copier<'_>,
    out: &mut Out,
    db: u32,
    key: &Bytes,
    pairs: &[Bytes],
) -> Result<(), EngineError> {
    let fields: Vec<Bytes> = pairs.chunks(2).map(|p| p[0].clone()).collect();
    let n = fields.len().to_string();
    let mut args: Vec<&[u8]> = vec![b"HPEXPIRETIME", key, b"FIELDS", n.as_bytes()];
    args.extend(fields.iter().map(|f| &f[..]));
    let reply = copier.source.call(&args).await.map_err(src)?;
    let Frame::Array(times) = reply else {
        return Ok(());
    };
    let with_ttl: Vec<(i64, &Bytes)> = times
        .iter()
        .zip(&fields)
        .filter_map(|(t, f)| t.as_int().filter(|t| *t > 0).map(|t| (t, f)))
        .collect();
    if with_ttl.is_empty() {
        return Ok(());
    }
    if !copier.servers.target.has_field_ttls() {
        if copier.servers.drop_field_ttls {
            return Ok(());
        }
        return Err(EngineError::Unsupported(format!(
            "key `{}` (db {db}) has hash fields with TTLs, which the target ({}) cannot hold; \
             set drop_field_ttls to copy them without their TTLs",
            show_key(key),
            copier.servers.target_version
        )));
    }
    for (at, field) in with_ttl {
        let cmd = command(
            b"HPEXPIREAT",
            key,
            [
                Bytes::from(at.to_string()),
                Bytes::from_static(b"FIELDS"),
                Bytes::from_static(b"1"),
                field.clone(),
            ],
        );
        out.push(copier, cmd).await?;
    }
    Ok(())
}
