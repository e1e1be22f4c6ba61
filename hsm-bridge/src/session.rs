//! The [`Hsm`] handle: one PKCS#11 context per module per process, the token
//! found by label, a user login, and a pool of sessions shared by threads.
//!
//! PKCS#11 rules this module takes care of:
//!
//! * `C_Initialize` runs once per module per process. A process-wide map,
//!   keyed by the module's canonical path, holds one [`Pkcs11`] context per
//!   module; `CKR_CRYPTOKI_ALREADY_INITIALIZED` (another component of the
//!   process got there first) is accepted. The contexts are never finalized.
//! * Slots are found by token label, never by number (SoftHSM2 renumbers
//!   slots when tokens are initialized), and only under the process-wide
//!   slot lock of [`crate::slots`]: SoftHSM2 aborts the process when two
//!   threads enumerate slots at once.
//! * Login state belongs to the application, not the session: every new
//!   session logs in and `CKR_USER_ALREADY_LOGGED_IN` counts as success. So
//!   that a second handle with a wrong PIN is not silently let in, the
//!   process remembers a salted digest of the PIN that logged in to each
//!   token and compares it.
//! * A session is `Send` but not `Sync`: each operation borrows one session
//!   from the pool (`Mutex<Vec<Session>>`), opening a new one when the pool
//!   is empty, and returns it afterwards. A session that the token reports
//!   closed or logged out is dropped and the operation retried once on a
//!   fresh session.
//!
//! [`Hsm`] is `Send + Sync` and cheap to clone (an `Arc`).

use std::collections::HashMap;
use std::fmt;
use std::path::{Path, PathBuf};
use std::sync::{Arc, LazyLock, Mutex, MutexGuard};

use cryptoki::context::{CInitializeArgs, CInitializeFlags, Pkcs11};
use cryptoki::error::{Error as CkError, RvError};
use cryptoki::session::{Session, UserType};
use cryptoki::slot::Slot;
use cryptoki::types::AuthPin;
use rand_core::{OsRng, RngCore};
use sha2::{Digest, Sha256};

use crate::config::HsmConfig;
use crate::error::{describe_ck, HsmError};
use crate::slots::find_token;

/// Sessions kept open for reuse per [`Hsm`]; more may be open at a time
/// under load, the extra ones are closed when returned.
pub const MAX_IDLE_SESSIONS: usize = 16;

/// One initialized context per module (canonical path).
static MODULES: LazyLock<Mutex<HashMap<PathBuf, Pkcs11>>> =
    LazyLock::new(|| Mutex::new(HashMap::new()));

/// A token in this process: module canonical path and slot id.
type TokenKey = (PathBuf, u64);

/// Salted SHA-256 of the PIN that logged in to each token.
static LOGINS: LazyLock<Mutex<HashMap<TokenKey, [u8; 32]>>> =
    LazyLock::new(|| Mutex::new(HashMap::new()));

/// Per-process salt of the PIN digests in [`LOGINS`].
static PIN_SALT: LazyLock<[u8; 16]> = LazyLock::new(|| {
    let mut salt = [0u8; 16];
    // A failing RNG leaves a zero salt: the digest then only guards against
    // a wrong PIN, which it still does.
    let _ = OsRng.try_fill_bytes(&mut salt);
    salt
});

/// Locks a mutex, recovering from poisoning (the protected data is always
/// left consistent by this crate: a panicking holder cannot tear it).
pub(crate) fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

fn pin_digest(pin: &str) -> [u8; 32] {
    let mut h = Sha256::new();
    h.update(b"keyfold/hsm-pin-check/v1");
    h.update(*PIN_SALT);
    h.update(pin.as_bytes());
    h.finalize().into()
}

fn ct_eq(a: &[u8; 32], b: &[u8; 32]) -> bool {
    a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

/// The process-wide context of `module` (canonical path), initializing it on
/// first use.
pub(crate) fn module_context(module: &Path) -> Result<(PathBuf, Pkcs11), HsmError> {
    if !module.exists() {
        return Err(HsmError::ModuleMissing {
            module: module.to_path_buf(),
        });
    }
    let canonical = module.canonicalize().map_err(|e| HsmError::ModuleLoad {
        module: module.to_path_buf(),
        reason: e.to_string(),
    })?;
    let mut modules = lock(&MODULES);
    if let Some(ctx) = modules.get(&canonical) {
        return Ok((canonical, ctx.clone()));
    }
    let ctx = Pkcs11::new(&canonical).map_err(|e| HsmError::ModuleLoad {
        module: module.to_path_buf(),
        reason: e.to_string(),
    })?;
    match ctx.initialize(CInitializeArgs::new(CInitializeFlags::OS_LOCKING_OK)) {
        Ok(()) => {}
        Err(CkError::Pkcs11(RvError::CryptokiAlreadyInitialized, _)) => {
            tracing::debug!(module = %canonical.display(), "PKCS#11 module was already initialized in this process");
        }
        Err(e) => {
            return Err(HsmError::ModuleLoad {
                module: module.to_path_buf(),
                reason: format!("C_Initialize: {}", describe_ck(&e)),
            })
        }
    }
    tracing::info!(module = %canonical.display(), "PKCS#11 module initialized");
    modules.insert(canonical.clone(), ctx.clone());
    Ok((canonical, ctx))
}

/// Whether this process already initialized `module` through this crate.
#[cfg(feature = "test-support")]
pub(crate) fn module_initialized(module: &Path) -> bool {
    module
        .canonicalize()
        .map(|canonical| lock(&MODULES).contains_key(&canonical))
        .unwrap_or(false)
}

/// Whether an operation error means the session itself is unusable.
fn session_is_dead(e: &CkError) -> bool {
    matches!(
        e,
        CkError::Pkcs11(
            RvError::SessionHandleInvalid
                | RvError::SessionClosed
                | RvError::UserNotLoggedIn
                | RvError::DeviceRemoved
                | RvError::TokenNotPresent,
            _
        )
    )
}

struct Inner {
    ctx: Pkcs11,
    module: PathBuf,
    slot: Slot,
    token_label: String,
    pin_source: String,
    pin: AuthPin,
    pin_digest: [u8; 32],
    pool: Mutex<Vec<Session>>,
}

/// An open, logged-in token. Cheap to clone, `Send + Sync`.
///
/// `Debug` shows the module, the token label and where the PIN came from,
/// never the PIN.
#[derive(Clone)]
pub struct Hsm {
    inner: Arc<Inner>,
}

impl fmt::Debug for Hsm {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Hsm")
            .field("module", &self.inner.module)
            .field("token_label", &self.inner.token_label)
            .field(
                "pin",
                &format_args!("<redacted> (from {})", self.inner.pin_source),
            )
            .finish()
    }
}

impl Hsm {
    /// Loads the module (once per process), finds the token by label, reads
    /// the PIN from its source and logs in as the user.
    ///
    /// Errors name what to fix: [`HsmError::ModuleMissing`],
    /// [`HsmError::TokenNotFound`] (with the labels that were found),
    /// [`HsmError::PinUnavailable`], [`HsmError::WrongPin`] ...
    pub fn open(config: &HsmConfig) -> Result<Hsm, HsmError> {
        config.validate()?;
        let (module, ctx) = module_context(&config.module)?;
        let slot = find_token(&ctx, &config.module, &config.token_label)?;
        let pin = config.pin.read(&config.token_label)?;
        let digest = pin_digest(&pin);
        let hsm = Hsm {
            inner: Arc::new(Inner {
                ctx,
                module,
                slot,
                token_label: config.token_label.clone(),
                pin_source: config.pin.to_string(),
                pin: AuthPin::from(pin.as_str()),
                pin_digest: digest,
                pool: Mutex::new(Vec::new()),
            }),
        };
        // Log in now so that a wrong PIN shows at startup.
        let session = hsm.new_session()?;
        hsm.return_session(session);
        tracing::info!(
            token = %config.token_label,
            module = %config.module.display(),
            pin_source = %config.pin,
            "HSM token opened"
        );
        Ok(hsm)
    }

    /// The token's label.
    pub fn token_label(&self) -> &str {
        &self.inner.token_label
    }

    /// The PKCS#11 module's canonical path.
    pub fn module(&self) -> &Path {
        &self.inner.module
    }

    /// Fills `out` from the token's random generator.
    pub fn generate_random(&self, out: &mut [u8]) -> Result<(), HsmError> {
        self.with_session(|s| s.generate_random_slice(out))?
            .map_err(|e| self.ck_error("generating random bytes", &e))
    }

    /// Sessions currently idle in the pool (for tests and metrics).
    pub fn idle_sessions(&self) -> usize {
        lock(&self.inner.pool).len()
    }

    /// Builds an [`HsmError::Pkcs11`] for a failed operation on this token.
    pub(crate) fn ck_error(&self, op: impl Into<String>, e: &CkError) -> HsmError {
        HsmError::Pkcs11 {
            token: self.inner.token_label.clone(),
            op: op.into(),
            reason: describe_ck(e),
        }
    }

    fn new_session(&self) -> Result<Session, HsmError> {
        let inner = &self.inner;
        let session = inner
            .ctx
            .open_rw_session(inner.slot)
            .map_err(|e| self.ck_error("opening a session", &e))?;
        let key = (inner.module.clone(), inner.slot.id());
        match session.login(UserType::User, Some(&inner.pin)) {
            Ok(()) => {
                lock(&LOGINS).insert(key, inner.pin_digest);
                Ok(session)
            }
            Err(CkError::Pkcs11(RvError::UserAlreadyLoggedIn, _)) => {
                // Logged in by an earlier session of this process: accept only
                // the PIN that did it.
                match lock(&LOGINS).get(&key) {
                    Some(known) if !ct_eq(known, &inner.pin_digest) => Err(HsmError::WrongPin {
                        token: inner.token_label.clone(),
                        pin_source: inner.pin_source.clone(),
                    }),
                    Some(_) => Ok(session),
                    None => {
                        tracing::warn!(
                            token = %inner.token_label,
                            "token was logged in by another component of this process; PIN not re-checked"
                        );
                        Ok(session)
                    }
                }
            }
            Err(CkError::Pkcs11(RvError::PinIncorrect | RvError::PinInvalid | RvError::PinLenRange, _)) => {
                Err(HsmError::WrongPin {
                    token: inner.token_label.clone(),
                    pin_source: inner.pin_source.clone(),
                })
            }
            Err(CkError::Pkcs11(RvError::PinLocked, _)) => Err(HsmError::PinLocked {
                token: inner.token_label.clone(),
            }),
            Err(CkError::Pkcs11(RvError::UserPinNotInitialized, _)) => {
                Err(HsmError::TokenNotReady {
                    token: inner.token_label.clone(),
                    reason: "its user PIN was never initialized (softhsm2-util --init-pin, or pkcs11-tool --init-pin)".into(),
                })
            }
            Err(e) => Err(self.ck_error("logging in", &e)),
        }
    }

    fn take_session(&self) -> Result<Session, HsmError> {
        let pooled = lock(&self.inner.pool).pop();
        match pooled {
            Some(s) => Ok(s),
            None => self.new_session(),
        }
    }

    fn return_session(&self, session: Session) {
        let mut pool = lock(&self.inner.pool);
        if pool.len() < MAX_IDLE_SESSIONS {
            pool.push(session);
        }
    }

    /// Runs `op` on a pooled, logged-in session.
    ///
    /// The outer error is failing to get a session at all; the inner result
    /// is the operation's own. A session the token reports dead is dropped
    /// and `op` retried once on a fresh one.
    pub(crate) fn with_session<T>(
        &self,
        mut op: impl FnMut(&Session) -> Result<T, CkError>,
    ) -> Result<Result<T, CkError>, HsmError> {
        let session = self.take_session()?;
        match op(&session) {
            Err(e) if session_is_dead(&e) => {
                tracing::debug!(token = %self.inner.token_label, error = %describe_ck(&e), "dropping a dead PKCS#11 session");
                drop(session);
                let fresh = self.new_session()?;
                let result = op(&fresh);
                match &result {
                    Err(e) if session_is_dead(e) => drop(fresh),
                    _ => self.return_session(fresh),
                }
                Ok(result)
            }
            result => {
                self.return_session(session);
                Ok(result)
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hsm_is_send_sync_clone() {
        fn assert_traits<T: Send + Sync + Clone + 'static>() {}
        assert_traits::<Hsm>();
    }

    #[test]
    fn pin_digest_depends_on_pin() {
        assert!(ct_eq(&pin_digest("1234"), &pin_digest("1234")));
        assert!(!ct_eq(&pin_digest("1234"), &pin_digest("1235")));
    }

    #[test]
    fn missing_module_is_named() {
        let err = module_context(Path::new("/nonexistent/libx.so")).unwrap_err();
        assert_eq!(
            err.to_string(),
            "PKCS#11 module /nonexistent/libx.so does not exist: install softhsm2 or fix `module`"
        );
    }
}
