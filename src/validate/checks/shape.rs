//! `filter.matches`: does the migration's filter select any key at all?
//!
//! A filter that selects nothing copies nothing and still "succeeds"; a typo in a glob is the
//! usual cause. The walk behind it is bounded ([`crate::validate::filter_sample`]), so on a huge
//! source the count is of the keys seen, and the message says so.

use serde_json::json;

use super::{fail, pass, warn, Inputs, Verdict};

pub fn filter_matches(inputs: &Inputs) -> Verdict {
    let id = "filter.matches";
    let filter = &inputs.spec.options.filter;
    let details = json!({ "filter": filter });
    // The API refuses such a spec; one from an older log is judged here too (no server needed).
    if let Err(e) = inputs.spec.shape() {
        return fail(id, format!("`{}`: {}", e.field, e.detail), details);
    }
    // Nothing about the source is claimed while it cannot be reached.
    inputs.source.need_info()?;
    if filter.is_everything() {
        return pass(id, "no filter: every key moves", details);
    }
    let Some(sample) = inputs.filter_sample else {
        return pass(
            id,
            "the filter is applied as the data is read; the snapshot counts what it leaves behind \
             (`KeysFiltered`)",
            details,
        );
    };
    let sample = match sample {
        Ok(sample) => sample,
        Err(why) => {
            return warn(
                id,
                format!("could not count the keys the filter selects: {why}"),
                details,
            )
        }
    };
    let details = json!({
        "filter": filter,
        "keys_scanned": sample.scanned,
        "keys_matched": sample.matched,
        "complete": sample.complete,
    });
    let seen = if sample.complete {
        format!("{} keys of the databases it names", sample.scanned)
    } else {
        format!(
            "the first {} keys scanned (the walk stops there to spare the source)",
            sample.scanned
        )
    };
    if sample.matched == 0 {
        return warn(
            id,
            format!(
                "the filter selects no key among {seen}: the migration would copy nothing; check \
                 `options.filter` (globs match as `SCAN … MATCH` does, case-sensitive)"
            ),
            details,
        );
    }
    pass(
        id,
        format!("the filter selects {} of {seen}", sample.matched),
        details,
    )
}
