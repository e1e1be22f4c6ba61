//! Coordinator -> signer commands and their answers.
//!
//! Every command is one request frame and one answer frame on a QUIC stream
//! (see `keyfold-net`), JSON-encoded, at most [`crate::MAX_RPC_BYTES`]. Party
//! indices are always keygen indices; signers map them to node ids from what
//! they stored at key generation, never from the command, so a coordinator
//! cannot swap who a party is.

use std::net::SocketAddr;

use keyfold_mpc::ecdsa::{DerivationPath, HashAlg, PartialSignature};
use keyfold_mpc::{KeyId, SessionDescriptor, SessionId};
use keyfold_policy::{Approval, SignedPolicy};
use serde::{Deserialize, Serialize};

use crate::{Curve, PROTOCOL_VERSION};

/// Where a node listens (addresses are not trusted: TLS authenticates node ids).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct NodeAddr {
    /// Node id (the DNS name in its certificate).
    pub node: String,
    /// QUIC address.
    pub addr: SocketAddr,
}

/// What a signer needs to check a signing request against its own policy:
/// the typed request, the approvals gathered for it, and the policy version
/// the coordinator evaluated. The signer derives the message to sign from
/// `request` ([`keyfold_policy::Request::signing_message`]); no command
/// carries a message of its own.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PolicyIntent {
    /// The request as the policy sees it.
    pub request: keyfold_policy::Request,
    /// Approvals and rejections gathered by the coordinator.
    pub approvals: Vec<Approval>,
    /// The policy version the coordinator evaluated under.
    pub policy_version: u64,
    /// The request's customer, device and merchant (pseudonyms, from its
    /// client context), which the signer checks against its freezes as it
    /// checks the paying wallet.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub subjects: Vec<FreezeSubject>,
}

/// What a freeze applies to.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct FreezeSubject {
    /// `customer`, `device`, `wallet` or `merchant`.
    pub scope: String,
    /// The pseudonym of a customer or device, a wallet's key id, or a
    /// merchant id.
    pub subject: String,
}

/// Longest freeze id, subject or lift a signer reads, in bytes.
pub const MAX_FREEZE_FIELD: usize = 256;
/// Longest signed lift (JSON) a signer reads, in bytes.
pub const MAX_LIFT_JSON: usize = 16 * 1024;

/// A request from the coordinator.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Request {
    /// Must be [`PROTOCOL_VERSION`].
    pub version: u32,
    /// The command.
    pub command: Command,
}

impl Request {
    /// Wraps a command at the current version.
    pub fn new(command: Command) -> Self {
        Self {
            version: PROTOCOL_VERSION,
            command,
        }
    }
}

/// What the coordinator asks a signer to do.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
#[non_exhaustive]
pub enum Command {
    /// Report health and pool levels.
    Status,
    /// Generate ECDSA aux info for a signer group (session key id = group id).
    /// `members[i]` is party `i`.
    AuxInfo {
        /// The session (protocol `ecdsa_aux_info`, all members).
        session: SessionDescriptor,
        /// Node ids of the group, by party index.
        members: Vec<String>,
        /// Where every member listens.
        addrs: Vec<NodeAddr>,
    },
    /// Generate a key. For secp256k1 the group's aux info must exist.
    Keygen {
        /// The curve.
        curve: Curve,
        /// The session (protocol `ecdsa_keygen` or `eddsa_keygen`).
        session: SessionDescriptor,
        /// Signer group (for secp256k1: whose aux info to use).
        group: KeyId,
        /// Node ids of the key's parties, by keygen index.
        members: Vec<String>,
        /// Where every member listens.
        addrs: Vec<NodeAddr>,
    },
    /// Run one presignature session with the signers of `session`.
    Presign {
        /// The session (protocol `ecdsa_presign`).
        session: SessionDescriptor,
        /// Where the signers listen.
        addrs: Vec<NodeAddr>,
    },
    /// Tell a signer about a new request: it records when it first saw it
    /// (its own clock), which bounds how far back the request's time can be
    /// claimed later (time locks, velocity windows).
    Announce {
        /// The request.
        request: keyfold_policy::Request,
    },
    /// Refuse every request of this subject from now on (the coordinator
    /// can always add a freeze).
    Freeze {
        /// The freeze's id.
        freeze_id: String,
        /// What it applies to.
        subject: FreezeSubject,
    },
    /// Lift a freeze: the signed lift (JSON of `keyfold_risk::FreezeLift`),
    /// which the signer verifies against the officers of its own policy
    /// (two distinct officers).
    LiftFreeze {
        /// The freeze's id.
        freeze_id: String,
        /// The signed lift.
        lift: String,
    },
    /// Replace the signer's policy with a document signed by the admin
    /// quorum of the policy it enforces now.
    UpdatePolicy {
        /// The new document and its admin signatures.
        update: SignedPolicy,
    },
    /// Issue a partial signature from a stored presignature (the online step)
    /// over the message of `intent`, if the signer's own policy check allows it.
    SignWithPresignature {
        /// The key.
        key: KeyId,
        /// The presignature (its session id).
        presignature: SessionId,
        /// The signer set (keygen indices) that made the presignature.
        signers: Vec<u16>,
        /// What to sign and why it is allowed.
        intent: PolicyIntent,
        /// How to hash the message.
        hash: HashAlg,
    },
    /// Full interactive signing with the signers of `session` over the
    /// message of `intent`, if the signer's own policy check allows it.
    Sign {
        /// The session (protocol `ecdsa_sign` or `eddsa_sign`).
        session: SessionDescriptor,
        /// What to sign and why it is allowed.
        intent: PolicyIntent,
        /// ECDSA hash (ignored for Ed25519).
        hash: Option<HashAlg>,
        /// ECDSA HD path.
        path: Option<DerivationPath>,
        /// Where the signers listen.
        addrs: Vec<NodeAddr>,
    },
}

/// A signer's answer.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
#[non_exhaustive]
pub enum Response {
    /// Answer to [`Command::Status`].
    Status(NodeStatus),
    /// Aux info generated and stored.
    AuxInfoDone {
        /// The group.
        group: KeyId,
    },
    /// Key share generated and sealed.
    KeygenDone {
        /// The key.
        key: KeyId,
        /// Group public key (33-byte SEC1 or 32-byte Ed25519).
        #[serde(with = "crate::hex_bytes")]
        public_key: Vec<u8>,
        /// BIP32 chain code (secp256k1 only).
        chain_code: Option<String>,
    },
    /// Presignature stored.
    Presigned {
        /// Its id (the session id).
        presignature: SessionId,
    },
    /// The online step's output.
    Partial(PartialSignature),
    /// A full signature (64 bytes).
    Signed {
        /// `r || s` (ECDSA) or `R || s` (Ed25519).
        #[serde(with = "crate::hex_bytes")]
        signature: Vec<u8>,
    },
    /// The request was recorded ([`Command::Announce`]).
    Announced {
        /// When this signer first saw it (Unix seconds, its clock).
        first_seen: i64,
    },
    /// The policy was replaced ([`Command::UpdatePolicy`]).
    PolicyUpdated {
        /// The version now enforced.
        version: u64,
    },
    /// The freeze is held ([`Command::Freeze`]; also when it already was).
    Frozen {
        /// The freeze.
        freeze_id: String,
    },
    /// The freeze is lifted ([`Command::LiftFreeze`]; also when it already was).
    Unfrozen {
        /// The freeze.
        freeze_id: String,
    },
    /// The command failed.
    Error(WireError),
}

/// Health and pool levels of a signer.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct NodeStatus {
    /// Node id.
    pub node: String,
    /// Key shares held.
    pub keys: usize,
    /// Safe-prime pairs ready.
    pub primes_ready: usize,
    /// Safe-prime pairs being generated.
    pub primes_generating: usize,
    /// Software version.
    pub version: String,
    /// Version of the policy this signer enforces.
    #[serde(default)]
    pub policy_version: u64,
}

/// Why a command failed.
///
/// `message` is for people and may quote anything, including text chosen by
/// other signers: decisions (whom to blame, whom to leave out) rest on `code`
/// and `culprits` only.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct WireError {
    /// Machine-readable code.
    pub code: ErrorCode,
    /// What happened and what to do, for a person.
    pub message: String,
    /// The parties of the failed session this signer blames, by keygen index
    /// (empty when it blames nobody; absent in answers of older signers).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub culprits: Vec<WireCulprit>,
}

impl WireError {
    /// An error that blames nobody.
    pub fn new(code: ErrorCode, message: impl Into<String>) -> Self {
        Self {
            code,
            message: message.into(),
            culprits: Vec::new(),
        }
    }
}

/// A party that a signer blames for a failed session.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct WireCulprit {
    /// Its keygen index in the key (for aux info: its index in the signer
    /// group), not its position in the session.
    pub party: u16,
    /// What it did, as the accusing signer saw it.
    pub kind: WireBlameKind,
}

/// What a blamed party did (the wire form of [`keyfold_mpc::BlameKind`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
#[non_exhaustive]
pub enum WireBlameKind {
    /// Sent nothing within the round deadline.
    Silent,
    /// Its stream or connection closed mid-session.
    Disconnected,
    /// Sent a message that does not decode.
    Malformed,
    /// Sent a message the protocol library rejected (failed proof, bad share).
    InvalidMessage,
    /// Sent a message that does not fit the round (duplicate, wrong type).
    UnexpectedMessage,
    /// Runs another session (its session descriptor differs).
    SessionMismatch,
    /// Claimed a sender index outside the session.
    UnexpectedSender,
    /// A kind this build does not know (sent by a newer signer).
    #[serde(other)]
    Unknown,
}

impl From<keyfold_mpc::BlameKind> for WireBlameKind {
    fn from(k: keyfold_mpc::BlameKind) -> Self {
        use keyfold_mpc::BlameKind as K;
        match k {
            K::Silent => WireBlameKind::Silent,
            K::Disconnected => WireBlameKind::Disconnected,
            K::Malformed => WireBlameKind::Malformed,
            K::InvalidMessage => WireBlameKind::InvalidMessage,
            K::UnexpectedMessage => WireBlameKind::UnexpectedMessage,
            K::SessionMismatch => WireBlameKind::SessionMismatch,
            K::UnexpectedSender => WireBlameKind::UnexpectedSender,
            _ => WireBlameKind::Unknown,
        }
    }
}

impl std::fmt::Display for WireBlameKind {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            WireBlameKind::Silent => "silent",
            WireBlameKind::Disconnected => "disconnected",
            WireBlameKind::Malformed => "malformed message",
            WireBlameKind::InvalidMessage => "invalid message",
            WireBlameKind::UnexpectedMessage => "unexpected message",
            WireBlameKind::SessionMismatch => "session mismatch",
            WireBlameKind::UnexpectedSender => "unexpected sender",
            WireBlameKind::Unknown => "unknown",
        })
    }
}

/// Maps culprits named by session index (what `keyfold-mpc` reports) to keygen
/// indices through the session's signer set (`signers[i]` is the keygen index
/// of session index `i`). A culprit outside the set is dropped: it names no
/// party of the key. Duplicates are dropped too.
pub fn culprits_by_keygen_index(
    culprits: &[keyfold_mpc::Culprit],
    signers: &keyfold_mpc::SignerSet,
) -> Vec<WireCulprit> {
    let mut out: Vec<WireCulprit> = Vec::new();
    for c in culprits {
        let Some(&party) = signers.parties().get(usize::from(c.party)) else {
            continue;
        };
        let w = WireCulprit {
            party,
            kind: c.kind.into(),
        };
        if !out.contains(&w) {
            out.push(w);
        }
    }
    out
}

/// Machine-readable failure codes of signer commands.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
#[non_exhaustive]
pub enum ErrorCode {
    /// The request could not be parsed or is too large.
    BadRequest,
    /// Another protocol version.
    UnsupportedVersion,
    /// The key, aux info or presignature is unknown here.
    NotFound,
    /// The presignature was already used (never signs twice).
    PresignatureUsed,
    /// The session id was seen before.
    SessionReplayed,
    /// The command does not fit what this node holds (wrong party, wrong key ...).
    Refused,
    /// The signer's own policy check refused the request.
    PolicyRefused,
    /// The protocol with the other signers failed or timed out.
    ProtocolFailed,
    /// Storage or sealing failed on this node.
    Internal,
}

impl std::fmt::Display for WireError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{:?}: {}", self.code, self.message)?;
        for (k, c) in self.culprits.iter().enumerate() {
            let sep = if k == 0 { " [blames " } else { ", " };
            write!(f, "{sep}keygen party {} ({})", c.party, c.kind)?;
        }
        if !self.culprits.is_empty() {
            f.write_str("]")?;
        }
        Ok(())
    }
}

/// The policy's wallet name for signatures by `key`, or by its non-hardened
/// child at `path`: the key id, or `key_id/m/0/1`. Coordinator and signers
/// derive it the same way, so a derivation path cannot slip past a policy
/// written for the root wallet.
pub fn wallet_name(key: &KeyId, path: Option<&DerivationPath>) -> String {
    match path {
        Some(p) => format!("{key}/{p}"),
        None => key.to_string(),
    }
}
