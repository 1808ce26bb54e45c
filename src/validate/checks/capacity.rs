//! `capacity.memory` and `capacity.disk`: will the dataset fit where it is going?
//!
//! The source's `used_memory_dataset` (its memory minus the server's own overhead) is the best
//! cheap estimate of what the keys will take on the target. On disk, an RDB file is usually
//! smaller than memory, but a persisting target writes a *new* file next to the old one on every
//! BGSAVE or AOF rewrite, so we plan for twice the dataset there.

use serde_json::json;

use super::replication::dataset_bytes;
use super::{fail, human, pass, warn, Inputs, Verdict};
use crate::model::CheckStatus;
use crate::validate::error::CallError;

/// Extra memory on top of the source's dataset: encodings and allocator overhead differ between
/// versions and fragmentation grows during a bulk load.
pub const MEMORY_MARGIN_PERCENT: u64 = 20;
/// Disk the target needs per byte of dataset: the live file plus the one being rewritten.
pub const TARGET_DISK_FACTOR: u64 = 2;
/// Space Ferry keeps free in its `data_dir` for its event log and spool, besides restore points.
pub const DATA_DIR_RESERVE_BYTES: u64 = 64 * 1024 * 1024;

pub fn capacity_memory(inputs: &Inputs) -> Verdict {
    let id = "capacity.memory";
    let dataset = dataset_bytes(inputs.source.need_info()?);
    let target = inputs.target.need_info()?;
    let needed = dataset + dataset * MEMORY_MARGIN_PERCENT / 100;
    let used = target.num("used_memory").unwrap_or(0);
    let maxmemory = target.num("maxmemory").unwrap_or(0);
    let system = target.num("total_system_memory").unwrap_or(0);
    let policy = target.get("maxmemory_policy").unwrap_or("unknown");
    let (limit_name, limit) = if maxmemory > 0 {
        ("maxmemory", maxmemory)
    } else {
        ("total_system_memory", system)
    };
    let headroom = limit.saturating_sub(used);
    let details = json!({
        "source_dataset_bytes": dataset,
        "margin_percent": MEMORY_MARGIN_PERCENT,
        "needed_bytes": needed,
        "target_used_memory": used,
        "target_maxmemory": maxmemory,
        "target_total_system_memory": system,
        "headroom_bytes": headroom,
        "limit": limit_name,
        "target_maxmemory_policy": policy,
    });
    if limit == 0 {
        return warn(
            id,
            format!(
                "the target reports neither maxmemory nor its system memory; make sure it has {} free",
                human(needed)
            ),
            details,
        );
    }
    if needed > headroom {
        let message = format!(
            "the source's dataset needs about {} ({} + {MEMORY_MARGIN_PERCENT}%) but the target has only {} \
             free under its {limit_name} of {}",
            human(needed),
            human(dataset),
            human(headroom),
            human(limit)
        );
        return if maxmemory > 0 {
            fail(
                id,
                format!(
                    "{message}; raise it with `CONFIG SET maxmemory {}` or free memory on the target",
                    (used + needed).div_ceil(1024 * 1024).max(1).to_string() + "mb"
                ),
                details,
            )
        } else {
            warn(
                id,
                format!("{message}; the target host may run out of memory"),
                details,
            )
        };
    }
    if maxmemory > 0 && policy != "noeviction" {
        return warn(
            id,
            format!(
                "the dataset fits ({} needed, {} free), but the target's eviction policy `{policy}` may evict \
                 migrated keys if memory fills; set `maxmemory-policy noeviction` for the migration",
                human(needed),
                human(headroom)
            ),
            details,
        );
    }
    pass(
        id,
        format!(
            "the dataset fits: {} needed, {} free under the target's {limit_name}",
            human(needed),
            human(headroom)
        ),
        details,
    )
}

pub fn capacity_disk(inputs: &Inputs) -> Verdict {
    let id = "capacity.disk";
    let dataset = dataset_bytes(inputs.source.need_info()?);
    let target_info = inputs.target.need_info()?;
    let mut parts: Vec<(CheckStatus, String)> = Vec::new();

    // The target's own disk, when it persists.
    let target_needed = dataset * TARGET_DISK_FACTOR;
    let mut target_details = json!({ "needed_bytes": target_needed });
    match &inputs.target.config {
        Err(CallError::NotConnected { .. }) => {
            return Err(inputs.target.unknown(&CallError::NotConnected {
                side: inputs.target.side,
            }))
        }
        Err(e) => parts.push((
            CheckStatus::Warn,
            format!(
                "cannot tell whether the target persists ({e}); if it does, its dir needs {} free",
                human(target_needed)
            ),
        )),
        Ok(config) if !config.persists() => parts.push((
            CheckStatus::Pass,
            "the target does not persist to disk".into(),
        )),
        Ok(config) => {
            let dir = config.get("dir").unwrap_or("?");
            target_details["dir"] = json!(dir);
            match &inputs.local.target_dir_free {
                Some(Ok(free)) => {
                    target_details["free_bytes"] = json!(free);
                    if *free < target_needed {
                        parts.push((
                            CheckStatus::Fail,
                            format!(
                                "the target's dir {dir} has {} free but needs {} for its RDB/AOF files; \
                                 free space there or point `dir` at a bigger disk",
                                human(*free),
                                human(target_needed)
                            ),
                        ));
                    } else {
                        parts.push((
                            CheckStatus::Pass,
                            format!("the target's dir has {} free ({} needed)", human(*free), human(target_needed)),
                        ));
                    }
                }
                Some(Err(e)) => parts.push((
                    CheckStatus::Warn,
                    format!(
                        "could not measure the target's dir {dir} ({e}); make sure it has {} free",
                        human(target_needed)
                    ),
                )),
                None => parts.push((
                    CheckStatus::Warn,
                    format!(
                        "the target runs on another host, so Ferry cannot measure its disk; make sure its dir \
                         {dir} has {} free",
                        human(target_needed)
                    ),
                )),
            }
        }
    }

    // Ferry's data_dir: a restore point of a non-empty target, plus the log and spool reserve.
    let target_has_keys = target_info.total_keys() > 0;
    let restore_point = if inputs.spec.options.backup && target_has_keys {
        dataset_bytes(target_info)
    } else {
        0
    };
    let ferry_needed = restore_point + DATA_DIR_RESERVE_BYTES;
    let data_dir = inputs.local.data_dir.display().to_string();
    let mut ferry_details = json!({
        "data_dir": data_dir,
        "needed_bytes": ferry_needed,
        "restore_point_bytes": restore_point,
    });
    match &inputs.local.data_dir_free {
        Ok(free) => {
            ferry_details["free_bytes"] = json!(free);
            if *free < ferry_needed {
                parts.push((
                    CheckStatus::Fail,
                    format!(
                        "Ferry's data_dir {data_dir} has {} free but needs {} (restore point and spool); free space \
                         or move data_dir",
                        human(*free),
                        human(ferry_needed)
                    ),
                ));
            } else {
                parts.push((
                    CheckStatus::Pass,
                    format!(
                        "Ferry's data_dir has {} free ({} needed)",
                        human(*free),
                        human(ferry_needed)
                    ),
                ));
            }
        }
        Err(e) => parts.push((
            CheckStatus::Fail,
            format!(
                "cannot measure Ferry's data_dir {data_dir}: {e}; create it or fix its permissions"
            ),
        )),
    }

    let status = parts
        .iter()
        .map(|(s, _)| *s)
        .max()
        .unwrap_or(CheckStatus::Pass);
    // Lead with the parts that need action.
    parts.sort_by_key(|(status, _)| std::cmp::Reverse(*status));
    let message = parts
        .into_iter()
        .map(|(_, m)| m)
        .collect::<Vec<_>>()
        .join("; ");
    let details = json!({ "target": target_details, "ferry": ferry_details });
    match status {
        CheckStatus::Pass => pass(id, message, details),
        CheckStatus::Warn => warn(id, message, details),
        CheckStatus::Fail | CheckStatus::Skipped => fail(id, message, details),
    }
}
