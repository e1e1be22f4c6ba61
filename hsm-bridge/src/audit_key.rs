//! The audit log's checkpoint key: an Ed25519 key pair inside the HSM
//! (label `keyfold-audit` by default) that signs checkpoints through
//! [`keyfold_audit::CheckpointSigner`].
//!
//! Its `CKA_ID` is tagged `kfa1`, so it is never listed nor usable as a cold
//! key. Every signature is verified with `ed25519-dalek`'s `verify_strict`
//! before it is returned, exactly as auditors will check it. Publish
//! [`HsmAuditSigner::public_key_hex`] to the auditors: it is the trusted key
//! that `keyfold_audit::verify` needs.
//!
//! Errors are reported as [`CheckpointError::Signer`] with the full
//! [`HsmError`] text (token, key label, cause).

use std::fmt;

use keyfold_audit::{CheckpointError, CheckpointSigner};

use crate::cold::{ColdCurve, EcKey};
use crate::error::{HsmError, KeyRole};
use crate::keys::{create_lock, KeyProtection, TAG_AUDIT};
use crate::session::Hsm;

/// Default label of the audit checkpoint key.
pub const DEFAULT_AUDIT_KEY_LABEL: &str = "keyfold-audit";

/// Signs audit checkpoints with an Ed25519 key held by the HSM.
pub struct HsmAuditSigner {
    key: EcKey,
    public_key: [u8; 32],
}

impl fmt::Debug for HsmAuditSigner {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("HsmAuditSigner")
            .field("label", &self.key.key.label)
            .field("token", &self.key.key.hsm.token_label())
            .field("public_key", &self.public_key_hex())
            .finish()
    }
}

impl HsmAuditSigner {
    /// Opens the existing audit key labelled `label`
    /// ([`HsmError::KeyNotFound`] if there is none).
    pub fn open(hsm: &Hsm, label: &str) -> Result<HsmAuditSigner, HsmError> {
        let key = EcKey::find(hsm, KeyRole::Audit, TAG_AUDIT, label)?.ok_or_else(|| {
            HsmError::KeyNotFound {
                role: KeyRole::Audit,
                token: hsm.token_label().to_string(),
                label: label.to_string(),
            }
        })?;
        Self::from_key(key)
    }

    /// Generates a new audit key labelled `label`
    /// ([`HsmError::KeyExists`] if any object carries the label).
    pub fn create(hsm: &Hsm, label: &str) -> Result<HsmAuditSigner, HsmError> {
        let key = EcKey::generate(hsm, KeyRole::Audit, TAG_AUDIT, label, ColdCurve::Ed25519)?;
        Self::from_key(key)
    }

    /// Opens the audit key labelled `label`, generating it if absent.
    pub fn open_or_create(hsm: &Hsm, label: &str) -> Result<HsmAuditSigner, HsmError> {
        // Held across lookup and creation so two threads cannot both create.
        let guard = create_lock();
        let found = EcKey::find(hsm, KeyRole::Audit, TAG_AUDIT, label)?;
        drop(guard);
        match found {
            Some(key) => Self::from_key(key),
            None => match Self::create(hsm, label) {
                // Another thread created it between the lookup and here.
                Err(HsmError::KeyExists { .. }) => Self::open(hsm, label),
                other => other,
            },
        }
    }

    fn from_key(key: EcKey) -> Result<HsmAuditSigner, HsmError> {
        let public_key: [u8; 32] = match key.curve {
            ColdCurve::Ed25519 => key.public_bytes.as_slice().try_into().ok(),
            _ => None,
        }
        .ok_or_else(|| HsmError::KeyUnusable {
            role: KeyRole::Audit,
            token: key.key.hsm.token_label().to_string(),
            label: key.key.label.clone(),
            reason: format!("a {} key, not Ed25519", key.curve),
        })?;
        Ok(HsmAuditSigner { key, public_key })
    }

    /// The key's label.
    pub fn label(&self) -> &str {
        &self.key.key.label
    }

    /// The Ed25519 public key in lowercase hex, for the auditors.
    pub fn public_key_hex(&self) -> String {
        hex::encode(self.public_key)
    }

    /// The private key's protection attributes as the token reports them.
    pub fn protection(&self) -> Result<KeyProtection, HsmError> {
        self.key.key.protection()
    }

    /// Signs `bytes`, returning a typed error (the trait method flattens it
    /// to [`CheckpointError::Signer`]).
    pub fn try_sign(&self, bytes: &[u8]) -> Result<[u8; 64], HsmError> {
        self.key.sign_ed25519(bytes)
    }
}

impl CheckpointSigner for HsmAuditSigner {
    fn sign(&self, bytes: &[u8]) -> Result<[u8; 64], CheckpointError> {
        self.try_sign(bytes).map_err(|e| {
            tracing::error!(error = %e, "HSM checkpoint signing failed");
            CheckpointError::Signer(e.to_string())
        })
    }

    fn public_key(&self) -> [u8; 32] {
        self.public_key
    }
}
