//! Shared test harness: real redis-server processes (and, in the API tests, the real app).
#![allow(dead_code)]

pub mod engine;
pub mod redis;
