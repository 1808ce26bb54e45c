//! `keyspace_notifications`, `maxmemory_policy`, `persistence`: settings that do not stop a
//! migration but change how the application's Redis behaves after cutover. Each difference is a
//! warning that lists both values and the command that aligns the target.

use std::collections::BTreeSet;

use serde_json::{json, Value};

use super::{pass, warn, Inputs, Verdict};

pub fn keyspace_notifications(inputs: &Inputs) -> Verdict {
    let id = "keyspace_notifications";
    let source = inputs
        .source
        .need_config()?
        .get("notify-keyspace-events")
        .unwrap_or("");
    let target = inputs
        .target
        .need_config()?
        .get("notify-keyspace-events")
        .unwrap_or("");
    let details = json!({ "source": source, "target": target });
    // Redis may print the same classes in another order ("KEA" vs "AKE"): compare as sets.
    let classes = |s: &str| s.chars().collect::<BTreeSet<char>>();
    if classes(source) == classes(target) {
        return pass(
            id,
            if source.is_empty() {
                "keyspace notifications are off on both servers".to_string()
            } else {
                format!("keyspace notifications match (`{source}`)")
            },
            details,
        );
    }
    warn(
        id,
        format!(
            "notify-keyspace-events differs (source `{source}`, target `{target}`): subscribers will get \
             different events after cutover; align it with `CONFIG SET notify-keyspace-events \"{source}\"` on the target"
        ),
        details,
    )
}

pub fn maxmemory_policy(inputs: &Inputs) -> Verdict {
    let id = "maxmemory_policy";
    // INFO memory carries the policy, so this works where CONFIG is renamed.
    let source = inputs
        .source
        .need_info()?
        .get("maxmemory_policy")
        .unwrap_or("unknown");
    let target = inputs
        .target
        .need_info()?
        .get("maxmemory_policy")
        .unwrap_or("unknown");
    let details = json!({ "source": source, "target": target });
    if source == target {
        return pass(
            id,
            format!("both servers use maxmemory-policy `{source}`"),
            details,
        );
    }
    warn(
        id,
        format!(
            "maxmemory-policy differs (source `{source}`, target `{target}`): keys will be evicted differently \
             after cutover; align it with `CONFIG SET maxmemory-policy {source}` on the target"
        ),
        details,
    )
}

/// The settings that decide what survives a restart of the server.
const PERSISTENCE_SETTINGS: [&str; 3] = ["save", "appendonly", "appendfsync"];

pub fn persistence(inputs: &Inputs) -> Verdict {
    let id = "persistence";
    let source = inputs.source.need_config()?;
    let target = inputs.target.need_config()?;
    let mut differences = Vec::new();
    let mut details = serde_json::Map::new();
    for name in PERSISTENCE_SETTINGS {
        let ours = source.get(name).unwrap_or("");
        let theirs = target.get(name).unwrap_or("");
        details.insert(
            name.to_string(),
            json!({ "source": ours, "target": theirs }),
        );
        if ours != theirs {
            differences.push(format!(
                "{name} `{ours}` on the source, `{theirs}` on the target"
            ));
        }
    }
    let details = Value::Object(details);
    if differences.is_empty() {
        return pass(id, "persistence settings match", details);
    }
    warn(
        id,
        format!(
            "persistence differs: {}; after cutover a restart of the target keeps different data than the \
             source would; align them with CONFIG SET on the target (and CONFIG REWRITE)",
            differences.join("; ")
        ),
        details,
    )
}
