//! Verification against an RDB file: does the target hold what the file holds?
//!
//! The file is parsed again (it is on local disk; reading it twice is cheaper than keeping its
//! entries), and each entry that had not expired is compared with the target's key:
//! - the type (`TYPE`);
//! - the value: first cheaply, the body of the target's `DUMP` against the entry's own bytes
//!   (they are equal when the target encodes the value as the file's writer did); when they are
//!   not (an older target that got the value rewritten as commands), the value decoded from the
//!   file is rendered exactly as [`super::verify::canonical`] renders the target's, and those are
//!   compared. Streams and module values are compared by type and `DUMP` only: their canonical
//!   form includes fields the file does not hold the same way;
//! - the TTL, within the tuning's tolerance.
//!
//! `full` checks every entry; `sample` the first `sample_keys` entries of the file plus the key
//! counts per database. A key that expires during the check is not a problem.

use std::collections::BTreeMap;
use std::path::Path;

use bytes::Bytes;
use tokio::io::AsyncReadExt;

use super::canonical;
use crate::client::Conn;
use crate::engine::error::{show_key, EngineError};
use crate::engine::{server_version, Tuning};
use crate::model::{Difference, ProblemKey, VerificationReport};
use crate::rdb::{Entry, Item, Parser, Value};
use crate::resp::Frame;
use crate::shape::Shape;
use crate::spec::Verify;
use crate::transport::Peer;

/// Problem keys listed in the report (as for a server source).
const MAX_PROBLEMS: usize = 100;

/// Compares the `target` server with the file at `path`.
pub(crate) async fn verify(
    path: &Path,
    target: &Peer,
    mode: Verify,
    tuning: &Tuning,
    shape: &Shape,
) -> Result<VerificationReport, EngineError> {
    let mut target = Conn::connect(target).await.map_err(EngineError::target)?;
    let version = server_version(&mut target)
        .await
        .map_err(EngineError::target)?;
    let field_ttls = version.has_field_ttls();
    let mut check = FileCheck {
        target,
        field_ttls,
        tolerance_ms: tuning.ttl_tolerance_ms,
        db: None,
        report: VerificationReport {
            mode,
            checked: 0,
            missing: 0,
            different: 0,
            extra: 0,
            problems: vec![],
        },
    };
    let limit = match mode {
        Verify::Full => u64::MAX,
        _ => tuning.sample_keys as u64,
    };
    let mut file = tokio::fs::File::open(path)
        .await
        .map_err(|e| EngineError::Rdb(format!("cannot open {}: {e}", path.display())))?;
    let mut parser = Parser::new();
    let mut live_per_db: BTreeMap<u32, u64> = BTreeMap::new();
    let mut missing_per_db: BTreeMap<u32, u64> = BTreeMap::new();
    let mut chunk = vec![0u8; 1 << 20];
    loop {
        let n = file
            .read(&mut chunk)
            .await
            .map_err(|e| EngineError::Rdb(format!("reading {} failed: {e}", path.display())))?;
        if n == 0 {
            break;
        }
        parser.push(&chunk[..n]);
        while let Some(item) = parser
            .next_item()
            .map_err(|e| EngineError::Rdb(e.to_string()))?
        {
            let Item::Entry(mut entry) = item else {
                continue;
            };
            let now = chrono::Utc::now().timestamp_millis();
            if entry.expire_ms.is_some_and(|at| at <= now) {
                continue; // the load skipped it as expired
            }
            let db = u32::try_from(entry.db)
                .map_err(|_| EngineError::Rdb(format!("database {} out of range", entry.db)))?;
            // Through the migration's filter, under the target's db and name.
            if !shape.is_identity() {
                let type_name = entry
                    .module_name()
                    .unwrap_or_else(|| crate::rdb::types::data_type(entry.type_byte).to_string());
                if !shape.key_in(db, &entry.key) || !shape.type_in(&type_name) {
                    continue;
                }
                entry.key = shape.target_key(&entry.key);
            }
            let db = shape.target_db(db);
            *live_per_db.entry(db).or_default() += 1;
            if check.report.checked < limit && check.entry(db, &entry).await? {
                *missing_per_db.entry(db).or_default() += 1;
            }
        }
    }
    parser
        .finish()
        .map_err(|e| EngineError::Rdb(e.to_string()))?;
    // The target may hold keys the migration did not write (outside the filter, or another
    // database merged in): under a shape only the keys compared one by one are judged.
    if shape.is_identity() {
        check.counts(mode, &live_per_db, &missing_per_db).await?;
    }
    Ok(check.report)
}

struct FileCheck {
    target: Conn,
    /// The target knows hash field TTLs (so they are part of a hash's canonical form).
    field_ttls: bool,
    tolerance_ms: i64,
    /// The database the connection has selected.
    db: Option<u32>,
    report: VerificationReport,
}

impl FileCheck {
    fn problem(&mut self, db: u32, key: String, difference: Difference) {
        match difference {
            Difference::Missing => self.report.missing += 1,
            Difference::Extra => self.report.extra += 1,
            _ => self.report.different += 1,
        }
        if self.report.problems.len() < MAX_PROBLEMS {
            self.report.problems.push(ProblemKey {
                db,
                key,
                difference,
            });
        }
    }

    /// Compares one entry; returns whether the key was missing on the target.
    async fn entry(&mut self, db: u32, entry: &Entry) -> Result<bool, EngineError> {
        if self.db != Some(db) {
            self.target.select(db).await.map_err(EngineError::target)?;
            self.db = Some(db);
        }
        self.report.checked += 1;
        let key: &[u8] = &entry.key;
        let replies = self
            .target
            .call_many(&[
                vec![b"TYPE".as_slice(), key],
                vec![b"PTTL".as_slice(), key],
                vec![b"DUMP".as_slice(), key],
            ])
            .await
            .map_err(EngineError::target)?;
        let [kind, pttl, dump] = <[Frame; 3]>::try_from(replies).map_err(|_| {
            EngineError::TargetLinkLost("the target answered a pipeline short".into())
        })?;
        let kind = match kind {
            Frame::Simple(b) | Frame::Bulk(b) => String::from_utf8_lossy(&b).into_owned(),
            other => format!("{other:?}"),
        };
        let now = chrono::Utc::now().timestamp_millis();
        if kind == "none" {
            // Expired since the load (within the tolerance) is not a problem.
            if entry
                .expire_ms
                .is_some_and(|at| at <= now + self.tolerance_ms)
            {
                return Ok(false);
            }
            self.problem(db, show_key(key), Difference::Missing);
            return Ok(true);
        }
        let value = entry
            .decode()
            .map_err(|e| EngineError::Rdb(format!("key `{}`: {e}", show_key(key))))?;
        let expected_kind = match &value {
            // `TYPE` of a module key is the module type's name (`ReJSON-RL`, `MBbloom--`, …).
            Value::Module { module_name, .. } => module_name.clone(),
            other => other.type_name().to_string(),
        };
        if kind != expected_kind {
            self.problem(db, show_key(key), Difference::Type);
            return Ok(false);
        }
        if !self.same_value(entry, &value, &kind, dump).await? {
            self.problem(db, show_key(key), Difference::Value);
            return Ok(false);
        }
        let target_ttl = pttl.as_int().unwrap_or(-2);
        let ttl_ok = match entry.expire_ms {
            None => target_ttl == -1,
            Some(at) => target_ttl >= 0 && (at - now - target_ttl).abs() <= self.tolerance_ms,
        };
        if !ttl_ok {
            self.problem(db, show_key(key), Difference::Ttl);
        }
        Ok(false)
    }

    async fn same_value(
        &mut self,
        entry: &Entry,
        value: &Value,
        kind: &str,
        dump: Frame,
    ) -> Result<bool, EngineError> {
        // DUMP = type byte, serialized value, 2-byte RDB version, 8-byte CRC.
        if let Frame::Bulk(payload) = &dump {
            if let Some(body) = payload.get(..payload.len().saturating_sub(10)) {
                if body.first() == Some(&entry.type_byte) && body[1..] == entry.raw_value[..] {
                    return Ok(true);
                }
            }
        }
        let Some(expected) = render(value, self.field_ttls) else {
            // Streams and module values: type and DUMP only (see the module docs).
            return Ok(matches!(value, Value::Stream(_) | Value::Module { .. }));
        };
        let actual = canonical(&mut self.target, kind, &entry.key, self.field_ttls)
            .await
            .map_err(EngineError::target)?;
        Ok(actual.as_ref() == Some(&expected))
    }

    /// Per-database key counts: keys the file has that the target lacks (in `sample` mode, where
    /// not every key was looked at) and keys the target has that the file does not.
    async fn counts(
        &mut self,
        mode: Verify,
        live: &BTreeMap<u32, u64>,
        missing: &BTreeMap<u32, u64>,
    ) -> Result<(), EngineError> {
        let info = self
            .target
            .info("keyspace")
            .await
            .map_err(EngineError::target)?;
        let own = super::bookkeeping_keys(&mut self.target, None)
            .await
            .map_err(EngineError::target)?;
        for (&db, &file_count) in live {
            let mut target_count = info.keyspace.get(&db).map_or(0, |stats| stats.keys);
            if db == 0 {
                target_count = target_count.saturating_sub(own);
            }
            let missing_here = missing.get(&db).copied().unwrap_or(0);
            if mode != Verify::Full && file_count > target_count + missing_here {
                let lacking = file_count - target_count - missing_here;
                self.report.missing += lacking;
                if self.report.problems.len() < MAX_PROBLEMS {
                    self.report.problems.push(ProblemKey {
                        db,
                        key: format!("({lacking} keys)"),
                        difference: Difference::Missing,
                    });
                }
            }
            let extra = target_count.saturating_sub(file_count.saturating_sub(missing_here));
            if extra > 0 {
                self.report.extra += extra;
                if self.report.problems.len() < MAX_PROBLEMS {
                    self.report.problems.push(ProblemKey {
                        db,
                        key: format!("({extra} keys)"),
                        difference: Difference::Extra,
                    });
                }
            }
        }
        Ok(())
    }
}

/// A decoded value rendered as [`canonical`] renders the same value read from a server; `None`
/// for the types compared otherwise.
fn render(value: &Value, field_ttls: bool) -> Option<Vec<Bytes>> {
    let mut out = Vec::new();
    match value {
        Value::String(s) => out.push(s.clone()),
        Value::List(items) => {
            out.push(Bytes::from(format!("*{}", items.len())));
            out.extend(items.iter().cloned());
        }
        Value::Set(members) => {
            out.extend(members.iter().cloned());
            out.sort();
        }
        Value::SortedSet(members) => {
            let mut sorted = members.clone();
            sorted.sort_by(|(ma, sa), (mb, sb)| sa.total_cmp(sb).then_with(|| ma.cmp(mb)));
            for (member, score) in sorted {
                out.push(member);
                out.push(Bytes::from(score.to_bits().to_string()));
            }
        }
        Value::Hash(pairs) => {
            let mut pairs = pairs.clone();
            pairs.sort();
            for (field, value) in pairs {
                out.push(field);
                out.push(value);
                if field_ttls {
                    out.push(Bytes::from_static(b"-1"));
                }
            }
        }
        Value::HashWithTtl(triples) => {
            let mut triples = triples.clone();
            triples.sort_by(|a, b| (&a.0, &a.1).cmp(&(&b.0, &b.1)));
            for (field, value, at) in triples {
                out.push(field);
                out.push(value);
                if field_ttls {
                    out.push(Bytes::from(at.unwrap_or(-1).to_string()));
                }
            }
        }
        Value::Stream(_) | Value::Module { .. } => return None,
    }
    Some(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn b(s: &str) -> Bytes {
        Bytes::copy_from_slice(s.as_bytes())
    }

    #[test]
    fn sorted_sets_render_in_zrange_order_with_exact_scores() {
        let value = Value::SortedSet(vec![(b("b"), 2.0), (b("a"), 2.0), (b("c"), -1.5)]);
        let rendered = render(&value, false).unwrap();
        let expected = vec![
            b("c"),
            b(&(-1.5f64).to_bits().to_string()),
            b("a"),
            b(&2.0f64.to_bits().to_string()),
            b("b"),
            b(&2.0f64.to_bits().to_string()),
        ];
        assert_eq!(rendered, expected);
    }

    #[test]
    fn hashes_carry_field_expiries_only_where_the_target_knows_them() {
        let value = Value::HashWithTtl(vec![(b("f2"), b("v2"), None), (b("f1"), b("v1"), Some(9))]);
        assert_eq!(
            render(&value, true).unwrap(),
            vec![b("f1"), b("v1"), b("9"), b("f2"), b("v2"), b("-1")]
        );
        let plain = Value::Hash(vec![(b("f"), b("v"))]);
        assert_eq!(render(&plain, false).unwrap(), vec![b("f"), b("v")]);
        assert_eq!(render(&plain, true).unwrap(), vec![b("f"), b("v"), b("-1")]);
    }

    #[test]
    fn lists_keep_their_order_and_sets_are_sorted() {
        let list = Value::List(vec![b("z"), b("a")]);
        assert_eq!(render(&list, false).unwrap(), vec![b("*2"), b("z"), b("a")]);
        let set = Value::Set(vec![b("z"), b("a")]);
        assert_eq!(render(&set, false).unwrap(), vec![b("a"), b("z")]);
    }
}
