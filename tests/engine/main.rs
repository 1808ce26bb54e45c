//! The transfer engine against real servers: `engine::run_with` is called directly with an event
//! channel, and the target's data is compared with the source's by the test's own reader
//! (`helpers::assert_same`), not by the engine's verifier.

#[path = "../common/mod.rs"]
mod common;
#[allow(dead_code)]
mod helpers;

mod acl;
mod cancel;
mod cluster;
mod cluster_both;
mod cluster_source;
mod cluster_target;
mod conflict;
mod cutover;
mod dry_run;
mod failures;
mod filters;
mod limits;
mod live;
mod relay;
mod scan;
mod snapshot;
mod valkey;
