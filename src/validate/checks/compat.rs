//! `versions` and `modules`: can every value of the source be expressed on the target?
//!
//! The RDB knowledge lives in [`crate::rdb::version`]: which RDB version a server speaks and which
//! value types each version knows. A target that is older than the source still takes most values,
//! rewritten as plain commands; what it has no notion of at all (hash field TTLs before 7.4, a
//! module type without the module) cannot be carried, and validation must say so before anything
//! is written.

use std::collections::HashMap;

use serde_json::json;

use super::{fail, pass, warn, Inputs, Verdict};
use crate::rdb::version::{rdb_version_for_version_string, target_understands, type_introduced_in};

/// RDB type byte of a hash whose fields carry TTLs (`RDB_TYPE_HASH_METADATA`, RDB 12 / Redis 7.4);
/// its small encoding, `RDB_TYPE_HASH_LISTPACK_EX` (25), arrived in the same version.
const HASH_WITH_FIELD_TTLS: u8 = 24;

/// The RDB version of the first Redis with functions (7.0); older targets cannot hold them.
const FUNCTIONS_SINCE_RDB: u16 = 10;

pub fn versions(inputs: &Inputs) -> Verdict {
    let id = "versions";
    let source_info = inputs.source.need_info()?;
    let target_info = inputs.target.need_info()?;
    let source_version = source_info.version().unwrap_or("unknown");
    let target_version = target_info.version().unwrap_or("unknown");
    let (Some(source_rdb), Some(target_rdb)) = (
        rdb_version_for_version_string(source_version),
        rdb_version_for_version_string(target_version),
    ) else {
        return warn(
            id,
            format!(
                "cannot tell the RDB versions of Redis {source_version} (source) and {target_version} (target); \
                 check that the target is not older than the source"
            ),
            json!({ "source_version": source_version, "target_version": target_version }),
        );
    };
    // Keys with hash field TTLs, as counted by INFO keyspace (`subexpiry`, Redis ≥ 7.4). Where a
    // source that could hold them does not count them, the gathering sampled hashes instead.
    let could_hold_field_ttls =
        type_introduced_in(HASH_WITH_FIELD_TTLS).is_some_and(|v| source_rdb >= v);
    let counted: Option<u64> = if could_hold_field_ttls {
        source_info
            .keyspace
            .values()
            .map(|db| db.subexpiry)
            .sum::<Option<u64>>()
    } else {
        Some(0)
    };
    let sample = inputs.source.field_ttl_sample.as_ref();
    let detection = match (could_hold_field_ttls, counted, sample) {
        (false, _, _) => "not needed: the source predates hash field TTLs",
        (true, Some(_), Some(Ok(_))) => "INFO keyspace subexpiry, checked by a sample",
        (true, Some(_), _) => "INFO keyspace subexpiry",
        (true, None, Some(Ok(_))) => "sample: SCAN TYPE hash, HRANDFIELD, HTTL",
        (true, None, _) => "none: INFO keyspace has no subexpiry and sampling failed",
    };
    let sampled = sample.and_then(|s| s.as_ref().ok());
    let details = json!({
        "source_version": source_version,
        "target_version": target_version,
        "source_rdb_version": source_rdb,
        "target_rdb_version": target_rdb,
        "keys_with_hash_field_ttls": counted,
        "hash_field_ttl_detection": detection,
        "hashes_sampled": sampled.map(|s| s.hashes_sampled),
        "sampled_hashes_with_field_ttls": sampled.map(|s| s.with_field_ttls),
        "function_libraries": inputs.source.function_libraries.as_ref().and_then(|r| r.as_ref().ok()),
    });
    // Function libraries (Redis ≥ 7.0) cannot exist on an older target: the engine would stop at
    // the first one, so refuse up front. This verdict joins any field-TTL verdict below.
    let functions_refused = match &inputs.source.function_libraries {
        Some(Ok(libraries)) if *libraries > 0 && target_rdb < FUNCTIONS_SINCE_RDB => Some(format!(
            "the source has {libraries} function librar{} (Redis 7.0+), which Redis {target_version} \
             cannot hold: use a target of Redis 7.0 or newer, or remove them on the source (FUNCTION DELETE)",
            if *libraries == 1 { "y" } else { "ies" }
        )),
        _ => None,
    };
    let joined = |message: String| match &functions_refused {
        Some(functions) => format!("{functions}; and {message}"),
        None => message,
    };
    let refuse = |message: String| fail(id, joined(message), details.clone());
    let doubt = |message: String| match &functions_refused {
        Some(_) => fail(id, joined(message), details.clone()),
        None => warn(id, message, details.clone()),
    };
    if !target_understands(HASH_WITH_FIELD_TTLS, target_rdb) {
        let cannot = format!(
            "Redis {target_version} cannot store them: use a target of Redis 7.4 or newer, \
             or remove the field TTLs on the source (HPERSIST)"
        );
        match (counted, sampled) {
            (Some(0), _) => {}
            // Redis 7.4 still counts a hash whose last field TTL was removed (HPERSIST): a sample
            // that looked and found none makes the count doubtful, not damning. The engine still
            // stops, naming the key, at any field TTL it cannot carry.
            (Some(keys), Some(found)) if found.hashes_sampled > 0 && found.with_field_ttls == 0 => {
                return doubt(format!(
                    "INFO keyspace counts {} with hash field TTLs on the source, but none of {} sampled \
                     hashes has one (Redis 7.4 keeps counting a hash after HPERSIST); if some do, {cannot}",
                    super::keys(keys),
                    found.hashes_sampled
                ))
            }
            (Some(keys), _) => {
                return refuse(format!(
                    "{} on the source have hash field TTLs, and {cannot}",
                    super::keys(keys)
                ))
            }
            (None, Some(found)) if found.with_field_ttls > 0 => {
                return refuse(format!(
                    "{} of {} sampled hashes on the source have field TTLs, and {cannot}",
                    found.with_field_ttls, found.hashes_sampled
                ))
            }
            (None, Some(found)) => {
                return doubt(format!(
                    "none of {} sampled hashes has field TTLs, but the source (Redis {source_version}) \
                     does not count them, so others may; if they do, {cannot}",
                    found.hashes_sampled
                ))
            }
            (None, None) => {
                return doubt(format!(
                    "the source (Redis {source_version}) does not report how many keys have hash field \
                     TTLs; if any do, {cannot}"
                ))
            }
        }
    }
    if let Some(functions) = functions_refused {
        return fail(id, functions, details);
    }
    if target_rdb < source_rdb {
        return warn(
            id,
            format!(
                "the target (Redis {target_version}, RDB {target_rdb}) is older than the source \
                 (Redis {source_version}, RDB {source_rdb}): values will be rewritten as commands, which is slower"
            ),
            details,
        );
    }
    pass(
        id,
        format!(
            "Redis {source_version} (RDB {source_rdb}) to Redis {target_version} (RDB {target_rdb}): \
             the target reads every source encoding"
        ),
        details,
    )
}

pub fn modules(inputs: &Inputs) -> Verdict {
    let id = "modules";
    let source = inputs
        .source
        .modules
        .as_ref()
        .map_err(|e| inputs.source.unknown(e))?;
    if source.is_empty() {
        return pass(
            id,
            "the source loads no modules",
            json!({ "source": [], "target": null }),
        );
    }
    let target = inputs
        .target
        .modules
        .as_ref()
        .map_err(|e| inputs.target.unknown(e))?;
    let on_target: HashMap<&str, Option<i64>> = target
        .iter()
        .map(|m| (m.name.as_str(), m.version))
        .collect();
    let listing = |list: &[crate::validate::facts::Module]| {
        list.iter()
            .map(|m| json!({ "name": m.name, "version": m.version }))
            .collect::<Vec<_>>()
    };
    let missing: Vec<&str> = source
        .iter()
        .filter(|m| !on_target.contains_key(m.name.as_str()))
        .map(|m| m.name.as_str())
        .collect();
    let older: Vec<String> = source
        .iter()
        .filter_map(|m| {
            let theirs = (*on_target.get(m.name.as_str())?)?;
            let ours = m.version?;
            (theirs < ours).then(|| format!("{} ({theirs} < {ours})", m.name))
        })
        .collect();
    let details = json!({
        "source": listing(source),
        "target": listing(target),
        "missing_on_target": missing,
        "older_on_target": older,
    });
    if !missing.is_empty() {
        return fail(
            id,
            format!(
                "module {} is loaded on the source but missing on the target, so its keys cannot be written; \
                 load it on the target (`loadmodule /path/to/module.so`) and restart it",
                missing.join(", ")
            ),
            details,
        );
    }
    if !older.is_empty() {
        return warn(
            id,
            format!(
                "the target runs older module versions ({}); their keys may not load: upgrade the modules on the target",
                older.join(", ")
            ),
            details,
        );
    }
    pass(
        id,
        "every module of the source is loaded on the target",
        details,
    )
}
