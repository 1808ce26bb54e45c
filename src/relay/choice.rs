//! Relay or restore: the preconditions of a relay, and the choice `transfer: auto` makes.
//!
//! One pure function over facts gathered elsewhere, so that validation (which reads the facts
//! from its own gathering) and the engine (which reads them again when the job starts: a target
//! can fill up between the two) decide alike. Each precondition has a stable id, which is also
//! the id of its validation check.

use crate::rdb::version::ServerVersion;
pub use crate::spec::TransferKind;
use crate::spec::{OnConflict, Transfer};

/// What the choice needs to know. `Err` holds why a fact could not be read (that precondition is
/// then not met: a relay changes the target's role, so nothing is assumed).
#[derive(Debug, Clone)]
pub struct RelayFacts {
    pub requested: Transfer,
    pub on_conflict: OnConflict,
    pub source: Result<ServerVersion, String>,
    pub target: Result<ServerVersion, String>,
    /// Keys the target holds, all databases together.
    pub target_keys: Result<u64, String>,
    /// `Ok` when the target lets Ferry run `REPLICAOF` and `CONFIG SET`, else why not.
    pub target_commands: Result<(), String>,
    /// `Ok` when the target can reach Ferry's advertised relay address, as far as Ferry can tell.
    pub reachable: Result<(), String>,
    /// `Ok` when the hop from Ferry's relay to the target may be plain TCP (see [`plain_hop`]).
    pub plain_hop: Result<(), String>,
    /// The migration has a filter, db map or rename (see [`crate::shape`]): the relay, which
    /// copies the whole server byte for byte, cannot do it.
    pub shaped: bool,
}

/// One precondition of a relay.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Precondition {
    /// Stable id (`relay.commands`, …); the validation check has the same id.
    pub id: &'static str,
    pub met: bool,
    /// What was found, for people.
    pub detail: String,
}

/// The decision.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Choice {
    pub transfer: TransferKind,
    /// One sentence: why this transfer.
    pub reason: String,
    pub preconditions: Vec<Precondition>,
}

impl Choice {
    /// The relay was asked for explicitly but cannot run: what is missing.
    pub fn refusal(&self) -> Option<String> {
        if self.transfer != TransferKind::Relay {
            return None;
        }
        let unmet = unmet(&self.preconditions);
        (!unmet.is_empty()).then_some(unmet)
    }
}

/// Ids of the preconditions, in report order.
pub const PRECONDITIONS: [&str; 5] = [
    "relay.commands",
    "relay.versions",
    "relay.target_empty",
    "relay.reachable",
    "relay.tls",
];

/// Evaluates every precondition and makes the choice.
pub fn choose(facts: &RelayFacts) -> Choice {
    let mut preconditions = vec![
        commands(facts),
        versions(facts),
        target_empty(facts),
        reachable(facts),
        tls(facts),
    ];
    if facts.shaped {
        // Not one of the relay's own preconditions (it has no check of its own): the input
        // checks already refuse an explicit relay with a shape; `auto` records it as its reason.
        preconditions.push(precondition(
            "relay.whole_copy",
            false,
            "the migration has a filter, db_map or rename, which the relay (a byte-for-byte \
             copy of the whole server) cannot apply",
        ));
    }
    let all_met = preconditions.iter().all(|p| p.met);
    let (transfer, reason) = match facts.requested {
        Transfer::Restore => (
            TransferKind::Restore,
            "transfer restore was requested".to_string(),
        ),
        Transfer::Relay if all_met => (
            TransferKind::Relay,
            "transfer relay was requested, and the target can replicate through Ferry".to_string(),
        ),
        Transfer::Relay => (
            TransferKind::Relay,
            format!(
                "transfer relay was requested, but {}",
                unmet(&preconditions)
            ),
        ),
        Transfer::Auto if all_met => (
            TransferKind::Relay,
            "auto: the target allows REPLICAOF and CONFIG, loads the source's RDB, may be \
             emptied, and can reach Ferry, so it replicates through Ferry"
                .to_string(),
        ),
        Transfer::Auto => (
            TransferKind::Restore,
            format!("auto: no relay because {}", unmet(&preconditions)),
        ),
    };
    Choice {
        transfer,
        reason,
        preconditions,
    }
}

fn unmet(preconditions: &[Precondition]) -> String {
    preconditions
        .iter()
        .filter(|p| !p.met)
        .map(|p| p.detail.clone())
        .collect::<Vec<_>>()
        .join("; ")
}

fn precondition(id: &'static str, met: bool, detail: impl Into<String>) -> Precondition {
    Precondition {
        id,
        met,
        detail: detail.into(),
    }
}

fn commands(facts: &RelayFacts) -> Precondition {
    match &facts.target_commands {
        Ok(()) => precondition(
            "relay.commands",
            true,
            "the target allows REPLICAOF and CONFIG SET",
        ),
        Err(why) => precondition(
            "relay.commands",
            false,
            format!("the target does not let Ferry run REPLICAOF and CONFIG SET ({why})"),
        ),
    }
}

fn versions(facts: &RelayFacts) -> Precondition {
    let id = "relay.versions";
    let (source, target) = match (&facts.source, &facts.target) {
        (Ok(s), Ok(t)) => (s, t),
        (Err(e), _) | (_, Err(e)) => {
            return precondition(id, false, format!("the server versions are unknown ({e})"))
        }
    };
    if source.fork != target.fork {
        return precondition(
            id,
            false,
            format!("a {target} target cannot load the RDB of a {source} source"),
        );
    }
    if (target.major, target.minor, target.patch) < (source.major, source.minor, source.patch) {
        return precondition(
            id,
            false,
            format!(
                "the target ({target}) is older than the source ({source}), and a replica loads \
                 only RDBs of its own version or older"
            ),
        );
    }
    precondition(
        id,
        true,
        format!("the target ({target}) loads the RDB of the source ({source})"),
    )
}

fn target_empty(facts: &RelayFacts) -> Precondition {
    let id = "relay.target_empty";
    match (&facts.target_keys, facts.on_conflict) {
        (Ok(0), _) => precondition(id, true, "the target is empty"),
        (Ok(keys), OnConflict::Flush) => precondition(
            id,
            true,
            format!(
                "the target holds {keys} keys and on_conflict is flush: the relay replaces the \
                 whole target (every database), after the restore point"
            ),
        ),
        (Ok(keys), other) => precondition(
            id,
            false,
            format!(
                "the target holds {keys} keys and on_conflict is {}: a replica is emptied by its \
                 first sync, which only on_conflict flush allows",
                on_conflict_name(other)
            ),
        ),
        (Err(e), _) => precondition(
            id,
            false,
            format!("the target's key count is unknown ({e})"),
        ),
    }
}

fn reachable(facts: &RelayFacts) -> Precondition {
    match &facts.reachable {
        Ok(()) => precondition(
            "relay.reachable",
            true,
            "the target can reach Ferry's relay",
        ),
        Err(why) => precondition("relay.reachable", false, why.clone()),
    }
}

fn tls(facts: &RelayFacts) -> Precondition {
    match &facts.plain_hop {
        Ok(()) => precondition(
            "relay.tls",
            true,
            "the target connects to Ferry's relay over plain TCP, as it is reached",
        ),
        Err(why) => precondition("relay.tls", false, why.clone()),
    }
}

/// Whether the target may replicate from Ferry's relay over plain TCP. The relay listener does
/// not speak TLS (it would need a server certificate the target trusts, and the target would need
/// `tls-replication yes`, which Ferry does not set). So a `rediss://` target, whose data must not
/// travel in clear, and a target with `tls-replication yes` (it would dial Ferry with TLS) take
/// the restore path. A `rediss://` source is no obstacle: Ferry itself reads it, over TLS.
/// `tls_replication` is the target's setting when known.
pub fn plain_hop(target_tls: bool, tls_replication: Option<&str>) -> Result<(), String> {
    if target_tls {
        return Err(
            "the target is rediss:// (TLS), and Ferry's relay listener serves plain TCP only: the              data would reach the target unencrypted"
                .into(),
        );
    }
    if tls_replication.is_some_and(|v| v.eq_ignore_ascii_case("yes")) {
        return Err(
            "the target has tls-replication yes, and Ferry's relay listener serves plain TCP only"
                .into(),
        );
    }
    Ok(())
}

fn on_conflict_name(o: OnConflict) -> &'static str {
    match o {
        OnConflict::Fail => "fail",
        OnConflict::Replace => "replace",
        OnConflict::Skip => "skip",
        OnConflict::Flush => "flush",
    }
}

/// Whether a target at `target_host` can reach a relay advertised at `advertised_host`: a
/// loopback address reaches only servers on this host. (Anything else cannot be known before the
/// target tries: the engine then waits a bounded time for its connection.)
pub fn reachability(advertised_host: Option<&str>, target_host: &str) -> Result<(), String> {
    let Some(advertised) = advertised_host else {
        return Err(
            "the relay listens on a wildcard address and [relay] advertise is not set, so \
             there is no address to give the target"
                .to_string(),
        );
    };
    let loopback = |h: &str| {
        h.eq_ignore_ascii_case("localhost")
            || h.parse::<std::net::IpAddr>()
                .map(|ip| ip.is_loopback())
                .unwrap_or(false)
    };
    if loopback(advertised) && !loopback(target_host) {
        return Err(format!(
            "the relay is advertised at {advertised}, which the target at {target_host} cannot \
             reach; set [relay] bind and advertise to an address it can"
        ));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::rdb::version::Fork;

    fn redis(version: &str) -> Result<ServerVersion, String> {
        Ok(ServerVersion::redis(version).unwrap())
    }

    fn facts() -> RelayFacts {
        RelayFacts {
            requested: Transfer::Auto,
            on_conflict: OnConflict::Fail,
            source: redis("7.0.15"),
            target: redis("7.2.4"),
            target_keys: Ok(0),
            target_commands: Ok(()),
            reachable: Ok(()),
            plain_hop: Ok(()),
            shaped: false,
        }
    }

    #[test]
    fn a_shaped_migration_never_relays_and_says_why() {
        let shaped = RelayFacts {
            shaped: true,
            ..facts()
        };
        let auto = choose(&shaped);
        assert_eq!(auto.transfer, TransferKind::Restore);
        assert!(
            auto.reason.contains("filter, db_map or rename"),
            "{}",
            auto.reason
        );
        let relay = choose(&RelayFacts {
            requested: Transfer::Relay,
            ..shaped
        });
        assert!(relay.refusal().unwrap().contains("byte-for-byte"));
    }

    #[test]
    fn auto_relays_when_everything_holds() {
        let choice = choose(&facts());
        assert_eq!(choice.transfer, TransferKind::Relay);
        assert!(choice.preconditions.iter().all(|p| p.met));
        assert_eq!(choice.refusal(), None);
        let ids: Vec<_> = choice.preconditions.iter().map(|p| p.id).collect();
        assert_eq!(ids, PRECONDITIONS);
    }

    #[test]
    fn auto_restores_and_says_why_for_each_missing_precondition() {
        type Change = Box<dyn Fn(&mut RelayFacts)>;
        let cases: Vec<(Change, &str)> = vec![
            (
                Box::new(|f| f.target_commands = Err("REPLICAOF is renamed".into())),
                "REPLICAOF is renamed",
            ),
            (
                Box::new(|f| f.target = redis("6.2.5")),
                "older than the source",
            ),
            (
                Box::new(|f| f.target = Ok(ServerVersion::new(Fork::Valkey, 9, 1, 2))),
                "cannot load the RDB",
            ),
            (Box::new(|f| f.target_keys = Ok(3)), "holds 3 keys"),
            (
                Box::new(|f| f.reachable = Err("unreachable".into())),
                "unreachable",
            ),
            (
                Box::new(|f| f.plain_hop = plain_hop(true, None)),
                "the target is rediss://",
            ),
            (
                Box::new(|f| f.plain_hop = plain_hop(false, Some("yes"))),
                "tls-replication yes",
            ),
        ];
        for (change, why) in cases {
            let mut f = facts();
            change(&mut f);
            let choice = choose(&f);
            assert_eq!(choice.transfer, TransferKind::Restore, "{why}");
            assert!(choice.reason.contains(why), "{}", choice.reason);
            f.requested = Transfer::Relay;
            let refusal = choose(&f).refusal().expect("an explicit relay is refused");
            assert!(refusal.contains(why), "{refusal}");
        }
    }

    #[test]
    fn flush_allows_a_target_with_keys_and_restore_is_never_second_guessed() {
        let mut f = facts();
        f.target_keys = Ok(10);
        f.on_conflict = OnConflict::Flush;
        assert_eq!(choose(&f).transfer, TransferKind::Relay);
        f.requested = Transfer::Restore;
        assert_eq!(choose(&f).transfer, TransferKind::Restore);
    }

    #[test]
    fn patch_versions_count() {
        let mut f = facts();
        f.source = redis("7.2.5");
        f.target = redis("7.2.4");
        assert_eq!(choose(&f).transfer, TransferKind::Restore);
    }

    #[test]
    fn only_the_hop_to_the_target_must_be_plain() {
        assert!(plain_hop(false, None).is_ok());
        assert!(plain_hop(false, Some("no")).is_ok());
        assert!(plain_hop(false, Some("")).is_ok());
        assert!(plain_hop(true, Some("no")).is_err());
        assert!(plain_hop(false, Some("YES")).is_err());
    }

    #[test]
    fn a_loopback_relay_reaches_only_local_targets() {
        assert!(reachability(Some("127.0.0.1"), "localhost").is_ok());
        assert!(reachability(Some("127.0.0.1"), "10.0.0.2").is_err());
        assert!(reachability(Some("10.0.0.5"), "10.0.0.2").is_ok());
        assert!(reachability(None, "10.0.0.2").is_err());
    }
}
