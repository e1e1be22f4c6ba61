//! Cold wallet keys: generated inside the HSM, used there, never exported.
//!
//! [`ColdKeys`] generates, finds and lists them; a [`ColdKey`] gives its
//! public key and signs:
//!
//! * secp256k1 (`CKM_EC_KEY_PAIR_GEN`, curve OID 1.3.132.0.10): the message
//!   is hashed here ([`HashAlg::Sha256`] by default, [`HashAlg::Keccak256`]
//!   for Ethereum) and the digest signed with `CKM_ECDSA`. The token's raw
//!   `r || s` is normalized to low-S and verified with `k256` before it is
//!   returned. The public key is the 33-byte SEC1 compressed point, decoded
//!   from `CKA_EC_POINT` (a DER OCTET STRING around the 65-byte point).
//! * Ed25519 (`CKM_EC_EDWARDS_KEY_PAIR_GEN`, OID 1.3.101.112): the whole
//!   message is signed with `CKM_EDDSA` (PureEdDSA) and the signature verified
//!   with `ed25519-dalek`'s `verify_strict` before it is returned. The public
//!   key is the 32-byte encoding.
//!
//! Private keys are token objects, private, sensitive, non-extractable and
//! sign-only. The public and private key of a pair share their `CKA_LABEL`
//! and a `CKA_ID` tagged `kfc1` (see [`crate::keys`]); only keys with that
//! tag are cold keys.

use std::fmt;
use std::sync::Arc;

use cryptoki::mechanism::eddsa::{EddsaParams, EddsaSignatureScheme};
use cryptoki::mechanism::Mechanism;
use cryptoki::object::{Attribute, AttributeType, KeyType, ObjectClass};
use k256::ecdsa::signature::hazmat::PrehashVerifier;
use sha2::Digest as _;

use crate::error::{HsmError, KeyRole};
use crate::keys::{
    attr_id, attr_label, create_lock, decode_ec_point, new_id, validate_label, KeyProtection,
    KeyRef, TAG_COLD,
};
use crate::session::Hsm;

/// Largest message [`ColdKey::sign`] accepts, in bytes.
pub const MAX_SIGN_MESSAGE: usize = 1 << 20;

/// DER OID of secp256k1 (1.3.132.0.10), the `CKA_EC_PARAMS` of its keys.
const SECP256K1_PARAMS: &[u8] = &[0x06, 0x05, 0x2B, 0x81, 0x04, 0x00, 0x0A];
/// DER OID of Ed25519 (1.3.101.112).
const ED25519_OID_PARAMS: &[u8] = &[0x06, 0x03, 0x2B, 0x65, 0x70];
/// DER PrintableString "edwards25519", the older way to name the curve.
const ED25519_NAME_PARAMS: &[u8] = b"\x13\x0cedwards25519";

/// The curve of a cold key.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum ColdCurve {
    /// secp256k1 ECDSA (Bitcoin, Ethereum).
    Secp256k1,
    /// Ed25519 (Solana and others).
    Ed25519,
}

impl ColdCurve {
    /// A stable lowercase name (`secp256k1`, `ed25519`).
    pub fn as_str(self) -> &'static str {
        match self {
            ColdCurve::Secp256k1 => "secp256k1",
            ColdCurve::Ed25519 => "ed25519",
        }
    }

    fn key_type(self) -> KeyType {
        match self {
            ColdCurve::Secp256k1 => KeyType::EC,
            ColdCurve::Ed25519 => KeyType::EC_EDWARDS,
        }
    }

    fn params(self) -> &'static [u8] {
        match self {
            ColdCurve::Secp256k1 => SECP256K1_PARAMS,
            ColdCurve::Ed25519 => ED25519_OID_PARAMS,
        }
    }

    fn from_attrs(key_type: KeyType, params: &[u8]) -> Option<ColdCurve> {
        if key_type == KeyType::EC && params == SECP256K1_PARAMS {
            Some(ColdCurve::Secp256k1)
        } else if key_type == KeyType::EC_EDWARDS
            && (params == ED25519_OID_PARAMS || params == ED25519_NAME_PARAMS)
        {
            Some(ColdCurve::Ed25519)
        } else {
            None
        }
    }
}

impl fmt::Display for ColdCurve {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// The hash a secp256k1 message is signed under.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
#[non_exhaustive]
pub enum HashAlg {
    /// SHA-256 (Bitcoin-style; the default).
    #[default]
    Sha256,
    /// Keccak-256 (Ethereum).
    Keccak256,
}

impl HashAlg {
    /// The 32-byte digest of `message`.
    pub fn digest(self, message: &[u8]) -> [u8; 32] {
        match self {
            HashAlg::Sha256 => sha2::Sha256::digest(message).into(),
            HashAlg::Keccak256 => sha3::Keccak256::digest(message).into(),
        }
    }
}

/// A secp256k1 signature with its recovery id (as Ethereum needs).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RecoverableSignature {
    /// `r || s`, low-S, 64 bytes.
    pub signature: [u8; 64],
    /// Recovery id, 0 or 1 (add 27, or the EIP-155 offset, for Ethereum's `v`).
    pub recovery_id: u8,
}

/// The verifying half, decoded with independent implementations.
#[derive(Debug, Clone)]
enum PublicKey {
    Secp256k1(k256::ecdsa::VerifyingKey),
    Ed25519(ed25519_dalek::VerifyingKey),
}

/// An EC key pair on the token: the private key's reference and the decoded
/// public key. Shared by cold keys and the audit key.
#[derive(Debug)]
pub(crate) struct EcKey {
    pub(crate) key: KeyRef,
    pub(crate) curve: ColdCurve,
    public: PublicKey,
    pub(crate) public_bytes: Vec<u8>,
}

impl EcKey {
    /// Generates a key pair labelled `label` with a `CKA_ID` tagged `tag`.
    pub(crate) fn generate(
        hsm: &Hsm,
        role: KeyRole,
        tag: &[u8; 4],
        label: &str,
        curve: ColdCurve,
    ) -> Result<EcKey, HsmError> {
        validate_label(label)?;
        let _guard = create_lock();
        if KeyRef::label_in_use(hsm, label)? {
            return Err(HsmError::KeyExists {
                role,
                token: hsm.token_label().to_string(),
                label: label.to_string(),
            });
        }
        let id = new_id(tag)?;
        let label_attr = Attribute::Label(label.as_bytes().to_vec());
        let public_template = [
            Attribute::Class(ObjectClass::PUBLIC_KEY),
            Attribute::KeyType(curve.key_type()),
            Attribute::EcParams(curve.params().to_vec()),
            Attribute::Token(true),
            Attribute::Private(false),
            Attribute::Verify(true),
            Attribute::Encrypt(false),
            Attribute::Wrap(false),
            label_attr.clone(),
            Attribute::Id(id.clone()),
        ];
        let private_template = [
            Attribute::Class(ObjectClass::PRIVATE_KEY),
            Attribute::KeyType(curve.key_type()),
            Attribute::Token(true),
            Attribute::Private(true),
            Attribute::Sensitive(true),
            Attribute::Extractable(false),
            Attribute::Sign(true),
            Attribute::Decrypt(false),
            Attribute::Unwrap(false),
            Attribute::Derive(false),
            label_attr,
            Attribute::Id(id.clone()),
        ];
        let mechanism = match curve {
            ColdCurve::Secp256k1 => Mechanism::EccKeyPairGen,
            ColdCurve::Ed25519 => Mechanism::EccEdwardsKeyPairGen,
        };
        let (public, private) = hsm
            .with_session(|s| s.generate_key_pair(&mechanism, &public_template, &private_template))?
            .map_err(|e| hsm.ck_error(format!("generating {curve} {role} `{label}`"), &e))?;
        let point = hsm
            .with_session(|s| s.get_attributes(public, &[AttributeType::EcPoint]))?
            .map_err(|e| hsm.ck_error(format!("reading the public key of {role} `{label}`"), &e))?;
        let key = KeyRef::created(hsm, role, ObjectClass::PRIVATE_KEY, label, id, private);
        let key = EcKey::with_point(key, curve, &point)?;
        tracing::info!(
            token = %hsm.token_label(),
            key = %label,
            curve = %curve,
            public_key = %hex::encode(&key.public_bytes),
            "generated {role} in the HSM"
        );
        Ok(key)
    }

    /// Finds the key pair labelled `label` whose id carries `tag`.
    pub(crate) fn find(
        hsm: &Hsm,
        role: KeyRole,
        tag: &[u8; 4],
        label: &str,
    ) -> Result<Option<EcKey>, HsmError> {
        match KeyRef::lookup(hsm, role, ObjectClass::PRIVATE_KEY, label, Some(tag), None)? {
            Some(key) => EcKey::from_private(key).map(Some),
            None => Ok(None),
        }
    }

    /// Completes a private key reference: its curve, then its public key
    /// (the public key object with the same `CKA_ID`).
    fn from_private(key: KeyRef) -> Result<EcKey, HsmError> {
        let hsm = key.hsm.clone();
        let unusable = |reason: String| HsmError::KeyUnusable {
            role: key.role,
            token: hsm.token_label().to_string(),
            label: key.label.clone(),
            reason,
        };
        let attrs = key
            .with_key(|s, h| {
                s.get_attributes(h, &[AttributeType::KeyType, AttributeType::EcParams])
            })?
            .map_err(|e| hsm.ck_error(format!("reading {} `{}`", key.role, key.label), &e))?;
        let key_type = crate::keys::attr_key_type(&attrs);
        let params = attrs.iter().find_map(|a| match a {
            Attribute::EcParams(p) => Some(p.as_slice()),
            _ => None,
        });
        let curve = match (key_type, params) {
            (Some(kt), Some(p)) => ColdCurve::from_attrs(kt, p),
            _ => None,
        }
        .ok_or_else(|| unusable("not a secp256k1 or Ed25519 key".into()))?;
        let id = key.id.clone();
        let point = hsm
            .with_session(|s| {
                let publics = s.find_objects(&[
                    Attribute::Class(ObjectClass::PUBLIC_KEY),
                    Attribute::Id(id.clone()),
                ])?;
                match publics.as_slice() {
                    [h] => s.get_attributes(*h, &[AttributeType::EcPoint]).map(Some),
                    _ => Ok(None),
                }
            })?
            .map_err(|e| {
                hsm.ck_error(
                    format!("reading the public key of {} `{}`", key.role, key.label),
                    &e,
                )
            })?
            .ok_or_else(|| {
                unusable("its public key object (same CKA_ID) is missing or duplicated".into())
            })?;
        EcKey::with_point(key, curve, &point)
    }

    fn with_point(key: KeyRef, curve: ColdCurve, attrs: &[Attribute]) -> Result<EcKey, HsmError> {
        let unusable = |reason: String| HsmError::KeyUnusable {
            role: key.role,
            token: key.hsm.token_label().to_string(),
            label: key.label.clone(),
            reason,
        };
        let raw = attrs
            .iter()
            .find_map(|a| match a {
                Attribute::EcPoint(p) => Some(p.as_slice()),
                _ => None,
            })
            .ok_or_else(|| unusable("the token returned no CKA_EC_POINT".into()))?;
        let (public, public_bytes) = match curve {
            ColdCurve::Secp256k1 => {
                let point = decode_ec_point(raw, &[65, 33]).ok_or_else(|| {
                    unusable(format!(
                        "CKA_EC_POINT of {} bytes is not a secp256k1 point",
                        raw.len()
                    ))
                })?;
                let vk = k256::ecdsa::VerifyingKey::from_sec1_bytes(point)
                    .map_err(|_| unusable("CKA_EC_POINT is not on secp256k1".into()))?;
                let compressed = vk.to_encoded_point(true).as_bytes().to_vec();
                (PublicKey::Secp256k1(vk), compressed)
            }
            ColdCurve::Ed25519 => {
                let point = decode_ec_point(raw, &[32]).ok_or_else(|| {
                    unusable(format!(
                        "CKA_EC_POINT of {} bytes is not an Ed25519 key",
                        raw.len()
                    ))
                })?;
                let bytes: [u8; 32] = point
                    .try_into()
                    .map_err(|_| unusable("Ed25519 key is not 32 bytes".into()))?;
                let vk = ed25519_dalek::VerifyingKey::from_bytes(&bytes)
                    .map_err(|_| unusable("CKA_EC_POINT is not a valid Ed25519 point".into()))?;
                if vk.is_weak() {
                    return Err(unusable("the Ed25519 public key has small order".into()));
                }
                (PublicKey::Ed25519(vk), bytes.to_vec())
            }
        };
        Ok(EcKey {
            key,
            curve,
            public,
            public_bytes,
        })
    }

    fn check_len(message: &[u8]) -> Result<(), HsmError> {
        if message.len() > MAX_SIGN_MESSAGE {
            return Err(HsmError::TooLarge {
                what: "message to sign",
                len: message.len(),
                max: MAX_SIGN_MESSAGE,
            });
        }
        Ok(())
    }

    fn sign_failed(&self, reason: String) -> HsmError {
        HsmError::SignatureCheck {
            token: self.key.hsm.token_label().to_string(),
            label: self.key.label.clone(),
            reason,
        }
    }

    fn unsupported(&self, reason: &str) -> HsmError {
        HsmError::Unsupported {
            label: self.key.label.clone(),
            reason: reason.to_string(),
        }
    }

    /// Ed25519 signature of `message`, verified with `verify_strict`.
    pub(crate) fn sign_ed25519(&self, message: &[u8]) -> Result<[u8; 64], HsmError> {
        Self::check_len(message)?;
        let PublicKey::Ed25519(vk) = &self.public else {
            return Err(self.unsupported("it is a secp256k1 key, not Ed25519"));
        };
        let raw = self
            .key
            .with_key(|s, h| {
                let mechanism = Mechanism::Eddsa(EddsaParams::new(EddsaSignatureScheme::Pure));
                s.sign(&mechanism, h, message)
            })?
            .map_err(|e| {
                self.key.hsm.ck_error(
                    format!("signing with {} `{}`", self.key.role, self.key.label),
                    &e,
                )
            })?;
        let bytes: [u8; 64] = raw.as_slice().try_into().map_err(|_| {
            self.sign_failed(format!("the token returned {} bytes, not 64", raw.len()))
        })?;
        let sig = ed25519_dalek::Signature::from_bytes(&bytes);
        vk.verify_strict(message, &sig)
            .map_err(|e| self.sign_failed(format!("ed25519-dalek verify_strict: {e}")))?;
        Ok(bytes)
    }

    /// Low-S secp256k1 signature of `digest`, verified with `k256`.
    pub(crate) fn sign_secp256k1_digest(
        &self,
        digest: &[u8; 32],
    ) -> Result<(k256::ecdsa::Signature, k256::ecdsa::VerifyingKey), HsmError> {
        let PublicKey::Secp256k1(vk) = &self.public else {
            return Err(self.unsupported("it is an Ed25519 key, not secp256k1"));
        };
        let raw = self
            .key
            .with_key(|s, h| s.sign(&Mechanism::Ecdsa, h, digest))?
            .map_err(|e| {
                self.key.hsm.ck_error(
                    format!("signing with {} `{}`", self.key.role, self.key.label),
                    &e,
                )
            })?;
        let sig = k256::ecdsa::Signature::from_slice(&raw).map_err(|_| {
            self.sign_failed(format!(
                "the token returned {} bytes that are not r || s",
                raw.len()
            ))
        })?;
        let sig = sig.normalize_s().unwrap_or(sig);
        vk.verify_prehash(digest, &sig)
            .map_err(|e| self.sign_failed(format!("k256 verify: {e}")))?;
        Ok((sig, *vk))
    }
}

/// Generates, finds and lists cold keys on one token.
#[derive(Debug, Clone)]
pub struct ColdKeys {
    hsm: Hsm,
}

impl ColdKeys {
    /// Cold keys on `hsm`'s token.
    pub fn new(hsm: &Hsm) -> ColdKeys {
        ColdKeys { hsm: hsm.clone() }
    }

    /// Generates a new key pair labelled `label` inside the HSM
    /// ([`HsmError::KeyExists`] if any object carries the label).
    pub fn generate(&self, label: &str, curve: ColdCurve) -> Result<ColdKey, HsmError> {
        EcKey::generate(&self.hsm, KeyRole::Cold, TAG_COLD, label, curve).map(ColdKey::from_ec)
    }

    /// The cold key labelled `label` ([`HsmError::KeyNotFound`] if none).
    pub fn find(&self, label: &str) -> Result<ColdKey, HsmError> {
        EcKey::find(&self.hsm, KeyRole::Cold, TAG_COLD, label)?
            .map(ColdKey::from_ec)
            .ok_or_else(|| HsmError::KeyNotFound {
                role: KeyRole::Cold,
                token: self.hsm.token_label().to_string(),
                label: label.to_string(),
            })
    }

    /// All cold keys on the token, sorted by label.
    pub fn list(&self) -> Result<Vec<ColdKey>, HsmError> {
        let hsm = &self.hsm;
        let found = hsm
            .with_session(|s| {
                let handles = s.find_objects(&[Attribute::Class(ObjectClass::PRIVATE_KEY)])?;
                let mut out = Vec::new();
                for h in handles {
                    let attrs = s.get_attributes(h, &[AttributeType::Id, AttributeType::Label])?;
                    out.push((h, attrs));
                }
                Ok(out)
            })?
            .map_err(|e| hsm.ck_error("listing cold keys", &e))?;
        let mut keys = Vec::new();
        for (handle, attrs) in found {
            let Some(id) = attr_id(&attrs).filter(|id| id.starts_with(TAG_COLD)) else {
                continue;
            };
            let label = attr_label(&attrs).unwrap_or_default();
            let key = KeyRef::created(
                hsm,
                KeyRole::Cold,
                ObjectClass::PRIVATE_KEY,
                &label,
                id.to_vec(),
                handle,
            );
            keys.push(ColdKey::from_ec(EcKey::from_private(key)?));
        }
        keys.sort_by(|a, b| a.label().cmp(b.label()));
        Ok(keys)
    }
}

/// A cold wallet key pair inside the HSM. Cheap to clone, `Send + Sync`.
#[derive(Clone)]
pub struct ColdKey {
    inner: Arc<EcKey>,
}

impl fmt::Debug for ColdKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ColdKey")
            .field("label", &self.label())
            .field("curve", &self.curve())
            .field("public_key", &self.public_key_hex())
            .field("token", &self.inner.key.hsm.token_label())
            .finish()
    }
}

impl ColdKey {
    fn from_ec(key: EcKey) -> ColdKey {
        ColdKey {
            inner: Arc::new(key),
        }
    }

    /// The key's label.
    pub fn label(&self) -> &str {
        &self.inner.key.label
    }

    /// The key's curve.
    pub fn curve(&self) -> ColdCurve {
        self.inner.curve
    }

    /// The public key: 33-byte SEC1 compressed point (secp256k1) or 32-byte
    /// Ed25519 key.
    pub fn public_key(&self) -> &[u8] {
        &self.inner.public_bytes
    }

    /// [`ColdKey::public_key`] in lowercase hex.
    pub fn public_key_hex(&self) -> String {
        hex::encode(&self.inner.public_bytes)
    }

    /// The private key's protection attributes as the token reports them.
    pub fn protection(&self) -> Result<KeyProtection, HsmError> {
        self.inner.key.protection()
    }

    /// Signs `message`: secp256k1 over its SHA-256 digest (64-byte low-S
    /// `r || s`), Ed25519 over the whole message (64 bytes). The signature
    /// is verified with an independent implementation before it is
    /// returned.
    pub fn sign(&self, message: &[u8]) -> Result<[u8; 64], HsmError> {
        match self.inner.curve {
            ColdCurve::Secp256k1 => self.sign_with_hash(message, HashAlg::Sha256),
            ColdCurve::Ed25519 => self.inner.sign_ed25519(message),
        }
    }

    /// secp256k1 only: signs the `hash` digest of `message`; 64-byte low-S
    /// `r || s`, verified with `k256`.
    pub fn sign_with_hash(&self, message: &[u8], hash: HashAlg) -> Result<[u8; 64], HsmError> {
        EcKey::check_len(message)?;
        let (sig, _) = self.inner.sign_secp256k1_digest(&hash.digest(message))?;
        Ok(sig.to_bytes().into())
    }

    /// secp256k1 only: like [`ColdKey::sign_with_hash`], with the recovery
    /// id that recovers this key from the signature and digest.
    pub fn sign_recoverable(
        &self,
        message: &[u8],
        hash: HashAlg,
    ) -> Result<RecoverableSignature, HsmError> {
        EcKey::check_len(message)?;
        let digest = hash.digest(message);
        let (sig, vk) = self.inner.sign_secp256k1_digest(&digest)?;
        let recovery_id = k256::ecdsa::RecoveryId::trial_recovery_from_prehash(&vk, &digest, &sig)
            .map_err(|e| {
                self.inner
                    .sign_failed(format!("no recovery id recovers the key: {e}"))
            })?;
        Ok(RecoverableSignature {
            signature: sig.to_bytes().into(),
            recovery_id: recovery_id.to_byte(),
        })
    }
}
