//! Threshold Ed25519 with FROST (`givre`): key generation and interactive signing.
//!
//! Key generation is cggmp21's UC-secure DKG (re-exported by `givre`); signing is
//! FROST's two rounds. Signatures are plain Ed25519 and pass `ed25519-dalek`'s
//! `verify_strict`, which [`Signature::verify`] runs before anything is returned.

use std::fmt;

use givre::ciphersuite::{Ciphersuite, Ed25519};
use round_based::{Delivery, MpcParty, PartyIndex};
use serde::{Deserialize, Serialize};
use sha2::Sha256;
use tracing::Instrument;

use crate::codec::{self, ObjectKind};
use crate::delivery::{self, Envelope};
use crate::error::{check_session, from_protocol};
use crate::{KeyId, MpcError, ProtocolKind, SessionDescriptor, Threshold};

const VERSION: u32 = 1;

/// The curve (edwards25519).
pub type Curve = givre::generic_ec::curves::Ed25519;
/// Message of key generation.
pub type KeygenMsg = givre::keygen::msg::threshold::Msg<
    Curve,
    givre::keygen::security_level::SecurityLevel128,
    Sha256,
>;
/// Message of signing.
pub type SignMsg = givre::signing::full_signing::Msg<Curve>;

/// What anyone may know about a threshold Ed25519 key.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PublicKeyInfo {
    /// The key id.
    pub key_id: KeyId,
    /// Its threshold.
    pub threshold: Threshold,
    /// The 32-byte Ed25519 public key.
    #[serde(with = "hex::serde")]
    pub public_key: [u8; 32],
}

/// One party's share of a threshold Ed25519 key (secret; the scalar is a
/// zeroize-on-drop `SecretScalar`; `Debug` prints only public metadata).
#[derive(Clone, Serialize, Deserialize)]
pub struct KeyShare {
    key_id: KeyId,
    threshold: Threshold,
    inner: givre::KeyShare<Curve>,
}

impl KeyShare {
    /// The key id.
    pub fn key_id(&self) -> KeyId {
        self.key_id
    }

    /// This party's keygen index.
    pub fn i(&self) -> PartyIndex {
        self.inner.i
    }

    /// The key's threshold.
    pub fn threshold(&self) -> Threshold {
        self.threshold
    }

    /// The 32-byte Ed25519 public key.
    pub fn public_key(&self) -> [u8; 32] {
        let pk = Ed25519::normalize_point(self.inner.shared_public_key);
        let bytes = Ed25519::serialize_normalized_point(&pk);
        let mut out = [0u8; 32];
        out.copy_from_slice(bytes.as_ref());
        out
    }

    /// Public information about the key.
    pub fn public_info(&self) -> PublicKeyInfo {
        PublicKeyInfo {
            key_id: self.key_id,
            threshold: self.threshold,
            public_key: self.public_key(),
        }
    }

    /// Versioned, checksummed encoding (plaintext secret: seal it before storing).
    pub fn to_bytes(&self) -> Result<zeroize::Zeroizing<Vec<u8>>, MpcError> {
        codec::encode(ObjectKind::EddsaKeyShare, VERSION, self)
    }

    /// Loads a share and validates it (checksum, version, `givre`'s consistency
    /// checks on deserialization, our threshold bounds).
    pub fn from_bytes(bytes: &[u8]) -> Result<Self, MpcError> {
        let share: Self = codec::decode(ObjectKind::EddsaKeyShare, VERSION, bytes)?;
        let n = share.inner.n();
        let t = share.inner.min_signers();
        if (t, n) != (share.threshold.t(), share.threshold.n()) {
            return Err(MpcError::Decode {
                what: "Ed25519 key share",
                reason: format!(
                    "header says {} but the share is {t}-of-{n}",
                    share.threshold
                ),
            });
        }
        Ok(share)
    }
}

impl fmt::Debug for KeyShare {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("eddsa::KeyShare")
            .field("key_id", &self.key_id)
            .field("i", &self.i())
            .field("threshold", &self.threshold)
            .field("public_key", &hex::encode(self.public_key()))
            .field("secret", &"<redacted>")
            .finish()
    }
}

/// A 64-byte Ed25519 signature (`R || s`).
#[derive(Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Signature(#[serde(with = "hex::serde")] [u8; 64]);

impl Signature {
    /// Wraps 64 bytes received from elsewhere; check them with
    /// [`Signature::verify`] before trusting them.
    pub fn from_bytes(bytes: [u8; 64]) -> Self {
        Self(bytes)
    }

    /// The 64 bytes.
    pub fn to_bytes(&self) -> [u8; 64] {
        self.0
    }

    /// Verifies with `ed25519-dalek`'s `verify_strict` (independent of `givre`).
    pub fn verify(&self, public_key: &[u8; 32], message: &[u8]) -> Result<(), String> {
        let vk = ed25519_dalek::VerifyingKey::from_bytes(public_key)
            .map_err(|e| format!("public key is not an Ed25519 point: {e}"))?;
        let sig = ed25519_dalek::Signature::from_bytes(&self.0);
        vk.verify_strict(message, &sig)
            .map_err(|_| "signature does not verify under the public key".to_string())
    }
}

impl fmt::Debug for Signature {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Signature({})", hex::encode(self.0))
    }
}

/// Runs FROST key generation as party `i` of `session` (protocol
/// [`ProtocolKind::EddsaKeygen`], all `n` parties, key id = the new key's id).
pub async fn keygen<D>(
    session: &SessionDescriptor,
    i: PartyIndex,
    delivery: D,
) -> Result<KeyShare, MpcError>
where
    D: Delivery<Envelope<KeygenMsg>>,
    D::Receive: Send + 'static,
    D::Send: Send + 'static,
{
    let threshold = session.threshold();
    check_session(
        session,
        ProtocolKind::EddsaKeygen,
        session.key_id(),
        threshold,
    )?;
    let n = threshold.n();
    if i >= n {
        return Err(MpcError::UnknownParty { party: i, n });
    }
    let id = session.id();
    let span = tracing::info_span!("eddsa_keygen", session = %id, key = %session.key_id(), party = i, %threshold);
    let party = MpcParty::connected(delivery::bind(session.clone(), delivery));
    let eid = givre::keygen::ExecutionId::new(id.as_bytes());
    let inner = givre::keygen::<Curve>(eid, i, n)
        .set_threshold(threshold.t())
        .start(&mut rand_core::OsRng, party)
        .instrument(span)
        .await
        .map_err(|e| from_protocol(session, &e))?;
    Ok(KeyShare {
        key_id: session.key_id(),
        threshold,
        inner,
    })
}

/// Signs `message` as this share's party in `session` (protocol
/// [`ProtocolKind::EddsaSign`], parties = exactly `t` signers). The session
/// binding is checked on every message by the envelope layer, since FROST
/// signing has no execution id of its own.
pub async fn sign<D>(
    session: &SessionDescriptor,
    share: &KeyShare,
    message: &[u8],
    delivery: D,
) -> Result<Signature, MpcError>
where
    D: Delivery<Envelope<SignMsg>>,
    D::Receive: Send + 'static,
    D::Send: Send + 'static,
{
    check_session(
        session,
        ProtocolKind::EddsaSign,
        share.key_id(),
        share.threshold(),
    )?;
    let signers = session.parties();
    let position = signers.position(share.i())?;
    let id = session.id();
    let span = tracing::info_span!(
        "eddsa_sign",
        session = %id,
        key = %share.key_id(),
        request = %session.request_id(),
        party = share.i(),
        signers = %signers,
    );
    let party = MpcParty::connected(delivery::bind(session.clone(), delivery));
    let sig = givre::signing::<Ed25519>(position, &share.inner, signers.parties(), message)
        .sign(&mut rand_core::OsRng, party)
        .instrument(span)
        .await
        .map_err(|e| from_protocol(session, &e))?;
    let mut bytes = [0u8; 64];
    sig.write_to_slice(&mut bytes);
    let sig = Signature(bytes);
    sig.verify(&share.public_key(), message)
        .map_err(|reason| MpcError::InvalidSignature {
            key: share.key_id(),
            reason,
        })?;
    Ok(sig)
}
