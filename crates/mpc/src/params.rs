//! Identifiers and party-set parameters, validated at construction.

use std::fmt;

use round_based::PartyIndex;
use serde::{Deserialize, Serialize};

use crate::MpcError;

/// Largest number of parties a key may have.
pub const MAX_PARTIES: u16 = 7;

/// A validated `t`-of-`n` threshold: `2 <= t <= n <= MAX_PARTIES`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(try_from = "RawThreshold", into = "RawThreshold")]
pub struct Threshold {
    t: u16,
    n: u16,
}

#[derive(Serialize, Deserialize)]
struct RawThreshold {
    t: u16,
    n: u16,
}

impl TryFrom<RawThreshold> for Threshold {
    type Error = MpcError;
    fn try_from(raw: RawThreshold) -> Result<Self, MpcError> {
        Threshold::new(raw.t, raw.n)
    }
}

impl From<Threshold> for RawThreshold {
    fn from(t: Threshold) -> Self {
        RawThreshold { t: t.t, n: t.n }
    }
}

impl Threshold {
    /// Validates `t` and `n`.
    pub fn new(t: u16, n: u16) -> Result<Self, MpcError> {
        if t < 2 || t > n || n > MAX_PARTIES {
            return Err(MpcError::InvalidThreshold {
                t,
                n,
                max: MAX_PARTIES,
            });
        }
        Ok(Self { t, n })
    }

    /// Parties needed to sign.
    pub fn t(&self) -> u16 {
        self.t
    }

    /// Parties holding a share.
    pub fn n(&self) -> u16 {
        self.n
    }
}

impl fmt::Display for Threshold {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}-of-{}", self.t, self.n)
    }
}

/// The parties (keygen indices, sorted, distinct) that run one signing session.
///
/// A signer set always has exactly `t` members of a `t`-of-`n` key: building one
/// with fewer, more, duplicated or unknown parties is refused before any message
/// is sent, so a short quorum fails at once instead of waiting for a party that
/// never comes.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct SignerSet(Vec<PartyIndex>);

impl SignerSet {
    /// Validates `parties` against a key's threshold.
    pub fn new(parties: &[PartyIndex], threshold: Threshold) -> Result<Self, MpcError> {
        let mut sorted = parties.to_vec();
        sorted.sort_unstable();
        if let Some(w) = sorted.windows(2).find(|w| w[0] == w[1]) {
            return Err(MpcError::DuplicateParty {
                party: w[0],
                parties: parties.to_vec(),
            });
        }
        if let Some(&party) = sorted.iter().find(|&&p| p >= threshold.n()) {
            return Err(MpcError::UnknownParty {
                party,
                n: threshold.n(),
            });
        }
        if sorted.len() != usize::from(threshold.t()) {
            return Err(MpcError::WrongSignerCount {
                parties: parties.to_vec(),
                got: parties.len(),
                need: threshold.t(),
            });
        }
        Ok(Self(sorted))
    }

    /// Every party `0..n`: the participants of a key generation.
    pub fn all(n: u16) -> Self {
        Self((0..n).collect())
    }

    /// Keygen indices, sorted.
    pub fn parties(&self) -> &[PartyIndex] {
        &self.0
    }

    /// Number of parties.
    pub fn len(&self) -> u16 {
        // At most MAX_PARTIES members by construction.
        self.0.len() as u16
    }

    /// Always false: a signer set has at least two members.
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    /// Position of keygen index `party` in this set: its index in the session.
    pub fn position(&self, party: PartyIndex) -> Result<PartyIndex, MpcError> {
        self.0
            .iter()
            .position(|&p| p == party)
            .map(|pos| pos as PartyIndex)
            .ok_or_else(|| MpcError::NotInSignerSet {
                party,
                parties: self.0.clone(),
            })
    }
}

impl fmt::Display for SignerSet {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:?}", self.0)
    }
}

/// Identifies a key across the cluster: 16 random bytes, shown as hex.
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub struct KeyId(#[serde(with = "hex::serde")] [u8; 16]);

impl KeyId {
    /// A fresh random key id.
    pub fn random() -> Self {
        let mut bytes = [0u8; 16];
        rand_core::RngCore::fill_bytes(&mut rand_core::OsRng, &mut bytes);
        Self(bytes)
    }

    /// Wraps bytes.
    pub fn from_bytes(bytes: [u8; 16]) -> Self {
        Self(bytes)
    }

    /// The raw bytes.
    pub fn as_bytes(&self) -> &[u8; 16] {
        &self.0
    }
}

impl std::str::FromStr for KeyId {
    type Err = MpcError;
    fn from_str(s: &str) -> Result<Self, MpcError> {
        let mut bytes = [0u8; 16];
        hex::decode_to_slice(s, &mut bytes).map_err(|e| MpcError::Decode {
            what: "key id",
            reason: format!("expected 32 hex digits: {e}"),
        })?;
        Ok(Self(bytes))
    }
}

impl fmt::Display for KeyId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&hex::encode(self.0))
    }
}

impl fmt::Debug for KeyId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "KeyId({self})")
    }
}

/// Identifies a request (an idempotency key chosen by the caller or the coordinator).
///
/// Printable ASCII without spaces, 1 to [`RequestId::MAX_LEN`] bytes, so it can
/// appear in logs and errors as it is.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct RequestId(String);

impl RequestId {
    /// Longest accepted request id, in bytes.
    pub const MAX_LEN: usize = 128;

    /// Validates a request id.
    pub fn new(id: impl Into<String>) -> Result<Self, MpcError> {
        let id = id.into();
        if id.is_empty() || id.len() > Self::MAX_LEN {
            return Err(MpcError::Decode {
                what: "request id",
                reason: format!("length {} is outside 1..={}", id.len(), Self::MAX_LEN),
            });
        }
        if let Some(c) = id.chars().find(|c| !c.is_ascii_graphic()) {
            return Err(MpcError::Decode {
                what: "request id",
                reason: format!("character {c:?} is not printable ASCII"),
            });
        }
        Ok(Self(id))
    }

    /// The id as text.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl TryFrom<String> for RequestId {
    type Error = MpcError;
    fn try_from(s: String) -> Result<Self, MpcError> {
        Self::new(s)
    }
}

impl From<RequestId> for String {
    fn from(r: RequestId) -> String {
        r.0
    }
}

impl fmt::Display for RequestId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn threshold_bounds() {
        assert!(Threshold::new(2, 3).is_ok());
        assert!(Threshold::new(7, 7).is_ok());
        assert!(matches!(
            Threshold::new(1, 3),
            Err(MpcError::InvalidThreshold { .. })
        ));
        assert!(Threshold::new(4, 3).is_err());
        assert!(Threshold::new(2, 8).is_err());
    }

    #[test]
    fn signer_set_rules() {
        let t = Threshold::new(2, 3).unwrap();
        assert_eq!(SignerSet::new(&[2, 0], t).unwrap().parties(), &[0, 2]);
        assert!(matches!(
            SignerSet::new(&[1, 1], t),
            Err(MpcError::DuplicateParty { party: 1, .. })
        ));
        assert!(matches!(
            SignerSet::new(&[0], t),
            Err(MpcError::WrongSignerCount {
                got: 1,
                need: 2,
                ..
            })
        ));
        assert!(matches!(
            SignerSet::new(&[0, 3], t),
            Err(MpcError::UnknownParty { party: 3, n: 3 })
        ));
        let set = SignerSet::new(&[0, 2], t).unwrap();
        assert_eq!(set.position(2).unwrap(), 1);
        assert!(matches!(
            set.position(1),
            Err(MpcError::NotInSignerSet { .. })
        ));
    }

    #[test]
    fn ids_round_trip_and_reject_garbage() {
        let id = KeyId::random();
        assert_eq!(id.to_string().parse::<KeyId>().unwrap(), id);
        assert!("zz".parse::<KeyId>().is_err());
        assert!(RequestId::new("withdrawal-42").is_ok());
        assert!(RequestId::new("").is_err());
        assert!(RequestId::new("a b").is_err());
        assert!(RequestId::new("x".repeat(129)).is_err());
    }
}
