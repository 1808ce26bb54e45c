//! Shaping a migration: which keys move (a filter), under which database number (a map) and
//! under which name (prefix renames).
//!
//! This module is pure: the options as the user writes them ([`KeyFilter`], [`Rename`], a db map),
//! their checks (each refusal names the field to fix), and [`Shape`], the compiled form the engine
//! asks "is this key in, and where does it go?" for every key of the snapshot, every command of
//! the stream ([`command`]) and every key verification compares. One answer for all three is what
//! makes a filtered migration verifiable: the check looks through the very filter the copy used.
//!
//! Order of application: the filter sees the *source's* names and databases; the rename and the
//! map apply to what it lets through.

pub mod command;
pub mod glob;
pub mod keys;

use std::collections::{BTreeMap, BTreeSet};

use bytes::Bytes;
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use glob::Glob;

/// Which source keys move. Every list left empty restricts nothing: the default moves every key
/// of every database.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(default, deny_unknown_fields)]
// The example leaves `types` out: it is a snapshot-only field, and the example is reused for
// live migrations (PATCH, the spec's own examples).
#[schema(example = json!({"dbs": [0, 3], "include": ["user:*", "session:*"],
    "exclude": ["session:tmp:*"]}))]
pub struct KeyFilter {
    /// Source databases to move (empty: all).
    pub dbs: Vec<u32>,
    /// Redis glob patterns (`*`, `?`, `[…]`, `\` escapes, as `SCAN … MATCH` reads them); a key
    /// moves when it matches one of them (empty: every key).
    pub include: Vec<String>,
    /// Glob patterns of keys that never move, even when `include` matches them.
    pub exclude: Vec<String>,
    /// Types to move, as `TYPE` names them: `string`, `list`, `set`, `zset`, `hash`, `stream`, or
    /// a module type's 9-character name (e.g. `ReJSON-RL`) (empty: every type). Snapshot mode
    /// only: the live stream cannot tell a key's type from every command.
    pub types: Vec<String>,
}

impl KeyFilter {
    /// Whether the filter lets everything through.
    pub fn is_everything(&self) -> bool {
        *self == KeyFilter::default()
    }
}

/// Keys whose name starts with `from_prefix` move under `to_prefix` + the rest of the name.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, ToSchema)]
#[schema(example = json!({"from_prefix": "app1:", "to_prefix": "tenant1:"}))]
pub struct Rename {
    pub from_prefix: String,
    pub to_prefix: String,
}

/// The fields of a [`Rename`] as the request names them.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RenameFields {
    from_prefix: String,
    to_prefix: String,
}

/// An object only (serde's derive would also take `["a:", "b:"]`, which the schema does not).
impl<'de> Deserialize<'de> for Rename {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let RenameFields {
            from_prefix,
            to_prefix,
        } = crate::serde_objects::map_only(d)?;
        Ok(Rename {
            from_prefix,
            to_prefix,
        })
    }
}

/// Source database → target database. Databases not named keep their number.
pub type DbMap = BTreeMap<u32, u32>;

/// A shaping option that cannot be used as written: the field and what to change.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ShapeError {
    pub field: String,
    pub detail: String,
}

fn refuse(field: impl Into<String>, detail: impl Into<String>) -> ShapeError {
    ShapeError {
        field: field.into(),
        detail: detail.into(),
    }
}

/// The type names `TYPE` answers for Redis' own types.
pub const BUILTIN_TYPES: [&str; 6] = ["string", "list", "set", "zset", "hash", "stream"];

/// A module type name as Redis requires it (`RedisModule_CreateDataType`): exactly 9 characters
/// of `A-Z a-z 0-9 _ -`.
fn module_type_name(name: &str) -> bool {
    name.len() == 9
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-')
}

/// What the OpenAPI document itself says about the options (type names, database numbers):
/// the API refuses a request that breaks it (400). Every other rule here (globs, renames, the
/// map against the filter, types in live mode) needs the whole spec and is judged by validation
/// (`filter.matches` fails with the field) and by the engine, so that a schema-valid request is
/// always accepted.
pub fn check_form(filter: &KeyFilter, db_map: &DbMap) -> Result<(), ShapeError> {
    for (i, t) in filter.types.iter().enumerate() {
        if !(BUILTIN_TYPES.contains(&t.as_str()) || module_type_name(t)) {
            return Err(refuse(
                format!("options.filter.types[{i}]"),
                format!(
                    "`{t}` is not a type name: use string, list, set, zset, hash, stream, or \
                         a module type's 9-character name as TYPE reports it (e.g. ReJSON-RL)"
                ),
            ));
        }
    }
    // The schema says int32 for a database number (Redis' own `databases` is an int).
    for (i, &db) in filter.dbs.iter().enumerate() {
        if db > i32::MAX as u32 {
            return Err(refuse(
                format!("options.filter.dbs[{i}]"),
                format!(
                    "database {db} is beyond any server's `databases` (at most {})",
                    i32::MAX
                ),
            ));
        }
    }
    if let Some((&from, &to)) = db_map
        .iter()
        .find(|(&from, &to)| from > i32::MAX as u32 || to > i32::MAX as u32)
    {
        return Err(refuse(
            format!("options.db_map.{from}"),
            format!(
                "database numbers go up to {} (Redis' `databases` is an int); {from} → {to} \
                     cannot be one",
                i32::MAX
            ),
        ));
    }
    Ok(())
}

/// The options, compiled: what the engine asks about each key and command.
#[derive(Debug, Clone, Default)]
pub struct Shape {
    dbs: Option<BTreeSet<u32>>,
    include: Vec<Glob>,
    exclude: Vec<Glob>,
    types: Option<Vec<String>>,
    db_map: DbMap,
    rename: Vec<(Bytes, Bytes)>,
    /// `FLUSHDB`/`FLUSHALL` from the source reach the target even though it holds keys
    /// outside the filter (see [`command`]).
    pub flush_passthrough: bool,
    /// One shard of a Redis Cluster source: only keys of these slots (inclusive ranges) are its
    /// own. The target holds every shard's keys, so this shard's verification compares, and a
    /// redo of its snapshot sweeps, only these; and a `FLUSHALL` from this shard is not applied
    /// to the others' keys (see [`command`]).
    slots: Option<std::sync::Arc<Vec<(u16, u16)>>>,
}

impl Shape {
    /// Checks the options and compiles them. `live`: the migration streams (where `types`
    /// cannot be honoured).
    pub fn new(
        filter: &KeyFilter,
        db_map: &DbMap,
        rename: &[Rename],
        flush_passthrough: bool,
        live: bool,
    ) -> Result<Shape, ShapeError> {
        let globs = |list: &[String], name: &str| -> Result<Vec<Glob>, ShapeError> {
            list.iter()
                .enumerate()
                .map(|(i, p)| {
                    Glob::new(p.as_bytes()).map_err(|e| {
                        refuse(format!("options.filter.{name}[{i}]"), format!("`{p}`: {e}"))
                    })
                })
                .collect()
        };
        let include = globs(&filter.include, "include")?;
        let exclude = globs(&filter.exclude, "exclude")?;
        check_form(filter, db_map)?;
        if live && !filter.types.is_empty() {
            return Err(refuse(
                "options.filter.types",
                "a type filter works in mode `snapshot` only: in the live stream most commands \
                 (DEL, EXPIRE, RENAME, …) do not say the type of the key they touch, so Ferry \
                 could not tell whether to apply them; filter by name (`include`/`exclude`) or \
                 by database instead",
            ));
        }
        let dbs = (!filter.dbs.is_empty()).then(|| filter.dbs.iter().copied().collect());
        check_db_map(db_map, dbs.as_ref())?;
        for (i, r) in rename.iter().enumerate() {
            if let Some(j) = rename[..i]
                .iter()
                .position(|earlier| r.from_prefix.starts_with(&earlier.from_prefix))
            {
                return Err(refuse(
                    format!("options.rename[{i}].from_prefix"),
                    format!(
                        "`{}` can never apply: every such key already starts with `{}` of \
                         rename[{j}], and the first matching prefix wins; put the longer prefix \
                         first",
                        r.from_prefix, rename[j].from_prefix
                    ),
                ));
            }
        }
        Ok(Shape {
            dbs,
            include,
            exclude,
            types: (!filter.types.is_empty()).then(|| filter.types.clone()),
            db_map: db_map.clone(),
            rename: rename
                .iter()
                .map(|r| {
                    (
                        Bytes::from(r.from_prefix.clone().into_bytes()),
                        Bytes::from(r.to_prefix.clone().into_bytes()),
                    )
                })
                .collect(),
            flush_passthrough,
            slots: None,
        })
    }

    /// This shape, restricted to the keys of one cluster shard's `ranges`.
    pub fn within_slots(mut self, ranges: Vec<(u16, u16)>) -> Shape {
        self.slots = Some(std::sync::Arc::new(ranges));
        self
    }

    /// The slots of the one cluster shard this shape is restricted to (`None`: every slot).
    pub fn slots(&self) -> Option<&[(u16, u16)]> {
        self.slots.as_deref().map(Vec::as_slice)
    }

    fn slot_in(&self, key: &[u8]) -> bool {
        self.slots.as_ref().is_none_or(|ranges| {
            let slot = crate::cluster::key_slot(key);
            ranges.iter().any(|&(a, b)| (a..=b).contains(&slot))
        })
    }

    /// Whether this shape changes anything (no filter, no map, no rename: the plain copy).
    pub fn is_identity(&self) -> bool {
        self.dbs.is_none()
            && self.include.is_empty()
            && self.exclude.is_empty()
            && self.types.is_none()
            && self.db_map.is_empty()
            && self.rename.is_empty()
            && self.slots.is_none()
    }

    /// Whether some key of the source may stay behind (a filter of any kind).
    pub fn filters(&self) -> bool {
        self.dbs.is_some()
            || !self.include.is_empty()
            || !self.exclude.is_empty()
            || self.types.is_some()
    }

    pub fn db_in(&self, db: u32) -> bool {
        self.dbs.as_ref().is_none_or(|dbs| dbs.contains(&db))
    }

    /// The source databases the filter names (`None`: all).
    pub fn dbs(&self) -> Option<&BTreeSet<u32>> {
        self.dbs.as_ref()
    }

    /// Whether a key of source db `db` passes the database and name filters.
    pub fn key_in(&self, db: u32, key: &[u8]) -> bool {
        self.db_in(db)
            && (self.include.is_empty() || self.include.iter().any(|g| g.matches(key)))
            && !self.exclude.iter().any(|g| g.matches(key))
            && self.slot_in(key)
    }

    /// Whether a key of this type (as `TYPE` names it) passes the type filter.
    pub fn type_in(&self, type_name: &str) -> bool {
        self.types
            .as_ref()
            .is_none_or(|types| types.iter().any(|t| t == type_name))
    }

    /// Whether the type filter is set (then each key's type must be known to decide).
    pub fn filters_types(&self) -> bool {
        self.types.is_some()
    }

    /// The target database of source db `db`.
    pub fn target_db(&self, db: u32) -> u32 {
        self.db_map.get(&db).copied().unwrap_or(db)
    }

    /// The target's name for a source key: the first rule whose prefix it starts with.
    pub fn target_key(&self, key: &Bytes) -> Bytes {
        for (from, to) in &self.rename {
            if key.starts_with(from) {
                let mut renamed = Vec::with_capacity(to.len() + key.len() - from.len());
                renamed.extend_from_slice(to);
                renamed.extend_from_slice(&key[from.len()..]);
                return Bytes::from(renamed);
            }
        }
        key.clone()
    }
}

impl Shape {
    /// Whether target key `key` in target db `db` is the image of some source key the filter
    /// lets through: what a copy through this shape may have written there. A redone snapshot
    /// sweeps only such keys, so it never deletes a target key the migration could not have
    /// written. (Types are not known from a name: a key of a filtered-out type with such a name
    /// counts as possibly written, like any key an application adds during the migration.)
    pub fn may_have_written(&self, db: u32, key: &Bytes) -> bool {
        let sources: Vec<u32> = match &self.dbs {
            Some(dbs) => dbs.iter().copied().collect(),
            None if self.db_map.values().any(|&to| to == db) => {
                let mut from: Vec<u32> = self
                    .db_map
                    .iter()
                    .filter(|(_, &to)| to == db)
                    .map(|(&from, _)| from)
                    .collect();
                from.push(db);
                from
            }
            None => vec![db],
        };
        let sources: Vec<u32> = sources
            .into_iter()
            .filter(|&s| self.target_db(s) == db)
            .collect();
        // The source names that become `key`: itself when no rule renames it, and the name
        // each rule would have turned into it.
        let mut names: Vec<Bytes> = Vec::new();
        if self.target_key(key) == *key {
            names.push(key.clone());
        }
        for (from, to) in &self.rename {
            if key.starts_with(to) {
                let mut name = from.to_vec();
                name.extend_from_slice(&key[to.len()..]);
                let name = Bytes::from(name);
                if self.target_key(&name) == *key {
                    names.push(name);
                }
            }
        }
        sources
            .iter()
            .any(|&s| names.iter().any(|n| self.key_in(s, n)))
    }
}

/// Two source databases may land in one target database only when the map says so for both: a
/// database that keeps its number by default must not silently become a merge.
fn check_db_map(db_map: &DbMap, dbs: Option<&BTreeSet<u32>>) -> Result<(), ShapeError> {
    let in_scope = |db: u32| dbs.is_none_or(|dbs| dbs.contains(&db));
    for (&from, &to) in db_map {
        let field = format!("options.db_map.{from}");
        if !in_scope(from) {
            return Err(refuse(
                field,
                format!(
                    "source db {from} is mapped, but `options.filter.dbs` leaves it out; remove \
                     the mapping or add {from} to the filter"
                ),
            ));
        }
        if from != to && !db_map.contains_key(&to) && in_scope(to) {
            return Err(refuse(
                field,
                format!(
                    "source db {from} would be merged into db {to}, where source db {to} also \
                     lands by keeping its number; to merge them on purpose map both (\"{to}\": \
                     {to}), or move db {to} elsewhere, or leave it out with `options.filter.dbs`"
                ),
            ));
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests;
