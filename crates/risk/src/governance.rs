//! Governance: risk trees signed by the admin quorum of the policy in force.
//!
//! The scheme is the policy's (Ed25519 over a domain separator and the
//! SHA-256 of the exact TOML bytes, distinct admins, a version that must
//! increase), but with its own domain, [`RISK_TREE_DOMAIN`]: an admin's
//! signature on a policy document can never be replayed as a signature on a
//! risk tree of the same bytes, nor the other way round. `keyfold_policy`'s
//! `AdminSignature` signs and checks only policy bytes, so this module has
//! its own [`TreeSignature`] with the same JSON shape (`key`, `signature`,
//! both hex).

use std::collections::BTreeSet;

use ed25519_dalek::{Signer, SigningKey, VerifyingKey};
use keyfold_policy::hex_array;
use keyfold_policy::Policy;
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use crate::error::GovernanceError;
use crate::tree::RiskTree;

/// Domain separator of [`tree_update_bytes`] (the policy's is
/// `keyfold-policy/document/v1\0`).
pub const RISK_TREE_DOMAIN: &[u8] = b"keyfold-risk/tree/v1\0";

/// Most signatures [`SignedTree::verify`] reads.
pub const MAX_TREE_SIGNATURES: usize = 64;

/// Bytes an admin signs for a risk tree: [`RISK_TREE_DOMAIN`] ‖
/// SHA-256(tree TOML bytes, exactly as stored).
pub fn tree_update_bytes(tree_toml: &str) -> Vec<u8> {
    let mut out = RISK_TREE_DOMAIN.to_vec();
    out.extend_from_slice(&Sha256::digest(tree_toml.as_bytes()));
    out
}

/// One admin signature over a risk tree.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TreeSignature {
    /// Admin Ed25519 public key.
    #[serde(with = "hex_array")]
    pub key: [u8; 32],
    /// Signature over [`tree_update_bytes`].
    #[serde(with = "hex_array")]
    pub signature: [u8; 64],
}

impl TreeSignature {
    /// Signs a tree with an admin key.
    pub fn sign(key: &SigningKey, tree_toml: &str) -> TreeSignature {
        TreeSignature {
            key: key.verifying_key().to_bytes(),
            signature: key.sign(&tree_update_bytes(tree_toml)).to_bytes(),
        }
    }
}

/// The admins allowed to sign trees and how many must.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AdminSet {
    keys: BTreeSet<[u8; 32]>,
    quorum: usize,
}

impl AdminSet {
    /// Distinct valid Ed25519 keys and a quorum in `1..=keys`.
    pub fn new(keys: &[[u8; 32]], quorum: usize) -> Result<AdminSet, GovernanceError> {
        let mut set = BTreeSet::new();
        for k in keys {
            VerifyingKey::from_bytes(k)
                .map_err(|_| GovernanceError::BadAdminKey(hex::encode(k)))?;
            set.insert(*k);
        }
        if quorum == 0 || quorum > set.len() {
            return Err(GovernanceError::BadAdminSet {
                quorum,
                keys: set.len(),
            });
        }
        Ok(AdminSet { keys: set, quorum })
    }

    /// The admins and quorum of a policy's `[admins]` section: whoever may
    /// change the policy may change the risk tree.
    pub fn from_policy(policy: &Policy) -> Result<AdminSet, GovernanceError> {
        let Some(admins) = &policy.document().admins else {
            return Err(GovernanceError::NoAdmins);
        };
        let mut keys = Vec::with_capacity(admins.keys.len());
        for k in &admins.keys {
            let bad = || GovernanceError::BadAdminKey(k.chars().take(80).collect());
            let bytes = hex::decode(k.trim()).map_err(|_| bad())?;
            keys.push(<[u8; 32]>::try_from(bytes).map_err(|_| bad())?);
        }
        AdminSet::new(&keys, admins.quorum)
    }

    /// The quorum.
    pub fn quorum(&self) -> usize {
        self.quorum
    }

    /// Whether `key` is an admin.
    pub fn contains(&self, key: &[u8; 32]) -> bool {
        self.keys.contains(key)
    }
}

/// A proposed tree with admin signatures.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SignedTree {
    /// The new tree (TOML), signed byte for byte.
    pub tree_toml: String,
    /// Admin signatures.
    pub signatures: Vec<TreeSignature>,
}

impl SignedTree {
    /// Verifies the update and returns the new tree.
    ///
    /// Requires: at least `admins.quorum()` distinct admins signed these
    /// exact bytes under [`RISK_TREE_DOMAIN`]; the tree is valid; its version
    /// is greater than `current`'s (any version, with no tree in force).
    pub fn verify(
        &self,
        admins: &AdminSet,
        current: Option<&RiskTree>,
    ) -> Result<RiskTree, GovernanceError> {
        if self.signatures.len() > MAX_TREE_SIGNATURES {
            return Err(GovernanceError::TooManySignatures {
                count: self.signatures.len(),
                max: MAX_TREE_SIGNATURES,
            });
        }
        let valid = keyfold_policy::valid_admin_signers(
            &tree_update_bytes(&self.tree_toml),
            self.signatures.iter().map(|s| (&s.key, &s.signature)),
            |k| admins.contains(k),
        );
        if valid.len() < admins.quorum {
            return Err(GovernanceError::QuorumNotMet {
                valid: valid.len(),
                quorum: admins.quorum,
            });
        }
        let new = RiskTree::from_toml(&self.tree_toml)?;
        if let Some(cur) = current {
            if new.version() <= cur.version() {
                return Err(GovernanceError::VersionNotIncreasing {
                    current: cur.version(),
                    new: new.version(),
                });
            }
        }
        Ok(new)
    }
}
