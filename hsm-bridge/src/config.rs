//! HSM configuration: which PKCS#11 module, which token, where the PIN comes
//! from.
//!
//! ```toml
//! [hsm]
//! module = "/usr/lib/softhsm/libsofthsm2.so"
//! token_label = "keyfold-node-1"
//! pin = { env = "KEYFOLD_HSM_PIN" }        # or: pin = { file = "/etc/keyfold/hsm-pin" }
//! ```
//!
//! The PIN is never part of the configuration itself and never taken from a
//! command line: the configuration names an environment variable or a file
//! (mode 0600, at most [`MAX_PIN_FILE`] bytes, one trailing newline allowed).
//! The PIN is read only when the token is opened, held in zeroizing buffers,
//! and never logged nor printed by `Debug`.

use std::fmt;
use std::fs::File;
use std::io::{ErrorKind, Read};
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};
use zeroize::Zeroizing;

use crate::error::HsmError;

/// Debian's SoftHSM2 module path.
pub const SOFTHSM2_MODULE: &str = "/usr/lib/softhsm/libsofthsm2.so";
/// Longest token label PKCS#11 can hold, in bytes.
pub const MAX_TOKEN_LABEL: usize = 32;
/// Largest PIN file accepted, in bytes.
pub const MAX_PIN_FILE: usize = 256;

/// Where the token's user PIN comes from.
///
/// In TOML: `pin = { env = "VAR" }` or `pin = { file = "/path" }`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case", deny_unknown_fields)]
#[non_exhaustive]
pub enum PinSource {
    /// The PIN is the value of this environment variable.
    Env(String),
    /// The PIN is the content of this file (mode 0600; one trailing newline
    /// is ignored).
    File(PathBuf),
}

impl fmt::Display for PinSource {
    /// `env var NAME` or `file /path`: used in errors, never the PIN itself.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            PinSource::Env(var) => write!(f, "env var {var}"),
            PinSource::File(path) => write!(f, "file {}", path.display()),
        }
    }
}

impl PinSource {
    /// Reads the PIN. `token` is only used in error messages.
    pub(crate) fn read(&self, token: &str) -> Result<Zeroizing<String>, HsmError> {
        let fail = |reason: String| HsmError::PinUnavailable {
            token: token.to_string(),
            pin_source: self.to_string(),
            reason,
        };
        let pin = match self {
            PinSource::Env(var) => match std::env::var(var) {
                Ok(v) => Zeroizing::new(v),
                Err(std::env::VarError::NotPresent) => {
                    return Err(fail(format!(
                        "it is not set: export the token's user PIN in {var}, or use `pin = {{ file = \"...\" }}`"
                    )))
                }
                Err(std::env::VarError::NotUnicode(_)) => {
                    return Err(fail("it is not valid UTF-8".into()))
                }
            },
            PinSource::File(path) => read_pin_file(path).map_err(fail)?,
        };
        if pin.is_empty() {
            return Err(fail("the PIN is empty".into()));
        }
        if pin.chars().any(char::is_control) {
            return Err(fail("the PIN contains control characters".into()));
        }
        Ok(pin)
    }
}

fn read_pin_file(path: &Path) -> Result<Zeroizing<String>, String> {
    let mut file = File::open(path).map_err(|e| match e.kind() {
        ErrorKind::NotFound => "the file does not exist".to_string(),
        _ => e.to_string(),
    })?;
    let meta = file.metadata().map_err(|e| e.to_string())?;
    if !meta.is_file() {
        return Err("not a regular file".into());
    }
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        let mode = meta.permissions().mode() & 0o777;
        if mode & 0o077 != 0 {
            return Err(format!(
                "mode {mode:o} lets group or others read it: chmod 600 {}",
                path.display()
            ));
        }
    }
    let mut buf = Zeroizing::new(Vec::with_capacity(MAX_PIN_FILE + 1));
    file.by_ref()
        .take(MAX_PIN_FILE as u64 + 1)
        .read_to_end(&mut buf)
        .map_err(|e| e.to_string())?;
    if buf.len() > MAX_PIN_FILE {
        return Err(format!("larger than {MAX_PIN_FILE} bytes"));
    }
    let mut end = buf.len();
    if buf[..end].ends_with(b"\n") {
        end -= 1;
        if buf[..end].ends_with(b"\r") {
            end -= 1;
        }
    }
    let text = std::str::from_utf8(&buf[..end]).map_err(|_| "not UTF-8 text".to_string())?;
    Ok(Zeroizing::new(text.to_string()))
}

/// How to reach the HSM: PKCS#11 module, token, PIN source.
///
/// `Debug` is safe to print: it shows where the PIN comes from, not the PIN.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct HsmConfig {
    /// Path of the PKCS#11 module (shared library), e.g. [`SOFTHSM2_MODULE`].
    pub module: PathBuf,
    /// Label of the token (found by label, never by slot number: slot
    /// numbers change when tokens are added).
    pub token_label: String,
    /// Where the user PIN comes from.
    pub pin: PinSource,
}

impl HsmConfig {
    /// A configuration for `token_label` in Debian's SoftHSM2 module.
    pub fn softhsm(token_label: impl Into<String>, pin: PinSource) -> HsmConfig {
        HsmConfig {
            module: PathBuf::from(SOFTHSM2_MODULE),
            token_label: token_label.into(),
            pin,
        }
    }

    /// Checks the fields without touching the module or the token.
    pub fn validate(&self) -> Result<(), HsmError> {
        let bad = |field, reason: &str| {
            Err(HsmError::Config {
                field,
                reason: reason.to_string(),
            })
        };
        if self.module.as_os_str().is_empty() {
            return bad("module", "empty path");
        }
        if self.token_label.is_empty() {
            return bad("token_label", "empty");
        }
        if self.token_label.len() > MAX_TOKEN_LABEL {
            return bad(
                "token_label",
                &format!(
                    "`{}` is {} bytes; PKCS#11 token labels hold at most {MAX_TOKEN_LABEL}",
                    self.token_label.escape_debug(),
                    self.token_label.len()
                ),
            );
        }
        if self.token_label.trim_end() != self.token_label {
            return bad(
                "token_label",
                "trailing spaces are padding in PKCS#11 and cannot be matched",
            );
        }
        if self.token_label.chars().any(char::is_control) {
            return bad("token_label", "contains control characters");
        }
        match &self.pin {
            PinSource::Env(var) if var.is_empty() || var.contains('=') || var.contains('\0') => {
                bad("pin.env", "not a valid environment variable name")
            }
            PinSource::File(path) if path.as_os_str().is_empty() => bad("pin.file", "empty path"),
            _ => Ok(()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn validate_refuses_bad_labels() {
        let mut c = HsmConfig::softhsm("ok", PinSource::Env("P".into()));
        assert!(c.validate().is_ok());
        c.token_label = "x".repeat(33);
        assert!(c.validate().unwrap_err().to_string().contains("at most 32"));
        c.token_label = "trailing ".into();
        assert!(c.validate().is_err());
        c.token_label = String::new();
        assert!(c.validate().is_err());
    }

    #[test]
    fn pin_source_display_names_the_source() {
        assert_eq!(PinSource::Env("X".into()).to_string(), "env var X");
        assert_eq!(PinSource::File("/p".into()).to_string(), "file /p");
    }
}
