//! One command of the live stream, through the shape: sent (keys renamed, databases mapped),
//! dropped (every key it touches stays behind), or refused.
//!
//! A command whose keys are partly in and partly out of the filter is refused: applying it would
//! need a key the target does not hold (`RENAME in:x out:x` moves data out of sight;
//! `MSET in:1 a out:1 b` would be applied in half). Ferry never applies part of a command
//! silently, so the migration stops before it, naming the command and which of its keys are in.
//!
//! `FLUSHDB`/`FLUSHALL` on a shaped migration would delete, on the target, keys outside the
//! filter (or, merged, another database's): refused unless `flush_passthrough`, which sends them
//! on, to the mapped database. A `FLUSHDB` of a database the filter leaves out touches nothing
//! the migration moved, and is dropped. `SWAPDB` cannot be mapped onto a shape and is refused.

use bytes::Bytes;

use super::keys::{self, Keys};
use super::Shape;

/// What becomes of a command.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Shaped {
    /// Send it: `None` as it came, `Some` with these arguments (keys renamed, a db mapped).
    Send(Option<Vec<Bytes>>),
    /// Every key it touches stays behind: not sent, counted.
    Drop,
}

/// Why a command stops a shaped stream.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Refusal {
    #[error(
        "{command} touches keys on both sides of the filter ({keys}); applying only part of it \
         would change the data silently, so it was not applied and the migration stopped before \
         it. Widen or narrow the filter so that the keys a command touches together are all in \
         or all out"
    )]
    Mixed { command: String, keys: String },
    #[error(
        "{command} is not a command whose keys Ferry can read, so the filter cannot decide \
         whether to apply it; it was not applied and the migration stopped before it"
    )]
    Unknown { command: String },
    #[error(
        "the source ran {command}, which on a filtered, renamed or mapped migration would delete \
         target keys outside what Ferry moves; it was not applied and the migration stopped \
         before it. Set `options.flush_passthrough` to send it on (to the mapped database)"
    )]
    Flush { command: String },
    #[error(
        "the source ran SWAPDB, which cannot be mapped onto a filtered, renamed or mapped \
         migration; it was not applied and the migration stopped before it"
    )]
    SwapDb,
}

fn upper(arg: &Bytes) -> String {
    String::from_utf8_lossy(arg).to_ascii_uppercase()
}

/// A key as an error message shows it: lossy UTF-8, at most 64 characters.
fn show(key: &[u8]) -> String {
    let text = String::from_utf8_lossy(key);
    match text.char_indices().nth(64) {
        Some((at, _)) => format!("{}…", &text[..at]),
        None => text.into_owned(),
    }
}

fn db_arg(arg: Option<&Bytes>) -> Option<u32> {
    std::str::from_utf8(arg?).ok()?.parse().ok()
}

impl Shape {
    /// `args` (from the stream, in source db `db`) through the shape.
    pub fn command(&self, db: u32, args: &[Bytes]) -> Result<Shaped, Refusal> {
        let Some(first) = args.first() else {
            return Ok(Shaped::Send(None));
        };
        if self.is_identity() {
            return Ok(Shaped::Send(None));
        }
        let name = upper(first);
        match name.as_str() {
            "FLUSHDB" if !self.db_in(db) => return Ok(Shaped::Drop),
            "FLUSHDB" | "FLUSHALL" if self.flush_passthrough => return Ok(Shaped::Send(None)),
            "FLUSHDB" | "FLUSHALL" => return Err(Refusal::Flush { command: name }),
            "SWAPDB" => return Err(Refusal::SwapDb),
            _ => {}
        }
        // Without a filter or a rename every key moves under its own name: only a command that
        // names a database needs the map.
        let keys_matter = self.filters() || !self.rename.is_empty();
        let positions = match keys::of(args) {
            Keys::None => return Ok(Shaped::Send(None)),
            Keys::At(positions) => positions,
            Keys::Unknown if !keys_matter && !matches!(name.as_str(), "MOVE" | "COPY") => {
                return Ok(Shaped::Send(None))
            }
            Keys::Unknown => return Err(Refusal::Unknown { command: name }),
        };
        // The database each key is in: the current one, except MOVE's and COPY … DB's
        // destination.
        let mut dbs: Vec<u32> = vec![db; positions.len()];
        let mut db_at: Option<usize> = None;
        match name.as_str() {
            "MOVE" => {
                let to = db_arg(args.get(2)).ok_or(Refusal::Unknown {
                    command: name.clone(),
                })?;
                // The key is the same one before and after: judge it in both databases.
                dbs = vec![db, to];
                db_at = Some(2);
            }
            "COPY" => {
                if let Some(at) = (3..args.len()).find(|&i| args[i].eq_ignore_ascii_case(b"DB")) {
                    let to = db_arg(args.get(at + 1)).ok_or(Refusal::Unknown {
                        command: name.clone(),
                    })?;
                    dbs[1] = to;
                    db_at = Some(at + 1);
                }
            }
            _ => {}
        }
        let judged: Vec<(usize, u32)> = match name.as_str() {
            "MOVE" => vec![(1, dbs[0]), (1, dbs[1])],
            _ => positions.iter().copied().zip(dbs.iter().copied()).collect(),
        };
        let inside: Vec<bool> = judged
            .iter()
            .map(|&(at, db)| self.key_in(db, &args[at]))
            .collect();
        if !inside.is_empty() && inside.iter().all(|i| !i) {
            return Ok(Shaped::Drop);
        }
        if inside.iter().any(|i| !i) {
            let keys = judged
                .iter()
                .zip(&inside)
                .map(|(&(at, db), inside)| {
                    format!(
                        "`{}` (db {db}) {}",
                        show(&args[at]),
                        if *inside { "in" } else { "out" }
                    )
                })
                .collect::<Vec<_>>()
                .join(", ");
            return Err(Refusal::Mixed {
                command: name,
                keys,
            });
        }
        let mut out: Option<Vec<Bytes>> = None;
        for &at in &positions {
            let renamed = self.target_key(&args[at]);
            if renamed != args[at] {
                out.get_or_insert_with(|| args.to_vec())[at] = renamed;
            }
        }
        if let (Some(at), Some(&to)) = (db_at, dbs.last()) {
            let mapped = self.target_db(to);
            if mapped != to {
                out.get_or_insert_with(|| args.to_vec())[at] = Bytes::from(mapped.to_string());
            }
        }
        Ok(Shaped::Send(out))
    }
}
