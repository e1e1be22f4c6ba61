//! Errors of the HSM bridge.
//!
//! Every variant names what to act on: the PKCS#11 module path, the token
//! label, the key label, where the PIN came from. No variant ever carries a
//! PIN or key material.

use std::fmt;
use std::path::PathBuf;

/// What a key on the token is used for; decides how a missing key is
/// explained in [`HsmError::KeyMissing`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum KeyRole {
    /// The AES-256 key that seals signer secrets ([`crate::HsmSealer`]).
    Sealing,
    /// A cold wallet key ([`crate::ColdKey`]).
    Cold,
    /// The audit log's checkpoint key ([`crate::HsmAuditSigner`]).
    Audit,
}

impl KeyRole {
    /// What losing this key means and what to do about it.
    pub fn consequence(self) -> &'static str {
        match self {
            KeyRole::Sealing => {
                "shares sealed under it cannot be opened; restore the token (or the key) \
                 from backup, and do not create a new sealing key over existing sealed data"
            }
            KeyRole::Cold => {
                "the cold wallet cannot sign; restore the token (or the key) from backup"
            }
            KeyRole::Audit => {
                "checkpoints cannot be signed with this key; restore it from backup, or \
                 create a new audit key and publish its public key to the auditors"
            }
        }
    }
}

impl fmt::Display for KeyRole {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            KeyRole::Sealing => "sealing key",
            KeyRole::Cold => "cold key",
            KeyRole::Audit => "audit checkpoint key",
        })
    }
}

/// Errors of the HSM bridge.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum HsmError {
    /// The configuration is invalid before anything was loaded.
    #[error("invalid HSM configuration: {field}: {reason}")]
    Config {
        /// The configuration field (`module`, `token_label`, `pin` ...).
        field: &'static str,
        /// What is wrong with it.
        reason: String,
    },
    /// The PKCS#11 module file does not exist.
    #[error("PKCS#11 module {} does not exist: install softhsm2 or fix `module`", .module.display())]
    ModuleMissing {
        /// The configured module path.
        module: PathBuf,
    },
    /// The PKCS#11 module exists but could not be loaded or initialized.
    #[error("PKCS#11 module {} could not be loaded: {reason}", .module.display())]
    ModuleLoad {
        /// The configured module path.
        module: PathBuf,
        /// The loader's or `C_Initialize`'s error.
        reason: String,
    },
    /// No token with the configured label is present.
    #[error(
        "no token labelled `{label}` in PKCS#11 module {}; tokens found: [{}]; create it \
         (testnets/softhsm/setup.sh DIR {label}) or fix `token_label`{}",
        .module.display(),
        .found.iter().map(|l| format!("`{l}`")).collect::<Vec<_>>().join(", "),
        if .module.to_string_lossy().contains("softhsm") {
            " (SoftHSM2 reads its token directory from SOFTHSM2_CONF)"
        } else {
            ""
        }
    )]
    TokenNotFound {
        /// The configured module path.
        module: PathBuf,
        /// The configured token label.
        label: String,
        /// The labels of the tokens that were found.
        found: Vec<String>,
    },
    /// Several tokens carry the configured label.
    #[error("{count} tokens are labelled `{label}` in PKCS#11 module {}: relabel all but one", .module.display())]
    TokenAmbiguous {
        /// The configured module path.
        module: PathBuf,
        /// The configured token label.
        label: String,
        /// How many tokens carry it.
        count: usize,
    },
    /// The token exists but cannot be used yet.
    #[error("token `{token}` is not ready: {reason}")]
    TokenNotReady {
        /// The token label.
        token: String,
        /// Why (e.g. its user PIN was never initialized).
        reason: String,
    },
    /// The PIN could not be read from its configured source.
    #[error("cannot read the PIN for token `{token}` from {pin_source}: {reason}")]
    PinUnavailable {
        /// The token label.
        token: String,
        /// Where the PIN was to come from (`env var X` or `file /p`).
        pin_source: String,
        /// What went wrong.
        reason: String,
    },
    /// The token refused the PIN.
    #[error("token `{token}` refused the PIN from {pin_source}: fix the PIN there")]
    WrongPin {
        /// The token label.
        token: String,
        /// Where the PIN came from (`env var X` or `file /p`).
        pin_source: String,
    },
    /// The token's user PIN is locked after too many wrong attempts.
    #[error("the user PIN of token `{token}` is locked: the security officer must reset it")]
    PinLocked {
        /// The token label.
        token: String,
    },
    /// A key label is not acceptable.
    #[error("invalid key label `{label}`: {reason}")]
    BadLabel {
        /// The refused label (escaped for printing).
        label: String,
        /// Why.
        reason: String,
    },
    /// A key with this label is not on the token.
    #[error("no {role} labelled `{label}` on token `{token}`")]
    KeyNotFound {
        /// The kind of key looked for.
        role: KeyRole,
        /// The token label.
        token: String,
        /// The key label.
        label: String,
    },
    /// A key that was in use disappeared from the token.
    #[error("the {role} `{label}` is missing from token `{token}`: {}", .role.consequence())]
    KeyMissing {
        /// The kind of key.
        role: KeyRole,
        /// The token label.
        token: String,
        /// The key label.
        label: String,
    },
    /// An object with this label already exists (keys are never overwritten).
    #[error("an object labelled `{label}` already exists on token `{token}`: refusing to create another {role} with the same label")]
    KeyExists {
        /// The kind of key that was to be created.
        role: KeyRole,
        /// The token label.
        token: String,
        /// The key label.
        label: String,
    },
    /// Several keys carry the same label, so the one meant is unknown.
    #[error(
        "{count} keys labelled `{label}` on token `{token}`: delete or relabel all but one {role}"
    )]
    KeyAmbiguous {
        /// The kind of key.
        role: KeyRole,
        /// The token label.
        token: String,
        /// The key label.
        label: String,
        /// How many.
        count: usize,
    },
    /// The key exists but is not of the expected kind (wrong curve, wrong
    /// key type, not protected as required).
    #[error("key `{label}` on token `{token}` is unusable as a {role}: {reason}")]
    KeyUnusable {
        /// The kind of key expected.
        role: KeyRole,
        /// The token label.
        token: String,
        /// The key label.
        label: String,
        /// What is wrong with it.
        reason: String,
    },
    /// A signature produced by the HSM did not verify with an independent
    /// implementation; it was not returned.
    #[error(
        "signature by key `{label}` on token `{token}` failed independent verification: {reason}"
    )]
    SignatureCheck {
        /// The token label.
        token: String,
        /// The key label.
        label: String,
        /// What failed.
        reason: String,
    },
    /// An input is outside the accepted bounds.
    #[error("{what} is {len} bytes, more than the {max} accepted")]
    TooLarge {
        /// What was too large.
        what: &'static str,
        /// Its length.
        len: usize,
        /// The limit.
        max: usize,
    },
    /// The operation does not apply to this key.
    #[error("key `{label}`: {reason}")]
    Unsupported {
        /// The key label.
        label: String,
        /// Why the operation does not apply.
        reason: String,
    },
    /// The operating system's random generator failed.
    #[error("the operating system random generator failed: {reason}")]
    Rng {
        /// The error.
        reason: String,
    },
    /// A PKCS#11 call failed.
    #[error("token `{token}`: {op} failed: {reason}")]
    Pkcs11 {
        /// The token label.
        token: String,
        /// What was being done (`sealing`, `signing with cold key x` ...).
        op: String,
        /// The PKCS#11 return value and function.
        reason: String,
    },
}

/// Short description of a cryptoki error (`PinIncorrect from C_Login`).
pub(crate) fn describe_ck(e: &cryptoki::error::Error) -> String {
    match e {
        cryptoki::error::Error::Pkcs11(rv, function) => {
            format!("CKR {rv:?} from C_{function:?}")
        }
        other => other.to_string(),
    }
}
