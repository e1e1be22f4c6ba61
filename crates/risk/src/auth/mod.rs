//! Customer payment authentication: who may authorize a customer's payment,
//! and up to how much.
//!
//! Pure like the rest of the crate: no clock (every check takes `now`), no
//! randomness (secrets and salts are drawn by the caller), no storage. The
//! state is plain data ([`CustomerAuth`] gathers one customer's) that the
//! coordinator persists as JSON and passes in; each check returns the next
//! state or a typed [`AuthRefusal`] with a stable code.
//!
//! * **Devices.** [`CustomerDevices`] binds device public keys
//!   ([`DeviceKey`]: Ed25519 or P-256) to a customer, with a cap on active
//!   devices, revocation, and [`CustomerDevices::may_authorize_large`], a
//!   delay before a new device may authorize large payments.
//! * **Device signatures.** A customer's device signs
//!   [`DevicePayment::canonical_bytes`] (the payment, a timestamp, a
//!   nonce); [`verify_device_signature`] checks it against the devices and
//!   the [`NonceLog`] that refuses replays.
//! * **One-time codes.** [`TotpEnrolment`]: RFC 6238 codes, each accepted
//!   once.
//! * **Payment password.** [`PasswordState`]: argon2id, locked after
//!   repeated failures.
//! * **KYC tiers.** [`TierLimits::check_tier`]: per-tier, per-asset limits
//!   on a single payment and on 24 hours.

mod canonical;
mod device;
mod error;
mod kyc;
mod password;
mod totp;
mod verify;

use serde::{Deserialize, Serialize};

pub use canonical::{
    DevicePayment, SignedDevicePayment, DEVICE_PAYMENT_DOMAIN, MAX_NONCE_BYTES,
    MAX_SIGNATURE_BYTES, MIN_NONCE_BYTES,
};
pub use device::{
    Curve, CustomerDevices, Device, DeviceKey, P256Key, MAX_DEVICE_RECORDS, MAX_KEY_DOCUMENT_BYTES,
};
pub use error::{AuthError, AuthRefusal, LimitKind, DEVICE_REFUSAL_CODES};
pub use kyc::{AssetLimit, TierLimits, MAX_TIER_ASSETS, MAX_TIER_LIMITS_BYTES};
pub use password::{
    PasswordCheck, PasswordConfig, PasswordState, PaymentPassword, MAX_ITERATIONS, MAX_MEMORY_KIB,
    MAX_PARALLELISM, MAX_PASSWORD_BYTES, MAX_PHC_BYTES, PASSWORD_SALT_BYTES,
};
pub use totp::{
    TotpCheck, TotpEnrolment, TotpSecret, MAX_URI_LABEL_BYTES, TOTP_DIGITS, TOTP_SECRET_BYTES,
    TOTP_SKEW_STEPS, TOTP_STEP_SECS,
};
pub use verify::{verify_device_signature, NonceLog, MAX_NONCES_PER_DEVICE};

use crate::input::KycTier;

/// Everything Keyfold keeps to authenticate one customer's payments, as the
/// coordinator persists it (one JSON document per customer; it holds the
/// one-time-code secret and the password hash, so it is encrypted at rest).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CustomerAuth {
    /// The customer's verification tier.
    #[serde(default)]
    pub kyc_tier: KycTier,
    /// The customer's devices (and the customer id).
    pub devices: CustomerDevices,
    /// The nonces the devices used recently.
    #[serde(default)]
    pub nonces: NonceLog,
    /// The one-time-code enrolment, if any.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub totp: Option<TotpEnrolment>,
    /// The payment password, if set.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub password: Option<PasswordState>,
}

impl CustomerAuth {
    /// A customer with nothing enrolled, at tier `none`.
    pub fn new(customer_id: &str) -> Result<CustomerAuth, AuthError> {
        Ok(CustomerAuth {
            kyc_tier: KycTier::None,
            devices: CustomerDevices::new(customer_id)?,
            nonces: NonceLog::new(),
            totp: None,
            password: None,
        })
    }
}
