//! Who may write to a target: the decision on a lease (the I/O is [`crate::client::lease`]).
//!
//! A target has one writer at a time. The rule, in full:
//! - nobody holds the lease: take it;
//! - the same writer holds it (the same Ferry instance, for the same migration or restore: a
//!   restarted Ferry resuming its own work): keep it;
//! - anyone else holds it: refuse and name them, unless `force` was asked, which takes it over
//!   (the caller records that as an event).
//!
//! A lease of a Ferry that died expires by itself; so does one whose value Ferry cannot read.

use crate::model::{LeaseHolder, LeaseOwner, LeaseVerdict};

/// The verdict for `ours` on what the key holds (`found`).
pub fn decide(ours: &LeaseOwner, found: Option<&LeaseHolder>, force: bool) -> LeaseVerdict {
    let Some(found) = found else {
        return LeaseVerdict::Take;
    };
    match &found.owner {
        Some(owner) if owner.same_writer(ours) => LeaseVerdict::Keep,
        _ if force => LeaseVerdict::TakeOver,
        _ => LeaseVerdict::Refuse,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::AggregateType;
    use uuid::Uuid;

    fn owner(instance: Uuid, id: Uuid) -> LeaseOwner {
        LeaseOwner {
            instance,
            kind: AggregateType::Migration,
            id,
            actor: "api".into(),
        }
    }

    fn held_by(owner: Option<LeaseOwner>) -> LeaseHolder {
        LeaseHolder {
            raw: owner.as_ref().map(LeaseOwner::value).unwrap_or("x".into()),
            owner,
            expires_in_ms: Some(9000),
        }
    }

    #[test]
    fn one_writer_per_target_and_force_takes_over() {
        let (me, other) = (Uuid::now_v7(), Uuid::now_v7());
        let job = Uuid::now_v7();
        let ours = owner(me, job);
        assert_eq!(decide(&ours, None, false), LeaseVerdict::Take);
        // A restarted Ferry (same instance id) resuming the same job keeps its lease.
        let mine = held_by(Some(owner(me, job)));
        assert_eq!(decide(&ours, Some(&mine), false), LeaseVerdict::Keep);
        // Another job of the same instance, another instance, or a value we cannot read: refused.
        for found in [
            held_by(Some(owner(me, Uuid::now_v7()))),
            held_by(Some(owner(other, job))),
            held_by(None),
        ] {
            assert_eq!(decide(&ours, Some(&found), false), LeaseVerdict::Refuse);
            assert_eq!(decide(&ours, Some(&found), true), LeaseVerdict::TakeOver);
        }
    }
}
