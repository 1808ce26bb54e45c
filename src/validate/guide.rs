//! The configure guide (`GET /v1/guide/redis`): each prerequisite, why it matters, how to fix it.

use serde::Serialize;
use utoipa::ToSchema;

/// One prerequisite of a migration.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct GuideItem {
    /// The validation check that enforces it, when there is one (e.g. `capacity.memory`).
    pub check_id: Option<&'static str>,
    pub title: &'static str,
    /// Why it matters.
    pub why: &'static str,
    /// What to do when the check fails or warns.
    pub how_to_fix: &'static str,
}

/// Every prerequisite, in the order a user should go through them.
pub fn prerequisites() -> Vec<GuideItem> {
    vec![
        GuideItem {
            check_id: Some("source.connect"),
            title: "Ferry can reach the source",
            why: "Ferry reads the data through a replication connection to the source.",
            how_to_fix: "Check host, port, TLS (rediss://) and credentials; allow Ferry's address through firewalls.",
        },
        GuideItem {
            check_id: Some("target.connect"),
            title: "Ferry can reach the target",
            why: "Ferry writes every key to the target and verifies it afterwards.",
            how_to_fix: "Check host, port, TLS (rediss://) and credentials; allow Ferry's address through firewalls.",
        },
    ]
}
