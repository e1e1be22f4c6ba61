//! Approvals by treasury officers: canonical bytes, signing and verification.

use std::collections::BTreeSet;

use ed25519_dalek::{Signature, Signer, SigningKey, VerifyingKey};
use serde::{Deserialize, Serialize};

use crate::document::Policy;
use crate::error::ApprovalError;
use crate::request::Request;

/// Domain separator of [`approval_bytes`].
pub const APPROVAL_DOMAIN: &[u8] = b"keyfold-policy/approval/v1\0";

/// An approver's decision.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ApprovalDecision {
    /// Approve the request.
    Approve,
    /// Reject the request (vetoes it, or cancels a time lock).
    Reject,
}

/// A signed approval or rejection of one request under one policy version.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Approval {
    /// [`Request::canonical_hash`] of the request.
    #[serde(with = "hex_array")]
    pub request_hash: [u8; 32],
    /// Policy version the approver saw.
    pub policy_version: u64,
    /// Approve or reject.
    pub decision: ApprovalDecision,
    /// Unix seconds after which the approval is void (`now >= expires_at` is expired).
    pub expires_at: u64,
    /// Random nonce; each nonce is accepted once.
    #[serde(with = "hex_array")]
    pub nonce: [u8; 16],
    /// Approver Ed25519 public key.
    #[serde(with = "hex_array")]
    pub approver: [u8; 32],
    /// Ed25519 signature over [`approval_bytes`].
    #[serde(with = "hex_array")]
    pub signature: [u8; 64],
}

/// Canonical signed bytes of an approval: [`APPROVAL_DOMAIN`] ‖ request hash
/// (32) ‖ policy version (u64 BE) ‖ decision (1 byte: 1 approve, 2 reject) ‖
/// expiry (u64 BE) ‖ nonce (16). Always 27 + 32 + 8 + 1 + 8 + 16 = 92 bytes.
pub fn approval_bytes(
    request_hash: &[u8; 32],
    policy_version: u64,
    decision: ApprovalDecision,
    expires_at: u64,
    nonce: &[u8; 16],
) -> Vec<u8> {
    let mut out = Vec::with_capacity(APPROVAL_DOMAIN.len() + 65);
    out.extend_from_slice(APPROVAL_DOMAIN);
    out.extend_from_slice(request_hash);
    out.extend_from_slice(&policy_version.to_be_bytes());
    out.push(match decision {
        ApprovalDecision::Approve => 1,
        ApprovalDecision::Reject => 2,
    });
    out.extend_from_slice(&expires_at.to_be_bytes());
    out.extend_from_slice(nonce);
    out
}

impl Approval {
    /// Sign an approval with an approver's key.
    pub fn sign(
        key: &SigningKey,
        request_hash: [u8; 32],
        policy_version: u64,
        decision: ApprovalDecision,
        expires_at: u64,
        nonce: [u8; 16],
    ) -> Approval {
        let msg = approval_bytes(&request_hash, policy_version, decision, expires_at, &nonce);
        Approval {
            request_hash,
            policy_version,
            decision,
            expires_at,
            nonce,
            approver: key.verifying_key().to_bytes(),
            signature: key.sign(&msg).to_bytes(),
        }
    }

    /// The bytes this approval's signature covers.
    pub fn signed_bytes(&self) -> Vec<u8> {
        approval_bytes(
            &self.request_hash,
            self.policy_version,
            self.decision,
            self.expires_at,
            &self.nonce,
        )
    }
}

/// Verify one approval for `request` under `policy` at time `now`.
///
/// Checks, in order: request hash, policy version, expiry, replay (nonce in
/// `seen_nonces`), approver key validity, signature, group membership, and
/// that the approver is not the request's initiator.
pub fn verify_approval(
    policy: &Policy,
    request: &Request,
    approval: &Approval,
    now: u64,
    seen_nonces: &BTreeSet<[u8; 16]>,
) -> Result<(), ApprovalError> {
    verify_with_hash(
        policy,
        &request.canonical_hash(),
        &request.initiator,
        approval,
        now,
        seen_nonces,
    )
}

pub(crate) fn verify_with_hash(
    policy: &Policy,
    hash: &[u8; 32],
    initiator: &str,
    a: &Approval,
    now: u64,
    seen_nonces: &BTreeSet<[u8; 16]>,
) -> Result<(), ApprovalError> {
    if &a.request_hash != hash {
        return Err(ApprovalError::WrongRequest {
            expected: hex::encode(hash),
            got: hex::encode(a.request_hash),
        });
    }
    if a.policy_version != policy.version() {
        return Err(ApprovalError::WrongPolicyVersion {
            expected: policy.version(),
            got: a.policy_version,
        });
    }
    if now >= a.expires_at {
        return Err(ApprovalError::Expired {
            expires_at: a.expires_at,
            now,
        });
    }
    if seen_nonces.contains(&a.nonce) {
        return Err(ApprovalError::Replayed {
            nonce: hex::encode(a.nonce),
        });
    }
    let vk = VerifyingKey::from_bytes(&a.approver).map_err(|_| ApprovalError::BadKey)?;
    let sig = Signature::from_bytes(&a.signature);
    // Strict: no small-order keys or non-canonical encodings, the same rule
    // the offline auditor applies (keyfold-audit).
    vk.verify_strict(&a.signed_bytes(), &sig)
        .map_err(|_| ApprovalError::Forged)?;
    if policy.groups_of(&a.approver).is_empty() {
        return Err(ApprovalError::NotAMember {
            approver: hex::encode(a.approver),
        });
    }
    if policy.clients_of(&a.approver).contains(initiator) {
        return Err(ApprovalError::SignerIsInitiator {
            approver: hex::encode(a.approver),
            initiator: initiator.to_string(),
        });
    }
    Ok(())
}

/// Serde helper: fixed-size byte arrays (keys, signatures) as hex strings;
/// also used by `keyfold-risk`'s tree signatures.
pub mod hex_array {
    use serde::{de::Error, Deserialize, Deserializer, Serializer};

    /// Writes `v` as lower-case hex.
    pub fn serialize<S: Serializer, const N: usize>(v: &[u8; N], s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&hex::encode(v))
    }

    /// Reads exactly `N` bytes of hex (a string of another length is
    /// refused before it is decoded).
    pub fn deserialize<'de, D: Deserializer<'de>, const N: usize>(
        d: D,
    ) -> Result<[u8; N], D::Error> {
        let s = String::deserialize(d)?;
        if s.len() != 2 * N {
            return Err(D::Error::custom(format!("expected {N} bytes of hex")));
        }
        let bytes = hex::decode(&s).map_err(D::Error::custom)?;
        bytes
            .try_into()
            .map_err(|_| D::Error::custom(format!("expected {N} bytes of hex")))
    }
}
