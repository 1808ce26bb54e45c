//! Write commands of newer servers, rewritten into commands the target has.
//!
//! The replication stream carries commands in the form the *source* propagates. From Redis 8.0
//! on and in Valkey 8–9 some of them do not exist on an older target, or on the other fork:
//!
//! | source command | target without it gets |
//! |---|---|
//! | `HSETEX` (Redis 8.0, Valkey 9.0) | `HSET` + `HPEXPIREAT`/`HPEXPIRE`/…; `KEEPTTL` as a script that re-applies the fields' TTLs |
//! | `HGETEX` (if propagated as typed) | `HPEXPIREAT`/`HPERSIST`, or nothing for a plain read |
//! | `HGETDEL` (Valkey propagates it as typed) | `HDEL` |
//! | `HPEXPIREAT`, `HPERSIST`, … on a target without field TTLs | with `drop_field_ttls`: `HDEL` for a time already past, else nothing; without it the migration stops |
//! | `XDELEX`, `XACKDEL` (Redis 8.2) | `XDEL` / `XACK` + `XDEL` for `KEEPREF`; scripts for `DELREF` and `ACKED` |
//! | `XADD`/`XTRIM` with `KEEPREF`/`DELREF`/`ACKED` | the token dropped (`KEEPREF` is the old behaviour), or a trim script |
//! | `BITOP DIFF`/`DIFF1`/`ANDOR`/`ONE` (Redis 8.2) | a script over the strings |
//! | `SET … IFEQ`/`IFNE`/`IFDEQ`/`IFDNE` (Redis 8.4, `IFEQ` also Valkey 8.1) | `SET` without the condition |
//! | `DELEX` (Redis 8.4), `DELIFEQ` (Valkey 9.0) | `DEL` |
//! | `MSETEX` (Redis 8.4, Valkey 9.1) | one `SET … PXAT`/`KEEPTTL` per key |
//! | `VADD`, `VREM`, `VSETATTR` (Redis 8 vector sets) | nothing can hold them: the migration stops, naming command and key |
//!
//! Two facts make the rewrites exact. A source propagates a conditional write only when its
//! condition held, and the target holds the same data at that point of the stream, so the
//! condition holds there too and can be dropped (as [`super::adapt`] does for `EXPIRE … GT`).
//! And all the commands of one rewrite go to the target in the writer's same `MULTI`, so no
//! other command, and no crash, can land between them.
//!
//! A command the target has is never rewritten: a Redis 8.2 target gets `HSETEX` as it came.

use std::time::{SystemTime, UNIX_EPOCH};

use bytes::Bytes;

use super::error::{show_key, EngineError};
use super::translate_lua as lua;
use crate::rdb::version::{Fork, ServerVersion};

/// What the target can do, as far as the stream goes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct TargetProfile {
    pub server: ServerVersion,
    /// The user accepted that hash field TTLs are dropped on a target that has none.
    pub drop_field_ttls: bool,
}

impl TargetProfile {
    fn redis(&self, major: u32, minor: u32) -> bool {
        self.server.at_least(Fork::Redis, major, minor)
    }
    fn valkey(&self, major: u32, minor: u32) -> bool {
        self.server.at_least(Fork::Valkey, major, minor)
    }
    /// `HSETEX`, `HGETEX`, `HGETDEL`.
    fn hash_ex(&self) -> bool {
        self.redis(8, 0) || self.valkey(9, 0)
    }
    /// `XDELEX`, `XACKDEL`, and `KEEPREF`/`DELREF`/`ACKED` on `XADD`/`XTRIM`.
    fn stream_ref_policies(&self) -> bool {
        self.redis(8, 2)
    }
    /// `BITOP DIFF`, `DIFF1`, `ANDOR`, `ONE`.
    fn bitop_8_2(&self) -> bool {
        self.redis(8, 2)
    }
    /// `DELEX` and `SET … IFNE`/`IFDEQ`/`IFDNE`.
    fn string_cas(&self) -> bool {
        self.redis(8, 4)
    }
    fn set_ifeq(&self) -> bool {
        self.redis(8, 4) || self.valkey(8, 1)
    }
    fn delifeq(&self) -> bool {
        self.valkey(9, 0)
    }
    /// `MSETEX`: Redis 8.4; in Valkey since 9.1 as far as we checked (9.0 gets `SET`s, which is
    /// always correct).
    fn msetex(&self) -> bool {
        self.redis(8, 4) || self.valkey(9, 1)
    }
    fn vector_sets(&self) -> bool {
        self.redis(8, 0)
    }
}

/// One command to send: its arguments, and for a script the label that names it in errors
/// (`EVAL`'s first argument is the script, not the key).
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct Out {
    pub args: Vec<Bytes>,
    pub label: Option<(&'static str, Bytes)>,
}

impl Out {
    fn plain(args: Vec<Bytes>) -> Out {
        Out { args, label: None }
    }

    fn script(what: &'static str, body: &str, keys: &[&Bytes], argv: &[Bytes]) -> Out {
        let mut args = vec![b("EVAL"), Bytes::from(body.to_string()), num(keys.len())];
        args.extend(keys.iter().map(|k| (*k).clone()));
        args.extend(argv.iter().cloned());
        let key = keys.first().map(|k| (*k).clone()).unwrap_or_default();
        Out {
            args,
            label: Some((what, key)),
        }
    }
}

fn b(s: &'static str) -> Bytes {
    Bytes::from_static(s.as_bytes())
}

fn num(n: impl ToString) -> Bytes {
    Bytes::from(n.to_string())
}

fn is(arg: Option<&Bytes>, name: &str) -> bool {
    arg.is_some_and(|a| a.eq_ignore_ascii_case(name.as_bytes()))
}

fn upper(arg: &Bytes) -> String {
    String::from_utf8_lossy(arg).to_ascii_uppercase()
}

pub(crate) fn now_ms() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis() as i64)
        .unwrap_or(0)
}

/// A command the target cannot be given, naming command, key and what to do.
fn cannot(args: &[Bytes], target: &TargetProfile, why: &str) -> EngineError {
    EngineError::Unsupported(format!(
        "{} on key `{}` from the source: {why} (the target runs {})",
        upper(&args[0]),
        show_key(args.get(1).map(|k| &k[..]).unwrap_or_default()),
        target.server
    ))
}

fn malformed(args: &[Bytes], target: &TargetProfile) -> EngineError {
    cannot(
        args,
        target,
        "its arguments are not in a form this build can rewrite for an older target",
    )
}

const FIELD_TTLS: &str = "it sets hash field TTLs, which the target cannot hold; use a Redis 7.4+ \
     or Valkey 9+ target, or set `options.drop_field_ttls` to migrate the fields without their TTLs";

/// `args` as the target can take them: `Ok(None)` to send the command as it came, or the
/// commands to send instead (possibly none, when it changes nothing the target can hold).
pub(crate) fn translate(
    args: &[Bytes],
    target: &TargetProfile,
    now_ms: i64,
) -> Result<Option<Vec<Out>>, EngineError> {
    let Some(name) = args.first() else {
        return Ok(None);
    };
    // The stream's hot path: most commands are none of ours, and `SET`/`XADD` rarely carry a
    // new option. Decide that without allocating.
    if !may_translate(name, args) {
        return Ok(None);
    }
    let rewritten = match upper(name).as_str() {
        "HSETEX" => hsetex(args, target)?,
        "HGETEX" if !target.hash_ex() => hgetex(args, target, now_ms)?,
        "HGETDEL" if !target.hash_ex() => {
            let (key, fields) = fields_after(args, 2).ok_or_else(|| malformed(args, target))?;
            Some(vec![hdel(key, fields)])
        }
        "HEXPIRE" | "HPEXPIRE" | "HEXPIREAT" | "HPEXPIREAT" | "HPERSIST"
            if !target.server.has_field_ttls() =>
        {
            field_expiry_without_ttls(args, target, now_ms)?
        }
        "XDELEX" if !target.stream_ref_policies() => xdelex(args, 2, target)?,
        "XACKDEL" if !target.stream_ref_policies() => {
            let group = args.get(2).ok_or_else(|| malformed(args, target))?;
            let mut out = xdelex(args, 3, target)?.unwrap_or_default();
            let ids: Vec<Bytes> = ids_after(args, 3).unwrap_or_default();
            let mut ack = vec![b("XACK"), args[1].clone(), group.clone()];
            ack.extend(ids);
            out.insert(0, Out::plain(ack));
            Some(out)
        }
        "XADD" | "XTRIM" if !target.stream_ref_policies() => trim_policy(args, target)?,
        "BITOP" if !target.bitop_8_2() => bitop(args)?,
        "SET" => set_conditions(args, target),
        "DELEX" if !target.string_cas() => Some(vec![Out::plain(vec![b("DEL"), key(args)?])]),
        "DELIFEQ" if !target.delifeq() => Some(vec![Out::plain(vec![b("DEL"), key(args)?])]),
        "MSETEX" if !target.msetex() => Some(msetex(args, target)?),
        "VADD" | "VREM" | "VSETATTR" if !target.vector_sets() => return Err(cannot(
            args,
            target,
            "vector sets exist only in Redis 8's built-in vectorset module; use a Redis 8+ target",
        )),
        _ => None,
    };
    Ok(rewritten)
}

/// Commands [`translate`] may rewrite, by name (and for `SET`, `XADD`, `XTRIM`, `BITOP` by a
/// glance at their options).
const NAMES: [&str; 20] = [
    "HSETEX",
    "HGETEX",
    "HGETDEL",
    "HEXPIRE",
    "HPEXPIRE",
    "HEXPIREAT",
    "HPEXPIREAT",
    "HPERSIST",
    "XDELEX",
    "XACKDEL",
    "XADD",
    "XTRIM",
    "BITOP",
    "SET",
    "DELEX",
    "DELIFEQ",
    "MSETEX",
    "VADD",
    "VREM",
    "VSETATTR",
];

fn may_translate(name: &Bytes, args: &[Bytes]) -> bool {
    // Every name in the list starts with one of these letters.
    if !name
        .first()
        .is_some_and(|c| b"HXBSDMV".contains(&c.to_ascii_uppercase()))
    {
        return false;
    }
    let eq = |n: &str| name.eq_ignore_ascii_case(n.as_bytes());
    if eq("SET") {
        // IFEQ, IFNE, IFDEQ, IFDNE
        return args
            .iter()
            .skip(3)
            .any(|a| a.len() >= 4 && a[..2].eq_ignore_ascii_case(b"IF") && a.len() <= 5);
    }
    if eq("XADD") || eq("XTRIM") {
        return args.iter().skip(2).any(is_policy);
    }
    if eq("BITOP") {
        return args.get(1).is_some_and(|op| {
            !["AND", "OR", "XOR", "NOT"]
                .iter()
                .any(|o| op.eq_ignore_ascii_case(o.as_bytes()))
        });
    }
    name.len() >= 4 && name.len() <= 10 && NAMES.iter().any(|n| eq(n))
}

fn key(args: &[Bytes]) -> Result<Bytes, EngineError> {
    args.get(1)
        .cloned()
        .ok_or_else(|| EngineError::Unsupported(format!("{} without a key", upper(&args[0]))))
}

/// The key and the fields of `… FIELDS n f1 … fn` starting at `from` (the `FIELDS` token).
fn fields_after(args: &[Bytes], from: usize) -> Option<(&Bytes, &[Bytes])> {
    let at = (from..args.len()).find(|&i| is(args.get(i), "FIELDS"))?;
    let n: usize = std::str::from_utf8(args.get(at + 1)?).ok()?.parse().ok()?;
    let fields = args.get(at + 2..)?;
    (fields.len() == n).then_some((args.get(1)?, fields))
}

fn hdel(key: &Bytes, fields: &[Bytes]) -> Out {
    let mut cmd = vec![b("HDEL"), key.clone()];
    cmd.extend(fields.iter().cloned());
    Out::plain(cmd)
}

/// A field expiry option: `EX`, `PX`, `EXAT`, `PXAT` with its time, as the `H…EXPIRE…` command
/// that sets it.
fn field_expire(option: &str, time: &Bytes, key: &Bytes, fields: &[Bytes]) -> Out {
    let name = match option {
        "EX" => "HEXPIRE",
        "PX" => "HPEXPIRE",
        "EXAT" => "HEXPIREAT",
        _ => "HPEXPIREAT",
    };
    let mut cmd = vec![
        Bytes::from_static(name.as_bytes()),
        key.clone(),
        time.clone(),
        b("FIELDS"),
        num(fields.len()),
    ];
    cmd.extend(fields.iter().cloned());
    Out::plain(cmd)
}

/// `HSETEX key [NX|XX] [FNX|FXX] [EX s|PX ms|EXAT s|PXAT ms|KEEPTTL] FIELDS n f v …`
fn hsetex(args: &[Bytes], target: &TargetProfile) -> Result<Option<Vec<Out>>, EngineError> {
    let mut ttl: Option<(String, Option<Bytes>)> = None;
    let mut key_condition = false;
    let mut i = 2;
    while i < args.len() && !is(args.get(i), "FIELDS") {
        match upper(&args[i]).as_str() {
            "NX" | "XX" => key_condition = true,
            "FNX" | "FXX" => {}
            "KEEPTTL" => ttl = Some(("KEEPTTL".into(), None)),
            opt @ ("EX" | "PX" | "EXAT" | "PXAT") => {
                let time = args.get(i + 1).ok_or_else(|| malformed(args, target))?;
                ttl = Some((opt.to_string(), Some(time.clone())));
                i += 1;
            }
            _ => return Err(malformed(args, target)),
        }
        i += 1;
    }
    if target.hash_ex() {
        // Valkey's key conditions (NX/XX) are unknown to Redis' HSETEX; they held on the source.
        if !(key_condition && target.server.fork == Fork::Redis) {
            return Ok(None);
        }
        let kept: Vec<Bytes> = args
            .iter()
            .enumerate()
            .filter(|(j, a)| *j >= i || !(is(Some(a), "NX") || is(Some(a), "XX")))
            .map(|(_, a)| a.clone())
            .collect();
        return Ok(Some(vec![Out::plain(kept)]));
    }
    let n: usize = args
        .get(i + 1)
        .and_then(|n| std::str::from_utf8(n).ok()?.parse().ok())
        .ok_or_else(|| malformed(args, target))?;
    let pairs = args.get(i + 2..).unwrap_or_default();
    if pairs.len() != 2 * n || n == 0 {
        return Err(malformed(args, target));
    }
    let key = &args[1];
    let fields: Vec<Bytes> = pairs.iter().step_by(2).cloned().collect();
    let mut hset = vec![b("HSET"), key.clone()];
    hset.extend(pairs.iter().cloned());
    let field_ttls = target.server.has_field_ttls();
    Ok(Some(match ttl {
        None => vec![Out::plain(hset)],
        Some((_, None)) if field_ttls => {
            vec![Out::script(
                "HSETEX KEEPTTL",
                lua::HSET_KEEP_TTL,
                &[key],
                pairs,
            )]
        }
        // A target without field TTLs has none to keep.
        Some((_, None)) => vec![Out::plain(hset)],
        Some((option, Some(time))) if field_ttls => {
            vec![Out::plain(hset), field_expire(&option, &time, key, &fields)]
        }
        Some(_) if target.drop_field_ttls => vec![Out::plain(hset)],
        Some(_) => return Err(cannot(args, target, FIELD_TTLS)),
    }))
}

/// `HGETEX key [EX|PX|EXAT|PXAT t | PERSIST] FIELDS n f…`, should a source propagate it as
/// typed (Redis 8.2 and Valkey 9.1 send `HPEXPIREAT`/`HPERSIST`/`HDEL` instead).
fn hgetex(
    args: &[Bytes],
    target: &TargetProfile,
    now_ms: i64,
) -> Result<Option<Vec<Out>>, EngineError> {
    let (key, fields) = fields_after(args, 2).ok_or_else(|| malformed(args, target))?;
    let option = args.get(2).map(upper).unwrap_or_default();
    let out = match option.as_str() {
        "PERSIST" => {
            let mut cmd = vec![b("HPERSIST"), key.clone(), b("FIELDS"), num(fields.len())];
            cmd.extend(fields.iter().cloned());
            Out::plain(cmd)
        }
        "EX" | "PX" | "EXAT" | "PXAT" => {
            let time = args.get(3).ok_or_else(|| malformed(args, target))?;
            field_expire(&option, time, key, fields)
        }
        _ => return Ok(Some(vec![])),
    };
    if target.server.has_field_ttls() {
        return Ok(Some(vec![out]));
    }
    field_expiry_without_ttls(&out.args, target, now_ms)
}

/// `H[P]EXPIRE[AT] key t [NX|XX|GT|LT] FIELDS n f…` or `HPERSIST key FIELDS n f…` for a target
/// without field TTLs: refused, or with `drop_field_ttls` turned into what the source's data
/// does meanwhile: a time already past deletes the fields there, any other changes nothing the
/// target can hold.
fn field_expiry_without_ttls(
    args: &[Bytes],
    target: &TargetProfile,
    now_ms: i64,
) -> Result<Option<Vec<Out>>, EngineError> {
    if !target.drop_field_ttls {
        return Err(cannot(args, target, FIELD_TTLS));
    }
    let name = upper(&args[0]);
    let (key, fields) = fields_after(args, 2).ok_or_else(|| malformed(args, target))?;
    if name == "HPERSIST" {
        return Ok(Some(vec![]));
    }
    let time: i64 = args
        .get(2)
        .and_then(|t| std::str::from_utf8(t).ok()?.parse().ok())
        .ok_or_else(|| malformed(args, target))?;
    let at_ms = match name.as_str() {
        "HEXPIRE" => now_ms.saturating_add(time.saturating_mul(1000)),
        "HPEXPIRE" => now_ms.saturating_add(time),
        "HEXPIREAT" => time.saturating_mul(1000),
        _ => time,
    };
    Ok(Some(if at_ms <= now_ms {
        vec![hdel(key, fields)]
    } else {
        vec![]
    }))
}

/// The ids of `… IDS n id…` at or after `from`.
fn ids_after(args: &[Bytes], from: usize) -> Option<Vec<Bytes>> {
    let at = (from..args.len()).find(|&i| is(args.get(i), "IDS"))?;
    let n: usize = std::str::from_utf8(args.get(at + 1)?).ok()?.parse().ok()?;
    let ids = args.get(at + 2..)?;
    (ids.len() == n).then(|| ids.to_vec())
}

/// The delete half of `XDELEX key [policy] IDS …` (policy at `at`, or `IDS` there).
fn xdelex(
    args: &[Bytes],
    at: usize,
    target: &TargetProfile,
) -> Result<Option<Vec<Out>>, EngineError> {
    let ids = ids_after(args, at).ok_or_else(|| malformed(args, target))?;
    let key = &args[1];
    let policy = if is(args.get(at), "IDS") {
        "KEEPREF".to_string()
    } else {
        upper(&args[at])
    };
    Ok(Some(vec![match policy.as_str() {
        "KEEPREF" => {
            let mut cmd = vec![b("XDEL"), key.clone()];
            cmd.extend(ids);
            Out::plain(cmd)
        }
        "DELREF" => Out::script("XDEL DELREF", &lua::xdel_delref(), &[key], &ids),
        "ACKED" => Out::script("XDEL ACKED", &lua::xdel_acked(), &[key], &ids),
        _ => return Err(malformed(args, target)),
    }]))
}

fn is_policy(arg: &Bytes) -> bool {
    ["KEEPREF", "DELREF", "ACKED"]
        .iter()
        .any(|p| arg.eq_ignore_ascii_case(p.as_bytes()))
}

/// `XADD`/`XTRIM` with a reference policy, for a target without them. `KEEPREF` is what every
/// older server does, so the token goes; `DELREF` and `ACKED` run the trim as a script (for
/// `XADD`, after adding the entry without trimming).
fn trim_policy(args: &[Bytes], target: &TargetProfile) -> Result<Option<Vec<Out>>, EngineError> {
    let xadd = upper(&args[0]) == "XADD";
    // The options: XADD's end at the entry id; XTRIM's run to the end.
    let mut i = 2;
    let mut policy: Option<(usize, String)> = None;
    let mut trim: Option<(usize, usize, String, Bytes)> = None; // (start, end, strategy, threshold)
    while i < args.len() {
        let a = &args[i];
        if is_policy(a) {
            policy = Some((i, upper(a)));
            i += 1;
        } else if is(Some(a), "NOMKSTREAM") {
            i += 1;
        } else if is(Some(a), "MAXLEN") || is(Some(a), "MINID") {
            let start = i;
            let mut t = i + 1;
            if is(args.get(t), "=") || is(args.get(t), "~") {
                t += 1;
            }
            let threshold = args.get(t).ok_or_else(|| malformed(args, target))?.clone();
            let mut end = t + 1;
            if is(args.get(end), "LIMIT") {
                end += 2;
            }
            trim = Some((start, end, upper(a), threshold));
            i = end;
        } else if xadd {
            break; // the entry id: fields follow
        } else {
            return Err(malformed(args, target));
        }
    }
    let Some((at, policy)) = policy else {
        return Ok(None);
    };
    let without_token: Vec<Bytes> = args
        .iter()
        .enumerate()
        .filter(|(j, _)| *j != at)
        .map(|(_, a)| a.clone())
        .collect();
    let Some((start, end, strategy, threshold)) = trim.filter(|_| policy != "KEEPREF") else {
        return Ok(Some(vec![Out::plain(without_token)]));
    };
    let mut out = vec![];
    if xadd {
        let added: Vec<Bytes> = args
            .iter()
            .enumerate()
            .filter(|(j, _)| *j != at && !(start..end).contains(j))
            .map(|(_, a)| a.clone())
            .collect();
        out.push(Out::plain(added));
    }
    out.push(Out::script(
        if policy == "DELREF" {
            "trim DELREF"
        } else {
            "trim ACKED"
        },
        &lua::trim_with_policy(),
        &[&args[1]],
        &[Bytes::from(strategy), threshold, Bytes::from(policy)],
    ));
    Ok(Some(out))
}

/// `BITOP DIFF|DIFF1|ANDOR|ONE dest key…`; other operations go as they came.
fn bitop(args: &[Bytes]) -> Result<Option<Vec<Out>>, EngineError> {
    let op = args.get(1).map(upper).unwrap_or_default();
    if !matches!(op.as_str(), "DIFF" | "DIFF1" | "ANDOR" | "ONE") || args.len() < 4 {
        return Ok(None);
    }
    let keys: Vec<&Bytes> = args[2..].iter().collect();
    Ok(Some(vec![Out::script(
        "BITOP",
        lua::BITOP_8_2,
        &keys,
        &[Bytes::from(op)],
    )]))
}

/// `SET key value …` without the compare-and-set conditions the target lacks.
fn set_conditions(args: &[Bytes], target: &TargetProfile) -> Option<Vec<Out>> {
    let mut kept = Vec::with_capacity(args.len());
    let mut dropped = false;
    let mut i = 0;
    while i < args.len() {
        let a = &args[i];
        let known = if i < 3 {
            true
        } else if is(Some(a), "IFEQ") {
            target.set_ifeq()
        } else if ["IFNE", "IFDEQ", "IFDNE"]
            .iter()
            .any(|c| a.eq_ignore_ascii_case(c.as_bytes()))
        {
            target.string_cas()
        } else {
            true
        };
        if known {
            kept.push(a.clone());
            // Options with a value: keep the value with them.
            if i >= 3
                && ["EX", "PX", "EXAT", "PXAT", "IFEQ", "IFNE", "IFDEQ", "IFDNE"]
                    .iter()
                    .any(|o| a.eq_ignore_ascii_case(o.as_bytes()))
            {
                if let Some(v) = args.get(i + 1) {
                    kept.push(v.clone());
                }
                i += 1;
            }
        } else {
            dropped = true;
            i += 1; // the condition's value goes with it
        }
        i += 1;
    }
    dropped.then(|| vec![Out::plain(kept)])
}

/// `MSETEX numkeys k v … [NX|XX] [EX s|PX ms|EXAT s|PXAT ms|KEEPTTL]` as one `SET` per key.
fn msetex(args: &[Bytes], target: &TargetProfile) -> Result<Vec<Out>, EngineError> {
    let n: usize = args
        .get(1)
        .and_then(|n| std::str::from_utf8(n).ok()?.parse().ok())
        .ok_or_else(|| malformed(args, target))?;
    let pairs = args
        .get(2..2 + 2 * n)
        .ok_or_else(|| malformed(args, target))?;
    let mut expiry: Vec<Bytes> = vec![];
    let mut i = 2 + 2 * n;
    while i < args.len() {
        match upper(&args[i]).as_str() {
            "NX" | "XX" => {}
            "KEEPTTL" => expiry = vec![b("KEEPTTL")],
            "EX" | "PX" | "EXAT" | "PXAT" => {
                let time = args.get(i + 1).ok_or_else(|| malformed(args, target))?;
                expiry = vec![args[i].clone(), time.clone()];
                i += 1;
            }
            _ => return Err(malformed(args, target)),
        }
        i += 1;
    }
    Ok(pairs
        .chunks(2)
        .map(|kv| {
            let mut cmd = vec![b("SET"), kv[0].clone(), kv[1].clone()];
            cmd.extend(expiry.iter().cloned());
            Out::plain(cmd)
        })
        .collect())
}
