//! Governance: policy updates signed by the admin quorum of the current policy.
//!
//! The address book is part of the policy document, so adding an entry is a
//! signed policy update too; the entry becomes usable only after the
//! document's `address_book.cooldown_secs` has passed since its `added_at`.

use std::collections::BTreeSet;

use ed25519_dalek::{Signature, Signer, SigningKey, VerifyingKey};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use crate::approval::hex_array;
use crate::document::Policy;
use crate::error::GovernanceError;

/// Domain separator of [`policy_update_bytes`].
pub const POLICY_DOMAIN: &[u8] = b"keyfold-policy/document/v1\0";

/// Bytes an admin signs for a policy document: [`POLICY_DOMAIN`] ‖
/// SHA-256(document TOML bytes, exactly as stored).
pub fn policy_update_bytes(document_toml: &str) -> Vec<u8> {
    let mut out = POLICY_DOMAIN.to_vec();
    out.extend_from_slice(&Sha256::digest(document_toml.as_bytes()));
    out
}

/// The distinct admins (keys `is_admin` accepts) among `signatures` ((key,
/// signature) pairs) whose Ed25519 signature over `msg` verifies strictly:
/// the quorum count of policy updates and of `keyfold-risk`'s trees.
pub fn valid_admin_signers<'a>(
    msg: &[u8],
    signatures: impl IntoIterator<Item = (&'a [u8; 32], &'a [u8; 64])>,
    is_admin: impl Fn(&[u8; 32]) -> bool,
) -> BTreeSet<[u8; 32]> {
    let mut valid = BTreeSet::new();
    for (key, signature) in signatures {
        if !is_admin(key) {
            continue;
        }
        let Ok(vk) = VerifyingKey::from_bytes(key) else {
            continue;
        };
        if vk
            .verify_strict(msg, &Signature::from_bytes(signature))
            .is_ok()
        {
            valid.insert(*key);
        }
    }
    valid
}

/// One admin signature over a policy document.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AdminSignature {
    /// Admin Ed25519 public key.
    #[serde(with = "hex_array")]
    pub key: [u8; 32],
    /// Signature over [`policy_update_bytes`].
    #[serde(with = "hex_array")]
    pub signature: [u8; 64],
}

impl AdminSignature {
    /// Sign a document with an admin key.
    pub fn sign(key: &SigningKey, document_toml: &str) -> AdminSignature {
        AdminSignature {
            key: key.verifying_key().to_bytes(),
            signature: key.sign(&policy_update_bytes(document_toml)).to_bytes(),
        }
    }
}

/// A proposed policy document with admin signatures.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SignedPolicy {
    /// The new document (TOML), signed byte for byte.
    pub document_toml: String,
    /// Admin signatures.
    pub signatures: Vec<AdminSignature>,
}

impl SignedPolicy {
    /// True if this update is the policy already in force (the same version
    /// and document): pushing it again changes nothing and needs no check.
    pub fn is_in_force(&self, current: &Policy) -> bool {
        Policy::from_toml(&self.document_toml)
            .is_ok_and(|p| p.version() == current.version() && p.document() == current.document())
    }

    /// Verify the update against the `current` policy and return the new policy.
    ///
    /// Requires: the current policy has an admins section; at least its quorum
    /// of distinct current admins signed these exact bytes; the new document
    /// is valid; its version is greater than the current one.
    pub fn verify(&self, current: &Policy) -> Result<Policy, GovernanceError> {
        let Some(admins) = &current.document().admins else {
            return Err(GovernanceError::NoAdmins);
        };
        let valid = valid_admin_signers(
            &policy_update_bytes(&self.document_toml),
            self.signatures.iter().map(|s| (&s.key, &s.signature)),
            |k| current.admin_keys.contains(k),
        );
        if valid.len() < admins.quorum {
            return Err(GovernanceError::QuorumNotMet {
                valid: valid.len(),
                quorum: admins.quorum,
            });
        }
        let new = Policy::from_toml(&self.document_toml)?;
        if new.version() <= current.version() {
            return Err(GovernanceError::VersionNotIncreasing {
                current: current.version(),
                new: new.version(),
            });
        }
        Ok(new)
    }
}
