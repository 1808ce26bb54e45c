//! A dry run's report as `ferry migrate --dry-run` prints it for people (with `--json`, the
//! `DryRunCompleted` event line carries the same report as JSON).

use crate::model::dry_run::{CannotTakeReason, DryRunReport};

fn reason(r: CannotTakeReason) -> &'static str {
    match r {
        CannotTakeReason::ModuleMissing => "module missing",
        CannotTakeReason::FieldTtls => "field TTLs",
        CannotTakeReason::OverProtoMaxBulkLen => "over proto-max-bulk-len",
        CannotTakeReason::UnsupportedType => "unsupported type",
    }
}

/// The report as text: one line per fact, tables for the counts and the biggest keys.
pub fn render(r: &DryRunReport) -> String {
    let mut out = vec![format!(
        "dry run completed: {} keys ({} expired, {} empty skipped), {} bytes of RDB read in {:.1} s",
        r.keys,
        r.keys_expired,
        r.keys_empty,
        r.rdb_bytes,
        r.read_ms as f64 / 1000.0
    )];
    out.push(format!(
        "  {:>4}  {:<8} {:>12} {:>14}",
        "db", "type", "keys", "bytes"
    ));
    for cell in &r.databases {
        out.push(format!(
            "  {:>4}  {:<8} {:>12} {:>14}",
            cell.db, cell.type_name, cell.keys, cell.bytes
        ));
    }
    out.push(format!("  biggest keys ({}):", r.biggest_keys.len()));
    for k in &r.biggest_keys {
        out.push(format!(
            "    {:>12} B  db {} {:<8} {}",
            k.bytes, k.db, k.type_name, k.key
        ));
    }
    if r.cannot_take.is_empty() {
        out.push("  the target can take every key".into());
    }
    for c in &r.cannot_take {
        let examples: Vec<String> = c
            .examples
            .iter()
            .map(|k| format!("`{}` (db {})", k.key, k.db))
            .collect();
        out.push(format!(
            "  CANNOT TAKE ({}): {} key{}: {}; e.g. {}",
            reason(c.reason),
            c.count,
            if c.count == 1 { "" } else { "s" },
            c.detail,
            examples.join(", ")
        ));
    }
    let m = &r.memory;
    let free = match (m.target_free_bytes, m.fits) {
        (Some(free), Some(true)) => format!("fits in the target's {free} bytes free"),
        (Some(free), _) => format!("DOES NOT FIT in the target's {free} bytes free"),
        (None, _) => "the target has no maxmemory limit".into(),
    };
    out.push(format!(
        "  memory needed: about {} bytes ({free}; the source's dataset: {})",
        m.needed_bytes,
        m.source_dataset_bytes
            .map_or("unknown".to_string(), |b| format!("{b} bytes"))
    ));
    out.push(format!("  ETA: {} s ({})", r.eta.seconds, r.eta.basis));
    out.push(format!("  {}", r.note));
    if let Some(error) = &r.probe.error {
        out.push(format!("  write probe: {error}"));
    }
    out.join("\n")
}
