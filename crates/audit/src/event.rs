//! Typed audit events and log entries, with their JSON form and canonical bytes.
//!
//! The JSON form (one line per entry in the log file) is only a transport: what
//! gets hashed, chained and put in the Merkle tree are the *canonical bytes*
//! produced by [`Entry::canonical_bytes`], documented byte by byte in
//! `docs/audit-log.md`.

use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use crate::canonical::Writer;
use crate::hexser;
use crate::merkle::{self, Hash};

/// Domain tag that starts the canonical bytes of every entry.
pub const ENTRY_TAG: &[u8] = b"keyfold/audit/entry";
/// Version of the canonical entry encoding.
pub const ENTRY_VERSION: u16 = 1;

/// Longest accepted string field, in bytes of UTF-8.
pub const MAX_STRING: usize = 4096;
/// Longest accepted byte field (keys, signatures, hashes), in bytes.
pub const MAX_BYTES: usize = 1024;
/// Most items accepted in a list field (participants, signers).
pub const MAX_LIST: usize = 1024;

/// A byte string that appears in JSON as a lowercase hex string.
#[derive(Clone, PartialEq, Eq, Hash, Default)]
pub struct HexBytes(pub Vec<u8>);

impl std::fmt::Debug for HexBytes {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "HexBytes({})", hex::encode(&self.0))
    }
}

impl From<Vec<u8>> for HexBytes {
    fn from(v: Vec<u8>) -> Self {
        HexBytes(v)
    }
}

impl From<&[u8]> for HexBytes {
    fn from(v: &[u8]) -> Self {
        HexBytes(v.to_vec())
    }
}

impl AsRef<[u8]> for HexBytes {
    fn as_ref(&self) -> &[u8] {
        &self.0
    }
}

impl Serialize for HexBytes {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        hexser::serialize_vec(&self.0, s)
    }
}

impl<'de> Deserialize<'de> for HexBytes {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        hexser::deserialize_vec(d).map(HexBytes)
    }
}

/// Outcome of a policy decision.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
#[non_exhaustive]
pub enum Outcome {
    /// The request may be signed now.
    Allow,
    /// The request needs (more) approvals.
    NeedApprovals,
    /// The request is held by a time lock.
    TimeLock,
    /// The request is refused.
    Deny,
}

impl Outcome {
    /// Code of the outcome in the canonical bytes.
    pub fn code(self) -> u8 {
        match self {
            Outcome::Allow => 1,
            Outcome::NeedApprovals => 2,
            Outcome::TimeLock => 3,
            Outcome::Deny => 4,
        }
    }
}

/// How a signing session produced its signature.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
#[non_exhaustive]
pub enum SigningMode {
    /// Full interactive threshold signing.
    Full,
    /// One-round online step from a presignature.
    Presignature,
}

impl SigningMode {
    /// Code of the mode in the canonical bytes.
    pub fn code(self) -> u8 {
        match self {
            SigningMode::Full => 1,
            SigningMode::Presignature => 2,
        }
    }
}

/// One auditable event. The JSON form carries a `"type"` tag in snake_case.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case", deny_unknown_fields)]
#[non_exhaustive]
pub enum Event {
    /// A key was created by distributed key generation.
    KeyCreated {
        /// Key identifier.
        key_id: String,
        /// Curve name, e.g. `secp256k1` or `ed25519`.
        curve: String,
        /// Threshold: signers needed to sign.
        t: u16,
        /// Number of share holders.
        n: u16,
        /// Identifiers of the share holders.
        participants: Vec<String>,
        /// Group public key (encoding as used by the curve).
        public_key: HexBytes,
    },
    /// A policy document (or address book) version came into force.
    PolicyVersion {
        /// Version number.
        version: u64,
        /// SHA-256 of the canonical policy document.
        #[serde(with = "hexser::h32")]
        document_hash: Hash,
    },
    /// A signing request entered the coordinator.
    SignRequest {
        /// Request identifier.
        request_id: String,
        /// Key to sign with.
        key_id: String,
        /// Requesting client.
        client: String,
        /// Hash of the message (or transaction intent) to sign.
        message_hash: HexBytes,
        /// Name of the hash algorithm of `message_hash`.
        hash_alg: String,
        /// HD derivation path, if any.
        derivation_path: Option<String>,
    },
    /// An approver signed a request's canonical hash.
    Approval {
        /// Request identifier.
        request_id: String,
        /// Approver identifier.
        approver: String,
        /// The approver's signature.
        signature: HexBytes,
    },
    /// The policy engine decided on a request.
    Decision {
        /// Request identifier.
        request_id: String,
        /// Rule that matched.
        rule: String,
        /// What the rule decided.
        outcome: Outcome,
    },
    /// A signing session started with a signer set.
    SigningSession {
        /// Request identifier.
        request_id: String,
        /// Session (execution) identifier.
        session_id: String,
        /// Identifiers of the signers in the session.
        signers: Vec<String>,
        /// How the signature is produced.
        mode: SigningMode,
    },
    /// A signature was produced and verified.
    Signature {
        /// Request identifier.
        request_id: String,
        /// Key that signed.
        key_id: String,
        /// Public key the signature verifies under (after derivation).
        public_key: HexBytes,
        /// The signature.
        signature: HexBytes,
    },
    /// A signing session was aborted.
    Aborted {
        /// Request identifier.
        request_id: String,
        /// Session identifier.
        session_id: String,
        /// Party blamed for the abort, if identified.
        blamed: Option<String>,
        /// Why the session was aborted.
        reason: String,
    },
}

/// Why an event or entry is outside the accepted bounds.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum BoundsError {
    /// A string field is longer than [`MAX_STRING`].
    #[error("field `{0}` is longer than {MAX_STRING} bytes")]
    StringTooLong(&'static str),
    /// A byte field is longer than [`MAX_BYTES`].
    #[error("field `{0}` is longer than {MAX_BYTES} bytes")]
    BytesTooLong(&'static str),
    /// A list field has more than [`MAX_LIST`] items.
    #[error("field `{0}` has more than {MAX_LIST} items")]
    ListTooLong(&'static str),
}

fn check_str(name: &'static str, s: &str) -> Result<(), BoundsError> {
    if s.len() > MAX_STRING {
        Err(BoundsError::StringTooLong(name))
    } else {
        Ok(())
    }
}

fn check_bytes(name: &'static str, b: &HexBytes) -> Result<(), BoundsError> {
    if b.0.len() > MAX_BYTES {
        Err(BoundsError::BytesTooLong(name))
    } else {
        Ok(())
    }
}

fn check_list(name: &'static str, l: &[String]) -> Result<(), BoundsError> {
    if l.len() > MAX_LIST {
        return Err(BoundsError::ListTooLong(name));
    }
    l.iter().try_for_each(|s| check_str(name, s))
}

impl Event {
    /// Code of the event type in the canonical bytes.
    pub fn type_code(&self) -> u16 {
        match self {
            Event::KeyCreated { .. } => 1,
            Event::PolicyVersion { .. } => 2,
            Event::SignRequest { .. } => 3,
            Event::Approval { .. } => 4,
            Event::Decision { .. } => 5,
            Event::SigningSession { .. } => 6,
            Event::Signature { .. } => 7,
            Event::Aborted { .. } => 8,
        }
    }

    /// Request id this event belongs to, if any.
    pub fn request_id(&self) -> Option<&str> {
        match self {
            Event::KeyCreated { .. } | Event::PolicyVersion { .. } => None,
            Event::SignRequest { request_id, .. }
            | Event::Approval { request_id, .. }
            | Event::Decision { request_id, .. }
            | Event::SigningSession { request_id, .. }
            | Event::Signature { request_id, .. }
            | Event::Aborted { request_id, .. } => Some(request_id),
        }
    }

    /// Checks every field against the size bounds ([`MAX_STRING`], [`MAX_BYTES`], [`MAX_LIST`]).
    pub fn validate(&self) -> Result<(), BoundsError> {
        match self {
            Event::KeyCreated {
                key_id,
                curve,
                participants,
                public_key,
                ..
            } => {
                check_str("key_id", key_id)?;
                check_str("curve", curve)?;
                check_list("participants", participants)?;
                check_bytes("public_key", public_key)
            }
            Event::PolicyVersion { .. } => Ok(()),
            Event::SignRequest {
                request_id,
                key_id,
                client,
                message_hash,
                hash_alg,
                derivation_path,
            } => {
                check_str("request_id", request_id)?;
                check_str("key_id", key_id)?;
                check_str("client", client)?;
                check_bytes("message_hash", message_hash)?;
                check_str("hash_alg", hash_alg)?;
                if let Some(p) = derivation_path {
                    check_str("derivation_path", p)?;
                }
                Ok(())
            }
            Event::Approval {
                request_id,
                approver,
                signature,
            } => {
                check_str("request_id", request_id)?;
                check_str("approver", approver)?;
                check_bytes("signature", signature)
            }
            Event::Decision {
                request_id, rule, ..
            } => {
                check_str("request_id", request_id)?;
                check_str("rule", rule)
            }
            Event::SigningSession {
                request_id,
                session_id,
                signers,
                ..
            } => {
                check_str("request_id", request_id)?;
                check_str("session_id", session_id)?;
                check_list("signers", signers)
            }
            Event::Signature {
                request_id,
                key_id,
                public_key,
                signature,
            } => {
                check_str("request_id", request_id)?;
                check_str("key_id", key_id)?;
                check_bytes("public_key", public_key)?;
                check_bytes("signature", signature)
            }
            Event::Aborted {
                request_id,
                session_id,
                blamed,
                reason,
            } => {
                check_str("request_id", request_id)?;
                check_str("session_id", session_id)?;
                if let Some(b) = blamed {
                    check_str("blamed", b)?;
                }
                check_str("reason", reason)
            }
        }
    }

    /// Appends the canonical encoding of the event (type code, then fields) to `w`.
    pub(crate) fn encode(&self, w: &mut Writer) {
        w.u16(self.type_code());
        match self {
            Event::KeyCreated {
                key_id,
                curve,
                t,
                n,
                participants,
                public_key,
            } => {
                w.str(key_id);
                w.str(curve);
                w.u16(*t);
                w.u16(*n);
                w.list(participants);
                w.bytes(&public_key.0);
            }
            Event::PolicyVersion {
                version,
                document_hash,
            } => {
                w.u64(*version);
                w.raw(document_hash);
            }
            Event::SignRequest {
                request_id,
                key_id,
                client,
                message_hash,
                hash_alg,
                derivation_path,
            } => {
                w.str(request_id);
                w.str(key_id);
                w.str(client);
                w.bytes(&message_hash.0);
                w.str(hash_alg);
                w.opt_str(derivation_path.as_deref());
            }
            Event::Approval {
                request_id,
                approver,
                signature,
            } => {
                w.str(request_id);
                w.str(approver);
                w.bytes(&signature.0);
            }
            Event::Decision {
                request_id,
                rule,
                outcome,
            } => {
                w.str(request_id);
                w.str(rule);
                w.u8(outcome.code());
            }
            Event::SigningSession {
                request_id,
                session_id,
                signers,
                mode,
            } => {
                w.str(request_id);
                w.str(session_id);
                w.list(signers);
                w.u8(mode.code());
            }
            Event::Signature {
                request_id,
                key_id,
                public_key,
                signature,
            } => {
                w.str(request_id);
                w.str(key_id);
                w.bytes(&public_key.0);
                w.bytes(&signature.0);
            }
            Event::Aborted {
                request_id,
                session_id,
                blamed,
                reason,
            } => {
                w.str(request_id);
                w.str(session_id);
                w.opt_str(blamed.as_deref());
                w.str(reason);
            }
        }
    }
}

/// One log entry: position, time, link to the previous entry, and the event.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Entry {
    /// Position in the log, starting at 0.
    pub index: u64,
    /// Time of the entry in Unix milliseconds (supplied by the caller).
    pub time: i64,
    /// Hash ([`Entry::hash`]) of the previous entry; 32 zero bytes for entry 0.
    #[serde(with = "hexser::h32")]
    pub prev_hash: Hash,
    /// The event.
    pub event: Event,
}

impl Entry {
    /// The canonical bytes of the entry (see `docs/audit-log.md`).
    pub fn canonical_bytes(&self) -> Vec<u8> {
        let mut w = Writer::with_capacity(128);
        w.bytes(ENTRY_TAG);
        w.u16(ENTRY_VERSION);
        w.u64(self.index);
        w.i64(self.time);
        w.raw(&self.prev_hash);
        self.event.encode(&mut w);
        w.into_bytes()
    }

    /// Entry hash, the link of the hash chain: SHA-256 of the canonical bytes.
    pub fn hash(&self) -> Hash {
        Sha256::digest(self.canonical_bytes()).into()
    }

    /// Merkle leaf hash: SHA-256(0x00 || canonical bytes).
    pub fn leaf_hash(&self) -> Hash {
        merkle::leaf_hash(&self.canonical_bytes())
    }

    /// Both the chain hash and the leaf hash, encoding the entry once.
    pub fn hashes(&self) -> (Hash, Hash) {
        let bytes = self.canonical_bytes();
        (Sha256::digest(&bytes).into(), merkle::leaf_hash(&bytes))
    }

    /// The entry's line in the log file: compact JSON followed by `\n`.
    pub fn to_json_line(&self) -> Vec<u8> {
        // Serializing plain data with string keys cannot fail.
        let mut v = serde_json::to_vec(self).unwrap_or_default();
        v.push(b'\n');
        v
    }
}
