//! One-time codes (TOTP, RFC 6238) for step-up authentication.
//!
//! HMAC-SHA-1, 30-second steps and 6 digits: what every authenticator app
//! reads from an `otpauth://` enrolment URI. The codes themselves come from
//! `totp-rs`; this module adds what a payment check needs on top: the
//! clock is an input, one step of skew either side, and a code is accepted
//! at most once (RFC 6238 §5.2) by requiring the accepted time step to
//! increase strictly.

use std::fmt;

use serde::{Deserialize, Deserializer, Serialize, Serializer};
use subtle::ConstantTimeEq;
use totp_rs::{Algorithm, TOTP};
use zeroize::{Zeroize, ZeroizeOnDrop, Zeroizing};

use super::error::{AuthError, AuthRefusal};

/// Length of a TOTP secret, bytes (160 bits, RFC 4226's recommendation).
pub const TOTP_SECRET_BYTES: usize = 20;

/// Seconds per time step.
pub const TOTP_STEP_SECS: u64 = 30;

/// Digits per code unless enrolled otherwise.
pub const TOTP_DIGITS: u8 = 6;

/// Steps of clock skew accepted either side of the current one.
pub const TOTP_SKEW_STEPS: u64 = 1;

/// Longest issuer or account name in an enrolment URI, in bytes.
pub const MAX_URI_LABEL_BYTES: usize = 128;

/// A TOTP secret: wiped on drop, never printed (`Debug` shows
/// `<redacted>`). In JSON it is hex, so the caller's storage must protect
/// it as it protects any key material.
#[derive(Clone, PartialEq, Eq, Zeroize, ZeroizeOnDrop)]
pub struct TotpSecret([u8; TOTP_SECRET_BYTES]);

impl TotpSecret {
    /// Wraps 20 random bytes from the caller's CSPRNG (nothing here draws
    /// randomness).
    pub fn new(bytes: [u8; TOTP_SECRET_BYTES]) -> TotpSecret {
        TotpSecret(bytes)
    }

    /// The secret in base32 without padding, as authenticator apps take it
    /// when typed in by hand.
    pub fn to_base32(&self) -> Zeroizing<String> {
        Zeroizing::new(totp(self, TOTP_DIGITS).map_or_else(String::new, |t| t.get_secret_base32()))
    }
}

impl fmt::Debug for TotpSecret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("TotpSecret(<redacted>)")
    }
}

impl Serialize for TotpSecret {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        let text = Zeroizing::new(hex::encode(self.0));
        s.serialize_str(&text)
    }
}

impl<'de> Deserialize<'de> for TotpSecret {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<TotpSecret, D::Error> {
        let text = Zeroizing::new(String::deserialize(d)?);
        let mut bytes = [0u8; TOTP_SECRET_BYTES];
        let decoded = hex::decode_to_slice(text.as_bytes(), &mut bytes);
        let secret = TotpSecret(bytes);
        bytes.zeroize();
        match decoded {
            Ok(()) => Ok(secret),
            Err(_) => Err(serde::de::Error::custom(format!(
                "a TOTP secret is {} hex digits",
                TOTP_SECRET_BYTES * 2
            ))),
        }
    }
}

/// A customer's one-time-code enrolment: plain data, persisted by the
/// caller (encrypted at rest: it holds the secret).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TotpEnrolment {
    /// The shared secret.
    secret: TotpSecret,
    /// Digits per code (6 to 8).
    #[serde(default = "default_digits", deserialize_with = "de_digits")]
    digits: u8,
    /// The time step of the last accepted code; a code is accepted only
    /// for a later step.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    last_used_step: Option<u64>,
    /// Wrong codes in a row (see [`TotpEnrolment::check_counting`]).
    #[serde(default, skip_serializing_if = "is_zero")]
    failures: u32,
    /// Codes are refused until then after too many wrong ones.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    locked_until: Option<u64>,
}

fn is_zero(n: &u32) -> bool {
    *n == 0
}

/// What [`TotpEnrolment::check_counting`] found: the next enrolment (to be
/// persisted whatever the result: wrong codes count) and the result.
#[derive(Debug, Clone, PartialEq, Eq)]
#[must_use = "persist the state even when the check failed: wrong codes count towards the lock"]
pub struct TotpCheck {
    /// The enrolment to persist.
    pub state: TotpEnrolment,
    /// Whether the code was accepted.
    pub result: Result<(), AuthRefusal>,
}

fn default_digits() -> u8 {
    TOTP_DIGITS
}

/// Reads `digits`, refusing a count no authenticator app produces.
fn de_digits<'de, D: Deserializer<'de>>(d: D) -> Result<u8, D::Error> {
    let digits = u8::deserialize(d)?;
    check_digits(digits).map_err(serde::de::Error::custom)?;
    Ok(digits)
}

fn check_digits(digits: u8) -> Result<(), AuthError> {
    if !(6..=8).contains(&digits) {
        return Err(AuthError::Totp(format!(
            "{digits} digits per code; RFC 4226 allows 6 to 8"
        )));
    }
    Ok(())
}

/// The `totp-rs` generator for a secret. Its copy of the secret is wiped
/// when it drops (the crate's `zeroize` feature).
fn totp(secret: &TotpSecret, digits: u8) -> Option<TOTP> {
    TOTP::new(
        Algorithm::SHA1,
        usize::from(digits),
        // Skew and step are applied here, not by `totp-rs` (whose own
        // check reads no previous step and underflows before t = 30).
        0,
        TOTP_STEP_SECS,
        secret.0.to_vec(),
    )
    .ok()
}

/// Percent-encodes everything but RFC 3986's unreserved characters.
fn percent_encode(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_' | b'~') {
            out.push(char::from(b));
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

impl TotpEnrolment {
    /// Enrols a secret of 20 random bytes drawn by the caller, with 6-digit
    /// codes.
    pub fn enrol(secret: TotpSecret) -> TotpEnrolment {
        TotpEnrolment {
            secret,
            digits: TOTP_DIGITS,
            last_used_step: None,
            failures: 0,
            locked_until: None,
        }
    }

    /// Enrols with 6, 7 or 8 digits per code.
    pub fn enrol_with_digits(secret: TotpSecret, digits: u8) -> Result<TotpEnrolment, AuthError> {
        check_digits(digits)?;
        Ok(TotpEnrolment {
            secret,
            digits,
            last_used_step: None,
            failures: 0,
            locked_until: None,
        })
    }

    /// Digits per code.
    pub fn digits(&self) -> u8 {
        self.digits
    }

    /// The time step of the last accepted code.
    pub fn last_used_step(&self) -> Option<u64> {
        self.last_used_step
    }

    /// The `otpauth://totp/` URI an authenticator app enrols from (usually
    /// shown as a QR code). It holds the secret: show it once, never log it.
    pub fn provisioning_uri(
        &self,
        issuer: &str,
        account: &str,
    ) -> Result<Zeroizing<String>, AuthError> {
        for (what, v) in [("issuer", issuer), ("account", account)] {
            if v.is_empty() || v.len() > MAX_URI_LABEL_BYTES {
                return Err(AuthError::Totp(format!(
                    "the {what} name is {} bytes; it must be 1 to {MAX_URI_LABEL_BYTES}",
                    v.len()
                )));
            }
        }
        let secret = self.secret.to_base32();
        let issuer = percent_encode(issuer);
        Ok(Zeroizing::new(format!(
            "otpauth://totp/{issuer}:{}?secret={}&issuer={issuer}&algorithm=SHA1&digits={}&period={TOTP_STEP_SECS}",
            percent_encode(account),
            secret.as_str(),
            self.digits
        )))
    }

    /// The code for time `at` (Unix seconds): for tests and for showing a
    /// code during enrolment, never for checking one (use
    /// [`TotpEnrolment::check`]).
    pub fn code_at(&self, at: u64) -> Zeroizing<String> {
        Zeroizing::new(totp(&self.secret, self.digits).map_or_else(String::new, |t| t.generate(at)))
    }

    /// Checks `code` at `now` and returns the enrolment with its step
    /// recorded.
    ///
    /// Accepted: the code of the current step or of one step either side
    /// (a phone clock 30 s off, a code typed as it changed), for a step
    /// after the last accepted one. Refused: `bad_totp` when it is no such
    /// code, `totp_reused` when it is the code of a step already used (or
    /// an older one). Failures change nothing: throttling repeated wrong
    /// codes is the caller's (the refusal counts, the review queue).
    pub fn check(&self, code: &str, now: u64) -> Result<TotpEnrolment, AuthRefusal> {
        let digits = usize::from(self.digits);
        if code.len() != digits || !code.bytes().all(|b| b.is_ascii_digit()) {
            return Err(AuthRefusal::BadTotp);
        }
        let Some(generator) = totp(&self.secret, self.digits) else {
            return Err(AuthRefusal::BadTotp);
        };
        let current = now / TOTP_STEP_SECS;
        let first = current.saturating_sub(TOTP_SKEW_STEPS);
        let last = current.saturating_add(TOTP_SKEW_STEPS);
        // Compare against every candidate without stopping early, in
        // constant time, so timing tells nothing about which step matched.
        let mut matched: Option<u64> = None;
        for step in first..=last {
            let Some(at) = step.checked_mul(TOTP_STEP_SECS) else {
                continue;
            };
            let expected = Zeroizing::new(generator.generate(at));
            if bool::from(expected.as_bytes().ct_eq(code.as_bytes())) {
                matched = Some(step);
            }
        }
        let Some(step) = matched else {
            return Err(AuthRefusal::BadTotp);
        };
        if self.last_used_step.is_some_and(|last| step <= last) {
            return Err(AuthRefusal::TotpReused {
                step_secs: TOTP_STEP_SECS,
            });
        }
        let mut next = self.clone();
        next.last_used_step = Some(step);
        Ok(next)
    }

    /// Until when codes are locked, if they are at `now`.
    pub fn locked_until(&self, now: u64) -> Option<u64> {
        self.locked_until.filter(|u| now < *u)
    }

    /// [`TotpEnrolment::check`] with a brake on guessing: `max_failures`
    /// wrong codes in a row lock the codes for `lock_secs` (`totp_locked`,
    /// the code not even compared while locked); a right code resets the
    /// count. A reused code is the customer's own, so it does not count.
    /// Six digits are a million codes, three of them right at any time: at
    /// 5 tries per 15 minutes a guesser needs about ten years on average.
    pub fn check_counting(
        &self,
        code: &str,
        now: u64,
        max_failures: u32,
        lock_secs: u64,
    ) -> TotpCheck {
        if let Some(until) = self.locked_until(now) {
            return TotpCheck {
                state: self.clone(),
                result: Err(AuthRefusal::TotpLocked {
                    locked_until: until,
                }),
            };
        }
        match self.check(code, now) {
            Ok(mut next) => {
                next.failures = 0;
                next.locked_until = None;
                TotpCheck {
                    state: next,
                    result: Ok(()),
                }
            }
            Err(AuthRefusal::BadTotp) => {
                let mut next = self.clone();
                next.failures = next.failures.saturating_add(1);
                if next.failures >= max_failures.max(1) {
                    next.failures = 0;
                    next.locked_until = Some(now.saturating_add(lock_secs));
                }
                TotpCheck {
                    state: next,
                    result: Err(AuthRefusal::BadTotp),
                }
            }
            Err(other) => TotpCheck {
                state: self.clone(),
                result: Err(other),
            },
        }
    }
}
