//! The two error types of customer authentication.
//!
//! * [`AuthRefusal`]: a payment's authentication was refused. Each has a
//!   stable [`AuthRefusal::code`] for the API and the logs, and a message
//!   that tells the customer (or the support agent) what to do next.
//! * [`AuthError`]: a set-up step was refused (registering a device, parsing
//!   a key, enrolling a code, setting a password, loading the tier limits).

use thiserror::Error;

use crate::error::InputError;
use crate::input::KycTier;

/// Which of a tier's two limits a payment exceeds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LimitKind {
    /// The largest single payment.
    Single,
    /// The largest total over the last 24 hours, this payment included.
    Total24h,
}

impl LimitKind {
    /// The name used in messages and in the tier configuration
    /// (`max_single`, `max_24h`).
    pub fn name(self) -> &'static str {
        match self {
            LimitKind::Single => "max_single",
            LimitKind::Total24h => "max_24h",
        }
    }
}

/// The [`AuthRefusal::code`]s of the refusals that count as a refused device
/// signature ([`AuthRefusal::counts_as_device_refusal`]): what a recorded
/// refusal step (`crate::RefusalInput::code`) may name. One list, so the
/// coordinator that records a refusal and the auditor that replays it agree
/// on what counts.
pub const DEVICE_REFUSAL_CODES: &[&str] = &[
    "unknown_device",
    "device_revoked",
    "wrong_device_key",
    "stale_timestamp",
    "replayed_device_signature",
    "nonce_log_full",
    "malformed_signature",
    "malformed_request",
];

/// A customer payment's authentication was refused.
///
/// Every variant carries what the caller needs to act and has a stable
/// [`code`](AuthRefusal::code). The device-signature refusals
/// ([`counts_as_device_refusal`](AuthRefusal::counts_as_device_refusal))
/// are to be recorded with [`crate::RiskState::record_refusal`], where they
/// feed the `refusals_at_least` condition of the decision tree.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
#[non_exhaustive]
pub enum AuthRefusal {
    /// The device is not registered for this customer.
    #[error("device {device_id:?} is not registered for customer {customer_id:?}; register it before paying with it")]
    UnknownDevice {
        /// The customer the payment is for.
        customer_id: String,
        /// The device named by the signature.
        device_id: String,
    },
    /// The device was revoked.
    #[error(
        "device {device_id:?} was revoked at {revoked_at}; sign with another registered device"
    )]
    DeviceRevoked {
        /// The device.
        device_id: String,
        /// When it was revoked (Unix seconds).
        revoked_at: u64,
    },
    /// The signature does not verify under the device's key: it was made by
    /// another key, or over other bytes (a field of the payment, the
    /// timestamp or the nonce was changed after signing).
    #[error("the signature of device {device_id:?} does not verify over this payment: wrong key or a changed field")]
    WrongDeviceKey {
        /// The device.
        device_id: String,
    },
    /// The signed timestamp is too far from the server's time.
    #[error("the device signed at {timestamp}, {} s from the server time {now}, outside ±{window_secs} s; check the device clock and sign again", distance(.timestamp, .now))]
    StaleTimestamp {
        /// The signed timestamp (Unix seconds).
        timestamp: u64,
        /// The server time the check used.
        now: u64,
        /// The accepted distance either side.
        window_secs: u64,
    },
    /// The nonce was already used by this device within the window: the
    /// same signed payment was presented twice.
    #[error("device {device_id:?} already used this nonce within the last {window_secs} s; sign again with a fresh nonce")]
    ReplayedDeviceSignature {
        /// The device.
        device_id: String,
        /// The replay window.
        window_secs: u64,
    },
    /// The device signed more payments within the window than the server
    /// remembers nonces for.
    #[error("device {device_id:?} signed {cap} payments within {window_secs} s, the most the server remembers; wait and sign again")]
    NonceLogFull {
        /// The device.
        device_id: String,
        /// The number of nonces kept per device.
        cap: usize,
        /// The replay window.
        window_secs: u64,
    },
    /// The signature is not an encoding the device's curve can have.
    #[error("malformed {curve} signature from device {device_id:?}: {why}")]
    MalformedSignature {
        /// The device.
        device_id: String,
        /// `ed25519` or `p256`.
        curve: &'static str,
        /// What is wrong with it.
        why: String,
    },
    /// A field of the signed payment is out of bounds (an id empty or too
    /// long, a nonce of the wrong length).
    #[error("signed payment: {field} {why}")]
    MalformedRequest {
        /// The field (`customer_id`, `payment.destination`, `nonce`, ...).
        field: &'static str,
        /// What is wrong.
        why: String,
    },
    /// The device was registered too recently to authorize a large payment.
    #[error("device {device_id:?} was registered at {registered_at} and may authorize large payments from {usable_at}; use an older device or wait")]
    DeviceTooNew {
        /// The device.
        device_id: String,
        /// When it was registered.
        registered_at: u64,
        /// The first time it may authorize a large payment.
        usable_at: u64,
    },
    /// The one-time code is not the customer's current code.
    #[error("the one-time code is wrong or expired; enter the code your authenticator shows now")]
    BadTotp,
    /// One-time codes are locked after repeated wrong ones.
    #[error(
        "one-time codes are locked after repeated wrong ones until {locked_until}; try again then"
    )]
    TotpLocked {
        /// When they unlock (Unix seconds).
        locked_until: u64,
    },
    /// The one-time code (or an older one) was already used.
    #[error("this one-time code was already used; wait for the next code (every {step_secs} s)")]
    TotpReused {
        /// Seconds per code.
        step_secs: u64,
    },
    /// The payment password is wrong.
    #[error("wrong payment password; {remaining} attempt(s) left before it is locked")]
    BadPassword {
        /// Failures allowed before the lock.
        remaining: u32,
    },
    /// The payment password is locked after repeated failures.
    #[error(
        "payment password locked after repeated failures until {locked_until}; try again then"
    )]
    PasswordLocked {
        /// When it unlocks (Unix seconds).
        locked_until: u64,
    },
    /// The customer's KYC tier does not allow this payment.
    #[error("{} limit of KYC tier {} for {asset} is {limit} base units and {}; {}", .kind.name(), .tier.name(), attempted_text(.kind, .attempted), allowed_by_text(.allowed_by))]
    KycTierLimit {
        /// The customer's tier.
        tier: KycTier,
        /// The asset.
        asset: String,
        /// Which limit is exceeded.
        kind: LimitKind,
        /// The limit, base units.
        limit: u128,
        /// The amount the limit was checked against: the payment for
        /// `max_single`, the 24-hour total with it for `max_24h`
        /// (saturating).
        attempted: u128,
        /// The lowest tier that allows the payment, if any.
        allowed_by: Option<KycTier>,
    },
}

impl AuthRefusal {
    /// The stable machine-readable code.
    pub fn code(&self) -> &'static str {
        match self {
            AuthRefusal::UnknownDevice { .. } => "unknown_device",
            AuthRefusal::DeviceRevoked { .. } => "device_revoked",
            AuthRefusal::WrongDeviceKey { .. } => "wrong_device_key",
            AuthRefusal::StaleTimestamp { .. } => "stale_timestamp",
            AuthRefusal::ReplayedDeviceSignature { .. } => "replayed_device_signature",
            AuthRefusal::NonceLogFull { .. } => "nonce_log_full",
            AuthRefusal::MalformedSignature { .. } => "malformed_signature",
            AuthRefusal::MalformedRequest { .. } => "malformed_request",
            AuthRefusal::DeviceTooNew { .. } => "device_too_new",
            AuthRefusal::BadTotp => "bad_totp",
            AuthRefusal::TotpReused { .. } => "totp_reused",
            AuthRefusal::TotpLocked { .. } => "totp_locked",
            AuthRefusal::BadPassword { .. } => "bad_password",
            AuthRefusal::PasswordLocked { .. } => "password_locked",
            AuthRefusal::KycTierLimit { .. } => "kyc_tier_limit",
        }
    }

    /// Whether this is a refused device signature, to be recorded with
    /// [`crate::RiskState::record_refusal`] (the `refusals_at_least`
    /// feature): every refusal of [`super::verify_device_signature`].
    pub fn counts_as_device_refusal(&self) -> bool {
        matches!(
            self,
            AuthRefusal::UnknownDevice { .. }
                | AuthRefusal::DeviceRevoked { .. }
                | AuthRefusal::WrongDeviceKey { .. }
                | AuthRefusal::StaleTimestamp { .. }
                | AuthRefusal::ReplayedDeviceSignature { .. }
                | AuthRefusal::NonceLogFull { .. }
                | AuthRefusal::MalformedSignature { .. }
                | AuthRefusal::MalformedRequest { .. }
        )
    }
}

fn distance(a: &u64, b: &u64) -> u64 {
    a.abs_diff(*b)
}

fn attempted_text(kind: &LimitKind, attempted: &u128) -> String {
    match kind {
        LimitKind::Single => format!("the payment is {attempted}"),
        LimitKind::Total24h => format!("the last 24 h with this payment come to {attempted}"),
    }
}

fn allowed_by_text(allowed_by: &Option<KycTier>) -> String {
    match allowed_by {
        Some(t) => format!("KYC tier {} allows it", t.name()),
        None => "no KYC tier allows it".to_string(),
    }
}

fn revoked_text(revoked: &bool) -> &'static str {
    if *revoked {
        " (revoked)"
    } else {
        ""
    }
}

/// A set-up step of customer authentication was refused.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
#[non_exhaustive]
pub enum AuthError {
    /// An id or time is out of bounds.
    #[error(transparent)]
    Input(#[from] InputError),
    /// A device key names a curve other than `ed25519` and `p256`.
    #[error("unknown device key curve {curve:?}; use \"ed25519\" or \"p256\"")]
    UnknownCurve {
        /// The curve as given (cut to 32 characters).
        curve: String,
    },
    /// A device public key is not a valid key of its curve.
    #[error("invalid {curve} public key: {why}")]
    BadPublicKey {
        /// `ed25519` or `p256`.
        curve: &'static str,
        /// What is wrong.
        why: String,
    },
    /// A device key document does not parse.
    #[error("device key does not parse: {0}; expected {{\"curve\": \"ed25519\"|\"p256\", \"public_key\": \"<hex>\"}}")]
    BadKeyDocument(String),
    /// The customer already has as many active devices as allowed.
    #[error(
        "customer {customer_id:?} already has {cap} active device(s), the cap; revoke one first"
    )]
    DeviceCapReached {
        /// The customer.
        customer_id: String,
        /// The cap on active devices.
        cap: usize,
    },
    /// The customer's device records (active and revoked) are full.
    #[error(
        "customer {customer_id:?} has {max} device records (active and revoked), the most kept"
    )]
    TooManyDeviceRecords {
        /// The customer.
        customer_id: String,
        /// The limit.
        max: usize,
    },
    /// The device id is already used by this customer (device ids are never
    /// reused, even after a revocation, so logs stay unambiguous).
    #[error(
        "device id {device_id:?} is already registered for this customer (ids are never reused)"
    )]
    DeviceIdTaken {
        /// The id.
        device_id: String,
    },
    /// The key is already registered (or was, and was revoked: a revoked key
    /// is presumed compromised).
    #[error("this public key is already registered as device {device_id:?}{}", revoked_text(.revoked))]
    DuplicateKey {
        /// The device holding it.
        device_id: String,
        /// Whether that device is revoked.
        revoked: bool,
    },
    /// No device of this id is registered for the customer.
    #[error("no device {device_id:?} is registered for customer {customer_id:?}")]
    NoSuchDevice {
        /// The customer.
        customer_id: String,
        /// The id.
        device_id: String,
    },
    /// A one-time-code setting is out of range.
    #[error("one-time codes: {0}")]
    Totp(String),
    /// A payment password is empty or too long, or a password hash is not a
    /// valid argon2id PHC string.
    #[error("payment password: {0}")]
    Password(String),
    /// The KYC tier limits do not parse or are inconsistent.
    #[error("KYC tier limits: {0}")]
    TierLimits(String),
}

#[cfg(test)]
mod tests {
    use super::*;

    /// One refusal of every variant (a new variant fails to compile in
    /// `code` and `counts_as_device_refusal`; add it here too).
    fn every_refusal() -> Vec<AuthRefusal> {
        let d = || "d-1".to_string();
        vec![
            AuthRefusal::UnknownDevice {
                customer_id: "c-1".into(),
                device_id: d(),
            },
            AuthRefusal::DeviceRevoked {
                device_id: d(),
                revoked_at: 1,
            },
            AuthRefusal::WrongDeviceKey { device_id: d() },
            AuthRefusal::StaleTimestamp {
                timestamp: 1,
                now: 1000,
                window_secs: 300,
            },
            AuthRefusal::ReplayedDeviceSignature {
                device_id: d(),
                window_secs: 300,
            },
            AuthRefusal::NonceLogFull {
                device_id: d(),
                cap: 64,
                window_secs: 300,
            },
            AuthRefusal::MalformedSignature {
                device_id: d(),
                curve: "ed25519",
                why: "short".into(),
            },
            AuthRefusal::MalformedRequest {
                field: "nonce",
                why: "short".into(),
            },
            AuthRefusal::DeviceTooNew {
                device_id: d(),
                registered_at: 1,
                usable_at: 2,
            },
            AuthRefusal::BadTotp,
            AuthRefusal::TotpReused { step_secs: 30 },
            AuthRefusal::TotpLocked { locked_until: 9 },
            AuthRefusal::BadPassword { remaining: 2 },
            AuthRefusal::PasswordLocked { locked_until: 9 },
            AuthRefusal::KycTierLimit {
                tier: KycTier::Basic,
                asset: "USDC".into(),
                kind: LimitKind::Single,
                limit: 1,
                attempted: 2,
                allowed_by: None,
            },
        ]
    }

    /// Guards the exhaustiveness of `every_refusal`: a variant added to the
    /// enum without a case there stops this match compiling.
    #[allow(dead_code)]
    fn listed(r: &AuthRefusal) {
        match r {
            AuthRefusal::UnknownDevice { .. }
            | AuthRefusal::DeviceRevoked { .. }
            | AuthRefusal::WrongDeviceKey { .. }
            | AuthRefusal::StaleTimestamp { .. }
            | AuthRefusal::ReplayedDeviceSignature { .. }
            | AuthRefusal::NonceLogFull { .. }
            | AuthRefusal::MalformedSignature { .. }
            | AuthRefusal::MalformedRequest { .. }
            | AuthRefusal::DeviceTooNew { .. }
            | AuthRefusal::BadTotp
            | AuthRefusal::TotpReused { .. }
            | AuthRefusal::TotpLocked { .. }
            | AuthRefusal::BadPassword { .. }
            | AuthRefusal::PasswordLocked { .. }
            | AuthRefusal::KycTierLimit { .. } => {}
        }
    }

    #[test]
    fn device_refusal_codes_are_exactly_the_counted_refusals() {
        let all = every_refusal();
        let mut codes: Vec<&str> = all.iter().map(AuthRefusal::code).collect();
        codes.sort_unstable();
        codes.dedup();
        assert_eq!(codes.len(), all.len(), "every variant has its own code");
        for r in &all {
            assert_eq!(
                DEVICE_REFUSAL_CODES.contains(&r.code()),
                r.counts_as_device_refusal(),
                "{}",
                r.code()
            );
        }
        let counted = all.iter().filter(|r| r.counts_as_device_refusal()).count();
        assert_eq!(
            DEVICE_REFUSAL_CODES.len(),
            counted,
            "no code listed twice or unknown"
        );
    }
}
