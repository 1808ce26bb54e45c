//! Where a replicated command goes on a cluster target: the keys it names, their slots, and
//! whether a command whose keys span slots can be split.
//!
//! A cluster refuses a command whose keys are in different slots (`CROSSSLOT`), so a stream
//! command from a standalone source must be sent per slot. Most write commands name one key,
//! right after their name; the table here lists the ones that do not (ranges, pairs, a `numkeys`
//! count, a destination first). Commands that touch keys one by one with no atomicity between
//! them (`DEL`, `UNLINK`, `TOUCH`, `MSET`) split into one command per slot; any other command
//! whose keys span slots is [`Route::CrossSlot`], for the writer to refuse by name. Keys are the
//! ones `COMMAND GETKEYS` names (a test compares the two on a real server).

use std::collections::BTreeMap;

use bytes::Bytes;

use super::slot::{key_slot, Slot};

/// Where a command's keys are among its arguments.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Keys {
    /// No key: it goes to every master or none (the writer decides by name).
    None,
    /// `args[first..=last]` (to the end without `last`), every `step`.
    Range {
        first: usize,
        last: Option<usize>,
        step: usize,
    },
    /// `args[dest]` if any, then `args[count]` keys from `args[count + 1]`.
    Counted { dest: Option<usize>, count: usize },
    /// `SORT key … STORE dest`, `GEORADIUS … STORE[DIST] dest`.
    KeyAndStore,
}

const fn range(first: usize, last: Option<usize>, step: usize) -> Keys {
    Keys::Range { first, last, step }
}

fn keys_of(name: &str) -> Keys {
    match name {
        "PING" | "SELECT" | "MULTI" | "EXEC" | "DISCARD" | "FLUSHALL" | "FLUSHDB" | "SWAPDB"
        | "FUNCTION" | "SCRIPT" | "PUBLISH" | "REPLCONF" => Keys::None,
        "DEL" | "UNLINK" | "EXISTS" | "TOUCH" | "WATCH" | "MGET" | "SINTERSTORE"
        | "SUNIONSTORE" | "SDIFFSTORE" | "PFMERGE" | "PFCOUNT" => range(1, None, 1),
        "MSET" | "MSETNX" => range(1, None, 2),
        "RENAME" | "RENAMENX" | "SMOVE" | "LMOVE" | "BLMOVE" | "RPOPLPUSH" | "BRPOPLPUSH"
        | "COPY" | "GEOSEARCHSTORE" | "ZRANGESTORE" => range(1, Some(2), 1),
        "BITOP" => range(2, None, 1),
        "EVAL" | "EVALSHA" | "EVAL_RO" | "EVALSHA_RO" | "FCALL" | "FCALL_RO" => Keys::Counted {
            dest: None,
            count: 2,
        },
        "ZUNIONSTORE" | "ZINTERSTORE" | "ZDIFFSTORE" => Keys::Counted {
            dest: Some(1),
            count: 2,
        },
        "SINTERCARD" | "ZINTERCARD" | "LMPOP" | "ZMPOP" => Keys::Counted {
            dest: None,
            count: 1,
        },
        "BLMPOP" | "BZMPOP" => Keys::Counted {
            dest: None,
            count: 2,
        },
        "SORT" | "GEORADIUS" | "GEORADIUSBYMEMBER" => Keys::KeyAndStore,
        // Everything else names one key, right after its name.
        _ => range(1, Some(1), 1),
    }
}

/// The keys `args` names (the command name first), in order; empty for a keyless command.
pub fn command_keys(args: &[Bytes]) -> Vec<&Bytes> {
    let Some(name) = args.first() else {
        return Vec::new();
    };
    let name = String::from_utf8_lossy(name).to_ascii_uppercase();
    match keys_of(&name) {
        Keys::None => Vec::new(),
        Keys::Range { first, last, step } => {
            let end = last.map_or(args.len(), |l| (l + 1).min(args.len()));
            args.get(first..end)
                .unwrap_or_default()
                .iter()
                .step_by(step)
                .collect()
        }
        Keys::Counted { dest, count } => {
            let mut keys: Vec<&Bytes> = dest.and_then(|d| args.get(d)).into_iter().collect();
            let n = args
                .get(count)
                .and_then(|n| std::str::from_utf8(n).ok()?.parse::<usize>().ok())
                .unwrap_or(0);
            keys.extend(args.iter().skip(count + 1).take(n));
            keys
        }
        Keys::KeyAndStore => {
            let mut keys: Vec<&Bytes> = args.get(1).into_iter().collect();
            let store = args.iter().position(|a| {
                a.eq_ignore_ascii_case(b"STORE") || a.eq_ignore_ascii_case(b"STOREDIST")
            });
            keys.extend(store.and_then(|i| args.get(i + 1)));
            keys
        }
    }
}

/// Where a command goes on a cluster.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Route {
    /// It names no key.
    NoKey,
    /// Every key is in this slot.
    Slot(Slot),
    /// Keys in several slots, of a command that acts on each key alone: one command per slot.
    Split(Vec<(Slot, Vec<Bytes>)>),
    /// Keys in several slots, of a command that cannot be split (`RENAME`, `MSETNX`, a script…).
    CrossSlot(Vec<Slot>),
}

/// The route of `args` (the command name first).
pub fn route(args: &[Bytes]) -> Route {
    let keys = command_keys(args);
    let Some(first) = keys.first() else {
        return Route::NoKey;
    };
    let slot = key_slot(first);
    if keys.iter().all(|k| key_slot(k) == slot) {
        return Route::Slot(slot);
    }
    let name = String::from_utf8_lossy(&args[0]).to_ascii_uppercase();
    let per_key = match name.as_str() {
        "DEL" | "UNLINK" | "TOUCH" | "EXISTS" => 1,
        "MSET" => 2,
        _ => 0,
    };
    if per_key == 0 {
        let mut slots: Vec<Slot> = keys.iter().map(|k| key_slot(k)).collect();
        slots.sort_unstable();
        slots.dedup();
        return Route::CrossSlot(slots);
    }
    let mut by_slot: BTreeMap<Slot, Vec<Bytes>> = BTreeMap::new();
    for group in args[1..].chunks(per_key) {
        by_slot
            .entry(key_slot(&group[0]))
            .or_insert_with(|| vec![args[0].clone()])
            .extend(group.iter().cloned());
    }
    Route::Split(by_slot.into_iter().collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn args(words: &str) -> Vec<Bytes> {
        words
            .split(' ')
            .map(|w| Bytes::from(w.to_string()))
            .collect()
    }

    fn keys(words: &str) -> Vec<String> {
        let a = args(words);
        command_keys(&a)
            .into_iter()
            .map(|k| String::from_utf8(k.to_vec()).unwrap())
            .collect()
    }

    #[test]
    fn keys_are_found_where_each_command_names_them() {
        assert_eq!(keys("SET a 1 EX 10"), ["a"]);
        assert_eq!(keys("del a b c"), ["a", "b", "c"]);
        assert_eq!(keys("MSET a 1 b 2"), ["a", "b"]);
        assert_eq!(keys("RENAME a b"), ["a", "b"]);
        assert_eq!(keys("BITOP AND d a b"), ["d", "a", "b"]);
        assert_eq!(keys("EVAL return 2 a b x y"), ["a", "b"]);
        assert_eq!(keys("ZUNIONSTORE d 2 a b WEIGHTS 1 2"), ["d", "a", "b"]);
        assert_eq!(keys("LMPOP 2 a b LEFT"), ["a", "b"]);
        assert_eq!(keys("SORT a BY w STORE d"), ["a", "d"]);
        assert!(keys("PUBLISH ch msg").is_empty());
        assert!(keys("FLUSHALL").is_empty());
    }

    #[test]
    fn keys_of_one_slot_route_there_and_others_split_or_refuse() {
        let one = route(&args("MSET {u}a 1 {u}b 2"));
        assert_eq!(one, Route::Slot(key_slot(b"u")));
        assert_eq!(route(&args("PING")), Route::NoKey);
        match route(&args("DEL a b {a}c")) {
            Route::Split(parts) => {
                assert_eq!(parts.len(), 2);
                let of_a = parts.iter().find(|(s, _)| *s == key_slot(b"a")).unwrap();
                assert_eq!(of_a.1, args("DEL a {a}c"));
            }
            other => panic!("{other:?}"),
        }
        match route(&args("MSET a 1 b 2")) {
            Route::Split(parts) => {
                let of_b = parts.iter().find(|(s, _)| *s == key_slot(b"b")).unwrap();
                assert_eq!(of_b.1, args("MSET b 2"));
            }
            other => panic!("{other:?}"),
        }
        let mut slots = vec![key_slot(b"a"), key_slot(b"b")];
        slots.sort_unstable();
        assert_eq!(route(&args("RENAME a b")), Route::CrossSlot(slots.clone()));
        assert_eq!(route(&args("MSETNX a 1 b 2")), Route::CrossSlot(slots));
    }
}
