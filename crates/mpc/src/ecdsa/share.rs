//! ECDSA key shares and distributed key generation.

use std::fmt;

use round_based::{Delivery, MpcParty, PartyIndex};
use serde::{Deserialize, Serialize};
use tracing::Instrument;

use cggmp21::key_share::AnyKeyShare;

use super::{sec1, AuxInfo, Curve, DerivationPath, KeygenMsg, Level};
use crate::codec::{self, ObjectKind};
use crate::delivery::{self, Envelope};
use crate::error::{check_session, from_protocol};
use crate::{KeyId, MpcError, ProtocolKind, SessionDescriptor, Threshold};

const VERSION: u32 = 1;

/// What anyone may know about a threshold ECDSA key.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PublicKeyInfo {
    /// The key id.
    pub key_id: KeyId,
    /// Its threshold.
    pub threshold: Threshold,
    /// Compressed SEC1 group public key.
    #[serde(with = "hex::serde")]
    pub public_key: [u8; 33],
    /// BIP32 chain code, if the key supports HD derivation.
    #[serde(default, with = "opt_hex32")]
    pub chain_code: Option<[u8; 32]>,
}

mod opt_hex32 {
    use serde::{Deserialize, Deserializer, Serializer};

    pub fn serialize<S: Serializer>(v: &Option<[u8; 32]>, s: S) -> Result<S::Ok, S::Error> {
        match v {
            Some(b) => s.serialize_some(&hex::encode(b)),
            None => s.serialize_none(),
        }
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Option<[u8; 32]>, D::Error> {
        let s = Option::<String>::deserialize(d)?;
        s.map(|s| {
            let mut out = [0u8; 32];
            hex::decode_to_slice(&s, &mut out).map_err(serde::de::Error::custom)?;
            Ok(out)
        })
        .transpose()
    }
}

/// One party's share of a threshold ECDSA key, aux info included (secret).
///
/// The secret scalar is a `cggmp21` `SecretScalar`, zeroized on drop; encodings
/// are returned in zeroizing buffers. `Debug` prints only public metadata.
#[derive(Clone, Serialize, Deserialize)]
pub struct KeyShare {
    key_id: KeyId,
    threshold: Threshold,
    inner: cggmp21::KeyShare<Curve, Level>,
}

impl KeyShare {
    /// The key id.
    pub fn key_id(&self) -> KeyId {
        self.key_id
    }

    /// This party's keygen index.
    pub fn i(&self) -> PartyIndex {
        self.inner.core.i
    }

    /// The key's threshold.
    pub fn threshold(&self) -> Threshold {
        self.threshold
    }

    /// Compressed SEC1 group public key.
    pub fn public_key(&self) -> [u8; 33] {
        let point: cggmp21::generic_ec::Point<Curve> = *self.inner.shared_public_key;
        // A NonZero point always has a 33-byte compressed encoding.
        sec1(&point).unwrap_or([0; 33])
    }

    /// Public information about the key.
    pub fn public_info(&self) -> PublicKeyInfo {
        PublicKeyInfo {
            key_id: self.key_id,
            threshold: self.threshold(),
            public_key: self.public_key(),
            chain_code: self.inner.core.key_info.chain_code,
        }
    }

    /// Compressed SEC1 public key of the child at `path` (SLIP-10, compatible
    /// with BIP32 non-hardened derivation).
    pub fn derive_public_key(&self, path: &DerivationPath) -> Result<[u8; 33], MpcError> {
        let child = self
            .inner
            .core
            .derive_child_public_key::<cggmp21::hd_wallet::Slip10, _>(
                path.indices().iter().copied(),
            )
            .map_err(|e| MpcError::InvalidDerivationPath(e.to_string()))?;
        sec1(&child.public_key)
    }

    pub(crate) fn inner(&self) -> &cggmp21::KeyShare<Curve, Level> {
        &self.inner
    }

    /// Versioned, checksummed encoding (plaintext secret: seal it before storing).
    pub fn to_bytes(&self) -> Result<zeroize::Zeroizing<Vec<u8>>, MpcError> {
        codec::encode(ObjectKind::EcdsaKeyShare, VERSION, self)
    }

    /// Loads a share and validates it: container checksum and version, then
    /// `cggmp21`'s own consistency checks (the secret share matches its public
    /// share, the aux info fits the party set), then our threshold bounds.
    pub fn from_bytes(bytes: &[u8]) -> Result<Self, MpcError> {
        let share: Self = codec::decode(ObjectKind::EcdsaKeyShare, VERSION, bytes)?;
        let actual = (share.inner.min_signers(), share.inner.n());
        if actual != (share.threshold.t(), share.threshold.n()) {
            return Err(MpcError::Decode {
                what: "ECDSA key share",
                reason: format!(
                    "header says {} but the share is {}-of-{}",
                    share.threshold, actual.0, actual.1
                ),
            });
        }
        Ok(share)
    }
}

impl fmt::Debug for KeyShare {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ecdsa::KeyShare")
            .field("key_id", &self.key_id)
            .field("i", &self.i())
            .field("threshold", &self.threshold())
            .field("public_key", &hex::encode(self.public_key()))
            .field("secret", &"<redacted>")
            .finish()
    }
}

/// Runs threshold key generation as party `i` of `session` (protocol
/// [`ProtocolKind::EcdsaKeygen`], all `n` parties, key id = the new key's id)
/// and completes the share with this party's `aux` info of the same party set.
/// Keys are HD-capable (they carry a chain code).
pub async fn keygen<D>(
    session: &SessionDescriptor,
    i: PartyIndex,
    aux: &AuxInfo,
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
        ProtocolKind::EcdsaKeygen,
        session.key_id(),
        threshold,
    )?;
    let n = threshold.n();
    if i >= n {
        return Err(MpcError::UnknownParty { party: i, n });
    }
    if aux.i() != i || aux.n() != n {
        return Err(MpcError::SessionMismatchLocal {
            session: session.id(),
            what: format!(
                "the aux info: it is for party {} of {}, keygen runs party {i} of {n}",
                aux.i(),
                aux.n()
            ),
        });
    }
    let id = session.id();
    let key = session.key_id();
    let span =
        tracing::info_span!("ecdsa_keygen", session = %id, key = %key, party = i, %threshold);
    let party = MpcParty::connected(delivery::bind(session.clone(), delivery));
    let eid = cggmp21::ExecutionId::new(id.as_bytes());
    let incomplete = cggmp21::keygen::<Curve>(eid, i, n)
        .set_threshold(threshold.t())
        .hd_wallet(true)
        .start(&mut rand_core::OsRng, party)
        .instrument(span)
        .await
        .map_err(|e| from_protocol(session, &e))?;
    let inner = cggmp21::KeyShare::from_parts((incomplete, aux.inner().clone())).map_err(|e| {
        MpcError::ProtocolFailed {
            protocol: ProtocolKind::EcdsaKeygen,
            session: id,
            key,
            // Our own aux info and the key share just generated do not fit:
            // nothing in the error points at another party.
            culprits: Vec::new(),
            reason: format!("key share does not fit the aux info: {e}"),
        }
    })?;
    Ok(KeyShare {
        key_id: key,
        threshold,
        inner,
    })
}
