//! Key objects on the token: label rules, ids, lookup by label, protection
//! attributes and EC point decoding. Shared by the sealer, the cold keys and
//! the audit key.
//!
//! Keys this crate creates carry a `CKA_ID` of 16 bytes: a 4-byte role tag
//! (`kfs1` sealing, `kfc1` cold, `kfa1` audit) and 12 random bytes. The tag
//! keeps roles apart: the audit key never shows up among the cold keys, and a
//! cold signing request can never reach the audit key. A public and a private
//! key of one pair share their `CKA_ID` and `CKA_LABEL`.
//!
//! Object handles are cached after lookup. When the token answers that a
//! handle is invalid the key is looked up again by its `CKA_ID`; when it is
//! gone the caller gets [`HsmError::KeyMissing`], naming the key, the token
//! and what losing the key means.

use std::sync::{Mutex, MutexGuard};

use cryptoki::error::{Error as CkError, RvError};
use cryptoki::object::{Attribute, AttributeType, KeyType, ObjectClass, ObjectHandle};
use cryptoki::session::Session;
use rand_core::{OsRng, RngCore};

use crate::error::{HsmError, KeyRole};
use crate::session::{lock, Hsm};

/// Longest key label accepted, in bytes.
pub const MAX_KEY_LABEL: usize = 128;
/// Length of the `CKA_ID` of keys this crate creates.
pub const KEY_ID_LEN: usize = 16;

/// `CKA_ID` tag of the sealing key.
pub(crate) const TAG_SEAL: &[u8; 4] = b"kfs1";
/// `CKA_ID` tag of cold keys.
pub(crate) const TAG_COLD: &[u8; 4] = b"kfc1";
/// `CKA_ID` tag of the audit key.
pub(crate) const TAG_AUDIT: &[u8; 4] = b"kfa1";

/// Serializes key creation within the process so that two threads cannot
/// both create a key with the same label.
static CREATE_LOCK: Mutex<()> = Mutex::new(());

/// Holds the creation lock of the process.
pub(crate) fn create_lock() -> MutexGuard<'static, ()> {
    lock(&CREATE_LOCK)
}

/// Checks a key label: 1 to [`MAX_KEY_LABEL`] bytes, no control characters,
/// no leading or trailing whitespace.
pub(crate) fn validate_label(label: &str) -> Result<(), HsmError> {
    let bad = |reason: &str| {
        Err(HsmError::BadLabel {
            label: label.escape_debug().to_string(),
            reason: reason.to_string(),
        })
    };
    if label.is_empty() {
        return bad("empty");
    }
    if label.len() > MAX_KEY_LABEL {
        return bad(&format!("longer than {MAX_KEY_LABEL} bytes"));
    }
    if label.chars().any(char::is_control) {
        return bad("contains control characters");
    }
    if label.trim() != label {
        return bad("leading or trailing whitespace");
    }
    Ok(())
}

/// A fresh `CKA_ID`: `tag` and 12 random bytes.
pub(crate) fn new_id(tag: &[u8; 4]) -> Result<Vec<u8>, HsmError> {
    let mut id = vec![0u8; KEY_ID_LEN];
    id[..4].copy_from_slice(tag);
    OsRng
        .try_fill_bytes(&mut id[4..])
        .map_err(|e| HsmError::Rng {
            reason: e.to_string(),
        })?;
    Ok(id)
}

/// How a key is protected on the token, as the token reports it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct KeyProtection {
    /// `CKA_TOKEN`: stored on the token (not a session object).
    pub token: bool,
    /// `CKA_PRIVATE`: only visible after login.
    pub private: bool,
    /// `CKA_SENSITIVE`: the value can never be read in plaintext.
    pub sensitive: bool,
    /// `CKA_ALWAYS_SENSITIVE`: it was sensitive since its creation.
    pub always_sensitive: bool,
    /// `CKA_EXTRACTABLE`: it can be wrapped (exported encrypted).
    pub extractable: bool,
    /// `CKA_NEVER_EXTRACTABLE`: it was never extractable.
    pub never_extractable: bool,
    /// `CKA_LOCAL`: it was generated on the token.
    pub local: bool,
}

impl KeyProtection {
    /// A persistent key that is, and always was, sensitive and
    /// non-extractable.
    pub fn is_locked_down(&self) -> bool {
        self.token
            && self.private
            && self.sensitive
            && self.always_sensitive
            && !self.extractable
            && self.never_extractable
    }
}

/// The value of a boolean attribute among `attrs` (`false` if absent).
fn flag(attrs: &[Attribute], ty: AttributeType) -> bool {
    attrs.iter().any(|a| {
        a.attribute_type() == ty
            && matches!(
                a,
                Attribute::Token(true)
                    | Attribute::Private(true)
                    | Attribute::Sensitive(true)
                    | Attribute::AlwaysSensitive(true)
                    | Attribute::Extractable(true)
                    | Attribute::NeverExtractable(true)
                    | Attribute::Local(true)
            )
    })
}

/// The `CKA_ID` among `attrs`.
pub(crate) fn attr_id(attrs: &[Attribute]) -> Option<&[u8]> {
    attrs.iter().find_map(|a| match a {
        Attribute::Id(id) => Some(id.as_slice()),
        _ => None,
    })
}

/// The `CKA_KEY_TYPE` among `attrs`.
pub(crate) fn attr_key_type(attrs: &[Attribute]) -> Option<KeyType> {
    attrs.iter().find_map(|a| match a {
        Attribute::KeyType(t) => Some(*t),
        _ => None,
    })
}

/// The `CKA_LABEL` among `attrs`, as text.
pub(crate) fn attr_label(attrs: &[Attribute]) -> Option<String> {
    attrs.iter().find_map(|a| match a {
        Attribute::Label(l) => Some(String::from_utf8_lossy(l).into_owned()),
        _ => None,
    })
}

/// Whether `e` says the object handle no longer names an object.
fn handle_is_stale(e: &CkError) -> bool {
    matches!(
        e,
        CkError::Pkcs11(RvError::ObjectHandleInvalid | RvError::KeyHandleInvalid, _)
    )
}

/// A key object on the token, found by label and pinned by its `CKA_ID`.
#[derive(Debug)]
pub(crate) struct KeyRef {
    pub(crate) hsm: Hsm,
    pub(crate) role: KeyRole,
    pub(crate) class: ObjectClass,
    pub(crate) label: String,
    pub(crate) id: Vec<u8>,
    handle: Mutex<Option<ObjectHandle>>,
}

impl KeyRef {
    /// A reference to a key just created with this handle.
    pub(crate) fn created(
        hsm: &Hsm,
        role: KeyRole,
        class: ObjectClass,
        label: &str,
        id: Vec<u8>,
        handle: ObjectHandle,
    ) -> KeyRef {
        KeyRef {
            hsm: hsm.clone(),
            role,
            class,
            label: label.to_string(),
            id,
            handle: Mutex::new(Some(handle)),
        }
    }

    /// Finds the one object of `class` labelled `label` whose `CKA_ID`
    /// starts with `tag` (any id if `tag` is `None`) and, if `key_type` is
    /// given, of that key type. `Ok(None)` if there is none.
    pub(crate) fn lookup(
        hsm: &Hsm,
        role: KeyRole,
        class: ObjectClass,
        label: &str,
        tag: Option<&[u8; 4]>,
        key_type: Option<KeyType>,
    ) -> Result<Option<KeyRef>, HsmError> {
        validate_label(label)?;
        let op = || format!("looking up {role} `{label}`");
        let candidates = hsm
            .with_session(|s| {
                let handles =
                    s.find_objects(&[Attribute::Class(class), Attribute::Label(label.into())])?;
                let mut out = Vec::new();
                for h in handles {
                    let attrs =
                        s.get_attributes(h, &[AttributeType::Id, AttributeType::KeyType])?;
                    out.push((h, attrs));
                }
                Ok(out)
            })?
            .map_err(|e| hsm.ck_error(op(), &e))?;
        let mut matching: Vec<(ObjectHandle, Vec<u8>)> = Vec::new();
        for (h, attrs) in candidates {
            let id = attr_id(&attrs).unwrap_or_default();
            if let Some(tag) = tag {
                if !id.starts_with(tag) {
                    continue;
                }
            }
            if let Some(kt) = key_type {
                if attr_key_type(&attrs) != Some(kt) {
                    continue;
                }
            }
            matching.push((h, id.to_vec()));
        }
        match matching.len() {
            0 => Ok(None),
            1 => {
                let (h, id) = matching.remove(0);
                Ok(Some(KeyRef::created(hsm, role, class, label, id, h)))
            }
            count => Err(HsmError::KeyAmbiguous {
                role,
                token: hsm.token_label().to_string(),
                label: label.to_string(),
                count,
            }),
        }
    }

    /// Whether any object (of any class) carries `label`.
    pub(crate) fn label_in_use(hsm: &Hsm, label: &str) -> Result<bool, HsmError> {
        hsm.with_session(|s| s.find_objects(&[Attribute::Label(label.into())]))?
            .map(|v| !v.is_empty())
            .map_err(|e| hsm.ck_error(format!("checking whether label `{label}` is free"), &e))
    }

    fn missing(&self) -> HsmError {
        HsmError::KeyMissing {
            role: self.role,
            token: self.hsm.token_label().to_string(),
            label: self.label.clone(),
        }
    }

    /// Looks the key up again by class and `CKA_ID` (by label if it has no id).
    fn refind(&self) -> Result<ObjectHandle, HsmError> {
        let handles = self
            .hsm
            .with_session(|s| {
                // Keys made by this crate always have an id; a key imported
                // without one is found by its label.
                let selector = if self.id.is_empty() {
                    Attribute::Label(self.label.as_bytes().to_vec())
                } else {
                    Attribute::Id(self.id.clone())
                };
                s.find_objects(&[Attribute::Class(self.class), selector])
            })?
            .map_err(|e| {
                self.hsm
                    .ck_error(format!("looking up {} `{}`", self.role, self.label), &e)
            })?;
        match handles.as_slice() {
            [h] => Ok(*h),
            [] => Err(self.missing()),
            many => Err(HsmError::KeyAmbiguous {
                role: self.role,
                token: self.hsm.token_label().to_string(),
                label: self.label.clone(),
                count: many.len(),
            }),
        }
    }

    fn handle(&self) -> Result<ObjectHandle, HsmError> {
        if let Some(h) = *lock(&self.handle) {
            return Ok(h);
        }
        let h = self.refind()?;
        *lock(&self.handle) = Some(h);
        Ok(h)
    }

    /// Runs `op` with the key's handle on a pooled session. A stale handle
    /// is looked up again once; a key that is gone gives
    /// [`HsmError::KeyMissing`].
    pub(crate) fn with_key<T>(
        &self,
        mut op: impl FnMut(&Session, ObjectHandle) -> Result<T, CkError>,
    ) -> Result<Result<T, CkError>, HsmError> {
        let h = self.handle()?;
        let result = self.hsm.with_session(|s| op(s, h))?;
        match result {
            Err(e) if handle_is_stale(&e) => {
                *lock(&self.handle) = None;
                tracing::warn!(
                    token = %self.hsm.token_label(),
                    key = %self.label,
                    "{} handle went stale; looking the key up again", self.role
                );
                let h = self.refind()?;
                *lock(&self.handle) = Some(h);
                self.hsm.with_session(|s| op(s, h))
            }
            other => Ok(other),
        }
    }

    /// Checks that the key is still on the token (looks it up by id; does
    /// not trust the cached handle).
    pub(crate) fn check_present(&self) -> Result<(), HsmError> {
        let h = self.refind()?;
        *lock(&self.handle) = Some(h);
        Ok(())
    }

    /// The key's protection attributes.
    pub(crate) fn protection(&self) -> Result<KeyProtection, HsmError> {
        let attrs = self
            .with_key(|s, h| {
                s.get_attributes(
                    h,
                    &[
                        AttributeType::Token,
                        AttributeType::Private,
                        AttributeType::Sensitive,
                        AttributeType::AlwaysSensitive,
                        AttributeType::Extractable,
                        AttributeType::NeverExtractable,
                        AttributeType::Local,
                    ],
                )
            })?
            .map_err(|e| {
                self.hsm.ck_error(
                    format!("reading attributes of {} `{}`", self.role, self.label),
                    &e,
                )
            })?;
        Ok(KeyProtection {
            token: flag(&attrs, AttributeType::Token),
            private: flag(&attrs, AttributeType::Private),
            sensitive: flag(&attrs, AttributeType::Sensitive),
            always_sensitive: flag(&attrs, AttributeType::AlwaysSensitive),
            extractable: flag(&attrs, AttributeType::Extractable),
            never_extractable: flag(&attrs, AttributeType::NeverExtractable),
            local: flag(&attrs, AttributeType::Local),
        })
    }
}

/// Strips a DER OCTET STRING wrapper (`04 len value`) if `raw` is exactly
/// one.
fn der_octet_string(raw: &[u8]) -> Option<&[u8]> {
    match raw {
        [0x04, len, rest @ ..] if *len < 0x80 && usize::from(*len) == rest.len() => Some(rest),
        [0x04, 0x81, len, rest @ ..] if *len >= 0x80 && usize::from(*len) == rest.len() => {
            Some(rest)
        }
        _ => None,
    }
}

/// Decodes a `CKA_EC_POINT` whose point encoding has one of `point_lens`
/// lengths: the DER OCTET STRING that PKCS#11 specifies, or the raw point
/// some modules return. The lengths make the two unambiguous.
pub(crate) fn decode_ec_point<'a>(raw: &'a [u8], point_lens: &[usize]) -> Option<&'a [u8]> {
    if let Some(inner) = der_octet_string(raw) {
        if point_lens.contains(&inner.len()) {
            return Some(inner);
        }
    }
    if point_lens.contains(&raw.len()) {
        return Some(raw);
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ec_point_decoding() {
        let mut der = vec![0x04, 0x41, 0x04];
        der.extend_from_slice(&[7u8; 64]);
        assert_eq!(decode_ec_point(&der, &[65, 33]).map(<[u8]>::len), Some(65));
        // A raw uncompressed point whose x starts with 0x3f: 04 3f ... is 65
        // bytes, so it is never taken for a 63-byte DER string.
        let mut raw = vec![0x04, 0x3f];
        raw.extend_from_slice(&[1u8; 63]);
        assert_eq!(decode_ec_point(&raw, &[65, 33]), Some(raw.as_slice()));
        let mut ed = vec![0x04, 0x20];
        ed.extend_from_slice(&[9u8; 32]);
        assert_eq!(decode_ec_point(&ed, &[32]), Some(&ed[2..]));
        assert_eq!(decode_ec_point(&ed[..33], &[32]), None);
        assert_eq!(decode_ec_point(&[], &[32]), None);
    }

    #[test]
    fn labels() {
        assert!(validate_label("keyfold-seal").is_ok());
        assert!(validate_label("").is_err());
        assert!(validate_label(" x").is_err());
        assert!(validate_label("a\nb").is_err());
        assert!(validate_label(&"x".repeat(129)).is_err());
    }

    #[test]
    fn ids_carry_their_tag() {
        for tag in [TAG_SEAL, TAG_COLD, TAG_AUDIT] {
            let id = new_id(tag).unwrap();
            assert_eq!(id.len(), KEY_ID_LEN);
            assert!(id.starts_with(tag));
        }
    }
}
