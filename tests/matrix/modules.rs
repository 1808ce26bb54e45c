//! Module keys (Redis Stack modules of 7.2 and 7.4: RedisJSON, RedisBloom, RedisTimeSeries; Redis
//! 8's built-in vector sets) move by `RESTORE` when the target loads the modules, upward,
//! downward and in live mode. When the target lacks a module, validation warns naming it (a
//! source may load a module it holds no key of: Redis 8 loads `vectorset` by itself), and the
//! engine stops at the first key of that module, naming module and key, instead of dropping
//! it. Every run prints a `MODULES |` line.

use std::time::Instant;

use ferry::model::EventKind;
use ferry::spec::Mode;
use redis::Value;

use crate::common::redis::{modules_dir, RedisServer};
use crate::runner::{keys_rewritten, spec, start, tuning, validation_check, verification};

const ALL: [&str; 3] = ["rejson.so", "redisbloom.so", "redistimeseries.so"];

fn start_with_modules(version: &str, modules: &[&str]) -> RedisServer {
    let dir = modules_dir(version);
    let mut args: Vec<String> = vec!["--repl-diskless-sync-delay".into(), "0".into()];
    for module in modules {
        args.push("--loadmodule".into());
        args.push(dir.join(module).to_string_lossy().into_owned());
    }
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    RedisServer::start_with(version, &args)
}

fn run(c: &mut redis::Connection, args: &[&str]) -> Value {
    let mut cmd = redis::cmd(args[0]);
    for a in &args[1..] {
        cmd.arg(*a);
    }
    cmd.query(c).unwrap_or_else(|e| panic!("{args:?}: {e}"))
}

/// Keys of every module type: a JSON document (with a TTL), a Bloom and a Cuckoo filter, a
/// Count-Min sketch, a Top-K, a t-digest, and two time series joined by a compaction rule.
fn populate_modules(server: &RedisServer) {
    populate_json_and_bloom(server);
    populate_timeseries(server);
}

fn populate_json_and_bloom(server: &RedisServer) {
    let mut c = server.conn();
    run(
        &mut c,
        &[
            "JSON.SET",
            "json:doc",
            "$",
            r#"{"a":[1,2,{"b":"c"}],"n":1.5,"s":"\u00e9"}"#,
        ],
    );
    run(&mut c, &["PEXPIRE", "json:doc", "600000"]);
    run(&mut c, &["BF.RESERVE", "bf:filter", "0.01", "1000"]);
    run(&mut c, &["BF.MADD", "bf:filter", "a", "b", "c"]);
    run(&mut c, &["CF.ADD", "cf:filter", "x"]);
    run(&mut c, &["CMS.INITBYDIM", "cms:sketch", "100", "5"]);
    run(&mut c, &["CMS.INCRBY", "cms:sketch", "foo", "3"]);
    run(&mut c, &["TOPK.RESERVE", "topk:k", "3"]);
    run(&mut c, &["TOPK.ADD", "topk:k", "a", "b", "a"]);
    run(&mut c, &["TDIGEST.CREATE", "td:digest"]);
    run(&mut c, &["TDIGEST.ADD", "td:digest", "1", "2", "3"]);
    run(&mut c, &["SET", "plain", "1"]);
}

fn populate_timeseries(server: &RedisServer) {
    let mut c = server.conn();
    run(&mut c, &["TS.CREATE", "ts:raw", "LABELS", "sensor", "1"]);
    run(&mut c, &["TS.CREATE", "ts:avg"]);
    run(
        &mut c,
        &[
            "TS.CREATERULE",
            "ts:raw",
            "ts:avg",
            "AGGREGATION",
            "avg",
            "1000",
        ],
    );
    for (t, v) in [("1000", "1.5"), ("1500", "2.5"), ("2500", "4")] {
        run(&mut c, &["TS.ADD", "ts:raw", t, v]);
    }
}

/// What the module keys say through their own read commands (the time series too, with
/// `timeseries`: their samples, and the compaction rule from `TS.INFO`).
fn module_reads(server: &RedisServer, timeseries: bool) -> Vec<Value> {
    let mut c = server.conn();
    let mut reads: Vec<&[&str]> = vec![
        &["JSON.GET", "json:doc", "$"],
        &["JSON.GET", "json:live", "$"],
        &["BF.MEXISTS", "bf:filter", "a", "b", "c", "zz", "live"],
        &["CF.EXISTS", "cf:filter", "x"],
        &["CMS.QUERY", "cms:sketch", "foo"],
        &["TOPK.LIST", "topk:k", "WITHCOUNT"],
        &["TDIGEST.QUANTILE", "td:digest", "0", "0.5", "1"],
    ];
    if timeseries {
        reads.extend([
            &["TS.RANGE", "ts:raw", "-", "+"][..],
            &["TS.RANGE", "ts:avg", "-", "+"],
            &["TS.QUERYINDEX", "sensor=1"],
        ]);
    }
    let mut out: Vec<Value> = reads.iter().map(|args| run(&mut c, args)).collect();
    if timeseries {
        let Value::Array(info) = run(&mut c, &["TS.INFO", "ts:raw"]) else {
            panic!("TS.INFO")
        };
        let rules = info
            .chunks(2)
            .find(|p| {
                p[0] == Value::BulkString(b"rules".to_vec())
                    || p[0] == Value::SimpleString("rules".into())
            })
            .map(|p| p[1].clone())
            .expect("TS.INFO has rules");
        assert!(rules != Value::Array(vec![]), "the compaction rule exists");
        out.push(rules);
    }
    out
}

/// A migration between two servers with every module: passes, and the module reads agree.
async fn moves_by_restore(from: &str, to: &str, mode: Mode) {
    let _shared = crate::MACHINE.read().await;
    let started = Instant::now();
    let source = start_with_modules(from, &ALL);
    let target = start_with_modules(to, &ALL);
    populate_modules(&source);
    let spec = spec(&source, &target, mode);
    let check = validation_check(&spec, "modules").await;
    assert_ne!(check.status, ferry::model::CheckStatus::Fail, "{check:?}");
    let run_ = start(spec, tuning());
    if mode == Mode::Live {
        run_.wait_for("StreamingStarted", |e| {
            matches!(e, EventKind::StreamingStarted { .. })
        })
        .await;
        let mut c = source.conn();
        run(&mut c, &["JSON.SET", "json:live", "$", r#"{"live":true}"#]);
        run(&mut c, &["JSON.ARRAPPEND", "json:doc", "$.a", "4"]);
        run(&mut c, &["BF.ADD", "bf:filter", "live"]);
        run(&mut c, &["TS.ADD", "ts:raw", "3500", "7"]);
        run(&mut c, &["SET", "plain", "2"]);
        let offset: i64 = redis::cmd("INFO")
            .arg("replication")
            .query::<String>(&mut c)
            .unwrap()
            .lines()
            .find_map(|l| l.strip_prefix("master_repl_offset:")?.trim().parse().ok())
            .unwrap();
        run_.wait_for("the module writes applied", |e| {
            matches!(e, EventKind::Checkpoint { applied_offset, .. } if *applied_offset >= offset)
        })
        .await;
        run_.controls.cutover.cancel();
    }
    let (result, events) = run_.finish().await;
    result.unwrap_or_else(|e| panic!("modules {from} -> {to} {mode:?}: {e} ({})", e.code()));
    let report = verification(&events).expect("VerificationCompleted");
    assert!(report.is_clean() && report.checked >= 9, "{report:?}");
    assert_eq!(
        keys_rewritten(&events),
        Some(0),
        "module values only move by RESTORE"
    );
    assert_eq!(module_reads(&source, true), module_reads(&target, true));
    let pttl: i64 = redis::cmd("PTTL")
        .arg("json:doc")
        .query(&mut target.conn())
        .unwrap();
    assert!(pttl > 500_000, "the JSON document kept its TTL: {pttl}");
    if from != to && mode == Mode::Snapshot {
        // Across module versions the DUMPs differ, so the verifier reads module values through
        // the modules' own commands: one change in each key must be found.
        let mut c = target.conn();
        run(&mut c, &["JSON.SET", "json:doc", "$.n", "2.5"]);
        run(&mut c, &["BF.ADD", "bf:filter", "tampered"]);
        run(&mut c, &["CF.ADD", "cf:filter", "tampered"]);
        run(&mut c, &["CMS.INCRBY", "cms:sketch", "foo", "1"]);
        run(&mut c, &["TOPK.ADD", "topk:k", "z", "z", "z", "z"]);
        run(&mut c, &["TDIGEST.ADD", "td:digest", "100"]);
        run(
            &mut c,
            &["TS.ADD", "ts:raw", "2500", "9", "ON_DUPLICATE", "LAST"],
        );
        let mut skip = crate::runner::spec(&source, &target, Mode::Snapshot);
        skip.options.on_conflict = ferry::spec::OnConflict::Skip;
        let (result, events) = start(skip, tuning()).finish().await;
        let err = result.expect_err("every tampered module key is found");
        assert_eq!(err.code(), "verification_failed", "{err}");
        let report = verification(&events).expect("VerificationCompleted");
        let mut found: Vec<&str> = report.problems.iter().map(|p| p.key.as_str()).collect();
        found.sort();
        for key in [
            "bf:filter",
            "cf:filter",
            "cms:sketch",
            "json:doc",
            "td:digest",
            "topk:k",
            "ts:raw",
        ] {
            assert!(found.contains(&key), "{key} found: {found:?}");
        }
    }
    println!(
        "MODULES | {from} -> {to} | {mode:?} | pass ({} keys) | {:.1}s",
        report.checked,
        started.elapsed().as_secs_f64()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn module_keys_move_by_restore_between_7_2_and_7_4_both_ways_and_live() {
    moves_by_restore("7.4", "7.4", Mode::Snapshot).await;
    moves_by_restore("7.2", "7.4", Mode::Snapshot).await;
    moves_by_restore("7.4", "7.4", Mode::Live).await;
}

/// 7.4's module builds are newer than 7.2's: validation warns naming them. RedisJSON and
/// RedisBloom values still load on 7.2; a RedisTimeSeries 1.12 value does not ("Bad data
/// format"), and the engine stops naming the key rather than skipping it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn module_keys_into_older_module_builds_move_or_stop_naming_the_key() {
    let started = Instant::now();
    let source = start_with_modules("7.4", &ALL);
    let target = start_with_modules("7.2", &ALL);
    populate_json_and_bloom(&source);
    let spec = spec(&source, &target, Mode::Snapshot);
    let check = validation_check(&spec, "modules").await;
    assert_eq!(check.status, ferry::model::CheckStatus::Warn, "{check:?}");
    for module in ["ReJSON", "bf", "timeseries"] {
        assert!(check.message.contains(module), "{}", check.message);
    }
    let (result, events) = start(spec.clone(), tuning()).finish().await;
    result.unwrap_or_else(|e| panic!("JSON and Bloom values into 7.2: {e}"));
    assert!(verification(&events).is_some_and(|r| r.is_clean() && r.checked >= 7));
    assert_eq!(module_reads(&source, false), module_reads(&target, false));

    populate_timeseries(&source);
    target.cli(&["FLUSHALL"]);
    let (result, _) = start(spec, tuning()).finish().await;
    let err = result.expect_err("a TimeSeries 1.12 value does not load into 1.10");
    assert_eq!(err.code(), "target_error", "{err}");
    assert!(err.to_string().contains("ts:"), "{err}");
    println!(
        "MODULES | 7.4 -> 7.2 | Snapshot | JSON + Bloom family pass; TimeSeries refused by the older module, engine stopped `target_error` naming the key | {:.1}s",
        started.elapsed().as_secs_f64()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_target_without_the_modules_is_warned_by_name_and_never_loses_a_module_key() {
    let started = Instant::now();
    let source = start_with_modules("7.4", &ALL);
    let without = start_with_modules("7.4", &[]);
    let json_only = start_with_modules("7.4", &["rejson.so"]);
    populate_modules(&source);

    let message = assert_warned(
        &spec(&source, &without, Mode::Snapshot),
        &["ReJSON", "bf", "timeseries"],
    )
    .await;
    let partly = assert_warned(
        &spec(&source, &json_only, Mode::Snapshot),
        &["bf", "timeseries"],
    )
    .await;
    assert!(
        !partly.contains("ReJSON"),
        "only the missing ones are named: {partly}"
    );

    for (target, mode) in [(&without, Mode::Snapshot), (&json_only, Mode::Live)] {
        let (result, _) = start(spec(&source, target, mode), tuning()).finish().await;
        let err = result.expect_err("a module key is never dropped silently");
        assert_eq!(err.code(), "unsupported", "{err}");
        let text = err.to_string();
        assert!(
            ["`bf` module", "`timeseries` module", "`ReJSON` module"]
                .iter()
                .any(|m| text.contains(m)),
            "the error names the module: {text}"
        );
        assert!(
            [
                "bf:filter",
                "cf:filter",
                "cms:sketch",
                "topk:k",
                "td:digest",
                "ts:raw",
                "ts:avg",
                "json:doc"
            ]
            .iter()
            .any(|k| text.contains(k)),
            "the error names the key: {text}"
        );
        assert!(!text.contains("redis://"), "{text}");
    }
    println!(
        "MODULES | 7.4 -> 7.4 without modules | Snapshot, Live | warned ({}) ; engine stopped `unsupported` at the first module key | {:.1}s",
        message.split(';').next().unwrap_or_default(),
        started.elapsed().as_secs_f64()
    );
}

/// Asserts that the `modules` check warns (and does not refuse), naming every fragment.
async fn assert_warned(spec: &ferry::spec::MigrationSpec, names: &[&str]) -> String {
    let check = validation_check(spec, "modules").await;
    assert_eq!(check.status, ferry::model::CheckStatus::Warn, "{check:?}");
    for name in names {
        assert!(
            check.message.contains(name),
            "names {name}: {}",
            check.message
        );
    }
    check.message
}

/// Redis 8's vector sets: a module type its server loads by itself. Between two 8.2 servers a
/// vector set moves by RESTORE, in the snapshot and by `VADD` in the stream. Into 7.4, which has
/// no such module, validation only warns (the matrix proves that 8.2 -> 7.4 without vector sets
/// passes), and the migration stops at the vector set, naming module and key, or at the first
/// `VADD` of the stream, naming command and key.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn vector_sets_move_between_redis_8_servers_and_stop_by_name_elsewhere() {
    let _shared = crate::MACHINE.read().await;
    let started = Instant::now();
    let source = RedisServer::start_with("8.2", &["--repl-diskless-sync-delay", "0"]);
    let same = RedisServer::start("8.2");
    let older = RedisServer::start("7.4");
    let mut c = source.conn();
    run(
        &mut c,
        &["VADD", "vs:set", "VALUES", "3", "1", "0", "0.5", "a"],
    );
    run(
        &mut c,
        &["VADD", "vs:set", "VALUES", "3", "0", "1", "0.25", "b"],
    );
    run(&mut c, &["SET", "plain", "1"]);

    let (result, events) = start(spec(&source, &same, Mode::Snapshot), tuning())
        .finish()
        .await;
    result.expect("8.2 -> 8.2 restores the vector set");
    assert!(verification(&events).is_some_and(|r| r.is_clean()));
    let card: i64 = redis::cmd("VCARD")
        .arg("vs:set")
        .query(&mut same.conn())
        .unwrap();
    assert_eq!(card, 2);

    let message = assert_warned(&spec(&source, &older, Mode::Snapshot), &["vectorset"]).await;
    let (result, _) = start(spec(&source, &older, Mode::Snapshot), tuning())
        .finish()
        .await;
    let err = result.expect_err("a vector set cannot land on 7.4");
    assert_eq!(err.code(), "unsupported", "{err}");
    let text = err.to_string();
    assert!(
        text.contains("`vectorset` module") && text.contains("vs:set"),
        "{text}"
    );

    // Live, with no vector set in the snapshot: the first VADD of the stream stops it.
    run(&mut c, &["DEL", "vs:set"]);
    older.cli(&["FLUSHALL"]);
    let live = start(spec(&source, &older, Mode::Live), tuning());
    live.wait_for("StreamingStarted", |e| {
        matches!(e, EventKind::StreamingStarted { .. })
    })
    .await;
    run(
        &mut c,
        &["VADD", "vs:live", "VALUES", "3", "1", "1", "1", "x"],
    );
    let (result, _) = live.finish().await;
    let err = result.expect_err("VADD cannot be replayed on 7.4");
    assert_eq!(err.code(), "unsupported", "{err}");
    assert!(err.to_string().contains("VADD on key `vs:live`"), "{err}");
    println!(
        "MODULES | 8.2 -> 8.2 / 7.4 vector sets | Snapshot, Live | pass into 8.2; into 7.4 warned ({}), stopped naming module/command and key | {:.1}s",
        message.split(':').next().unwrap_or_default(),
        started.elapsed().as_secs_f64()
    );
}
