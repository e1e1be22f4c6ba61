//! Threshold ECDSA on secp256k1 with `cggmp21`.
//!
//! Flow for a party set: [`aux_info_gen`] once per party set (about 10 s per
//! party, fed by the [`crate::primes`] pool), then [`keygen`] per key (a few ms:
//! the cggmp21 docs, section "On reusability of the auxiliary data" of
//! `src/lib.rs`, state that a fixed group of signers can use the same auxiliary
//! data for multiple keys). A key then signs either with [`presign`] ahead of
//! time plus [`Presignature::issue_partial`] and [`combine`] at request time (one
//! round, microseconds), or with [`sign`] (interactive, needed for HD-derived keys).

mod aux;
mod hd;
mod presign;
mod share;
mod sign;

use std::fmt;

use cggmp21::security_level::SecurityLevel128;
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use sha3::Keccak256;

pub use aux::{aux_info_gen, aux_threshold, AuxInfo};
pub use hd::{derive_public_key, DerivationPath};
pub use presign::{combine, presign, PartialSignature, Presignature};
pub use share::{keygen, KeyShare, PublicKeyInfo};
pub use sign::sign;

/// The curve.
pub type Curve = cggmp21::supported_curves::Secp256k1;
/// The security level of aux info and proofs (128-bit).
pub type Level = SecurityLevel128;
/// Message of aux-info generation.
pub type AuxMsg = cggmp21::key_refresh::msg::aux_only::Msg<Sha256, Level>;
/// Message of key generation.
pub type KeygenMsg = cggmp21::keygen::ThresholdMsg<Curve, Level, Sha256>;
/// Message of presignature generation and of full signing.
pub type SignMsg = cggmp21::signing::msg::Msg<Curve, Sha256>;

/// How a message is hashed before ECDSA signs it. The digest is always computed
/// here from the whole message: no API takes a caller-supplied hash.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
#[non_exhaustive]
pub enum HashAlg {
    /// SHA-256 (Bitcoin-style).
    Sha256,
    /// Keccak-256 (Ethereum-style).
    Keccak256,
}

impl HashAlg {
    /// The 32-byte digest of `message`.
    pub fn digest(self, message: &[u8]) -> [u8; 32] {
        match self {
            HashAlg::Sha256 => Sha256::digest(message).into(),
            HashAlg::Keccak256 => Keccak256::digest(message).into(),
        }
    }

    fn data_to_sign(self, message: &[u8]) -> cggmp21::DataToSign<Curve> {
        match self {
            HashAlg::Sha256 => cggmp21::DataToSign::digest::<Sha256>(message),
            HashAlg::Keccak256 => cggmp21::DataToSign::digest::<Keccak256>(message),
        }
    }
}

impl fmt::Display for HashAlg {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            HashAlg::Sha256 => "sha256",
            HashAlg::Keccak256 => "keccak256",
        })
    }
}

impl std::str::FromStr for HashAlg {
    type Err = crate::MpcError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "sha256" => Ok(HashAlg::Sha256),
            "keccak256" => Ok(HashAlg::Keccak256),
            other => Err(crate::MpcError::Decode {
                what: "hash algorithm",
                reason: format!("{other:?} is not one of sha256, keccak256"),
            }),
        }
    }
}

/// A low-S ECDSA signature, `r || s`.
#[derive(Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Signature {
    #[serde(with = "hex::serde")]
    r: [u8; 32],
    #[serde(with = "hex::serde")]
    s: [u8; 32],
}

impl Signature {
    fn from_cggmp(sig: cggmp21::Signature<Curve>) -> Self {
        let sig = sig.normalize_s();
        let mut bytes = [0u8; 64];
        sig.write_to_slice(&mut bytes);
        Self::from_bytes(&bytes)
    }

    /// Wraps `r || s` (64 bytes) received from elsewhere; check it with
    /// [`Signature::verify`] before trusting it.
    pub fn from_bytes(bytes: &[u8; 64]) -> Self {
        let mut r = [0u8; 32];
        let mut s = [0u8; 32];
        r.copy_from_slice(&bytes[..32]);
        s.copy_from_slice(&bytes[32..]);
        Self { r, s }
    }

    /// `r || s`, 64 bytes.
    pub fn to_bytes(&self) -> [u8; 64] {
        let mut out = [0u8; 64];
        out[..32].copy_from_slice(&self.r);
        out[32..].copy_from_slice(&self.s);
        out
    }

    /// Verifies with `k256` (an implementation independent of the one that
    /// signed) that this is a low-S signature of `message` under `public_key`
    /// (33-byte compressed SEC1).
    pub fn verify(
        &self,
        public_key: &[u8; 33],
        message: &[u8],
        hash: HashAlg,
    ) -> Result<(), String> {
        use k256::ecdsa::signature::hazmat::PrehashVerifier;
        let vk = k256::ecdsa::VerifyingKey::from_sec1_bytes(public_key)
            .map_err(|e| format!("public key is not a secp256k1 point: {e}"))?;
        let sig = k256::ecdsa::Signature::from_slice(&self.to_bytes())
            .map_err(|e| format!("malformed signature: {e}"))?;
        if sig.normalize_s().is_some() {
            return Err("signature is high-S".into());
        }
        vk.verify_prehash(&hash.digest(message), &sig)
            .map_err(|_| "signature does not verify under the public key".to_string())
    }
}

impl fmt::Debug for Signature {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Signature({})", hex::encode(self.to_bytes()))
    }
}

/// Compressed SEC1 bytes of a point.
fn sec1(point: &cggmp21::generic_ec::Point<Curve>) -> Result<[u8; 33], crate::MpcError> {
    let bytes = point.to_bytes(true);
    <[u8; 33]>::try_from(bytes.as_bytes())
        .map_err(|_| crate::MpcError::Internal("public key is the point at infinity".into()))
}
