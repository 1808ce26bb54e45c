//! How `ferry migrate` shows a migration: a progress bar on a terminal, plain lines when stdout
//! is a pipe or a file, JSON lines (the events themselves) with `--json`.

use std::io::IsTerminal;
use std::time::Duration;

use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};

use crate::aggregate::migration::{MigrationView, Progress};
use crate::model::{Event, EventKind, EventWire};

/// Where and how progress goes.
pub enum Display {
    /// A terminal: one live bar, with milestones printed above it.
    Bar(ProgressBar),
    /// Not a terminal: one line per event, no control codes.
    Plain,
    /// `--json`: every event as one JSON line on stdout; messages for people go to stderr.
    Json,
}

impl Display {
    pub fn new(json: bool) -> Display {
        if json {
            return Display::Json;
        }
        if !std::io::stdout().is_terminal() {
            return Display::Plain;
        }
        let bar = ProgressBar::with_draw_target(Some(1000), ProgressDrawTarget::stdout());
        bar.set_style(
            ProgressStyle::with_template("{spinner} {prefix:>9} [{bar:30}] {msg}")
                .unwrap_or_else(|_| ProgressStyle::default_bar())
                .progress_chars("=> "),
        );
        bar.enable_steady_tick(Duration::from_millis(120));
        Display::Bar(bar)
    }

    /// A message for people (the validation report, hints, the outcome).
    pub fn say(&self, text: &str) {
        match self {
            Display::Bar(bar) => bar.println(text),
            Display::Plain => println!("{text}"),
            Display::Json => eprintln!("{text}"),
        }
    }

    /// Shows one event of the migration, and the view after it.
    pub fn event(&self, event: &Event, view: &MigrationView) {
        match self {
            Display::Json => match serde_json::to_string(&EventWire::from(event)) {
                Ok(line) => println!("{line}"),
                Err(e) => eprintln!("an event could not be written as JSON: {e}"),
            },
            Display::Plain => {
                let text = milestone(&event.kind).unwrap_or_else(|| progress_line(view));
                println!("{} {text}", event.at.format("%H:%M:%S"));
            }
            Display::Bar(bar) => {
                if let Some(text) = milestone(&event.kind) {
                    bar.println(format!("{} {text}", event.at.format("%H:%M:%S")));
                }
                let phase = view
                    .phase
                    .map(|p| format!("{p:?}").to_lowercase())
                    .unwrap_or_else(|| view.state.to_string());
                bar.set_prefix(phase);
                bar.set_position(
                    view.progress
                        .percent
                        .map_or(0, |p| (p * 10.0).round() as u64),
                );
                bar.set_message(progress_line(view));
            }
        }
    }

    /// Ends the bar (leaving its last state on screen).
    pub fn finish(&self) {
        if let Display::Bar(bar) = self {
            bar.finish();
        }
    }
}

/// One line for the events that mark a step; `None` for progress and checkpoints.
fn milestone(kind: &EventKind) -> Option<String> {
    Some(match kind {
        EventKind::SnapshotProgress { .. }
        | EventKind::Checkpoint { .. }
        | EventKind::ScanCheckpoint { .. } => return None,
        EventKind::ScanStarted { notify, .. } => {
            format!("reading the source by SCAN (keyspace notifications `{notify}`)")
        }
        EventKind::ScanRedone { reason } => format!("copying every key again: {reason}"),
        EventKind::KeyspaceNotificationsSet { previous, set } => {
            format!("source notify-keyspace-events set to `{set}` (was `{previous}`)")
        }
        EventKind::KeyspaceNotificationsRestored { value } => {
            format!("source notify-keyspace-events put back to `{value}`")
        }
        EventKind::SnapshotRequested {
            diskless,
            delay_secs,
            keys_estimate,
        } => {
            let wait = match (diskless, delay_secs) {
                (Some(true), Some(d)) if *d > 0 => {
                    format!(" (diskless; the source waits repl-diskless-sync-delay {d} s first)")
                }
                (Some(true), _) => " (diskless)".into(),
                (Some(false), _) => " (the source writes its RDB to disk first)".into(),
                _ => String::new(),
            };
            let keys = keys_estimate.map_or(String::new(), |k| format!("; about {k} keys"));
            format!("snapshot requested{wait}{keys}")
        }
        EventKind::SnapshotStarted {
            diskless,
            rdb_bytes_total,
            ..
        } => match (diskless, rdb_bytes_total) {
            (false, Some(total)) => format!("snapshot started ({})", bytes(*total)),
            (true, _) => {
                "snapshot started (streamed diskless: size estimated from the key count)".into()
            }
            // A scan reader's snapshot has no RDB.
            (false, None) => "snapshot started (progress counted in keys)".into(),
        },
        EventKind::SnapshotCompleted {
            rdb_bytes,
            keys_written,
            keys_skipped,
            keys_expired,
            duration_ms,
            ..
        } => format!(
            "snapshot completed: {keys_written} keys written, {keys_skipped} skipped, \
             {keys_expired} expired ({} in {:.1} s)",
            bytes(*rdb_bytes),
            *duration_ms as f64 / 1000.0
        ),
        EventKind::VerificationCompleted { report } => format!(
            "verification: {} keys checked, {} missing, {} different, {} extra",
            report.checked, report.missing, report.different, report.extra
        ),
        EventKind::BackupCompleted { backup_id, .. } => {
            format!("restore point taken: backup {backup_id}")
        }
        EventKind::TransferChosen {
            transfer, reason, ..
        } => format!("transfer {}: {reason}", transfer.as_str()),
        EventKind::TargetReleased { reason, restored } => {
            format!("target released ({reason}): {}", restored.join(", "))
        }
        EventKind::LinkLost { link, cause } => format!("{link:?} link lost: {cause}"),
        EventKind::LinkResumed { link, kind, .. } => format!("{link:?} link resumed ({kind:?})"),
        EventKind::DryRunCompleted { report } => super::dry_run::render(report),
        EventKind::AclDiffed { report } => {
            use crate::model::acl::AclUserStatus::*;
            format!(
                "ACL users: {} missing on the target, {} equal, {} different, {} skipped",
                report.count(Missing),
                report.count(Equal),
                report.count(Different),
                report.count(Skipped)
            )
        }
        EventKind::AclCopied {
            created, replaced, ..
        } => format!(
            "ACL users copied: created {}; replaced {}",
            list_or_none(created),
            list_or_none(replaced)
        ),
        EventKind::TransactionSplit {
            offset,
            slots,
            commands,
        } => format!(
            "transaction at offset {offset} split over {} target slots ({commands} commands, \
             each slot's part atomic)",
            slots.len()
        ),
        EventKind::KeysFiltered {
            snapshot_keys,
            stream_commands,
        } => format!(
            "left behind by the filter: {snapshot_keys} snapshot keys, {stream_commands} stream \
             commands"
        ),
        // A shard's own steps show under its name; its progress and checkpoints do not.
        EventKind::ShardEvent { shard, event } => {
            format!(
                "shard {} ({}): {}",
                shard.name,
                shard.addr,
                milestone(event)?
            )
        }
        EventKind::ShardFailedOver { shard, from, to } => format!(
            "shard {shard} failed over: {} ({}) → {} ({})",
            from.node_id, from.addr, to.node_id, to.addr
        ),
        // The outcome is said once, at the end.
        EventKind::MigrationFailed { .. } => "failed".into(),
        EventKind::MigrationCancelled { .. } => "cancelled".into(),
        other => other.type_name().to_string(),
    })
}

fn list_or_none(names: &[String]) -> String {
    if names.is_empty() {
        "none".into()
    } else {
        names.join(", ")
    }
}

/// Phase, %, bytes, keys, ETA and lag, as far as they are known.
pub fn progress_line(view: &MigrationView) -> String {
    let p: &Progress = &view.progress;
    let mut parts = Vec::new();
    if let Some(detail) = &view.phase_detail {
        if p.rdb_bytes_read.is_none() && p.commands_streamed.is_none() {
            parts.push(detail.clone());
        }
    }
    let est = if p.estimated { " (est.)" } else { "" };
    if let Some(percent) = p.percent {
        parts.push(format!("{percent:.1}%{est}"));
    }
    if let Some(read) = p.rdb_bytes_read {
        let total = p.rdb_bytes_total.map_or("?".to_string(), bytes);
        parts.push(format!("{} / {total}", bytes(read)));
    }
    if let Some(keys) = p.keys_written {
        let total = p.keys_total.map_or(String::new(), |t| format!(" / {t}"));
        parts.push(format!("{keys}{total} keys"));
    }
    if let Some(eta) = p
        .eta_seconds
        .filter(|_| p.percent.is_some_and(|x| x < 100.0))
    {
        parts.push(format!("ETA {eta} s{est}"));
    }
    if let Some(commands) = p.commands_streamed {
        parts.push(format!("{commands} commands applied"));
    }
    if let Some(rate) = p.apply_rate {
        parts.push(format!("{rate} ops/s"));
    }
    if let Some(lag) = p.lag_bytes {
        let secs = p
            .lag_seconds
            .map_or(String::new(), |s| format!(", {s:.1} s"));
        parts.push(format!("lag {}{secs}", bytes(lag)));
    }
    if parts.is_empty() {
        view.state.to_string()
    } else {
        parts.join(" · ")
    }
}

fn bytes(n: u64) -> String {
    const UNITS: [&str; 5] = ["B", "KiB", "MiB", "GiB", "TiB"];
    let mut value = n as f64;
    let mut unit = 0;
    while value >= 1024.0 && unit < UNITS.len() - 1 {
        value /= 1024.0;
        unit += 1;
    }
    if unit == 0 {
        format!("{n} B")
    } else {
        format!("{value:.1} {}", UNITS[unit])
    }
}
