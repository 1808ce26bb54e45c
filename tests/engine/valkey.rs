//! Valkey as a target: while Ferry writes, the target is in import mode (it expires nothing by
//! itself, the source's `DEL`s decide) and Ferry's writer is its import source; afterwards the
//! mode is as it was before.

use ferry::model::EventKind;
use ferry::spec::{Mode, OnConflict, Verify};

use crate::common::redis::RedisServer;
use crate::helpers::*;

fn import_mode(server: &RedisServer) -> String {
    let pair: Vec<String> = redis::cmd("CONFIG")
        .arg("GET")
        .arg("import-mode")
        .query(&mut server.conn())
        .unwrap();
    pair.get(1).cloned().unwrap_or_default()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_valkey_target_is_in_import_mode_while_ferry_writes_and_as_before_after() {
    let source = RedisServer::start_with("8.2", &["--repl-diskless-sync-delay", "0"]);
    let target = RedisServer::start("valkey-9.1");
    let _: () = redis::cmd("SET")
        .arg("k")
        .arg("v")
        .arg("PX")
        .arg(600_000)
        .query(&mut source.conn())
        .unwrap();
    assert_eq!(import_mode(&target), "no");
    let run = start(
        spec(
            &source,
            &target,
            Mode::Live,
            options(OnConflict::Fail, Verify::Full),
        ),
        quick(),
    );
    run.wait_for("StreamingStarted", |e| {
        matches!(e, EventKind::StreamingStarted { .. })
    })
    .await;
    assert_eq!(import_mode(&target), "yes", "switched on for the copy");
    let clients: String = redis::cmd("CLIENT")
        .arg("LIST")
        .query(&mut target.conn())
        .unwrap();
    assert!(
        clients.lines().any(|l| l
            .split(' ')
            .any(|f| f.starts_with("flags=") && f.contains('I'))),
        "the writer is the import source: {clients}"
    );
    run.controls.cutover.cancel();
    let (result, _) = run.finish().await;
    result.unwrap();
    assert_eq!(import_mode(&target), "no", "switched off again");

    // A target already in import mode (someone else's import) is left in it.
    let _: () = redis::cmd("CONFIG")
        .arg("SET")
        .arg("import-mode")
        .arg("yes")
        .query(&mut target.conn())
        .unwrap();
    let mut opts = options(OnConflict::Replace, Verify::Full);
    opts.backup = false;
    let (result, _) = start(spec(&source, &target, Mode::Snapshot, opts), quick())
        .finish()
        .await;
    result.unwrap();
    assert_eq!(import_mode(&target), "yes", "not ours to switch off");
}
