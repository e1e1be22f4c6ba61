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
    #[error(
        "{protocol} failed in session {session} (key {key}): {reason}{}",
        Blamed(culprits)
    )]
    ProtocolFailed {
        /// Which protocol.
        protocol: ProtocolKind,
        /// Which session.
        session: SessionId,
        /// Which key.
        key: KeyId,
        /// The parties the protocol framework blamed, by session index, where
        /// it exposes its blame as data (empty otherwise; see `library_culprits`).
        culprits: Vec<Culprit>,
        /// The library's reason, with its source chain flattened.
        reason: String,
    },
    /// The transport failed or a peer disappeared mid-protocol.
    #[error("transport failed in session {session}: {reason}{}", Blamed(culprits))]
    Transport {
        /// Which session.
        session: SessionId,
        /// The parties the transport blamed, by session index (from a
        /// [`crate::delivery::TransportError`] in its error chain; empty when
        /// the transport named nobody).
        culprits: Vec<Culprit>,
        /// What the transport said.
        reason: String,
    },
    /// Another party of an in-process session failed, so this one was stopped.
    ///
    /// Only [`crate::local`] raises it. It names the party whose run failed
    /// first, which is not evidence of misbehaviour: [`MpcError::culprits`]
    /// returns nothing for it (that party's own error carries the culprits).
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

use crate::blame::{push_unique, BlameKind, Blamed, Culprit};
use crate::params::KeyId;
use crate::session::{ProtocolKind, SessionId};

impl MpcError {
    /// The parties this error blames, by session index, with what each did.
    ///
    /// Empty when the error names nobody: local errors (bad parameters, a
    /// share that does not load), failures the libraries do not attribute,
    /// and [`MpcError::Aborted`]. A culprit is this party's view, not proof.
    pub fn culprits(&self) -> Vec<Culprit> {
        match self {
            MpcError::SessionMismatch { party, .. } => {
                vec![Culprit::new(*party, BlameKind::SessionMismatch)]
            }
            MpcError::UnexpectedSender { party, .. } => {
                vec![Culprit::new(*party, BlameKind::UnexpectedSender)]
            }
            MpcError::Transport { culprits, .. } | MpcError::ProtocolFailed { culprits, .. } => {
                culprits.clone()
            }
            _ => Vec::new(),
        }
    }
}

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

/// Finds an error of type `T` in `err` or its `source()` chain.
fn find<'a, T: std::error::Error + 'static>(
    err: &'a (dyn std::error::Error + 'static),
) -> Option<&'a T> {
    let mut cur: Option<&(dyn std::error::Error + 'static)> = Some(err);
    while let Some(e) = cur {
        if let Some(found) = e.downcast_ref::<T>() {
            return Some(found);
        }
        cur = e.source();
    }
    None
}

/// The blame a protocol library's error exposes as typed data.
///
/// What the libraries expose, and what they do not:
/// * `round_based`'s `RoundInputError` (a second message from one party in a
///   round, a broadcast sent as p2p or the reverse, a sender index out of
///   range) is a public type, found in the `source()` chain of cggmp21-keygen
///   0.5.0 (ECDSA keygen), cggmp24-keygen 0.7.0-alpha.4 (Ed25519 keygen, via
///   givre) and givre 0.3.0 signing errors. cggmp21 0.6.3's signing,
///   presigning and aux-info errors hold it in a field that is not a
///   `source()` (`IoError::RouteReceivedError`): there it names nobody.
/// * Failed zero-knowledge proofs, decommitments that do not match, shares
///   inconsistent with their commitments: cggmp21 0.6.3 (`SigningAborted`,
///   key refresh's `ProtocolAborted` with `Vec<AbortBlame>`), cggmp21-keygen
///   and cggmp24-keygen (`KeygenAborted`) record the faulty parties, but in
///   private types behind a public newtype (`SigningError(Reason)`,
///   `KeyRefreshError(Reason)`, `KeygenError(Reason)`), which cannot be
///   downcast from outside those crates. Only their Debug/Display text carries
///   the indices, and blame never rests on parsing text: these failures name
///   nobody here ([`BlameKind::InvalidMessage`] is for a library that exposes
///   them).
/// * givre 0.3.0 signing does not check signature shares one by one: a bad
///   share shows as an invalid aggregate signature (`AggregateError`), which
///   names no party.
fn library_culprits(err: &(dyn std::error::Error + 'static)) -> Vec<Culprit> {
    use round_based::rounds_router::simple_store::RoundInputError;
    let mut out = Vec::new();
    let mut cur: Option<&(dyn std::error::Error + 'static)> = Some(err);
    while let Some(e) = cur {
        if let Some(r) = e.downcast_ref::<RoundInputError>() {
            let c = match r {
                RoundInputError::AttemptToOverwriteReceivedMsg { sender, .. } => {
                    Culprit::new(*sender, BlameKind::UnexpectedMessage)
                }
                RoundInputError::SenderIndexOutOfRange { sender, .. } => {
                    Culprit::new(*sender, BlameKind::UnexpectedSender)
                }
                // The message id was given by `delivery::bind`, which encodes
                // the sender in it.
                RoundInputError::MismatchedMessageType { msg_id, .. } => Culprit::new(
                    crate::delivery::sender_of(*msg_id),
                    BlameKind::UnexpectedMessage,
                ),
            };
            push_unique(&mut out, c);
        }
        cur = e.source();
    }
    out
}

/// Turns a protocol library's error into an [`MpcError`]: a refusal by our
/// delivery layer (wrong session, unexpected sender) is returned as it is, a
/// transport failure as [`MpcError::Transport`] with the culprits of the
/// [`crate::delivery::TransportError`] in its chain, anything else as
/// [`MpcError::ProtocolFailed`] with the library's reason and whatever blame
/// it exposes as data.
pub(crate) fn from_protocol(
    session: &crate::SessionDescriptor,
    err: &(dyn std::error::Error + 'static),
) -> MpcError {
    match find::<crate::delivery::DeliveryError>(err) {
        Some(crate::delivery::DeliveryError::Refused(e)) => e.clone(),
        Some(crate::delivery::DeliveryError::Transport(t)) => MpcError::Transport {
            session: session.id(),
            culprits: find::<crate::delivery::TransportError>(t.as_ref())
                .map(|t| t.culprits.clone())
                .unwrap_or_default(),
            reason: chain(t.as_ref()),
        },
        None => MpcError::ProtocolFailed {
            protocol: session.protocol(),
            session: session.id(),
            key: session.key_id(),
            culprits: library_culprits(err),
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
