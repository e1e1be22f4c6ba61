//! Slot and token discovery and token initialization, serialized
//! process-wide.
//!
//! A PKCS#11 module may not tolerate two threads enumerating or changing its
//! slots at once, even with `CKF_OS_LOCKING_OK`. SoftHSM2 2.6 refreshes its
//! slot table inside `C_GetSlotList`; two threads doing that together trip
//! the assertion in `SlotManager::insertToken` (`result.second`) and abort
//! the process, which for a signer node means losing the node. Every call
//! that lists slots, reads token information during discovery, or
//! initializes a token or its user PIN therefore runs under [`SLOTS`], one
//! lock for every module of the process. Sessions and cryptographic
//! operations stay outside it: they never touch the slot table.
//!
//! No other module of this crate may call `get_slots_with_token`,
//! `get_all_slots`, `get_slot_list`, `get_token_info`, `init_token` or
//! `init_pin`; they go through the functions here.

use std::path::Path;
use std::sync::{Mutex, MutexGuard};

use cryptoki::context::Pkcs11;
#[cfg(feature = "test-support")]
use cryptoki::error::Error as CkError;
#[cfg(feature = "test-support")]
use cryptoki::session::UserType;
use cryptoki::slot::Slot;
#[cfg(feature = "test-support")]
use cryptoki::types::AuthPin;

use crate::error::{describe_ck, HsmError};
use crate::session::lock;

/// The process-wide lock around slot enumeration and token initialization.
static SLOTS: Mutex<()> = Mutex::new(());

/// Holds [`SLOTS`] for one discovery or initialization.
fn slot_lock() -> MutexGuard<'static, ()> {
    lock(&SLOTS)
}

/// Finds the one slot whose initialized token carries `label`.
///
/// Errors: [`HsmError::ModuleLoad`] when the slots cannot be listed,
/// [`HsmError::TokenNotFound`] (with the labels that were found),
/// [`HsmError::TokenAmbiguous`], [`HsmError::TokenNotReady`] when the token's
/// user PIN was never set.
pub(crate) fn find_token(ctx: &Pkcs11, module: &Path, label: &str) -> Result<Slot, HsmError> {
    let _guard = slot_lock();
    let slots = ctx
        .get_slots_with_token()
        .map_err(|e| HsmError::ModuleLoad {
            module: module.to_path_buf(),
            reason: format!("listing slots: {}", describe_ck(&e)),
        })?;
    let mut found = Vec::new();
    let mut matching = Vec::new();
    for slot in slots {
        let Ok(info) = ctx.get_token_info(slot) else {
            continue;
        };
        if !info.token_initialized() {
            continue;
        }
        let token_label = info.label().trim_end().to_string();
        if token_label == label {
            if !info.user_pin_initialized() {
                return Err(HsmError::TokenNotReady {
                    token: label.to_string(),
                    reason: "its user PIN was never initialized (softhsm2-util --init-pin, or pkcs11-tool --init-pin)".into(),
                });
            }
            matching.push(slot);
        }
        found.push(token_label);
    }
    match matching.as_slice() {
        [slot] => Ok(*slot),
        [] => Err(HsmError::TokenNotFound {
            module: module.to_path_buf(),
            label: label.to_string(),
            found,
        }),
        many => Err(HsmError::TokenAmbiguous {
            module: module.to_path_buf(),
            label: label.to_string(),
            count: many.len(),
        }),
    }
}

/// Which step of [`init_free_token`] failed, and the module's answer.
#[cfg(feature = "test-support")]
#[derive(Debug)]
pub(crate) struct InitFailure {
    /// The PKCS#11 call (`C_GetSlotList`, `C_InitToken`, ...).
    pub step: &'static str,
    /// The module's error, described.
    pub reason: String,
}

#[cfg(feature = "test-support")]
impl InitFailure {
    fn at(step: &'static str) -> impl Fn(CkError) -> InitFailure {
        move |e| InitFailure {
            step,
            reason: describe_ck(&e),
        }
    }
}

/// Initializes a token labelled `label` in the first slot without an
/// initialized token, and sets its user PIN (as the security officer, which
/// is what `softhsm2-util --init-token` does). Returns that slot.
///
/// The whole sequence holds the slot lock, so discovery in another thread
/// never sees the token before its user PIN is set. Used by the test
/// helper (`testing`); operators make tokens with their HSM's own tools.
#[cfg(feature = "test-support")]
pub(crate) fn init_free_token(
    ctx: &Pkcs11,
    label: &str,
    so_pin: &AuthPin,
    user_pin: &AuthPin,
) -> Result<Slot, InitFailure> {
    let _guard = slot_lock();
    let slots = ctx
        .get_all_slots()
        .map_err(InitFailure::at("C_GetSlotList"))?;
    let free = slots
        .into_iter()
        .find(|s| {
            ctx.get_token_info(*s)
                .map(|t| !t.token_initialized())
                .unwrap_or(false)
        })
        .ok_or(InitFailure {
            step: "C_GetSlotList",
            reason: "the module offers no slot without a token".into(),
        })?;
    ctx.init_token(free, so_pin, label)
        .map_err(InitFailure::at("C_InitToken"))?;
    let session = ctx
        .open_rw_session(free)
        .map_err(InitFailure::at("C_OpenSession"))?;
    session
        .login(UserType::So, Some(so_pin))
        .map_err(InitFailure::at("C_Login as SO"))?;
    session
        .init_pin(user_pin)
        .map_err(InitFailure::at("C_InitPIN"))?;
    session.logout().map_err(InitFailure::at("C_Logout"))?;
    Ok(free)
}
