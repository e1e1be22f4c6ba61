//! Full (interactive) ECDSA signing, with optional HD derivation.

use round_based::{Delivery, MpcParty};
use tracing::Instrument;

use super::{DerivationPath, HashAlg, KeyShare, SignMsg, Signature};
use crate::delivery::{self, Envelope};
use crate::error::{check_session, from_protocol};
use crate::{MpcError, ProtocolKind, SessionDescriptor};

/// Signs `message` (hashed here with `hash`) as this share's party in `session`
/// (protocol [`ProtocolKind::EcdsaSign`], parties = exactly `t` signers), with
/// the child key at `path` when one is given. The result is verified with `k256`
/// against the (derived) public key before it is returned.
pub async fn sign<D>(
    session: &SessionDescriptor,
    share: &KeyShare,
    message: &[u8],
    hash: HashAlg,
    path: Option<&DerivationPath>,
    delivery: D,
) -> Result<Signature, MpcError>
where
    D: Delivery<Envelope<SignMsg>>,
    D::Receive: Send + 'static,
    D::Send: Send + 'static,
{
    check_session(
        session,
        ProtocolKind::EcdsaSign,
        share.key_id(),
        share.threshold(),
    )?;
    let signers = session.parties();
    let position = signers.position(share.i())?;
    let public_key = match path {
        Some(p) => share.derive_public_key(p)?,
        None => share.public_key(),
    };
    let id = session.id();
    let span = tracing::info_span!(
        "ecdsa_sign",
        session = %id,
        key = %share.key_id(),
        request = %session.request_id(),
        party = share.i(),
        signers = %signers,
        path = %path.map(|p| p.to_string()).unwrap_or_else(|| "m".into()),
    );
    let party = MpcParty::connected(delivery::bind(session.clone(), delivery));
    let eid = cggmp21::ExecutionId::new(id.as_bytes());
    let mut builder = cggmp21::signing(eid, position, signers.parties(), share.inner());
    if let Some(p) = path {
        builder = builder
            .set_derivation_path(p.indices().iter().copied())
            .map_err(|e| MpcError::InvalidDerivationPath(e.to_string()))?;
    }
    let sig = builder
        .sign(&mut rand_core::OsRng, party, hash.data_to_sign(message))
        .instrument(span)
        .await
        .map_err(|e| from_protocol(session, &e))?;
    let sig = Signature::from_cggmp(sig);
    sig.verify(&public_key, message, hash)
        .map_err(|reason| MpcError::InvalidSignature {
            key: share.key_id(),
            reason,
        })?;
    Ok(sig)
}
