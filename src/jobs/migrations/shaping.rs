//! PATCH of a running migration: only `options.limits` may change (issue #19), recorded as
//! `LimitsChanged` and handed to the running engine. And the spec checks of limits and schedule.

use super::{migration, Action, Command, Migration, MigrationPatch, MigrationView, OptionsPatch};
use crate::jobs::table::Slot;
use crate::jobs::{JobError, Jobs};
use crate::spec::{Limits, MigrationSpec};

impl OptionsPatch {
    /// The limits, when they are all this patch changes.
    fn only_limits(&self) -> Option<Limits> {
        let rest = OptionsPatch {
            limits: None,
            ..self.clone()
        };
        if rest == OptionsPatch::default() {
            self.limits
        } else {
            None
        }
    }
}

impl MigrationPatch {
    /// The limits, when they are all this patch changes (what a running migration accepts).
    fn only_limits(&self) -> Option<Limits> {
        let rest = MigrationPatch {
            options: None,
            ..self.clone()
        };
        if rest == MigrationPatch::default() {
            self.options.as_ref()?.only_limits()
        } else {
            None
        }
    }
}

/// The bounds of the limits (what the schema itself says: at least 1 op, 1024 bytes, at most
/// an int64), as a 400 naming the field. Rules between fields or against the clock (a window
/// that ended, `to` before `from`, limits with `transfer: relay`) are not the request's form:
/// a schema-valid request is accepted, and [`check_for_validation`] refuses to validate it.
pub(super) fn check_shape(spec: &MigrationSpec) -> Result<(), JobError> {
    spec.options.limits.check().map_err(|e| JobError::Invalid {
        field: e.field.into(),
        detail: e.detail,
    })
}

/// Every limits and schedule rule, before a validation: a 409 naming the field and what to
/// change with `PATCH`.
pub(super) fn check_for_validation(current: &Migration) -> Result<(), JobError> {
    current
        .spec()
        .check_limits_and_schedule(chrono::Utc::now())
        .map_err(|e| {
            let why = format!(
                "`{}`: {}; change it with PATCH, then validate again",
                e.field, e.detail
            );
            migration::refusal(current, super::Action::Validate, Some(why)).into()
        })
}

impl Jobs {
    /// A PATCH of running migration `current`: its limits, or a 409 saying that only they may
    /// change. The caller holds the slot's lock.
    pub(super) async fn change_limits(
        &self,
        slot: &Slot<Migration>,
        current: &Migration,
        patch: MigrationPatch,
        actor: &str,
    ) -> Result<MigrationView, JobError> {
        let id = current.view.id;
        let Some(limits) = patch.only_limits() else {
            let why = "it is running, and while it runs a PATCH may change only \
                       `options.limits` (send `{\"options\": {\"limits\": {…}}}` alone); \
                       anything else needs a new migration"
                .to_string();
            return Err(migration::refusal(current, Action::Update, Some(why)).into());
        };
        limits.check().map_err(|e| JobError::Invalid {
            field: e.field.into(),
            detail: e.detail,
        })?;
        self.decide_and_commit(slot, id, actor, Command::ChangeLimits { limits })
            .await?;
        // Recorded first: a restart re-applies it from the fold.
        self.inner.worker.signal_limits(id, limits);
        Ok(slot.snapshot().view)
    }
}
