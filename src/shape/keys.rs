//! Where the keys are in a command of the replication stream.
//!
//! A filter must know every key a command touches: a command it cannot read fully would either
//! leak keys that should stay behind or lose writes to keys that should move. So the table below
//! covers the write commands a source propagates (Redis 6.2 to 8.x, Valkey 7 to 9), and anything
//! else is [`Keys::Unknown`]: the stream stops, naming it, rather than guess. (The engine's other
//! tables, in `translate` and `adapt`, classify commands by what a target lacks, not by keys.)
//!
//! Positions are indexes into the command's arguments (0 is the command's name).

use bytes::Bytes;

/// The keys of one command.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Keys {
    /// A command about no key (`PUBLISH`, `SCRIPT LOAD`, `FUNCTION LOAD`, …).
    None,
    /// The positions of its keys.
    At(Vec<usize>),
    /// A command this table does not know, or a form of it that reads keys it does not name
    /// (`SORT … BY pattern`).
    Unknown,
}

fn upper(arg: &Bytes) -> String {
    String::from_utf8_lossy(arg).to_ascii_uppercase()
}

fn number(args: &[Bytes], at: usize) -> Option<usize> {
    std::str::from_utf8(args.get(at)?).ok()?.parse().ok()
}

/// Positions `from..args.len()` every `step`, leaving `trailing` arguments off the end.
fn range(args: &[Bytes], from: usize, step: usize, trailing: usize) -> Keys {
    let end = args.len().saturating_sub(trailing);
    Keys::At((from..end).step_by(step).collect())
}

/// `numkeys` at `at`, then that many keys from `at + 1` (every `step`-th argument), plus `extra`.
fn counted(args: &[Bytes], at: usize, step: usize, extra: &[usize]) -> Keys {
    let Some(n) = number(args, at) else {
        return Keys::Unknown;
    };
    if args.len() < at + 1 + n * step {
        return Keys::Unknown;
    }
    let mut keys = extra.to_vec();
    keys.extend((0..n).map(|i| at + 1 + i * step));
    Keys::At(keys)
}

/// Keyless commands that may appear in a stream.
const KEYLESS: &[&str] = &[
    "PING", "REPLCONF", "MULTI", "EXEC", "SELECT", "PUBLISH", "SPUBLISH", "SCRIPT", "FUNCTION",
];

/// Commands whose only key is the first argument.
const FIRST_KEY: &[&str] = &[
    "SET",
    "SETNX",
    "SETEX",
    "PSETEX",
    "GETSET",
    "GETDEL",
    "GETEX",
    "APPEND",
    "INCR",
    "DECR",
    "INCRBY",
    "DECRBY",
    "INCRBYFLOAT",
    "SETRANGE",
    "SETBIT",
    "BITFIELD",
    "EXPIRE",
    "PEXPIRE",
    "EXPIREAT",
    "PEXPIREAT",
    "PERSIST",
    "LPUSH",
    "RPUSH",
    "LPUSHX",
    "RPUSHX",
    "LINSERT",
    "LSET",
    "LREM",
    "LTRIM",
    "LPOP",
    "RPOP",
    "SADD",
    "SREM",
    "SPOP",
    "ZADD",
    "ZINCRBY",
    "ZREM",
    "ZREMRANGEBYSCORE",
    "ZREMRANGEBYRANK",
    "ZREMRANGEBYLEX",
    "ZPOPMIN",
    "ZPOPMAX",
    "HSET",
    "HSETNX",
    "HMSET",
    "HDEL",
    "HINCRBY",
    "HINCRBYFLOAT",
    "HSETEX",
    "HGETEX",
    "HGETDEL",
    "HEXPIRE",
    "HPEXPIRE",
    "HEXPIREAT",
    "HPEXPIREAT",
    "HPERSIST",
    "XADD",
    "XDEL",
    "XTRIM",
    "XACK",
    "XCLAIM",
    "XAUTOCLAIM",
    "XSETID",
    "XDELEX",
    "XACKDEL",
    "PFADD",
    "RESTORE",
    "RESTORE-ASKING",
    "GEOADD",
    "DELEX",
    "DELIFEQ",
    "VADD",
    "VREM",
    "VSETATTR",
    "MOVE",
];

/// The positions of the keys of `args` (a command as the stream carries it).
pub fn of(args: &[Bytes]) -> Keys {
    let Some(name) = args.first() else {
        return Keys::None;
    };
    let name = upper(name);
    let name = name.as_str();
    if KEYLESS.contains(&name) {
        return Keys::None;
    }
    match name {
        "SORT" | "SORT_RO" => return sort(args),
        "GEORADIUS" | "GEORADIUSBYMEMBER" => return stored(args, &["STORE", "STOREDIST"]),
        _ => {}
    }
    if FIRST_KEY.contains(&name) {
        return if args.len() > 1 {
            Keys::At(vec![1])
        } else {
            Keys::Unknown
        };
    }
    let script = matches!(
        name,
        "EVAL" | "EVALSHA" | "EVAL_RO" | "EVALSHA_RO" | "FCALL" | "FCALL_RO"
    );
    let keys = match name {
        "DEL" | "UNLINK" | "TOUCH" | "SINTERSTORE" | "SUNIONSTORE" | "SDIFFSTORE" | "PFMERGE" => {
            range(args, 1, 1, 0)
        }
        "MSET" | "MSETNX" => range(args, 1, 2, 0),
        "RENAME" | "RENAMENX" | "RPOPLPUSH" | "LMOVE" | "SMOVE" | "COPY" | "ZRANGESTORE"
        | "GEOSEARCHSTORE" | "BRPOPLPUSH" | "BLMOVE" => Keys::At(vec![1, 2]),
        "BITOP" => range(args, 2, 1, 0),
        "XGROUP" => match args.get(1).map(upper).as_deref() {
            Some("CREATE" | "SETID" | "DESTROY" | "CREATECONSUMER" | "DELCONSUMER") => {
                Keys::At(vec![2])
            }
            _ => Keys::Unknown,
        },
        "EVAL" | "EVALSHA" | "EVAL_RO" | "EVALSHA_RO" | "FCALL" | "FCALL_RO" => {
            counted(args, 2, 1, &[])
        }
        "ZUNIONSTORE" | "ZINTERSTORE" | "ZDIFFSTORE" => counted(args, 2, 1, &[1]),
        "MSETEX" => counted(args, 1, 2, &[]),
        "LMPOP" | "ZMPOP" => counted(args, 1, 1, &[]),
        "BLMPOP" | "BZMPOP" => counted(args, 2, 1, &[]),
        "BLPOP" | "BRPOP" | "BZPOPMIN" | "BZPOPMAX" => range(args, 1, 1, 1),
        _ => Keys::Unknown,
    };
    match keys {
        // A script may declare no key (what it touches then is beyond any filter: see the
        // README's limits); any other command without one is malformed.
        Keys::At(k) if (k.is_empty() && !script) || k.iter().any(|&i| i >= args.len()) => {
            Keys::Unknown
        }
        keys => keys,
    }
}

/// `SORT key … [STORE dest]`; with `BY` or `GET` it reads keys named by patterns, which no
/// filter can follow.
fn sort(args: &[Bytes]) -> Keys {
    if args
        .iter()
        .skip(2)
        .any(|a| a.eq_ignore_ascii_case(b"BY") || a.eq_ignore_ascii_case(b"GET"))
    {
        return Keys::Unknown;
    }
    stored(args, &["STORE"])
}

/// The key at 1, plus the argument after any of `options`.
fn stored(args: &[Bytes], options: &[&str]) -> Keys {
    if args.len() < 2 {
        return Keys::Unknown;
    }
    let mut keys = vec![1];
    let mut i = 2;
    while i < args.len() {
        if options
            .iter()
            .any(|o| args[i].eq_ignore_ascii_case(o.as_bytes()))
        {
            if i + 1 >= args.len() {
                return Keys::Unknown;
            }
            keys.push(i + 1);
            i += 1;
        }
        i += 1;
    }
    Keys::At(keys)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn keys(words: &str) -> Keys {
        let args: Vec<Bytes> = words
            .split(' ')
            .map(|w| Bytes::from(w.to_string()))
            .collect();
        of(&args)
    }

    #[test]
    fn fixed_positions() {
        assert_eq!(keys("SET k v PX 10"), Keys::At(vec![1]));
        assert_eq!(keys("hset k f v"), Keys::At(vec![1]));
        assert_eq!(keys("MSET a 1 b 2"), Keys::At(vec![1, 3]));
        assert_eq!(keys("DEL a b c"), Keys::At(vec![1, 2, 3]));
        assert_eq!(keys("RENAME a b"), Keys::At(vec![1, 2]));
        assert_eq!(keys("BITOP AND d a b"), Keys::At(vec![2, 3, 4]));
        assert_eq!(keys("XGROUP CREATE s g $"), Keys::At(vec![2]));
        assert_eq!(keys("BLPOP a b 0"), Keys::At(vec![1, 2]));
    }

    #[test]
    fn counted_keys() {
        assert_eq!(keys("EVAL body 2 a b x"), Keys::At(vec![3, 4]));
        assert_eq!(keys("EVALSHA sha 0 x"), Keys::At(vec![]));
        assert_eq!(
            keys("ZUNIONSTORE d 2 a b WEIGHTS 1 2"),
            Keys::At(vec![1, 3, 4])
        );
        assert_eq!(keys("MSETEX 2 a 1 b 2 PX 10"), Keys::At(vec![2, 4]));
        assert_eq!(keys("EVAL body 3 a b"), Keys::Unknown);
    }

    #[test]
    fn stores_and_unknowns() {
        assert_eq!(keys("SORT l STORE d"), Keys::At(vec![1, 3]));
        assert_eq!(keys("SORT l BY w_* STORE d"), Keys::Unknown);
        assert_eq!(keys("GEORADIUS g 0 0 1 km STORE d"), Keys::At(vec![1, 7]));
        assert_eq!(keys("JSON.SET k $ 1"), Keys::Unknown);
        assert_eq!(keys("PUBLISH ch m"), Keys::None);
        assert_eq!(keys("SET"), Keys::Unknown);
    }
}
