//! Values rewritten as plain commands, for targets that cannot take a `RESTORE` payload.
//!
//! That is the path for a target older than the source (it would reject the payload's version or
//! type byte), for keys over the target's `proto-max-bulk-len`, and for keys so big that one
//! `RESTORE` would block the target for too long. Each command is a list of arguments, command
//! name first. Collections are cut into chunks whose argument bytes stay under
//! [`RewriteOptions::max_chunk_bytes`] and whose element count stays under
//! [`RewriteOptions::max_chunk_items`]; one element larger than the byte limit still goes whole
//! (a string is the exception: it is written as `SETRANGE`s, the last range first).
//!
//! Nothing is deleted first: the caller decides what happens to an existing key. The expiry
//! (`PEXPIREAT`) comes last so a half-written key never expires early, and field expiries
//! (`HPEXPIREAT`) come after the fields exist.
//!
//! Streams are rebuilt with explicit ids: `XADD` per live entry, `XGROUP CREATE` with the
//! group's last delivered id (and `ENTRIESREAD` on RDB 10+ targets), `XGROUP CREATECONSUMER`
//! for every consumer, one `XCLAIM … TIME t RETRYCOUNT n FORCE JUSTID` per pending entry
//! (`JUSTID` keeps XCLAIM from counting a delivery, so `RETRYCOUNT` and `TIME` set the delivery
//! count and time exactly), and finally `XSETID` with the stored last id (plus `ENTRIESADDED` and
//! `MAXDELETEDID` on RDB 10+ targets). A pending entry whose message was deleted (`XDEL` after
//! delivery) cannot be claimed, so its id is added as a placeholder message, claimed, and
//! deleted again before `XSETID` runs; the target should not serve readers meanwhile.
//! Known limit: a consumer's seen/active time cannot be set by any command.

use std::collections::{BTreeSet, HashMap, HashSet};

use bytes::Bytes;

use super::error::RdbError;
use super::value::{Stream, StreamId, Value};

/// How to cut values into commands, and what the target understands.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RewriteOptions {
    /// Upper bound on the argument bytes of one command (elements are never split, strings are).
    pub max_chunk_bytes: usize,
    /// Upper bound on the elements (members, field/value pairs) of one command.
    pub max_chunk_items: usize,
    /// The target's RDB version: decides `XSETID ENTRIESADDED`, `ENTRIESREAD`, `HPEXPIREAT`.
    pub target_rdb: u16,
    /// On a target without hash field TTLs, write such hashes without their TTLs instead of
    /// refusing them (the user's `drop_field_ttls`).
    pub drop_field_ttls: bool,
}

impl Default for RewriteOptions {
    fn default() -> Self {
        RewriteOptions {
            max_chunk_bytes: 1 << 20,
            max_chunk_items: 1000,
            target_rdb: 12,
            drop_field_ttls: false,
        }
    }
}

/// Formats a score so that it parses back to the same `f64` (shortest round-trip form).
pub fn format_score(score: f64) -> Result<String, RdbError> {
    if score.is_nan() {
        return Err(RdbError::Unsupported {
            what: "a zset score of NaN (no server accepts it in ZADD)".into(),
        });
    }
    Ok(if score == f64::INFINITY {
        "inf".to_string()
    } else if score == f64::NEG_INFINITY {
        "-inf".to_string()
    } else {
        // Debug prints the shortest digits that round-trip, with an exponent for large/small values.
        format!("{score:?}")
    })
}

fn arg(s: impl Into<Bytes>) -> Bytes {
    s.into()
}

fn text(s: impl ToString) -> Bytes {
    Bytes::from(s.to_string())
}

fn id_arg(id: StreamId) -> Bytes {
    text(id)
}

/// Accumulates commands `head… group group …`, starting a new command when a limit would be hit.
struct Chunker<'a> {
    out: &'a mut Vec<Vec<Bytes>>,
    head: Vec<Bytes>,
    current: Vec<Bytes>,
    bytes: usize,
    items: usize,
    opts: &'a RewriteOptions,
}

impl<'a> Chunker<'a> {
    fn new(out: &'a mut Vec<Vec<Bytes>>, head: Vec<Bytes>, opts: &'a RewriteOptions) -> Self {
        Chunker {
            out,
            current: head.clone(),
            head,
            bytes: 0,
            items: 0,
            opts,
        }
    }

    fn push(&mut self, group: &[Bytes]) {
        let size: usize = group.iter().map(Bytes::len).sum();
        if self.items > 0
            && (self.bytes + size > self.opts.max_chunk_bytes
                || self.items + 1 > self.opts.max_chunk_items.max(1))
        {
            self.flush();
        }
        self.current.extend_from_slice(group);
        self.bytes += size;
        self.items += 1;
    }

    fn flush(&mut self) {
        if self.items > 0 {
            let next = self.head.clone();
            self.out.push(std::mem::replace(&mut self.current, next));
            self.bytes = 0;
            self.items = 0;
        }
    }
}

impl Drop for Chunker<'_> {
    fn drop(&mut self) {
        self.flush();
    }
}

/// Rewrites `value` stored at `key` as commands (see the module documentation).
pub fn value_to_commands(
    key: &[u8],
    value: &Value,
    expire_ms: Option<i64>,
    opts: &RewriteOptions,
) -> Result<Vec<Vec<Bytes>>, RdbError> {
    let key = Bytes::copy_from_slice(key);
    let mut out = Vec::new();
    match value {
        Value::String(s) => {
            let step = opts.max_chunk_bytes.max(1);
            if s.len() <= step {
                out.push(vec![arg("SET"), key.clone(), s.clone()]);
            } else {
                // The last chunk first: `SETRANGE` at its offset allocates the whole string once
                // (zero-filled below the offset), and the other chunks are then written in place.
                // `SET` + `APPEND`s would grow it chunk by chunk, and every time the allocator
                // has to move the string, that one `APPEND` copies all of it.
                let last = (s.len() - 1) / step * step;
                out.push(vec![arg("SETRANGE"), key.clone(), text(last), s.slice(last..)]);
                for at in (0..last).step_by(step) {
                    out.push(vec![arg("SETRANGE"), key.clone(), text(at), s.slice(at..at + step)]);
                }
            }
        }
        Value::List(items) => {
            let mut c = Chunker::new(&mut out, vec![arg("RPUSH"), key.clone()], opts);
            for item in items {
                c.push(std::slice::from_ref(item));
            }
        }
        Value::Set(items) => {
            let mut c = Chunker::new(&mut out, vec![arg("SADD"), key.clone()], opts);
            for item in items {
                c.push(std::slice::from_ref(item));
            }
        }
        Value::SortedSet(items) => {
            let mut c = Chunker::new(&mut out, vec![arg("ZADD"), key.clone()], opts);
            for (member, score) in items {
                c.push(&[text(format_score(*score)?), member.clone()]);
            }
        }
        Value::Hash(pairs) => {
            let mut c = Chunker::new(&mut out, vec![arg("HSET"), key.clone()], opts);
            for (f, v) in pairs {
                c.push(&[f.clone(), v.clone()]);
            }
        }
        Value::HashWithTtl(triples) => hash_with_ttl(&mut out, &key, triples, opts)?,
        Value::Stream(stream) => stream_commands(&mut out, &key, stream, opts)?,
        Value::Module { module_name, .. } => {
            return Err(RdbError::Unsupported {
                what: format!(
                    "a value of module {module_name} is opaque: only RESTORE into a target that loads the module can move it"
                ),
            })
        }
    }
    if let Some(ms) = expire_ms {
        out.push(vec![arg("PEXPIREAT"), key, text(ms)]);
    }
    Ok(out)
}

fn hash_with_ttl(
    out: &mut Vec<Vec<Bytes>>,
    key: &Bytes,
    triples: &[(Bytes, Bytes, Option<i64>)],
    opts: &RewriteOptions,
) -> Result<(), RdbError> {
    {
        let mut c = Chunker::new(out, vec![arg("HSET"), key.clone()], opts);
        for (f, v, _) in triples {
            c.push(&[f.clone(), v.clone()]);
        }
    }
    let mut with_ttl: Vec<(i64, &Bytes)> = triples
        .iter()
        .filter_map(|(f, _, t)| t.map(|t| (t, f)))
        .collect();
    if with_ttl.is_empty() {
        return Ok(());
    }
    if opts.target_rdb < 12 && opts.drop_field_ttls {
        return Ok(());
    }
    if opts.target_rdb < 12 {
        return Err(RdbError::Unsupported {
            what: format!(
                "hash field expiries need a Redis 7.4+ target (RDB 12), the target speaks RDB {}",
                opts.target_rdb
            ),
        });
    }
    with_ttl.sort();
    // One HPEXPIREAT per distinct time, its fields chunked.
    let mut i = 0;
    while i < with_ttl.len() {
        let at = with_ttl[i].0;
        let mut j = i;
        while j < with_ttl.len() && with_ttl[j].0 == at {
            j += 1;
        }
        for chunk in with_ttl[i..j].chunks(opts.max_chunk_items.max(1)) {
            let mut cmd = vec![
                arg("HPEXPIREAT"),
                key.clone(),
                text(at),
                arg("FIELDS"),
                text(chunk.len()),
            ];
            cmd.extend(chunk.iter().map(|(_, f)| (*f).clone()));
            out.push(cmd);
        }
        i = j;
    }
    Ok(())
}

fn stream_commands(
    out: &mut Vec<Vec<Bytes>>,
    key: &Bytes,
    stream: &Stream,
    opts: &RewriteOptions,
) -> Result<(), RdbError> {
    let modern = opts.target_rdb >= 10;
    // Pending entries whose message was deleted: XCLAIM only claims existing messages, so such
    // an id is added as a placeholder message, claimed, and deleted again afterwards.
    let live: HashSet<StreamId> = stream.entries.iter().map(|e| e.id).collect();
    let dangling: BTreeSet<StreamId> = stream
        .groups
        .iter()
        .flat_map(|g| g.pending.iter().map(|p| p.id))
        .filter(|id| !live.contains(id))
        .collect();
    let mut placeholders = dangling.iter().peekable();
    for entry in &stream.entries {
        while let Some(&&id) = placeholders.peek().filter(|id| ***id < entry.id) {
            out.push(placeholder(key, id));
            placeholders.next();
        }
        let mut cmd = Vec::with_capacity(3 + 2 * entry.fields.len());
        cmd.extend([arg("XADD"), key.clone(), id_arg(entry.id)]);
        for (f, v) in &entry.fields {
            cmd.push(f.clone());
            cmd.push(v.clone());
        }
        out.push(cmd);
    }
    for &id in placeholders {
        out.push(placeholder(key, id));
    }
    if stream.entries.is_empty() && dangling.is_empty() {
        // No entry to XADD: create the key empty through a throwaway group.
        let tmp = arg("ferry-empty-stream");
        out.push(vec![
            arg("XGROUP"),
            arg("CREATE"),
            key.clone(),
            tmp.clone(),
            arg("0"),
            arg("MKSTREAM"),
        ]);
        out.push(vec![arg("XGROUP"), arg("DESTROY"), key.clone(), tmp]);
    }
    for group in &stream.groups {
        let mut create = vec![
            arg("XGROUP"),
            arg("CREATE"),
            key.clone(),
            group.name.clone(),
            id_arg(group.last_id),
        ];
        if let (true, Some(read)) = (modern, group.entries_read) {
            create.extend([arg("ENTRIESREAD"), text(read)]);
        }
        out.push(create);
        for consumer in &group.consumers {
            out.push(vec![
                arg("XGROUP"),
                arg("CREATECONSUMER"),
                key.clone(),
                group.name.clone(),
                consumer.name.clone(),
            ]);
        }
        let owners: HashMap<StreamId, &Bytes> = group
            .consumers
            .iter()
            .flat_map(|c| c.pending.iter().map(move |id| (*id, &c.name)))
            .collect();
        for pending in &group.pending {
            let Some(&consumer) = owners.get(&pending.id) else {
                return Err(RdbError::Unsupported {
                    what: format!(
                        "pending entry {} of group {:?} has no consumer (corrupt stream)",
                        pending.id,
                        String::from_utf8_lossy(&group.name)
                    ),
                });
            };
            out.push(vec![
                arg("XCLAIM"),
                key.clone(),
                group.name.clone(),
                consumer.clone(),
                arg("0"),
                id_arg(pending.id),
                arg("TIME"),
                text(pending.delivery_time_ms),
                arg("RETRYCOUNT"),
                text(pending.delivery_count),
                arg("FORCE"),
                arg("JUSTID"),
            ]);
        }
    }
    let ids: Vec<StreamId> = dangling.into_iter().collect();
    for chunk in ids.chunks(opts.max_chunk_items.max(1)) {
        let mut xdel = vec![arg("XDEL"), key.clone()];
        xdel.extend(chunk.iter().map(|id| id_arg(*id)));
        out.push(xdel);
    }
    // Last: the XADDs (and XDELs) above moved the last id and counters; set them as stored.
    let mut setid = vec![arg("XSETID"), key.clone(), id_arg(stream.last_id)];
    if modern {
        if let (Some(added), Some(maxdel)) = (stream.entries_added, stream.max_deleted_id) {
            setid.extend([
                arg("ENTRIESADDED"),
                text(added),
                arg("MAXDELETEDID"),
                id_arg(maxdel),
            ]);
        }
    }
    if setid.len() > 3 || stream.last_id != StreamId::default() {
        out.push(setid);
    }
    Ok(())
}

/// `XADD` of a placeholder message for a pending id whose message was deleted.
fn placeholder(key: &Bytes, id: StreamId) -> Vec<Bytes> {
    vec![
        arg("XADD"),
        key.clone(),
        id_arg(id),
        arg("ferry-deleted-pending-entry"),
        arg("1"),
    ]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn scores_round_trip_exactly() {
        for s in [
            0.1,
            1.0 / 3.0,
            -2.5e-300,
            1e300,
            f64::MAX,
            f64::MIN_POSITIVE,
            5e-324,
            -0.0,
            42.0,
        ] {
            let text = format_score(s).unwrap();
            let back: f64 = text.parse().unwrap();
            assert_eq!(back.to_bits(), s.to_bits(), "{s} -> {text}");
        }
        assert_eq!(format_score(f64::INFINITY).unwrap(), "inf");
        assert_eq!(format_score(f64::NEG_INFINITY).unwrap(), "-inf");
        assert!(format_score(f64::NAN).is_err());
    }

    #[test]
    fn chunks_respect_both_limits_and_expiry_comes_last() {
        let items: Vec<Bytes> = (0..25).map(|i| text(format!("item-{i:02}"))).collect();
        let opts = RewriteOptions {
            max_chunk_bytes: 30,
            max_chunk_items: 10,
            target_rdb: 12,
            drop_field_ttls: false,
        };
        let cmds = value_to_commands(b"k", &Value::List(items.clone()), Some(123), &opts).unwrap();
        let mut replayed = Vec::new();
        for cmd in &cmds[..cmds.len() - 1] {
            assert_eq!(cmd[0], "RPUSH");
            let args = &cmd[2..];
            assert!(args.len() <= 10 && args.iter().map(Bytes::len).sum::<usize>() <= 30);
            replayed.extend_from_slice(args);
        }
        assert_eq!(replayed, items);
        assert_eq!(
            cmds.last().unwrap(),
            &vec![arg("PEXPIREAT"), arg("k"), arg("123")]
        );
    }

    #[test]
    fn big_strings_are_allocated_once_then_filled_in_place() {
        let s: Bytes = (0..25u8).collect::<Vec<u8>>().into();
        let opts = RewriteOptions {
            max_chunk_bytes: 10,
            ..RewriteOptions::default()
        };
        let cmds = value_to_commands(b"k", &Value::String(s.clone()), None, &opts).unwrap();
        let shape: Vec<(Bytes, Bytes, usize)> = cmds
            .iter()
            .map(|c| (c[0].clone(), c[2].clone(), c[3].len()))
            .collect();
        assert_eq!(
            shape,
            vec![
                (arg("SETRANGE"), arg("20"), 5),
                (arg("SETRANGE"), arg("0"), 10),
                (arg("SETRANGE"), arg("10"), 10),
            ]
        );
        // Replaying the ranges gives back the string.
        let mut rebuilt = vec![0u8; 25];
        for c in &cmds {
            let at: usize = std::str::from_utf8(&c[2]).unwrap().parse().unwrap();
            rebuilt[at..at + c[3].len()].copy_from_slice(&c[3]);
        }
        assert_eq!(rebuilt, s);
        // Exactly one chunk's worth is still one SET.
        let ten = Bytes::from(vec![b'x'; 10]);
        let cmds = value_to_commands(b"k", &Value::String(ten), None, &opts).unwrap();
        assert_eq!(cmds[0][0], arg("SET"));
    }

    #[test]
    fn field_ttls_need_a_74_target() {
        let v = Value::HashWithTtl(vec![(arg("f"), arg("v"), Some(99))]);
        let old = RewriteOptions {
            target_rdb: 11,
            ..RewriteOptions::default()
        };
        assert!(matches!(
            value_to_commands(b"k", &v, None, &old),
            Err(RdbError::Unsupported { .. })
        ));
        let dropping = RewriteOptions {
            drop_field_ttls: true,
            ..old
        };
        assert_eq!(
            value_to_commands(b"k", &v, None, &dropping).unwrap(),
            vec![vec![arg("HSET"), arg("k"), arg("f"), arg("v")]],
            "the fields stay, without their TTLs"
        );
        let cmds = value_to_commands(b"k", &v, None, &RewriteOptions::default()).unwrap();
        assert_eq!(
            cmds[1],
            vec![
                arg("HPEXPIREAT"),
                arg("k"),
                arg("99"),
                arg("FIELDS"),
                arg("1"),
                arg("f")
            ]
        );
    }
}
