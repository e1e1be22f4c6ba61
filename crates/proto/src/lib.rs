//! Keyfold's wire and domain types.
//!
//! * [`signer`]: the commands the coordinator sends a signer node over QUIC and
//!   the answers, versioned and size-bounded.
//! * [`api`]: the JSON types of the coordinator's REST API.
//! * [`Curve`], [`SignatureBytes`]: shared domain types.
#![forbid(unsafe_code)]
#![warn(missing_docs)]

pub mod api;
pub mod signer;

use serde::{Deserialize, Serialize};

/// Version of the coordinator <-> signer protocol. A node refuses a request of
/// another version with [`signer::ErrorCode::UnsupportedVersion`].
pub const PROTOCOL_VERSION: u32 = 2;

/// Largest coordinator <-> signer command or answer, in bytes (commands carry at
/// most a message to sign and a few ids).
pub const MAX_RPC_BYTES: usize = 1 << 20;

/// Largest message the API signs, in bytes.
pub const MAX_MESSAGE_BYTES: usize = 64 * 1024;

/// The curve (and signature scheme) of a key.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
#[non_exhaustive]
pub enum Curve {
    /// ECDSA on secp256k1 (cggmp21).
    Secp256k1,
    /// Ed25519 (FROST).
    Ed25519,
}

impl std::fmt::Display for Curve {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Curve::Secp256k1 => "secp256k1",
            Curve::Ed25519 => "ed25519",
        })
    }
}

impl std::str::FromStr for Curve {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        match s {
            "secp256k1" => Ok(Curve::Secp256k1),
            "ed25519" => Ok(Curve::Ed25519),
            other => Err(format!("unknown curve {other:?}: use secp256k1 or ed25519")),
        }
    }
}

/// Hex (de)serialization of byte vectors, for JSON.
pub mod hex_bytes {
    use serde::{Deserialize, Deserializer, Serializer};

    /// Serializes as lowercase hex.
    pub fn serialize<S: Serializer>(v: &[u8], s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&hex::encode(v))
    }

    /// Deserializes from hex.
    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Vec<u8>, D::Error> {
        let s = String::deserialize(d)?;
        hex::decode(s).map_err(serde::de::Error::custom)
    }
}
