//! API integration tests: the real app (in-process, port 0, temp data dir) against real
//! redis-server processes. Quiet unless `TEST_LOG=1`.

#[path = "../common/mod.rs"]
mod common;
mod helpers;

mod cli;
mod cluster;
mod dry_run;
mod inputs;
mod lifecycle;
mod limits;
mod persistence;
mod relay;
mod roles;
mod running;
mod safety;
mod scan;
mod schedule;
mod security;
mod shaping;
mod spec;
