//! Device keys and the devices bound to a customer.
//!
//! A device key is the public half of a key pair kept in a phone's secure
//! enclave (P-256, the curve of Apple's Secure Enclave, Android's StrongBox
//! and WebAuthn authenticators) or in an app's key store (Ed25519). Keys are
//! validated when parsed and when deserialized, so a [`CustomerDevices`]
//! read back from storage holds only usable keys.

use std::fmt;

use ed25519_dalek::VerifyingKey as EdVerifyingKey;
use p256::ecdsa::VerifyingKey as P256VerifyingKey;
use serde::{Deserialize, Serialize};

use super::error::{AuthError, AuthRefusal};
use crate::input::{check_id, check_time};

/// Largest device key document [`DeviceKey::from_json`] reads, in bytes.
pub const MAX_KEY_DOCUMENT_BYTES: usize = 1024;

/// Most device records (active and revoked) kept per customer. Revoked
/// devices are kept so that their ids and keys are never registered again.
pub const MAX_DEVICE_RECORDS: usize = 64;

/// A device key's curve.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Curve {
    /// Ed25519 (RFC 8032).
    Ed25519,
    /// NIST P-256 (secp256r1) with ECDSA over SHA-256.
    P256,
}

impl Curve {
    /// The name used in key documents: `ed25519` or `p256`.
    pub fn name(self) -> &'static str {
        match self {
            Curve::Ed25519 => "ed25519",
            Curve::P256 => "p256",
        }
    }
}

/// A validated P-256 public key, kept as its 33-byte compressed SEC1
/// encoding (a key given uncompressed is compressed on parsing, so the same
/// key always compares equal).
#[derive(Clone, Copy, PartialEq, Eq, Hash)]
pub struct P256Key([u8; 33]);

impl P256Key {
    /// Parses a SEC1 point, compressed (33 bytes) or uncompressed (65
    /// bytes). The point at infinity and points off the curve are refused.
    pub fn from_sec1(bytes: &[u8]) -> Result<P256Key, AuthError> {
        let bad = |why: String| AuthError::BadPublicKey {
            curve: Curve::P256.name(),
            why,
        };
        if bytes.len() != 33 && bytes.len() != 65 {
            return Err(bad(format!(
                "{} bytes; a SEC1 point is 33 bytes (compressed) or 65 (uncompressed)",
                bytes.len()
            )));
        }
        let vk = P256VerifyingKey::from_sec1_bytes(bytes)
            .map_err(|_| bad("not a point on the curve".into()))?;
        let compressed = vk.to_encoded_point(true);
        let out = <[u8; 33]>::try_from(compressed.as_bytes())
            .map_err(|_| bad("compressed encoding is not 33 bytes".into()))?;
        Ok(P256Key(out))
    }

    /// The compressed SEC1 encoding.
    pub fn to_sec1_compressed(&self) -> [u8; 33] {
        self.0
    }

    pub(crate) fn verifying_key(&self) -> Option<P256VerifyingKey> {
        P256VerifyingKey::from_sec1_bytes(&self.0).ok()
    }
}

impl fmt::Debug for P256Key {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "P256Key({})", hex::encode(self.0))
    }
}

/// A customer device's public key.
///
/// In JSON: `{"curve": "ed25519" | "p256", "public_key": "<hex>"}`; a P-256
/// key may be given compressed or uncompressed and is written compressed.
#[derive(Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(try_from = "KeyDocument", into = "KeyDocument")]
pub enum DeviceKey {
    /// An Ed25519 public key (32 bytes). Keys built directly rather than
    /// parsed are checked by [`DeviceKey::validate`] when registered.
    Ed25519([u8; 32]),
    /// A P-256 public key.
    P256(P256Key),
}

/// The JSON shape of a [`DeviceKey`].
#[derive(Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct KeyDocument {
    curve: String,
    public_key: String,
}

impl TryFrom<KeyDocument> for DeviceKey {
    type Error = AuthError;
    fn try_from(d: KeyDocument) -> Result<DeviceKey, AuthError> {
        DeviceKey::parse(&d.curve, &d.public_key)
    }
}

impl From<DeviceKey> for KeyDocument {
    fn from(k: DeviceKey) -> KeyDocument {
        KeyDocument {
            curve: k.curve().name().to_string(),
            public_key: k.public_key_hex(),
        }
    }
}

impl fmt::Debug for DeviceKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "DeviceKey({}:{})",
            self.curve().name(),
            self.public_key_hex()
        )
    }
}

impl DeviceKey {
    /// Parses `{"curve": ..., "public_key": "<hex>"}` (at most
    /// [`MAX_KEY_DOCUMENT_BYTES`]). An unknown curve is
    /// [`AuthError::UnknownCurve`], naming it.
    pub fn from_json(text: &str) -> Result<DeviceKey, AuthError> {
        if text.len() > MAX_KEY_DOCUMENT_BYTES {
            return Err(AuthError::BadKeyDocument(format!(
                "{} bytes, the limit is {MAX_KEY_DOCUMENT_BYTES}",
                text.len()
            )));
        }
        // Read the plain shape first, so that an unknown curve comes back
        // as its own typed error rather than inside a serde message.
        let doc: KeyDocument =
            serde_json::from_str(text).map_err(|e| AuthError::BadKeyDocument(e.to_string()))?;
        DeviceKey::parse(&doc.curve, &doc.public_key)
    }

    /// Parses a curve name and a hex public key, and validates the key.
    pub fn parse(curve: &str, public_key_hex: &str) -> Result<DeviceKey, AuthError> {
        let curve = match curve {
            "ed25519" => Curve::Ed25519,
            "p256" => Curve::P256,
            other => {
                return Err(AuthError::UnknownCurve {
                    curve: other.chars().take(32).collect(),
                })
            }
        };
        let bad = |why: String| AuthError::BadPublicKey {
            curve: curve.name(),
            why,
        };
        // Longest valid key: 65 bytes, 130 hex digits.
        if public_key_hex.len() > 130 {
            return Err(bad(format!(
                "{} hex digits, longer than any key of the curve",
                public_key_hex.len()
            )));
        }
        let bytes = hex::decode(public_key_hex).map_err(|e| bad(format!("not hex: {e}")))?;
        match curve {
            Curve::Ed25519 => {
                let arr = <[u8; 32]>::try_from(bytes.as_slice())
                    .map_err(|_| bad(format!("{} bytes, an Ed25519 key is 32", bytes.len())))?;
                let key = DeviceKey::Ed25519(arr);
                key.validate()?;
                Ok(key)
            }
            Curve::P256 => Ok(DeviceKey::P256(P256Key::from_sec1(&bytes)?)),
        }
    }

    /// Checks the key: an Ed25519 key must decode to a point that is not of
    /// small order (with a small-order key, signatures that verify can be
    /// made without any private key). P-256 keys are checked when built.
    pub fn validate(&self) -> Result<(), AuthError> {
        match self {
            DeviceKey::Ed25519(bytes) => {
                let bad = |why: &str| AuthError::BadPublicKey {
                    curve: Curve::Ed25519.name(),
                    why: why.to_string(),
                };
                let vk = EdVerifyingKey::from_bytes(bytes)
                    .map_err(|_| bad("not a point on the curve"))?;
                if vk.is_weak() {
                    return Err(bad("a small-order (weak) key"));
                }
                Ok(())
            }
            DeviceKey::P256(_) => Ok(()),
        }
    }

    /// The key's curve.
    pub fn curve(&self) -> Curve {
        match self {
            DeviceKey::Ed25519(_) => Curve::Ed25519,
            DeviceKey::P256(_) => Curve::P256,
        }
    }

    /// The public key in hex (P-256: compressed SEC1).
    pub fn public_key_hex(&self) -> String {
        match self {
            DeviceKey::Ed25519(b) => hex::encode(b),
            DeviceKey::P256(k) => hex::encode(k.0),
        }
    }
}

/// One device bound to a customer.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Device {
    /// The device id, unique per customer, never reused.
    pub id: String,
    /// Its public key.
    pub key: DeviceKey,
    /// When it was registered (Unix seconds).
    pub registered_at: u64,
    /// When it was revoked, if it was.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub revoked_at: Option<u64>,
}

impl Device {
    /// Whether the device is revoked. A revocation takes effect at once,
    /// whatever times later calls pass: a coordinator whose clock lags the
    /// one that revoked must not bring the device back.
    pub fn is_revoked(&self) -> bool {
        self.revoked_at.is_some()
    }
}

/// The devices bound to one customer: plain data, persisted by the caller.
/// Every method returns a new state and leaves `self` as it was.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CustomerDevices {
    /// The customer. A device signature over another customer id is refused
    /// as an unknown device, so devices looked up for the wrong customer
    /// cannot authorize a payment.
    pub customer_id: String,
    /// Every device registered, active and revoked, in registration order.
    #[serde(default)]
    pub devices: Vec<Device>,
}

impl CustomerDevices {
    /// A customer with no devices.
    pub fn new(customer_id: &str) -> Result<CustomerDevices, AuthError> {
        check_id("customer_id", customer_id)?;
        Ok(CustomerDevices {
            customer_id: customer_id.to_string(),
            devices: Vec::new(),
        })
    }

    /// The device of this id, active or revoked.
    pub fn get(&self, device_id: &str) -> Option<&Device> {
        self.devices.iter().find(|d| d.id == device_id)
    }

    /// The number of devices not revoked.
    pub fn active_count(&self) -> usize {
        self.devices.iter().filter(|d| !d.is_revoked()).count()
    }

    /// Registers a device at `now`. Refused: an id already used (even by a
    /// revoked device), a key already registered (a revoked key is presumed
    /// compromised), `cap` active devices already, or
    /// [`MAX_DEVICE_RECORDS`] records already.
    pub fn register(
        &self,
        now: u64,
        device_id: &str,
        key: DeviceKey,
        cap: usize,
    ) -> Result<CustomerDevices, AuthError> {
        check_id("device_id", device_id)?;
        check_time(now)?;
        key.validate()?;
        if self.get(device_id).is_some() {
            return Err(AuthError::DeviceIdTaken {
                device_id: device_id.to_string(),
            });
        }
        if let Some(d) = self.devices.iter().find(|d| d.key == key) {
            return Err(AuthError::DuplicateKey {
                device_id: d.id.clone(),
                revoked: d.revoked_at.is_some(),
            });
        }
        if self.active_count() >= cap {
            return Err(AuthError::DeviceCapReached {
                customer_id: self.customer_id.clone(),
                cap,
            });
        }
        if self.devices.len() >= MAX_DEVICE_RECORDS {
            return Err(AuthError::TooManyDeviceRecords {
                customer_id: self.customer_id.clone(),
                max: MAX_DEVICE_RECORDS,
            });
        }
        let mut next = self.clone();
        next.devices.push(Device {
            id: device_id.to_string(),
            key,
            registered_at: now,
            revoked_at: None,
        });
        Ok(next)
    }

    /// Revokes a device at `now`; its signatures are refused from then on.
    /// Revoking a revoked device changes nothing (a retried revocation
    /// succeeds and keeps the first time).
    pub fn revoke(&self, now: u64, device_id: &str) -> Result<CustomerDevices, AuthError> {
        check_time(now)?;
        let mut next = self.clone();
        let Some(d) = next.devices.iter_mut().find(|d| d.id == device_id) else {
            return Err(AuthError::NoSuchDevice {
                customer_id: self.customer_id.clone(),
                device_id: device_id.chars().take(crate::MAX_ID_BYTES).collect(),
            });
        };
        if d.revoked_at.is_none() {
            d.revoked_at = Some(now);
        }
        Ok(next)
    }

    /// Whether the device may authorize a large payment at `now`: it is
    /// registered, not revoked, and was registered at least `delay_secs`
    /// ago. (What counts as large is the caller's: the tree's step-up rules
    /// or the tier limits.) A stolen phone that an attacker binds to the
    /// account cannot drain it before the customer notices the new device.
    pub fn may_authorize_large(
        &self,
        now: u64,
        device_id: &str,
        delay_secs: u64,
    ) -> Result<(), AuthRefusal> {
        let d = self.active_device(device_id)?;
        let usable_at = d.registered_at.saturating_add(delay_secs);
        if now < usable_at {
            return Err(AuthRefusal::DeviceTooNew {
                device_id: d.id.clone(),
                registered_at: d.registered_at,
                usable_at,
            });
        }
        Ok(())
    }

    /// The device, refused if unknown or revoked.
    pub(crate) fn active_device(&self, device_id: &str) -> Result<&Device, AuthRefusal> {
        let Some(d) = self.get(device_id) else {
            return Err(AuthRefusal::UnknownDevice {
                customer_id: self.customer_id.clone(),
                device_id: device_id.chars().take(crate::MAX_ID_BYTES).collect(),
            });
        };
        if let Some(revoked_at) = d.revoked_at {
            return Err(AuthRefusal::DeviceRevoked {
                device_id: d.id.clone(),
                revoked_at,
            });
        }
        Ok(d)
    }
}
