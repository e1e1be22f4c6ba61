//! Typed blame: which party of a session a failure is attributed to, and why.
//!
//! A [`Culprit`] names a party by its index in the session (its position in
//! the session's signer set, not its keygen index) and says what it did, as
//! seen by the party reporting it. A culprit is evidence from one party's
//! point of view, not a verdict: a dishonest party can name anyone. Whoever
//! acts on blame (the coordinator) weighs accusations from several parties
//! against what it observed itself.
//!
//! Where blame comes from:
//! * the transport: a party silent past the round deadline, gone, or whose
//!   message does not decode ([`crate::delivery::TransportError`]);
//! * our delivery layer: a message from another session or from an index
//!   outside the session ([`crate::MpcError::SessionMismatch`],
//!   [`crate::MpcError::UnexpectedSender`]);
//! * the protocol framework (`round_based`): a second message in one round, or
//!   a broadcast sent as a p2p message (see `library_culprits` in `error.rs`
//!   for what the protocol libraries expose and what they keep private).

use std::fmt;

use round_based::PartyIndex;
use serde::{Deserialize, Serialize};

/// What a blamed party did, as seen by the party that names it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
#[non_exhaustive]
pub enum BlameKind {
    /// Sent nothing within the round deadline while the protocol waited for it.
    Silent,
    /// Its stream or connection closed in the middle of the session.
    Disconnected,
    /// Sent a message that does not decode as the protocol's message type.
    Malformed,
    /// Sent a message that the protocol library rejected: a proof that does not
    /// verify, a share inconsistent with its commitment (the library's own blame).
    InvalidMessage,
    /// Sent a message that does not fit the round: a second message in one
    /// round, or a p2p message where a broadcast was due (or the reverse).
    UnexpectedMessage,
    /// Runs another session than ours: its session descriptor differs.
    SessionMismatch,
    /// A message claimed a sender index outside the session.
    UnexpectedSender,
}

impl fmt::Display for BlameKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            BlameKind::Silent => "silent past the round deadline",
            BlameKind::Disconnected => "disconnected",
            BlameKind::Malformed => "sent a malformed message",
            BlameKind::InvalidMessage => "sent a message the protocol rejected",
            BlameKind::UnexpectedMessage => "sent a message that does not fit the round",
            BlameKind::SessionMismatch => "runs another session",
            BlameKind::UnexpectedSender => "is outside the session",
        })
    }
}

/// A party named as the cause of a failure.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct Culprit {
    /// The party's index in the session (position in the session's signer
    /// set; equal to the keygen index only for all-party sessions).
    pub party: PartyIndex,
    /// What it did.
    pub kind: BlameKind,
}

impl Culprit {
    /// Names `party` (session index) for `kind`.
    pub fn new(party: PartyIndex, kind: BlameKind) -> Self {
        Self { party, kind }
    }
}

impl fmt::Display for Culprit {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "party {} {}", self.party, self.kind)
    }
}

/// Adds `c` to `list` unless it is there already.
pub(crate) fn push_unique(list: &mut Vec<Culprit>, c: Culprit) {
    if !list.contains(&c) {
        list.push(c);
    }
}

/// Renders a culprit list for error messages: empty, or ` (blamed: ...)`.
pub(crate) struct Blamed<'a>(pub(crate) &'a [Culprit]);

impl fmt::Display for Blamed<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.0.is_empty() {
            return Ok(());
        }
        f.write_str(" (blamed: ")?;
        for (k, c) in self.0.iter().enumerate() {
            if k > 0 {
                f.write_str(", ")?;
            }
            write!(f, "{c}")?;
        }
        f.write_str(")")
    }
}
