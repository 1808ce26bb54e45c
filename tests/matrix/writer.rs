//! Live-mode traffic: while the engine copies and streams, the source keeps taking writes of
//! every kind the replication stream must carry, including commands whose *propagated* form
//! differs from what was typed (trims made exact, `NOACK` reads turned into `XGROUP SETID`,
//! `EXPIRE … GT` into `PEXPIREAT … GT`, scripts and functions into their effects).

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;

use crate::common::redis::RedisServer;
use crate::dataset::{has_functions, run, FILLED_DBS, SPECIAL_SCORES};
use crate::new_commands;

/// Runs a command written as one line (arguments without spaces).
fn line(c: &mut redis::Connection, command: &str) {
    let args: Vec<&str> = command.split_whitespace().collect();
    run(c, &args);
}

/// Writes until `stop` is set (at least 20 rounds); returns the number of rounds. `functions`
/// says whether the source has the library and the target can take it; `field_ttls` whether the
/// source has field TTLs (a target without them runs with `drop_field_ttls`). Commands only
/// 7.0+ sources know are sent when the source has them, and so is every row of the new-command
/// table ([`crate::new_commands`]) the source has.
pub fn spawn_writer(
    source: &RedisServer,
    functions: bool,
    field_ttls: bool,
    stop: Arc<AtomicBool>,
) -> JoinHandle<u64> {
    let mut c = source.conn();
    let source_7 = has_functions(&source.version);
    let version = source.version.clone();
    new_commands::setup(&mut c, &version);
    std::thread::spawn(move || {
        let mut n = 0u64;
        while !stop.load(Ordering::Relaxed) || n < 20 {
            round(&mut c, n, source_7, functions, field_ttls);
            // In db 0, where the table's streams have their groups.
            line(&mut c, "SELECT 0");
            new_commands::round(&mut c, &version, n);
            n += 1;
        }
        line(&mut c, "SELECT 0");
        n
    })
}

fn round(c: &mut redis::Connection, n: u64, source_7: bool, functions: bool, field_ttls: bool) {
    let db = n % FILLED_DBS as u64;
    let i = n % 30;
    line(c, &format!("SELECT {db}"));
    line(c, &format!("SET w:s:{i} {n} PX 900000"));
    line(c, "INCR w:counter");
    line(c, &format!("RPUSH l:big {n}"));
    line(c, "LPOP l:small");
    line(c, &format!("HSET h:small w{i} {n}"));
    line(c, &format!("SADD set:int {n}"));
    line(c, &format!("SREM set:str:big m{i}"));
    line(
        c,
        &format!("ZADD z:small {} w{i}", SPECIAL_SCORES[n as usize % 6]),
    );
    line(c, "ZINCRBY z:big 0.1 zz1");
    line(c, &format!("XADD x:main * w {n}"));
    line(c, "XREADGROUP GROUP g1 dave COUNT 1 STREAMS x:main >");
    // NOACK delivers without a PEL entry: the source propagates the group's new last id by
    // itself (`XGROUP SETID … ENTRIESREAD n` on 7.0+).
    line(c, "XREADGROUP GROUP g2 erin NOACK COUNT 1 STREAMS x:main >");
    if n % 3 == 0 {
        line(c, &format!("DEL w:s:{}", (n + 7) % 30));
        line(c, "XACK x:main g1 2-1");
    }
    let _: redis::Value = redis::pipe()
        .atomic()
        .cmd("INCRBY")
        .arg("w:tx")
        .arg(2)
        .cmd("SADD")
        .arg("w:set")
        .arg(i)
        .query(c)
        .unwrap();
    run(
        c,
        &[
            "EVAL",
            "return redis.call('HINCRBY', KEYS[1], 'n', 1)",
            "1",
            "w:eval",
        ],
    );
    // Propagated differently from how they were typed (6.2+). XAUTOCLAIM runs on g3, whose
    // pending entries all have their message: a 6.2 source claims a deleted message's entry
    // where 7.0+ drops it from the PEL (a known divergence between the versions' semantics).
    line(c, "XAUTOCLAIM x:main g3 frank 0 0-0 COUNT 1");
    line(c, "XADD x:capped NOMKSTREAM MAXLEN ~ 20 * a 1");
    line(c, &format!("XADD x:capped MAXLEN ~ 20 LIMIT 5 * n {n}"));
    line(c, "XTRIM x:capped MINID ~ 0-1");
    line(c, &format!("SET w:getset {n} GET"));
    line(c, "GETEX w:getset PX 700000");
    line(c, "LMOVE l:big l:moved LEFT RIGHT");
    line(c, "ZRANGESTORE z:stored z:big 0 5");
    line(c, "COPY h:small h:copied REPLACE");
    line(c, "SPOP set:int:big");
    line(c, "ZPOPMIN z:big");
    line(c, "GETDEL w:getdel");
    line(c, &format!("SET w:getdel {n}"));
    if source_7 {
        line(c, "LMPOP 1 l:moved LEFT");
        line(c, "ZMPOP 1 z:stored MIN");
        line(c, "EXPIRE w:getset 800 GT");
        line(c, "XSETID x:emptied 5-5 ENTRIESADDED 1 MAXDELETEDID 5-5");
        line(c, &format!("XGROUP CREATE x:capped grp{i} 0 ENTRIESREAD 0"));
        line(c, &format!("XGROUP DESTROY x:capped grp{i}"));
    }
    if functions {
        line(c, "FCALL ferry_bump 1 w:fcall 3");
    }
    if field_ttls {
        line(c, &format!("HSET hf:small w{i} {n}"));
        line(c, &format!("HPEXPIRE hf:small 650000 FIELDS 1 w{i}"));
    }
}
