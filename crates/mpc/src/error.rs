//! The error type of every protocol entry point.

use round_based::PartyIndex;

/// Which part of a session descriptor two parties disagree on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum SessionField {
    /// The protocol (aux info, keygen, presignature, signing ...).
    Protocol,
    /// The key id.
    KeyId,
    /// The request id.
    RequestId,
    /// The participants (keygen indices of the signer set).
    SignerSet,
    /// The threshold or the number of parties.
    Parameters,
    /// The per-session nonce: the same descriptor otherwise, but another execution.
    ExecutionNonce,
}

impl std::fmt::Display for SessionField {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            SessionField::Protocol => "protocol",
            SessionField::KeyId => "key id",
            SessionField::RequestId => "request id",
            SessionField::SignerSet => "signer set",
            SessionField::Parameters => "threshold or party count",
            SessionField::ExecutionNonce => "execution id (nonce)",
        })
    }
}

/// Everything that can go wrong in `keyfold-mpc`.
///
/// Each variant carries what a caller needs to act: which party, which key,
/// which session. No variant ever carries secret material.
#[derive(Debug, Clone, thiserror::Error)]
#[non_exhaustive]
pub enum MpcError {
    /// Threshold parameters are out of range.
    #[error("invalid threshold {t}-of-{n}: need 2 <= t <= n <= {max}")]
    InvalidThreshold {
        /// Requested threshold.
        t: u16,
        /// Requested number of parties.
        n: u16,
        /// Largest supported `n`.
        max: u16,
    },
    /// A signer set has the wrong number of parties.
    #[error("signer set {parties:?} has {got} parties, the key needs exactly t = {need}")]
    WrongSignerCount {
        /// The set as given.
        parties: Vec<PartyIndex>,
        /// Its size.
        got: usize,
        /// The key's threshold.
        need: u16,
    },
    /// A party index appears twice in a signer set.
    #[error("party {party} appears more than once in signer set {parties:?}")]
    DuplicateParty {
        /// The duplicated index.
        party: PartyIndex,
        /// The set as given.
        parties: Vec<PartyIndex>,
    },
    /// A party index is not a keygen index of the key (`>= n`).
    #[error("party {party} is not a member of a {n}-party key")]
    UnknownParty {
        /// The offending index.
        party: PartyIndex,
        /// Number of parties of the key.
        n: u16,
    },
    /// The local party is not in the signer set it was asked to sign with.
    #[error("local party {party} is not in signer set {parties:?}")]
    NotInSignerSet {
        /// The local party's keygen index.
        party: PartyIndex,
        /// The set as given.
        parties: Vec<PartyIndex>,
    },
    /// The session descriptor does not fit the local material.
    #[error("session {session} does not fit {what}")]
    SessionMismatchLocal {
        /// The session id (hex).
        session: SessionId,
        /// What did not fit.
        what: String,
    },
    /// A peer runs another session than ours.
    #[error("party {party} is running another session: its {field} differs (ours: {ours}, theirs: {theirs})")]
    SessionMismatch {
        /// Sender index in this session.
        party: PartyIndex,
        /// The first field that differs.
        field: SessionField,
        /// Our value, printable.
        ours: String,
        /// Their value, printable.
        theirs: String,
    },
    /// A message came from an index that is not a party of this session.
    #[error("message from party {party}, which is outside this {parties}-party session")]
    UnexpectedSender {
        /// The sender index.
        party: PartyIndex,
        /// Number of parties in the session.
        parties: u16,
    },
    /// A session id was presented twice.
    #[error("session {0} was already run: execution ids are never reused")]
    ReplayedSession(SessionId),
    /// The protocol aborted.
    #[error("{protocol} failed in session {session} (key {key}): {reason}")]
    ProtocolFailed {
        /// Which protocol.
        protocol: ProtocolKind,
        /// Which session.
        session: SessionId,
        /// Which key.
        key: KeyId,
        /// The library's reason, with its source chain flattened.
        reason: String,
    },
    /// The transport failed or a peer disappeared mid-protocol.
    #[error("transport failed in session {session}: {reason}")]
    Transport {
        /// Which session.
        session: SessionId,
        /// What the transport said.
        reason: String,
    },
    /// Another party of an in-process session failed, so this one was stopped.
    #[error("stopped because party {culprit} failed: {reason}")]
    Aborted {
        /// Session index of the party that failed first.
        culprit: PartyIndex,
        /// Its error.
        reason: String,
    },
    /// A combined signature does not verify: a partial signature was wrong or missing.
    #[error("combined signature for key {key} does not verify: {reason}")]
    InvalidSignature {
        /// Which key.
        key: KeyId,
        /// Why (missing partials, bad share ...).
        reason: String,
    },
    /// An HD derivation path could not be used.
    #[error("invalid derivation path: {0}")]
    InvalidDerivationPath(String),
    /// A message or partial signature does not belong to this operation.
    #[error("{0}")]
    Mismatch(String),
    /// A serialized object could not be loaded.
    #[error("cannot load {what}: {reason}")]
    Decode {
        /// What was being loaded (e.g. "ECDSA key share").
        what: &'static str,
        /// Why it was refused.
        reason: String,
    },
    /// A serialized object is of a format version this build does not know.
    #[error("cannot load {what}: format version {found} is not supported (this build reads {supported})")]
    UnsupportedVersion {
        /// What was being loaded.
        what: &'static str,
        /// Version found.
        found: u32,
        /// Version supported.
        supported: u32,
    },
    /// The prime pool has no primes and cannot make them in time.
    #[error("safe-prime pool is empty: {0}")]
    PrimePool(String),
    /// An internal invariant broke; a bug.
    #[error("internal error: {0}")]
    Internal(String),
}

use crate::params::KeyId;
use crate::session::{ProtocolKind, SessionId};

/// Renders an error with its whole `source()` chain on one line.
pub(crate) fn chain(err: &(dyn std::error::Error + 'static)) -> String {
    let mut out = err.to_string();
    let mut cur = err.source();
    while let Some(e) = cur {
        out.push_str(": ");
        out.push_str(&e.to_string());
        cur = e.source();
    }
    out
}

/// Finds a [`MpcError`] raised by our delivery layer inside a library error.
pub(crate) fn find_delivery_error<'a>(
    err: &'a (dyn std::error::Error + 'static),
) -> Option<&'a crate::delivery::DeliveryError> {
    let mut cur: Option<&(dyn std::error::Error + 'static)> = Some(err);
    while let Some(e) = cur {
        if let Some(found) = e.downcast_ref::<crate::delivery::DeliveryError>() {
            return Some(found);
        }
        cur = e.source();
    }
    None
}

/// Turns a protocol library's error into an [`MpcError`]: a refusal by our
/// delivery layer (wrong session, unexpected sender) is returned as it is, a
/// transport failure as [`MpcError::Transport`], anything else as
/// [`MpcError::ProtocolFailed`] with the library's reason.
pub(crate) fn from_protocol(
    session: &crate::SessionDescriptor,
    err: &(dyn std::error::Error + 'static),
) -> MpcError {
    match find_delivery_error(err) {
        Some(crate::delivery::DeliveryError::Refused(e)) => e.clone(),
        Some(crate::delivery::DeliveryError::Transport(t)) => MpcError::Transport {
            session: session.id(),
            reason: chain(t.as_ref()),
        },
        None => MpcError::ProtocolFailed {
            protocol: session.protocol(),
            session: session.id(),
            key: session.key_id(),
            reason: chain(err),
        },
    }
}

/// Checks that `session` runs `expected` and fits a key of `threshold` with id `key`.
pub(crate) fn check_session(
    session: &crate::SessionDescriptor,
    expected: ProtocolKind,
    key: KeyId,
    threshold: crate::Threshold,
) -> Result<(), MpcError> {
    session.validate()?;
    let local = |what: String| MpcError::SessionMismatchLocal {
        session: session.id(),
        what,
    };
    if session.protocol() != expected {
        return Err(local(format!(
            "this call: it describes {}, the call runs {expected}",
            session.protocol()
        )));
    }
    if session.key_id() != key {
        return Err(local(format!(
            "the local key: it names key {}, the share is for key {key}",
            session.key_id()
        )));
    }
    if session.threshold() != threshold {
        return Err(local(format!(
            "the local key: it says {}, the key is {threshold}",
            session.threshold()
        )));
    }
    Ok(())
}
