//! `options.acl: copy | replace`: the source's ACL users re-created on the target before the
//! first write.
//!
//! Both sides' `ACL LIST` are read and compared (see [`crate::model::acl`]); the diff is recorded
//! first (`AclDiffed`, passwords redacted), then users are created with `ACL SETUSER <name>
//! reset <rules…>` (passwords travel as the source's hashes, never in clear), and the outcome is
//! recorded (`AclCopied`). `copy` refuses, before changing anything, a target user whose rules
//! differ; `replace` overwrites it. `default` and the user Ferry authenticates as on the target
//! are never changed, and Ferry's replication user on the source is not copied. A restarted job runs this again: users it created are then equal, and
//! nothing is written twice.

use super::error::EngineError;
use super::Reporter;
use crate::client::Conn;
use crate::model::acl::{self, AclUser, AclUserStatus};
use crate::model::EventKind;
use crate::resp::Frame;
use crate::spec::AclMode;

/// `ACL LIST` of one side.
async fn list(conn: &mut Conn, side: &str) -> Result<Vec<AclUser>, EngineError> {
    let reply = conn.call_ok(&["ACL", "LIST"]).await.map_err(|e| {
        EngineError::AclRefused(format!(
            "cannot read the {side}'s users (ACL LIST): {e}; Ferry's user needs the ACL command \
             on both servers for options.acl"
        ))
    })?;
    let Frame::Array(lines) = reply else {
        return Err(EngineError::AclRefused(format!(
            "the {side}'s ACL LIST answered something other than a list"
        )));
    };
    let lines: Vec<String> = lines
        .iter()
        .filter_map(|l| l.as_bytes())
        .map(|b| String::from_utf8_lossy(b).into_owned())
        .collect();
    Ok(acl::parse_list(&lines))
}

impl super::Run {
    /// `options.acl` other than `ignore`: carries the users over (Ferry's own users on both
    /// sides, named by the URLs, are left out).
    pub(super) async fn carry_over_acl(
        &self,
        source: &mut Conn,
        target: &mut Conn,
    ) -> Result<(), EngineError> {
        let mode = self.job.spec.options.acl;
        if mode == AclMode::Ignore {
            return Ok(());
        }
        carry_over(mode, source, target, self.ferry_users(), &self.reporter).await
    }
}

impl super::Run {
    /// A dry run with `options.acl` other than `ignore`: the diff is recorded (`AclDiffed`), and
    /// nothing is applied.
    pub(super) async fn diff_acl_only(
        &self,
        source: &mut Conn,
        target: &mut Conn,
    ) -> Result<(), EngineError> {
        let mode = self.job.spec.options.acl;
        if mode == AclMode::Ignore {
            return Ok(());
        }
        let source_users = list(source, "source").await?;
        let target_users = list(target, "target").await?;
        let report = acl::diff(&source_users, &target_users, self.ferry_users(), mode);
        self.reporter
            .emit(EventKind::AclDiffed {
                report: Box::new(report),
            })
            .await
    }

    fn ferry_users(&self) -> acl::FerryUsers<'_> {
        acl::FerryUsers {
            source: self.source.url().username.as_deref().unwrap_or("default"),
            target: self.target.url().username.as_deref().unwrap_or("default"),
        }
    }
}

/// Diffs, records and applies the source's users on the target.
async fn carry_over(
    mode: AclMode,
    source: &mut Conn,
    target: &mut Conn,
    ferry: acl::FerryUsers<'_>,
    reporter: &Reporter,
) -> Result<(), EngineError> {
    let source_users = list(source, "source").await?;
    let target_users = list(target, "target").await?;
    let report = acl::diff(&source_users, &target_users, ferry, mode);
    let different: Vec<String> = report
        .with_status(AclUserStatus::Different)
        .map(|u| format!("`{}`", u.user))
        .collect();
    let skipped = report
        .with_status(AclUserStatus::Skipped)
        .map(|u| u.user.clone())
        .collect();
    let to_create: Vec<String> = report
        .with_status(AclUserStatus::Missing)
        .map(|u| u.user.clone())
        .collect();
    let to_replace: Vec<String> = match mode {
        AclMode::Replace => report
            .with_status(AclUserStatus::Different)
            .map(|u| u.user.clone())
            .collect(),
        _ => Vec::new(),
    };
    reporter
        .emit(EventKind::AclDiffed {
            report: Box::new(report),
        })
        .await?;
    if mode == AclMode::Copy && !different.is_empty() {
        return Err(EngineError::AclRefused(format!(
            "the target has user{} {} with other rules than the source's; nothing was changed. \
             Set options.acl to `replace` to overwrite them, or make them equal",
            if different.len() == 1 { "" } else { "s" },
            different.join(", ")
        )));
    }
    for name in to_create.iter().chain(&to_replace) {
        let Some(user) = source_users.iter().find(|u| &u.name == name) else {
            continue;
        };
        match target.call(&user.setuser()).await {
            Ok(Frame::Error(reply)) => {
                let reply = acl::redact(&String::from_utf8_lossy(&reply), &[user]);
                return Err(EngineError::AclRefused(format!(
                    "the target refused user `{name}`'s rules: {reply}"
                )));
            }
            Ok(_) => {}
            Err(e) => {
                let why = acl::redact(&e.to_string(), &[user]);
                return Err(EngineError::AclRefused(format!(
                    "creating user `{name}` on the target failed: {why}"
                )));
            }
        }
    }
    tracing::info!(
        created = to_create.len(),
        replaced = to_replace.len(),
        "ACL users carried over"
    );
    reporter
        .emit(EventKind::AclCopied {
            created: to_create,
            replaced: to_replace,
            skipped,
        })
        .await
}
