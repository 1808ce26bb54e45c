//! `acl.users`: the source's ACL users against the target's, for `options.acl`.
//!
//! With `ignore` (the default) it warns when the source has users the target lacks (the
//! applications logging in as them would be refused after cutover); with `copy` it fails when a
//! user exists on both sides with other rules (the copy would refuse it) and passes naming what
//! would be created; with `replace` it passes naming what would be created and overwritten. It
//! never shows a password or a hash: only names and counts. `default` and Ferry's own user on
//! the target are left out, as the copy leaves them alone.

use serde_json::json;

use super::{fail, pass, warn, Inputs, Verdict};
use crate::model::acl::{self, AclUserStatus};
use crate::spec::AclMode;
use crate::validate::error::CallError;

const ID: &str = "acl.users";

/// At most this many user names in a message.
const NAMED: usize = 10;

fn names<'a>(users: impl Iterator<Item = &'a str>) -> String {
    let all: Vec<&str> = users.collect();
    let mut shown: Vec<String> = all.iter().take(NAMED).map(|u| format!("`{u}`")).collect();
    if all.len() > NAMED {
        shown.push(format!("and {} more", all.len() - NAMED));
    }
    shown.join(", ")
}

pub fn users(inputs: &Inputs) -> Verdict {
    let mode = inputs.spec.options.acl;
    let (Some(source), Some(target)) = (&inputs.source.acl_users, &inputs.target.acl_users) else {
        // A server that could not be reached has no facts: its connect check says so.
        for side in [inputs.source, inputs.target] {
            if side.acl_users.is_none() && side.connect.is_err() {
                return Err(side.unknown(&CallError::NotConnected { side: side.side }));
            }
        }
        return pass(
            ID,
            "ACL users not compared: they were not read",
            json!({"mode": mode_name(mode), "compared": false}),
        );
    };
    let (source, target) = match (source, target) {
        (Ok(s), Ok(t)) => (acl::parse_list(s), acl::parse_list(t)),
        (Err(e), _) | (_, Err(e)) => {
            let why = format!("ACL LIST could not be read ({e})");
            return match mode {
                AclMode::Ignore => pass(
                    ID,
                    format!("ACL users not compared: {why}; only options.acl copy needs it"),
                    json!({"mode": "ignore", "compared": false}),
                ),
                _ => fail(
                    ID,
                    format!(
                        "options.acl {} needs ACL LIST on both servers and ACL SETUSER on the \
                         target, but {why}; allow `+acl` for Ferry's user on both (see GET \
                         /v1/guide/redis)",
                        mode_name(mode)
                    ),
                    json!({"mode": mode_name(mode), "compared": false}),
                ),
            };
        }
    };
    let user = |facts: &crate::validate::facts::ServerFacts| match &facts.connect {
        Ok(connected) => connected.user.clone(),
        Err(_) => "default".to_string(),
    };
    let (source_user, target_user) = (user(inputs.source), user(inputs.target));
    let ferry = acl::FerryUsers {
        source: &source_user,
        target: &target_user,
    };
    let report = acl::diff(&source, &target, ferry, mode);
    let of = |status| {
        names(
            report
                .with_status(status)
                .map(|u| u.user.as_str())
                .collect::<Vec<_>>()
                .into_iter(),
        )
    };
    let details = json!({
        "mode": mode_name(mode),
        "missing": report.count(AclUserStatus::Missing),
        "equal": report.count(AclUserStatus::Equal),
        "different": report.count(AclUserStatus::Different),
        "skipped": report.count(AclUserStatus::Skipped),
    });
    let missing = report.count(AclUserStatus::Missing);
    let different = report.count(AclUserStatus::Different);
    match mode {
        AclMode::Ignore if missing > 0 => warn(
            ID,
            format!(
                "the target lacks {missing} of the source's ACL users ({}): clients that log in \
                 as them will be refused after cutover; set options.acl to `copy` to re-create \
                 them, or create them on the target",
                of(AclUserStatus::Missing)
            ),
            details,
        ),
        AclMode::Ignore => pass(
            ID,
            format!(
                "the target has every ACL user of the source ({} compared; `default` and \
                 Ferry's own users left out)",
                report.count(AclUserStatus::Equal) + different
            ),
            details,
        ),
        AclMode::Copy if different > 0 => fail(
            ID,
            format!(
                "the target has {} with other rules than the source's; options.acl `copy` \
                 refuses to change them: set it to `replace` to overwrite them, or make them \
                 equal",
                of(AclUserStatus::Different)
            ),
            details,
        ),
        AclMode::Copy | AclMode::Replace => pass(
            ID,
            format!(
                "options.acl {}: {missing} user(s) to create, {} to replace, {} already equal; \
                 `default` and Ferry's own user are never changed",
                mode_name(mode),
                if mode == AclMode::Replace {
                    different
                } else {
                    0
                },
                report.count(AclUserStatus::Equal)
            ),
            details,
        ),
    }
}

fn mode_name(mode: AclMode) -> &'static str {
    match mode {
        AclMode::Ignore => "ignore",
        AclMode::Copy => "copy",
        AclMode::Replace => "replace",
    }
}
