//! Version-independent forms of the Redis Stack module types, for verification.
//!
//! A module value is opaque to Ferry: it moves by `RESTORE` and is compared by its `DUMP`. That
//! comparison is exact but brittle: a target whose module is another version re-encodes the value
//! on load (RedisJSON 2.6 → 2.8, RedisTimeSeries 1.10 → 1.12…), and RedisBloom's Top-K serializes
//! heap bytes it never initialized, so equal values dump differently. When the DUMPs differ, the
//! module's own read commands decide, for the types whose content they expose:
//!
//! - `ReJSON-RL`: the document (`JSON.GET key $`);
//! - `MBbloom--`, `MBbloomCF`: the filter's bits (`BF.SCANDUMP` / `CF.SCANDUMP` chunks, which also
//!   carry the geometry);
//! - `TSDB-TYPE`: every sample (`TS.RANGE - +`) and the series' settings and rules (`TS.INFO`,
//!   without the fields that describe memory rather than data);
//! - `TopK-TYPE`: `TOPK.INFO` and the heavy hitters with their counts;
//! - `TDIS-TYPE`: compression, observations, extremes and quantiles;
//! - `CMSk-TYPE`: only the geometry and the total count (`CMS.INFO`): the counters of a
//!   Count-Min sketch cannot be read back, so this one is a weaker check.
//!
//! - `vectorset` (Redis 8's vector sets): the settings `VINFO` reports, and every element with
//!   its (de-quantized) embedding and its attributes; the HNSW graph itself is rebuilt with
//!   random levels on load, so two equal sets rarely dump alike.
//!
//! Other module types have no form here: for them the DUMP comparison stays the only test.

use bytes::Bytes;

use crate::client::{ClientError, Conn};
use crate::resp::Frame;

/// Renders a reply as byte strings (arrays with a `*N` marker so that structure shows).
fn flatten(frame: Frame, out: &mut Vec<Bytes>) {
    match frame {
        Frame::Simple(b) | Frame::Bulk(b) | Frame::Error(b) => out.push(b),
        Frame::Integer(i) => out.push(Bytes::from(i.to_string())),
        Frame::Null => out.push(Bytes::from_static(b"(nil)")),
        Frame::Array(items) => {
            out.push(Bytes::from(format!("*{}", items.len())));
            for item in items {
                flatten(item, out);
            }
        }
    }
}

/// The `name, value` pairs of an `*.INFO` reply whose name is in `keep`, in reply order.
fn info_fields(reply: Frame, keep: &[&[u8]], out: &mut Vec<Bytes>) {
    let Frame::Array(items) = reply else {
        flatten(reply, out);
        return;
    };
    let mut items = items.into_iter();
    while let (Some(name), Some(value)) = (items.next(), items.next()) {
        let wanted = name.as_bytes().is_some_and(|n| keep.contains(&&n[..]));
        if wanted {
            flatten(name, out);
            flatten(value, out);
        }
    }
}

/// All chunks of `BF.SCANDUMP`/`CF.SCANDUMP` (`command`), iterator values left out.
async fn scandump(
    conn: &mut Conn,
    command: &[u8],
    key: &[u8],
    out: &mut Vec<Bytes>,
) -> Result<(), ClientError> {
    let mut iter = Bytes::from_static(b"0");
    // Bounded: a filter has few chunks; a misbehaving module must not loop us forever.
    for _ in 0..100_000 {
        let reply = conn.call_ok(&[command, key, &iter]).await?;
        let Frame::Array(parts) = reply else {
            return Ok(());
        };
        let mut parts = parts.into_iter();
        let next = parts.next().and_then(|f| match f {
            Frame::Integer(i) => Some(Bytes::from(i.to_string())),
            other => other.as_bytes().cloned(),
        });
        match next {
            Some(n) if &n[..] != b"0" => {
                if let Some(data) = parts.next() {
                    flatten(data, out);
                }
                iter = n;
            }
            _ => return Ok(()),
        }
    }
    Ok(())
}

/// The comparable form of a module value of type `kind`, or `None` for types without one.
pub(crate) async fn canonical(
    conn: &mut Conn,
    kind: &str,
    key: &[u8],
) -> Result<Option<Vec<Bytes>>, ClientError> {
    let mut out = vec![];
    match kind {
        "ReJSON-RL" => flatten(
            conn.call_ok(&[b"JSON.GET".as_slice(), key, b"$"]).await?,
            &mut out,
        ),
        "MBbloom--" => scandump(conn, b"BF.SCANDUMP", key, &mut out).await?,
        "MBbloomCF" => scandump(conn, b"CF.SCANDUMP", key, &mut out).await?,
        "TSDB-TYPE" => {
            flatten(
                conn.call_ok(&[b"TS.RANGE".as_slice(), key, b"-", b"+"])
                    .await?,
                &mut out,
            );
            let info = conn.call_ok(&[b"TS.INFO".as_slice(), key]).await?;
            let keep: [&[u8]; 8] = [
                b"totalSamples",
                b"firstTimestamp",
                b"lastTimestamp",
                b"retentionTime",
                b"duplicatePolicy",
                b"labels",
                b"sourceKey",
                b"rules",
            ];
            info_fields(info, &keep, &mut out);
        }
        "TopK-TYPE" => {
            flatten(
                conn.call_ok(&[b"TOPK.INFO".as_slice(), key]).await?,
                &mut out,
            );
            flatten(
                conn.call_ok(&[b"TOPK.LIST".as_slice(), key, b"WITHCOUNT"])
                    .await?,
                &mut out,
            );
        }
        "TDIS-TYPE" => {
            let info = conn.call_ok(&[b"TDIGEST.INFO".as_slice(), key]).await?;
            info_fields(info, &[b"Compression", b"Observations"], &mut out);
            for command in [b"TDIGEST.MIN".as_slice(), b"TDIGEST.MAX"] {
                flatten(conn.call_ok(&[command, key]).await?, &mut out);
            }
            let quantiles: [&[u8]; 7] = [
                b"TDIGEST.QUANTILE",
                key,
                b"0.01",
                b"0.25",
                b"0.5",
                b"0.75",
                b"0.99",
            ];
            flatten(conn.call_ok(&quantiles).await?, &mut out);
        }
        "CMSk-TYPE" => flatten(
            conn.call_ok(&[b"CMS.INFO".as_slice(), key]).await?,
            &mut out,
        ),
        "vectorset" => vector_set(conn, key, &mut out).await?,
        _ => return Ok(None),
    }
    Ok(Some(out))
}

/// A vector set's settings and elements, element order fixed by sorting.
async fn vector_set(conn: &mut Conn, key: &[u8], out: &mut Vec<Bytes>) -> Result<(), ClientError> {
    let info = conn.call_ok(&[b"VINFO".as_slice(), key]).await?;
    let keep: [&[u8]; 5] = [
        b"quant-type",
        b"vector-dim",
        b"projection-input-dim",
        b"size",
        b"attributes-count",
    ];
    let mut size = 0;
    if let Frame::Array(items) = &info {
        for pair in items.chunks(2) {
            if pair[0].as_bytes().is_some_and(|n| &n[..] == b"size") {
                size = pair.get(1).and_then(Frame::as_int).unwrap_or(0);
            }
        }
    }
    info_fields(info, &keep, out);
    // A positive count at least the size returns every element once.
    let count = size.max(1).to_string();
    let members = conn
        .call_ok(&[b"VRANDMEMBER".as_slice(), key, count.as_bytes()])
        .await?;
    let mut names: Vec<Bytes> = match members {
        Frame::Array(items) => items.iter().filter_map(|m| m.as_bytes().cloned()).collect(),
        other => other.as_bytes().cloned().into_iter().collect(),
    };
    names.sort();
    for name in names {
        out.push(name.clone());
        flatten(conn.call_ok(&[b"VEMB".as_slice(), key, &name]).await?, out);
        flatten(
            conn.call_ok(&[b"VGETATTR".as_slice(), key, &name]).await?,
            out,
        );
    }
    Ok(())
}
