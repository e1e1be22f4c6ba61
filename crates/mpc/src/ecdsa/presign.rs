//! Presignatures: generated ahead by `t` signers, each usable exactly once.
//!
//! The rules from cggmp21's successor are enforced by the types here:
//! * [`Presignature::issue_partial`] takes `self` by value and the type is not
//!   `Clone`, so a presignature object signs once;
//! * it takes the whole message and hashes it itself: there is no way to sign a
//!   caller-chosen hash or scalar with a presignature;
//! * it has no derivation method: HD-derived keys sign with [`super::sign`].
//!
//! Persisting a presignature ([`Presignature::to_bytes`]) creates a copy; the
//! store that keeps it must mark it used durably before a partial signature
//! leaves the node (the signer node's pool does).

use std::fmt;

use round_based::{Delivery, MpcParty, PartyIndex};
use serde::{Deserialize, Serialize};
use tracing::Instrument;

use super::{Curve, HashAlg, KeyShare, PublicKeyInfo, SignMsg, Signature};
use crate::codec::{self, ObjectKind};
use crate::delivery::{self, Envelope};
use crate::error::{check_session, from_protocol};
use crate::{KeyId, MpcError, ProtocolKind, SessionDescriptor, SessionId, SignerSet};

const VERSION: u32 = 1;

/// One signer's presignature (secret, single use).
#[derive(Serialize, Deserialize)]
pub struct Presignature {
    key_id: KeyId,
    session: SessionId,
    signers: SignerSet,
    party: PartyIndex,
    inner: cggmp21::Presignature<Curve>,
}

impl Presignature {
    /// The key it signs for.
    pub fn key_id(&self) -> KeyId {
        self.key_id
    }

    /// The presignature session: the same for all `t` signers' halves.
    pub fn session(&self) -> SessionId {
        self.session
    }

    /// The signers that generated it; exactly these must issue partials.
    pub fn signers(&self) -> &SignerSet {
        &self.signers
    }

    /// This signer's keygen index.
    pub fn party(&self) -> PartyIndex {
        self.party
    }

    /// Issues this signer's partial signature of `message`, hashed with `hash`,
    /// consuming the presignature.
    pub fn issue_partial(self, message: &[u8], hash: HashAlg) -> PartialSignature {
        let digest = hash.digest(message);
        let Presignature {
            key_id,
            session,
            party,
            inner,
            ..
        } = self;
        let inner = inner.issue_partial_signature(hash.data_to_sign(message));
        PartialSignature {
            key_id,
            presignature: session,
            signer: party,
            hash,
            digest,
            inner,
        }
    }

    /// Versioned, checksummed encoding (plaintext secret: seal it before storing,
    /// and mark it used durably before issuing a partial from a loaded copy).
    pub fn to_bytes(&self) -> Result<zeroize::Zeroizing<Vec<u8>>, MpcError> {
        codec::encode(ObjectKind::EcdsaPresignature, VERSION, self)
    }

    /// Loads an encoding made by [`Presignature::to_bytes`].
    pub fn from_bytes(bytes: &[u8]) -> Result<Self, MpcError> {
        codec::decode(ObjectKind::EcdsaPresignature, VERSION, bytes)
    }
}

impl fmt::Debug for Presignature {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Presignature")
            .field("key_id", &self.key_id)
            .field("session", &self.session)
            .field("signers", &self.signers)
            .field("party", &self.party)
            .field("secret", &"<redacted>")
            .finish()
    }
}

/// One signer's partial signature (not secret).
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct PartialSignature {
    key_id: KeyId,
    presignature: SessionId,
    signer: PartyIndex,
    hash: HashAlg,
    #[serde(with = "hex::serde")]
    digest: [u8; 32],
    inner: cggmp21::PartialSignature<Curve>,
}

impl PartialSignature {
    /// The signer's keygen index.
    pub fn signer(&self) -> PartyIndex {
        self.signer
    }

    /// The presignature session it came from.
    pub fn presignature(&self) -> SessionId {
        self.presignature
    }
}

/// Generates a presignature as this share's party in `session` (protocol
/// [`ProtocolKind::EcdsaPresign`], parties = exactly `t` signers).
pub async fn presign<D>(
    session: &SessionDescriptor,
    share: &KeyShare,
    delivery: D,
) -> Result<Presignature, MpcError>
where
    D: Delivery<Envelope<SignMsg>>,
    D::Receive: Send + 'static,
    D::Send: Send + 'static,
{
    check_session(
        session,
        ProtocolKind::EcdsaPresign,
        share.key_id(),
        share.threshold(),
    )?;
    let signers = session.parties();
    let position = signers.position(share.i())?;
    let id = session.id();
    let span = tracing::info_span!("ecdsa_presign", session = %id, key = %share.key_id(), party = share.i(), signers = %signers);
    let party = MpcParty::connected(delivery::bind(session.clone(), delivery));
    let eid = cggmp21::ExecutionId::new(id.as_bytes());
    let inner = cggmp21::signing(eid, position, signers.parties(), share.inner())
        .generate_presignature(&mut rand_core::OsRng, party)
        .instrument(span)
        .await
        .map_err(|e| from_protocol(session, &e))?;
    Ok(Presignature {
        key_id: share.key_id(),
        session: id,
        signers: signers.clone(),
        party: share.i(),
        inner,
    })
}

/// Combines the `t` partial signatures of one presignature into a signature of
/// `message` and verifies it with `k256` before returning it.
pub fn combine(
    key: &PublicKeyInfo,
    partials: &[PartialSignature],
    message: &[u8],
    hash: HashAlg,
) -> Result<Signature, MpcError> {
    let t = key.threshold.t();
    let signers: Vec<PartyIndex> = partials.iter().map(|p| p.signer).collect();
    // Refuses a short, duplicated or foreign set of partials before any math.
    crate::SignerSet::new(&signers, key.threshold)?;
    let first = partials
        .first()
        .ok_or_else(|| MpcError::Internal(format!("no partial signatures for {t} signers")))?;
    let digest = hash.digest(message);
    for p in partials {
        if p.key_id != key.key_id {
            return Err(MpcError::Mismatch(format!(
                "partial signature of party {} is for key {}, not {}",
                p.signer, p.key_id, key.key_id
            )));
        }
        if p.presignature != first.presignature {
            return Err(MpcError::Mismatch(format!(
                "partial signatures come from different presignatures (party {}: {}, party {}: {})",
                first.signer, first.presignature, p.signer, p.presignature
            )));
        }
        if p.hash != hash || p.digest != digest {
            return Err(MpcError::Mismatch(format!(
                "party {} signed another message than the one being combined",
                p.signer
            )));
        }
    }
    let inner: Vec<_> = partials.iter().map(|p| p.inner.clone()).collect();
    let sig =
        cggmp21::PartialSignature::combine(&inner).ok_or_else(|| MpcError::InvalidSignature {
            key: key.key_id,
            reason: "partial signatures combine to zero".into(),
        })?;
    let sig = Signature::from_cggmp(sig);
    sig.verify(&key.public_key, message, hash)
        .map_err(|reason| MpcError::InvalidSignature {
            key: key.key_id,
            reason: format!("{reason} (a signer sent a wrong partial signature)"),
        })?;
    Ok(sig)
}
