//! Big values streamed in pieces (`Parser::streaming_values_over`): the pieces put back together
//! are exactly the values a whole-record parse decodes, whatever the chunking, and the parser's
//! buffer stays at the threshold plus one chunk instead of growing with the value.

use std::collections::BTreeMap;

use bytes::{Bytes, BytesMut};
use ferry::rdb::{BigPart, Item, Parser, Value};

use crate::common::redis::RedisServer;
use crate::corpus;
use crate::{corpus_file, entries, parse_all};

/// Key → value, from a whole-record parse (every entry decoded).
fn whole(file: &[u8]) -> BTreeMap<(u64, Bytes), Value> {
    entries(&parse_all(file, file.len()))
        .into_iter()
        .map(|e| ((e.db, e.key.clone()), e.decode().expect("decode")))
        .collect()
}

/// Key → value, from a streaming parse fed in `chunk`-byte pieces: whole entries decoded, big
/// ones reassembled from their pieces. Also returns the most the parser ever buffered, and how
/// many keys came in pieces.
fn streamed(
    file: &[u8],
    threshold: usize,
    chunk: usize,
) -> (BTreeMap<(u64, Bytes), Value>, usize, usize) {
    let mut parser = Parser::new().streaming_values_over(threshold, false);
    let mut out = BTreeMap::new();
    let mut current: Option<((u64, Bytes), Option<Value>, BytesMut)> = None;
    let mut most = 0;
    let mut big_keys = 0;
    for piece in file.chunks(chunk) {
        parser.push(piece);
        most = most.max(parser.buffered());
        while let Some(item) = parser.next_item().expect("parse") {
            match item {
                Item::Entry(e) => {
                    out.insert((e.db, e.key.clone()), e.decode().expect("decode"));
                }
                Item::BigStart(start) => {
                    big_keys += 1;
                    current = Some(((start.db, start.key), None, BytesMut::new()));
                }
                Item::BigPart(BigPart::StringRange { offset, bytes }) => {
                    let (_, _, text) = current.as_mut().expect("inside a big value");
                    assert_eq!(offset as usize, text.len(), "ranges come in order");
                    text.extend_from_slice(&bytes);
                }
                Item::BigPart(BigPart::Elements(part)) => {
                    let (_, value, _) = current.as_mut().expect("inside a big value");
                    *value = Some(match (value.take(), part) {
                        (None, p) => p,
                        (Some(Value::List(mut a)), Value::List(b)) => {
                            a.extend(b);
                            Value::List(a)
                        }
                        (Some(Value::Set(mut a)), Value::Set(b)) => {
                            a.extend(b);
                            Value::Set(a)
                        }
                        (Some(Value::SortedSet(mut a)), Value::SortedSet(b)) => {
                            a.extend(b);
                            Value::SortedSet(a)
                        }
                        (Some(Value::Hash(mut a)), Value::Hash(b)) => {
                            a.extend(b);
                            Value::Hash(a)
                        }
                        (Some(Value::HashWithTtl(mut a)), Value::HashWithTtl(b)) => {
                            a.extend(b);
                            Value::HashWithTtl(a)
                        }
                        (a, b) => panic!("pieces of different shapes: {a:?} / {b:?}"),
                    });
                }
                Item::BigEnd => {
                    let (key, value, text) = current.take().expect("a big value ended");
                    let value = value.unwrap_or(Value::String(text.freeze()));
                    out.insert(key, value);
                }
                _ => {}
            }
        }
    }
    parser.finish().expect("complete");
    (out, most, big_keys)
}

fn assert_same_values(a: &BTreeMap<(u64, Bytes), Value>, b: &BTreeMap<(u64, Bytes), Value>) {
    assert_eq!(a.len(), b.len(), "same keys");
    for (key, value) in a {
        let other = b.get(key).unwrap_or_else(|| panic!("{key:?} missing"));
        // Scores may be NaN, which is never equal to itself: compare their bits.
        assert_eq!(
            format!("{value:?}"),
            format!("{other:?}"),
            "value of {key:?}"
        );
    }
}

#[test]
fn pieces_reassemble_to_the_whole_values_of_every_version_and_chunking() {
    for version in ["6.2", "7.4"] {
        let file = corpus_file(version, true);
        let want = whole(&file);
        // A 1 KiB threshold streams every collection and string of any size.
        for chunk in [1, 777, 65536] {
            let (got, _, big) = streamed(&file, 1024, chunk);
            assert!(big >= 3, "{version}: the big values were streamed ({big})");
            assert_same_values(&want, &got);
        }
    }
}

#[test]
fn skipping_big_values_sees_every_key_and_materialises_nothing() {
    let file = corpus_file("7.4", true);
    let want = whole(&file);
    let mut parser = Parser::new().streaming_values_over(1024, true);
    let mut keys = Vec::new();
    for piece in file.chunks(4096) {
        parser.push(piece);
        while let Some(item) = parser.next_item().expect("parse") {
            match item {
                Item::Entry(e) => keys.push((e.db, e.key)),
                Item::BigStart(s) => keys.push((s.db, s.key)),
                Item::BigPart(p) => panic!("a skipped value yielded {p:?}"),
                _ => {}
            }
        }
    }
    parser.finish().expect("complete");
    keys.sort();
    let want: Vec<_> = want.keys().cloned().collect();
    assert_eq!(keys, want);
}

/// Memory: a 24 MB string, a 300 000-element list, a 200 000-field hash, 100 000-member sets and
/// zsets, written by a real server. Whole-record parsing buffers each of them entirely; streaming
/// buffers the threshold plus one chunk.
#[test]
fn a_streaming_parse_buffers_the_threshold_not_the_value() {
    let server = RedisServer::start_with("7.2", &["--proto-max-bulk-len", "64mb"]);
    let mut c = server.conn();
    let mut x: u32 = 7;
    let noise: Vec<u8> = (0..24 << 20)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 17;
            x ^= x << 5;
            x as u8
        })
        .collect();
    let _: () = redis::cmd("SET")
        .arg("big:s")
        .arg(&noise)
        .query(&mut c)
        .unwrap();
    for batch in 0..100 {
        let mut p = redis::pipe();
        let (mut l, mut h, mut s, mut z) = (
            redis::cmd("RPUSH"),
            redis::cmd("HSET"),
            redis::cmd("SADD"),
            redis::cmd("ZADD"),
        );
        l.arg("big:l");
        h.arg("big:h");
        s.arg("big:set");
        z.arg("big:z");
        for i in 0..1000 {
            let n = batch * 1000 + i;
            l.arg(format!("element-{n}"))
                .arg(format!("second-{n}"))
                .arg(n);
            h.arg(format!("f{n}"))
                .arg(format!("value-{n}"))
                .arg(format!("g{n}"))
                .arg(n);
            s.arg(format!("set-member-{n}-padding"));
            z.arg(n as f64 / 7.0).arg(format!("z{n}"));
        }
        p.add_command(l).ignore().add_command(h).ignore();
        p.add_command(s).ignore().add_command(z).ignore();
        p.query::<()>(&mut c).unwrap();
    }
    let file = corpus::save(&server);
    let want = whole(&file);
    let threshold = 1 << 20;
    let chunk = 64 * 1024;
    let (got, most, big) = streamed(&file, threshold, chunk);
    assert_eq!(big, 5, "every big value came in pieces");
    assert_same_values(&want, &got);
    // One element at most straddles a chunk; the threshold is what triggers streaming.
    assert!(
        most <= threshold + 2 * chunk,
        "buffered {most} bytes for values of up to 24 MB (threshold {threshold}, chunk {chunk})"
    );
}
