//! What a user asks for: the migration spec and its options.
//!
//! These types are shared by the API (request bodies), `jobs` (the aggregate keeps the current spec),
//! the event log (`MigrationCreated` carries the spec, redacted) and the engine (it reads the options).
//! Defaults live here, once, so that every entry point agrees on them.

use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use crate::redis_url::RedisUrl;

/// One Redis server. `url` is `redis://[user[:password]@]host:port[/db]` or `rediss://…`; it is
/// always shown with the password replaced by `***`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
#[schema(example = json!({"url": "redis://127.0.0.1:6379"}))]
pub struct Endpoint {
    #[schema(value_type = String, example = "redis://default:***@127.0.0.1:6379")]
    pub url: RedisUrl,
}

/// `snapshot` copies the data once and completes; `live` keeps applying the source's writes until
/// cutover.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum Mode {
    #[default]
    Snapshot,
    Live,
}

/// What to do with a key that already exists on the target.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum OnConflict {
    /// Stop the job and name the key (the safe default).
    #[default]
    Fail,
    /// Overwrite the target's key.
    Replace,
    /// Keep the target's key and count it as skipped.
    Skip,
    /// Flush the target's affected databases (after the restore point) before writing.
    Flush,
}

/// How much to compare after the copy.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum Verify {
    None,
    /// Per-db key counts plus a random sample of keys.
    #[default]
    Sample,
    /// Every key: type, value and TTL.
    Full,
}

/// Migration options; every field has a default.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(default, deny_unknown_fields)]
pub struct Options {
    pub on_conflict: OnConflict,
    /// Take a restore point (backup) of the target before the first write, when it holds data.
    pub backup: bool,
    pub verify: Verify,
    /// Pause writes on the source (`CLIENT PAUSE … WRITE`) during cutover, so that nothing is lost
    /// between the last applied write and the switch.
    pub pause_source_writes_on_cutover: bool,
    /// In live mode, cut over by itself once the target has caught up (lag 0).
    pub auto_cutover: bool,
}

impl Default for Options {
    fn default() -> Self {
        Options {
            on_conflict: OnConflict::Fail,
            backup: true,
            verify: Verify::Sample,
            pause_source_writes_on_cutover: false,
            auto_cutover: false,
        }
    }
}

/// The whole request: what to move, from where, to where, and how.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct MigrationSpec {
    #[serde(default)]
    pub name: Option<String>,
    pub source: Endpoint,
    pub target: Endpoint,
    #[serde(default)]
    pub mode: Mode,
    #[serde(default)]
    pub options: Options,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_apply_when_fields_are_missing() {
        let spec: MigrationSpec = serde_json::from_str(
            r#"{"source":{"url":"redis://a:1"},"target":{"url":"redis://b:2"}}"#,
        )
        .unwrap();
        assert_eq!(spec.mode, Mode::Snapshot);
        assert_eq!(spec.options, Options::default());
        assert!(spec.options.backup);
        assert_eq!(spec.options.verify, Verify::Sample);
    }

    #[test]
    fn unknown_fields_are_refused() {
        let err = serde_json::from_str::<MigrationSpec>(
            r#"{"source":{"url":"redis://a:1"},"target":{"url":"redis://b:2"},"speed":9}"#,
        )
        .unwrap_err();
        assert!(err.to_string().contains("speed"), "{err}");
    }
}
