//! Replicated commands that a newer source writes with arguments an older target does not parse.
//!
//! Since Redis 7.0 a stream's consumer groups count the entries they read (`entries_read`) and
//! the stream counts what was ever added and the highest deleted id. A 7.0+ source propagates
//! those counters in its replication stream even when the user never typed them: `XREADGROUP …
//! NOACK` goes out as `XGROUP SETID key group id ENTRIESREAD n`, `XGROUP CREATE` and `XSETID`
//! carry `ENTRIESREAD` / `ENTRIESADDED` / `MAXDELETEDID`. Redis 6.2 rejects those arguments
//! ("wrong number of arguments for 'SETID'"), and the whole live migration would stop at the
//! first consumer group that reads with NOACK.
//!
//! A 6.2 target has no such counters, so dropping the arguments loses nothing it could hold: the
//! command keeps its meaning there (set the group's or the stream's last id). Any other command
//! goes through untouched, byte for byte.

use bytes::Bytes;

use crate::replication::ReplCommand;
use crate::resp::encode::CommandBuf;

/// The first RDB version whose servers (7.0+) know stream counters.
const STREAM_COUNTERS_SINCE_RDB: u16 = 10;

/// `cmd` as the target speaking `target_rdb` can run it (usually `cmd` itself).
pub(crate) fn adapt(cmd: ReplCommand, target_rdb: u16) -> ReplCommand {
    if target_rdb >= STREAM_COUNTERS_SINCE_RDB {
        return cmd;
    }
    let Some(kept) = without_stream_counters(&cmd.args) else {
        return cmd;
    };
    let mut buf = CommandBuf::with_capacity(cmd.raw.len());
    buf.command(&kept);
    ReplCommand {
        args: kept,
        raw: Bytes::copy_from_slice(buf.as_slice()),
        // The offset is the source's: it still covers the bytes as received.
        end_offset: cmd.end_offset,
    }
}

/// The arguments without the 7.0+ stream counter options, or `None` when there are none to drop.
fn without_stream_counters(args: &[Bytes]) -> Option<Vec<Bytes>> {
    let is = |i: usize, name: &str| {
        args.get(i)
            .is_some_and(|a| a.eq_ignore_ascii_case(name.as_bytes()))
    };
    // Where options may start, and which options (each with one value) to drop.
    let (first_option, droppable): (usize, &[&str]) =
        if is(0, "XGROUP") && (is(1, "SETID") || is(1, "CREATE")) {
            (5, &["ENTRIESREAD"])
        } else if is(0, "XSETID") {
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
        if droppable.iter().any(|name| is(i, name)) && i + 1 < args.len() {
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
        let out = adapt(command(args), target_rdb);
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
        let kept = adapt(original.clone(), 10);
        assert_eq!(kept.raw, original.raw);
        let set = command(&["SET", "ENTRIESREAD", "1"]);
        assert_eq!(adapt(set.clone(), 9).raw, set.raw);
        // A key or group literally named like an option is not an option.
        let (args, ..) = adapted(&["XGROUP", "SETID", "ENTRIESREAD", "ENTRIESREAD", "5-1"], 9);
        assert_eq!(
            args,
            ["XGROUP", "SETID", "ENTRIESREAD", "ENTRIESREAD", "5-1"]
        );
    }
}
