//! The bytes a customer's device signs to authorize a payment, and the
//! signature check for each curve.
//!
//! Layout (documented with a worked example in `docs/risk.md`, "Device
//! signatures"):
//!
//! ```text
//! "keyfold-risk/device-payment/v1\0"          31 bytes, the domain separator
//! field(customer_id)                          u32 big-endian length ‖ UTF-8
//! field(device_id)
//! field(chain)
//! field(asset)
//! field(amount)                               decimal base units, no leading zeros
//! field(destination)                          canonical_destination(destination)
//! field(wallet)
//! field(merchant)                             empty when there is none
//! field(payout_id)
//! timestamp                                   u64 big-endian, Unix seconds
//! field(nonce)                                16..=64 raw bytes
//! ```
//!
//! Every variable field is length-prefixed, so no two payments share
//! bytes (moving a character from one field to the next changes a length),
//! and the domain separator keeps these bytes apart from anything else a
//! Keyfold key signs. Ed25519 signs the bytes as they are; P-256 signs their
//! SHA-256 (ECDSA with SHA-256, what a secure enclave's
//! `ecdsaSignatureMessageX962SHA256` or Android's `SHA256withECDSA`
//! produce).

use ed25519_dalek::{Signature as EdSignature, VerifyingKey as EdVerifyingKey};
use p256::ecdsa::signature::Verifier;
use p256::ecdsa::Signature as P256Signature;
use serde::{Deserialize, Serialize};

use super::device::DeviceKey;
use super::error::AuthRefusal;
use crate::input::{canonical_destination, Payment, MAX_ID_BYTES};

/// Domain separator at the start of [`DevicePayment::canonical_bytes`].
pub const DEVICE_PAYMENT_DOMAIN: &[u8] = b"keyfold-risk/device-payment/v1\0";

/// Shortest nonce, in bytes: 128 random bits never repeat by chance.
pub const MIN_NONCE_BYTES: usize = 16;

/// Longest nonce, in bytes.
pub const MAX_NONCE_BYTES: usize = 64;

/// Longest signature read, in bytes: a DER-encoded P-256 signature is at
/// most 72 bytes, an Ed25519 one exactly 64.
pub const MAX_SIGNATURE_BYTES: usize = 72;

/// What a customer's device signs to authorize one payment.
///
/// Build `payment`, `customer_id` and `payout_id` from the request that is
/// about to be executed, never from a copy the client sent next to its
/// signature: the signature then holds only if the device approved exactly
/// that payment.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DevicePayment {
    /// The customer paying.
    pub customer_id: String,
    /// The signing device.
    pub device_id: String,
    /// The payment: chain, asset, amount, destination, wallet, merchant.
    pub payment: Payment,
    /// The payout id or idempotency key of the request.
    pub payout_id: String,
    /// When the device signed (Unix seconds, the device's clock).
    pub timestamp: u64,
    /// A fresh random value per signature, 16..=64 bytes (hex in JSON).
    #[serde(with = "hex::serde")]
    pub nonce: Vec<u8>,
}

/// A [`DevicePayment`] with the device's signature over its
/// [canonical bytes](DevicePayment::canonical_bytes).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SignedDevicePayment {
    /// What was signed.
    pub body: DevicePayment,
    /// Ed25519: 64 bytes. P-256: DER, or 64 bytes `r ‖ s` (hex in JSON).
    #[serde(with = "hex::serde")]
    pub signature: Vec<u8>,
}

fn check_field(field: &'static str, value: &str) -> Result<(), AuthRefusal> {
    if value.is_empty() {
        return Err(AuthRefusal::MalformedRequest {
            field,
            why: "is empty".into(),
        });
    }
    if value.len() > MAX_ID_BYTES {
        return Err(AuthRefusal::MalformedRequest {
            field,
            why: format!("is {} bytes, the limit is {MAX_ID_BYTES}", value.len()),
        });
    }
    Ok(())
}

fn push_field(out: &mut Vec<u8>, bytes: &[u8]) {
    // Bounded by `validate` (at most 128 bytes), so the length fits.
    let len = u32::try_from(bytes.len()).unwrap_or(u32::MAX);
    out.extend_from_slice(&len.to_be_bytes());
    out.extend_from_slice(bytes);
}

impl DevicePayment {
    /// Checks every bound: ids 1..=128 bytes (merchant, when present, too),
    /// a nonce of 16..=64 bytes.
    pub fn validate(&self) -> Result<(), AuthRefusal> {
        check_field("customer_id", &self.customer_id)?;
        check_field("device_id", &self.device_id)?;
        let p = &self.payment;
        check_field("payment.chain", &p.chain)?;
        check_field("payment.asset", &p.asset)?;
        check_field("payment.destination", &p.destination)?;
        check_field("payment.wallet", &p.wallet)?;
        if let Some(m) = &p.merchant {
            check_field("payment.merchant", m)?;
        }
        check_field("payout_id", &self.payout_id)?;
        if !(MIN_NONCE_BYTES..=MAX_NONCE_BYTES).contains(&self.nonce.len()) {
            return Err(AuthRefusal::MalformedRequest {
                field: "nonce",
                why: format!(
                    "is {} bytes; it must be {MIN_NONCE_BYTES} to {MAX_NONCE_BYTES}",
                    self.nonce.len()
                ),
            });
        }
        Ok(())
    }

    /// The bytes the device signs (the layout is in the module doc and in
    /// `docs/risk.md`). Refused as [`DevicePayment::validate`] refuses.
    pub fn canonical_bytes(&self) -> Result<Vec<u8>, AuthRefusal> {
        self.validate()?;
        let p = &self.payment;
        let mut out = Vec::with_capacity(256);
        out.extend_from_slice(DEVICE_PAYMENT_DOMAIN);
        push_field(&mut out, self.customer_id.as_bytes());
        push_field(&mut out, self.device_id.as_bytes());
        push_field(&mut out, p.chain.as_bytes());
        push_field(&mut out, p.asset.as_bytes());
        push_field(&mut out, p.amount.to_string().as_bytes());
        push_field(&mut out, canonical_destination(&p.destination).as_bytes());
        push_field(&mut out, p.wallet.as_bytes());
        push_field(&mut out, p.merchant.as_deref().unwrap_or("").as_bytes());
        push_field(&mut out, self.payout_id.as_bytes());
        out.extend_from_slice(&self.timestamp.to_be_bytes());
        push_field(&mut out, &self.nonce);
        Ok(out)
    }
}

/// Checks `signature` over `message` under a device key.
///
/// * Ed25519: `verify_strict` (canonical `S`, no small-order `R`).
/// * P-256: ECDSA over SHA-256(`message`). The signature may be DER or 64
///   bytes `r ‖ s`; 64 bytes that are also a valid DER encoding (a DER
///   signature with short `r` and `s` can be 64 bytes long) are tried both
///   ways. A high `S` is accepted as well as a low one: secure enclaves and
///   WebAuthn authenticators do not normalise `S`, and the malleability it
///   allows is harmless here, since replays are caught by the signed nonce,
///   never by the signature's bytes.
pub(crate) fn verify_signature(
    key: &DeviceKey,
    device_id: &str,
    message: &[u8],
    signature: &[u8],
) -> Result<(), AuthRefusal> {
    let curve = key.curve().name();
    let malformed = |why: String| AuthRefusal::MalformedSignature {
        device_id: device_id.to_string(),
        curve,
        why,
    };
    let wrong = || AuthRefusal::WrongDeviceKey {
        device_id: device_id.to_string(),
    };
    if signature.len() > MAX_SIGNATURE_BYTES {
        return Err(malformed(format!(
            "{} bytes, longer than any {curve} signature",
            signature.len()
        )));
    }
    match key {
        DeviceKey::Ed25519(pk) => {
            let bytes = <[u8; 64]>::try_from(signature).map_err(|_| {
                malformed(format!(
                    "{} bytes, an Ed25519 signature is 64",
                    signature.len()
                ))
            })?;
            let vk = EdVerifyingKey::from_bytes(pk).map_err(|_| wrong())?;
            vk.verify_strict(message, &EdSignature::from_bytes(&bytes))
                .map_err(|_| wrong())
        }
        DeviceKey::P256(pk) => {
            let vk = pk.verifying_key().ok_or_else(wrong)?;
            let raw = if signature.len() == 64 {
                P256Signature::from_slice(signature).ok()
            } else {
                None
            };
            let der = P256Signature::from_der(signature).ok();
            if raw.is_none() && der.is_none() {
                return Err(malformed(if signature.len() == 64 {
                    "64 bytes, but r or s is zero or not below the group order".into()
                } else {
                    format!(
                        "{} bytes that are not a DER-encoded ECDSA signature (nor 64 bytes r ‖ s)",
                        signature.len()
                    )
                }));
            }
            let ok = [raw, der]
                .into_iter()
                .flatten()
                .any(|sig| vk.verify(message, &sig).is_ok());
            if ok {
                Ok(())
            } else {
                Err(wrong())
            }
        }
    }
}
