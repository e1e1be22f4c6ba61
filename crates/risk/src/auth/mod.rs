//! Customer payment authentication: who may authorize a customer's payment.
//!
//! Pure like the rest of the crate: no clock (every check takes `now`), no
//! randomness (secrets and salts are drawn by the caller), no storage. The state is plain data that the coordinator
//! persists as JSON and passes in; each check returns the next state or a
//! typed [`AuthRefusal`] with a stable code.
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

mod canonical;
mod device;
mod error;
mod password;
mod totp;
mod verify;

pub use canonical::{
    DevicePayment, SignedDevicePayment, DEVICE_PAYMENT_DOMAIN, MAX_NONCE_BYTES,
    MAX_SIGNATURE_BYTES, MIN_NONCE_BYTES,
};
pub use device::{
    Curve, CustomerDevices, Device, DeviceKey, P256Key, MAX_DEVICE_RECORDS, MAX_KEY_DOCUMENT_BYTES,
};
pub use error::{AuthError, AuthRefusal, LimitKind};
pub use password::{
    PasswordCheck, PasswordConfig, PasswordState, PaymentPassword, MAX_ITERATIONS, MAX_MEMORY_KIB,
    MAX_PARALLELISM, MAX_PASSWORD_BYTES, MAX_PHC_BYTES, PASSWORD_SALT_BYTES,
};
pub use totp::{
    TotpEnrolment, TotpSecret, MAX_URI_LABEL_BYTES, TOTP_DIGITS, TOTP_SECRET_BYTES,
    TOTP_SKEW_STEPS, TOTP_STEP_SECS,
};
pub use verify::{verify_device_signature, NonceLog, MAX_NONCES_PER_DEVICE};
