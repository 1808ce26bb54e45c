//! Comparing a big key page by page, so that verification never blocks either server for long.
//!
//! The cheap test for an ordinary key (`DUMP` on both sides) serializes the whole value in one
//! command: for a 50 MB list that is ~350 ms during which the server answers nobody, and a
//! whole-value `HGETALL` or `LRANGE 0 -1` is not much better. That would undo what the snapshot
//! did for big keys (chunked commands, each bounded to a few milliseconds), and on the source it
//! would stall production traffic at cutover. So a key above the big-key threshold is compared in
//! pages of at most `page` elements (or `page_bytes` bytes of a string), each one short command:
//!
//! - ordered types page by position on both sides: `GETRANGE`, `LRANGE`, `ZRANGE … WITHSCORES`
//!   (scores compared as doubles: versions print them differently), `XRANGE … COUNT`;
//! - unordered types walk the source with `SSCAN`/`HSCAN` and ask the target about exactly those
//!   members (`SMISMEMBER`, `HMGET`, and `HPEXPIRETIME` for field TTLs); equal cardinalities then
//!   make the sets equal (a `SCAN` may repeat an element, never skip one).
//!
//! A type without a paged reading (module values) answers `None`: the caller falls back to `DUMP`.

use bytes::Bytes;

use crate::client::{ClientError, Conn};
use crate::engine::error::EngineError;
use crate::resp::Frame;

/// Paging bounds.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Pages {
    /// Elements per page.
    pub items: usize,
    /// Bytes per page of a string.
    pub bytes: usize,
    /// Compare hash field expiries (both servers are Redis 7.4+).
    pub field_ttls: bool,
}

fn src(e: ClientError) -> EngineError {
    EngineError::source(e)
}

fn tgt(e: ClientError) -> EngineError {
    EngineError::target(e)
}

/// Calls the same command on both sides; the key (always the first argument) is the target's
/// own name there (a migration may rename keys).
async fn both(
    source: &mut Conn,
    target: &mut Conn,
    target_key: &[u8],
    args: &[&[u8]],
) -> Result<(Frame, Frame), EngineError> {
    let s = source.call_ok(args).await.map_err(src)?;
    let mut on_target = args.to_vec();
    if let Some(key) = on_target.get_mut(1) {
        *key = target_key;
    }
    let t = target.call_ok(&on_target).await.map_err(tgt)?;
    Ok((s, t))
}

fn int(frame: &Frame) -> i64 {
    frame.as_int().unwrap_or(-1)
}

fn array(frame: Frame) -> Vec<Frame> {
    match frame {
        Frame::Array(items) => items,
        _ => vec![],
    }
}

/// Whether `key` holds the same value on both sides, read in pages; `None` for a type that has
/// no paged reading.
pub(crate) async fn same_value(
    source: &mut Conn,
    target: &mut Conn,
    kind: &str,
    key: &[u8],
    target_key: &[u8],
    pages: Pages,
) -> Result<Option<bool>, EngineError> {
    let same = match kind {
        "string" => {
            same_by_position(
                source,
                target,
                key,
                target_key,
                b"STRLEN",
                pages.bytes.max(1),
                |k, a, b| vec![b"GETRANGE".to_vec(), k.to_vec(), a, b],
            )
            .await?
        }
        "list" => {
            same_by_position(
                source,
                target,
                key,
                target_key,
                b"LLEN",
                pages.items.max(1),
                |k, a, b| vec![b"LRANGE".to_vec(), k.to_vec(), a, b],
            )
            .await?
        }
        "zset" => same_zset(source, target, key, target_key, pages.items.max(1)).await?,
        "set" => same_unordered(source, target, key, target_key, pages, false).await?,
        "hash" => same_unordered(source, target, key, target_key, pages, true).await?,
        "stream" => same_stream(source, target, key, target_key, pages.items.max(1)).await?,
        _ => return Ok(None),
    };
    Ok(Some(same))
}

/// Equal lengths (`len_command`), then equal pages `[at, at + step - 1]` built by `page`.
async fn same_by_position(
    source: &mut Conn,
    target: &mut Conn,
    key: &[u8],
    target_key: &[u8],
    len_command: &[u8],
    step: usize,
    page: impl Fn(&[u8], Vec<u8>, Vec<u8>) -> Vec<Vec<u8>>,
) -> Result<bool, EngineError> {
    let (s, t) = both(source, target, target_key, &[len_command, key]).await?;
    let len = int(&s);
    if len != int(&t) {
        return Ok(false);
    }
    let mut at = 0i64;
    while at < len {
        let end = at + step as i64 - 1;
        let args = page(
            key,
            at.to_string().into_bytes(),
            end.to_string().into_bytes(),
        );
        let args: Vec<&[u8]> = args.iter().map(Vec::as_slice).collect();
        let (s, t) = both(source, target, target_key, &args).await?;
        if s != t {
            return Ok(false);
        }
        at = end + 1;
    }
    Ok(true)
}

/// Members in order, scores as doubles.
async fn same_zset(
    source: &mut Conn,
    target: &mut Conn,
    key: &[u8],
    target_key: &[u8],
    step: usize,
) -> Result<bool, EngineError> {
    let (s, t) = both(source, target, target_key, &[b"ZCARD", key]).await?;
    let len = int(&s);
    if len != int(&t) {
        return Ok(false);
    }
    let mut at = 0i64;
    while at < len {
        let (from, to) = (at.to_string(), (at + step as i64 - 1).to_string());
        let args: [&[u8]; 5] = [
            b"ZRANGE",
            key,
            from.as_bytes(),
            to.as_bytes(),
            b"WITHSCORES",
        ];
        let (s, t) = both(source, target, target_key, &args).await?;
        let (s, t) = (array(s), array(t));
        if s.len() != t.len() {
            return Ok(false);
        }
        for (i, (a, b)) in s.iter().zip(&t).enumerate() {
            let equal = if i % 2 == 1 {
                score(a).is_some() && score(a) == score(b)
            } else {
                a == b
            };
            if !equal {
                return Ok(false);
            }
        }
        at += step as i64;
    }
    Ok(true)
}

fn score(frame: &Frame) -> Option<u64> {
    let text = std::str::from_utf8(frame.as_bytes()?).ok()?;
    text.parse::<f64>().ok().map(f64::to_bits)
}

/// Sets and hashes: equal sizes, then every element the source's `SSCAN`/`HSCAN` yields is on
/// the target (with the same value and, for hashes on 7.4+, the same field expiry).
async fn same_unordered(
    source: &mut Conn,
    target: &mut Conn,
    key: &[u8],
    target_key: &[u8],
    pages: Pages,
    hash: bool,
) -> Result<bool, EngineError> {
    let (len, scan): (&[u8], &[u8]) = if hash {
        (b"HLEN", b"HSCAN")
    } else {
        (b"SCARD", b"SSCAN")
    };
    let (s, t) = both(source, target, target_key, &[len, key]).await?;
    if int(&s) != int(&t) {
        return Ok(false);
    }
    let count = pages.items.max(1).to_string();
    let mut cursor = Bytes::from_static(b"0");
    loop {
        let reply = source
            .call_ok(&[scan, key, &cursor, b"COUNT", count.as_bytes()])
            .await
            .map_err(src)?;
        let mut parts = array(reply).into_iter();
        let next = parts.next().and_then(|f| f.as_bytes().cloned());
        let found = parts.next().map(array).unwrap_or_default();
        let Some(next) = next else {
            return Err(EngineError::SourceError(format!(
                "{} returned no cursor",
                String::from_utf8_lossy(scan)
            )));
        };
        if !found.is_empty()
            && !page_on_target(source, target, key, target_key, &found, pages, hash).await?
        {
            return Ok(false);
        }
        if &next[..] == b"0" {
            return Ok(true);
        }
        cursor = next;
    }
}

/// Checks one page of source elements (members, or field/value pairs) against the target.
async fn page_on_target(
    source: &mut Conn,
    target: &mut Conn,
    key: &[u8],
    target_key: &[u8],
    found: &[Frame],
    pages: Pages,
    hash: bool,
) -> Result<bool, EngineError> {
    let elements: Vec<&[u8]> = found
        .iter()
        .filter_map(|f| f.as_bytes().map(|b| &b[..]))
        .collect();
    if !hash {
        let mut args: Vec<&[u8]> = vec![b"SMISMEMBER", target_key];
        args.extend(&elements);
        let reply = target.call_ok(&args).await.map_err(tgt)?;
        return Ok(array(reply).iter().all(|f| f.as_int() == Some(1)));
    }
    let fields: Vec<&[u8]> = elements.iter().step_by(2).copied().collect();
    let values: Vec<Frame> = found.iter().skip(1).step_by(2).cloned().collect();
    let mut args: Vec<&[u8]> = vec![b"HMGET", target_key];
    args.extend(&fields);
    if array(target.call_ok(&args).await.map_err(tgt)?) != values {
        return Ok(false);
    }
    if pages.field_ttls {
        let n = fields.len().to_string();
        let mut args: Vec<&[u8]> = vec![b"HPEXPIRETIME", key, b"FIELDS", n.as_bytes()];
        args.extend(&fields);
        // A server without field TTLs (< 7.4) answers an error: no field has an expiry there.
        let expiries = |reply: Frame| match reply {
            Frame::Array(items) => items.iter().map(int).collect(),
            _ => vec![-1; fields.len()],
        };
        let s = expiries(source.call(&args).await.map_err(src)?);
        args[1] = target_key;
        let t = expiries(target.call(&args).await.map_err(tgt)?);
        if s != t {
            return Ok(false);
        }
    }
    Ok(true)
}

/// Entries page by page (`XRANGE key (last + COUNT n`); the groups are compared by the caller's
/// canonical form, which reads only their summaries.
async fn same_stream(
    source: &mut Conn,
    target: &mut Conn,
    key: &[u8],
    target_key: &[u8],
    step: usize,
) -> Result<bool, EngineError> {
    let (s, t) = both(source, target, target_key, &[b"XLEN", key]).await?;
    if int(&s) != int(&t) {
        return Ok(false);
    }
    let count = step.to_string();
    let mut start = Bytes::from_static(b"-");
    loop {
        let args: [&[u8]; 6] = [b"XRANGE", key, &start, b"+", b"COUNT", count.as_bytes()];
        let (s, t) = both(source, target, target_key, &args).await?;
        if s != t {
            return Ok(false);
        }
        let entries = array(s);
        let last_id = entries
            .last()
            .cloned()
            .map(array)
            .and_then(|entry| entry.first().and_then(|id| id.as_bytes().cloned()));
        match last_id {
            Some(id) if entries.len() >= step => {
                // Exclusive start (Redis 6.2+): the next page begins after the last id.
                let mut next = b"(".to_vec();
                next.extend_from_slice(&id);
                start = Bytes::from(next);
            }
            _ => return Ok(true),
        }
    }
}
