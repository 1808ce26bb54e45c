//! The one builder of migration specs for tests.

use ferry::redis_url::RedisUrl;
use ferry::spec::{Endpoint, MigrationSpec, Mode, OnConflict, Options, Verify};

use crate::common::redis::RedisServer;

/// Something that names a server: a running test server or a URL.
pub trait Server {
    fn server_url(&self) -> String;
}

impl Server for RedisServer {
    fn server_url(&self) -> String {
        self.url()
    }
}

impl Server for str {
    fn server_url(&self) -> String {
        self.to_string()
    }
}

impl Server for String {
    fn server_url(&self) -> String {
        self.clone()
    }
}

/// A spec from `source` to `target`, named `test`.
pub fn spec(
    source: &(impl Server + ?Sized),
    target: &(impl Server + ?Sized),
    mode: Mode,
    options: Options,
) -> MigrationSpec {
    let url = |s: String| RedisUrl::parse(&s).unwrap_or_else(|e| panic!("test URL {s}: {e}"));
    MigrationSpec {
        name: Some("test".into()),
        source: Endpoint::new(url(source.server_url())).into(),
        target: Endpoint::new(url(target.server_url())),
        mode,
        options,
        schedule: Default::default(),
    }
}

/// Options with no restore point, no pause and no automatic cutover, on the restore path (the
/// tests that exercise the relay ask for it: tests/engine/relay.rs, tests/faults/relay.rs).
pub fn options(on_conflict: OnConflict, verify: Verify) -> Options {
    Options {
        on_conflict,
        backup: false,
        verify,
        pause_source_writes_on_cutover: false,
        pause_during_verification: false,
        auto_cutover: false,
        transfer: ferry::spec::Transfer::Restore,
        drop_field_ttls: false,
        limits: Default::default(),
        set_keyspace_notifications: false,
        ..Options::default()
    }
}
