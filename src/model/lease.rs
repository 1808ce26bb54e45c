//! The target lease: who may write to a target server now.
//!
//! One key on the target, [`LEASE_KEY`] in db 0, holds the owner (the Ferry instance, the
//! migration or restore, and who started it) as JSON, with an expiry. Every writer takes it
//! before its first write, renews it well before it lapses, and deletes it when it ends; a Ferry
//! that dies leaves it to expire by itself. These are the plain types of that protocol: what the
//! key says ([`LeaseOwner`], [`LeaseHolder`]) and the verdict on it ([`LeaseVerdict`]). The
//! verdict is decided in [`crate::aggregate::lease`] (pure), the key is read and written in
//! [`crate::client::lease`] (I/O).

use serde::{Deserialize, Serialize};
use utoipa::ToSchema;
use uuid::Uuid;

use super::AggregateType;

/// The lease key, in db 0 of the target (in every master of a cluster target).
pub const LEASE_KEY: &str = "ferry:lease";

/// Keys of Ferry's own bookkeeping on a target (`ferry:lease`, `ferry:offset:<id>`): never data,
/// so sweeps, verification and the conflict policy leave them alone.
pub const BOOKKEEPING_PREFIX: &[u8] = b"ferry:";

/// Who holds a lease: what a writer writes into the key.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[schema(example = json!({"instance": "01936f5e-0000-7000-8000-000000000001", "kind": "migration",
    "id": "01936f5e-8a4b-7c2d-9e1f-0a1b2c3d4e5f", "actor": "api"}))]
pub struct LeaseOwner {
    /// The Ferry instance (its id lives in `data_dir/instance-id`, so a restarted Ferry knows
    /// its own leases).
    pub instance: Uuid,
    /// `migration` or `restore`.
    pub kind: AggregateType,
    /// The migration or restore that writes.
    pub id: Uuid,
    /// Who started it.
    pub actor: String,
}

impl LeaseOwner {
    /// The key's value.
    pub fn value(&self) -> String {
        serde_json::to_string(self).unwrap_or_else(|_| format!("{}:{}", self.kind, self.id))
    }

    /// Reads a key's value; `None` when it is not one Ferry wrote.
    pub fn parse(value: &str) -> Option<LeaseOwner> {
        serde_json::from_str(value).ok()
    }

    /// Whether `other` is the same writer (the same instance, for the same migration or restore).
    pub fn same_writer(&self, other: &LeaseOwner) -> bool {
        self.instance == other.instance && self.kind == other.kind && self.id == other.id
    }
}

impl std::fmt::Display for LeaseOwner {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "{} {} of Ferry instance {} (started by {})",
            self.kind, self.id, self.instance, self.actor
        )
    }
}

/// What the lease key of a target holds, as read from it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LeaseHolder {
    /// The owner, when the value is one Ferry wrote.
    pub owner: Option<LeaseOwner>,
    /// The value as found (shown when it is not ours to parse).
    pub raw: String,
    /// Milliseconds until it expires (`None`: no expiry set).
    pub expires_in_ms: Option<i64>,
}

impl std::fmt::Display for LeaseHolder {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match &self.owner {
            Some(owner) => write!(f, "{owner}")?,
            None => write!(
                f,
                "an unknown writer (`{LEASE_KEY}` = `{}`)",
                self.raw.chars().take(80).collect::<String>()
            )?,
        }
        match self.expires_in_ms {
            Some(ms) => write!(
                f,
                "; the lease expires in {} s unless renewed",
                (ms + 999) / 1000
            ),
            None => write!(f, "; the lease has no expiry"),
        }
    }
}

/// What a would-be writer does about the lease it found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum LeaseVerdict {
    /// Nobody holds it: take it.
    Take,
    /// This writer holds it already (a restarted Ferry resuming its own work): keep it.
    Keep,
    /// Someone else holds it and `force` was asked: take it over (and record that).
    TakeOver,
    /// Someone else holds it: refuse, naming them.
    Refuse,
}
