//! See it happen and prove what happened: the live event streams (SSE), `/metrics`, the audit
//! chain (export, verify, an edit made in sled found), the `ferry` CLI as a person drives it, and
//! the dashboard in a real headless Chromium. Real app, real redis-servers, real binary.

#[path = "../common/mod.rs"]
mod common;
mod helpers;

mod audit;
mod backups_page;
mod browser;
mod cli;
mod dry_run;
mod metrics;
mod progress;
mod streams;
