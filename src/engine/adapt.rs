//! Replicated commands the target would refuse from an ordinary client, made acceptable without
//! changing what they do.
//!
//! Ferry replays the source's replication stream through a normal client connection. A real
//! replica executes the same bytes as its *master* client, which Redis trusts more; two
//! differences break a migration:
//!
//! - **Exact trims with `LIMIT`.** `XADD … MAXLEN ~ 1000 LIMIT 100` is propagated with the
//!   approximation turned exact (`MAXLEN = <what was kept>`) and the `LIMIT` left in: Redis
//!   ignores that `LIMIT` from its master, but an ordinary client gets "LIMIT cannot be used
//!   without the special ~ option". Dropping `LIMIT n` does what the replica does.
//! - **Stream counters for a target older than 7.0.** Since Redis 7.0 consumer groups count the
//!   entries they read and streams count what was ever added. A 7.0+ source propagates them even
//!   when the user never typed them: `XREADGROUP … NOACK` goes out as `XGROUP SETID key group id
//!   ENTRIESREAD n`, and `XGROUP CREATE` and `XSETID` carry `ENTRIESREAD`, `ENTRIESADDED`,
//!   `MAXDELETEDID`. Redis 6.2 rejects those arguments; it has no such counters, so dropping them
//!   loses nothing it could hold.
//!
//! - **Expiry conditions for a target older than 7.0.** `EXPIRE key 100 GT` (7.0+) is propagated
//!   as `PEXPIREAT key <ms> GT`, which 6.2 cannot parse. The source propagates it only when the
//!   condition held there, and the target holds the same key, so the condition holds there too:
//!   the flag is dropped.
//!
//! Any other command goes through untouched, byte for byte. An adapted command keeps the
//! source's offset: the offset counts the bytes as the source sent them.

use bytes::Bytes;

use crate::replication::ReplCommand;
use crate::resp::encode::CommandBuf;

/// The first RDB version whose servers (7.0+) know stream counters.
const STREAM_COUNTERS_SINCE_RDB: u16 = 10;

/// `cmd` as the target speaking `target_rdb` accepts it from an ordinary client (usually `cmd`
/// itself).
pub(crate) fn for_target(cmd: ReplCommand, target_rdb: u16) -> ReplCommand {
    let kept = without_exact_trim_limit(&cmd.args).or_else(|| {
        (target_rdb < STREAM_COUNTERS_SINCE_RDB)
            .then(|| without_stream_counters(&cmd.args).or_else(|| without_expire_flag(&cmd.args)))
            .flatten()
    });
    let Some(mut kept) = kept else {
        return cmd;
    };
    // Both can apply to one command only in theory (XADD carries no counters); run the second
    // on the result of the first for completeness.
    if target_rdb < STREAM_COUNTERS_SINCE_RDB {
        if let Some(again) = without_stream_counters(&kept) {
            kept = again;
        }
    }
    let mut buf = CommandBuf::with_capacity(cmd.raw.len());
    buf.command(&kept);
    ReplCommand {
        args: kept,
        raw: Bytes::copy_from_slice(buf.as_slice()),
        end_offset: cmd.end_offset,
    }
}

fn is(args: &[Bytes], i: usize, name: &str) -> bool {
    args.get(i)
        .is_some_and(|a| a.eq_ignore_ascii_case(name.as_bytes()))
}

/// `XADD`/`XTRIM` whose trim is exact but still carries `LIMIT n`: the arguments without it, or
/// `None` when there is nothing to drop. Only the options are scanned: for `XADD` they end at the
/// entry id, so a field named `LIMIT` is never touched.
fn without_exact_trim_limit(args: &[Bytes]) -> Option<Vec<Bytes>> {
    if !(is(args, 0, "XADD") || is(args, 0, "XTRIM")) {
        return None;
    }
    let mut i = 2;
    let mut approx = false;
    let mut limit_at = None;
    while i < args.len() {
        if ["NOMKSTREAM", "KEEPREF", "DELREF", "ACKED"]
            .iter()
            .any(|option| is(args, i, option))
        {
            // Redis 8.2's reference policies sit among the options too.
            i += 1;
        } else if is(args, i, "MAXLEN") || is(args, i, "MINID") {
            approx |= is(args, i + 1, "~");
            let specifier = is(args, i + 1, "~") || is(args, i + 1, "=");
            i += if specifier { 3 } else { 2 };
        } else if is(args, i, "LIMIT") {
            limit_at = Some(i);
            i += 2;
        } else {
            break; // XADD's entry id: the fields follow.
        }
    }
    let at = limit_at.filter(|_| !approx)?;
    let mut kept = args.to_vec();
    kept.drain(at..(at + 2).min(args.len()));
    Some(kept)
}

/// `EXPIRE`/`PEXPIRE`/`EXPIREAT`/`PEXPIREAT key time FLAG` without its 7.0+ condition flag.
fn without_expire_flag(args: &[Bytes]) -> Option<Vec<Bytes>> {
    let expire = ["EXPIRE", "PEXPIRE", "EXPIREAT", "PEXPIREAT"]
        .iter()
        .any(|name| is(args, 0, name));
    let flagged = ["NX", "XX", "GT", "LT"]
        .iter()
        .any(|flag| is(args, 3, flag));
    (expire && flagged && args.len() == 4).then(|| args[..3].to_vec())
}

/// The arguments without the 7.0+ stream counter options, or `None` when there are none to drop.
fn without_stream_counters(args: &[Bytes]) -> Option<Vec<Bytes>> {
    // Where options may start, and which options (each with one value) to drop.
    let (first_option, droppable): (usize, &[&str]) =
        if is(args, 0, "XGROUP") && (is(args, 1, "SETID") || is(args, 1, "CREATE")) {
            (5, &["ENTRIESREAD"])
        } else if is(args, 0, "XSETID") {
            (3, &["ENTRIESADDED", "MAXDELETEDID"])
        } else {
            return None;
        };
    if args.len() <= first_option {
        return None;
    }
    let mut kept: Vec<Bytes> = args[..first_option].to_vec();
    let mut dropped = false;
    let mut i = first_option;
    while i < args.len() {
        if droppable.iter().any(|name| is(args, i, name)) && i + 1 < args.len() {
            dropped = true;
            i += 2;
        } else {
            kept.push(args[i].clone());
            i += 1;
        }
    }
    dropped.then_some(kept)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn command(args: &[&str]) -> ReplCommand {
        let args: Vec<Bytes> = args.iter().map(|a| Bytes::from(a.to_string())).collect();
        let mut buf = CommandBuf::default();
        buf.command(&args);
        ReplCommand {
            args,
            raw: Bytes::copy_from_slice(buf.as_slice()),
            end_offset: 1234,
        }
    }

    fn adapted(args: &[&str], target_rdb: u16) -> (Vec<String>, Bytes, i64) {
        let out = for_target(command(args), target_rdb);
        let text = out
            .args
            .iter()
            .map(|a| String::from_utf8_lossy(a).into_owned())
            .collect();
        (text, out.raw, out.end_offset)
    }

    #[test]
    fn stream_counters_are_dropped_for_a_6_2_target_only() {
        let (args, raw, offset) =
            adapted(&["xgroup", "SETID", "s", "g", "5-1", "entriesread", "7"], 9);
        assert_eq!(args, ["xgroup", "SETID", "s", "g", "5-1"]);
        assert_eq!(
            &raw[..],
            b"*5\r\n$6\r\nxgroup\r\n$5\r\nSETID\r\n$1\r\ns\r\n$1\r\ng\r\n$3\r\n5-1\r\n"
        );
        assert_eq!(offset, 1234, "the source's offset is kept");

        let (args, ..) = adapted(
            &[
                "XGROUP",
                "CREATE",
                "s",
                "g",
                "$",
                "MKSTREAM",
                "ENTRIESREAD",
                "3",
            ],
            9,
        );
        assert_eq!(args, ["XGROUP", "CREATE", "s", "g", "$", "MKSTREAM"]);
        let (args, ..) = adapted(
            &[
                "XSETID",
                "s",
                "9-9",
                "ENTRIESADDED",
                "12",
                "MAXDELETEDID",
                "3-0",
            ],
            9,
        );
        assert_eq!(args, ["XSETID", "s", "9-9"]);

        // A 7.0+ target keeps everything, and other commands are never touched.
        let original = command(&["XGROUP", "SETID", "s", "g", "5-1", "ENTRIESREAD", "7"]);
        let kept = for_target(original.clone(), 10);
        assert_eq!(kept.raw, original.raw);
        let set = command(&["SET", "ENTRIESREAD", "1"]);
        assert_eq!(for_target(set.clone(), 9).raw, set.raw);
        // A key or group literally named like an option is not an option.
        let (args, ..) = adapted(&["XGROUP", "SETID", "ENTRIESREAD", "ENTRIESREAD", "5-1"], 9);
        assert_eq!(
            args,
            ["XGROUP", "SETID", "ENTRIESREAD", "ENTRIESREAD", "5-1"]
        );
    }

    #[test]
    fn an_exact_trim_loses_its_limit_as_on_a_replica() {
        let (args, ..) = adapted(
            &[
                "XADD", "s", "MAXLEN", "=", "20", "LIMIT", "5", "9-1", "LIMIT", "x",
            ],
            12,
        );
        assert_eq!(
            args,
            ["XADD", "s", "MAXLEN", "=", "20", "9-1", "LIMIT", "x"]
        );
        let (args, ..) = adapted(&["XTRIM", "s", "MINID", "=", "3-0", "LIMIT", "10"], 9);
        assert_eq!(args, ["XTRIM", "s", "MINID", "=", "3-0"]);
        // An approximate trim keeps its LIMIT, and a field named LIMIT is data.
        let (args, ..) = adapted(
            &[
                "XADD", "s", "MAXLEN", "~", "20", "LIMIT", "5", "*", "f", "v",
            ],
            12,
        );
        assert_eq!(
            args,
            ["XADD", "s", "MAXLEN", "~", "20", "LIMIT", "5", "*", "f", "v"]
        );
        let (args, ..) = adapted(&["XADD", "s", "NOMKSTREAM", "9-1", "LIMIT", "5"], 12);
        assert_eq!(args, ["XADD", "s", "NOMKSTREAM", "9-1", "LIMIT", "5"]);
        // As Redis 8.2 propagates it: the policy before the trim.
        let (args, ..) = adapted(
            &[
                "xadd", "s", "KEEPREF", "MAXLEN", "=", "15", "LIMIT", "3", "15-0", "f", "v",
            ],
            12,
        );
        assert_eq!(
            args,
            ["xadd", "s", "KEEPREF", "MAXLEN", "=", "15", "15-0", "f", "v"]
        );
    }

    #[test]
    fn expiry_conditions_are_dropped_for_a_6_2_target_only() {
        let (args, ..) = adapted(&["PEXPIREAT", "k", "1700000000000", "gt"], 9);
        assert_eq!(args, ["PEXPIREAT", "k", "1700000000000"]);
        let (args, ..) = adapted(&["PEXPIREAT", "k", "1700000000000", "GT"], 10);
        assert_eq!(args, ["PEXPIREAT", "k", "1700000000000", "GT"]);
        let (args, ..) = adapted(&["SET", "k", "GT", "NX"], 9);
        assert_eq!(args, ["SET", "k", "GT", "NX"]);
    }
}
