//! Shared test harness: real redis-server processes, the real app in-process ([`app`]), the real
//! `ferry` binary as a child process ([`ferry`]), the engine driven directly ([`engine`]), spec
//! builders ([`spec`]), filling/comparing servers ([`data`]) and a TLS PKI with TLS servers
//! ([`tls`]).
#![allow(dead_code)]

pub mod app;
pub mod cluster;
pub mod cluster_load;
pub mod data;
pub mod dry_run;
pub mod engine;
pub mod ferry;
pub mod redis;
pub mod spec;
pub mod tls;
