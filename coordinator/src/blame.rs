//! Whom to leave out of the next quorum after a failed attempt, decided from
//! typed evidence only.
//!
//! Every signer asked in the attempt is described by one [`Report`]: it
//! answered, or the coordinator's own request to it failed at the transport
//! level, or it answered an error about itself, or it answered that the
//! session failed and named culprits (keygen indices, [`WireCulprit`]).
//! Error messages are never read: their text may quote other signers.
//!
//! The rule ([`decide`]):
//! * a signer is left out on evidence the coordinator checked itself: its own
//!   request to the signer failed, or the signer answered an error about
//!   itself (policy refusal, missing key, internal failure, refusal ...);
//! * or when at least two *other* parties of the session accuse it, counting
//!   only accusers that the coordinator did not itself see fail;
//! * a single accusation leaves nobody out: it is returned as an unconfirmed
//!   accusation, for the audit log and the logs. So a signer that lies about
//!   an honest peer gets nobody excluded (and is not excluded for lying
//!   either: from one session, a liar and an honest victim of a silent peer
//!   look the same);
//! * accusations of parties outside the session, and of the accuser itself,
//!   are ignored.
//!
//! What this tolerates: one dishonest signer per session. Two colluding
//! signers of one session can get an honest third left out of the retries of
//! that request (they could stall its sessions anyway). In a two-party
//! session no peer accusation can confirm another: only the coordinator's own
//! observations leave anyone out.

use std::fmt;

use keyfold_net::NetError;
use keyfold_proto::signer::{ErrorCode, WireBlameKind, WireCulprit, WireError};

/// How the coordinator's own request to a signer failed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum RpcFailure {
    /// No connection: refused, handshake failed, wrong identity, unreachable.
    Unreachable,
    /// No complete answer within the command's timeout.
    TimedOut,
    /// The connection or the stream broke before the answer was complete.
    ConnectionLost,
    /// The signer refused the request stream (busy, its handler failed ...).
    Refused,
    /// The answer is not a valid answer (does not decode, too large, of the
    /// wrong kind).
    BadAnswer,
    /// The coordinator could not address or encode the request (configuration).
    NotSent,
}

impl RpcFailure {
    /// The kind of a transport error of `Node::request`.
    pub fn from_net(e: &NetError) -> Self {
        match e {
            NetError::RequestTimeout { .. } => RpcFailure::TimedOut,
            NetError::Connection { .. }
            | NetError::Read { .. }
            | NetError::Write { .. }
            | NetError::FrameTruncated { .. } => RpcFailure::ConnectionLost,
            NetError::Refused { .. } => RpcFailure::Refused,
            NetError::FrameTooLarge { .. } => RpcFailure::BadAnswer,
            NetError::Closed { .. } | NetError::InvalidNodeId { .. } => RpcFailure::NotSent,
            _ => RpcFailure::Unreachable,
        }
    }
}

impl fmt::Display for RpcFailure {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            RpcFailure::Unreachable => "unreachable",
            RpcFailure::TimedOut => "timed out",
            RpcFailure::ConnectionLost => "connection lost",
            RpcFailure::Refused => "refused the request",
            RpcFailure::BadAnswer => "bad answer",
            RpcFailure::NotSent => "request not sent",
        })
    }
}

/// What the coordinator knows about one signer it asked.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Evidence {
    /// It answered successfully.
    Answered,
    /// The coordinator's own request to it failed at the transport level.
    Rpc(RpcFailure),
    /// It answered an error about itself (any code but `ProtocolFailed`).
    OwnError(ErrorCode),
    /// It answered that the session failed, naming these culprits (possibly
    /// none).
    SessionFailed(Vec<WireCulprit>),
}

impl Evidence {
    /// The evidence of an error answer: only `ProtocolFailed` speaks about
    /// the session (and only its typed culprits accuse anyone); every other
    /// code is about the answering signer itself, and the culprits such an
    /// answer may carry are dropped: a signer the coordinator saw fail
    /// accuses nobody.
    pub fn from_wire(e: &WireError) -> Self {
        match e.code {
            ErrorCode::ProtocolFailed => Evidence::SessionFailed(e.culprits.clone()),
            code => Evidence::OwnError(code),
        }
    }
}

/// One signer asked in the failed attempt.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Report {
    /// Its keygen index in the key.
    pub party: u16,
    /// Its node id.
    pub node: String,
    /// What the coordinator knows about it.
    pub evidence: Evidence,
}

/// One party accusing another.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Accusation {
    /// The accuser's keygen index.
    pub accuser: u16,
    /// The accuser's node id.
    pub accuser_node: String,
    /// The accused's keygen index.
    pub accused: u16,
    /// The accused's node id, when it is a party of the session.
    pub accused_node: Option<String>,
    /// What the accuser says it did.
    pub kind: WireBlameKind,
}

impl fmt::Display for Accusation {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{} (party {}) accuses party {}",
            self.accuser_node, self.accuser, self.accused
        )?;
        if let Some(n) = &self.accused_node {
            write!(f, " ({n})")?;
        }
        write!(f, ": {}", self.kind)
    }
}

/// Why a signer is left out.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Reason {
    /// The coordinator's own request to it failed.
    Rpc(RpcFailure),
    /// It answered an error about itself.
    OwnError(ErrorCode),
    /// At least two other parties of the session, none of which the
    /// coordinator saw fail, accuse it.
    Accused(Vec<Accusation>),
}

impl Reason {
    /// Whether it points at a fault of the signer (a policy refusal does not:
    /// the signer did its job).
    pub fn is_fault(&self) -> bool {
        !matches!(self, Reason::OwnError(ErrorCode::PolicyRefused))
    }
}

impl fmt::Display for Reason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Reason::Rpc(r) => write!(f, "coordinator's request: {r}"),
            Reason::OwnError(code) => write!(f, "answered {code:?} about itself"),
            Reason::Accused(list) => {
                f.write_str("accused by ")?;
                for (k, a) in list.iter().enumerate() {
                    if k > 0 {
                        f.write_str(", ")?;
                    }
                    write!(f, "{} ({})", a.accuser_node, a.kind)?;
                }
                Ok(())
            }
        }
    }
}

/// A signer left out of the next quorum.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Excluded {
    /// Its keygen index.
    pub party: u16,
    /// Its node id.
    pub node: String,
    /// On what evidence.
    pub reason: Reason,
}

/// The outcome of [`decide`].
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Decision {
    /// Signers to leave out of the next quorum, in the order of the reports.
    pub excluded: Vec<Excluded>,
    /// Accusations that excluded nobody (a single accuser): for the audit log.
    pub unconfirmed: Vec<Accusation>,
    /// Accusations that do not count: of a party outside the session, or of
    /// the accuser itself. (A signer the coordinator saw fail accuses nobody:
    /// its [`Evidence`] carries no accusations.)
    pub ignored: Vec<Accusation>,
    /// Whether the attempt failed (at least partly) on the coordinator's own
    /// view of the network: its request to some signer failed.
    pub own_network: bool,
    /// Whether its requests failed to every signer asked: then the
    /// coordinator's own network is the likelier cause.
    pub nobody_reachable: bool,
}

impl Decision {
    /// The node to name as the cause in the audit log: the first signer left
    /// out for a fault, unless the coordinator reached nobody.
    pub fn blamed(&self) -> Option<&str> {
        if self.nobody_reachable {
            return None;
        }
        self.excluded
            .iter()
            .find(|e| e.reason.is_fault())
            .map(|e| e.node.as_str())
    }

    /// Whether `node` is left out.
    pub fn excludes(&self, node: &str) -> bool {
        self.excluded.iter().any(|e| e.node == node)
    }
}

impl fmt::Display for Decision {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut sep = "";
        for e in &self.excluded {
            write!(f, "{sep}{} left out: {}", e.node, e.reason)?;
            sep = "; ";
        }
        for a in &self.unconfirmed {
            write!(f, "{sep}unconfirmed: {a}")?;
            sep = "; ";
        }
        if self.nobody_reachable {
            write!(f, "{sep}no signer reachable from the coordinator")?;
        }
        Ok(())
    }
}

/// Decides whom to leave out after a failed attempt, from one report per
/// signer asked (a party reported twice counts once: its first report).
pub fn decide(reports: &[Report]) -> Decision {
    let mut seen = std::collections::HashSet::new();
    let reports: Vec<&Report> = reports.iter().filter(|r| seen.insert(r.party)).collect();
    let node_of = |party: u16| {
        reports
            .iter()
            .find(|r| r.party == party)
            .map(|r| r.node.clone())
    };

    let mut d = Decision::default();
    let mut counted: Vec<Accusation> = Vec::new();
    for r in &reports {
        match &r.evidence {
            Evidence::Answered => {}
            Evidence::Rpc(f) => {
                d.own_network = true;
                d.excluded.push(Excluded {
                    party: r.party,
                    node: r.node.clone(),
                    reason: Reason::Rpc(*f),
                });
            }
            Evidence::OwnError(code) => d.excluded.push(Excluded {
                party: r.party,
                node: r.node.clone(),
                reason: Reason::OwnError(*code),
            }),
            Evidence::SessionFailed(culprits) => {
                for c in culprits {
                    let a = Accusation {
                        accuser: r.party,
                        accuser_node: r.node.clone(),
                        accused: c.party,
                        accused_node: node_of(c.party),
                        kind: c.kind,
                    };
                    let duplicate = counted
                        .iter()
                        .any(|x| x.accuser == a.accuser && x.accused == a.accused);
                    if a.accused_node.is_none() || a.accused == a.accuser {
                        d.ignored.push(a);
                    } else if !duplicate {
                        counted.push(a);
                    }
                }
            }
        }
    }
    d.nobody_reachable = !reports.is_empty()
        && reports
            .iter()
            .all(|r| matches!(r.evidence, Evidence::Rpc(_)));

    for r in &reports {
        let against: Vec<Accusation> = counted
            .iter()
            .filter(|a| a.accused == r.party)
            .cloned()
            .collect();
        if d.excludes(&r.node) {
            // Left out on the coordinator's own evidence already.
            continue;
        }
        if against.len() >= 2 {
            d.excluded.push(Excluded {
                party: r.party,
                node: r.node.clone(),
                reason: Reason::Accused(against),
            });
        } else {
            d.unconfirmed.extend(against);
        }
    }
    d
}

#[cfg(test)]
mod tests {
    use keyfold_proto::signer::Response;

    use super::*;

    fn node(party: u16) -> String {
        format!("signer-{}", party + 1)
    }

    fn report(party: u16, evidence: Evidence) -> Report {
        Report {
            party,
            node: node(party),
            evidence,
        }
    }

    fn accuses(list: &[(u16, WireBlameKind)]) -> Evidence {
        Evidence::SessionFailed(
            list.iter()
                .map(|&(party, kind)| WireCulprit { party, kind })
                .collect(),
        )
    }

    fn excluded(d: &Decision) -> Vec<&str> {
        d.excluded.iter().map(|e| e.node.as_str()).collect()
    }

    use WireBlameKind::*;

    #[test]
    fn a_liar_does_not_get_an_honest_peer_excluded_and_is_only_recorded() {
        // Session of keygen parties 0, 1, 2: party 0 claims party 1 was
        // silent; party 1 and party 2 answered fine.
        let d = decide(&[
            report(0, accuses(&[(1, Silent)])),
            report(1, Evidence::Answered),
            report(2, Evidence::Answered),
        ]);
        assert!(d.excluded.is_empty(), "{d}");
        assert_eq!(d.blamed(), None);
        assert_eq!(d.unconfirmed.len(), 1, "{d}");
        let a = &d.unconfirmed[0];
        assert_eq!((a.accuser, a.accused, a.kind), (0, 1, Silent));
        assert_eq!(a.accused_node.as_deref(), Some("signer-2"));
        assert!(!d.own_network);
        // The liar is not excluded either.
        assert!(!d.excludes("signer-1"));
    }

    #[test]
    fn a_silent_peer_is_identified_by_the_coordinators_own_timeout() {
        // 2-of-n signing with parties 0 and 2: party 2 is silent. Its peer
        // accuses it, and the coordinator's own request to it timed out.
        let d = decide(&[
            report(0, accuses(&[(2, Silent)])),
            report(2, Evidence::Rpc(RpcFailure::TimedOut)),
        ]);
        assert_eq!(excluded(&d), ["signer-3"], "{d}");
        assert_eq!(d.excluded[0].reason, Reason::Rpc(RpcFailure::TimedOut));
        assert_eq!(d.blamed(), Some("signer-3"));
        assert!(d.own_network && !d.nobody_reachable);
        // The accusation agrees with what the coordinator saw: not unconfirmed.
        assert!(d.unconfirmed.is_empty(), "{d}");
    }

    #[test]
    fn two_accusers_in_a_three_party_session_exclude() {
        let d = decide(&[
            report(0, accuses(&[(2, Malformed)])),
            report(1, accuses(&[(2, Silent)])),
            // Party 2 answered the coordinator, and blames both in return.
            report(2, accuses(&[(0, Silent), (1, Silent)])),
        ]);
        assert_eq!(excluded(&d), ["signer-3"], "{d}");
        match &d.excluded[0].reason {
            Reason::Accused(by) => {
                let accusers: Vec<u16> = by.iter().map(|a| a.accuser).collect();
                assert_eq!(accusers, [0, 1]);
            }
            other => panic!("expected accusations, got {other}"),
        }
        assert_eq!(d.blamed(), Some("signer-3"));
        // Party 2's accusations stay single: recorded, nobody excluded for them.
        let unconfirmed: Vec<(u16, u16)> = d
            .unconfirmed
            .iter()
            .map(|a| (a.accuser, a.accused))
            .collect();
        assert_eq!(unconfirmed, [(2, 0), (2, 1)]);
    }

    #[test]
    fn mutual_accusations_exclude_no_one() {
        let d = decide(&[
            report(0, accuses(&[(1, SessionMismatch)])),
            report(1, accuses(&[(0, SessionMismatch)])),
        ]);
        assert!(d.excluded.is_empty(), "{d}");
        assert_eq!(d.unconfirmed.len(), 2);
        // Nor in a larger session, where two parties accuse each other.
        let d = decide(&[
            report(0, accuses(&[(3, Silent)])),
            report(1, Evidence::Answered),
            report(2, Evidence::Answered),
            report(3, accuses(&[(0, Silent)])),
        ]);
        assert!(d.excluded.is_empty(), "{d}");
    }

    #[test]
    fn accusations_of_parties_outside_the_session_or_of_oneself_are_ignored() {
        let d = decide(&[
            report(0, accuses(&[(4, Silent), (0, Silent)])),
            report(1, accuses(&[(4, Disconnected)])),
            report(2, Evidence::Answered),
        ]);
        assert!(d.excluded.is_empty(), "{d}");
        assert!(d.unconfirmed.is_empty(), "{d}");
        assert_eq!(d.ignored.len(), 3);
        assert!(d
            .ignored
            .iter()
            .all(|a| a.accused == 4 || a.accused == a.accuser));
    }

    #[test]
    fn the_same_accuser_counts_once() {
        // Party 0 names party 2 twice (two kinds): still one accuser.
        let d = decide(&[
            report(0, accuses(&[(2, Silent), (2, Malformed)])),
            report(1, Evidence::Answered),
            report(2, Evidence::Answered),
        ]);
        assert!(d.excluded.is_empty(), "{d}");
        // A party listed twice in the reports counts once too.
        let d = decide(&[
            report(0, accuses(&[(2, Silent)])),
            report(0, accuses(&[(2, Silent)])),
            report(2, Evidence::Answered),
        ]);
        assert!(d.excluded.is_empty(), "{d}");
    }

    #[test]
    fn errors_about_oneself_exclude_and_policy_refusals_are_no_fault() {
        let d = decide(&[
            report(0, Evidence::OwnError(ErrorCode::PolicyRefused)),
            report(1, Evidence::OwnError(ErrorCode::NotFound)),
            report(2, Evidence::Answered),
        ]);
        assert_eq!(excluded(&d), ["signer-1", "signer-2"]);
        assert_eq!(d.blamed(), Some("signer-2"), "a policy refusal is no fault");
        assert!(!d.own_network);
    }

    #[test]
    fn signers_seen_failing_accuse_nobody() {
        // Two signers answer errors about themselves that also name party 2:
        // they are left out, party 2 is not.
        let own = wire_error(
            r#"{"type":"error","code":"internal","message":"disk full",
                "culprits":[{"party":2,"kind":"silent"}]}"#,
        );
        let d = decide(&[
            report(0, Evidence::from_wire(&own)),
            report(1, Evidence::from_wire(&own)),
            report(2, Evidence::Answered),
        ]);
        assert_eq!(excluded(&d), ["signer-1", "signer-2"], "{d}");
        assert!(!d.excludes("signer-3"));
        assert!(d.unconfirmed.is_empty(), "{d}");
    }

    #[test]
    fn nobody_reachable_points_at_the_coordinators_network() {
        let d = decide(&[
            report(0, Evidence::Rpc(RpcFailure::Unreachable)),
            report(1, Evidence::Rpc(RpcFailure::TimedOut)),
        ]);
        assert!(d.own_network && d.nobody_reachable);
        assert_eq!(excluded(&d), ["signer-1", "signer-2"]);
        assert_eq!(d.blamed(), None);
    }

    /// Parses an answer as the coordinator does.
    fn wire_error(json: &str) -> WireError {
        match serde_json::from_str::<Response>(json).unwrap() {
            Response::Error(e) => e,
            other => panic!("not an error answer: {other:?}"),
        }
    }

    #[test]
    fn text_naming_a_signer_blames_nobody() {
        // What the old coordinator searched for: "(signer-2)" in the text.
        let framing = wire_error(
            r#"{"type":"error","code":"protocol_failed",
                "message":"transport failed in session ab: session ab: party 1 (signer-2) is gone; waiting for party 1 (signer-2)"}"#,
        );
        assert!(framing.culprits.is_empty());
        let evidence = Evidence::from_wire(&framing);
        assert_eq!(evidence, Evidence::SessionFailed(Vec::new()));
        // Even with two signers saying so in text.
        let d = decide(&[
            report(0, evidence.clone()),
            report(1, Evidence::Answered),
            report(2, evidence),
        ]);
        assert!(!d.excludes("signer-2"), "{d}");
        assert!(d.excluded.is_empty() && d.unconfirmed.is_empty(), "{d}");
        assert_eq!(d.blamed(), None);

        // The same failure with typed culprits from two parties does count.
        let typed = wire_error(
            r#"{"type":"error","code":"protocol_failed","message":"no names here",
                "culprits":[{"party":1,"kind":"disconnected"}]}"#,
        );
        let d = decide(&[
            report(0, Evidence::from_wire(&typed)),
            report(1, Evidence::Answered),
            report(2, Evidence::from_wire(&typed)),
        ]);
        assert_eq!(excluded(&d), ["signer-2"], "{d}");
    }

    #[test]
    fn answers_of_older_signers_and_unknown_kinds_parse() {
        let old = wire_error(r#"{"type":"error","code":"not_found","message":"no share"}"#);
        assert_eq!(
            Evidence::from_wire(&old),
            Evidence::OwnError(ErrorCode::NotFound)
        );
        let newer = wire_error(
            r#"{"type":"error","code":"protocol_failed","message":"",
                "culprits":[{"party":0,"kind":"bribed"}]}"#,
        );
        assert_eq!(newer.culprits[0].kind, WireBlameKind::Unknown);
    }

    #[test]
    fn transport_failures_of_requests_are_the_coordinators_own_observation() {
        let peer = keyfold_net::NodeId::new("signer-2").unwrap();
        let timeout = NetError::RequestTimeout {
            peer: peer.clone(),
            after: std::time::Duration::from_secs(1),
        };
        assert_eq!(RpcFailure::from_net(&timeout), RpcFailure::TimedOut);
        let lost = NetError::Connection {
            peer,
            reason: "reset".into(),
        };
        assert_eq!(RpcFailure::from_net(&lost), RpcFailure::ConnectionLost);
    }
}
