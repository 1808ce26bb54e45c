//! The redirections a cluster node answers with instead of running a command.
//!
//! - `-MOVED <slot> <host>:<port>`: the slot lives elsewhere for good; the slot map is stale.
//! - `-ASK <slot> <host>:<port>`: the slot is being migrated and this key is already (or will
//!   be) on the importing node; ask there once, after `ASKING`, and keep the map as it is.
//! - `-TRYAGAIN`: a multi-key command's keys are split by a migration in progress; retry soon.
//! - `-CLUSTERDOWN`: the cluster cannot serve the slot right now (a failover under way).

use super::slot::{Slot, SLOTS};

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Redirect {
    Moved { slot: Slot, host: String, port: u16 },
    Ask { slot: Slot, host: String, port: u16 },
    TryAgain,
    ClusterDown,
}

impl Redirect {
    /// Reads an error reply; `None` for an error that is not a redirection. An address without a
    /// host (`:7001`, sent by a node that does not know how it is reached) takes `asked_host`.
    pub fn parse(error: &[u8], asked_host: &str) -> Option<Redirect> {
        let text = std::str::from_utf8(error).ok()?;
        let mut words = text.split(' ');
        let kind = words.next()?;
        match kind {
            "TRYAGAIN" => return Some(Redirect::TryAgain),
            "CLUSTERDOWN" => return Some(Redirect::ClusterDown),
            "MOVED" | "ASK" => {}
            _ => return None,
        }
        let slot: Slot = words.next()?.parse().ok().filter(|s| *s < SLOTS)?;
        let (host, port) = words.next()?.rsplit_once(':')?;
        let port: u16 = port.parse().ok()?;
        let host = match host.trim_start_matches('[').trim_end_matches(']') {
            "" => asked_host.to_string(),
            host => host.to_string(),
        };
        Some(if kind == "MOVED" {
            Redirect::Moved { slot, host, port }
        } else {
            Redirect::Ask { slot, host, port }
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn redirections_are_read_with_their_address() {
        assert_eq!(
            Redirect::parse(b"MOVED 3999 127.0.0.1:6381", "h"),
            Some(Redirect::Moved {
                slot: 3999,
                host: "127.0.0.1".into(),
                port: 6381
            })
        );
        assert_eq!(
            Redirect::parse(b"ASK 12 :7002", "10.0.0.1"),
            Some(Redirect::Ask {
                slot: 12,
                host: "10.0.0.1".into(),
                port: 7002
            })
        );
        assert_eq!(
            Redirect::parse(b"MOVED 1 [::1]:7000", "h"),
            Some(Redirect::Moved {
                slot: 1,
                host: "::1".into(),
                port: 7000
            })
        );
        assert_eq!(
            Redirect::parse(
                b"TRYAGAIN Multiple keys request during rehashing of slot",
                "h"
            ),
            Some(Redirect::TryAgain)
        );
        assert_eq!(
            Redirect::parse(b"CLUSTERDOWN The cluster is down", "h"),
            Some(Redirect::ClusterDown)
        );
        assert_eq!(Redirect::parse(b"ERR wrong number of arguments", "h"), None);
        assert_eq!(Redirect::parse(b"MOVED 16384 h:1", "h"), None);
        assert_eq!(Redirect::parse(b"MOVED x", "h"), None);
    }
}
