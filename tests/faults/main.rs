//! Fault tests: Ferry (as a real `ferry serve` subprocess) migrating between real redis-servers
//! while we kill -9 Ferry, restart the source or the target, or shrink the source's backlog so a
//! resume must copy a new snapshot. Each test runs a write load of INCR, LPUSH, APPEND (and DEL),
//! cuts over, and then demands zero differences twice: from Ferry's own full verification, and
//! from an independent comparison of every key here.

#[path = "../common/mod.rs"]
mod common;
mod harness;

mod cluster_both;
mod cluster_source;
mod cluster_target;
mod failover;
mod ferry_restarts;
mod relay;
mod safety;
mod scan;
mod server_restarts;
mod target_errors;
mod tls;
