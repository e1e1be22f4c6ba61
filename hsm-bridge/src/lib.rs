//! PKCS#11 bridge to the HSM, Keyfold's cold tier and root of trust for data
//! at rest: sealing of signer secrets, cold wallet keys that never leave the
//! HSM, and the audit log's checkpoint key.
//!
//! * [`HsmConfig`] names the PKCS#11 module, the token label and where the
//!   PIN comes from ([`PinSource`]: an environment variable or a file, never
//!   a command line).
//! * [`Hsm`] is the open, logged-in token: one PKCS#11 context per module per
//!   process, a session pool, `Send + Sync`, cheap to clone.
//! * [`HsmSealer`] implements [`keyfold_store::Sealer`] with AES-256-GCM
//!   under a non-extractable token key.
//! * [`ColdKeys`] / [`ColdKey`]: secp256k1 and Ed25519 keys generated and
//!   used inside the HSM; signatures are verified with `k256` /
//!   `ed25519-dalek` before they are returned.
//! * [`HsmAuditSigner`] implements [`keyfold_audit::CheckpointSigner`].
//! * [`backup`]: a signer's shares exported encrypted to an offline recovery
//!   key (age X25519) and restored into a fresh node with a fresh token.
//!
//! Tested against SoftHSM2 (`/usr/lib/softhsm/libsofthsm2.so`); see
//! `testnets/softhsm/setup.sh` for a token, and the `test-support` feature
//! for the test helper.
#![forbid(unsafe_code)]
#![deny(missing_docs)]

pub mod audit_key;
pub mod backup;
pub mod cold;
pub mod config;
pub mod error;
pub mod keys;
pub mod seal;
pub mod session;
mod slots;
#[cfg(feature = "test-support")]
pub mod testing;

pub use audit_key::{HsmAuditSigner, DEFAULT_AUDIT_KEY_LABEL};
pub use backup::{
    recovery_keygen, BackupContents, BackupError, DecryptedBackup, RecoveryKey, RestoreReport,
};
pub use cold::{ColdCurve, ColdKey, ColdKeys, HashAlg, RecoverableSignature, MAX_SIGN_MESSAGE};
pub use config::{HsmConfig, PinSource, SOFTHSM2_MODULE};
pub use error::{HsmError, KeyRole};
pub use keys::KeyProtection;
pub use seal::{HsmSealer, DEFAULT_SEAL_KEY_LABEL, HSM_SEALED_FORMAT_V1, HSM_SEAL_OVERHEAD};
pub use session::Hsm;
