//! Session descriptors and the execution ids derived from them.
//!
//! Every protocol run is described by a [`SessionDescriptor`]: which protocol,
//! for which key and request, with which parties, plus a fresh random nonce. The
//! execution id handed to `cggmp21`/`givre` is the SHA-256 of the descriptor's
//! canonical bytes, so an execution id is unique (the nonce) and bound to key id,
//! request id and signer set: messages of one session are useless in any other.

use std::collections::HashSet;
use std::fmt;

use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use crate::params::{KeyId, RequestId, SignerSet, Threshold};
use crate::{MpcError, SessionField};

/// Domain separation tag of the canonical descriptor encoding.
const SESSION_TAG: &[u8] = b"keyfold/session/v1\0";

/// The protocol a session runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
#[non_exhaustive]
pub enum ProtocolKind {
    /// cggmp21 auxiliary info (Paillier keys and ring-Pedersen parameters) for a party set.
    EcdsaAuxInfo,
    /// cggmp21 threshold key generation on secp256k1.
    EcdsaKeygen,
    /// cggmp21 presignature generation.
    EcdsaPresign,
    /// cggmp21 full (interactive) signing.
    EcdsaSign,
    /// FROST (givre) key generation on Ed25519.
    EddsaKeygen,
    /// FROST (givre) interactive signing on Ed25519.
    EddsaSign,
}

impl ProtocolKind {
    fn code(self) -> u8 {
        match self {
            ProtocolKind::EcdsaAuxInfo => 1,
            ProtocolKind::EcdsaKeygen => 2,
            ProtocolKind::EcdsaPresign => 3,
            ProtocolKind::EcdsaSign => 4,
            ProtocolKind::EddsaKeygen => 5,
            ProtocolKind::EddsaSign => 6,
        }
    }

    /// Whether every party of the key takes part (aux info, keygen), rather than `t` signers.
    pub fn is_all_parties(self) -> bool {
        matches!(
            self,
            ProtocolKind::EcdsaAuxInfo | ProtocolKind::EcdsaKeygen | ProtocolKind::EddsaKeygen
        )
    }
}

impl fmt::Display for ProtocolKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            ProtocolKind::EcdsaAuxInfo => "ECDSA aux-info generation",
            ProtocolKind::EcdsaKeygen => "ECDSA key generation",
            ProtocolKind::EcdsaPresign => "ECDSA presignature generation",
            ProtocolKind::EcdsaSign => "ECDSA signing",
            ProtocolKind::EddsaKeygen => "Ed25519 key generation",
            ProtocolKind::EddsaSign => "Ed25519 signing",
        })
    }
}

/// The 32-byte id of a session: SHA-256 of its descriptor's canonical bytes.
#[derive(Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct SessionId(#[serde(with = "hex::serde")] [u8; 32]);

impl SessionId {
    /// The raw bytes (the execution id given to the protocol library).
    pub fn as_bytes(&self) -> &[u8; 32] {
        &self.0
    }
}

impl fmt::Display for SessionId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&hex::encode(self.0))
    }
}

impl fmt::Debug for SessionId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "SessionId({self})")
    }
}

/// Everything the parties of one protocol run must agree on.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SessionDescriptor {
    protocol: ProtocolKind,
    key_id: KeyId,
    request_id: RequestId,
    threshold: Threshold,
    parties: SignerSet,
    #[serde(with = "hex::serde")]
    nonce: [u8; 16],
}

impl SessionDescriptor {
    /// Describes a new session with a fresh random nonce.
    ///
    /// `key_id` names the key (for aux info: the signer group the aux info serves).
    /// `parties` must be all `n` parties for aux info and key generation, and exactly
    /// `t` signers for presignatures and signing.
    pub fn new(
        protocol: ProtocolKind,
        key_id: KeyId,
        request_id: RequestId,
        threshold: Threshold,
        parties: SignerSet,
    ) -> Result<Self, MpcError> {
        let mut nonce = [0u8; 16];
        rand_core::RngCore::fill_bytes(&mut rand_core::OsRng, &mut nonce);
        let d = Self {
            protocol,
            key_id,
            request_id,
            threshold,
            parties,
            nonce,
        };
        d.validate()?;
        Ok(d)
    }

    /// Checks that the party set fits the protocol and the threshold. Descriptors
    /// received from the network must pass this before use.
    pub fn validate(&self) -> Result<(), MpcError> {
        let expected = if self.protocol.is_all_parties() {
            if self.parties != SignerSet::all(self.threshold.n()) {
                return Err(MpcError::SessionMismatchLocal {
                    session: self.id(),
                    what: format!(
                        "{}: it needs all {} parties, got {}",
                        self.protocol,
                        self.threshold.n(),
                        self.parties
                    ),
                });
            }
            return Ok(());
        } else {
            self.threshold.t()
        };
        // Re-validate the set against the threshold: a deserialized set is unchecked.
        let set = SignerSet::new(self.parties.parties(), self.threshold)?;
        debug_assert_eq!(set.len(), expected);
        Ok(())
    }

    /// The protocol.
    pub fn protocol(&self) -> ProtocolKind {
        self.protocol
    }

    /// The key (or signer group) id.
    pub fn key_id(&self) -> KeyId {
        self.key_id
    }

    /// The request id.
    pub fn request_id(&self) -> &RequestId {
        &self.request_id
    }

    /// The key's threshold.
    pub fn threshold(&self) -> Threshold {
        self.threshold
    }

    /// The parties of this session (keygen indices).
    pub fn parties(&self) -> &SignerSet {
        &self.parties
    }

    /// Canonical bytes: the input of the session id. Documented so that other
    /// implementations can derive the same execution id.
    pub fn canonical_bytes(&self) -> Vec<u8> {
        let req = self.request_id.as_str().as_bytes();
        let mut out = Vec::with_capacity(SESSION_TAG.len() + 64 + req.len());
        out.extend_from_slice(SESSION_TAG);
        out.push(self.protocol.code());
        out.extend_from_slice(self.key_id.as_bytes());
        // RequestId is at most 128 bytes, so the length fits u16.
        out.extend_from_slice(&(req.len() as u16).to_be_bytes());
        out.extend_from_slice(req);
        out.extend_from_slice(&self.threshold.t().to_be_bytes());
        out.extend_from_slice(&self.threshold.n().to_be_bytes());
        out.push(self.parties.len() as u8);
        for p in self.parties.parties() {
            out.extend_from_slice(&p.to_be_bytes());
        }
        out.extend_from_slice(&self.nonce);
        out
    }

    /// The session id (execution id).
    pub fn id(&self) -> SessionId {
        SessionId(Sha256::digest(self.canonical_bytes()).into())
    }

    /// The first field in which `other` differs from `self`, with both values printable.
    pub fn first_difference(&self, other: &Self) -> Option<(SessionField, String, String)> {
        if self.protocol != other.protocol {
            return Some((
                SessionField::Protocol,
                self.protocol.to_string(),
                other.protocol.to_string(),
            ));
        }
        if self.key_id != other.key_id {
            return Some((
                SessionField::KeyId,
                self.key_id.to_string(),
                other.key_id.to_string(),
            ));
        }
        if self.request_id != other.request_id {
            return Some((
                SessionField::RequestId,
                self.request_id.to_string(),
                other.request_id.to_string(),
            ));
        }
        if self.threshold != other.threshold {
            return Some((
                SessionField::Parameters,
                self.threshold.to_string(),
                other.threshold.to_string(),
            ));
        }
        if self.parties != other.parties {
            return Some((
                SessionField::SignerSet,
                self.parties.to_string(),
                other.parties.to_string(),
            ));
        }
        if self.nonce != other.nonce {
            return Some((
                SessionField::ExecutionNonce,
                hex::encode(self.nonce),
                hex::encode(other.nonce),
            ));
        }
        None
    }

    /// A copy with another nonce: only for tests that need two descriptors that
    /// differ in nothing else.
    #[cfg(any(test, feature = "test-fixtures"))]
    pub fn with_nonce(mut self, nonce: [u8; 16]) -> Self {
        self.nonce = nonce;
        self
    }

    /// A copy with another signer set, unchecked: only for tests that simulate a
    /// party with a wrong view of the session.
    #[cfg(any(test, feature = "test-fixtures"))]
    pub fn with_parties_unchecked(mut self, parties: SignerSet) -> Self {
        self.parties = parties;
        self
    }
}

/// Refuses a session id seen before, so an execution id is never run twice by
/// one party. Nodes keep one per process and persist what they must remember
/// across restarts.
#[derive(Debug, Default)]
pub struct SessionRegistry {
    seen: HashSet<SessionId>,
}

impl SessionRegistry {
    /// An empty registry.
    pub fn new() -> Self {
        Self::default()
    }

    /// Records `session`, or refuses it if it was recorded before.
    pub fn register(&mut self, session: &SessionDescriptor) -> Result<(), MpcError> {
        let id = session.id();
        if self.seen.insert(id) {
            Ok(())
        } else {
            Err(MpcError::ReplayedSession(id))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn desc(parties: &[u16]) -> SessionDescriptor {
        let t = Threshold::new(2, 3).unwrap();
        SessionDescriptor::new(
            ProtocolKind::EcdsaSign,
            KeyId::from_bytes([7; 16]),
            RequestId::new("req-1").unwrap(),
            t,
            SignerSet::new(parties, t).unwrap(),
        )
        .unwrap()
    }

    #[test]
    fn ids_are_unique_and_bound() {
        let a = desc(&[0, 1]);
        let b = desc(&[0, 1]);
        assert_ne!(a.id(), b.id(), "fresh nonce per session");
        let same_nonce = b.clone().with_nonce(a.nonce);
        assert_eq!(a.id(), same_nonce.id());
        let other_set = desc(&[0, 2]).with_nonce(a.nonce);
        assert_ne!(a.id(), other_set.id());
        assert_eq!(
            a.first_difference(&other_set).map(|d| d.0),
            Some(SessionField::SignerSet)
        );
    }

    #[test]
    fn keygen_needs_all_parties() {
        let t = Threshold::new(2, 3).unwrap();
        let err = SessionDescriptor::new(
            ProtocolKind::EcdsaKeygen,
            KeyId::random(),
            RequestId::new("k").unwrap(),
            t,
            SignerSet::new(&[0, 1], t).unwrap(),
        );
        assert!(matches!(err, Err(MpcError::SessionMismatchLocal { .. })));
    }

    #[test]
    fn registry_refuses_replay() {
        let a = desc(&[0, 1]);
        let mut reg = SessionRegistry::new();
        reg.register(&a).unwrap();
        assert!(matches!(
            reg.register(&a),
            Err(MpcError::ReplayedSession(_))
        ));
    }

    #[test]
    fn deserialized_descriptor_is_revalidated() {
        let a = desc(&[0, 1]);
        let mut json: serde_json::Value = serde_json::to_value(&a).unwrap();
        json["parties"] = serde_json::json!([1, 1]);
        let bad: SessionDescriptor = serde_json::from_value(json).unwrap();
        assert!(matches!(
            bad.validate(),
            Err(MpcError::DuplicateParty { .. })
        ));
    }
}
