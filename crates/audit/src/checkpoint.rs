//! Signed checkpoints (tree heads): log id, tree size, root hash and time,
//! signed with Ed25519 over their canonical bytes.
//!
//! The signing key sits behind [`CheckpointSigner`], so the HSM bridge can hold
//! it later; [`Ed25519Signer`] is the software key used by the devnet and tests.

use ed25519_dalek::{Signature, Signer as _, SigningKey, VerifyingKey};
use serde::{Deserialize, Serialize};

use crate::canonical::Writer;
use crate::hexser;
use crate::merkle::Hash;

/// Domain tag that starts the canonical bytes of every checkpoint.
pub const CHECKPOINT_TAG: &[u8] = b"keyfold/audit/checkpoint";
/// Version of the canonical checkpoint encoding.
pub const CHECKPOINT_VERSION: u16 = 1;
/// Longest accepted log id, in bytes.
pub const MAX_LOG_ID: usize = 256;

/// A tree head of one log at one moment.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Checkpoint {
    /// Identifier of the log (e.g. `coordinator` or `signer-3`).
    pub log_id: String,
    /// Number of entries covered.
    pub tree_size: u64,
    /// Merkle root of the first `tree_size` entries.
    #[serde(with = "hexser::h32")]
    pub root_hash: Hash,
    /// Time of the checkpoint in Unix milliseconds.
    pub time: i64,
}

impl Checkpoint {
    /// The canonical bytes that get signed (see `docs/audit-log.md`).
    pub fn canonical_bytes(&self) -> Vec<u8> {
        let mut w = Writer::with_capacity(96 + self.log_id.len());
        w.bytes(CHECKPOINT_TAG);
        w.u16(CHECKPOINT_VERSION);
        w.str(&self.log_id);
        w.u64(self.tree_size);
        w.raw(&self.root_hash);
        w.i64(self.time);
        w.into_bytes()
    }
}

/// A checkpoint with the signer's public key and Ed25519 signature.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SignedCheckpoint {
    /// The signed checkpoint.
    pub checkpoint: Checkpoint,
    /// Ed25519 public key of the signer.
    #[serde(with = "hexser::h32")]
    pub public_key: [u8; 32],
    /// Ed25519 signature over [`Checkpoint::canonical_bytes`].
    #[serde(with = "hexser::h64")]
    pub signature: [u8; 64],
}

/// Why a checkpoint could not be signed or did not verify.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum CheckpointError {
    /// The signer failed (e.g. the HSM refused or is unreachable).
    #[error("checkpoint signer failed: {0}")]
    Signer(String),
    /// The checkpoint's public key is not one of the trusted keys.
    #[error("checkpoint key {0} is not trusted")]
    UntrustedKey(String),
    /// The public key is not a valid Ed25519 point.
    #[error("checkpoint public key is invalid")]
    BadPublicKey,
    /// The signature does not verify.
    #[error("checkpoint signature does not verify")]
    BadSignature,
    /// The log id is too long.
    #[error("log id is longer than {MAX_LOG_ID} bytes")]
    LogIdTooLong,
}

/// Something that signs checkpoint bytes with an Ed25519 key.
pub trait CheckpointSigner {
    /// Signs `bytes` (canonical checkpoint bytes) and returns the signature.
    fn sign(&self, bytes: &[u8]) -> Result<[u8; 64], CheckpointError>;
    /// The Ed25519 public key that verifies this signer's signatures.
    fn public_key(&self) -> [u8; 32];
}

/// Software Ed25519 checkpoint key. The secret is zeroized on drop and
/// `Debug` prints only the public key.
pub struct Ed25519Signer {
    key: SigningKey,
}

impl Ed25519Signer {
    /// A new random key from the operating system's RNG.
    pub fn generate() -> Self {
        let mut seed = zeroize::Zeroizing::new([0u8; 32]);
        rand_core::RngCore::fill_bytes(&mut rand_core::OsRng, seed.as_mut());
        Self::from_seed(&seed)
    }

    /// The key with this 32-byte Ed25519 seed (secret key).
    pub fn from_seed(seed: &[u8; 32]) -> Self {
        Ed25519Signer {
            key: SigningKey::from_bytes(seed),
        }
    }
}

impl std::fmt::Debug for Ed25519Signer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Ed25519Signer")
            .field("public_key", &hex::encode(self.public_key()))
            .field("secret", &"<redacted>")
            .finish()
    }
}

impl CheckpointSigner for Ed25519Signer {
    fn sign(&self, bytes: &[u8]) -> Result<[u8; 64], CheckpointError> {
        Ok(self.key.sign(bytes).to_bytes())
    }

    fn public_key(&self) -> [u8; 32] {
        self.key.verifying_key().to_bytes()
    }
}

/// Signs `checkpoint` with `signer`.
pub fn sign_checkpoint(
    checkpoint: Checkpoint,
    signer: &dyn CheckpointSigner,
) -> Result<SignedCheckpoint, CheckpointError> {
    if checkpoint.log_id.len() > MAX_LOG_ID {
        return Err(CheckpointError::LogIdTooLong);
    }
    let signature = signer.sign(&checkpoint.canonical_bytes())?;
    Ok(SignedCheckpoint {
        checkpoint,
        public_key: signer.public_key(),
        signature,
    })
}

impl SignedCheckpoint {
    /// Checks that the key is in `trusted` and that the signature verifies
    /// (`verify_strict`: no small-order keys, canonical `S`).
    pub fn verify(&self, trusted: &[[u8; 32]]) -> Result<(), CheckpointError> {
        if self.checkpoint.log_id.len() > MAX_LOG_ID {
            return Err(CheckpointError::LogIdTooLong);
        }
        if !trusted.contains(&self.public_key) {
            return Err(CheckpointError::UntrustedKey(hex::encode(self.public_key)));
        }
        let vk = VerifyingKey::from_bytes(&self.public_key)
            .map_err(|_| CheckpointError::BadPublicKey)?;
        let sig = Signature::from_bytes(&self.signature);
        vk.verify_strict(&self.checkpoint.canonical_bytes(), &sig)
            .map_err(|_| CheckpointError::BadSignature)
    }

    /// The checkpoint's line in a checkpoints file: compact JSON and `\n`.
    pub fn to_json_line(&self) -> Vec<u8> {
        let mut v = serde_json::to_vec(self).unwrap_or_default();
        v.push(b'\n');
        v
    }
}
