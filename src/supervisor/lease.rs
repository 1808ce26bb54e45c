//! Leases held by this Ferry: taking them (for the service, and again for a resumed migration),
//! keeping them alive while their writer runs, and handing them to that writer.
//!
//! The instance id that goes into every lease lives in `data_dir/instance-id`, created once, so a
//! restarted Ferry recognises the leases it held before a crash and keeps them (the rule is
//! [`crate::aggregate::lease::decide`]; the wire is [`crate::client::lease`]).

use std::io::Write;
use std::path::Path;
use std::time::Duration;

use uuid::Uuid;

use super::Supervisor;
use crate::aggregate;
use crate::client::lease::{self as wire, Granted, LeaseError, LeaseKeeper, LeaseToken, LEASE_TTL};
use crate::client::Conn;
use crate::jobs::LeaseGrant;
use crate::model::{AggregateType, LeaseOwner};
use crate::transport::Peer;

/// How long taking a lease may take, connection included.
const ACQUIRE_TIMEOUT: Duration = Duration::from_secs(10);

/// Reads this Ferry's instance id from `data_dir/instance-id`, creating it (0600) the first time.
pub(super) fn instance_id(data_dir: &Path) -> std::io::Result<Uuid> {
    crate::disk::private_dir(data_dir)?;
    let path = data_dir.join("instance-id");
    match std::fs::read_to_string(&path) {
        Ok(text) => Uuid::parse_str(text.trim())
            .map_err(|e| std::io::Error::other(format!("{}: {e}", path.display()))),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            let id = Uuid::now_v7();
            let mut file = crate::disk::private_file(&path)?;
            writeln!(file, "{id}")?;
            file.sync_all()?;
            Ok(id)
        }
        Err(e) => Err(e),
    }
}

impl Supervisor {
    /// The owner this Ferry writes into a lease for writer `kind` `id`.
    pub(super) fn lease_owner(&self, kind: AggregateType, id: Uuid, actor: &str) -> LeaseOwner {
        LeaseOwner {
            instance: self.inner.instance,
            kind,
            id,
            actor: actor.to_string(),
        }
    }

    /// Takes the lease of `target` for `owner` and starts keeping it alive. The error says who
    /// holds it, or why the target could not be asked, in words for a 409.
    pub(super) async fn take_lease(
        &self,
        target: &Peer,
        owner: LeaseOwner,
        force: bool,
    ) -> Result<(LeaseKeeper, Granted), String> {
        let token = LeaseToken::new(owner.clone(), LEASE_TTL);
        // On a Redis Cluster the lease key lives on the master of its slot: taken, renewed and
        // released there (the seed node would answer MOVED). A target that cannot be asked
        // keeps its address, and the attempt below says why.
        let resolved = tokio::time::timeout(
            ACQUIRE_TIMEOUT,
            crate::client::cluster::key_peer(target, crate::model::LEASE_KEY.as_bytes()),
        )
        .await;
        let target = &match resolved {
            Ok(Ok(peer)) => peer,
            _ => target.clone(),
        };
        let attempt = async {
            let mut conn = Conn::connect(target).await.map_err(LeaseError::Client)?;
            wire::acquire(&mut conn, &token, |found| {
                aggregate::lease::decide(&owner, found, force)
            })
            .await
        };
        let granted = match tokio::time::timeout(ACQUIRE_TIMEOUT, attempt).await {
            Ok(Ok(granted)) => granted,
            Ok(Err(LeaseError::Refused(holder))) => {
                return Err(format!(
                    "the target {} is in use by {holder}; wait until it ends, or take it over \
                     with force=true if that writer is gone",
                    target.addr()
                ))
            }
            Ok(Err(e)) => {
                return Err(crate::client::scrub(
                    &format!("cannot take the lease of the target {}: {e}", target.addr()),
                    target.url(),
                ))
            }
            Err(_) => {
                return Err(format!(
                    "the target {} did not answer within {}s while Ferry took its lease; \
                     nothing was written",
                    target.addr(),
                    ACQUIRE_TIMEOUT.as_secs()
                ))
            }
        };
        if let Some(previous) = &granted.took_over {
            tracing::warn!(target = %target.url(), previous = %previous, "took the target's lease over (force)");
        }
        Ok((
            LeaseKeeper::spawn(target.clone(), granted.token.clone()),
            granted,
        ))
    }

    /// Keeps `keeper` until writer `id` runs (see [`Supervisor::held_lease`]).
    pub(super) fn hold_lease(&self, id: Uuid, keeper: LeaseKeeper) {
        self.inner
            .leases
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .insert(id, keeper);
    }

    /// The lease taken for writer `id` by the command that started it, if any.
    pub(super) fn held_lease(&self, id: Uuid) -> Option<LeaseKeeper> {
        self.inner
            .leases
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .remove(&id)
    }
}

/// What the service records about a lease taken.
pub(super) fn grant(granted: &Granted) -> LeaseGrant {
    LeaseGrant {
        owner: granted.token.owner.clone(),
        took_over: granted.took_over.as_ref().map(ToString::to_string),
        kept: granted.kept,
    }
}
