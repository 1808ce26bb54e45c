//! How many source keys a migration's filter selects, measured without loading the source.
//!
//! `SCAN` (1,000 keys a call) in each database the filter names, each key put through the same
//! [`Shape`] the engine uses (and, with a type filter, `TYPE` for the keys whose name passes),
//! stopping after [`SCAN_CALLS`] calls in all: a filter that selects nothing is a mistake worth
//! a warning, and a bounded walk finds that out on all but huge sources, where it says how much
//! it saw.

use bytes::Bytes;

use super::conn::{connect, Admin, ConnectOptions};
use crate::resp::Frame;
use crate::shape::Shape;
use crate::spec::Endpoint;
use crate::transport::Peer;

/// `SCAN` calls spent at most, over all databases.
pub const SCAN_CALLS: u32 = 50;

/// What the walk found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FilterSample {
    pub scanned: u64,
    pub matched: u64,
    /// Every key of every database the filter names was seen.
    pub complete: bool,
}

/// Walks the source; `Err` says why it could not.
pub async fn gather(
    source: &Endpoint,
    options: &ConnectOptions,
    shape: &Shape,
    dbs: &[u32],
) -> Result<FilterSample, String> {
    let peer = Peer::new(source).map_err(|e| e.to_string())?;
    let admin = connect(&peer, options).await.map_err(|e| e.to_string())?;
    let mut sample = FilterSample {
        scanned: 0,
        matched: 0,
        complete: true,
    };
    let mut calls = 0;
    for &db in dbs.iter().filter(|db| shape.db_in(**db)) {
        let db_arg = db.to_string();
        admin
            .call("SELECT", &[b"SELECT", db_arg.as_bytes()])
            .await
            .map_err(|e| e.to_string())?;
        let mut cursor = Bytes::from_static(b"0");
        loop {
            if calls == SCAN_CALLS {
                sample.complete = false;
                return Ok(sample);
            }
            calls += 1;
            let reply = admin
                .call("SCAN", &[b"SCAN", &cursor, b"COUNT", b"1000"])
                .await
                .map_err(|e| e.to_string())?;
            let (next, keys) =
                scan_reply(reply).ok_or_else(|| "SCAN returned an unexpected reply".to_string())?;
            sample.scanned += keys.len() as u64;
            sample.matched += matching(&admin, shape, db, keys).await?;
            if &next[..] == b"0" {
                break;
            }
            cursor = next;
        }
    }
    Ok(sample)
}

async fn matching(admin: &Admin, shape: &Shape, db: u32, keys: Vec<Bytes>) -> Result<u64, String> {
    let named: Vec<Bytes> = keys.into_iter().filter(|k| shape.key_in(db, k)).collect();
    if !shape.filters_types() || named.is_empty() {
        return Ok(named.len() as u64);
    }
    let types: Vec<(&str, Vec<&[u8]>)> = named
        .iter()
        .map(|k| ("TYPE", vec![b"TYPE".as_slice(), &k[..]]))
        .collect();
    let mut matched = 0;
    for reply in admin.call_many(&types).await {
        if let Frame::Simple(t) | Frame::Bulk(t) = reply.map_err(|e| e.to_string())? {
            matched += u64::from(shape.type_in(&String::from_utf8_lossy(&t)));
        }
    }
    Ok(matched)
}

fn scan_reply(reply: Frame) -> Option<(Bytes, Vec<Bytes>)> {
    let Frame::Array(mut parts) = reply else {
        return None;
    };
    let (Some(Frame::Array(keys)), Some(next)) = (parts.pop(), parts.pop()) else {
        return None;
    };
    let keys = keys
        .into_iter()
        .filter_map(|k| k.as_bytes().cloned())
        .collect();
    Some((next.as_bytes()?.clone(), keys))
}
