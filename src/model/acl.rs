//! ACL users as `ACL LIST` prints them, compared and shown without their passwords.
//!
//! `ACL LIST` prints one line per user, `user <name> <rule> <rule> …`, with passwords as their
//! SHA-256 hashes (`#<64 hex>`) and Redis 7.0 selectors as parenthesized groups (`(~k* +get)`).
//! The same line, after `ACL SETUSER <name> reset`, re-creates the user: that is how `acl: copy`
//! carries users over, hashes and all, so no password is ever seen in clear.
//!
//! Rules are compared *normalized*: servers of different versions print the same user
//! differently (7.x adds `sanitize-payload` and `resetchannels`, spells `~*` as `allkeys` in
//! some versions), so those spellings are folded; patterns and passwords are sets; command rules
//! keep their order (`-@all +get` is not `+get -@all`).
//!
//! Nothing here may let a password out: [`AclUser::redacted`] shows hashes as `#<redacted>`,
//! and [`redact`] scrubs a server's reply that may echo a rule back.

use std::collections::BTreeSet;

use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use crate::spec::AclMode;

/// One user: its name and its rules as `ACL LIST` printed them (a selector is one rule).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AclUser {
    pub name: String,
    pub rules: Vec<String>,
}

/// How a password shows wherever a rule is shown.
pub const REDACTED: &str = "#<redacted>";

/// Whether a rule carries a password (`#hash`, `>clear`, `<clear`, `!hash`).
fn is_password(rule: &str) -> bool {
    rule.starts_with(['#', '>', '<', '!'])
}

impl AclUser {
    /// Parses one `ACL LIST` line; `None` for anything else.
    pub fn parse(line: &str) -> Option<AclUser> {
        let rest = line.trim().strip_prefix("user ")?;
        let (name, rules) = rest.split_once(' ').unwrap_or((rest, ""));
        if name.is_empty() {
            return None;
        }
        Some(AclUser {
            name: name.to_string(),
            rules: split_rules(rules),
        })
    }

    /// The rules with every password shown as [`REDACTED`].
    pub fn redacted(&self) -> String {
        self.rules
            .iter()
            .map(|r| if is_password(r) { REDACTED } else { r.as_str() })
            .collect::<Vec<_>>()
            .join(" ")
    }

    /// The password hashes (and any other password rule) the user has.
    fn passwords(&self) -> BTreeSet<&str> {
        self.rules
            .iter()
            .filter(|r| is_password(r))
            .map(String::as_str)
            .collect()
    }

    /// Everything but the passwords, folded to one spelling (see the module docs).
    fn normalized(&self) -> Normalized {
        let mut n = Normalized::default();
        for rule in &self.rules {
            let rule = rule.as_str();
            match rule {
                _ if is_password(rule) => {}
                "sanitize-payload" | "resetchannels" | "resetkeys" | "resetpass" => {}
                "allkeys" => {
                    n.keys.insert("~*".to_string());
                }
                "allchannels" => {
                    n.channels.insert("&*".to_string());
                }
                "allcommands" => n.commands.push("+@all".to_string()),
                "nocommands" => n.commands.push("-@all".to_string()),
                "on" | "off" | "nopass" | "skip-sanitize-payload" => {
                    n.flags.insert(rule.to_string());
                }
                _ if rule.starts_with('~') || rule.starts_with('%') => {
                    n.keys.insert(rule.to_string());
                }
                _ if rule.starts_with('&') => {
                    n.channels.insert(rule.to_string());
                }
                _ if rule.starts_with('(') => n.selectors.push(rule.to_string()),
                _ => n.commands.push(rule.to_ascii_lowercase()),
            }
        }
        n
    }

    /// `ACL SETUSER <name> reset <rules…>`: the user exactly as the source has it.
    pub fn setuser(&self) -> Vec<String> {
        let mut args = vec!["ACL".to_string(), "SETUSER".into(), self.name.clone()];
        args.push("reset".into());
        args.extend(self.rules.iter().cloned());
        args
    }
}

/// Splits rules on spaces, keeping a parenthesized selector whole.
fn split_rules(rules: &str) -> Vec<String> {
    let mut out = Vec::new();
    let mut current = String::new();
    let mut depth = 0usize;
    for c in rules.chars() {
        match c {
            '(' => {
                depth += 1;
                current.push(c);
            }
            ')' => {
                depth = depth.saturating_sub(1);
                current.push(c);
            }
            ' ' if depth == 0 => {
                if !current.is_empty() {
                    out.push(std::mem::take(&mut current));
                }
            }
            _ => current.push(c),
        }
    }
    if !current.is_empty() {
        out.push(current);
    }
    out
}

#[derive(Debug, Default, PartialEq, Eq)]
struct Normalized {
    flags: BTreeSet<String>,
    keys: BTreeSet<String>,
    channels: BTreeSet<String>,
    commands: Vec<String>,
    selectors: Vec<String>,
}

/// Parses a whole `ACL LIST` reply (one line per user).
pub fn parse_list(lines: &[String]) -> Vec<AclUser> {
    lines.iter().filter_map(|l| AclUser::parse(l)).collect()
}

/// Removes every password of `users` from `text` (a server's reply that may echo a rule).
pub fn redact(text: &str, users: &[&AclUser]) -> String {
    let mut out = text.to_string();
    for user in users {
        for password in user.passwords() {
            if password.len() > 1 {
                out = out.replace(password, REDACTED);
                out = out.replace(&password[1..], "<redacted>");
            }
        }
    }
    out
}

/// What happens to one source user on the target.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum AclUserStatus {
    /// The target lacks the user: `copy` creates it.
    Missing,
    /// The target has the user with the same rules and passwords: nothing to do.
    Equal,
    /// The target has the user with other rules or passwords: `copy` refuses, `replace`
    /// overwrites it.
    Different,
    /// Never touched: `default`, or the user Ferry authenticates as on the target.
    Skipped,
}

/// One source user against the target.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct AclUserDiff {
    pub user: String,
    pub status: AclUserStatus,
    /// The source's rules, passwords shown as `#<redacted>`.
    pub source_rules: String,
    /// The target's rules (when it has the user), passwords redacted.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub target_rules: Option<String>,
    /// Whether both sides have the same set of passwords (when the target has the user).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub passwords_equal: Option<bool>,
    /// Why a user is skipped.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
}

/// The source's users against the target's: the diff `acl: copy` writes before it changes
/// anything.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct AclDiffReport {
    pub mode: AclMode,
    pub users: Vec<AclUserDiff>,
}

impl AclDiffReport {
    pub fn with_status(&self, status: AclUserStatus) -> impl Iterator<Item = &AclUserDiff> {
        self.users.iter().filter(move |u| u.status == status)
    }

    pub fn count(&self, status: AclUserStatus) -> usize {
        self.with_status(status).count()
    }
}

/// The users Ferry itself logs in as: on the target (changing it, or `default`, could lock
/// Ferry, or every client, out in the middle of the migration) and on the source (its
/// replication user, not an application's).
#[derive(Debug, Clone, Copy)]
pub struct FerryUsers<'a> {
    pub source: &'a str,
    pub target: &'a str,
}

/// Compares the source's users with the target's; `default` and Ferry's own users are skipped.
pub fn diff(
    source: &[AclUser],
    target: &[AclUser],
    ferry: FerryUsers,
    mode: AclMode,
) -> AclDiffReport {
    let users = source
        .iter()
        .map(|user| {
            let on_target = target.iter().find(|t| t.name == user.name);
            let skip = if user.name == "default" {
                Some("`default` is every unauthenticated client's user; it is never changed")
            } else if user.name == ferry.target {
                Some("the user Ferry authenticates as on the target; it is never changed")
            } else if user.name == ferry.source {
                Some("the user Ferry authenticates as on the source (its replication user)")
            } else {
                None
            };
            let status = match (skip, on_target) {
                (Some(_), _) => AclUserStatus::Skipped,
                (None, None) => AclUserStatus::Missing,
                (None, Some(t))
                    if t.normalized() == user.normalized() && t.passwords() == user.passwords() =>
                {
                    AclUserStatus::Equal
                }
                (None, Some(_)) => AclUserStatus::Different,
            };
            AclUserDiff {
                user: user.name.clone(),
                status,
                source_rules: user.redacted(),
                target_rules: on_target.map(AclUser::redacted),
                passwords_equal: on_target.map(|t| t.passwords() == user.passwords()),
                reason: skip.map(str::to_string),
            }
        })
        .collect();
    AclDiffReport { mode, users }
}

#[cfg(test)]
mod tests {
    use super::*;

    const NONE: FerryUsers = FerryUsers {
        source: "default",
        target: "default",
    };

    const HASH: &str = "#5e884898da28047151d0e56f8dc6292773603d0d6aabbdd62a11ef721d1542d8";

    fn user(line: &str) -> AclUser {
        AclUser::parse(line).unwrap()
    }

    #[test]
    fn lines_parse_with_selectors_whole() {
        let u = user(&format!(
            "user app on {HASH} ~app:* resetchannels -@all +get (~x* +set)"
        ));
        assert_eq!(u.name, "app");
        assert_eq!(u.rules.last().unwrap(), "(~x* +set)");
        assert_eq!(u.rules.len(), 7);
        assert!(!u.redacted().contains(&HASH[1..]));
        assert!(u.redacted().contains(REDACTED));
        assert_eq!(u.setuser()[3], "reset");
    }

    #[test]
    fn versions_spell_the_same_user_alike() {
        let old = user(&format!("user app on {HASH} ~k* &* -@all +get"));
        let new = user(&format!(
            "user app on {HASH} sanitize-payload ~k* &* -@all +get"
        ));
        let report = diff(std::slice::from_ref(&new), &[old], NONE, AclMode::Copy);
        assert_eq!(report.users[0].status, AclUserStatus::Equal);
        let other = user("user app on nopass ~k* &* -@all +get");
        let report = diff(&[new], &[other], NONE, AclMode::Copy);
        assert_eq!(report.users[0].status, AclUserStatus::Different);
        assert_eq!(report.users[0].passwords_equal, Some(false));
    }

    #[test]
    fn default_and_ferrys_own_user_are_skipped() {
        let source = [
            user("user default on nopass ~* &* +@all"),
            user(&format!("user ferry on {HASH} ~* +@all")),
            user(&format!("user app on {HASH} ~* +@all")),
        ];
        let ferry = FerryUsers {
            source: "default",
            target: "ferry",
        };
        let report = diff(&source, &[], ferry, AclMode::Copy);
        let statuses: Vec<_> = report.users.iter().map(|u| u.status).collect();
        assert_eq!(
            statuses,
            [
                AclUserStatus::Skipped,
                AclUserStatus::Skipped,
                AclUserStatus::Missing
            ]
        );
        let text = serde_json::to_string(&report).unwrap();
        assert!(!text.contains(&HASH[1..]), "{text}");
    }

    #[test]
    fn a_reply_echoing_a_hash_is_scrubbed() {
        let u = user(&format!("user app on {HASH} ~*"));
        let reply = format!("ERR Error in ACL SETUSER modifier '{HASH}': bad");
        let clean = redact(&reply, &[&u]);
        assert!(!clean.contains(&HASH[1..]), "{clean}");
    }
}
