//! Auxiliary info (Paillier keys, ring-Pedersen parameters) for a party set.

use std::fmt;

use round_based::{Delivery, MpcParty, PartyIndex};
use serde::{Deserialize, Serialize};
use tracing::Instrument;

use super::{AuxMsg, Level};
use crate::codec::{self, ObjectKind};
use crate::delivery::{self, Envelope};
use crate::error::{check_session, from_protocol};
use crate::primes::SafePrimes;
use crate::{KeyId, MpcError, ProtocolKind, SessionDescriptor, Threshold};

const VERSION: u32 = 1;

/// One party's aux info for a party set of `n` (secret: holds its Paillier key).
///
/// One party set's aux info serves every key of that set (see the module docs
/// of [`crate::ecdsa`]), so it is generated once and kept.
#[derive(Clone, Serialize, Deserialize)]
pub struct AuxInfo {
    group: KeyId,
    i: PartyIndex,
    n: u16,
    inner: cggmp21::key_share::AuxInfo<Level>,
}

impl AuxInfo {
    /// The signer group this aux info was generated for.
    pub fn group(&self) -> KeyId {
        self.group
    }

    /// This party's index in the group.
    pub fn i(&self) -> PartyIndex {
        self.i
    }

    /// Number of parties in the group.
    pub fn n(&self) -> u16 {
        self.n
    }

    pub(crate) fn inner(&self) -> &cggmp21::key_share::AuxInfo<Level> {
        &self.inner
    }

    /// Versioned, checksummed encoding (plaintext secret: seal it before storing).
    pub fn to_bytes(&self) -> Result<zeroize::Zeroizing<Vec<u8>>, MpcError> {
        codec::encode(ObjectKind::EcdsaAuxInfo, VERSION, self)
    }

    /// Loads and validates an encoding made by [`AuxInfo::to_bytes`].
    pub fn from_bytes(bytes: &[u8]) -> Result<Self, MpcError> {
        let aux: Self = codec::decode(ObjectKind::EcdsaAuxInfo, VERSION, bytes)?;
        // `inner` validated itself while deserializing (cggmp21's `Valid<T>`);
        // check that our metadata agrees with it.
        if aux.inner.parties.len() != usize::from(aux.n) || aux.i >= aux.n {
            return Err(MpcError::Decode {
                what: "ECDSA aux info",
                reason: format!(
                    "party {} of {} does not fit aux info for {} parties",
                    aux.i,
                    aux.n,
                    aux.inner.parties.len()
                ),
            });
        }
        Ok(aux)
    }
}

impl fmt::Debug for AuxInfo {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("AuxInfo")
            .field("group", &self.group)
            .field("i", &self.i)
            .field("n", &self.n)
            .field("secret", &"<redacted>")
            .finish()
    }
}

/// Runs aux-info generation as party `i` of `session` (protocol
/// [`ProtocolKind::EcdsaAuxInfo`], all `n` parties, key id = the group id).
///
/// `primes` come from the [`crate::primes::PrimePool`]; each pair is used once.
pub async fn aux_info_gen<D>(
    session: &SessionDescriptor,
    i: PartyIndex,
    primes: SafePrimes,
    delivery: D,
) -> Result<AuxInfo, MpcError>
where
    D: Delivery<Envelope<AuxMsg>>,
    D::Receive: Send + 'static,
    D::Send: Send + 'static,
{
    let n = session.threshold().n();
    check_session(
        session,
        ProtocolKind::EcdsaAuxInfo,
        session.key_id(),
        session.threshold(),
    )?;
    if i >= n {
        return Err(MpcError::UnknownParty { party: i, n });
    }
    let id = session.id();
    let span =
        tracing::info_span!("aux_info_gen", session = %id, group = %session.key_id(), party = i, n);
    let party = MpcParty::connected(delivery::bind(session.clone(), delivery));
    let eid = cggmp21::ExecutionId::new(id.as_bytes());
    let inner = cggmp21::aux_info_gen(eid, i, n, primes.into_inner())
        .start(&mut rand_core::OsRng, party)
        .instrument(span)
        .await
        .map_err(|e| from_protocol(session, &e))?;
    Ok(AuxInfo {
        group: session.key_id(),
        i,
        n,
        inner,
    })
}

/// Threshold of an aux-info session: aux info does not depend on `t`, so its
/// sessions use `n`-of-`n`.
pub fn aux_threshold(n: u16) -> Result<Threshold, MpcError> {
    Threshold::new(n, n)
}
