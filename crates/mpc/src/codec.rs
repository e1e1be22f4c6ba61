//! Versioned, checksummed container for everything Keyfold persists or ships:
//! key shares, aux info, presignatures, safe primes.
//!
//! Layout (all integers big-endian):
//!
//! | bytes | field |
//! |---|---|
//! | 4 | magic `KFLD` |
//! | 1 | object kind ([`ObjectKind`]) |
//! | 4 | format version of that kind |
//! | 4 | body length `L` (at most [`MAX_BODY`]) |
//! | L | body: JSON (serde) of the object |
//! | 32 | SHA-256 of every byte before it |
//!
//! The checksum catches truncation and bit rot before the body is parsed; the
//! body's own validation (e.g. a key share's public shares) then catches a
//! well-formed but inconsistent object. Sealing (AEAD) is the storage layer's
//! job; this container holds plaintext and is returned in a zeroizing buffer.

use serde::{de::DeserializeOwned, Serialize};
use sha2::{Digest, Sha256};
use zeroize::Zeroizing;

use crate::MpcError;

const MAGIC: &[u8; 4] = b"KFLD";
const HEADER_LEN: usize = 4 + 1 + 4 + 4;
const CHECKSUM_LEN: usize = 32;

/// Largest body accepted: 16 MiB, far above any share (a 7-party share with
/// precomputed tables is under 4 MiB).
pub const MAX_BODY: usize = 16 << 20;

/// What a container holds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum ObjectKind {
    /// An ECDSA (cggmp21) key share, aux info included.
    EcdsaKeyShare,
    /// ECDSA auxiliary info for one party of a party set.
    EcdsaAuxInfo,
    /// An ECDSA presignature.
    EcdsaPresignature,
    /// An Ed25519 (FROST) key share.
    EddsaKeyShare,
    /// A pair of safe primes.
    SafePrimes,
}

impl ObjectKind {
    fn code(self) -> u8 {
        match self {
            ObjectKind::EcdsaKeyShare => 1,
            ObjectKind::EcdsaAuxInfo => 2,
            ObjectKind::EcdsaPresignature => 3,
            ObjectKind::EddsaKeyShare => 4,
            ObjectKind::SafePrimes => 5,
        }
    }

    fn from_code(code: u8) -> Option<Self> {
        Some(match code {
            1 => ObjectKind::EcdsaKeyShare,
            2 => ObjectKind::EcdsaAuxInfo,
            3 => ObjectKind::EcdsaPresignature,
            4 => ObjectKind::EddsaKeyShare,
            5 => ObjectKind::SafePrimes,
            _ => return None,
        })
    }

    /// Human name, used in errors.
    pub fn name(self) -> &'static str {
        match self {
            ObjectKind::EcdsaKeyShare => "ECDSA key share",
            ObjectKind::EcdsaAuxInfo => "ECDSA aux info",
            ObjectKind::EcdsaPresignature => "ECDSA presignature",
            ObjectKind::EddsaKeyShare => "Ed25519 key share",
            ObjectKind::SafePrimes => "safe primes",
        }
    }
}

/// Encodes `value` as a container of `kind` at `version`.
pub fn encode<T: Serialize>(
    kind: ObjectKind,
    version: u32,
    value: &T,
) -> Result<Zeroizing<Vec<u8>>, MpcError> {
    let body = Zeroizing::new(
        serde_json::to_vec(value)
            .map_err(|e| MpcError::Internal(format!("cannot serialize {}: {e}", kind.name())))?,
    );
    if body.len() > MAX_BODY {
        return Err(MpcError::Internal(format!(
            "{} body of {} bytes exceeds the {} byte limit",
            kind.name(),
            body.len(),
            MAX_BODY
        )));
    }
    let mut out = Zeroizing::new(Vec::with_capacity(HEADER_LEN + body.len() + CHECKSUM_LEN));
    out.extend_from_slice(MAGIC);
    out.push(kind.code());
    out.extend_from_slice(&version.to_be_bytes());
    // Bounded by MAX_BODY above, so it fits u32.
    out.extend_from_slice(&(body.len() as u32).to_be_bytes());
    out.extend_from_slice(&body);
    let sum = Sha256::digest(&out[..]);
    out.extend_from_slice(&sum);
    Ok(out)
}

/// Decodes a container that must hold `kind` at `version`.
pub fn decode<T: DeserializeOwned>(
    kind: ObjectKind,
    version: u32,
    bytes: &[u8],
) -> Result<T, MpcError> {
    let what = kind.name();
    let bad = |reason: String| MpcError::Decode { what, reason };
    if bytes.len() < HEADER_LEN + CHECKSUM_LEN {
        return Err(bad(format!(
            "truncated: {} bytes, a container has at least {}",
            bytes.len(),
            HEADER_LEN + CHECKSUM_LEN
        )));
    }
    if &bytes[..4] != MAGIC {
        return Err(bad("not a Keyfold container (bad magic)".into()));
    }
    match ObjectKind::from_code(bytes[4]) {
        Some(k) if k == kind => {}
        Some(other) => {
            return Err(bad(format!("this container holds a {}", other.name())));
        }
        None => return Err(bad(format!("unknown object kind {}", bytes[4]))),
    }
    let found = u32::from_be_bytes([bytes[5], bytes[6], bytes[7], bytes[8]]);
    let len = u32::from_be_bytes([bytes[9], bytes[10], bytes[11], bytes[12]]) as usize;
    if len > MAX_BODY {
        return Err(bad(format!(
            "declared body of {len} bytes exceeds the {MAX_BODY} byte limit"
        )));
    }
    let expected = HEADER_LEN + len + CHECKSUM_LEN;
    if bytes.len() != expected {
        return Err(bad(format!(
            "{} bytes where the header announces {expected} (truncated or padded)",
            bytes.len()
        )));
    }
    let (signed, sum) = bytes.split_at(HEADER_LEN + len);
    if Sha256::digest(signed)[..] != *sum {
        return Err(bad("checksum mismatch: the data is corrupted".into()));
    }
    if found != version {
        return Err(MpcError::UnsupportedVersion {
            what,
            found,
            supported: version,
        });
    }
    serde_json::from_slice(&signed[HEADER_LEN..]).map_err(|e| bad(format!("invalid body: {e}")))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trip_and_every_corruption_is_caught() {
        let blob = encode(ObjectKind::SafePrimes, 1, &vec![1u32, 2, 3]).unwrap();
        let back: Vec<u32> = decode(ObjectKind::SafePrimes, 1, &blob).unwrap();
        assert_eq!(back, vec![1, 2, 3]);
        for i in 0..blob.len() {
            let mut bad = blob.to_vec();
            bad[i] ^= 0x01;
            assert!(
                decode::<Vec<u32>>(ObjectKind::SafePrimes, 1, &bad).is_err(),
                "flip at byte {i} not caught"
            );
        }
        for cut in 0..blob.len() {
            assert!(decode::<Vec<u32>>(ObjectKind::SafePrimes, 1, &blob[..cut]).is_err());
        }
    }

    #[test]
    fn kind_and_version_are_checked() {
        let blob = encode(ObjectKind::SafePrimes, 1, &0u8).unwrap();
        let err = decode::<u8>(ObjectKind::EcdsaKeyShare, 1, &blob).unwrap_err();
        assert!(err.to_string().contains("holds a safe primes"), "{err}");
        let err = decode::<u8>(ObjectKind::SafePrimes, 2, &blob).unwrap_err();
        assert!(matches!(err, MpcError::UnsupportedVersion { found: 1, .. }));
    }
}
