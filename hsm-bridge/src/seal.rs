//! [`HsmSealer`]: a [`keyfold_store::Sealer`] whose AES-256-GCM key lives in
//! the HSM and never leaves it.
//!
//! The key is a token object (`CKA_TOKEN`) labelled `keyfold-seal` by default
//! ([`DEFAULT_SEAL_KEY_LABEL`]), generated on the token with
//! `CKA_SENSITIVE = true`, `CKA_EXTRACTABLE = false`, usable only to encrypt
//! and decrypt. Encryption and decryption run inside the HSM
//! (`CKM_AES_GCM`, 128-bit tag); the authenticated data is
//! [`Aad::canonical_bytes`], so a blob moved to another node, object type,
//! record or version fails to open with [`SealError::Tampered`].
//!
//! # Sealed format
//!
//! ```text
//! byte 0        format version, 0x81 (HSM AES-256-GCM v1)
//! bytes 1..13   random 12-byte GCM IV (operating system RNG)
//! bytes 13..    ciphertext, then the 16-byte GCM tag
//! ```
//!
//! The version byte differs from the software sealer's (`0x01`), so a blob
//! sealed by the other backend is reported as [`SealError::Malformed`] with
//! that explanation instead of a bare authentication failure.
//!
//! Random 96-bit IVs keep the IV-collision probability below 2^-32 for up to
//! 2^32 blobs under one key, far beyond what a signer node seals.
//!
//! # Failures
//!
//! * a modified, truncated-but-long-enough or misplaced blob:
//!   [`SealError::Tampered`] (SoftHSM2 answers `CKR_GENERAL_ERROR` to a bad
//!   tag, other modules `CKR_ENCRYPTED_DATA_INVALID`: both map here);
//! * too short, too long, unknown version: [`SealError::Malformed`];
//! * the key deleted from the token under a running node:
//!   [`SealError::Backend`] saying that the sealing key is missing from the
//!   token and that shares sealed under it cannot be opened. The sealer
//!   looks the key up by its `CKA_ID` before every seal, so it never seals
//!   under a key that is no longer stored on the token; an open through a
//!   handle the token reports stale looks the key up again.
//!
//! Plaintexts returned by [`Sealer::open`] are [`Zeroizing`].

use std::fmt;

use cryptoki::error::{Error as CkError, RvError};
use cryptoki::mechanism::aead::GcmParams;
use cryptoki::mechanism::Mechanism;
use cryptoki::object::{Attribute, AttributeType, KeyType, ObjectClass};
use keyfold_store::{Aad, SealError, Sealer, Zeroizing, MAX_SECRET_LEN};
use rand_core::{OsRng, RngCore};

use crate::error::{HsmError, KeyRole};
use crate::keys::{create_lock, new_id, validate_label, KeyProtection, KeyRef, TAG_SEAL};
use crate::session::Hsm;

/// Default label of the sealing key.
pub const DEFAULT_SEAL_KEY_LABEL: &str = "keyfold-seal";
/// Format version byte of [`HsmSealer`] blobs.
pub const HSM_SEALED_FORMAT_V1: u8 = 0x81;
/// Format version byte of the software sealer (for error messages).
const SOFTWARE_FORMAT_V1: u8 = 0x01;
const IV_LEN: usize = 12;
const TAG_LEN: usize = 16;
const HEADER_LEN: usize = 1 + IV_LEN;
/// Bytes an [`HsmSealer`] blob adds to its plaintext.
pub const HSM_SEAL_OVERHEAD: usize = HEADER_LEN + TAG_LEN;

/// Seals secrets with an AES-256-GCM key held by the HSM.
///
/// `Send + Sync`; share it by reference or `Arc` between threads, each
/// operation takes its own session from the [`Hsm`]'s pool.
pub struct HsmSealer {
    key: KeyRef,
    description: String,
}

impl fmt::Debug for HsmSealer {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("HsmSealer")
            .field("key_label", &self.key.label)
            .field("token", &self.key.hsm.token_label())
            .finish()
    }
}

impl HsmSealer {
    /// Opens the existing sealing key labelled `label`
    /// ([`HsmError::KeyNotFound`] if there is none).
    ///
    /// Refuses a key that is not AES-256, not sensitive or extractable.
    pub fn open(hsm: &Hsm, label: &str) -> Result<HsmSealer, HsmError> {
        match Self::lookup(hsm, label)? {
            Some(sealer) => Ok(sealer),
            None => Err(HsmError::KeyNotFound {
                role: KeyRole::Sealing,
                token: hsm.token_label().to_string(),
                label: label.to_string(),
            }),
        }
    }

    /// Generates a new sealing key labelled `label` on the token
    /// ([`HsmError::KeyExists`] if any object already carries the label).
    pub fn create(hsm: &Hsm, label: &str) -> Result<HsmSealer, HsmError> {
        validate_label(label)?;
        let _guard = create_lock();
        Self::create_locked(hsm, label)
    }

    /// Opens the sealing key labelled `label`, generating it first if the
    /// token has none. Use [`HsmSealer::open`] on nodes that already sealed
    /// data: a new key cannot open what an old one sealed.
    pub fn open_or_create(hsm: &Hsm, label: &str) -> Result<HsmSealer, HsmError> {
        validate_label(label)?;
        let _guard = create_lock();
        match Self::lookup(hsm, label)? {
            Some(sealer) => Ok(sealer),
            None => Self::create_locked(hsm, label),
        }
    }

    fn lookup(hsm: &Hsm, label: &str) -> Result<Option<HsmSealer>, HsmError> {
        let Some(key) = KeyRef::lookup(
            hsm,
            KeyRole::Sealing,
            ObjectClass::SECRET_KEY,
            label,
            None,
            Some(KeyType::AES),
        )?
        else {
            return Ok(None);
        };
        let unusable = |reason: &str| HsmError::KeyUnusable {
            role: KeyRole::Sealing,
            token: hsm.token_label().to_string(),
            label: label.to_string(),
            reason: reason.to_string(),
        };
        let value_len = key
            .with_key(|s, h| s.get_attributes(h, &[AttributeType::ValueLen]))?
            .map_err(|e| {
                hsm.ck_error(format!("reading the length of sealing key `{label}`"), &e)
            })?;
        let is_256 = value_len
            .iter()
            .any(|a| matches!(a, Attribute::ValueLen(len) if u64::from(*len) == 32));
        if !is_256 {
            return Err(unusable("not an AES-256 key (CKA_VALUE_LEN is not 32)"));
        }
        let protection = key.protection()?;
        if !protection.token {
            return Err(unusable("a session object, not stored on the token"));
        }
        if !protection.sensitive || protection.extractable {
            return Err(unusable(
                "not sensitive or extractable: its value could leave the HSM",
            ));
        }
        Ok(Some(Self::from_key(key)))
    }

    fn create_locked(hsm: &Hsm, label: &str) -> Result<HsmSealer, HsmError> {
        if KeyRef::label_in_use(hsm, label)? {
            return Err(HsmError::KeyExists {
                role: KeyRole::Sealing,
                token: hsm.token_label().to_string(),
                label: label.to_string(),
            });
        }
        let id = new_id(TAG_SEAL)?;
        let template = [
            Attribute::Class(ObjectClass::SECRET_KEY),
            Attribute::KeyType(KeyType::AES),
            Attribute::ValueLen(32.into()),
            Attribute::Token(true),
            Attribute::Private(true),
            Attribute::Sensitive(true),
            Attribute::Extractable(false),
            Attribute::Encrypt(true),
            Attribute::Decrypt(true),
            Attribute::Wrap(false),
            Attribute::Unwrap(false),
            Attribute::Sign(false),
            Attribute::Verify(false),
            Attribute::Derive(false),
            Attribute::Label(label.as_bytes().to_vec()),
            Attribute::Id(id.clone()),
        ];
        let handle = hsm
            .with_session(|s| s.generate_key(&Mechanism::AesKeyGen, &template))?
            .map_err(|e| hsm.ck_error(format!("generating sealing key `{label}`"), &e))?;
        tracing::info!(token = %hsm.token_label(), key = %label, "created HSM sealing key");
        Ok(Self::from_key(KeyRef::created(
            hsm,
            KeyRole::Sealing,
            ObjectClass::SECRET_KEY,
            label,
            id,
            handle,
        )))
    }

    fn from_key(key: KeyRef) -> HsmSealer {
        let description = format!(
            "PKCS#11 AES-256-GCM key `{}` on token `{}` (module {})",
            key.label,
            key.hsm.token_label(),
            key.hsm.module().display()
        );
        HsmSealer { key, description }
    }

    /// The sealing key's label.
    pub fn key_label(&self) -> &str {
        &self.key.label
    }

    /// The token the key lives on.
    pub fn hsm(&self) -> &Hsm {
        &self.key.hsm
    }

    /// The key's protection attributes as the token reports them.
    pub fn protection(&self) -> Result<KeyProtection, HsmError> {
        self.key.protection()
    }

    /// Checks that the sealing key is still on the token (health check).
    pub fn check(&self) -> Result<(), HsmError> {
        self.key.check_present()
    }

    fn backend(&self, e: &HsmError) -> SealError {
        SealError::Backend {
            backend: self.describe(),
            reason: e.to_string(),
        }
    }

    /// Runs one AES-GCM operation under the key. Before encrypting, makes
    /// sure the key is still stored on the token.
    fn gcm(
        &self,
        iv: [u8; IV_LEN],
        aad: &[u8],
        encrypt: bool,
        input: &[u8],
    ) -> Result<Result<Vec<u8>, CkError>, HsmError> {
        // A module may keep a deleted key usable through an open handle:
        // never seal under a key the token no longer stores (data sealed
        // now could never be opened after a restart). Opening needs no such
        // check: a stale handle is reported by the token and looked up
        // again, and a successful open is harmless. The lookup costs about
        // 18 us per seal on SoftHSM2 (seal of 2 KB: 36 us, open: 18 us).
        if encrypt {
            self.key.check_present()?;
        }
        self.key.with_key(|s, h| {
            let mut iv = iv;
            let params = GcmParams::new(&mut iv, aad, 128.into())?;
            let mechanism = Mechanism::AesGcm(params);
            if encrypt {
                s.encrypt(&mechanism, h, input)
            } else {
                s.decrypt(&mechanism, h, input)
            }
        })
    }
}

impl Sealer for HsmSealer {
    fn seal(&self, aad: &Aad, plaintext: &[u8]) -> Result<Vec<u8>, SealError> {
        aad.check_plaintext_len(plaintext.len())?;
        let mut iv = [0u8; IV_LEN];
        OsRng.try_fill_bytes(&mut iv).map_err(|e| SealError::Rng {
            reason: e.to_string(),
        })?;
        let sealed = self
            .gcm(iv, &aad.canonical_bytes(), true, plaintext)
            .map_err(|e| self.backend(&e))?
            .map_err(|e| {
                let op = format!("sealing {} `{}`", aad.object, aad.id);
                self.backend(&self.key.hsm.ck_error(op, &e))
            })?;
        if sealed.len() != plaintext.len() + TAG_LEN {
            return Err(SealError::Backend {
                backend: self.describe(),
                reason: format!(
                    "sealing {} `{}`: the token returned {} bytes for {} bytes of plaintext",
                    aad.object,
                    aad.id,
                    sealed.len(),
                    plaintext.len()
                ),
            });
        }
        let mut out = Vec::with_capacity(HEADER_LEN + sealed.len());
        out.push(HSM_SEALED_FORMAT_V1);
        out.extend_from_slice(&iv);
        out.extend_from_slice(&sealed);
        Ok(out)
    }

    fn open(&self, aad: &Aad, sealed: &[u8]) -> Result<Zeroizing<Vec<u8>>, SealError> {
        let malformed = |reason: String| SealError::Malformed {
            object: aad.object,
            id: aad.id.clone(),
            reason,
        };
        let Some((&version, rest)) = sealed.split_first() else {
            return Err(malformed("empty".into()));
        };
        match version {
            HSM_SEALED_FORMAT_V1 => {}
            SOFTWARE_FORMAT_V1 => {
                return Err(malformed(
                    "sealed by the software sealer (format 0x01), not by the HSM: the node's \
                     sealer was switched; migrate the store to the HSM sealer"
                        .into(),
                ))
            }
            other => {
                return Err(malformed(format!(
                    "unknown sealed format version 0x{other:02x} (expected 0x{HSM_SEALED_FORMAT_V1:02x})"
                )))
            }
        }
        if sealed.len() < HSM_SEAL_OVERHEAD {
            return Err(malformed(format!(
                "truncated: {} bytes, at least {HSM_SEAL_OVERHEAD} expected",
                sealed.len()
            )));
        }
        if sealed.len() > MAX_SECRET_LEN + HSM_SEAL_OVERHEAD {
            return Err(malformed(format!("{} bytes is too large", sealed.len())));
        }
        let (iv, ciphertext) = rest.split_at(IV_LEN);
        let Ok(iv) = <[u8; IV_LEN]>::try_from(iv) else {
            return Err(malformed("bad header".into()));
        };
        let result = self
            .gcm(iv, &aad.canonical_bytes(), false, ciphertext)
            .map_err(|e| self.backend(&e))?;
        match result {
            Ok(plaintext) => {
                let plaintext = Zeroizing::new(plaintext);
                if plaintext.len() + HSM_SEAL_OVERHEAD != sealed.len() {
                    return Err(SealError::Backend {
                        backend: self.describe(),
                        reason: format!(
                            "opening {} `{}`: the token returned a plaintext of unexpected length",
                            aad.object, aad.id
                        ),
                    });
                }
                Ok(plaintext)
            }
            Err(CkError::Pkcs11(
                RvError::GeneralError
                | RvError::EncryptedDataInvalid
                | RvError::EncryptedDataLenRange
                | RvError::DataInvalid
                | RvError::DataLenRange,
                _,
            )) => Err(SealError::Tampered {
                object: aad.object,
                id: aad.id.clone(),
            }),
            Err(e) => {
                let op = format!("opening {} `{}`", aad.object, aad.id);
                Err(self.backend(&self.key.hsm.ck_error(op, &e)))
            }
        }
    }

    fn describe(&self) -> String {
        self.description.clone()
    }
}
