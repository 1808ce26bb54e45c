//! Backups, restores, uploads and migration rollback, against real redis-server processes and the
//! real HTTP server (in-process; as a subprocess for the kill -9 test). Quiet unless `TEST_LOG=1`.

#[path = "../common/mod.rs"]
mod common;

mod helpers;

mod crash;
mod hostile;
mod migrate_from_backup;
mod private;
mod proof;
mod restores;
mod rollback;
mod roundtrip;
mod secrets;
mod space;
mod stall;
mod upload;
