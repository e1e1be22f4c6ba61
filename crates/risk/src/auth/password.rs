//! Payment passwords: argon2id hashes in PHC string form, with a lockout
//! after repeated failures.
//!
//! A payment password (often a short PIN) is the weakest factor, so it is
//! hashed with a memory-hard function (argon2id at OWASP's parameters by
//! default: 19 MiB, 2 passes, 1 lane) and guessing online is cut short: after
//! `max_failures` wrong passwords in a row the password is locked, for
//! `lockout_secs` and twice as long at each further lock, up to
//! `max_lockout_secs`. A locked password is not even hashed, so guesses
//! during a lock tell nothing.

use std::fmt;

use argon2::password_hash::{PasswordHash, PasswordHasher, PasswordVerifier, SaltString};
use argon2::{Algorithm, Argon2, Params, Version};
use serde::{Deserialize, Deserializer, Serialize};
use zeroize::Zeroizing;

use super::error::{AuthError, AuthRefusal};

/// Longest payment password, bytes.
pub const MAX_PASSWORD_BYTES: usize = 256;

/// Length of the salt [`PasswordState::set`] takes, bytes.
pub const PASSWORD_SALT_BYTES: usize = 16;

/// Largest argon2 memory cost accepted in a stored hash, KiB (256 MiB): a
/// damaged or hostile stored hash must not make one check allocate more.
pub const MAX_MEMORY_KIB: u32 = 256 * 1024;

/// Largest argon2 pass count accepted in a stored hash.
pub const MAX_ITERATIONS: u32 = 16;

/// Largest argon2 lane count accepted in a stored hash.
pub const MAX_PARALLELISM: u32 = 16;

/// Longest PHC string read, bytes.
pub const MAX_PHC_BYTES: usize = 256;

/// A payment password as the customer typed it: wiped on drop, never
/// printed (`Debug` shows `<redacted>`).
#[derive(Clone)]
pub struct PaymentPassword(Zeroizing<String>);

impl PaymentPassword {
    /// Takes a password of 1..=[`MAX_PASSWORD_BYTES`] bytes.
    pub fn new(password: String) -> Result<PaymentPassword, AuthError> {
        let password = Zeroizing::new(password);
        if password.is_empty() || password.len() > MAX_PASSWORD_BYTES {
            return Err(AuthError::Password(format!(
                "{} bytes; a payment password is 1 to {MAX_PASSWORD_BYTES} bytes",
                password.len()
            )));
        }
        Ok(PaymentPassword(password))
    }

    fn bytes(&self) -> &[u8] {
        self.0.as_bytes()
    }
}

impl fmt::Debug for PaymentPassword {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("PaymentPassword(<redacted>)")
    }
}

impl<'de> Deserialize<'de> for PaymentPassword {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<PaymentPassword, D::Error> {
        PaymentPassword::new(String::deserialize(d)?).map_err(serde::de::Error::custom)
    }
}

/// Password hashing and lockout settings (TOML or JSON; every field has a
/// default).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct PasswordConfig {
    /// Consecutive failures that lock the password (default 5).
    pub max_failures: u32,
    /// Length of the first lock, seconds (default 900, 15 minutes).
    pub lockout_secs: u64,
    /// Longest lock, seconds (default 86,400, 24 hours).
    pub max_lockout_secs: u64,
    /// argon2id memory for new hashes, KiB (default 19,456).
    pub memory_kib: u32,
    /// argon2id passes for new hashes (default 2).
    pub iterations: u32,
    /// argon2id lanes for new hashes (default 1).
    pub parallelism: u32,
}

impl Default for PasswordConfig {
    fn default() -> PasswordConfig {
        PasswordConfig {
            max_failures: 5,
            lockout_secs: 15 * 60,
            max_lockout_secs: 24 * 3600,
            memory_kib: Params::DEFAULT_M_COST,
            iterations: Params::DEFAULT_T_COST,
            parallelism: Params::DEFAULT_P_COST,
        }
    }
}

impl PasswordConfig {
    /// Checks the settings: at least one failure before a lock, locks of at
    /// least a second, a longest lock no shorter than the first, argon2
    /// parameters within argon2's and this module's bounds.
    pub fn validate(&self) -> Result<(), AuthError> {
        let bad = |why: String| Err(AuthError::Password(why));
        if self.max_failures == 0 {
            return bad("max_failures must be at least 1".into());
        }
        if self.lockout_secs == 0 || self.max_lockout_secs < self.lockout_secs {
            return bad(format!(
                "lockout_secs ({}) must be at least 1 and at most max_lockout_secs ({})",
                self.lockout_secs, self.max_lockout_secs
            ));
        }
        self.params().map(|_| ())
    }

    fn params(&self) -> Result<Params, AuthError> {
        check_cost(self.memory_kib, self.iterations, self.parallelism)?;
        Params::new(self.memory_kib, self.iterations, self.parallelism, None)
            .map_err(|e| AuthError::Password(format!("argon2 parameters: {e}")))
    }

    /// The lock length for the `locks`-th lock in a row (1-based):
    /// `lockout_secs`, doubling, capped at `max_lockout_secs`.
    pub fn lock_length(&self, locks: u32) -> u64 {
        let doublings = locks.saturating_sub(1).min(63);
        self.lockout_secs
            .saturating_mul(1u64 << doublings)
            .min(self.max_lockout_secs)
    }
}

fn check_cost(memory_kib: u32, iterations: u32, parallelism: u32) -> Result<(), AuthError> {
    if memory_kib > MAX_MEMORY_KIB || iterations > MAX_ITERATIONS || parallelism > MAX_PARALLELISM {
        return Err(AuthError::Password(format!(
            "argon2 cost m={memory_kib} KiB, t={iterations}, p={parallelism} is above the bounds \
             m={MAX_MEMORY_KIB}, t={MAX_ITERATIONS}, p={MAX_PARALLELISM}"
        )));
    }
    Ok(())
}

/// Checks a stored hash: an argon2id PHC string with a salt, an output and
/// costs within bounds.
fn check_phc(phc: &str) -> Result<(), AuthError> {
    let bad = |why: String| AuthError::Password(format!("stored hash: {why}"));
    if phc.len() > MAX_PHC_BYTES {
        return Err(bad(format!(
            "{} bytes, the limit is {MAX_PHC_BYTES}",
            phc.len()
        )));
    }
    let parsed = PasswordHash::new(phc).map_err(|e| bad(format!("not a PHC string: {e}")))?;
    if parsed.algorithm != argon2::ARGON2ID_IDENT {
        return Err(bad(format!("algorithm {}, not argon2id", parsed.algorithm)));
    }
    if parsed.salt.is_none() || parsed.hash.is_none() {
        return Err(bad("no salt or no hash".into()));
    }
    let params = Params::try_from(&parsed).map_err(|e| bad(format!("parameters: {e}")))?;
    check_cost(params.m_cost(), params.t_cost(), params.p_cost())
}

/// A customer's payment password: plain data, persisted by the caller.
/// `Debug` leaves out the hash (with it, a short PIN is guessed offline).
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(try_from = "StoredPassword", into = "StoredPassword")]
pub struct PasswordState {
    phc: String,
    failures: u32,
    locked_until: Option<u64>,
    locks: u32,
}

impl fmt::Debug for PasswordState {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("PasswordState")
            .field("phc", &"<redacted>")
            .field("failures", &self.failures)
            .field("locked_until", &self.locked_until)
            .field("locks", &self.locks)
            .finish()
    }
}

/// The stored shape of a [`PasswordState`], checked when read back.
#[derive(Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct StoredPassword {
    phc: String,
    #[serde(default)]
    failures: u32,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    locked_until: Option<u64>,
    #[serde(default)]
    locks: u32,
}

impl TryFrom<StoredPassword> for PasswordState {
    type Error = AuthError;
    fn try_from(s: StoredPassword) -> Result<PasswordState, AuthError> {
        check_phc(&s.phc)?;
        Ok(PasswordState {
            phc: s.phc,
            failures: s.failures,
            locked_until: s.locked_until,
            locks: s.locks,
        })
    }
}

impl From<PasswordState> for StoredPassword {
    fn from(s: PasswordState) -> StoredPassword {
        StoredPassword {
            phc: s.phc,
            failures: s.failures,
            locked_until: s.locked_until,
            locks: s.locks,
        }
    }
}

/// The result of [`PasswordState::check`]: the state to persist, whatever
/// the result (a failure counts towards the lock).
#[derive(Debug, Clone, PartialEq, Eq)]
#[must_use = "persist the state even when the check failed: failures count towards the lock"]
pub struct PasswordCheck {
    /// The state after this attempt.
    pub state: PasswordState,
    /// Whether the password was accepted.
    pub result: Result<(), AuthRefusal>,
}

impl PasswordState {
    /// Hashes a new password with argon2id under `config`'s costs and a
    /// salt of 16 random bytes drawn by the caller. Failures and locks
    /// start from zero.
    pub fn set(
        password: &PaymentPassword,
        salt: &[u8; PASSWORD_SALT_BYTES],
        config: &PasswordConfig,
    ) -> Result<PasswordState, AuthError> {
        config.validate()?;
        let salt =
            SaltString::encode_b64(salt).map_err(|e| AuthError::Password(format!("salt: {e}")))?;
        let argon = Argon2::new(Algorithm::Argon2id, Version::V0x13, config.params()?);
        let phc = argon
            .hash_password(password.bytes(), &salt)
            .map_err(|e| AuthError::Password(format!("hashing: {e}")))?
            .to_string();
        Ok(PasswordState {
            phc,
            failures: 0,
            locked_until: None,
            locks: 0,
        })
    }

    /// The argon2id hash, as a PHC string.
    pub fn phc(&self) -> &str {
        &self.phc
    }

    /// Consecutive failures since the last success or lock.
    pub fn failures(&self) -> u32 {
        self.failures
    }

    /// The end of the latest lock, if there was one since the last success.
    pub fn locked_until(&self) -> Option<u64> {
        self.locked_until
    }

    /// Locks in a row since the last success (each lasts twice as long as
    /// the one before).
    pub fn locks(&self) -> u32 {
        self.locks
    }

    /// Whether the password is locked at `now`.
    pub fn is_locked(&self, now: u64) -> bool {
        self.locked_until.is_some_and(|until| now < until)
    }

    /// Checks a password at `now`.
    ///
    /// * Locked: `password_locked`, without hashing the attempt.
    /// * Right: accepted; failures and locks reset.
    /// * Wrong: `bad_password` with the attempts left, or, at the
    ///   `max_failures`-th failure in a row, `password_locked` until `now`
    ///   plus the lock length (see [`PasswordConfig::lock_length`]).
    pub fn check(
        &self,
        password: &PaymentPassword,
        now: u64,
        config: &PasswordConfig,
    ) -> PasswordCheck {
        if let Some(until) = self.locked_until.filter(|u| now < *u) {
            return PasswordCheck {
                state: self.clone(),
                result: Err(AuthRefusal::PasswordLocked {
                    locked_until: until,
                }),
            };
        }
        // The costs come from the stored hash (checked when the state was
        // built or read), so changing the config affects new hashes only.
        let right = PasswordHash::new(&self.phc).is_ok_and(|parsed| {
            Argon2::default()
                .verify_password(password.bytes(), &parsed)
                .is_ok()
        });
        let mut next = self.clone();
        if right {
            next.failures = 0;
            next.locks = 0;
            next.locked_until = None;
            return PasswordCheck {
                state: next,
                result: Ok(()),
            };
        }
        next.failures = next.failures.saturating_add(1);
        let max = config.max_failures.max(1);
        if next.failures >= max {
            next.failures = 0;
            next.locks = next.locks.saturating_add(1);
            let until = now.saturating_add(config.lock_length(next.locks));
            next.locked_until = Some(until);
            return PasswordCheck {
                state: next,
                result: Err(AuthRefusal::PasswordLocked {
                    locked_until: until,
                }),
            };
        }
        let remaining = max - next.failures;
        PasswordCheck {
            state: next,
            result: Err(AuthRefusal::BadPassword { remaining }),
        }
    }
}
