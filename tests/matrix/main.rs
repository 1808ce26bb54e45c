//! The version matrix, end to end (issues 8 and 15): every ordered pair of Redis 6.2, 7.0, 7.2,
//! 7.4, 8.2 and Valkey 9.1, in `snapshot` and `live` mode (72 runs), with every value type in its
//! small and its large encoding and, in live mode, every new write command the source has
//! (`new_commands`); big keys written as chunked commands while the target keeps answering;
//! module keys.
//!
//! Each run starts real servers, fills the source (`dataset`), runs `ferry::engine::run_with`
//! with full verification, and then compares both servers with this binary's own type-aware reader
//! (`compare`): the engine's verifier is part of what is tested, so it is not the judge.
//!
//! A pair that cannot carry the dataset (function libraries into 6.2, hash field TTLs into
//! Redis older than 7.4) must be refused by `ferry::validate::run` with the reason, and the
//! engine, started anyway, must stop with an error naming what it cannot carry rather than drop
//! it. Then the functions are removed on the source, the field TTLs let go with
//! `drop_field_ttls`, and the rest of the dataset must move: a refused pair still proves the
//! rewrite path for everything else.
//!
//! Every run prints one `MATRIX |` line (pair, mode, outcome, time); `cargo test --test matrix
//! -- --nocapture | grep MATRIX` gives the table. Pairs run on the test harness' threads (two on a
//! 2-core machine), each with its own servers; the big-key test runs alone ([`MACHINE`]).

#[path = "../common/mod.rs"]
mod common;

/// The big-key test measures latency: it holds this exclusively while the pair and module tests
/// share it, so that it does not measure their load.
pub static MACHINE: tokio::sync::RwLock<()> = tokio::sync::RwLock::const_new(());

mod big_keys;
mod compare;
mod dataset;
mod modules;
mod new_commands;
mod pairs;
mod runner;
mod writer;
