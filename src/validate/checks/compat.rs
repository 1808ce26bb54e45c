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

pub fn versions(inputs: &Inputs) -> Verdict {
    let id = "versions";
    let source_info = inputs.source.need_info()?;
    let target_info = inputs.target.need_info()?;
    let (Some(source), Some(target)) = (source_info.server(), target_info.server()) else {
        let shown = |info: &crate::client::Info| info.version().unwrap_or("unknown").to_string();
        return warn(
            id,
            format!(
                "cannot tell the versions of the source ({}) and the target ({}); \
                 check that the target is not older than the source",
                shown(source_info),
                shown(target_info)
            ),
            json!({ "source_version": source_info.version(), "target_version": target_info.version() }),
        );
    };
    let (source_rdb, target_rdb) = (source.rdb_version(), target.rdb_version());
    let drop_field_ttls = inputs.spec.options.drop_field_ttls;
    // Keys with hash field TTLs, as counted by INFO keyspace (`subexpiry` on Redis ≥ 7.4,
    // `keys_with_volatile_items` on Valkey 9). Where a source that could hold them does not
    // count them, the gathering sampled hashes instead.
    let could_hold_field_ttls = source.has_field_ttls();
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
        (true, Some(_), Some(Ok(_))) => "INFO keyspace, checked by a sample",
        (true, Some(_), _) => "INFO keyspace (subexpiry / keys_with_volatile_items)",
        (true, None, Some(Ok(_))) => "sample: SCAN TYPE hash, HRANDFIELD, HTTL",
        (true, None, _) => "none: INFO keyspace does not count them and sampling failed",
    };
    let sampled = sample.and_then(|s| s.as_ref().ok());
    let details = json!({
        "source_version": source.to_string(),
        "target_version": target.to_string(),
        "source_rdb_version": source_rdb,
        "target_rdb_version": target_rdb,
        "keys_with_hash_field_ttls": counted,
        "hash_field_ttl_detection": detection,
        "hashes_sampled": sampled.map(|s| s.hashes_sampled),
        "sampled_hashes_with_field_ttls": sampled.map(|s| s.with_field_ttls),
        "drop_field_ttls": drop_field_ttls,
        "function_libraries": inputs.source.function_libraries.as_ref().and_then(|r| r.as_ref().ok()),
    });
    // Function libraries (Redis ≥ 7.0, Valkey) cannot exist on an older target: the engine
    // would stop at the first one, so refuse up front. This verdict joins any field-TTL verdict.
    let functions_refused = match &inputs.source.function_libraries {
        Some(Ok(libraries)) if *libraries > 0 && !target.has_functions() => Some(format!(
            "the source has {libraries} function librar{} (Redis 7.0+), which {target} \
             cannot hold: use a target of Redis 7.0 or newer, or remove them on the source (FUNCTION DELETE)",
            if *libraries == 1 { "y" } else { "ies" }
        )),
        _ => None,
    };
    let joined = |message: String| match &functions_refused {
        Some(functions) => format!("{functions}; and {message}"),
        None => message,
    };
    // With `drop_field_ttls` the user accepted the loss: it is said, not refused.
    let refuse = |message: String| match (&functions_refused, drop_field_ttls) {
        (None, true) => warn(id, message, details.clone()),
        _ => fail(id, joined(message), details.clone()),
    };
    let doubt = |message: String| match &functions_refused {
        Some(_) => fail(id, joined(message), details.clone()),
        None => warn(id, message, details.clone()),
    };
    if !target.has_field_ttls() {
        let cannot = if drop_field_ttls {
            format!(
                "{target} cannot store them: with `drop_field_ttls` their fields are migrated \
                 without TTLs, and never expire on the target"
            )
        } else {
            format!(
                "{target} cannot store them: use a target of Redis 7.4+ or Valkey 9+, remove the \
                 field TTLs on the source (HPERSIST), or set `options.drop_field_ttls` to migrate \
                 the fields without them"
            )
        };
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
                    "none of {} sampled hashes has field TTLs, but the source ({source}) \
                     does not count them, so others may; if they do, {cannot}",
                    found.hashes_sampled
                ))
            }
            (None, None) => {
                return doubt(format!(
                    "the source ({source}) does not report how many keys have hash field \
                     TTLs; if any do, {cannot}"
                ))
            }
        }
    }
    if let Some(functions) = functions_refused {
        return fail(id, functions, details);
    }
    if source.fork != target.fork {
        return warn(
            id,
            format!(
                "{source} (RDB {source_rdb}) to {target} (RDB {target_rdb}) crosses forks: values \
                 in an encoding both read are restored with a version the target accepts, the \
                 others (e.g. hashes with field TTLs) are rewritten as commands, and commands of \
                 the stream the target lacks are rewritten into its own"
            ),
            details,
        );
    }
    if target_rdb < source_rdb {
        return warn(
            id,
            format!(
                "the target ({target}, RDB {target_rdb}) is older than the source ({source}, RDB \
                 {source_rdb}): values it cannot read are rewritten as commands, which is slower, \
                 and so are the stream's commands it lacks"
            ),
            details,
        );
    }
    pass(
        id,
        format!(
            "{source} (RDB {source_rdb}) to {target} (RDB {target_rdb}): the target reads every \
             source encoding"
        ),
        details,
    )
}

/// Modules that register no data type, so that no key needs them on the target: Valkey 9 lists
/// its Lua scripting engine as the module `lua`.
fn keyless(module: &str) -> bool {
    module == "lua"
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
        .filter(|m| !on_target.contains_key(m.name.as_str()) && !keyless(&m.name))
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
    // Not a refusal: Redis 8 loads `vectorset` by itself, so a source "has" a module it may
    // hold no key of. The engine stops at the first key of a missing module, naming both.
    if !missing.is_empty() {
        return warn(
            id,
            format!(
                "module {} is loaded on the source but missing on the target: keys of its types \
                 cannot be written, and the migration stops at the first one, naming it; if the \
                 source holds such keys, load the module on the target (`loadmodule \
                 /path/to/module.so`) and restart it",
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
