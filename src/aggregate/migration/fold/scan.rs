//! The events of a scan reader (`source.read: scan`): what the view shows of its catch-up, and
//! the source setting a restarted engine must put back.

use super::{progress, Migration};
use crate::model::EventKind;

pub(super) fn fold(m: &mut Migration, kind: &EventKind) {
    let v = &mut m.view;
    match kind {
        EventKind::ScanStarted { keys_total, .. } => {
            if keys_total.is_some() {
                v.progress.keys_total = *keys_total;
            }
            v.phase_detail = Some(
                "copying by SCAN (the source refuses replication): DUMP and PTTL per key, big \
                 keys in chunks; changes are followed through keyspace notifications"
                    .into(),
            );
        }
        // A restarted engine finds its own setting on the source: the first one recorded is
        // the value to put back.
        EventKind::KeyspaceNotificationsSet { previous, .. }
            if m.keyspace_notifications_before.is_none() =>
        {
            m.keyspace_notifications_before = Some(previous.clone());
        }
        EventKind::KeyspaceNotificationsRestored { .. } => {
            m.keyspace_notifications_before = None;
        }
        EventKind::ScanRedone { reason } if v.state.is_running() => {
            v.phase_detail = Some(format!("copying every key again: {reason}"));
        }
        EventKind::ScanCheckpoint {
            dirty_keys,
            keys_recopied,
            ..
        } => {
            v.progress.lag_keys = Some(*dirty_keys);
            v.progress.commands_streamed = Some(*keys_recopied);
            progress::scan_caught_up(&mut v.progress, *dirty_keys);
        }
        _ => {}
    }
}
