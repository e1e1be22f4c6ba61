//! Serde helpers: byte fields as strict lowercase hex strings.

use serde::{de::Error as _, Deserialize, Deserializer, Serializer};

fn decode_strict(s: &str) -> Result<Vec<u8>, String> {
    if s.bytes().any(|c| c.is_ascii_uppercase()) {
        return Err("hex must be lowercase".into());
    }
    hex::decode(s).map_err(|e| format!("bad hex: {e}"))
}

pub(crate) fn serialize_vec<S: Serializer>(v: &[u8], s: S) -> Result<S::Ok, S::Error> {
    s.serialize_str(&hex::encode(v))
}

pub(crate) fn deserialize_vec<'de, D: Deserializer<'de>>(d: D) -> Result<Vec<u8>, D::Error> {
    let s = <std::borrow::Cow<'de, str>>::deserialize(d)?;
    if s.len() > 2 * crate::event::MAX_BYTES {
        return Err(D::Error::custom("hex field too long"));
    }
    decode_strict(&s).map_err(D::Error::custom)
}

fn fixed<'de, D: Deserializer<'de>, const N: usize>(d: D) -> Result<[u8; N], D::Error> {
    let s = <std::borrow::Cow<'de, str>>::deserialize(d)?;
    if s.len() != 2 * N {
        return Err(D::Error::custom(format!("expected {} hex digits", 2 * N)));
    }
    let v = decode_strict(&s).map_err(D::Error::custom)?;
    let mut out = [0u8; N];
    out.copy_from_slice(&v);
    Ok(out)
}

/// `[u8; 32]` as 64 lowercase hex digits.
pub(crate) mod h32 {
    use super::*;

    pub(crate) fn serialize<S: Serializer>(v: &[u8; 32], s: S) -> Result<S::Ok, S::Error> {
        serialize_vec(v, s)
    }

    pub(crate) fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<[u8; 32], D::Error> {
        fixed::<D, 32>(d)
    }
}

/// `[u8; 64]` as 128 lowercase hex digits.
pub(crate) mod h64 {
    use super::*;

    pub(crate) fn serialize<S: Serializer>(v: &[u8; 64], s: S) -> Result<S::Ok, S::Error> {
        serialize_vec(v, s)
    }

    pub(crate) fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<[u8; 64], D::Error> {
        fixed::<D, 64>(d)
    }
}
